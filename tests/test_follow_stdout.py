"""``2>&1`` blocks (``redirect_stderr_fd(STDOUT)``, ``redirect_fds(..., STDOUT)``) whose stdout block ends
first, or that overlap other threads' blocks: where fd 2 points meanwhile and after every block ended
(adversary findings 1, 2 and 8)."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from conftest import run_child

PRELUDE = """
import io, os, sys, tempfile, threading, time
from fdredirect import STDOUT, redirect_fds, redirect_stderr_fd, redirect_stdout_fd
report_fd = os.dup(2)
def report(value):
    os.write(report_fd, (repr(value) + "\\n").encode())
# The real stdout and stderr are files, to read back exactly what reached them.
out_file, err_file = tempfile.TemporaryFile(), tempfile.TemporaryFile()
os.dup2(out_file.fileno(), 1)
os.dup2(err_file.fileno(), 2)
def where():
    return [os.readlink(f"/proc/self/fd/{fd}") for fd in (1, 2)]
def reached(file):
    file.seek(0)
    return file.read()
def fds():
    return sorted(os.listdir("/proc/self/fd"))
def no_leak(before):
    # A live block's pipe and late-output copy are closed by its threads just after its exit.
    deadline = time.monotonic() + 10
    while fds() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    return fds() == before
# The library's own lasting fds (the reader's, ...) exist from the first live block on.
with redirect_stdout_fd(io.StringIO()), redirect_stderr_fd(io.StringIO()):
    pass
"""


def reported(code: str, unbuffered: bool, timeout: float = 60) -> Any:
    """Run ``code`` after the prelude in a child; return the value it reported last."""
    child = run_child(PRELUDE + code, unbuffered=unbuffered, timeout=timeout)
    assert child.returncode == 0, child.err.decode(errors="replace")
    return ast.literal_eval(child.err.decode().strip().splitlines()[-1])


OUTER_BLOCKS = {
    "stdout_stream": "redirect_stdout_fd(io.StringIO())",
    "stdout_capture": "redirect_stdout_fd(None)",
    "fds_merged": "redirect_fds(None, STDOUT)",
    "fds_separate": "redirect_fds(None, None)",
}


@pytest.mark.parametrize("outer", OUTER_BLOCKS.values(), ids=OUTER_BLOCKS.keys())
@pytest.mark.parametrize("inner", ["None", "io.StringIO()"])
def test_stdout_block_ending_under_follower_with_inner_block(outer: str, inner: str, unbuffered: bool) -> None:
    # X (stdout), Y = 2>&1 in it, Z (stderr) in Y; X ends first (documented RuntimeError), then Z,
    # then Y: fd 2 is back on the real stderr (finding 1), and what fd 2 got after X ended went
    # where fd 1 points again (the real stdout), not into a finished block.
    result = reported(
        f"""
before, open_before = where(), fds()
x, y, z = {outer}, redirect_stderr_fd(STDOUT), redirect_stderr_fd({inner})
x.__enter__(); y.__enter__(); z.__enter__()
try:
    x.__exit__(None, None, None)
    error = None
except RuntimeError as e:
    error = str(e)
z.__exit__(None, None, None)
os.write(2, b"follows stdout\\n")
y.__exit__(None, None, None)
os.write(2, b"real stderr\\n")
report((error, where() == before, no_leak(open_before), reached(out_file), reached(err_file)))
""",
        unbuffered,
    )
    error, restored, no_leak, to_stdout, to_stderr = result
    assert "End the stderr block first" in error
    assert (restored, no_leak) == (True, True)
    assert (to_stdout, to_stderr) == (b"follows stdout\n", b"real stderr\n")


def test_orphaned_follower_leaves_a_later_stdout_block_alone(unbuffered: bool) -> None:
    # X (stdout), Y = 2>&1 in it, X2 (stdout) in Y; X ends first: Y follows what X had saved (the
    # real stdout), not X2, and X2's correctly nested exit raises nothing (finding 8).
    result = reported(
        """
before = where()
x, y, x2 = redirect_stdout_fd(None), redirect_stderr_fd(STDOUT), redirect_stdout_fd(None)
first = x.__enter__(); y.__enter__(); later = x2.__enter__()
os.write(2, b"into X\\n")
try:
    x.__exit__(None, None, None)
except RuntimeError:
    pass
os.write(2, b"to stdout\\n")
os.write(1, b"into X2\\n")
x2.__exit__(None, None, None)
y.__exit__(None, None, None)
report((first.getvalue(), later.getvalue(), where() == before, reached(out_file), reached(err_file)))
""",
        unbuffered,
    )
    assert result == ("into X\n", "into X2\n", True, b"to stdout\n", b"")


def test_single_stderr_to_stdout_shares_the_newest_stdout_block(unbuffered: bool) -> None:
    # Unchanged: redirect_stderr_fd(STDOUT) shares whatever fd 1 points at when it starts.
    result = reported(
        """
with redirect_stdout_fd() as outer:
    with redirect_stdout_fd() as inner:
        with redirect_stderr_fd(STDOUT):
            print("out")
            print("err", file=sys.stderr)
report((outer.getvalue(), inner.getvalue(), reached(out_file), reached(err_file)))
""",
        unbuffered,
    )
    assert result == ("", "out\nerr\n", b"", b"")


# A ``sys.stderr`` whose ``flush`` enters a stdout block once fd 1 is switched: the pair's enter flushes
# Python's streams between its two switches, where another thread's enter could also run.
SWITCHING = """
class Switching:
    def __init__(self, stream, block):
        self.stream, self.block, self.entered = stream, block, None
    def flush(self):
        if self.block is not None and where()[0] != before[0]:  # fd 1 switched, fd 2 not yet
            block, self.block = self.block, None
            self.entered = (block, block.__enter__())
        self.stream.flush()
    def __getattr__(self, name):
        return getattr(self.stream, name)
"""


@pytest.mark.parametrize("pair", ["redirect_fds(None, STDOUT)", "redirect_fds(io.StringIO(), STDOUT)"])
def test_merged_pair_follows_its_own_stdout_block(pair: str, unbuffered: bool) -> None:
    # A stdout block B entered between the pair's stdout and stderr switches (deterministically,
    # from sys.stderr's flush): the pair's stderr still goes to the pair's stdout target, B gets
    # only fd 1's output, and B's exit (B ended before the pair) raises nothing (finding 2).
    result = reported(
        SWITCHING
        + f"""
before, open_before = where(), fds()
real_stderr = sys.stderr
sys.stderr = switching = Switching(real_stderr, redirect_stdout_fd(None))
pair = {pair}
with pair as (out, _):
    block, b_out = switching.entered
    os.write(2, b"pair stderr\\n")
    os.write(1, b"to B\\n")
    try:
        block.__exit__(None, None, None)
        error = None
    except RuntimeError as e:
        error = str(e)
    os.write(2, b"pair stderr again\\n")
    os.write(1, b"pair stdout\\n")
sys.stderr = real_stderr
os.write(2, b"real stderr\\n")
text = out.getvalue()
report((text, b_out.getvalue(), error, where() == before, no_leak(open_before), reached(out_file), reached(err_file)))
""",
        unbuffered,
    )
    assert result == (
        "pair stderr\npair stderr again\npair stdout\n",
        "to B\n",
        None,
        True,
        True,
        b"",
        b"real stderr\n",
    )


def test_merged_pairs_in_threads(unbuffered: bool) -> None:
    # Four threads each enter and leave redirect_fds(None, STDOUT) many times: no block raises, every
    # line lands in exactly one block's capture (fds are process-wide: not necessarily the writer's
    # own), nothing reaches the real fds, and both fds and the fd table are as before.
    result = reported(
        """
THREADS, ROUNDS = 4, 150
before, open_before = where(), fds()
errors, captured = [], []
def worker(t):
    for r in range(ROUNDS):
        try:
            with redirect_fds(None, STDOUT) as (out, _):
                os.write(1, f"{t}.{r} out\\n".encode())
                os.write(2, f"{t}.{r} err\\n".encode())
                time.sleep(0.0005)
            captured.append(out.getvalue())
        except RuntimeError as e:
            errors.append(str(e))
threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
lines = sorted("".join(captured).splitlines())
expected = sorted(f"{t}.{r} {s}" for t in range(THREADS) for r in range(ROUNDS) for s in ("out", "err"))
restored = where() == before
reals = (reached(out_file), reached(err_file))
report((errors[:3], len(errors), lines == expected, restored, no_leak(open_before), *reals))
""",
        unbuffered,
        timeout=120,
    )
    assert result == ([], 0, True, True, True, b"", b"")
