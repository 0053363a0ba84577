"""A block inside a generator, suspended in it and finished in another thread (tests/test_contexts.py).
Argument: how the other thread finishes it (``resumed``, ``closed`` or ``collected``). Writes "after"
to fd 1 and reports the errors raised, whether sys.stdout and the open fds came back, and what the
block captured."""

from __future__ import annotations

import sys
import threading
from collections.abc import Generator

from childlib import State, report
from fdredirect import Captured, redirect_stdout_fd
from fdredirect.testing import c_write

FINISH = sys.argv[1]


def gen() -> Generator[Captured, None, None]:
    with redirect_stdout_fd() as out:
        c_write(1, "first\n")
        yield out
        c_write(1, "second\n")


before = State.now()
holder = [gen()]
out = next(holder[0])
errors: list[str] = []


def finish() -> None:
    try:
        if FINISH == "resumed":
            next(holder[0], None)
        elif FINISH == "closed":
            holder[0].close()
        else:
            holder.clear()  # the last reference: collected here, in this thread
    except BaseException as e:
        errors.append(repr(e))


thread = threading.Thread(target=finish)
thread.start()
thread.join()
c_write(1, "after\n")
report((errors, before.stdout_and_fds_restored(), out.getvalue()))
