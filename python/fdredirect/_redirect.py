"""The public context managers. The switch itself is native (one call per enter and exit);
names, defaults, argument checking and documentation live here."""

from __future__ import annotations

from . import _native
from ._lines import check_callable_shape
from ._targets import check_codec, classify

# ``import fdredirect`` stays cheap (issue 14): typing, functools, inspect and logging are not
# imported here (mypy treats any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    from typing_extensions import Self

    from ._targets import Kind

    _F = TypeVar("_F", bound=Callable[..., Any])

_INFO, _WARNING = 20, 30  # logging.INFO, logging.WARNING

# The defaults, by identity: a capture block with every default (the common case, entered per
# test or per cell) skips classification and the codec lookups (see `_RedirectFd.__new__`).
_UTF8 = "utf-8"
_REPLACE = "replace"
_CAPTURE_PLAN: tuple[Kind, None] = ("capture", None)


def decorate(manager: Any, func: _F) -> _F:
    """``func`` run inside ``manager`` at every call (``async with`` for ``async def`` functions)."""
    import functools  # here, not at the top: only decorators need them
    import inspect

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            async with manager:
                return await func(*args, **kwargs)

        return run_async  # type: ignore[return-value]

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with manager:
            return func(*args, **kwargs)

    return run  # type: ignore[return-value]


class _RedirectFd(_native.Redirect):
    """Shared behaviour of ``redirect_stdout_fd`` and ``redirect_stderr_fd``."""

    _FD = 0
    _STREAM = ""
    # Point sys.stdout/sys.stderr at the native writer inside the block. The Jupyter extension's
    # private subclasses turn it off: they keep the kernel's streams and sync them instead.
    _SWAP_WRITER = True

    def __new__(
        cls,
        target: object = None,
        *,
        encoding: str | None = _UTF8,
        errors: str = _REPLACE,
        tee: bool = False,
        level: int | None = None,
        lines: bool = False,
        timestamps: bool = False,
    ) -> Self:
        if (
            target is None
            and encoding is _UTF8
            and errors is _REPLACE
            and tee is False
            and level is None
            and lines is False
            and timestamps is False
        ):
            # What the checks below conclude for these arguments, without running them.
            if cls._SWAP_WRITER:  # the native default: no keyword to parse
                return super().__new__(cls, cls._FD, _CAPTURE_PLAN, None, _UTF8, _REPLACE, False)
            return super().__new__(cls, cls._FD, _CAPTURE_PLAN, None, _UTF8, _REPLACE, False, swap_writer=False)
        kind, arg = classify(target, cls._STREAM)
        check_callable_shape(kind, target, lines=lines, timestamps=timestamps)
        check_codec(encoding, errors)
        if not isinstance(tee, bool):
            raise TypeError(f"tee must be a bool, not {type(tee).__name__}")
        if level is None:
            level = _INFO if cls._FD == 1 else _WARNING
        elif isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(f"level must be an int (a logging level), not {type(level).__name__}")
        if kind == "logger":
            arg = level
        elif kind == "callable":
            arg = (lines, timestamps)
        plan = (kind, arg)
        return super().__new__(cls, cls._FD, plan, target, encoding, errors, tee, swap_writer=cls._SWAP_WRITER)

    def __call__(self, func: _F) -> _F:
        """Use as a decorator: every call of ``func`` runs inside the redirect."""
        return decorate(self, func)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


class redirect_stdout_fd(_RedirectFd):  # noqa: N801 - named like contextlib.redirect_stdout
    """Send everything written to fd 1 inside the block to ``target``.

    Unlike ``contextlib.redirect_stdout``, this catches C ``printf``, C++ ``std::cout``, Fortran
    ``WRITE``, raw ``write(1, ...)`` and child processes, not only Python's ``print``: every
    buffer is flushed, then fd 1 itself is switched with ``dup2`` and switched back at exit.

    Args:
        target: where the output goes.

            - ``None``: captured; ``__enter__`` returns a :class:`Captured`.
            - ``DEVNULL``; an fd open for writing; a path (created, truncated, then appended to);
              a file object backed by a real file (flushed first): fd 1 points straight at it.
            - An object with ``write()`` (``io.StringIO``, ``io.BytesIO``, a Jupyter kernel's
              stream): receives ``str`` (text streams) or ``bytes`` (binary ones) *while the block
              runs*. A callable: called with each piece (``str``, or ``bytes`` if ``encoding=None``).
              A ``logging.Logger``: one record per line at ``level``, with
              ``extra={"fdredirect_fd": fd}``.
            - ``ORIGINAL``: where fd 1 pointed before any redirect (before the oldest open block
              of this library, and before a Jupyter kernel's own fd capture): out of every
              enclosing block, e.g. to the terminal.

            For all but capture, ``__enter__`` returns ``target``.
        encoding: how output is decoded for text targets and :meth:`Captured.getvalue`, and how
            Python text written inside the block is encoded (``None``: bytes; UTF-8 for text).
        errors: the decoding error handler.
        tee: also send every byte to where the stream pointed before, as it arrives.
        level: the level of logger records (default ``logging.INFO``).
        lines: a callable target gets one call per line, without its ``\n`` (or ``\r\n``), so
            ``tqdm.write`` or ``rich``'s ``console.print`` can be the target; a partial last line
            comes at the end of the block, and a line longer than 1 MiB comes in 1 MiB parts.
        timestamps: a callable target is called as ``target(time, piece)``, ``time`` (as from
            ``time.time()``) when the piece's last byte was read from the pipe (to the
            millisecond). Logger records always carry that time as ``created``.

    The redirect is process-wide: every thread's output to fd 1 goes to ``target`` while the block
    runs. One instance may be reused, nested, and used from several threads and asyncio tasks and
    as a decorator (also on ``async def`` functions, where ``async with`` is used). Each exit ends
    the newest block of the instance entered in the same thread or task, so blocks may end in any
    order; an exit with no such block (a generator suspended in a block and finished in another
    thread) ends the instance's newest block, so fd 1 and ``sys.stdout`` always come back.

    ``sys.__stdout__`` is line-buffered while a block is open on fd 1, so complete lines written
    to it stay in order with flushed native output. A ``KeyboardInterrupt`` raised by a Python
    stream's ``flush()`` during the switch is raised, never swallowed (at exit, after restoring).

    Example::

        with redirect_stdout_fd() as out:
            print("from Python")
            fdredirect.testing.c_printf("from C\\n")
        assert out.getvalue() == "from Python\\nfrom C\\n"
    """

    _FD = 1
    _STREAM = "stdout"


class redirect_stderr_fd(_RedirectFd):  # noqa: N801 - named like contextlib.redirect_stderr
    """Send everything written to fd 2 inside the block to ``target``.

    Takes the same arguments as :class:`redirect_stdout_fd` (logger records default to
    ``logging.WARNING``), and one more target, ``STDOUT``: fd 2 then shares
    whatever fd 1 points at when the block starts (the shell's ``2>&1``), so both streams form one
    stream in exact write order::

        with redirect_stdout_fd() as out, redirect_stderr_fd(STDOUT):
            ...
    """

    _FD = 2
    _STREAM = "stderr"
