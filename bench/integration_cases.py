"""Benchmark cases of the integrations (import, Jupyter, pytest), run by bench/cases.py like the
others: each measures whole fresh processes (interpreters, a kernel, pytest runs) and returns one
JSON-able dict."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPEATS = 7

# --- case 8: import time -----------------------------------------------------------------------

IMPORTS = 41


def import_time(competitor: str) -> dict[str, Any]:
    """``import <module>`` timed inside fresh interpreters, so only the import counts: the median
    and the fastest wall time, and the median CPU time (less sensitive to a loaded machine)."""
    module = {"fdredirect": "fdredirect", "wurlitzer": "wurlitzer", "os (already loaded at startup)": "os"}[competitor]
    code = (
        "import time; t = time.perf_counter(); c = time.process_time(); "
        f"import {module}; print(time.perf_counter() - t, time.process_time() - c)"
    )
    # With bytecode cached, as an installed wheel has it (pip compiles at install; an editable
    # install compiles at the first import, here the untimed warm-up).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    walls, cpus = [], []
    for _ in range(IMPORTS):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        wall, cpu = done.stdout.split()
        walls.append(float(wall) * 1e3)
        cpus.append(float(cpu) * 1e3)
    return {"ms": statistics.median(walls), "min_ms": min(walls), "cpu_ms": statistics.median(cpus)}


# --- case 9: a Jupyter cell with 10,000 prints -------------------------------------------------

CELL_PRINTS = 10_000
CELL = f"for i in range({CELL_PRINTS}):\n    print('a line of output', i)"
CELL_TEXT = "".join(f"a line of output {i}\n" for i in range(CELL_PRINTS))


def _execute(client: Any, code: str) -> tuple[float, str]:
    """Run one cell; the time from the request until the kernel is idle again (all its output
    published), and the stdout text it published."""
    start = time.perf_counter()
    msg_id = client.execute(code)
    texts = []
    while True:
        msg = client.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            texts.append(msg["content"]["text"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            took = time.perf_counter() - start
            break
    reply = client.get_shell_msg(timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    return took, "".join(texts)


def _kernel(extension: bool) -> tuple[Any, Any]:
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(startup_timeout=60, kernel_name="python3")
    if extension:
        _execute(client, "%load_ext fdredirect")
    return manager, client


def _cell_time(client: Any) -> float:
    took, text = _execute(client, CELL)
    assert text == CELL_TEXT, "the cell's output is incomplete"
    return took


def jupyter_cell(competitor: str) -> dict[str, Any]:
    """The cell in a kernel with the extension and in one without, alternately (so that both see
    the same load on a busy machine); each row is its kernel's median, and the first row also
    the median of the paired ratios."""
    kernels = [_kernel(extension=True), _kernel(extension=False)]
    try:
        for _, client in kernels:
            _cell_time(client)  # warm-up
        pairs = [tuple(_cell_time(client) for _, client in kernels) for _ in range(REPEATS)]
    finally:
        for manager, client in kernels:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    mine = 0 if competitor == "with the extension" else 1
    result: dict[str, Any] = {"s": statistics.median(pair[mine] for pair in pairs)}
    if mine == 0:
        result["note"] = f"paired: {statistics.median(w / wo for w, wo in pairs):.2f}x the time without"
    return result


# --- case 10: a test suite of 1,000 tiny tests --------------------------------------------------

SUITE_TESTS = 1_000
SUITE_RUNS = 9


def pytest_suite(competitor: str) -> dict[str, Any]:
    """``pytest -q`` on 1,000 passing one-line tests in fresh processes, with the plugin and with
    ``-p no:fdredirect`` alternately (both see the same load): wall and CPU time (user + system,
    less sensitive to a loaded machine), medians; the first row also the median paired CPU ratio."""
    import resource

    tests = "".join(f"def test_{i}():\n    assert {i} >= 0\n\n\n" for i in range(SUITE_TESTS))
    variants = ([], ["-p", "no:fdredirect"])
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "test_tiny.py"), "w") as file:
            file.write(tests)

        def run(extra: list[str]) -> tuple[float, float]:
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, tmp]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            assert f"{SUITE_TESTS} passed" in done.stdout, done.stdout[-2000:]
            return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall

        for extra in variants:
            run(extra)  # warm-up: bytecode, pytest's rewritten asserts, page cache
        pairs = [tuple(run(extra) for extra in variants) for _ in range(SUITE_RUNS)]
    mine = 0 if competitor == "plugin installed" else 1
    result: dict[str, Any] = {
        "cpu_s": statistics.median(pair[mine][0] for pair in pairs),
        "s": statistics.median(pair[mine][1] for pair in pairs),
    }
    if mine == 0:
        result["note"] = f"paired: {statistics.median(w[0] / wo[0] for w, wo in pairs):.3f}x the CPU without"
    return result
