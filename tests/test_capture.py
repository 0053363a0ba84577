"""Capture: everything written inside the block lands in it, nothing from before or after does,
in the order the bytes reach the fd. Checked in child interpreters against their real fds."""

from __future__ import annotations

import sys

import pytest

import fdredirect
from fdredirect.testing import c_printf, c_write
from helpers import Child, last_report, run_ok

PRELUDE = """
import os, sys, subprocess
from fdredirect import redirect_stdout_fd, redirect_stderr_fd, STDOUT, DEVNULL
from fdredirect.testing import c_printf, c_fprintf_stderr, c_write, c_emit, pattern
from childlib import report
"""


def run_script(body: str, **kwargs: object) -> Child:
    """``run_ok`` of ``body`` after PRELUDE (the imports)."""
    return run_ok(PRELUDE + body, **kwargs)


def test_every_writer_is_captured_and_nothing_else(unbuffered: bool) -> None:
    child = run_script(
        """
print("py before"); c_printf("c before\\n")
with redirect_stdout_fd() as out:
    print("py inside")
    c_printf("c unflushed inside\\n")
    c_printf("c flushed inside\\n", flush=True)
    c_write(1, "raw inside\\n")
    os.system("echo child inside")
    subprocess.run(["echo", "subprocess inside"], check=True)
print("py after"); c_printf("c after\\n")
report(out.getbytes())
""",
        unbuffered=unbuffered,
    )
    got = last_report(child)
    for line in [b"py inside", b"c unflushed inside", b"c flushed inside", b"raw inside", b"child inside"]:
        assert line + b"\n" in got
    assert b"subprocess inside\n" in got
    assert b"before" not in got
    assert b"after" not in got
    assert child.out == b"py before\nc before\npy after\nc after\n"


def test_order_is_exact_for_python_and_flushed_c(unbuffered: bool) -> None:
    child = run_script(
        """
with redirect_stdout_fd() as out:
    for i in range(200):
        print(f"py {i}")
        c_printf(f"c {i}\\n", flush=True)
        c_write(1, f"w {i}\\n")
report(out.getbytes())
""",
        unbuffered=unbuffered,
    )
    expected = b"".join(b"py %d\nc %d\nw %d\n" % (i, i, i) for i in range(200))
    assert last_report(child) == expected
    assert child.out == b""


def test_unflushed_c_output_arrives_by_the_end_of_the_block(unbuffered: bool) -> None:
    child = run_script(
        """
with redirect_stdout_fd() as out:
    c_printf("one\\n")
    c_write(1, "two\\n")
    c_printf("three")
report(out.getbytes())
""",
        unbuffered=unbuffered,
    )
    got = last_report(child)
    # With unbuffered stdio the printf bytes arrive at once; fully buffered, at the block's end.
    assert got in (b"one\ntwo\nthree", b"two\none\nthree")
    assert got == (b"one\ntwo\nthree" if unbuffered else b"two\none\nthree")


def test_getvalue_inside_the_block_sees_everything_so_far(unbuffered: bool) -> None:
    child = run_script(
        """
with redirect_stdout_fd() as out:
    c_printf("unflushed\\n")
    print("py")
    inside = out.getvalue()
    c_write(1, "more\\n")
sys.__stderr__.write("INSIDE=" + repr(inside) + "\\n")
report(out.getbytes())
""",
        unbuffered=unbuffered,
    )
    inside = next(x for x in child.err.splitlines() if x.startswith(b"INSIDE="))
    # getvalue() flushes libc first, so the unflushed line is there, after the write-through print
    # when stdio is fully buffered.
    first, second = (b"unflushed", b"py") if unbuffered else (b"py", b"unflushed")
    assert inside == b"INSIDE='%s\\n%s\\n'" % (first, second)
    assert last_report(child) == b"%s\n%s\nmore\n" % (first, second)


def test_stderr_capture_and_stdout_untouched(unbuffered: bool) -> None:
    child = run_script(
        """
with redirect_stderr_fd() as err:
    print("to stdout")
    print("py err", file=sys.stderr)
    c_fprintf_stderr("c err\\n")
    c_write(2, "raw err\\n")
report(err.getbytes())
""",
        unbuffered=unbuffered,
    )
    assert last_report(child) == b"py err\nc err\nraw err\n"
    assert child.out == b"to stdout\n"


def test_stderr_to_stdout_is_one_stream_in_write_order(unbuffered: bool) -> None:
    child = run_script(
        """
with redirect_stdout_fd() as out, redirect_stderr_fd(STDOUT):
    for i in range(100):
        print(f"o{i}")
        print(f"e{i}", file=sys.stderr)
        c_fprintf_stderr(f"ce{i}\\n")
        c_printf(f"co{i}\\n", flush=True)
c_fprintf_stderr("after\\n")
report(out.getbytes())
""",
        unbuffered=unbuffered,
    )
    expected = b"".join(b"o%d\ne%d\nce%d\nco%d\n" % (i, i, i, i) for i in range(100))
    assert last_report(child) == expected
    assert child.err.startswith(b"after\n")


def test_exception_inside_block_restores_and_keeps_capture(unbuffered: bool) -> None:
    child = run_script(
        """
try:
    with redirect_stdout_fd() as out:
        c_printf("before the error\\n")
        raise KeyError("boom")
except KeyError:
    pass
print("after")
report(out.getbytes())
""",
        unbuffered=unbuffered,
    )
    assert last_report(child) == b"before the error\n"
    assert child.out == b"after\n"


def test_keyboard_interrupt_inside_block_restores(unbuffered: bool) -> None:
    child = run_script(
        """
import signal
try:
    with redirect_stdout_fd() as out:
        print("inside")
        os.kill(os.getpid(), signal.SIGINT)
        import time; time.sleep(5)
except KeyboardInterrupt:
    pass
print("after")
report(out.getbytes())
""",
        unbuffered=unbuffered,
    )
    assert last_report(child) == b"inside\n"
    assert child.out == b"after\n"


def test_bytes_and_text_decoding() -> None:
    child = run_script(
        """
with redirect_stdout_fd(encoding=None) as raw:
    c_write(1, b"\\xff\\xfe ok \\xc3\\xa9")
with redirect_stdout_fd(errors="strict") as strict:
    c_write(1, b"\\xff")
with redirect_stdout_fd(encoding="latin-1") as latin:
    print("caf\\u00e9")
    c_write(1, b"\\xe9")
with redirect_stdout_fd() as replaced:
    c_write(1, b"\\xff ok")
try:
    strict.getvalue()
except UnicodeDecodeError:
    sys.__stderr__.write("STRICT_RAISED\\n")
sys.__stderr__.write(repr((raw.getbytes(), raw.getvalue(), latin.getvalue(), replaced.getvalue())) + "\\n")
"""
    )
    assert b"STRICT_RAISED" in child.err
    assert child.err.splitlines()[-1].decode() == repr(
        (b"\xff\xfe ok \xc3\xa9", "\ufffd\ufffd ok \u00e9", "caf\u00e9\n\u00e9", "\ufffd ok")
    )


def test_python_writes_are_captured_when_sys_stdout_is_not_fd_1() -> None:
    child = run_script(
        """
import io
replacement = io.StringIO()
sys.stdout = replacement
with redirect_stdout_fd() as out:
    print("into the block")
    c_printf("c\\n")
print("back in the StringIO")
assert sys.stdout is replacement
sys.__stderr__.write("REPLACEMENT=" + repr(replacement.getvalue()) + "\\n")
report(out.getbytes())
"""
    )
    assert last_report(child) == b"into the block\nc\n"
    assert b"REPLACEMENT='back in the StringIO\\n'" in child.err


def test_inside_pytests_own_capture(capfd: pytest.CaptureFixture[str]) -> None:
    """Users run under pytest's fd capture: the block must capture there and restore it after."""
    print("before")
    saved_stdout = sys.stdout
    with fdredirect.redirect_stdout_fd() as out:
        print("py")
        c_printf("c\n")
        c_write(1, "raw\n")
    assert sys.stdout is saved_stdout
    print("after")
    c_printf("c after\n", flush=True)
    assert out.getvalue() == "py\nc\nraw\n"
    seen = capfd.readouterr()
    assert seen.out == "before\nafter\nc after\n"


def test_inside_pytests_sys_capture(capsys: pytest.CaptureFixture[str]) -> None:
    print("before")
    with fdredirect.redirect_stdout_fd() as out:
        print("py")
        c_write(1, "raw\n")
    print("after")
    assert out.getvalue() == "py\nraw\n"
    assert capsys.readouterr().out == "before\nafter\n"
