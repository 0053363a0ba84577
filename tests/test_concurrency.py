"""Several writers at once, and blocks nested so that the library's own threads forward bytes into
pipes that only they drain: nothing lost, nothing hangs."""

from __future__ import annotations

import errno
import os
import threading
from collections import Counter

import pytest

from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
from helpers import run_file_ok, run_ok

PATTERN = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.\n"


def test_threads_writing_at_once_into_a_capture_lose_nothing() -> None:
    # The GIL is released around each write: four writers hit the memory file at the same time.
    def write() -> None:
        c_emit(1, 1 << 20, chunk=64)

    with redirect_stdout_fd(encoding=None) as out:
        threads = [threading.Thread(target=write) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    data = out.getbytes()
    assert len(data) == 4 << 20
    assert data.count(b"\n") == (4 << 20) // 64


def test_background_pipelines_of_a_shell_lose_nothing() -> None:
    with redirect_stdout_fd(encoding=None) as out:
        os.system("for i in 1 2 3 4; do (seq 1 20000 | sed s/^/p$i-/) & done; wait")
    expected = b"".join(f"p{i}-{n}\n".encode() for i in range(1, 5) for n in range(1, 20001))
    # sed writes 4 KiB blocks, which interleave: every byte is kept, lines may be cut.
    assert Counter(out.getbytes()) == Counter(expected)


def test_background_line_writers_keep_every_line_whole() -> None:
    with redirect_stdout_fd() as out:
        os.system("for i in 1 2 3 4; do (seq 1 5000 | sed -u s/^/p$i-/) & done; wait")
    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(f"p{i}-{n}" for i in range(1, 5) for n in range(1, 5001))


def test_a_tee_block_inside_a_tee_block_with_more_than_a_pipe_holds(unbuffered: bool) -> None:
    child = run_ok(
        """
from fdredirect import redirect_stdout_fd
from childlib import report
with redirect_stdout_fd(tee=True) as outer:
    with redirect_stdout_fd(tee=True) as inner:
        print("x" * 200_000)
    print("after inner")
report((len(inner.getvalue()), len(outer.getvalue())))
""",
        unbuffered=unbuffered,
        timeout=30,
    )
    assert child.out == b"x" * 200_000 + b"\nafter inner\n"
    assert child.err.strip() == b"(200001, 200013)"


def test_live_and_tee_blocks_inside_a_live_block_with_a_writer_holding_the_gil(unbuffered: bool) -> None:
    child = run_ok(
        """
import io, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
from childlib import report
outer, inner, teed = io.StringIO(), io.StringIO(), io.StringIO()
with redirect_stdout_fd(outer):
    with redirect_stdout_fd(inner):
        c_emit(1, 1 << 20, hold_gil=True)
    with redirect_stdout_fd(teed, tee=True):
        c_emit(1, 1 << 20, hold_gil=True)
    with redirect_stdout_fd(tee=True) as captured:
        c_emit(1, 1 << 20, hold_gil=True)
report([len(s) for s in (outer.getvalue(), inner.getvalue(), teed.getvalue(), captured.getvalue())])
""",
        unbuffered=unbuffered,
        timeout=60,
    )
    assert child.out == b""
    # The outer target got the two tee copies; the inner targets each got their own.
    assert child.err == repr([2 << 20, 1 << 20, 1 << 20, 1 << 20]).encode() + b"\n"


def test_late_output_of_a_child_reaches_the_enclosing_live_block_while_the_gil_is_held() -> None:
    child = run_ok(
        """
import io, subprocess, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
from childlib import report
outer, inner = io.StringIO(), io.StringIO()
with redirect_stdout_fd(outer):
    with redirect_stdout_fd(inner):
        # Outlives the inner block: what it writes after that block is late output, sent to the
        # outer block (in-process: the outer pipe is drained only by the library's threads).
        late = subprocess.Popen(["sh", "-c", "head -c 4000000 /dev/zero | tr '\\\\0' '#'"])
    c_emit(1, 2 << 20, hold_gil=True)
    late.wait()
text = outer.getvalue()
report((inner.getvalue().count("#") + text.count("#"), len(text) - text.count("#")))
""",
        timeout=60,
    )
    assert child.out == b""
    assert child.err == repr((4_000_000, 2 << 20)).encode() + b"\n"


@pytest.mark.parametrize("tee", [False, True])
def test_live_blocks_of_many_threads_with_gil_holding_floods_keep_every_byte(tee: bool) -> None:
    # Blocks overlap across threads and end out of order. Without tee each byte ends up in exactly
    # one place: some block's target, or the real stdout. With tee (every 4th block), a byte also
    # reaches the destination in force when its block began: possibly another block's target.
    child = run_file_ok("threads_of_live_blocks.py", tee, timeout=90)
    total, delivered = eval(child.err)
    if tee:
        assert delivered + len(child.out) >= total
    else:
        assert delivered + len(child.out) == total


def test_a_tee_copy_that_cannot_be_written_is_reported_at_exit() -> None:
    child = run_ok(
        """
import io, os, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write
from childlib import report
full = os.open("/dev/full", os.O_WRONLY)
os.dup2(full, 1)
for target in (None, io.StringIO()):
    try:
        with redirect_stdout_fd(target, tee=True) as got:
            c_write(1, "kept\\n", hold_gil=False)
    except OSError as exc:
        value = got.getvalue()
        report((type(exc).__name__, exc.errno, exc.strerror, value))
    else:
        sys.__stderr__.write("no error\\n")
assert os.path.samestat(os.fstat(1), os.fstat(full))
""",
        timeout=30,
    )
    message = "No space left on device: output of fd 1 could not be copied to its tee destination"
    expected = repr(("OSError", errno.ENOSPC, message, "kept\n")).encode()
    assert child.err.splitlines() == [expected, expected]


def test_many_nested_tee_blocks_with_a_pattern_larger_than_a_pipe() -> None:
    child = run_ok(
        """
import sys
from contextlib import ExitStack
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
from childlib import report
with ExitStack() as stack:
    captures = [stack.enter_context(redirect_stdout_fd(tee=True, encoding=None)) for _ in range(6)]
    c_emit(1, 1 << 20, hold_gil=True)
report({len(c.getbytes()) for c in captures})
""",
        timeout=60,
    )
    assert child.out == (PATTERN * ((1 << 20) // 64))
    assert child.err == repr({1 << 20}).encode() + b"\n"
