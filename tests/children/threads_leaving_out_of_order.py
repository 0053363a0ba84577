"""Thread a enters a capture, thread b enters one inside it, a leaves first, b writes and leaves
(tests/test_nesting.py). Writes "after" to fd 1, prints whether sys.stdout came back, and reports
what each block captured."""

from __future__ import annotations

import sys
import threading

from childlib import report
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write

a_entered, b_entered, a_left = threading.Event(), threading.Event(), threading.Event()
results: dict[str, str] = {}


def a() -> None:
    with redirect_stdout_fd() as out:
        c_write(1, "a1 ")
        a_entered.set()
        b_entered.wait()
        c_write(1, "a2 ")  # fd 1 is b's capture now: lands there
    results["a"] = out.getvalue()
    a_left.set()


def b() -> None:
    a_entered.wait()
    with redirect_stdout_fd() as out:
        c_write(1, "b1 ")
        b_entered.set()
        a_left.wait()
        c_write(1, "b2 ")  # a left first; fd 1 must still be b's capture
    results["b"] = out.getvalue()


threads = [threading.Thread(target=a), threading.Thread(target=b)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
c_write(1, "after\n")
print(sys.stdout is sys.__stdout__)
report(results)
