"""``redirect_fds``: fd 1 and fd 2 in one block, separately or merged in exact write order."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import open_fds, run_ok
from fdredirect import STDOUT, redirect_fds, redirect_stderr_fd, redirect_stdout_fd
from fdredirect._native import Redirects
from fdredirect._targets import ACCEPTED

PRELUDE = """
import asyncio, io, os, subprocess, sys
from fdredirect import STDOUT, redirect_fds
from fdredirect.testing import c_fprintf_stderr, c_printf, c_write
def report(*values):
    sys.__stdout__.write("".join(f"{v!r}\\n" for v in values))
    sys.__stdout__.flush()
"""

CHILD = "os.system(\"printf 'child-o\\\\n'; printf 'child-e\\\\n' >&2\")"


def run(code: str, unbuffered: bool) -> tuple[list[str], bytes]:
    """Run ``code`` after the prelude; return the lines it reported and what reached fd 2."""
    child = run_ok(PRELUDE + code, unbuffered=unbuffered, timeout=60)
    return child.out.decode().splitlines(), child.err


def test_both_streams_captured_separately(unbuffered: bool) -> None:
    lines, err = run(
        f"""
with redirect_fds() as (out, err):
    print("py-o")
    print("py-e", file=sys.stderr)
    c_printf("c-o\\n", flush=True)
    c_fprintf_stderr("c-e\\n")
    {CHILD}
    c_write(1, "raw-o\\n")
    c_write(2, "raw-e\\n")
    c_printf("unflushed-o\\n")
print("after-o")
print("after-e", file=sys.stderr)
report(out.getbytes(), err.getbytes())
""",
        unbuffered,
    )
    assert lines == [
        "after-o",
        repr(b"py-o\nc-o\nchild-o\nraw-o\nunflushed-o\n"),
        repr(b"py-e\nc-e\nchild-e\nraw-e\n"),
    ]
    assert err == b"after-e\n"


def test_merged_is_one_stream_in_exact_write_order(unbuffered: bool) -> None:
    lines, err = run(
        f"""
with redirect_fds(stderr=STDOUT) as (out, err):
    for i in range(50):
        print(f"o{{i}}")
        print(f"e{{i}}", file=sys.stderr)
        c_fprintf_stderr(f"ce{{i}}\\n")
        c_printf(f"co{{i}}\\n", flush=True)
    {CHILD}
    subprocess.run(["sh", "-c", "echo sub-o; echo sub-e >&2; echo sub-o2"], check=True)
    c_printf("unflushed\\n")
print("after-o")
c_fprintf_stderr("after-e\\n")
report(out.getbytes(), err)
""",
        unbuffered,
    )
    expected = b"".join(b"o%d\ne%d\nce%d\nco%d\n" % (i, i, i, i) for i in range(50))
    expected += b"child-o\nchild-e\nsub-o\nsub-e\nsub-o2\nunflushed\n"
    assert lines == ["after-o", repr(expected), "None"]
    assert err == b"after-e\n"


def test_merged_into_a_live_target_with_tee(unbuffered: bool) -> None:
    lines, err = run(
        """
buf = io.StringIO()
with redirect_fds(buf, STDOUT, tee=True) as (out, err):
    print("1")
    c_fprintf_stderr("2\\n")
    print("3", file=sys.stderr)
    c_printf("4\\n", flush=True)
report(out is buf, err, buf.getvalue())
""",
        unbuffered,
    )
    # The tee copy of the one stream goes to where stdout pointed; stderr's destination gets nothing.
    assert lines == ["1", "2", "3", "4", "True", "None", repr("1\n2\n3\n4\n")]
    assert err == b""


def test_separate_targets_path_callable_and_tee(tmp_path: Path, unbuffered: bool) -> None:
    log = tmp_path / "out.log"
    lines, err = run(
        f"""
pieces = []
with redirect_fds({str(log)!r}, pieces.append, tee=True) as (out, err):
    print("py-o")
    c_fprintf_stderr("c-e\\n")
    c_printf("c-o\\n")
report(out, err == pieces.append, "".join(pieces))
""",
        unbuffered,
    )
    assert lines == ["py-o", "c-o", repr(str(log)), "True", repr("c-e\n")]
    assert err == b"c-e\n"
    assert log.read_bytes() == b"py-o\nc-o\n"


def test_decorator_async_with_reuse_and_nesting(unbuffered: bool) -> None:
    lines, _ = run(
        """
both = redirect_fds(stderr=STDOUT)

@redirect_fds(stdout=io.StringIO(), stderr=io.StringIO())
def plain():
    print("plain-o")
    c_fprintf_stderr("plain-e\\n")
    return sys.stdout.fileno()

@both
async def coro():
    print("coro")
    return 7

async def main():
    async with redirect_fds() as (out, err):
        print("async-o")
        c_fprintf_stderr("async-e\\n")
    report(out.getvalue(), err.getvalue())

with both as (outer, _):
    print("outer")
    with both as (inner, _):
        c_fprintf_stderr("inner\\n")
    print("outer again")
report(plain(), asyncio.run(coro()), outer.getvalue(), inner.getvalue())
asyncio.run(main())
""",
        unbuffered,
    )
    assert lines == ["1", "7", repr("outer\nouter again\n"), repr("inner\n"), repr("async-o\n"), repr("async-e\n")]


def test_second_switch_failing_undoes_the_first(unbuffered: bool) -> None:
    lines, err = run(
        """
import errno
fds = lambda: sorted(os.listdir("/proc/self/fd"))
before = (fds(), os.fstat(1).st_ino, os.fstat(2).st_ino)
closed = 1000
try:
    with redirect_fds(None, closed) as (out, err):
        print("never")
except OSError as exc:
    report(type(exc).__name__, exc.errno == errno.EBADF, str(exc))
report(before == (fds(), os.fstat(1).st_ino, os.fstat(2).st_ino), sys.stdout is sys.__stdout__)
print("stdout works")
c_fprintf_stderr("stderr works\\n")
""",
        unbuffered,
    )
    assert lines == [
        "'OSError'",
        "True",
        repr("[Errno 9] Bad file descriptor: fd 1000"),
        "True",
        "True",
        "stdout works",
    ]
    assert err == b"stderr works\n"


def test_exit_restores_both_when_one_target_raises(unbuffered: bool) -> None:
    lines, err = run(
        """
def failing(text):
    raise KeyError(text)
try:
    with redirect_fds(None, failing) as (out, err):
        print("kept")
        c_fprintf_stderr("refused\\n")
except KeyError as exc:
    report(exc.args)
report(out.getvalue(), sys.stdout is sys.__stdout__, sys.stderr is sys.__stderr__)
print("stdout works")
c_fprintf_stderr("stderr works\\n")
""",
        unbuffered,
    )
    assert lines == [repr(("refused\n",)), repr("kept\n"), "True", "True", "stdout works"]
    assert err == b"stderr works\n"


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def _stdio() -> tuple[int, int, int]:
    return open_fds(), os.fstat(1).st_ino, os.fstat(2).st_ino


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"stdout": STDOUT},
            ValueError,
            "stdout=STDOUT: STDOUT is a target for stderr only (stderr=STDOUT sends stderr to stdout)",
        ),
        ({"stderr": True}, TypeError, f"target must be {ACCEPTED}, not bool"),
        ({"stdout": -7}, ValueError, "invalid target -7: fds are >= 0; the special targets are DEVNULL and STDOUT"),
        ({"stderr": object()}, TypeError, f"target must be {ACCEPTED}, not object"),
        ({"encoding": 5}, TypeError, "encoding must be a str or None, not int"),
        ({"encoding": "no-such-codec"}, LookupError, "unknown encoding: no-such-codec"),
        ({"tee": "yes"}, TypeError, "tee must be a bool, not str"),
        ({"level": "INFO"}, TypeError, "level must be an int (a logging level), not str"),
    ],
)
def test_bad_input_is_refused_before_anything_is_touched(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    before = _stdio()
    with pytest.raises(error, match=exactly(message)):
        redirect_fds(**kwargs)  # type: ignore[arg-type]
    assert _stdio() == before


def test_merging_into_a_logger_that_writes_to_stderr_is_refused() -> None:
    logger = logging.getLogger("fdredirect.test.both")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    try:
        before = _stdio()
        message = (
            f"logger 'fdredirect.test.both' has a handler writing to stderr ({handler!r}): its records would be "
            "redirected back into the logger, an endless loop. Log to another stream or a file"
        )
        with pytest.raises(ValueError, match=exactly(message)):
            redirect_fds(logger, STDOUT)
        assert _stdio() == before
    finally:
        logger.removeHandler(handler)


def test_the_native_pair_checks_its_halves() -> None:
    with pytest.raises(ValueError, match=exactly("Redirects takes a redirect of fd 1, then one of fd 2")):
        Redirects(redirect_stderr_fd(), redirect_stdout_fd(), False)


def test_repr_and_halves() -> None:
    both = redirect_fds(os.devnull, STDOUT)
    assert repr(both) == f"redirect_fds({os.devnull!r}, -2)"
    assert (both.stdout.fd, both.stderr.fd) == (1, 2)


def test_an_interrupt_during_the_second_switch_undoes_the_first(unbuffered: bool) -> None:
    lines, err = run(
        """
import io
stdout_then = os.fstat(1).st_ino

class Interrupting(io.StringIO):
    # Raises from flush() once fd 1 is switched: in the middle of entering both.
    def flush(self):
        if os.fstat(1).st_ino != stdout_then:
            raise KeyboardInterrupt("flush")

fds = lambda: sorted(os.listdir("/proc/self/fd"))
before = fds()
original_stderr = sys.stderr
sys.stderr = Interrupting()
try:
    with redirect_fds() as (out, err):
        print("never")
except KeyboardInterrupt as exc:
    caught = exc.args
stderr_kept = sys.stderr
sys.stderr = original_stderr
report(caught, os.fstat(1).st_ino == stdout_then, before == fds(), isinstance(stderr_kept, Interrupting))
print("stdout works")
""",
        unbuffered,
    )
    assert lines == [repr(("flush",)), "True", "True", "True", "stdout works"]
    assert err == b""
