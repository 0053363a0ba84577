"""A live block left open at exit, and an exit handler that runs after fdredirect's own and syncs
the block from another thread (tests/test_live.py): a kernel's I/O thread flushing its streams
does that. Reports whether the thread was still waiting, whether it returned within 1 s, and the
errors it met."""

from __future__ import annotations

import atexit
import io
import sys
import threading
import time
from typing import Any

errors: list[str] = []
block: Any = None


def sync() -> None:
    try:
        block.sync()
    except BaseException as exc:
        errors.append(repr(exc))


def late_sync() -> None:
    worker = threading.Thread(target=sync)
    start = time.monotonic()
    worker.start()
    worker.join(10)
    assert sys.__stderr__ is not None
    sys.__stderr__.write(repr((worker.is_alive(), time.monotonic() - start < 1, errors)) + "\n")


# Registered before fdredirect is imported (childlib imports it too), so it runs after
# fdredirect's own exit hook.
atexit.register(late_sync)

from fdredirect import redirect_stdout_fd  # noqa: E402 - after the exit handler above
from fdredirect.testing import c_write  # noqa: E402

block = redirect_stdout_fd(io.StringIO())
block.__enter__()
c_write(1, "pending at exit\n")
