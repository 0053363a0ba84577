"""Target classification: what ``target`` means, decided before any fd is touched (DESIGN §4)."""

from __future__ import annotations

import codecs
import io
import logging
import os
import subprocess
from typing import Any

from . import _native

DEVNULL: int = subprocess.DEVNULL
"""Discard the stream (equal to ``subprocess.DEVNULL``)."""

STDOUT: int = subprocess.STDOUT
"""For stderr only: share whatever fd 1 points at, like the shell's ``2>&1``."""

ACCEPTED = (
    "None (capture), DEVNULL, STDOUT (stderr only), an fd (int), a path (str, bytes or os.PathLike) "
    "or a file object backed by a real OS-level file (io.FileIO or a buffered/text wrapper of one)"
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


def classify(target: object, stream: str) -> tuple[int, Any]:
    """Return ``(kind, arg)`` for the native ``Redirect``, or raise for a target it cannot take.

    ``stream`` is ``"stdout"`` or ``"stderr"`` and only shapes the messages.
    """
    if target is None:
        return _native.KIND_CAPTURE, None
    if isinstance(target, bool):
        raise TypeError(f"target must be {ACCEPTED}, not bool")
    if isinstance(target, int):
        if target == DEVNULL:
            return _native.KIND_DEVNULL, None
        if target == STDOUT:
            if stream != "stderr":
                raise ValueError("STDOUT is a target for redirect_stderr_fd only (it sends stderr to stdout)")
            return _native.KIND_STDOUT, None
        if target < 0:
            raise ValueError(f"invalid target {target}: fds are >= 0; the special targets are DEVNULL and STDOUT")
        return _native.KIND_FD, target
    if isinstance(target, (str, bytes, os.PathLike)):
        return _native.KIND_PATH, os.fsencode(target)
    file = real_file(target)
    if file is not None:
        if file.closed:
            raise ValueError(f"target file {target!r} is closed")
        return _native.KIND_FILE, None
    if isinstance(target, logging.Logger) or callable(target) or hasattr(target, "write"):
        raise TypeError(
            f"live targets (file-like objects, callables, loggers) are not supported yet; target must be {ACCEPTED}, "
            f"not {type(target).__name__}"
        )
    raise TypeError(f"target must be {ACCEPTED}, not {type(target).__name__}")


def check_codec(encoding: str | None, errors: str) -> None:
    """Raise now (TypeError, LookupError) for an encoding or error handler that decoding would reject."""
    if encoding is not None:
        if not isinstance(encoding, str):
            raise TypeError(f"encoding must be a str or None, not {type(encoding).__name__}")
        codecs.lookup(encoding)
    if not isinstance(errors, str):
        raise TypeError(f"errors must be a str, not {type(errors).__name__}")
    codecs.lookup_error(errors)
