"""A SIGALRM every 50 µs whose handler raises, while a block is entered and left in a loop for 1 s
(tests/test_contexts.py). Arguments: the statement (``with`` or ``async with``) and the target
(``None``, ``DEVNULL`` or ``io.StringIO()``). Writes "after" to fd 1, then reports whether
sys.stdout, fd 1 and the open fds came back, and a line ``blocks N storms M``."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

from childlib import State, report
from fdredirect import DEVNULL, redirect_stdout_fd
from fdredirect.testing import c_write

STATEMENT, TARGET = sys.argv[1], sys.argv[2]
TARGETS: dict[str, Callable[[], Any]] = {"None": lambda: None, "DEVNULL": lambda: DEVNULL, "io.StringIO()": io.StringIO}
target = TARGETS[TARGET]


class StormError(Exception):
    pass


def storm(signum: int, frame: FrameType | None) -> None:
    # Raises only in the code under test (the block's function and fdredirect's own Python code),
    # so the loop that counts the interruptions is not hit.
    if time.monotonic() > deadline:
        signal.setitimer(signal.ITIMER_REAL, 0)
    elif frame is not None and (frame.f_code is block.__code__ or "fdredirect" in frame.f_code.co_filename):
        raise StormError


def with_block() -> None:
    with redirect_stdout_fd(target()):
        c_write(1, "inside\n")


async def async_with_block() -> None:
    async with redirect_stdout_fd(target()):
        c_write(1, "inside\n")


block: Callable[[], Any] = async_with_block if STATEMENT == "async with" else with_block


def drive(coroutine: Coroutine[Any, Any, None] | None) -> None:
    if coroutine is None:
        return
    with contextlib.suppress(StopIteration):
        coroutine.send(None)


def loop() -> tuple[int, int]:
    blocks = storms = 0
    while time.monotonic() < deadline + 0.05:
        blocks += 1
        try:
            drive(block())
        except StormError:
            storms += 1
    return blocks, storms


with redirect_stdout_fd(target()):  # the reader threads, if any, exist before counting
    pass
before = State.now()
signal.signal(signal.SIGALRM, storm)
deadline = time.monotonic() + 1.0
signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
blocks, storms = loop()
time.sleep(0.05)
os.write(1, b"after\n")
stdout_restored, fds_restored = before.stdout_and_fds_restored()
report((stdout_restored, before.fd1_restored(), fds_restored))
sys.stderr.write(f"blocks {blocks} storms {storms}\n")
