"""Under a finite RLIMIT_FSIZE a memory file fails with EFBIG (and SIGXFSZ kills a process that does
not ignore it) where the original pipe or terminal would not: a capture then goes through a pipe
that the reader drains into memory."""

from __future__ import annotations

import pytest

from fdredirect.testing import pattern
from helpers import last_report, run_ok

LIMITED = """
import resource, signal, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit, c_printf, pattern
from childlib import report
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; a plain C program does not
"""


@pytest.mark.parametrize("hold_gil", [True, False], ids=["gil-held", "gil-released"])
def test_capture_beyond_the_file_size_limit_keeps_every_byte(unbuffered: bool, hold_gil: bool) -> None:
    child = run_ok(
        LIMITED
        + f"""
with redirect_stdout_fd() as out:
    c_printf("flushed C\\n", flush=True)
    c_emit(1, 3 << 20, hold_gil={hold_gil})
    middle = out.getbytes()
    print("python")
    c_emit(1, 1 << 20, hold_gil={hold_gil})
    c_printf("unflushed C\\n")  # flushed by the block's exit, into the capture
expected = b"flushed C\\n" + pattern(3 << 20) + b"python\\n" + pattern(1 << 20) + b"unflushed C\\n"
ok = (middle == expected[: len(middle)] and len(middle) == 10 + (3 << 20), out.getbytes() == expected)
report((ok, out.getvalue()[:12]))
""",
        unbuffered=unbuffered,
        timeout=60,
    )
    assert last_report(child) == ((True, True), "flushed C\n01")
    assert child.out == b""


def test_tee_capture_beyond_the_file_size_limit(unbuffered: bool) -> None:
    child = run_ok(
        LIMITED
        + """
with redirect_stdout_fd(tee=True) as out:
    c_printf("line\\n", flush=True)
    c_emit(1, 2 << 20, hold_gil=True)
report(out.getbytes() == b"line\\n" + pattern(2 << 20))
""",
        unbuffered=unbuffered,
        timeout=60,
    )
    assert child.err.strip().splitlines()[-1] == b"True"
    assert child.out == b"line\n" + pattern(2 << 20)


def test_a_path_target_still_honours_the_limit() -> None:
    """A file the user named is a file: its limit is the user's."""
    child = run_ok(
        LIMITED.replace("signal.SIG_DFL", "signal.SIG_IGN")
        + """
import os, tempfile
path = os.path.join(tempfile.mkdtemp(), "out")
try:
    with redirect_stdout_fd(path):
        c_emit(1, 2 << 20)
    result = "no error"
except OSError as e:
    result = e.errno
report((result, os.path.getsize(path)))
""",
        timeout=60,
    )
    assert last_report(child) == (27, 1 << 20)
