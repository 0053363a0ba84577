"""Nesting, overlapping threads, reuse of one instance, decorators and async with."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest

from fdredirect import DEVNULL, STDOUT, redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_printf, c_write
from helpers import run_file_ok, run_ok


def test_nested_mix_of_targets_restores_each_level(tmp_path: Path, unbuffered: bool) -> None:
    log = tmp_path / "mid.log"
    child = run_ok(
        f"""
import sys
from fdredirect import redirect_stdout_fd, DEVNULL
from fdredirect.testing import c_printf
from childlib import report
print("top 1")
with redirect_stdout_fd() as outer:
    c_printf("outer 1\\n")
    with redirect_stdout_fd({str(log)!r}):
        c_printf("file 1\\n")
        with redirect_stdout_fd(DEVNULL):
            print("nowhere")
            with redirect_stdout_fd() as inner:
                c_printf("inner\\n")
            c_printf("nowhere either\\n")
        print("file 2")
    c_printf("outer 2\\n")
print("top 2")
report((outer.getvalue(), inner.getvalue()))
""",
        unbuffered=unbuffered,
    )
    assert child.out == b"top 1\ntop 2\n"
    assert child.err.strip() == repr(("outer 1\nouter 2\n", "inner\n")).encode()
    assert log.read_text() == "file 1\nfile 2\n"


def test_one_instance_reused_and_nested() -> None:
    redirect = redirect_stdout_fd()
    with redirect as first:
        c_write(1, "a")
        with redirect as second:
            c_write(1, "b")
        c_write(1, "c")
    with redirect as third:
        c_write(1, "d")
    assert (first.getvalue(), second.getvalue(), third.getvalue()) == ("ac", "b", "d")


def test_threads_exiting_out_of_order_lose_nothing(unbuffered: bool) -> None:
    child = run_file_ok("threads_leaving_out_of_order.py", unbuffered=unbuffered)
    assert child.out == b"after\nTrue\n"
    results = eval(child.err.strip())
    assert results == {"a": "a1 ", "b": "b1 a2 b2 "}


def test_many_threads_overlapping_keep_fd_sane() -> None:
    child = run_file_ok("overlapping_threads.py")
    assert child.out == b"ok\n"


def test_stdout_left_before_merged_stderr_raises_after_restoring_both() -> None:
    child = run_ok(
        """
import os, sys
from fdredirect import redirect_stdout_fd, redirect_stderr_fd, STDOUT
from fdredirect.testing import c_write
out_block = redirect_stdout_fd()
err_block = redirect_stderr_fd(STDOUT)
out = out_block.__enter__()
err_block.__enter__()
c_write(2, "merged\\n")
try:
    out_block.__exit__(None, None, None)
except RuntimeError as e:
    sys.__stdout__.write("RAISED: " + str(e).split(";")[0] + "\\n")
c_write(1, "stdout restored\\n")
c_write(2, "stderr follows stdout\\n")
err_block.__exit__(None, None, None)
c_write(2, "stderr restored\\n")
sys.__stdout__.write("CAPTURED: " + repr(out.getvalue()) + "\\n")
"""
    )
    assert child.out == (
        b"RAISED: the stdout redirect ended while a redirect_stderr_fd(STDOUT) entered inside it was still open\n"
        b"stdout restored\nstderr follows stdout\nCAPTURED: 'merged\\n'\n"
    )
    assert child.err == b"stderr restored\n"


def test_exit_without_enter_is_a_runtime_error() -> None:
    redirect = redirect_stdout_fd()
    with pytest.raises(RuntimeError, match=r"^__exit__ without a matching __enter__$"):
        redirect.__exit__(None, None, None)
    with redirect:
        pass
    with pytest.raises(RuntimeError, match=r"^__exit__ without a matching __enter__$"):
        redirect.__exit__(None, None, None)


def test_exit_in_another_thread_ends_the_instances_newest_block() -> None:
    # No entry of the instance was entered in the other thread's context: the exit ends the
    # instance's newest block rather than leave the fd switched for good.
    before = (os.fstat(1), sys.stdout)
    redirect = redirect_stdout_fd(DEVNULL)
    redirect.__enter__()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            redirect.__exit__(None, None, None)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert errors == []
    assert (os.path.samestat(os.fstat(1), before[0]), sys.stdout) == (True, before[1])
    with pytest.raises(RuntimeError, match=r"^__exit__ without a matching __enter__$"):
        redirect.__exit__(None, None, None)


def test_decorator_sync_and_async(tmp_path: Path) -> None:
    log = tmp_path / "deco.log"

    @redirect_stdout_fd(str(log))
    def noisy(n: int) -> int:
        c_printf(f"sync {n}\n")
        return n * 2

    @redirect_stdout_fd(str(log))
    async def noisy_async(n: int) -> int:
        await asyncio.sleep(0)
        c_write(1, f"async {n}\n")
        return n * 3

    assert noisy.__name__ == "noisy"
    assert noisy(2) == 4
    assert log.read_text() == "sync 2\n"
    assert asyncio.run(noisy_async(3)) == 9
    assert log.read_text() == "async 3\n"  # each block truncates the file first


def test_async_with() -> None:
    async def main() -> str:
        async with redirect_stdout_fd() as out:
            c_write(1, "async block")
        return out.getvalue()  # type: ignore[no-any-return]

    assert asyncio.run(main()) == "async block"


def test_stdout_to_stderr_chain_in_process() -> None:
    with redirect_stderr_fd() as err, redirect_stdout_fd(2):
        print("to fd 1")
        print("to fd 2", file=sys.stderr)
    assert err.getvalue() == "to fd 1\nto fd 2\n"


def test_merged_stderr_with_stdout_devnull_outer() -> None:
    with redirect_stdout_fd(DEVNULL), redirect_stderr_fd(STDOUT):
        c_write(2, "nowhere\n")
    assert os.isatty(2) == os.isatty(2)  # fds still usable


FOREIGN_SETUP = """
import io, os, sys, time
import wurlitzer
from fdredirect import redirect_stdout_fd
got = []
foreign_out = io.StringIO()
foreign = wurlitzer.pipes(stdout=foreign_out, stderr=None)
ours = redirect_stdout_fd(got.append)
from childlib import report
"""


def test_foreign_redirect_ending_first_keeps_its_restore() -> None:
    pytest.importorskip("wurlitzer")
    child = run_ok(
        FOREIGN_SETUP
        + """
foreign.__enter__()
ours.__enter__()
os.write(1, b"ours\\n")
foreign.__exit__(None, None, None)  # restores fd 1 to where it pointed before both
os.write(1, b"real 1\\n")
ours.__exit__(None, None, None)  # fd 1 is not ours any more: left alone
os.write(1, b"real 2\\n")
report((got, foreign_out.getvalue()))
""",
        timeout=30,
    )
    assert child.out == b"real 1\nreal 2\n"
    assert child.err.decode() == repr((["ours\n"], "")) + "\n"


def test_foreign_redirect_inside_ours_keeps_the_fd_until_it_ends() -> None:
    pytest.importorskip("wurlitzer")
    child = run_ok(
        FOREIGN_SETUP
        + """
ours.__enter__()
os.write(1, b"ours\\n")
foreign.__enter__()
os.write(1, b"foreign 1\\n")
ours.__exit__(None, None, None)  # the foreign redirect still owns fd 1
os.write(1, b"foreign 2\\n")
foreign.__exit__(None, None, None)  # restores fd 1 to our ended pipe: late output, forwarded
os.write(1, b"late\\n")
time.sleep(0.3)
report((got, foreign_out.getvalue()))
""",
        timeout=30,
    )
    assert child.err.decode() == repr((["ours\n"], "foreign 1\nforeign 2\n")) + "\n"
    assert child.out == b"late\n"
