"""C++ and Fortran runtimes: their buffers are flushed on every switch, found per loaded object."""

from __future__ import annotations

from helpers import Emitters, last_report, run_ok

CODE = """
import ctypes, sys
from fdredirect import redirect_stdout_fd, redirect_stderr_fd
from childlib import report
cxx = ctypes.CDLL({cxx!r})
fortran = ctypes.CDLL({fortran!r})
{setup}
print("py before")
with redirect_stdout_fd() as out:
    cxx.cxx_cout(b"cout inside\\n")
    fortran.fortran_write(1)
    cxx.cxx_cout(b"cout again\\n")
with redirect_stderr_fd() as err:
    cxx.cxx_clog(b"clog inside\\n")
cxx.cxx_cout(b"cout after\\n")
fortran.fortran_write(2)
print("py after", flush=True)
report((out.getvalue(), err.getvalue()))
"""


def _run(emitters: Emitters, unbuffered: bool, setup: str = "") -> tuple[bytes, str, str]:
    child = run_ok(
        CODE.format(cxx=str(emitters.cxx), fortran=str(emitters.fortran), setup=setup), unbuffered=unbuffered
    )
    out, err = last_report(child)
    return child.out, out, err


def test_cout_clog_and_fortran_are_flushed_into_the_block(emitters: Emitters, unbuffered: bool) -> None:
    real, out, err = _run(emitters, unbuffered)
    # Fortran's unit 6 has its own buffer, flushed at the switch: its line comes after the C++
    # lines written to libc's stdout, never outside the block.
    assert sorted(out.splitlines()) == ["cout again", "cout inside", "fortran line 1"]
    assert err == "clog inside\n"
    assert b"inside" not in real
    assert b"again" not in real
    assert b"py before\n" in real
    # What is written after the blocks is flushed only at exit by the runtimes: all of it arrives.
    assert sorted(real.decode().splitlines()) == ["cout after", "fortran line 2", "py after", "py before"]


def test_cout_without_sync_with_stdio(emitters: Emitters, unbuffered: bool) -> None:
    real, out, _ = _run(emitters, unbuffered, setup="cxx.cxx_unsync()")
    assert sorted(out.splitlines()) == ["cout again", "cout inside", "fortran line 1"]
    assert b"inside" not in real


def test_runtimes_loaded_after_the_first_switch_are_found(emitters: Emitters) -> None:
    child = run_ok(
        f"""
import ctypes, sys
from fdredirect import redirect_stdout_fd
from childlib import report
with redirect_stdout_fd():
    pass
cxx = ctypes.CDLL({str(emitters.cxx)!r})
cxx.cxx_unsync()
with redirect_stdout_fd() as out:
    cxx.cxx_cout(b"late-loaded cout\\n")
report(out.getvalue())
""",
        unbuffered=False,
    )
    assert child.err.strip() == b"'late-loaded cout\\n'"
