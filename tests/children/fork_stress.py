"""fork() while other threads enter, leave and deliver (tests/test_fork_stress.py). Argument: the
number of forks (200). Prints ``repr((problems, fd2_sinks, main_lines, tee_lines))`` to the real
stderr as its last line."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
import warnings
from typing import Any

from childlib import report
from fdredirect import redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_write

# CPython >= 3.12 discourages fork() with threads running: forking with threads is what is tested.
warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)

FORKS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
stop = threading.Event()
problems: list[tuple[str, int, str | int]] = []
fd2_sinks: list[str] = []  # everything the fd 2 blocks received, to count each fd 2 line
tee_lines: list[str] = []  # what the fd 1 tee blocks sent on to the real fd 1


def fd1_worker() -> None:
    # The only thread on fd 1: each block must hold exactly its own lines.
    i = 0
    while not stop.is_set():
        kind = i % 3
        expected = f"w1 {i} c\n" + f"w1 {i} py\n"
        if kind == 0:
            with redirect_stdout_fd() as out:
                c_write(1, f"w1 {i} c\n")
                print(f"w1 {i} py")
            got = out.getvalue()
        elif kind == 1:
            stream = io.StringIO()
            with redirect_stdout_fd(stream):
                c_write(1, f"w1 {i} c\n")
                print(f"w1 {i} py")
            got = stream.getvalue()
        else:
            with redirect_stdout_fd(tee=True) as out:
                c_write(1, f"w1 {i} c\n")
                print(f"w1 {i} py")
            got = out.getvalue()
            tee_lines.append(expected)
        if got != expected:
            problems.append(("fd1", i, got))
        i += 1


def fd2_worker() -> None:
    i = 0
    while not stop.is_set():
        if i % 2:
            stream = io.StringIO()
            with redirect_stderr_fd(stream):
                c_write(2, f"w2 {i}\n")
            fd2_sinks.append(stream.getvalue())
        else:
            with redirect_stderr_fd() as out:
                c_write(2, f"w2 {i}\n")
            fd2_sinks.append(out.getvalue())
        i += 1


def in_child(n: int, inherited: list[Any]) -> None:
    # Leave what this thread had entered before the fork (the sinks are the parent's: restore
    # only), then open new blocks (new reader and delivery threads), write, and check. Some
    # children exit normally: the exit handler then meets the other threads' inherited blocks.
    for block in reversed(inherited):
        block.__exit__(None, None, None)
    stream = io.StringIO()
    with redirect_stdout_fd(stream):
        c_write(1, "child live\n")
    with redirect_stderr_fd(tee=False) as out:
        c_write(2, "child capture\n")
        print("child py", file=sys.stderr)
    ok = stream.getvalue() == "child live\n" and out.getvalue() == "child capture\nchild py\n"
    if n % 10 == 9:
        sys.exit(0 if ok else 3)
    os._exit(0 if ok else 3)


def wait_child(pid: int) -> int | str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


workers = [threading.Thread(target=fd1_worker), threading.Thread(target=fd2_worker)]
for t in workers:
    t.start()
main_lines = []
for n in range(FORKS):
    kind = n % 3
    stream = io.StringIO()
    # Capture, live, and live with tee (its copies go to whatever fd 2 was: counted twice).
    blocks = [redirect_stderr_fd() if kind == 0 else redirect_stderr_fd(stream, tee=kind == 2)]
    results = [b.__enter__() for b in blocks]
    c_write(2, f"main {n}\n")
    main_lines.append(f"main {n}\n")
    pid = os.fork()
    if pid == 0:
        in_child(n, blocks)
    for block in reversed(blocks):
        block.__exit__(None, None, None)
    fd2_sinks.append(results[0].getvalue() if kind == 0 else stream.getvalue())
    code = wait_child(pid)
    if code != 0:
        problems.append(("child", n, code))
stop.set()
for t in workers:
    t.join()
sys.stdout.flush()
report((problems, fd2_sinks, main_lines, tee_lines))
