"""Issue 10's hangs and losses, and what the stress work found since, as regression tests: tee
inside tee or live blocks with writers holding the GIL, late output of children, threads opening
blocks at once, forks while live blocks run. Each runs in a child interpreter that must finish
within seconds."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import Child, child_env, run_child, run_file

# A hang is reported as a timeout of the child after this long (every case here takes under 2 s).
SHORT = 5


def run_quick(code: str, tmp_path: Path) -> str:
    """Run ``code`` in a child whose real stdout and stderr are files; return what it passed to
    ``report(text)``, failing on a hang or an error."""
    out, err, result = tmp_path / "out", tmp_path / "err", tmp_path / "result"
    setup = f"""
from childlib import real_fds_to_files, reporter_to
real_fds_to_files({str(out)!r}, {str(err)!r})
report = reporter_to({str(result)!r})
"""
    return _quick(lambda: run_child(setup + textwrap.dedent(code), timeout=SHORT), err, result)


def run_quick_file(name: str, tmp_path: Path, *args: object) -> str:
    """``run_quick`` of the program ``children/<name>``, given the files for its real stdout and
    stderr and for its report, then ``args``."""
    out, err, result = tmp_path / "out", tmp_path / "err", tmp_path / "result"
    return _quick(lambda: run_file(name, out, err, result, *args, timeout=SHORT), err, result)


def _quick(run: Callable[[], Child], err: Path, result: Path) -> str:
    child: Child | None
    try:
        child = run()
    except subprocess.TimeoutExpired:
        child = None
    if child is None:  # failed here, not in the except block: no chained timeout traceback
        pytest.fail(f"hung (child killed after {SHORT} s)")
    assert child.returncode == 0, err.read_text(errors="replace")[-3000:]
    return result.read_text()


@pytest.mark.timeout(SHORT + 10)
def test_tee_in_tee_print_larger_than_a_pipe(tmp_path: Path) -> None:
    err = run_quick(
        """
import sys
from fdredirect import redirect_stdout_fd
with redirect_stdout_fd(tee=True) as outer:
    with redirect_stdout_fd(tee=True) as inner:
        print("x" * 200_000)
report(f"{len(outer.getbytes())} {len(inner.getbytes())}")
""",
        tmp_path,
    )
    assert err == "200001 200001"


@pytest.mark.timeout(SHORT + 10)
@pytest.mark.parametrize("inner", ["tee_live", "tee"])
def test_tee_in_live_with_a_gil_holding_writer(inner: str, tmp_path: Path) -> None:
    err = run_quick(
        f"""
import io, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
outer = io.StringIO()
with redirect_stdout_fd(outer):
    with redirect_stdout_fd(io.StringIO() if {inner == "tee_live"} else None, tee=True) as inner:
        c_emit(1, 1 << 20, hold_gil=True)
got = len(inner.getvalue())
report(f"{{len(outer.getvalue())}} {{got}}")
""",
        tmp_path,
    )
    assert err == f"{1 << 20} {1 << 20}"


@pytest.mark.timeout(SHORT + 10)
def test_late_child_output_while_the_outer_writer_holds_the_gil(tmp_path: Path) -> None:
    """A child started in an inner live block writes more than a pipe after the block ended; its
    late output is forwarded into the outer block's pipe while the outer writer holds the GIL."""
    err = run_quick(
        """
import io, subprocess
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
results = []
for run in range(4):
    sizes, inner = [], io.StringIO()
    with redirect_stdout_fd(lambda text: sizes.append(len(text))):
        with redirect_stdout_fd(inner):
            child = subprocess.Popen(["sh", "-c", "sleep 0.05; head -c 1000000 /dev/zero | tr '\\\\0' y"])
        c_emit(1, 8 << 20, chunk=64, hold_gil=True)
        child.wait()
    results.append((sum(sizes), len(inner.getvalue())))
report(repr(results))
""",
        tmp_path,
    )
    # The late bytes belong to the outer block; today some may still reach the real stdout after
    # it ended (a separate defect): the point here is that nothing hangs.
    for outer, inner in ast.literal_eval(err):
        assert (8 << 20) <= outer <= (8 << 20) + 1_000_000
        assert inner == 0


@pytest.mark.timeout(SHORT + 10)
def test_live_blocks_opened_by_several_threads_at_once(tmp_path: Path) -> None:
    """Eight threads open live blocks at the same time (a third of them tee) while writing more
    than a pipe, with and without the GIL: each thread's tee copy goes to whatever fd 1 was at its
    enter, often another thread's live pipe. Every non-tee sink gets whole writes, nothing hangs."""
    err = run_quick(
        """
import io, threading
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
sinks, lock, barrier = [], threading.Lock(), threading.Barrier(8)
def work(i):
    barrier.wait()
    for round in range(5):
        sink = io.StringIO()
        with redirect_stdout_fd(sink, tee=i % 3 == 0):
            c_emit(1, 200_000, hold_gil=(i + round) % 2 == 0)
        with lock:
            sinks.append(sink)
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
report(str(len(sinks)))
""",
        tmp_path,
    )
    # Blocks overlap across threads, so a write may land in another thread's sink: only the
    # absence of a hang and of errors is checked here; bench/stress.py checks the byte totals.
    assert err == "40"


@pytest.mark.timeout(SHORT + 10)
def test_four_threads_without_the_gil_into_one_capture_keep_every_byte(tmp_path: Path) -> None:
    err = run_quick(
        """
import sys, threading
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit, pattern
def write():
    c_emit(1, 1 << 20, chunk=64)
with redirect_stdout_fd() as out:
    threads = [threading.Thread(target=write) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
data = out.getbytes()
report(f"{len(data)} {data == pattern(len(data))}")
""",
        tmp_path,
    )
    # Every write is one whole 64-byte line of the pattern, so any interleaving is the pattern.
    assert err == f"{4 << 20} True"


@pytest.mark.timeout(SHORT + 10)
def test_background_shell_pipelines_into_one_capture_keep_every_line(tmp_path: Path) -> None:
    err = run_quick(
        """
import os
from collections import Counter
from fdredirect import redirect_stdout_fd
with redirect_stdout_fd() as out:
    os.system("for i in 1 2 3 4; do (seq 1 20000 | sed s/^/p$i-/) & done; wait")
data = out.getbytes()
want = "".join(f"p{i}-{n}\\n" for i in range(1, 5) for n in range(1, 20001)).encode()
report(f"{len(data)} {len(want)} {Counter(data) == Counter(want)}")
""",
        tmp_path,
    )
    # sed writes 4 KiB blocks that do not end at line ends, so lines of the four pipelines may be
    # cut and interleaved (as in a regular file); every byte must be there.
    got, want, same = err.split()
    assert (got, same) == (want, "True")


@pytest.mark.timeout(SHORT + 10)
def test_closed_stdout_stays_closed_after_live_blocks(tmp_path: Path) -> None:
    err = run_quick(
        """
import io, os
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
os.close(1)
states = []
for round in range(5):
    sink = io.StringIO()
    with redirect_stdout_fd(sink, tee=round % 2 == 1):
        c_emit(1, 300_000)
    try:
        os.fstat(1)
        states.append((len(sink.getvalue()), "open"))
    except OSError:
        states.append((len(sink.getvalue()), "closed"))
report(repr(states))
""",
        tmp_path,
    )
    assert ast.literal_eval(err) == [(300_000, "closed")] * 5


@pytest.mark.timeout(SHORT + 10)
@pytest.mark.parametrize("live", [False, True], ids=["tee", "tee-on-live"])
def test_tee_onto_a_non_blocking_slow_pipe_keeps_every_byte(live: bool) -> None:
    """A parent (Node.js, asyncio) gave the child a stdout pipe with O_NONBLOCK and reads slowly:
    the reader waits for room instead of dropping the rest of the tee copy."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    code = f"""
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
import io, sys
with redirect_stdout_fd(io.StringIO() if {live} else None, tee=True):
    c_emit(1, 1 << 20)
"""
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=write_end, stderr=subprocess.PIPE, env=child_env(unbuffered=True)
    )
    os.close(write_end)
    try:
        time.sleep(0.3)
        received = 0
        while chunk := os.read(read_end, 1 << 16):
            received += len(chunk)
    finally:
        os.close(read_end)
        errors = child.communicate(timeout=SHORT)[1].decode(errors="replace")
    assert (child.returncode, received) == (0, 1 << 20), errors


@pytest.mark.timeout(SHORT + 10)
def test_late_output_written_inside_the_outer_block_reaches_it(tmp_path: Path) -> None:
    err = run_quick(
        """
import io, subprocess
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
got = []
for run in range(10):
    outer = io.StringIO()
    with redirect_stdout_fd(outer):
        with redirect_stdout_fd(io.StringIO()):
            child = subprocess.Popen(["sh", "-c", "sleep 0.05; head -c 300000 /dev/zero | tr '\\\\\\\\0' y"])
        c_emit(1, 1 << 20, hold_gil=True)
        child.wait()  # every late byte was written while the outer block is in force
    got.append(len(outer.getvalue()))
report(repr(got))
""",
        tmp_path,
    )
    assert ast.literal_eval(err) == [(1 << 20) + 300_000] * 10


@pytest.mark.timeout(SHORT + 10)
@pytest.mark.parametrize("outer", ["capture", "live"])
@pytest.mark.parametrize("inner", ["capture", "live"])
def test_tee_blocks_left_out_of_order_across_threads(outer: str, inner: str, tmp_path: Path) -> None:
    """Thread A's tee block is left while thread B's tee block, opened inside it (B's tee copies
    go to A's pipe), is still open; what B writes after that goes to B and the real stdout only."""
    err = run_quick_file("tee_blocks_across_threads.py", tmp_path, outer, inner)
    assert ast.literal_eval(err) == {"a": 300_000, "b": 500_000}
    assert (tmp_path / "out").stat().st_size == 600_000


@pytest.mark.timeout(SHORT + 10)
def test_stdout_merge_inside_a_logger_block_cannot_feed_the_logger(tmp_path: Path) -> None:
    """A logger with a handler on stderr is a fine stdout target, until stderr is merged into
    stdout inside its block: then each record would come back as a new line, forever."""
    err = run_quick(
        """
import logging, sys, time
from fdredirect import STDOUT, redirect_stderr_fd, redirect_stdout_fd
log = logging.getLogger("app")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(logging.StreamHandler(sys.stderr))
records = []
log.addFilter(lambda record: records.append(record) or True)
outcome = "entered"
with redirect_stdout_fd(log):
    try:
        with redirect_stderr_fd(STDOUT):
            print("hello")
            time.sleep(0.3)
    except ValueError:
        outcome = "refused"
report(f"{outcome} {len(records)}")
""",
        tmp_path,
    )
    assert err == "refused 0"


@pytest.mark.timeout(90)
def test_children_forked_while_live_blocks_run_can_open_live_blocks() -> None:
    """Three threads loop over tee-in-live blocks while the main thread forks; every child opens a
    live block of its own and exits. A child stuck for 2 s counts as hung and is killed."""
    child = run_file("fork_churn.py", timeout=80)
    assert child.returncode == 0, child.err.decode(errors="replace")
    assert ast.literal_eval(child.err.decode()) == {"ok": 80, "bad": 0, "hung": 0}
