"""A synchronisation point that finds nothing pending returns at once (no GIL hand-off, one
syscall per block); one that finds anything anywhere still delivers it all: raw writes, libc's
buffer, C++ streams with and without ``sync_with_stdio``, Fortran units."""

from __future__ import annotations

import pytest

from helpers import Emitters, last_report, run_ok

CODE = """
import ctypes, os
from fdredirect import redirect_stdout_fd
from childlib import report
libc = ctypes.CDLL(None)
cxx = ctypes.CDLL({cxx!r})
{setup}
got = []
seen = []
block = redirect_stdout_fd(got.append)
with block:
    for _ in range(3):
        block.sync()  # idle: nothing to deliver
    seen.append("".join(got))
    os.write(1, b"raw|")
    block.sync()
    seen.append("".join(got))
    libc.printf(b"libc, no newline|")
    block.sync()
    seen.append("".join(got))
    cxx.cxx_cout(b"cout|")
    block.sync()
    seen.append("".join(got))
    {fortran}
    block.sync()
    seen.append("".join(got))
    block.sync()
    seen.append("".join(got))
report(seen)
"""


@pytest.mark.parametrize("unsync", [False, True], ids=["cout-synced", "cout-own-buffer"])
@pytest.mark.parametrize("fortran", [False, True], ids=["no-fortran", "fortran"])
def test_each_sync_delivers_what_was_written_before_it(
    emitters: Emitters, unbuffered: bool, unsync: bool, fortran: bool
) -> None:
    code = CODE.format(
        cxx=str(emitters.cxx),
        setup=(f"fortran = ctypes.CDLL({str(emitters.fortran)!r})" if fortran else "")
        + ("\ncxx.cxx_unsync()" if unsync else ""),
        fortran="fortran.fortran_write(1)" if fortran else "os.write(1, b'again|')",
    )
    child = run_ok(code, unbuffered=unbuffered, timeout=60)
    last = "fortran line 1\n" if fortran else "again|"
    steps = ["", "raw|", "libc, no newline|", "cout|", last, ""]
    expected = ["".join(steps[: i + 1]) for i in range(len(steps))]
    assert last_report(child) == expected
    assert b"raw|" not in child.out
