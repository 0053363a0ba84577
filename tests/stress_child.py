"""Child side of the stress matrix (tests/test_stress.py, bench/stress.py): runs nesting cases in
this interpreter and reports what each target received against what a model of the block stack
says it must receive.

A case is a stack of block kinds (outermost first), whether the C writers hold the GIL, and how
many writer threads write at once. Every level writes, inside its block, some ``print`` lines and
C ``write``s larger than a pipe, then opens the next level, then prints again after it. All
payloads are whole ``LINE``s, so every target must hold exactly ``LINE`` repeated, in any
interleaving of whole writes.

The model: ``fd1``/``fd2`` are the tuples of sinks a byte written to fd 1/2 reaches now. A capture
or live block replaces ``fd1`` with its own sink; ``tee`` adds its sink in front of what ``fd1``
reached before (the saved original fd is that destination); ``STDOUT`` makes ``fd2`` reach what
``fd1`` reaches at its enter (``2>&1``). ``OUT``/``ERR`` are the process's real fds, which the parent
reads; the child writes a marker line to both between cases so the parent can split them.
"""

from __future__ import annotations

import faulthandler
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from typing import Any, TextIO

from fdredirect import STDOUT, redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_write

KINDS = ("capture", "stringio", "callable", "logger", "tee", "tee_live", "stdout_merge")
LINE = (b"0123456789abcdef" * 63)[:999] + b"\n"
LINE_TEXT = LINE.decode()
# Bytes per writer thread: the innermost level writes the most, every level more than a pipe holds.
INNER_LINES = 300
OUTER_LINES = 100
PRINT_LINES = 5


# The sinks a byte written to an fd reaches now, in the model.
Dest = tuple[str, ...]


def marker(index: int) -> bytes:
    return f"== case {index} ==\n".encode()


@dataclass
class Case:
    stack: tuple[str, ...]
    hold_gil: bool
    threads: int
    # Lines per writer thread at the innermost level and at the others.
    inner_lines: int = INNER_LINES
    outer_lines: int = OUTER_LINES
    # The level at which a forked process writes (and is waited for inside the block); -1: none.
    fork_level: int = -1
    # The level at which a shell child starts that writes after its block ended; -1: none. Its
    # late output makes the byte counts of the case unpredictable: only hangs and errors count.
    late_level: int = -1

    @property
    def name(self) -> str:
        gil = "gil-held" if self.hold_gil else "gil-released"
        extra = "".join(
            f"/{label}@{level}" for label, level in (("fork", self.fork_level), ("late", self.late_level)) if level >= 0
        )
        return f"{'>'.join(self.stack)}/{gil}/{self.threads}-thread{extra}"

    @property
    def interleaved(self) -> bool:
        """Whether a sink may hold writes split mid-line: concurrent writers into a pipe split a
        write larger than ``PIPE_BUF`` anywhere, and a tee copy is forwarded by the reader thread
        in its own chunks, unordered with direct writes to the same destination (``STDOUT``)."""
        return (self.threads > 1 and not self.hold_gil) or any(kind in ("tee", "tee_live") for kind in self.stack)

    def to_json(self) -> list[Any]:
        return [list(self.stack), *astuple(self)[1:]]

    @classmethod
    def from_json(cls, data: list[Any]) -> Case:
        return cls(tuple(data[0]), *data[1:])


class Records(logging.Handler):
    """Counts the bytes of each record as the line it came from (message plus its newline)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.chunks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.chunks.append(record.getMessage() + "\n")


def fresh_logger(name: str) -> tuple[logging.Logger, Records]:
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    records = Records()
    logger.addHandler(records)
    return logger, records


@dataclass
class Run:
    """One case in flight: the model's expected byte counts and a way to read each sink."""

    case: Case
    expected: Counter[str] = field(default_factory=Counter)
    readers: dict[str, Callable[[], bytes]] = field(default_factory=dict)
    late: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def account(self, dest: tuple[str, ...], nbytes: int) -> None:
        for sink in dest:
            self.expected[sink] += nbytes

    def writers(self, fd: int, lines: int, dest: tuple[str, ...]) -> None:
        """``lines`` LINEs from C to ``fd`` by each writer thread, in one ``write`` loop per thread."""
        data = LINE * lines

        def write() -> None:
            c_write(fd, data, hold_gil=self.case.hold_gil)

        if self.case.threads == 1:
            write()
        else:
            started = [threading.Thread(target=write) for _ in range(self.case.threads)]
            for thread in started:
                thread.start()
            for thread in started:
                thread.join()
        self.account(dest, len(data) * self.case.threads)

    def block(self, level: int, fd1: Dest, fd2: Dest) -> tuple[Any, Dest, Dest]:
        """The context manager for level ``level`` and the destinations inside it."""
        kind, sink = self.case.stack[level], f"L{level}"
        if kind == "stdout_merge":
            return redirect_stderr_fd(STDOUT), fd1, fd1
        if kind in ("capture", "tee"):
            tee = kind == "tee"
            manager = redirect_stdout_fd(tee=tee)
            return manager, ((sink, *fd1) if tee else (sink,)), fd2
        if kind in ("stringio", "tee_live"):
            stream = io.StringIO()
            self.readers[sink] = lambda: stream.getvalue().encode()
            tee = kind == "tee_live"
            return redirect_stdout_fd(stream, tee=tee), ((sink, *fd1) if tee else (sink,)), fd2
        if kind == "callable":
            pieces: list[str] = []
            self.readers[sink] = lambda: "".join(pieces).encode()
            return redirect_stdout_fd(pieces.append), (sink,), fd2
        if kind == "logger":
            logger, records = fresh_logger(f"stress.{level}")
            self.readers[sink] = lambda: "".join(records.chunks).encode()
            return redirect_stdout_fd(logger), (sink,), fd2
        raise ValueError(kind)

    def level(self, level: int, fd1: Dest, fd2: Dest) -> None:
        if level == len(self.case.stack):
            return
        manager, inner1, inner2 = self.block(level, fd1, fd2)
        innermost = level == len(self.case.stack) - 1
        lines = self.case.inner_lines if innermost else self.case.outer_lines
        with manager as entered:
            if self.case.stack[level] in ("capture", "tee"):
                self.readers[f"L{level}"] = entered.getbytes
            print(LINE_TEXT * PRINT_LINES, end="")
            self.account(inner1, len(LINE) * PRINT_LINES)
            c_write(2, LINE)
            self.account(inner2, len(LINE))
            self.writers(1, lines, inner1)
            if self.case.stack[level] == "stdout_merge":
                print(LINE_TEXT * PRINT_LINES, end="", file=sys.stderr)
                self.account(inner2, len(LINE) * PRINT_LINES)
                self.writers(2, lines, inner2)
            if level == self.case.fork_level:
                self.fork(inner1)
            if level == self.case.late_level:
                self.late.append(
                    subprocess.Popen(["sh", "-c", f"sleep 0.02; head -c {len(LINE) * lines} /dev/zero | tr '\\0' z"])
                )
            self.level(level + 1, inner1, inner2)
            print(LINE_TEXT * 2, end="")
            self.account(inner1, len(LINE) * 2)

    def fork(self, dest: Dest) -> None:
        """A forked copy of this process writes to fd 1 and exits; waited for inside the block."""
        data = LINE * self.case.outer_lines
        pid = os.fork()
        if pid == 0:
            try:
                c_write(1, data)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        self.account(dest, len(data))

    def check(self) -> list[str]:
        """What went wrong at the sinks this process can read (the real fds are the parent's)."""
        problems = []
        for sink, read in sorted(self.readers.items()):
            data = read()
            want = self.expected[sink]
            if len(data) != want:
                problems.append(f"{sink} ({self.case.stack[int(sink[1:])]}): {len(data)} bytes, expected {want}")
            elif not whole_lines(data, interleaved=self.case.interleaved):
                problems.append(f"{sink}: {want} bytes but not whole LINEs (corrupted)")
        return problems


def whole_lines(data: bytes, *, interleaved: bool) -> bool:
    """``data`` is LINE repeated; where writes may be split (``Case.interleaved``), only the count
    of each byte can be checked."""
    lines = len(data) // len(LINE)
    if not interleaved:
        return data == LINE * lines
    return all(data.count(byte) == LINE.count(byte) * lines for byte in (b"\n", b"0", b"f"))


def run_case(case: Case) -> tuple[dict[str, int], list[str]]:
    run = Run(case)
    run.level(0, ("OUT",), ("ERR",))
    if run.late:
        for child in run.late:
            child.wait()
        # Late output is forwarded by the reader thread: give it time to land before the marker.
        time.sleep(0.1)
        return {}, []
    return {"OUT": run.expected["OUT"], "ERR": run.expected["ERR"]}, run.check()


def main(cases: list[Case], progress: TextIO, watchdog: float) -> None:
    """Run ``cases`` in order; one JSON line per case on ``progress``. A case that takes longer than
    ``watchdog`` seconds kills the process after dumping every thread's stack onto ``progress``."""
    for index, case in enumerate(cases):
        progress.write(json.dumps({"start": index, "case": case.name}) + "\n")
        progress.flush()
        faulthandler.dump_traceback_later(watchdog, exit=True, file=progress)
        real, problems = run_case(case)
        faulthandler.cancel_dump_traceback_later()
        c_write(1, marker(index))
        c_write(2, marker(index))
        progress.write(json.dumps({"done": index, "real": real, "problems": problems}) + "\n")
        progress.flush()
