"""``redirect_fds``: fd 1 and fd 2 in one block, separately or merged in write order."""

from __future__ import annotations

from . import _native
from ._redirect import decorate, redirect_stderr_fd, redirect_stdout_fd
from ._targets import STDOUT, cross_loop, is_logger, refuse_logging_loop

# ``import fdredirect`` stays cheap (issue 14): typing and logging are not imported here (mypy
# treats any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    from typing_extensions import Self

    _F = TypeVar("_F", bound=Callable[..., Any])


def _is_stdout(target: object) -> bool:
    return isinstance(target, int) and not isinstance(target, bool) and target == STDOUT


class redirect_fds(_native.Redirects):  # noqa: N801 - named like redirect_stdout_fd
    """Send everything written to fd 1 and fd 2 inside the block to ``stdout`` and ``stderr``.

    Both fds are switched together: if the second switch fails, the first is undone before the
    error is raised, and at exit both are restored even if one of them raises (the first error
    is raised after). ``__enter__`` returns ``(out, err)``: what ``redirect_stdout_fd(stdout)``
    and ``redirect_stderr_fd(stderr)`` would return (a :class:`Captured` for ``None``, else the
    target), with ``err`` ``None`` when merged.

    Args:
        stdout: where fd 1's output goes: any target of :class:`redirect_stdout_fd`.
        stderr: where fd 2's output goes: any target of :class:`redirect_stdout_fd`, or
            ``STDOUT``: fd 2 then shares fd 1's destination (the shell's ``2>&1``), so both
            streams form one stream in exact write order, whatever wrote to it (Python, C,
            child processes).
        encoding, errors: as for :class:`redirect_stdout_fd`, for both streams.
        tee: also send every byte to where its stream pointed before. Merged, the one stream
            is copied to where stdout pointed before.
        level: the level of logger records (default ``logging.INFO`` for stdout and
            ``logging.WARNING`` for stderr).
        lines, timestamps: as for :class:`redirect_stdout_fd`, for callable targets.

    Two separate targets receive their streams separately: their relative order is not kept
    (use ``stderr=STDOUT`` for that). Like the single-fd redirects, an instance may be reused,
    nested, entered with ``async with`` and used as a decorator.

    Example::

        with redirect_fds() as (out, err):
            print("to stdout")
            print("to stderr", file=sys.stderr)
        assert (out.getvalue(), err.getvalue()) == ("to stdout\\n", "to stderr\\n")
    """

    def __new__(
        cls,
        stdout: object = None,
        stderr: object = None,
        *,
        encoding: str | None = "utf-8",
        errors: str = "replace",
        tee: bool = False,
        level: int | None = None,
        lines: bool = False,
        timestamps: bool = False,
    ) -> Self:
        if _is_stdout(stdout):
            raise ValueError("stdout=STDOUT: STDOUT is a target for stderr only (stderr=STDOUT sends stderr to stdout)")
        merged = _is_stdout(stderr)
        out = redirect_stdout_fd(
            stdout, encoding=encoding, errors=errors, tee=tee, level=level, lines=lines, timestamps=timestamps
        )
        # Merged, fd 2 shares fd 1's pipe: copying it again to the original stderr would
        # duplicate it, and out of order.
        err = redirect_stderr_fd(
            stderr,
            encoding=encoding,
            errors=errors,
            tee=tee and not merged,
            level=level,
            lines=lines,
            timestamps=timestamps,
        )
        # Checked again at enter (natively), but then fd 1 would already be switched.
        if merged and is_logger(stdout):
            refuse_logging_loop(stdout, "stderr")
        if is_logger(stdout) and is_logger(stderr):
            loop = cross_loop(stdout, stderr)
            if loop is not None:
                raise ValueError(f"cannot send stdout to {stdout!r} and stderr to {stderr!r}: {loop}")
        return super().__new__(cls, out, err, merged)

    def __call__(self, func: _F) -> _F:
        """Use as a decorator: every call of ``func`` runs inside the redirect."""
        return decorate(self, func)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stdout.target!r}, {self.stderr.target!r})"
