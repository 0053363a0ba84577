"""1 GiB from C holding the GIL into a capture, while a thread samples the memory in use
(tests/test_process.py). Reports whether the capture is exact and the peak growth as a fraction
of 1 GiB."""

from __future__ import annotations

import os
import threading
import time

from childlib import report
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit, pattern


def rss_plus_memfds() -> int:
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    shmem = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssShmem:"):
                shmem = int(line.split()[1]) * 1024  # memfd pages mapped by us: already in RSS
    memfiles = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "fdredirect-capture" in os.readlink(f"/proc/self/fd/{fd}"):
                memfiles = max(memfiles, os.fstat(int(fd)).st_blocks * 512)
        except OSError:
            pass
    return rss - shmem + memfiles


peak = 0
stop = False


def sample() -> None:
    global peak
    while not stop:
        peak = max(peak, rss_plus_memfds())
        time.sleep(0.005)


base = rss_plus_memfds()
size = 1 << 30
sampler = threading.Thread(target=sample)
sampler.start()
with redirect_stdout_fd(encoding=None) as out:
    c_emit(1, size, hold_gil=True)
data = out.getbytes()
stop = True
sampler.join()
peak = max(peak, rss_plus_memfds())
ok = len(data) == size and data[:4096] == pattern(4096) and data[-64:] == pattern(size)[-64:]
report((ok, (peak - base) / size))
