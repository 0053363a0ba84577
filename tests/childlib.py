"""Child-side helpers: code that the child interpreters of the tests (``helpers.run_child`` scripts
and the programs in ``children/``) share. ``helpers`` puts this directory on their PYTHONPATH.

A child reports a result as one ``repr`` line on its real stderr (``report``); the parent reads it
back with ``helpers.last_report``."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from fdredirect.testing import c_printf, c_write


def report(value: object) -> None:
    """``repr(value)`` as one line on the real stderr, whatever ``sys.stderr`` is now."""
    stream = sys.__stderr__
    assert stream is not None
    stream.write(repr(value) + "\n")
    stream.flush()


def fd_list() -> list[str]:
    """This process's open fds, sorted (as names in /proc/self/fd)."""
    return sorted(os.listdir("/proc/self/fd"))


@dataclass
class State:
    """What a block must give back when it ends: ``sys.stdout``, the target of fd 1, the open fds."""

    stdout: object
    fd1: os.stat_result
    fds: list[str]

    @classmethod
    def now(cls) -> State:
        return cls(sys.stdout, os.fstat(1), fd_list())

    def stdout_and_fds_restored(self) -> tuple[bool, bool]:
        return sys.stdout is self.stdout, fd_list() == self.fds

    def fd1_restored(self) -> bool:
        return os.path.samestat(os.fstat(1), self.fd1)


def outcome_of_exit(body: Callable[[], None]) -> None:
    """Run ``body`` (a block) twice, the first time to start the library's threads and their fds;
    then report what the second run raised, whether fd 1 and sys.stdout came back, and how many fds
    leaked. Output written after the block must reach the real fd 1: "after" is written there."""
    before = (os.fstat(1).st_ino, sys.stdout)
    with contextlib.suppress(BaseException):
        body()
    fds = len(fd_list())
    raised = None
    try:
        body()
    except BaseException as e:
        errno = e.errno if isinstance(e, OSError) else None
        raised = (type(e).__name__, errno, getattr(e, "filename", None), str(e))
    restored = (os.fstat(1).st_ino, sys.stdout) == before
    leaked = len(fd_list()) - fds
    c_printf("after\n", flush=True)
    report((raised, restored, leaked))


def real_fds_to_files(out: str, err: str) -> None:
    """Point this process's real fds 1 and 2 at regular files (reopened O_APPEND so the two never
    overwrite each other): the tee and late-output hangs show far more often there than on a pipe
    the parent drains."""
    for fd, path in ((1, out), (2, err)):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        os.dup2(file, fd)
        os.close(file)


def reporter_to(path: str) -> Callable[[str], None]:
    """A ``report(text)`` that writes ``text`` to the file ``path`` (for children whose real fds are
    files the test reads otherwise)."""

    def report_text(text: str) -> None:
        with open(path, "w") as file:
            file.write(text)

    return report_text


# For the crash tests: every kind of writer, and a live target that shows what it was handed.


def writes(tag: str) -> None:
    """A Python line, a C write, and last an unflushed printf, which sits in libc's buffer
    (PYTHONUNBUFFERED unset) until the crash dump."""
    print(f"{tag} python")
    c_write(1, f"{tag} c-write\n".encode())
    c_printf(f"{tag} c-printf\n", flush=False)


def written(tag: str) -> bytes:
    """What ``writes(tag)`` writes."""
    return f"{tag} python\n{tag} c-write\n{tag} c-printf\n".encode()


class Seen(io.StringIO):
    """A live target that also records what it was handed, on a side fd (``sys.argv[1]``)."""

    def write(self, s: str) -> int:
        os.write(int(sys.argv[1]), s.encode())
        return super().write(s)
