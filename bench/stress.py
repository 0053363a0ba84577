"""Long stress run (not run by CI): thousands of random block stacks, in batches, each batch in a
fresh interpreter with a watchdog per case, plus rounds of blocks overlapping across threads.

    python bench/stress.py                        # 2000 cases + 200 overlap rounds
    python bench/stress.py --cases 500 --seed 7   # reproducible subset

Random: nesting depth 1-4 of every kind of block (tests/stress_child.py), GIL held or released,
1-4 writer threads, sizes from below to far above a pipe, a forked writer or a child outliving
its block at a random level. Each case checks exact byte counts at every target and on the real
fds (except cases with a late child: there only hangs and errors count). Overlap rounds: 2-4
threads each run their own random stacks of blocks at the same time; every byte written must land
exactly once across all the sinks and the real stdout (with tee kinds: no hang, no error).

Prints the number of cases, failures (the first few in full) and the time taken.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from test_stress import run_cases  # noqa: E402

from stress_child import KINDS, Case  # noqa: E402 - the tests directory is not a package

OVERLAP_CHILD = """
import io, json, os, random, sys, threading, logging
for _fd, _path in ((1, {out!r}), (2, os.devnull)):
    _file = os.open(_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    os.dup2(_file, _fd)
    os.close(_file)
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write
LINE = b"y" * 99 + b"\\n"
sinks, written, lock = [], [0], threading.Lock()
def target(kind, name):
    if kind in ("capture", "tee"):
        return None, None
    if kind in ("stringio", "tee_live"):
        stream = io.StringIO()
        return stream, lambda: len(stream.getvalue())
    if kind == "callable":
        pieces = []
        return pieces.append, lambda: sum(map(len, pieces))
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    sizes = []
    class Count(logging.Handler):
        def emit(self, record):
            sizes.append(len(record.getMessage()) + 1)
    logger.addHandler(Count())
    return logger, lambda: sum(sizes)
def nest(rng, depth, tid):
    if depth == 0:
        return
    kind = rng.choice({kinds!r})
    goal, read = target(kind, f"overlap.{{tid}}.{{depth}}.{{rng.random()}}")
    with redirect_stdout_fd(goal, tee=kind.startswith("tee")) as entered:
        lines = rng.choice([1, 50, 700, 3000])
        c_write(1, LINE * lines, hold_gil=rng.random() < 0.5)
        with lock:
            written[0] += len(LINE) * lines
        nest(rng, depth - 1, tid)
    with lock:
        sinks.append((lambda: len(entered.getbytes())) if kind in ("capture", "tee") else read)
def work(seed, tid):
    rng = random.Random(seed)
    for _ in range(rng.randint(1, 4)):
        nest(rng, rng.randint(1, 3), tid)
seed = {seed}
threads = [threading.Thread(target=work, args=(seed * 10 + i, i)) for i in range(2 + seed % 3)]
[t.start() for t in threads]
[t.join() for t in threads]
import time; time.sleep(0.2)
with open({result!r}, "w") as file:
    json.dump({{"written": written[0], "sinks": sum(read() for read in sinks)}}, file)
"""


def random_case(rng: random.Random) -> Case:
    depth = rng.randint(1, 4)
    stack = tuple(rng.choice(KINDS) for _ in range(depth))
    size = rng.choice([1, 10, 70, 300, 1000])
    extra = rng.random()
    return Case(
        stack,
        rng.random() < 0.5,
        rng.choice([1, 1, 2, 4]),
        inner_lines=size,
        outer_lines=rng.choice([1, 70, 100]),
        fork_level=rng.randrange(depth) if extra < 0.1 else -1,
        late_level=rng.randrange(depth) if 0.1 <= extra < 0.15 else -1,
    )


def overlap_round(seed: int, workdir: Path, timeout: float, kinds: list[str]) -> str:
    """One round of blocks overlapping across threads; "" or what went wrong."""
    out, result = workdir / "overlap-out", workdir / "overlap-result"
    code = OVERLAP_CHILD.format(out=str(out), result=str(result), seed=seed, kinds=kinds)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"overlap seed {seed}: hung (killed after {timeout} s)"
    if done.returncode != 0:
        return f"overlap seed {seed}: exit {done.returncode}: {done.stderr[-1500:].decode(errors='replace')}"
    counts = json.loads(result.read_text())
    landed = counts["sinks"] + out.stat().st_size
    # A tee copies bytes into whatever fd 1 was at its enter, possibly another thread's block: then
    # only hangs and errors count.
    if not any(kind.startswith("tee") for kind in kinds) and landed != counts["written"]:
        return f"overlap seed {seed}: wrote {counts['written']} bytes, {landed} landed (sinks + real stdout)"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--overlap-rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    # Kinds: capture, stringio, callable, logger, tee, tee_live. Logger: a line split between two
    # blocks makes two records, counted one byte too many; tee: only hangs and errors are checked.
    parser.add_argument("--overlap-kinds", nargs="+", default=["stringio", "callable"], help="block kinds")
    parser.add_argument("--watchdog", type=float, default=20, help="seconds one case may take")
    parser.add_argument("--show", type=int, default=5, help="failures printed in full")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    cases = [random_case(rng) for _ in range(args.cases)]
    failures: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for first in range(0, len(cases), args.batch):
            batch = cases[first : first + args.batch]
            problems = run_cases(batch, workdir, unbuffered=rng.random() < 0.5, watchdog=args.watchdog)
            failures += problems
            # A hang or crash ends the child: run the rest of the batch again without that case.
            while problems and problems[0].startswith("child"):
                found = re.search(r"in case #(\d+) ", problems[0])
                if found is None:
                    break
                hung = int(found.group(1))
                batch = batch[hung + 1 :]
                problems = run_cases(batch, workdir, unbuffered=True, watchdog=args.watchdog) if batch else []
                failures += problems
            print(f"cases {min(first + args.batch, len(cases))}/{len(cases)}, failures {len(failures)}", flush=True)
        cases_time = time.monotonic() - started
        for round_seed in range(args.overlap_rounds):
            problem = overlap_round(args.seed * 100_000 + round_seed, workdir, args.watchdog * 3, args.overlap_kinds)
            if problem:
                failures.append(problem)
    total = time.monotonic() - started
    for failure in failures[: args.show]:
        print("----\n" + failure[:3000])
    print(
        f"cases: {len(cases)} in {cases_time:.1f} s; overlap rounds: {args.overlap_rounds} in "
        f"{total - cases_time:.1f} s; failures: {len(failures)}; total {total:.1f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
