"""Four threads each open 40 live blocks in turn (every 4th with tee when the argument is
``True``), writing a line and 100 kB from C, with and without the GIL (tests/test_concurrency.py).
Blocks overlap across threads and end out of order. Reports the bytes written and the bytes the
blocks' targets received."""

from __future__ import annotations

import io
import sys
import threading
import time

from childlib import report
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit, c_write

TEE = sys.argv[1] == "True"
targets: list[io.StringIO] = []
lock = threading.Lock()
written = [0] * 4


def work(k: int) -> None:
    for i in range(40):
        stream = io.StringIO()
        with lock:
            targets.append(stream)
        with redirect_stdout_fd(stream, tee=TEE and i % 4 == 3):
            written[k] += c_write(1, f"line {k} {i}\n", hold_gil=i % 2 == 0)
            if i % 3 == 0:
                time.sleep(0.0005)
            written[k] += c_emit(1, 100_000, hold_gil=i % 2 == 1)


threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
report((sum(written), sum(len(s.getvalue()) for s in targets)))
