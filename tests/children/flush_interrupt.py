"""sys.stderr is a Python stream whose flush() raises once, at a block's enter or exit
(tests/test_writer.py). Arguments: the target (``None`` or ``io.StringIO()``), when the flush
raises (``enter`` or ``exit``) and what (``KeyboardInterrupt``, ``SystemExit`` or ``ValueError``).
Writes "after" to fd 1 and reports what the block raised, whether sys.stdout and the open fds came
back, and what the block captured."""

from __future__ import annotations

import io
import sys
from typing import Any

from childlib import State, report
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write

TARGETS: dict[str, Any] = {"None": lambda: None, "io.StringIO()": io.StringIO}
EXCEPTIONS: dict[str, type[BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "ValueError": ValueError,
}
target, when, exception = TARGETS[sys.argv[1]], sys.argv[2], EXCEPTIONS[sys.argv[3]]


class Stream:
    """Not an io class: pytest and Jupyter install plain Python objects as sys.stderr."""

    armed = False

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        if self.armed:
            self.armed = False
            raise exception("from flush")


with redirect_stdout_fd(target()):  # the reader threads, if any, exist before counting
    pass
before = State.now()
sys.stderr = stream = Stream()
stream.armed = when == "enter"
raised = out = None
try:
    with redirect_stdout_fd(target()) as out:
        c_write(1, "inside\n")
        stream.armed = when == "exit"
except BaseException as e:
    raised = repr(e)
c_write(1, "after\n")
report((raised, before.stdout_and_fds_restored(), out and out.getvalue()))
