"""The writer that stands in for sys.stdout/sys.stderr inside a block is line-buffered.

The guarantee (as a terminal's line buffering): a complete line reaches the fd before the write
that completes it returns, so complete lines keep their order with native output flushed after
them; a partial line waits for its newline, a flush in its thread or any switch (block
enter/exit, fork, interpreter exit). Each thread has its own partial line: threads' lines never
mix within a line, also while another thread flushes.
"""

from __future__ import annotations

import signal
from pathlib import Path

from conftest import run_child, run_ok


def test_complete_lines_keep_their_order_with_flushed_native_output(unbuffered: bool) -> None:
    child = run_ok(
        """
import sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_printf, c_write
with redirect_stdout_fd() as out:
    print("py", 1)
    c_write(1, "c 1\\n")
    print("py", 2, end="")
    sys.stdout.write(" and more\\n")
    c_printf("c 2\\n", flush=True)
    sys.stdout.buffer.write(b"bytes 3\\n")
    c_write(1, "c 3\\n")
    print("py", 4, "\\nspans", "lines")
    c_write(1, "c 4\\n")
print("after")
sys.stderr.write(repr(out.getvalue()) + "\\n")
""",
        unbuffered=unbuffered,
        timeout=30,
    )
    assert child.out == b"after\n"
    expected = "py 1\nc 1\npy 2 and more\nc 2\nbytes 3\nc 3\npy 4 \nspans lines\nc 4\n"
    assert child.err.decode().strip() == repr(expected)


def test_a_partial_line_waits_for_its_newline_or_a_flush() -> None:
    child = run_ok(
        """
import sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write
with redirect_stdout_fd() as out:
    sys.stdout.write("partial")
    c_write(1, "native\\n")
    sys.stdout.write(" line\\n")
    sys.stdout.write("flushed")
    sys.stdout.flush()
    c_write(1, " native\\n")
sys.stderr.write(repr(out.getvalue()) + "\\n")
""",
        timeout=30,
    )
    assert child.err.decode().strip() == repr("native\npartial line\nflushed native\n")


def test_a_partial_line_lands_in_its_block_at_exit(unbuffered: bool) -> None:
    child = run_ok(
        """
import sys
from fdredirect import STDOUT, redirect_stderr_fd, redirect_stdout_fd
with redirect_stdout_fd() as out:
    with redirect_stdout_fd() as inner:
        print("inner", end="")
    sys.stdout.write("outer")
    with redirect_stderr_fd(STDOUT):
        sys.stderr.write("err")
print("after", end="")
sys.stderr.write(repr((out.getvalue(), inner.getvalue())) + "\\n")
""",
        unbuffered=unbuffered,
        timeout=30,
    )
    assert child.out == b"after"
    assert child.err.decode().strip() == repr(("outererr", "inner"))


def test_an_exception_in_the_middle_of_a_line_leaves_the_line_in_its_block() -> None:
    child = run_ok(
        """
import sys
from fdredirect import redirect_stdout_fd
class Bad:
    def __str__(self):
        raise ValueError("no text")
with redirect_stdout_fd() as out:
    try:
        with redirect_stdout_fd() as inner:
            print("begun", Bad())
    except ValueError:
        pass
    print("next")
sys.stderr.write(repr((out.getvalue(), inner.getvalue())) + "\\n")
""",
        timeout=30,
    )
    assert child.err.decode().strip() == repr(("next\n", "begun "))


def test_threads_never_mix_within_a_line() -> None:
    child = run_ok(
        """
import sys, threading
from fdredirect import redirect_stdout_fd
THREADS, LINES = 4, 3000
def work(k):
    for i in range(LINES):
        print("thread", k, "line", i, "end")
def flusher(stop):
    while not stop.is_set():
        sys.stdout.flush()
with redirect_stdout_fd() as out:
    stop = threading.Event()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    flushing = threading.Thread(target=flusher, args=(stop,))
    flushing.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    flushing.join()
lines = out.getvalue().split("\\n")
assert lines.pop() == "", "the last line is complete"
seen = {k: [] for k in range(THREADS)}
for line in lines:
    words = line.split(" ")
    assert len(words) == 5 and words[0] == "thread" and words[4] == "end", repr(line)
    seen[int(words[1])].append(int(words[3]))
assert all(seen[k] == list(range(LINES)) for k in seen), "each thread's lines, all, in order"
print("ok")
""",
        timeout=120,
    )
    assert child.out == b"ok\n"


def test_a_fork_writes_the_partial_line_once() -> None:
    child = run_ok(
        """
import os, sys
from fdredirect import redirect_stdout_fd
with redirect_stdout_fd() as out:
    sys.stdout.write("before fork, ")
    pid = os.fork()
    if pid == 0:
        sys.stdout.write("child\\n")
        os._exit(0)
    os.waitpid(pid, 0)
    print("parent")
sys.stderr.write(repr(out.getvalue()) + "\\n")
""",
        timeout=30,
    )
    assert child.err.decode().strip() == repr("before fork, child\nparent\n")


def test_a_partial_line_in_a_block_open_at_interpreter_exit_lands_in_it(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    child = run_ok(
        f"""
import sys
from fdredirect import redirect_stdout_fd
redirect_stdout_fd({str(log)!r}).__enter__()
print("line")
sys.stdout.write("tail")
""",
        timeout=30,
    )
    assert log.read_text() == "line\ntail"
    assert child.out == b""


def test_a_partial_line_reaches_the_original_fd_at_a_crash(unbuffered: bool) -> None:
    child = run_child(
        """
import ctypes, sys
from fdredirect import redirect_stdout_fd
with redirect_stdout_fd():
    print("line")
    sys.stdout.write("partial")
    ctypes.string_at(0)
""",
        unbuffered=unbuffered,
        timeout=30,
    )
    assert child.returncode == -signal.SIGSEGV
    assert child.out == b"line\npartial"


def test_a_forked_child_does_not_write_the_parents_partial_lines(tmp_path: Path) -> None:
    # A partial line held at the fork (here written by a fork hook that runs after the library's
    # flush; in real programs, another thread writing at that moment) is the parent's, which
    # writes it when its line ends: the child must not write it again at its next switch.
    parent, child_file = tmp_path / "parent.txt", tmp_path / "child.txt"
    child = run_ok(
        f"""
import os, sys
os.register_at_fork(before=lambda: sys.stdout.write("held at the fork"))  # runs after fdredirect's
from fdredirect import redirect_stdout_fd
with redirect_stdout_fd({str(parent)!r}):
    pid = os.fork()
    if pid == 0:
        with redirect_stdout_fd({str(child_file)!r}):
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    print()
""",
        timeout=30,
    )
    assert parent.read_bytes() == b"held at the fork\n", child.err
    assert child_file.read_bytes() == b""
