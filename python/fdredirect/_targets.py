"""Target classification: what ``target`` means, decided before any fd is touched.

``classify`` hands the native ``Redirect`` a plan, ``(kind, arg)``, whose kind is one of the
``Kind`` strings (read into an enum on the Rust side, ``src/binding/plan.rs``): a target the
native side would have to refuse is refused here first, with a message that names it.
"""

from __future__ import annotations

import codecs
import io
import os
import sys

# ``import fdredirect`` stays cheap (issue 14): logging, re and subprocess are not imported here.
# mypy treats any name TYPE_CHECKING as true; importing typing for it costs milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any, Final, Literal, TypeGuard

    Kind = Literal[
        "capture",
        "fd",
        "path",
        "file",
        "devnull",
        "stdout",
        "original",
        "text_stream",
        "bytes_stream",
        "callable",
        "logger",
    ]
    """How the native side sends output to a target (see ``classify``)."""

DEVNULL: int = -3
"""Discard the stream (equal to ``subprocess.DEVNULL``)."""

STDOUT: int = -2
"""For stderr only: share whatever fd 1 points at, like the shell's ``2>&1``."""


class _Original:
    """The type of :data:`ORIGINAL` (one instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ORIGINAL"

    def __reduce__(self) -> str:
        return "ORIGINAL"


ORIGINAL: Final = _Original()
"""Where the fd pointed before any redirect: before the oldest open block of this library on it
(the fd itself when none is open), and before a Jupyter kernel's own fd capture (the kernel's
terminal). Resolved at each enter."""

ACCEPTED = (
    "None (capture), DEVNULL, STDOUT (stderr only), an fd (int), a path (str, bytes or os.PathLike), "
    "a file object backed by a real OS-level file, an object with a write() method, a callable, "
    "or a logging.Logger; or ORIGINAL (where the fd pointed before any redirect)"
)


def real_file(target: object) -> io.FileIO | None:
    """The ``io.FileIO`` under ``target``, if it is one or a buffered/text wrapper of one.

    Objects that merely have ``fileno()`` are not enough: ipykernel's ``OutStream`` returns the
    kernel's original terminal there, which is not where its text goes.
    """
    raw: object = target
    if isinstance(raw, io.TextIOWrapper):
        raw = raw.buffer
    if isinstance(raw, (io.BufferedWriter, io.BufferedRandom)):
        raw = raw.raw
    return raw if isinstance(raw, io.FileIO) else None


def classify(target: object, stream: str) -> tuple[Kind, Any]:
    """Return the plan ``(kind, arg)`` for the native ``Redirect``, or raise for a target it cannot
    take. ``arg`` is the fd or the ``os.fsencode``d path, else ``None`` (a logger's is its level,
    set by the caller once the level is checked).

    ``stream`` is ``"stdout"`` or ``"stderr"`` and only shapes the messages.
    """
    if target is None:
        return "capture", None
    if target is ORIGINAL:
        return "original", None
    if isinstance(target, bool):
        raise TypeError(f"target must be {ACCEPTED}, not bool")
    if isinstance(target, int):
        if target == DEVNULL:
            return "devnull", None
        if target == STDOUT:
            if stream != "stderr":
                raise ValueError("STDOUT is a target for redirect_stderr_fd only (it sends stderr to stdout)")
            return "stdout", None
        if target < 0:
            raise ValueError(f"invalid target {target}: fds are >= 0; the special targets are DEVNULL and STDOUT")
        return "fd", target
    if isinstance(target, (str, bytes, os.PathLike)):
        return "path", os.fsencode(target)
    file = real_file(target)
    if file is not None:
        if file.closed:
            raise ValueError(f"target file {target!r} is closed")
        return "file", None
    if is_logger(target):
        refuse_logging_loop(target, stream)
        return "logger", None
    if hasattr(target, "write"):
        return ("bytes_stream" if _is_binary(target) else "text_stream"), None
    if callable(target):
        return "callable", None
    raise TypeError(f"target must be {ACCEPTED}, not {type(target).__name__}")


def is_logger(target: object) -> TypeGuard[logging.Logger]:
    """Whether ``target`` is a ``logging.Logger``; without logging imported, nothing can be one."""
    logging = sys.modules.get("logging")
    return logging is not None and isinstance(target, logging.Logger)


def kernel_terminal(fd: int) -> int | None:
    """Called (natively) when an ``ORIGINAL`` block enters: in a Jupyter kernel whose own fd
    capture is on, the fd of the terminal it replaced (``OutStream.fileno()`` returns it), when
    the kernel's stream for ``fd`` is the current ``sys`` stream; else ``None``."""
    iostream = sys.modules.get("ipykernel.iostream")
    stream = sys.stdout if fd == 1 else sys.stderr
    if iostream is None or not isinstance(stream, iostream.OutStream):
        return None
    try:
        terminal = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: the kernel's fd capture is off
        return None
    return terminal if isinstance(terminal, int) and not isinstance(terminal, bool) else None


def _is_binary(stream: object) -> bool:
    """Whether a file-like object takes bytes: io's binary classes, or a mode with "b"."""
    if isinstance(stream, (io.RawIOBase, io.BufferedIOBase)):
        return True
    if isinstance(stream, io.TextIOBase):
        return False
    mode = getattr(stream, "mode", "")
    return isinstance(mode, str) and "b" in mode


def _writes_to_fd(stream: object, fd: int) -> bool:
    """Whether ``stream`` ends up writing to ``fd`` (directly, or as sys.stdout/sys.stderr would)."""
    if stream is None:
        return False
    if stream is (sys.stdout if fd == 1 else sys.stderr) or stream is (sys.__stdout__ if fd == 1 else sys.__stderr__):
        return True
    try:
        return bool(stream.fileno() == fd)  # type: ignore[attr-defined]
    except Exception:
        return False


def _opens_fd(path: str, fd: int) -> bool:
    """Whether opening ``path`` opens whatever this process's ``fd`` points at at that moment:
    ``/dev/stderr``, ``/dev/fd/2``, ``/proc/self/fd/2``, ``/proc/<pid>/fd/2`` or a symlink to one.

    Opened inside the block, such a path leads to the block's own pipe. A path that is merely the
    same file as the fd (``2>>app.log`` and a handler on ``app.log``) is opened on its own and its
    writes do not pass through the fd, so it is not a loop (``os.path.samestat`` would refuse it).
    """
    import re  # here, not at the top: only a FileHandler's path needs it

    fd_dir = re.compile(rf"/proc/{os.getpid()}(/task/\d+)?/fd")
    for _ in range(40):  # as many symlink hops as the kernel follows
        parent, name = os.path.split(os.path.abspath(path))
        if name == str(fd) and fd_dir.fullmatch(os.path.realpath(parent)):
            return True
        try:
            target = os.readlink(path)
        except OSError:
            return False
        path = os.path.join(parent, target)
    return False


def refuse_logging_loop(logger: logging.Logger, stream: str) -> None:
    """A logger whose records are written to the redirected fd would feed its own input: refuse it.

    Follows propagation like ``Logger.callHandlers``, and counts ``logging.lastResort`` when no
    handler is found (it writes to ``sys.stderr``). A ``FileHandler`` that opens its file at its
    next record (``delay=True``, or closed) is refused when its path opens the fd itself
    (``/dev/stderr`` and the like): it would open the block's pipe.
    """
    loop = _self_loop(logger, stream)
    if loop is not None:
        raise ValueError(loop)


def _self_loop(logger: logging.Logger, stream: str) -> str | None:
    """Why ``logger``'s records would come back to it if ``stream`` went into it, or ``None``."""
    found = _writes_to(logger, stream)
    if found is None:
        return None
    what, they, advice = found
    return f"logger {logger.name!r} {what}: {they} would be redirected back into the logger, an endless loop. {advice}"


def _writes_to(logger: logging.Logger, stream: str) -> tuple[str, str, str] | None:
    """How ``logger``'s records reach ``stream`` ("stdout" or "stderr"), if they do: what it has
    that writes there, how the message calls the records then, and what to do instead. See
    ``refuse_logging_loop``."""
    import logging  # here, not at the top: loaded already, the target is a Logger

    fd = 1 if stream == "stdout" else 2
    found = False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            found = True
            if isinstance(handler, logging.StreamHandler) and _writes_to_fd(handler.stream, fd):
                return f"has a handler writing to {stream} ({handler!r})", "its records", _LOG_ELSEWHERE
            if (
                isinstance(handler, logging.FileHandler)
                and handler.stream is None
                and _opens_fd(handler.baseFilename, fd)
            ):
                what = f"has a handler that will open {handler.baseFilename!r}, which is {stream} itself ({handler!r})"
                return what, "its records", _LOG_ELSEWHERE
        current = current.parent if current.propagate else None
    if not found and logging.lastResort is not None and fd == 2:
        what = "has no handlers, so its records go to logging.lastResort, which writes to stderr"
        return what, "they", "Configure a handler first"
    return None


_LOG_ELSEWHERE = "Log to another stream or a file"


def cross_loop(stdout: logging.Logger, stderr: logging.Logger) -> str | None:
    """Why the records of ``stdout`` (receiving fd 1) and ``stderr`` (receiving fd 2) would go
    round between them, or ``None``: the first writes to stderr and the second to stdout."""
    to_stderr, to_stdout = _writes_to(stdout, "stderr"), _writes_to(stderr, "stdout")
    if to_stderr is None or to_stdout is None:
        return None
    return (
        f"logger {stdout.name!r} receives stdout and {to_stderr[0]}, and logger {stderr.name!r} receives stderr "
        f"and {to_stdout[0]}: each one's records would be redirected into the other, an endless loop. {to_stderr[2]}"
    )


def refuse_logger_loop(
    stream: str,
    target: object,
    out: tuple[int, logging.Logger] | None,
    err: tuple[int, logging.Logger] | None,
) -> None:
    """Called (natively) when a block on ``stream`` enters and a logger block would then receive
    output: ``out`` and ``err`` are the logger blocks (their fd and logger) whose pipe fd 1 and
    fd 2 will point at once the block's fd is switched to ``target`` (a logger target's block
    is its own). Raises ``ValueError`` before anything is touched when a logger would receive
    its own records: it writes to the fd now going into it, or to the other fd, whose logger
    writes back to this one.
    """
    here, there = (out, err) if stream == "stdout" else (err, out)
    if here is None:
        return
    logger = here[1]
    loop = _self_loop(logger, stream)
    if loop is not None:
        if logger is target:  # its handlers changed since the block was made
            raise ValueError(loop)
        if _is_stdout_target(target):
            raise ValueError(f"cannot send {stream} to stdout while {_block(here)} is open: {loop}")
        raise ValueError(f"cannot send {stream} to {_named(target)}, the pipe of the open {_block(here)}: {loop}")
    if there is None:
        return
    loop = cross_loop(*((logger, there[1]) if stream == "stdout" else (there[1], logger)))
    if loop is None:
        return
    if logger is target:
        raise ValueError(f"cannot send {stream} to {target!r} while {_block(there)} is open: {loop}")
    raise ValueError(
        f"cannot send {stream} to {_named(target)}, the pipe of the open {_block(here)}, while {_block(there)} is "
        f"open: {loop}"
    )


def _block(block: tuple[int, logging.Logger]) -> str:
    return f"redirect_{'stdout' if block[0] == 1 else 'stderr'}_fd({block[1]!r})"


def _is_stdout_target(target: object) -> bool:
    return isinstance(target, int) and not isinstance(target, bool) and target == STDOUT


def _named(target: object) -> str:
    """``target`` as a message about a loop through it names it."""
    if _is_stdout_target(target):
        return "stdout"
    if isinstance(target, int) and not isinstance(target, bool):
        return f"fd {target}"
    return repr(target)


def check_codec(encoding: str | None, errors: str) -> None:
    """Raise now (TypeError, LookupError) for an encoding or error handler that decoding would reject."""
    if encoding is not None:
        if not isinstance(encoding, str):
            raise TypeError(f"encoding must be a str or None, not {type(encoding).__name__}")
        codecs.lookup(encoding)
    if not isinstance(errors, str):
        raise TypeError(f"errors must be a str, not {type(errors).__name__}")
    codecs.lookup_error(errors)
