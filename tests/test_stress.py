"""Stress matrix: nesting depth 1-3 of every kind of block x GIL held or released x one or four
writer threads, every level writing more than a pipe holds; exact byte counts at every target and
on the real fds; forked writers and late children at each level. Each group of cases runs in a
child interpreter (children/stress_cases.py) with a watchdog per case, so a hang fails fast and
names the case. The known hangs and losses are in test_stress_regressions.py."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from helpers import run_file
from stress_child import KINDS, Case, marker, whole_lines


def stacks(depth: int) -> list[tuple[str, ...]]:
    """Depth 1 and 2: every stack. Depth 3: every pair of kinds at every pair of levels (an
    orthogonal array, 49 stacks instead of 343)."""
    if depth < 3:
        return list(itertools.product(KINDS, repeat=depth))
    n = len(KINDS)
    return [(KINDS[a], KINDS[b], KINDS[(a + b) % n]) for a in range(n) for b in range(n)]


def run_cases(cases: list[Case], tmp_path: Path, *, unbuffered: bool, watchdog: float = 10) -> list[str]:
    """Run ``cases`` in one child; return every problem found, each naming its case."""
    progress, cases_file = tmp_path / "progress.jsonl", tmp_path / "cases.json"
    out, err = tmp_path / "out", tmp_path / "err"
    cases_file.write_text(json.dumps([c.to_json() for c in cases]))
    timeout = 30 + watchdog * 2
    try:
        child = run_file(
            "stress_cases.py", cases_file, progress, out, err, watchdog, unbuffered=unbuffered, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return [f"child timed out after {timeout} s:\n{progress.read_text()[-4000:]}"]
    lines = progress.read_text().splitlines()
    done = [json.loads(line) for line in lines if line.startswith('{"done"')]
    problems = []
    if child.returncode != 0 or len(done) != len(cases):
        started = [json.loads(line) for line in lines if line.startswith('{"start"')]
        last = f"#{started[-1]['start']} {started[-1]['case']}" if started else "none"
        tail = "\n".join(lines[-60:])
        errors = err.read_bytes()[-2000:].decode(errors="replace")
        return [f"child exited {child.returncode} in case {last}:\n{tail}\n{errors}"]
    for stream, real in (("OUT", out.read_bytes()), ("ERR", err.read_bytes())):
        position = 0
        for index, (case, result) in enumerate(zip(cases, done)):
            end = real.find(marker(index), position)
            if end < 0:
                problems.append(f"{case.name}: marker {index} missing from real {stream}")
                break
            segment, want = real[position:end], result["real"].get(stream)
            if want is not None and (len(segment) != want or not whole_lines(segment, interleaved=case.interleaved)):
                problems.append(f"{case.name}: real {stream} got {len(segment)} bytes, expected {want}")
            position = end + len(marker(index))
    for case, result in zip(cases, done):
        problems += [f"{case.name}: {problem}" for problem in result["problems"]]
    return problems


def groups() -> list[object]:
    """One child per depth x GIL x threads."""
    params: list[object] = []
    for depth, hold_gil, threads in itertools.product((1, 2, 3), (True, False), (1, 4)):
        gil = "gil-held" if hold_gil else "gil-released"
        cases = [Case(stack, hold_gil, threads) for stack in stacks(depth)]
        params.append(pytest.param(cases, id=f"depth{depth}-{gil}-{threads}thread"))
    return params


@pytest.mark.parametrize("cases", groups())
def test_matrix(cases: list[Case], tmp_path: Path) -> None:
    problems = run_cases(cases, tmp_path, unbuffered=cases[0].threads == 1)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "stack",
    [("capture",), ("stringio", "capture"), ("tee", "stdout_merge"), ("logger", "callable"), ("capture", "tee_live")],
    ids=">".join,
)
def test_forked_writers_and_late_children(stack: tuple[str, ...], tmp_path: Path) -> None:
    """A process forked inside each level writes there; a shell child started at each level
    outlives its block (only hangs and errors count for those)."""
    levels = range(len(stack))
    cases = [Case(stack, gil, 1, 100, 100, fork_level=level) for level in levels for gil in (True, False)]
    cases += [Case(stack, True, 1, 100, 100, late_level=level) for level in levels]
    problems = run_cases(cases, tmp_path, unbuffered=False)
    assert not problems, "\n".join(problems)
