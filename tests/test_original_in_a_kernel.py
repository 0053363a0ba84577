"""``ORIGINAL`` in a real Jupyter kernel: a block's native output goes to the kernel's terminal
(here a file standing in for it), not to the notebook, with the kernel's own fd capture on (the
default) and with ``%load_ext fdredirect`` or without it."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path
from typing import Any

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

CELL = """
from fdredirect import ORIGINAL, redirect_fds, redirect_stdout_fd
from fdredirect.testing import c_fprintf_stderr, c_printf
with redirect_stdout_fd(ORIGINAL):
    print("py to the terminal")
    c_printf("c to the terminal\\n")
with redirect_fds(ORIGINAL, ORIGINAL):
    c_fprintf_stderr("stderr to the terminal\\n")
c_printf("c to the notebook\\n", flush=True)
print("py to the notebook")
"""


NOTEBOOK = "c to the notebook\npy to the notebook\n"


def run_cell(client: Any, code: str, timeout: float = 60) -> str:
    """Run ``code``, then a cell that flushes the kernel's streams; return the text of every
    stream message, whatever its parent: without the extension, the kernel's own fd capture
    forwards native output at its own pace, possibly in a later cell."""
    shown = ""
    for cell in (code, "import sys; sys.stdout.flush()"):
        msg_id = client.execute(cell)
        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            try:
                msg = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"the kernel did not finish {cell!r} in time") from None
            if msg["msg_type"] == "stream":
                shown += msg["content"]["text"]
            elif msg["msg_type"] == "status" and msg["parent_header"].get("msg_id") == msg_id:
                idle = msg["content"]["execution_state"] == "idle"
        reply = client.get_shell_msg(timeout=10)
        assert reply["content"]["status"] == "ok", reply["content"]
    return shown


@pytest.mark.parametrize("load", [True, False], ids=["extension", "no-extension"])
@pytest.mark.parametrize("unbuffered", [True, False], ids=["PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED-unset"])
def test_native_output_reaches_the_kernels_terminal(tmp_path: Path, load: bool, unbuffered: bool) -> None:
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    terminal = tmp_path / "terminal.log"
    with open(terminal, "wb") as log:
        manager, client = jupyter_client.manager.start_new_kernel(
            startup_timeout=60, kernel_name="python3", env=env, stdout=log, stderr=log
        )
    try:
        shown = run_cell(client, ("%load_ext fdredirect\n" if load else "") + CELL)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    if load:
        assert shown == NOTEBOOK
    else:
        # The kernel's own fd capture delivers native output at its own pace (inside a line that
        # print() writes in two pieces, in a later cell, or not at all before shutdown): only
        # Python's line is sure to be there.
        assert "to the terminal" not in shown
        assert "py to the notebook\n" in shown
    lines = terminal.read_bytes().splitlines()
    expected = [b"py to the terminal", b"c to the terminal", b"stderr to the terminal"]
    assert [line for line in lines if b"to the terminal" in line] == expected
