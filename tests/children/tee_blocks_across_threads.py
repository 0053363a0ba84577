"""Thread a's tee block is left while thread b's tee block, opened inside it, is still open
(tests/test_stress_regressions.py). Arguments: the files for the real stdout and stderr and for the
report, then the kind of a's and of b's block (``capture`` or ``live``). Reports how many bytes
each block's target received."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable

from childlib import real_fds_to_files, reporter_to
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit

out, err, result, outer, inner = sys.argv[1:]
real_fds_to_files(out, err)
report = reporter_to(result)
a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
got: dict[str, int] = {}


def run(name: str, kind: str, before: int, after: Callable[[], None]) -> None:
    sink = io.StringIO() if kind == "live" else None
    with redirect_stdout_fd(sink, tee=True) as captured:
        c_emit(1, before, hold_gil=True)
        after()
    got[name] = len(sink.getvalue() if sink else captured.getvalue())


def a_after() -> None:
    a_in.set()
    b_in.wait()


def b_after() -> None:
    b_in.set()
    a_out.wait()
    c_emit(1, 300_000, hold_gil=True)


def a() -> None:
    run("a", outer, 100_000, a_after)
    a_out.set()


def b() -> None:
    a_in.wait()
    run("b", inner, 200_000, b_after)


threads = [threading.Thread(target=a), threading.Thread(target=b)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
report(repr(got))
