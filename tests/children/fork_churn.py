"""Three threads loop over tee-in-live blocks while the main thread forks 80 times; every child
opens a live block of its own and exits (tests/test_stress.py). A child stuck for 2 s counts as hung
and is killed. Reports how many children were ok, bad or hung."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import warnings

from childlib import report
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit

warnings.simplefilter("ignore", DeprecationWarning)
stop = threading.Event()


def churn(i: int) -> None:
    while not stop.is_set():
        with redirect_stdout_fd(io.StringIO(), tee=i % 2 == 0), redirect_stdout_fd(io.StringIO(), tee=True):
            c_emit(1, 100_000, hold_gil=i % 2 == 1)


def in_child() -> None:
    try:
        sink = io.StringIO()
        with redirect_stdout_fd(sink):
            print("c")
        os._exit(0 if sink.getvalue() == "c\n" else 3)
    except BaseException:
        os._exit(4)


def wait(pid: int) -> str:
    deadline = time.monotonic() + 2
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "ok" if os.waitstatus_to_exitcode(status) == 0 else "bad"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.005)


devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)
threads = [threading.Thread(target=churn, args=(i,)) for i in range(3)]
for thread in threads:
    thread.start()
results = {"ok": 0, "bad": 0, "hung": 0}
for _ in range(80):
    time.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        in_child()
    results[wait(pid)] += 1
stop.set()
for thread in threads:
    thread.join()
report(results)
