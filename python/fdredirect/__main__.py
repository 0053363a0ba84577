"""``python -m fdredirect``: which writers does ``contextlib.redirect_stdout`` catch, and which does fdredirect?

Every writer runs for real. Output that escapes ``contextlib`` is itself caught by an outer
fdredirect block, so it does not clutter the table.

Where fdredirect has no fd core (Windows), it prints the reason to stderr and exits with status 1,
as when fdredirect misses a writer: here it would miss them all.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Callable

from . import redirect_stderr_fd, redirect_stdout_fd, testing
from ._platform import UNSUPPORTED


def _writers() -> list[tuple[str, str, Callable[[str], object]]]:
    """(description, stream, write(marker)) for each kind of writer."""
    return [
        ("Python print()", "stdout", lambda m: print(m)),
        ("C printf, no fflush", "stdout", lambda m: testing.c_printf(m + "\n")),
        ("C printf + fflush", "stdout", lambda m: testing.c_printf(m + "\n", flush=True)),
        ("C write(1, ...)", "stdout", lambda m: testing.c_write(1, m + "\n")),
        ("C fprintf(stderr, ...)", "stderr", lambda m: testing.c_fprintf_stderr(m + "\n")),
        ("child process: os.system('echo ...')", "stdout", lambda m: os.system(f"echo {m}")),
    ]


def _caught_by_contextlib(stream: str, write: Callable[[str], object], marker: str) -> bool:
    outer = redirect_stdout_fd if stream == "stdout" else redirect_stderr_fd
    inner = contextlib.redirect_stdout if stream == "stdout" else contextlib.redirect_stderr
    buffer = io.StringIO()
    # The outer block swallows whatever contextlib lets through.
    with outer(), inner(buffer):
        write(marker)
    return marker in buffer.getvalue()


def _caught_by_fdredirect(stream: str, write: Callable[[str], object], marker: str) -> bool:
    redirect = redirect_stdout_fd if stream == "stdout" else redirect_stderr_fd
    with redirect() as captured:
        write(marker)
    return marker in captured.getvalue()


def main() -> int:
    if UNSUPPORTED is not None:
        print(f"{UNSUPPORTED}. The demo has nothing to show.", file=sys.stderr)
        return 1
    rows = []
    for index, (what, stream, write) in enumerate(_writers()):
        marker = f"fdredirect-demo-{index}"
        rows.append((what, _caught_by_contextlib(stream, write, marker), _caught_by_fdredirect(stream, write, marker)))
    width = max(len(what) for what, _, _ in rows)
    mark = {True: "caught", False: "MISSED"}
    print(f"{'writer':<{width}}  contextlib.redirect_*  fdredirect")
    print(f"{'-' * width}  ---------------------  ----------")
    for what, by_contextlib, by_fdredirect in rows:
        print(f"{what:<{width}}  {mark[by_contextlib]:<21}  {mark[by_fdredirect]}")
    sys.stdout.flush()
    return 0 if all(by_fdredirect for _, _, by_fdredirect in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
