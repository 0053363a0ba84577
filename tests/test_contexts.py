"""Blocks in execution contexts other than one thread's plain ``with``: ``async with`` under
interrupts, one instance shared by asyncio tasks, generators finished in another thread."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
from collections.abc import Iterator

import pytest

from fdredirect import DEVNULL, redirect_stdout_fd
from fdredirect.testing import c_write
from helpers import open_fds, run_ok


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="CPython <= 3.10 checks for signals between a with statement's __enter__ and the set-up of "
    "its exit (and before __exit__): even a plain with leaks there (README, Limits)",
)
@pytest.mark.parametrize("statement", ["with", "async with"])
@pytest.mark.parametrize("target", ["None", "DEVNULL", "io.StringIO()"])
def test_with_under_a_signal_storm_never_leaves_the_fd_switched(statement: str, target: str) -> None:
    # SIGALRM every 50 µs whose handler raises: wherever the exception lands (before, between or
    # after the native enter and exit), the block is either not entered or fully left. The handler
    # raises only in the code under test (the block's function and fdredirect's own Python code),
    # so the loop that counts the interruptions is not hit.
    child = run_ok(
        f"""
import asyncio, io, os, signal, sys, time
from fdredirect import redirect_stdout_fd, DEVNULL
from fdredirect.testing import c_write

class Storm(Exception):
    pass

def storm(signum, frame):
    if time.monotonic() > deadline:
        signal.setitimer(signal.ITIMER_REAL, 0)
    elif frame is not None and (frame.f_code is block.__code__ or "fdredirect" in frame.f_code.co_filename):
        raise Storm

{"async " if statement == "async with" else ""}def block():
    {statement} redirect_stdout_fd({target}):
        c_write(1, "inside\\n")

def drive(coroutine):
    if not {statement == "async with"}:
        return
    try:
        coroutine.send(None)
    except StopIteration:
        pass

def loop():
    blocks = storms = 0
    while time.monotonic() < deadline + 0.05:
        blocks += 1
        try:
            drive(block())
        except Storm:
            storms += 1
    return blocks, storms

with redirect_stdout_fd({target}):  # the reader threads, if any, exist before counting
    pass
original, fds, st = sys.stdout, sorted(os.listdir("/proc/self/fd")), os.fstat(1)
signal.signal(signal.SIGALRM, storm)
deadline = time.monotonic() + 1.0
signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
blocks, storms = loop()
time.sleep(0.05)
os.write(1, b"after\\n")
same = os.path.samestat(os.fstat(1), st)
sys.stderr.write(repr((sys.stdout is original, same, sorted(os.listdir("/proc/self/fd")) == fds)) + "\\n")
sys.stderr.write(f"blocks {{blocks}} storms {{storms}}\\n")
""",
        timeout=60,
    )
    assert child.out == b"after\n"
    lines = child.err.decode().splitlines()
    assert lines[0] == "(True, True, True)", child.err.decode()
    blocks, storms = (int(word) for word in lines[1].split()[1::2])
    assert blocks > storms > 10, lines[1]  # the storm did interrupt blocks, and blocks ran


def test_one_instance_shared_by_tasks_exiting_out_of_order() -> None:
    child = run_ok(
        """
import asyncio, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write

shared = redirect_stdout_fd()

async def main():
    a_in, b_in, a_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def a():
        async with shared as out:
            c_write(1, "a\\n")
            a_in.set()
            await b_in.wait()
        a_out.set()
        return out

    async def b():
        await a_in.wait()
        async with shared as out:
            c_write(1, "b1\\n")
            b_in.set()
            await a_out.wait()
            c_write(1, "b2\\n")
        return out

    out_a, out_b = await asyncio.gather(a(), b())
    c_write(1, "after\\n")
    return out_a.getvalue(), out_b.getvalue()

sys.stderr.write(repr(asyncio.run(main())) + "\\n")
""",
        timeout=30,
    )
    assert child.out == b"after\n"
    assert child.err.decode().strip() == repr(("a\n", "b1\nb2\n"))


@pytest.mark.parametrize("finish", ["resumed", "closed", "collected"])
def test_generator_finished_in_another_thread_restores_the_fd(finish: str) -> None:
    child = run_ok(
        f"""
import os, sys, threading
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write

def gen():
    with redirect_stdout_fd() as out:
        c_write(1, "first\\n")
        yield out
        c_write(1, "second\\n")

original, fds = sys.stdout, sorted(os.listdir("/proc/self/fd"))
holder = [gen()]
out = next(holder[0])
errors = []

def finish():
    try:
        if {finish!r} == "resumed":
            next(holder[0], None)
        elif {finish!r} == "closed":
            holder[0].close()
        else:
            holder.clear()  # the last reference: collected here, in this thread
    except BaseException as e:
        errors.append(repr(e))

thread = threading.Thread(target=finish)
thread.start()
thread.join()
c_write(1, "after\\n")
restored = (sys.stdout is original, sorted(os.listdir("/proc/self/fd")) == fds)
sys.stderr.write(repr((errors, restored, out.getvalue())) + "\\n")
""",
        timeout=30,
    )
    assert child.out == b"after\n"
    inside = "first\nsecond\n" if finish == "resumed" else "first\n"
    assert child.err.decode().strip() == repr(([], (True, True), inside))


def test_async_exit_stack_and_the_awaitables_of_async_with() -> None:
    async def main() -> str:
        async with contextlib.AsyncExitStack() as stack:
            out = await stack.enter_async_context(redirect_stdout_fd())
            c_write(1, "through an exit stack")
        return out.getvalue()  # type: ignore[no-any-return]

    assert asyncio.run(main()) == "through an exit stack"

    fds, stdout = open_fds(), sys.stdout
    redirect = redirect_stdout_fd(DEVNULL)
    unawaited = redirect.__aenter__()
    del unawaited  # never awaited: nothing was entered
    with pytest.raises(RuntimeError, match=r"^__exit__ without a matching __enter__$"):
        redirect.__exit__(None, None, None)

    async def twice() -> None:
        step = redirect.__aenter__()
        await step
        await redirect.__aexit__(None, None, None)
        await step

    with pytest.raises(RuntimeError, match=r"^cannot reuse an already awaited fdredirect step$"):
        asyncio.run(twice())

    async def exit_first() -> None:
        await redirect.__aexit__(None, None, None)

    with pytest.raises(RuntimeError, match=r"^__exit__ without a matching __enter__$"):
        asyncio.run(exit_first())
    assert (open_fds(), sys.stdout) == (fds, stdout)


def test_the_record_of_blocks_entered_here_stays_as_deep_as_the_nesting() -> None:
    # Blocks ended in another thread leave their id in this context's record; the next enter
    # here drops them, so the record never grows with the number of blocks.
    def gen() -> Iterator[None]:
        with redirect_stdout_fd(DEVNULL):
            yield

    for _ in range(50):
        suspended = gen()
        next(suspended)
        thread = threading.Thread(target=suspended.close)
        thread.start()
        thread.join()
    with redirect_stdout_fd(DEVNULL), redirect_stdout_fd(DEVNULL):
        record = next(v for k, v in contextvars.copy_context().items() if k.name == "fdredirect_entered")
        assert len(record) == 2
