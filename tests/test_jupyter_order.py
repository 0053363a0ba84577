"""Jupyter, at the message level: with ``%load_ext fdredirect``, stdout and stderr keep their
relative order where native output is involved (issue 12 item 5; ipykernel #280, #737, #795), and
a cell of pure Python output is published exactly as without the extension."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import start_kernel

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

SETUP = "import sys, time\nfrom fdredirect.testing import c_fprintf_stderr, c_printf, c_write"


class Kernel:
    """A kernel and a blocking client; ``run`` returns a cell's stream messages in arrival order."""

    def __init__(self, unbuffered: bool, extension: bool) -> None:
        self.manager, self.client = start_kernel(unbuffered, startup_timeout=60)
        if extension:
            assert self.run("%load_ext fdredirect") == []
        assert self.run(SETUP) == []

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        if not self.client.context.closed:
            self.client.context.destroy(linger=0)

    def run(self, code: str, timeout: float = 60) -> list[tuple[str, str]]:
        msg_id = self.client.execute(code)
        deadline = time.monotonic() + timeout
        streams: list[tuple[str, str]] = []
        while True:
            try:
                msg: dict[str, Any] = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("the kernel did not finish the cell in time (wedged?)") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                streams.append((msg["content"]["name"], msg["content"]["text"]))
            elif msg["msg_type"] == "error":
                raise AssertionError(f"the cell failed: {msg['content']['evalue']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return streams


def runs(streams: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Consecutive messages of one stream joined: where the kernel splits a stream's text between
    messages depends on its flush timer, the order of the two streams does not."""
    joined: list[tuple[str, str]] = []
    for name, text in streams:
        if joined and joined[-1][0] == name:
            joined[-1] = (name, joined[-1][1] + text)
        else:
            joined.append((name, text))
    return joined


@pytest.fixture(params=[True, False], ids=["PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED-unset"])
def kernels(request: pytest.FixtureRequest) -> Iterator[tuple[Kernel, Kernel]]:
    """A kernel with the extension and one without."""
    started: list[Kernel] = []
    try:
        started.append(Kernel(request.param, extension=True))
        started.append(Kernel(request.param, extension=False))
        yield started[0], started[1]
    finally:
        for kernel in started:
            kernel.close()


# Native writes, one stream then the other, far enough apart for the delivery thread to take them.
ALTERNATING_C = """
for i in range(3):
    c_printf(f"out {i}\\n", flush=True)
    time.sleep(0.1)
    c_fprintf_stderr(f"err {i}\\n")
    time.sleep(0.1)
"""

# Native and Python output on both streams, back to back.
MIXED = """
for i in range(2):
    c_write(1, f"c out {i}\\n")
    print(f"py err {i}", file=sys.stderr)
    c_write(2, f"c err {i}\\n")
    print(f"py out {i}")
"""

PURE_PYTHON = """
for i in range(3):
    print("out", i)
    print("err", i, file=sys.stderr)
sys.stdout.write("partial ")
print("line")
"""


def test_native_stdout_and_stderr_in_write_order(kernels: tuple[Kernel, Kernel]) -> None:
    with_extension, _ = kernels
    assert runs(with_extension.run(ALTERNATING_C)) == [
        ("stdout", "out 0\n"),
        ("stderr", "err 0\n"),
        ("stdout", "out 1\n"),
        ("stderr", "err 1\n"),
        ("stdout", "out 2\n"),
        ("stderr", "err 2\n"),
    ]
    assert runs(with_extension.run(MIXED)) == [
        ("stdout", "c out 0\n"),
        ("stderr", "py err 0\nc err 0\n"),
        ("stdout", "py out 0\nc out 1\n"),
        ("stderr", "py err 1\nc err 1\n"),
        ("stdout", "py out 1\n"),
    ]


def test_pure_python_cells_are_published_as_without_the_extension(kernels: tuple[Kernel, Kernel]) -> None:
    with_extension, without = kernels
    # The kernel's own order: each stream's text is published at the cell's end, stdout first.
    # (Joined runs: the kernel's flush timer may split a stream's text, under load.)
    expected = [("stdout", "out 0\nout 1\nout 2\npartial line\n"), ("stderr", "err 0\nerr 1\nerr 2\n")]
    assert runs(without.run(PURE_PYTHON)) == expected
    assert runs(with_extension.run(PURE_PYTHON)) == expected
    # The order kept for native output does not stick to later Python-only cells.
    with_extension.run(MIXED)
    assert runs(with_extension.run(PURE_PYTHON)) == expected
