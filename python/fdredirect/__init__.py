"""fdredirect: redirect and capture everything written to stdout and stderr at the fd level.

Python ``print``, C ``printf``, C++ ``std::cout``, Fortran ``WRITE``, raw ``write(1, ...)`` and
child processes all end up where you said, with nothing lost and the streams restored after.
"""

from __future__ import annotations

import atexit
import os

from . import _native
from ._both import redirect_fds
from ._native import Captured, __version__, flush_all
from ._redirect import redirect_stderr_fd, redirect_stdout_fd
from ._targets import DEVNULL, ORIGINAL, STDOUT

__all__ = [
    "DEVNULL",
    "ORIGINAL",
    "STDOUT",
    "Captured",
    "__version__",
    "flush_all",
    "load_ipython_extension",
    "redirect_fds",
    "redirect_stderr_fd",
    "redirect_stdout_fd",
    "unload_ipython_extension",
]


def load_ipython_extension(shell: object) -> None:
    """``%load_ext fdredirect``: see :mod:`fdredirect.ipython` (imported only now, issue 14)."""
    from . import ipython

    ipython.load_ipython_extension(shell)


def unload_ipython_extension(shell: object) -> None:
    """``%unload_ext fdredirect``: see :mod:`fdredirect.ipython`."""
    from . import ipython

    ipython.unload_ipython_extension(shell)


# Python's own buffers are copied into a forked child too: flush them first, or their bytes
# are written twice. (libc's and the C++/Fortran buffers are flushed by the native fork handler.)
# Windows has no fork, nor this function.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=flush_all)

# A process that exits inside a live block must not hang on it, nor lose what was not delivered.
atexit.register(_native.shutdown)
