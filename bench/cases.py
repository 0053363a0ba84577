"""Benchmark cases, one per child process: ``python bench/cases.py CASE COMPETITOR FLOORS_SO``.

Prints one JSON object. Each case runs in a fresh interpreter so that peak memory, fd state and
stdio buffering are the competitor's own. bench/run.py drives them and prints the tables.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from integration_cases import import_time, jupyter_cell, pytest_suite

MIB = 1 << 20
BULK = 256 * MIB
EMPTY_LOOPS = 20_000
REPEATS = 7

floors = ctypes.CDLL(sys.argv[3])
floors.floor_dup.restype = ctypes.c_double
floors.floor_memfd.restype = ctypes.c_double
floors.floor_pipe_reader.restype = ctypes.c_double
floors.floor_wake_latency.restype = ctypes.c_double
floors.floor_bulk.restype = ctypes.c_double
floors.pending_results.restype = ctypes.c_long
gil_holding = ctypes.PyDLL(sys.argv[3])  # PyDLL: the call keeps the GIL, like most extensions


def median_us(body: Callable[[], None], loops: int = EMPTY_LOOPS) -> float:
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(loops):
            body()
        runs.append((time.perf_counter() - start) / loops * 1e6)
    return statistics.median(runs)


# --- memory: RSS plus the memory files / temp files that hold captured bytes -------------------


def _file_bytes() -> int:
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if "memfd:" in target or "(deleted)" in target or target.startswith(tempfile.gettempdir()):
                total = max(total, os.fstat(int(fd)).st_blocks * 512)
        except OSError:
            pass
    return total


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory() -> Iterator[dict[str, int]]:
    """Sample RSS + file bytes every 2 ms; yields a dict that gets 'base' and 'peak'."""
    result = {"base": _rss() + _file_bytes(), "peak": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result["peak"] = max(result["peak"], _rss() + _file_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        result["peak"] = max(result["peak"], _rss() + _file_bytes())


# --- case 1: enter + exit of an empty capture block --------------------------------------------


def empty_block(competitor: str) -> dict[str, Any]:
    if competitor == "fdredirect":
        from fdredirect import redirect_stdout_fd

        def body() -> None:
            with redirect_stdout_fd():
                pass

    elif competitor == "wurlitzer.pipes":
        from wurlitzer import pipes

        def body() -> None:
            with pipes(stderr=None):
                pass

        return {"us": median_us(body, loops=300)}
    elif competitor in ("FDCapture", "FDCaptureBinary"):
        from _pytest.capture import FDCapture, FDCaptureBinary

        kind = FDCapture if competitor == "FDCapture" else FDCaptureBinary

        def body() -> None:
            capture = kind(1)
            capture.start()
            capture.snap()
            capture.done()

        return {"us": median_us(body, loops=3_000)}
    elif competitor == "C floor: dup+dup2+dup2+close":
        return {"us": statistics.median(floors.floor_dup(EMPTY_LOOPS) for _ in range(REPEATS)) * 1e6}
    elif competitor == "C floor: memfd + the same":
        return {"us": statistics.median(floors.floor_memfd(EMPTY_LOOPS) for _ in range(REPEATS)) * 1e6}
    else:
        raise SystemExit(f"unknown competitor {competitor}")
    return {"us": median_us(body)}


# --- case 2: 256 MiB from C write(1) in 64 KiB chunks, captured ---------------------------------


def _emit() -> None:
    from fdredirect.testing import c_emit

    c_emit(1, BULK, chunk=64 << 10)


def bulk_capture(competitor: str) -> dict[str, Any]:
    if competitor.startswith("C floor"):
        memory_file = "memory file" in competitor
        rate = floors.floor_bulk(ctypes.c_long(BULK), memory_file, tempfile.gettempdir().encode())
        return {"mb_s": rate / 1e6}
    with peak_memory() as memory:
        start = time.perf_counter()
        if competitor.startswith("fdredirect"):
            from fdredirect import redirect_stdout_fd

            text = competitor.endswith("text")
            with redirect_stdout_fd(encoding="utf-8" if text else None) as out:
                _emit()
            data: Any = out.getvalue() if text else out.getbytes()
        elif competitor == "dup onto temp file (Python)":
            sys.stdout.flush()
            with tempfile.TemporaryFile() as tmp:
                saved = os.dup(1)
                os.dup2(tmp.fileno(), 1)
                try:
                    _emit()
                finally:
                    os.dup2(saved, 1)
                    os.close(saved)
                tmp.seek(0)
                data = tmp.read()
        elif competitor in ("FDCaptureBinary", "FDCapture"):
            from _pytest.capture import FDCapture, FDCaptureBinary

            capture = (FDCaptureBinary if competitor == "FDCaptureBinary" else FDCapture)(1)
            capture.start()
            _emit()
            data = capture.snap()
            capture.done()
        elif competitor.startswith("wurlitzer"):
            from wurlitzer import pipes

            text = competitor.endswith("text")
            with pipes(stderr=None, encoding="utf-8" if text else None) as (out, _):
                _emit()
            data = out.getvalue()
        else:
            raise SystemExit(f"unknown competitor {competitor}")
        took = time.perf_counter() - start
    assert len(data) == BULK, (competitor, len(data))
    return {"mb_s": BULK / took / 1e6, "memory_x": (memory["peak"] - memory["base"]) / BULK}


# --- case 3: 10 million printf lines, fully buffered ----------------------------------------------


def printf_lines(competitor: str) -> dict[str, Any]:
    """The loop's time ("s", compared with the same loop to /dev/null) and, for fdredirect, the
    whole block including reading back ~90 MB at its exit ("s_with_exit")."""
    lines = 10_000_000
    start = time.perf_counter()
    if competitor == "fdredirect":
        from fdredirect import redirect_stdout_fd

        with redirect_stdout_fd(encoding=None) as out:
            floors.printf_lines(lines)
            loop = time.perf_counter() - start
        size = len(out.getbytes())
        assert size > lines * 6
        return {"s": loop, "s_with_exit": time.perf_counter() - start}
    floors.printf_lines(lines)  # the same loop straight to /dev/null (run.py points stdout there)
    return {"s": time.perf_counter() - start}


# --- case 4: forwarding latency -----------------------------------------------------------------


class Recorder(io.TextIOBase):
    """A text target that records, for each stamped line, how long it took to arrive."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        arrived = time.monotonic_ns()
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            if line.startswith("t="):
                self.latencies.append((arrived - int(line[2:])) / 1e6)
        return len(text)


@contextmanager
def forwarding(competitor: str, recorder: Recorder) -> Iterator[None]:
    if competitor == "fdredirect":
        from fdredirect import redirect_stdout_fd

        with redirect_stdout_fd(recorder):
            yield
    elif competitor == "wurlitzer.pipes":
        from wurlitzer import pipes

        with pipes(stdout=recorder, stderr=None):
            yield
    elif competitor == "wurlitzer.sys_pipes":
        from wurlitzer import sys_pipes

        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = recorder, io.StringIO()  # sys_pipes forwards fds 1/2 to these
        try:
            with sys_pipes():
                yield
        finally:
            sys.stdout, sys.stderr = saved
    else:
        raise SystemExit(f"unknown competitor {competitor}")


def _percentiles(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "n": len(ordered),
    }


def latency_sleeping(competitor: str) -> dict[str, Any]:
    if competitor == "C floor: one thread wake-up":
        return {"p50_ms": floors.floor_wake_latency(100) * 1e3}
    recorder = Recorder()
    with forwarding(competitor, recorder):
        for _ in range(100):
            floors.stamped_line()
            time.sleep(0.01)
        time.sleep(0.1)
    return _percentiles(recorder.latencies)


def latency_python(competitor: str) -> dict[str, Any]:
    recorder = Recorder()
    with forwarding(competitor, recorder):
        floors.start_stamper(150, 10_000)
        end = time.monotonic() + 1.8
        while time.monotonic() < end:
            sum(range(200))  # pure Python: the GIL is only given up at switch intervals
        time.sleep(0.2)
    return _percentiles(recorder.latencies)


C_CALL_LINES = 100


def _stamped_lines_during_c_calls() -> None:
    floors.start_stamper(C_CALL_LINES, 10_000)
    end = time.monotonic() + 1.2
    while time.monotonic() < end:
        gil_holding.spin(ctypes.c_long(1000))  # 1 ms of C holding the GIL, back to back
    time.sleep(0.5)


def latency_c_calls(competitor: str) -> dict[str, Any]:
    if competitor.startswith("pending calls"):
        return _pending_calls_latency()
    recorder = Recorder()
    with forwarding(competitor, recorder):
        _stamped_lines_during_c_calls()
    return _percentiles(recorder.latencies)


def _pending_calls_latency() -> dict[str, Any]:
    """Case 4c with C forwarding each line through Py_AddPendingCall (see floors.c)."""
    lines = C_CALL_LINES
    if floors.pending_start() != 0:
        raise SystemExit("pending_start failed")
    _stamped_lines_during_c_calls()
    floors.pending_stop()
    time.sleep(0.1)  # calls still queued run now
    latencies = (ctypes.c_double * lines)()
    floors.pending_results(latencies, lines)
    ran = [latency * 1e3 for latency in latencies if latency >= 0]
    result = {**_percentiles(ran), "python": platform.python_version()}
    if len(ran) < lines:
        result["note"] = f"{lines - len(ran)} of {lines} calls never ran"
    return result


# --- cases 5 and 6: tee, live target ------------------------------------------------------------


def tee(competitor: str) -> dict[str, Any]:
    from fdredirect import redirect_stdout_fd

    start = time.perf_counter()
    with redirect_stdout_fd(encoding=None, tee=True) as out:
        _emit()
    data = out.getbytes()
    took = time.perf_counter() - start
    assert len(data) == BULK
    return {"mb_s": BULK / took / 1e6}


def live(competitor: str) -> dict[str, Any]:
    from fdredirect import redirect_stdout_fd
    from fdredirect.testing import c_emit

    hold_gil = competitor.endswith("GIL held")
    target = io.StringIO()
    start = time.perf_counter()
    with redirect_stdout_fd(target):
        c_emit(1, BULK, hold_gil=hold_gil)
    took = time.perf_counter() - start
    assert len(target.getvalue()) == BULK
    return {"mb_s": BULK / took / 1e6}


# --- case 7: print-heavy ------------------------------------------------------------------------


def print_heavy(competitor: str) -> dict[str, Any]:
    calls = 1_000_000
    start = time.perf_counter()
    if competitor == "inside a capture block":
        from fdredirect import redirect_stdout_fd

        with redirect_stdout_fd():
            for i in range(calls):
                print("a line of output", i)
    else:  # plain sys.stdout (buffered, run.py points it at a file)
        for i in range(calls):
            print("a line of output", i)
        sys.stdout.flush()
    return {"s": time.perf_counter() - start}


CASES: dict[str, Callable[[str], dict[str, Any]]] = {
    "empty_block": empty_block,
    "bulk_capture": bulk_capture,
    "printf_lines": printf_lines,
    "latency_sleeping": latency_sleeping,
    "latency_python": latency_python,
    "latency_c_calls": latency_c_calls,
    "tee": tee,
    "live": live,
    "print_heavy": print_heavy,
    "import_time": import_time,
    "jupyter_cell": jupyter_cell,
    "pytest_suite": pytest_suite,
}

if __name__ == "__main__":
    result = CASES[sys.argv[1]](sys.argv[2])
    # The results pipe, apart from stdout (which the cases redirect).
    os.write(int(os.environ["BENCH_RESULTS_FD"]), json.dumps(result).encode())
