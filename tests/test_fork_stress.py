"""fork() while other threads enter, leave and deliver: no lock may stay held in the child, and the
parent's blocks stay exact."""

from __future__ import annotations

from helpers import run_ok

STRESS = r"""
import io, os, signal, sys, threading, time, warnings
# CPython >= 3.12 discourages fork() with threads running: forking with threads is what is tested.
warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
from fdredirect import redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_write

FORKS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
stop = threading.Event()
problems = []
fd2_sinks = []      # everything the fd 2 blocks received, to count each fd 2 line
tee_lines = []      # what the fd 1 tee blocks sent on to the real fd 1

def fd1_worker():
    # The only thread on fd 1: each block must hold exactly its own lines.
    i = 0
    while not stop.is_set():
        kind = i % 3
        expected = f"w1 {i} c\n" + f"w1 {i} py\n"
        if kind == 0:
            with redirect_stdout_fd() as out:
                c_write(1, f"w1 {i} c\n"); print(f"w1 {i} py")
            got = out.getvalue()
        elif kind == 1:
            stream = io.StringIO()
            with redirect_stdout_fd(stream):
                c_write(1, f"w1 {i} c\n"); print(f"w1 {i} py")
            got = stream.getvalue()
        else:
            with redirect_stdout_fd(tee=True) as out:
                c_write(1, f"w1 {i} c\n"); print(f"w1 {i} py")
            got = out.getvalue()
            tee_lines.append(expected)
        if got != expected:
            problems.append(("fd1", i, got))
        i += 1

def fd2_worker():
    i = 0
    while not stop.is_set():
        if i % 2:
            stream = io.StringIO()
            with redirect_stderr_fd(stream):
                c_write(2, f"w2 {i}\n")
            fd2_sinks.append(stream.getvalue())
        else:
            with redirect_stderr_fd() as out:
                c_write(2, f"w2 {i}\n")
            fd2_sinks.append(out.getvalue())
        i += 1

def in_child(n, inherited):
    # Leave what this thread had entered before the fork (the sinks are the parent's: restore
    # only), then open new blocks (new reader and delivery threads), write, and check. Some
    # children exit normally: the exit handler then meets the other threads' inherited blocks.
    for block in reversed(inherited):
        block.__exit__(None, None, None)
    stream = io.StringIO()
    with redirect_stdout_fd(stream):
        c_write(1, "child live\n")
    with redirect_stderr_fd(tee=False) as out:
        c_write(2, "child capture\n")
        print("child py", file=sys.stderr)
    ok = stream.getvalue() == "child live\n" and out.getvalue() == "child capture\nchild py\n"
    if n % 10 == 9:
        sys.exit(0 if ok else 3)
    os._exit(0 if ok else 3)

def wait_child(pid):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"

workers = [threading.Thread(target=fd1_worker), threading.Thread(target=fd2_worker)]
for t in workers:
    t.start()
main_lines = []
for n in range(FORKS):
    kind = n % 3
    stream = io.StringIO()
    # Capture, live, and live with tee (its copies go to whatever fd 2 was: counted twice).
    blocks = [redirect_stderr_fd() if kind == 0 else redirect_stderr_fd(stream, tee=kind == 2)]
    results = [b.__enter__() for b in blocks]
    c_write(2, f"main {n}\n")
    main_lines.append(f"main {n}\n")
    pid = os.fork()
    if pid == 0:
        in_child(n, blocks)
    for block in reversed(blocks):
        block.__exit__(None, None, None)
    fd2_sinks.append(results[0].getvalue() if kind == 0 else stream.getvalue())
    code = wait_child(pid)
    if code != 0:
        problems.append(("child", n, code))
stop.set()
for t in workers:
    t.join()
sys.stdout.flush()
print(repr((problems, fd2_sinks, main_lines, tee_lines)), file=sys.__stderr__)
"""


def test_fork_while_other_threads_enter_leave_and_deliver() -> None:
    child = run_ok(STRESS, timeout=90)
    problems, fd2_sinks, main_lines, tee_lines = eval(child.err.strip().splitlines()[-1])
    assert problems == []
    # fd 2: every line written by any thread reached one place (a block's sink, or the real
    # stderr when no block was open on fd 2), or two while the main thread's tee block was open.
    real_stderr = child.err.decode().splitlines(keepends=True)[:-1]
    counts = collections_counter("".join(fd2_sinks).splitlines(keepends=True) + real_stderr)
    assert all(count in (1, 2) for count in counts.values()), [line for line, n in counts.items() if n > 2]
    for n, line in enumerate(main_lines):
        # A tee copy goes to the sink fd 2 had at enter: another thread's block that may have
        # ended (and been read) before the copy arrived.
        assert counts.get(line) in ((1, 2) if n % 3 == 2 else (1,)), line
    # fd 1: the tee blocks' copies, and nothing else (children only write inside their blocks).
    assert child.out.decode() == "".join(tee_lines)


def collections_counter(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    return counts
