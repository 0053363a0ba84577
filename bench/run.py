"""Run every benchmark case against every competitor, in the same run, and print the tables.

    pip install -e '.[bench]'     # wurlitzer and pytest
    python bench/run.py           # Markdown on stdout; JSON in bench/results.json

Each (case, competitor) runs in a fresh interpreter (bench/cases.py) with stdout on /dev/null,
so peak memory and stdio buffering are its own. Medians of several repeats; the ratios compare
competitors measured in this same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

# Case 4c also shows what CPython's pending calls achieve (a C demonstration in floors.c), on this
# interpreter and on the newest CPython >= 3.13 that pyenv has.
PENDING_HERE = "pending calls (C demo), this CPython"
PENDING_NEWEST = "pending calls (C demo), newest CPython >= 3.13"

PLAN: list[tuple[str, str, list[str]]] = [
    (
        "empty_block",
        "1. Enter + exit of an empty capture block (µs, median)",
        [
            "fdredirect",
            "wurlitzer.pipes",
            "FDCapture",
            "FDCaptureBinary",
            "C floor: dup+dup2+dup2+close",
            "C floor: memfd + the same",
        ],
    ),
    (
        "bulk_capture",
        "2. 256 MiB from C write(1) in 64 KiB chunks, captured",
        [
            "fdredirect bytes",
            "dup onto temp file (Python)",
            "FDCaptureBinary",
            "wurlitzer bytes",
            "fdredirect text",
            "FDCapture",
            "wurlitzer text",
            "C floor: memory file (memfd), write + read + close",
            "C floor: temp file (O_TMPFILE), write + read + close",
        ],
    ),
    ("printf_lines", "3. 10 million printf lines, fully buffered stdio (s)", ["fdredirect", "to /dev/null"]),
    (
        "latency_sleeping",
        "4a. Forwarding latency, main thread sleeping (ms)",
        ["fdredirect", "wurlitzer.pipes", "wurlitzer.sys_pipes", "C floor: one thread wake-up"],
    ),
    (
        "latency_python",
        "4b. Forwarding latency, main thread running pure Python, lines 10 ms apart (ms)",
        ["fdredirect", "wurlitzer.pipes", "wurlitzer.sys_pipes"],
    ),
    (
        "latency_c_calls",
        "4c. Forwarding latency, main thread calling 1 ms C functions holding the GIL (ms, report only)",
        ["fdredirect", "wurlitzer.pipes", "wurlitzer.sys_pipes", PENDING_HERE, PENDING_NEWEST],
    ),
    ("tee", "5. 256 MiB captured and teed to /dev/null", ["fdredirect tee"]),
    ("live", "6. 256 MiB into a live StringIO target", ["fdredirect", "fdredirect, GIL held"]),
    ("print_heavy", "7. One million print() calls (s)", ["inside a capture block", "plain sys.stdout"]),
    (
        "import_time",
        "8. import, in a fresh interpreter (ms, median of 41)",
        ["fdredirect", "wurlitzer", "os (already loaded at startup)"],
    ),
    (
        "jupyter_cell",
        "9. A Jupyter cell with 10,000 print() calls, request until idle (s, median of 7, kernels alternating)",
        ["with the extension", "without the extension"],
    ),
    (
        "pytest_suite",
        "10. pytest -q on 1,000 tiny tests, per-phase flush (s, median of 9, runs alternating)",
        ["plugin installed", "-p no:fdredirect"],
    ),
]


def build_floors(out_dir: Path) -> Path:
    library = out_dir / "floors.so"
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", str(HERE / "floors.c"), "-o", str(library), "-lpthread"], check=True
    )
    return library


def newest_cpython() -> str | None:
    """The newest CPython >= 3.13 under ``pyenv root``, if any."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    found: list[tuple[tuple[int, ...], Path]] = []
    for python in Path(root, "versions").glob("3.*/bin/python3"):
        try:
            version = tuple(int(part) for part in python.parent.parent.name.split(".")[:3])
        except ValueError:
            continue  # a named or dev build
        if version >= (3, 13):
            found.append((version, python))
    return str(max(found)[1]) if found else None


def run_case(case: str, competitor: str, floors: Path) -> dict[str, Any]:
    python = sys.executable
    if competitor == PENDING_NEWEST:
        newest = newest_cpython()
        if newest is None:
            return {"error": "no CPython >= 3.13 under pyenv root"}
        python = newest
    read, write = os.pipe()
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)  # stdio fully buffered, as in production
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # and bytecode cached (pytest's rewritten asserts too)
    env["BENCH_RESULTS_FD"] = str(write)
    with open(os.devnull, "w") as devnull:
        child = subprocess.Popen(
            [python, str(HERE / "cases.py"), case, competitor, str(floors)],
            stdout=devnull,
            pass_fds=(write,),
            env=env,
        )
    os.close(write)
    with os.fdopen(read, "rb") as results:
        payload = results.read()
    if child.wait() != 0 or not payload:
        return {"error": f"exit status {child.returncode}"}
    result: dict[str, Any] = json.loads(payload)
    return result


# Single-shot cases whose competitors write to the file system vary from run to run (page cache
# writeback): these run in several fresh interpreters and each number is the median.
RUNS = {"bulk_capture": 3}


def run_repeated(case: str, competitor: str, floors: Path) -> dict[str, Any]:
    runs = [run_case(case, competitor, floors) for _ in range(RUNS.get(case, 1))]
    failed = [run for run in runs if "error" in run]
    if failed:
        return failed[0]
    merged = dict(runs[0])
    for key, value in merged.items():
        if isinstance(value, float):
            merged[key] = statistics.median(run[key] for run in runs)
    return merged


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"CPython {platform.python_version()}, {datetime.date.today().isoformat()}"
    )


def table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> str:
    keys = sorted(
        {k for _, r in rows for k in r if k != "n"},
        key=[
            "us",
            "ms",
            "min_ms",
            "cpu_ms",
            "mb_s",
            "memory_x",
            "cpu_s",
            "s",
            "s_with_exit",
            "p50_ms",
            "p99_ms",
            "python",
            "note",
            "error",
        ].index,
    )
    first = rows[0][1]
    lines = [
        f"**{title}**",
        "",
        "| competitor | " + " | ".join(keys) + " | fdredirect vs it |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for name, result in rows:
        cells = [f"{result[k]:.3g}" if isinstance(result.get(k), float) else str(result.get(k, "")) for k in keys]
        ratio = ""
        if name != rows[0][0] and "error" not in result and "error" not in first:
            key = keys[0]
            ours, theirs = first[key], result[key]
            # For times, bigger ratio = fdredirect faster; for throughput, likewise.
            faster = theirs / ours if key in ("us", "ms", "cpu_s", "s", "p50_ms", "p99_ms") else ours / theirs
            ratio = f"{faster:.2f}×"  # noqa: RUF001 - the multiplication sign is meant
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--json", default=str(HERE / "results.json"), help="where to write the JSON results")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "cases": {}}
    print(f"Machine: {results['machine']}\n")
    with tempfile.TemporaryDirectory() as tmp:
        floors = build_floors(Path(tmp))
        for case, title, competitors in PLAN:
            if args.only and args.only not in case:
                continue
            rows = [(competitor, run_repeated(case, competitor, floors)) for competitor in competitors]
            results["cases"][case] = {"title": title, "results": dict(rows)}
            print(table(title, rows), end="\n\n", flush=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
