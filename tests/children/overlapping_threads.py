"""Four threads each enter and leave 300 captures, overlapping (tests/test_nesting.py). The writers
hold the GIL, so no write() is still in flight in the kernel when another thread's block ends (that
one write would land in the ended block's sink: README, Limits). Checks that fd 1 and sys.stdout
came back and every byte written is in exactly one capture, then prints "ok"."""

from __future__ import annotations

import os
import sys
import threading

from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write

inode = os.fstat(1).st_ino
total: list[str] = []


def worker(n: int) -> None:
    for i in range(300):
        with redirect_stdout_fd() as out:
            c_write(1, f"{n}.{i};", hold_gil=True)
        total.append(out.getvalue())


threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert os.fstat(1).st_ino == inode
assert sys.stdout is sys.__stdout__
every = "".join(total)
written = every.split(";")[:-1] if every.endswith(";") else every.split(";")
assert sorted(written) == sorted(f"{n}.{i}" for n in range(4) for i in range(300)), every[:200]
print("ok")
