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
from helpers import open_fds, run_file_ok


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="CPython <= 3.10 checks for signals between a with statement's __enter__ and the set-up of "
    "its exit (and before __exit__): even a plain with leaks there (README, Limits)",
)
@pytest.mark.parametrize("statement", ["with", "async with"])
@pytest.mark.parametrize("target", ["None", "DEVNULL", "io.StringIO()"])
def test_with_under_a_signal_storm_never_leaves_the_fd_switched(statement: str, target: str) -> None:
    # SIGALRM every 50 µs whose handler raises: wherever the exception lands (before, between or
    # after the native enter and exit), the block is either not entered or fully left.
    child = run_file_ok("signal_storm.py", statement, target, timeout=60)
    assert child.out == b"after\n"
    lines = child.err.decode().splitlines()
    assert lines[0] == "(True, True, True)", child.err.decode()
    blocks, storms = (int(word) for word in lines[1].split()[1::2])
    assert blocks > storms > 10, lines[1]  # the storm did interrupt blocks, and blocks ran


def test_one_instance_shared_by_tasks_exiting_out_of_order() -> None:
    child = run_file_ok("shared_by_tasks.py", timeout=30)
    assert child.out == b"after\n"
    assert child.err.decode().strip() == repr(("a\n", "b1\nb2\n"))


@pytest.mark.parametrize("finish", ["resumed", "closed", "collected"])
def test_generator_finished_in_another_thread_restores_the_fd(finish: str) -> None:
    child = run_file_ok("generator_finish.py", finish, timeout=30)
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
