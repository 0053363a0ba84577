"""Process-level behaviour: fork, children outliving a block, a closed fd 1, terminal buffering,
large GIL-holding writers."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import child_env, last_report, run_file_ok, run_ok


def test_fork_inside_block(unbuffered: bool) -> None:
    child = run_ok(
        """
import os, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_printf, c_write
from childlib import report
with redirect_stdout_fd() as out:
    c_printf("parent before fork\\n")    # unflushed: must not be written twice
    pid = os.fork()
    if pid == 0:
        c_write(1, "child inside\\n")
        with redirect_stdout_fd() as nested:
            c_write(1, "child nested\\n")
        os._exit(0 if nested.getvalue() == "child nested\\n" else 3)
    _, status = os.waitpid(pid, 0)
    c_write(1, "parent after fork\\n")
report((os.WEXITSTATUS(status), out.getvalue()))
""",
        unbuffered=unbuffered,
    )
    status, captured = last_report(child)
    assert status == 0
    assert captured == "parent before fork\nchild inside\nparent after fork\n"
    assert b"DeprecationWarning" not in child.err  # no thread of ours: fork() is not discouraged


def test_forked_child_leaving_an_inherited_block_restores_only(unbuffered: bool) -> None:
    child = run_ok(
        """
import os, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write
from childlib import report
block = redirect_stdout_fd()
out = block.__enter__()
c_write(1, "parent 1\\n")
pid = os.fork()
if pid == 0:
    c_write(1, "child in block\\n")
    block.__exit__(None, None, None)    # restore only: never read or truncate the parent's file
    c_write(1, "child after block\\n")
    os._exit(0 if out.getvalue() == "" else 4)
_, status = os.waitpid(pid, 0)
c_write(1, "parent 2\\n")
block.__exit__(None, None, None)
report((os.WEXITSTATUS(status), out.getvalue()))
""",
        unbuffered=unbuffered,
    )
    status, captured = last_report(child)
    assert status == 0
    assert captured == "parent 1\nchild in block\nparent 2\n"
    assert child.out == b"child after block\n"


def test_background_child_outliving_the_block_does_not_delay_exit() -> None:
    child = run_ok(
        """
import subprocess, sys, time
from fdredirect import redirect_stdout_fd
from childlib import report
start = time.monotonic()
with redirect_stdout_fd() as out:
    print("inside")
    bg = subprocess.Popen(["sh", "-c", "sleep 2; echo late"])
took = time.monotonic() - start
bg.wait()
report((took, out.getvalue()))
"""
    )
    took, captured = eval(child.err.strip())
    assert took < 1.0
    assert captured == "inside\n"  # late output of a capture's child is dropped (documented)
    assert b"late" not in child.out


def test_closed_fd_1_is_closed_again_after_the_block(unbuffered: bool) -> None:
    child = run_ok(
        """
import os, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write
from childlib import report
os.close(1)
with redirect_stdout_fd() as out:
    c_write(1, "works while closed\\n")
try:
    os.fstat(1)
    state = "open"
except OSError:
    state = "closed"
report((state, out.getvalue()))
""",
        unbuffered=unbuffered,
    )
    assert eval(child.err.strip()) == ("closed", "works while closed\n")


def test_c_stdout_first_used_inside_a_block_stays_line_buffered_on_a_terminal() -> None:
    """C stdio picks its buffering at first use; inside a block that would be "fully buffered"
    for the rest of the process. On a terminal the library makes it line-buffered first."""
    code = textwrap.dedent(
        """
        import sys, time
        from fdredirect import redirect_stdout_fd
        from fdredirect.testing import c_printf
        with redirect_stdout_fd():
            c_printf("first C output, inside\\n")
        c_printf("after the block\\n")   # no flush: must still appear at the newline
        time.sleep(3)
        """
    )
    # PYTHONUNBUFFERED unset: with it set, CPython makes C stdout unbuffered anyway.
    env = child_env(unbuffered=False)
    leader, follower = os.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 2.5
    while b"after the block" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            seen += os.read(leader, 1024)
    proc.kill()
    proc.wait()
    os.close(leader)
    assert b"after the block" in seen
    assert b"inside" not in seen


@pytest.mark.slow
def test_one_gib_from_c_holding_the_gil_with_bounded_memory() -> None:
    child = run_file_ok("one_gib_capture.py", timeout=300)
    ok, ratio = eval(child.err.strip())
    assert ok
    assert ratio < 1.3, ratio


def test_capture_and_file_blocks_start_no_thread() -> None:
    """Only live targets and tee need threads; a process that captures stays single-threaded
    (CPython >= 3.12 discourages fork() in multi-threaded processes)."""
    child = run_ok(
        """
import os
from fdredirect import redirect_stdout_fd, redirect_stderr_fd, DEVNULL, STDOUT
from fdredirect.testing import c_write
for _ in range(100):
    with redirect_stdout_fd() as out, redirect_stderr_fd(STDOUT):
        c_write(1, "x")
    with redirect_stdout_fd(DEVNULL):
        pass
print(len(os.listdir("/proc/self/task")))
"""
    )
    assert child.out == b"1\n"
