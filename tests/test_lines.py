"""``lines=True``: a callable target gets one call per line, without its line ending, so functions
like ``tqdm.write`` or ``rich``'s ``console.print`` can be the target directly."""

from __future__ import annotations

import ast
import io
import logging
import re

import pytest

from conftest import open_fds, run_ok
from fdredirect import redirect_stderr_fd, redirect_stdout_fd


def lines_of(code: str, *, unbuffered: bool) -> list[object]:
    """Run ``code`` in a child that has ``got`` (a list) and prints ``repr(got)`` to stderr at the
    end; nothing may reach the real stdout."""
    child = run_ok(
        "import sys\nfrom fdredirect import redirect_stdout_fd, redirect_stderr_fd\n"
        "from fdredirect.testing import c_printf, c_write, c_fprintf_stderr\n"
        "got = []\n" + code + "\nsys.stderr.write(repr(got))\n",
        unbuffered=unbuffered,
        timeout=60,
    )
    assert child.out == b""
    return list(ast.literal_eval(child.err.decode()))


def test_one_call_per_line_python_and_c_in_order_partial_last_line_at_the_end(unbuffered: bool) -> None:
    got = lines_of(
        """
with redirect_stdout_fd(got.append, lines=True):
    print("one")
    c_printf("two\\nthr")  # not flushed: the switch back flushes it
    c_write(1, "ee\\r\\n\\nfour\\r\\nfi")
    print("ve", end="")
""",
        unbuffered=unbuffered,
    )
    if unbuffered:
        assert got == ["one", "two", "three", "", "four", "five"]
    else:
        # libc's buffer reaches the pipe at the flush of the switch back, after the raw writes.
        assert got == ["one", "ee", "", "four", "fivetwo", "thr"]


def test_bytes_lines_with_encoding_none_and_a_character_split_across_writes(unbuffered: bool) -> None:
    got = lines_of(
        """
with redirect_stdout_fd(got.append, lines=True, encoding=None):
    c_write(1, b"caf\\xc3")
    c_write(1, b"\\xa9\\r\\nbin\\xff\\n")
with redirect_stdout_fd(got.append, lines=True):
    c_write(1, b"caf\\xc3")
    c_write(1, b"\\xa9\\n\\xff\\n")
""",
        unbuffered=unbuffered,
    )
    assert got == [b"caf\xc3\xa9", b"bin\xff", "café", "\ufffd"]


def test_stderr_lines_and_a_target_that_adds_its_own_newline_round_trips(unbuffered: bool) -> None:
    child = run_ok(
        """
import os, sys
from fdredirect import redirect_stderr_fd
from fdredirect.testing import c_fprintf_stderr
out = os.fdopen(os.dup(1), "w")
def write(line):  # like tqdm.write: prints the line and a newline of its own
    out.write(line + "\\n")
    out.flush()
with redirect_stderr_fd(write, lines=True):
    c_fprintf_stderr("warn 1\\nwarn 2\\n")
    print("py", file=sys.stderr)
""",
        unbuffered=unbuffered,
        timeout=60,
    )
    assert child.out == b"warn 1\nwarn 2\npy\n"
    assert child.err == b""


def test_a_long_line_without_newline_comes_in_one_mib_parts(unbuffered: bool) -> None:
    got = lines_of(
        """
sizes = []
with redirect_stdout_fd(lambda line: sizes.append((len(line), line[:1], line[-1:])), lines=True):
    c_write(1, b"a" * (1 << 20) + b"b" * ((1 << 20) + 5) + b"\\nc")
got = sizes
""",
        unbuffered=unbuffered,
    )
    assert got == [(1 << 20, "a", "a"), (1 << 20, "b", "b"), (5, "b", "b"), (1, "c", "c")]


def test_the_targets_exception_is_raised_at_exit_and_later_lines_are_dropped() -> None:
    got = lines_of(
        """
def target(line):
    got.append(line)
    if line == "bad":
        raise RuntimeError("target failed")
try:
    with redirect_stdout_fd(target, lines=True):
        print("ok")
        print("bad")
        print("after")
except RuntimeError as exc:
    got.append(f"raised {exc}")
""",
        unbuffered=True,
    )
    assert got == ["ok", "bad", "raised target failed"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (io.StringIO(), "lines=True is for callable targets, not StringIO"),
        (None, "lines=True is for callable targets, not NoneType"),
        (logging.getLogger("fdredirect.test.lines"), "lines=True is for callable targets, not Logger"),
    ],
)
@pytest.mark.parametrize("redirect", [redirect_stdout_fd, redirect_stderr_fd])
def test_lines_for_a_target_that_is_not_a_callable_is_refused_before_anything_is_touched(
    redirect: type[redirect_stdout_fd], target: object, message: str
) -> None:
    fds = open_fds()
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        redirect(target, lines=True)
    assert str(caught.value) == message
    assert open_fds() == fds


def test_lines_must_be_a_bool() -> None:
    fds = open_fds()
    with pytest.raises(TypeError, match="must be a bool") as caught:
        redirect_stdout_fd(print, lines="yes")  # type: ignore[arg-type]
    assert str(caught.value) == "lines must be a bool, not str"
    assert open_fds() == fds
