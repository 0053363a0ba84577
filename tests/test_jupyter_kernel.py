"""Jupyter, at the message level (jupyter_client): kernel interrupts, ipykernel subshells, a
GIL-holding flood while the kernel is idle, unload and reload. Every wait has a timeout: a
wedged kernel fails the test instead of hanging it."""

from __future__ import annotations

import os
import queue
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import start_kernel

jupyter_client = pytest.importorskip("jupyter_client")
ipykernel = pytest.importorskip("ipykernel")

from fdredirect.testing import pattern  # noqa: E402

SETUP = "%load_ext fdredirect\nfrom fdredirect.testing import c_printf, c_write, c_emit\nimport time, threading"


class Kernel:
    """One kernel and a blocking client; every iopub stream message is kept, in arrival order."""

    def __init__(self, unbuffered: bool) -> None:
        self.manager, self.client = start_kernel(unbuffered, startup_timeout=30)
        self.streams: list[tuple[str, str, str]] = []  # (parent msg_id, name, text)
        self.idle: set[str] = set()
        self.started: set[str] = set()

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        # An unclosed client context warns when collected, inside whichever test runs then.
        if not self.client.context.closed:
            self.client.context.destroy(linger=0)

    def send(self, code: str, subshell: str | None = None) -> str:
        msg = self.client.session.msg("execute_request", {"code": code, "silent": False, "store_history": True})
        if subshell is not None:
            msg["header"]["subshell_id"] = subshell
        self.client.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def wait(self, msg_id: str, timeout: float = 20) -> dict[str, Any]:
        """The execute reply of ``msg_id``, once its cell's outputs all arrived (status idle)."""
        deadline = self.wait_idle(msg_id, timeout)
        while True:
            try:
                reply = self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no execute_reply for {msg_id} although the kernel went idle") from None
            if reply["parent_header"].get("msg_id") == msg_id:
                return dict(reply["content"])

    def wait_idle(self, msg_id: str, timeout: float) -> float:
        """Until the kernel is idle after ``msg_id``; returns the deadline."""
        deadline = time.monotonic() + timeout
        while msg_id not in self.idle:
            self._iopub(deadline)
        return deadline

    def _iopub(self, deadline: float) -> None:
        try:
            msg = self.client.get_iopub_msg(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"the kernel did not finish a cell in time (wedged?); idle after {self.idle}") from None
        parent = msg["parent_header"].get("msg_id", "")
        if msg["msg_type"] == "stream":
            self.streams.append((parent, msg["content"]["name"], msg["content"]["text"]))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            self.idle.add(parent)
        elif msg["msg_type"] == "execute_input":
            self.started.add(parent)

    def run(self, code: str, timeout: float = 20) -> dict[str, Any]:
        return self.wait(self.send(code), timeout)

    def text(self, msg_id: str | None = None, name: str = "stdout") -> str:
        return "".join(t for parent, n, t in self.streams if n == name and msg_id in (None, parent))

    def subshell(self) -> str:
        request = self.client.session.msg("create_subshell_request", {})
        self.client.control_channel.send(request)
        reply = self.client.get_control_msg(timeout=10)
        return str(reply["content"]["subshell_id"])


@pytest.fixture(params=[True, False], ids=["PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED-unset"])
def kernel(request: pytest.FixtureRequest) -> Iterator[Kernel]:
    started = Kernel(unbuffered=request.param)
    try:
        yield started
    finally:
        started.close()


def test_interrupts_unload_reload_and_an_idle_flood(kernel: Kernel) -> None:
    assert kernel.run(SETUP)["status"] == "ok"
    # A GIL-holding C flood from a thread while the kernel is idle: more than a pipe holds.
    kernel.run("flood = threading.Thread(target=c_emit, args=(1, 4 << 20), kwargs={'hold_gil': True})\nflood.start()")
    joined = kernel.run("flood.join()\nprint('alive')", timeout=30)
    assert joined["status"] == "ok"
    assert kernel.text() == pattern(4 << 20).decode() + "alive\n"

    # Interrupt while C writes in a loop, then while C holds the GIL.
    loop = kernel.send("while True:\n    c_write(1, 'x' * 100)\n    c_printf('y\\n')\n    time.sleep(0.001)")
    deadline = time.monotonic() + 10
    while "x" not in kernel.text(loop):
        kernel._iopub(deadline)
    kernel.manager.interrupt_kernel()
    assert kernel.wait(loop)["ename"] == "KeyboardInterrupt"
    # (Interrupted before the cell's code runs, ipykernel may drop the reply: wait for its output.)
    held = kernel.send("print('started', flush=True)\nc_emit(1, 20 << 20, hold_gil=True)\ntime.sleep(5)")
    deadline = time.monotonic() + 10
    while "started" not in kernel.text(held):
        kernel._iopub(deadline)
    kernel.manager.interrupt_kernel()
    assert kernel.wait(held)["ename"] == "KeyboardInterrupt"
    after = kernel.send("c_printf('native\\n', flush=True)\nprint('python')")
    assert kernel.wait(after)["status"] == "ok"
    assert kernel.text(after) == "native\npython\n"

    alive = kernel.send("c_printf('still ', flush=True)\nprint('synchronised')")
    kernel.wait(alive, timeout=10)
    assert kernel.text(alive) == "still synchronised\n"

    # Unload: the kernel's own behaviour; load twice, reload: native output in place again.
    kernel.run("%unload_ext fdredirect\n%unload_ext fdredirect")
    unloaded = kernel.send(
        "import sys\nprint(type(sys.stdout).__name__, type(sys.stdout.write).__name__ == '_Synced', "
        "'flush' in vars(sys.stdout))"
    )
    kernel.wait(unloaded)
    # The kernel's own stream, with at most IPython's own per-cell wrapper on `write` (IPython >= 9).
    assert kernel.text(unloaded) == "OutStream False False\n"
    kernel.run("%load_ext fdredirect\n%load_ext fdredirect")
    again = kernel.send("for i in range(3):\n    c_printf(f'c {i}\\n', flush=True)\n    print(f'py {i}')")
    kernel.wait(again)
    assert kernel.text(again) == "c 0\npy 0\nc 1\npy 1\nc 2\npy 2\n"


@pytest.mark.skipif(ipykernel.version_info < (7,), reason="subshells came with ipykernel 7")
def test_subshell_cells_run_beside_a_main_cell(kernel: Kernel) -> None:
    assert kernel.run(SETUP)["status"] == "ok"
    subshell = kernel.subshell()
    main = kernel.send("c_printf('main before\\n', flush=True)\ntime.sleep(1.5)\nprint('main after')")
    time.sleep(0.3)
    side = kernel.send("c_printf('side native\\n', flush=True)\nprint('side python')", subshell=subshell)
    assert kernel.wait(side, timeout=10)["status"] == "ok"
    assert kernel.wait(main, timeout=10)["status"] == "ok"
    # Native output of concurrent cells goes to the cell that reaches the next synchronisation
    # point (here each cell's own print follows its own native write).
    assert kernel.text(side) == "side native\nside python\n"
    assert kernel.text(main) == "main before\nmain after\n"
    # And the other way: a subshell cell running while the main shell starts one.
    side = kernel.send("time.sleep(1)\nprint('side done')", subshell=subshell)
    time.sleep(0.2)
    main = kernel.send("c_printf('main native\\n', flush=True)\nprint('main python')")
    assert kernel.wait(main, timeout=10)["status"] == "ok"
    assert kernel.wait(side, timeout=10)["status"] == "ok"
    assert kernel.text(main) == "main native\nmain python\n"


@pytest.mark.skipif(
    not os.environ.get("FDREDIRECT_INTERRUPT_TRIALS"),
    reason="set FDREDIRECT_INTERRUPT_TRIALS=N to run: ipykernel alone dies or wedges under SIGINT storms",
)
@pytest.mark.parametrize("load", [True, False], ids=["with-extension", "without"])
def test_interrupts_at_cell_boundaries(kernel: Kernel, load: bool) -> None:
    """The Stop button landing anywhere in short cells, start and end included. Opt-in: on a
    loaded 2-core machine ipykernel 7.4 died or wedged in 3 of 8 runs of 600 trials *without*
    the extension (2 of 8 with it), so a failure here says nothing about the extension unless it
    is compared with the run without it. (ipykernel also drops some interrupted cells'
    execute_reply: only the end of each cell is awaited.)"""
    if load:
        kernel.run(SETUP)
    rng = random.Random(16)
    for _ in range(int(os.environ["FDREDIRECT_INTERRUPT_TRIALS"])):
        trial = kernel.send("pass")
        time.sleep(rng.uniform(0, 0.006))
        kernel.manager.interrupt_kernel()
        kernel.wait_idle(trial, timeout=10)
    alive = kernel.send("print('alive')")
    kernel.wait_idle(alive, timeout=10)
    assert kernel.text(alive) == "alive\n"


def test_a_kernel_with_the_extension_exits_at_once_when_asked(kernel: Kernel) -> None:
    # At interpreter exit the shutdown hook takes every open live block's delivery for good; the
    # kernel's I/O thread then flushes its streams, which are synchronisation points: they must
    # not wait for a delivery that never comes (the kernel sat there until its manager killed it).
    kernel.run(SETUP)
    kernel.run("c_write(1, 'native\\n'); print('python')")
    process = kernel.manager.provisioner.process  # type: ignore[union-attr]
    kernel.client.shutdown()
    started = time.monotonic()
    while process.poll() is None and time.monotonic() - started < 20:
        time.sleep(0.01)
    # The plain kernel exits in ~0.2 s here; with the wait it took 2.6 s.
    assert process.poll() == 0
    assert time.monotonic() - started < 1.5
