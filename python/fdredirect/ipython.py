"""IPython extension: ``%load_ext fdredirect`` puts native output in the cell that wrote it.

In a Jupyter kernel, ``sys.stdout`` is the kernel's stream, not fd 1. For every cell, fd 1 and
fd 2 are redirected (as live targets) onto that cell's ``sys.stdout``/``sys.stderr``: C, C++,
Fortran and child-process output then appears in the cell, in call order with ``print``, and
what is still in libc's buffer when the cell's code ends is flushed into the same cell.
"""

from __future__ import annotations

import sys
from typing import Any

from ._redirect import redirect_stderr_fd, redirect_stdout_fd

_NO_KERNEL = "fdredirect: no Jupyter kernel here; native output already reaches the terminal, nothing to do."


class _CellRedirect:
    """The per-cell redirect of one shell: entered before each cell, left after it."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.blocks: list[redirect_stdout_fd | redirect_stderr_fd] = []

    def pre_run_cell(self, *_: object) -> None:
        self.post_run_cell()  # never two cells' blocks at once
        blocks: list[redirect_stdout_fd | redirect_stderr_fd] = [
            redirect_stdout_fd(sys.stdout),
            redirect_stderr_fd(sys.stderr),
        ]
        for block in blocks:
            block.__enter__()
            self.blocks.append(block)

    def post_run_cell(self, *_: object) -> None:
        # Innermost first; every block is left even if one raises (a failing target).
        error: BaseException | None = None
        while self.blocks:
            try:
                self.blocks.pop().__exit__(None, None, None)
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error


_ACTIVE: dict[int, _CellRedirect] = {}


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext fdredirect``. Safe to load twice; does nothing outside a kernel."""
    if getattr(shell, "kernel", None) is None:
        print(_NO_KERNEL)
        return
    if id(shell) in _ACTIVE:
        return
    cell = _CellRedirect(shell)
    shell.events.register("pre_run_cell", cell.pre_run_cell)
    shell.events.register("post_run_cell", cell.post_run_cell)
    _ACTIVE[id(shell)] = cell


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext fdredirect``: back to the kernel's own behaviour, from this cell on."""
    cell = _ACTIVE.pop(id(shell), None)
    if cell is None:
        return
    shell.events.unregister("pre_run_cell", cell.pre_run_cell)
    shell.events.unregister("post_run_cell", cell.post_run_cell)
    cell.post_run_cell()
