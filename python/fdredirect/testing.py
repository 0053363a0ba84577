"""C emitters compiled into fdredirect, to check what reaches fd 1/2 in your environment.

Each writes the way a native library does: ``c_printf`` through libc's buffered ``stdout`` (the
bytes stay in libc's buffer until flushed), ``c_write`` and ``c_emit`` with raw ``write(2)``.
"""

from __future__ import annotations

from . import _native

__all__ = ["c_emit", "c_fprintf_stderr", "c_printf", "c_write", "pattern"]

_PATTERN = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.\n"
_MAX_CHUNK = 65536


def _as_bytes(text: str | bytes) -> bytes:
    if isinstance(text, str):
        return text.encode()
    if isinstance(text, bytes):
        return text
    raise TypeError(f"text must be str or bytes, not {type(text).__name__}")


def _check_fd(fd: int) -> None:
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(f"fd must be an int, not {type(fd).__name__}")
    if fd < 0:
        raise ValueError(f"fd must be >= 0, not {fd}")


def c_printf(text: str | bytes, *, flush: bool = False) -> int:
    """``printf("%s", text)`` from C, holding the GIL; ``fflush(stdout)`` after it if ``flush``."""
    return _native.c_printf(_as_bytes(text), bool(flush))


def c_fprintf_stderr(text: str | bytes) -> int:
    """``fprintf(stderr, "%s", text)`` from C (stderr is unbuffered in C)."""
    return _native.c_fprintf_stderr(_as_bytes(text))


def c_write(fd: int, data: str | bytes, *, hold_gil: bool = False) -> int:
    """``write(fd, data)`` from C, all of it. ``hold_gil`` keeps the GIL during the call."""
    _check_fd(fd)
    return _native.c_write(fd, _as_bytes(data), bool(hold_gil))


def c_emit(fd: int, nbytes: int, *, chunk: int = _MAX_CHUNK, hold_gil: bool = False) -> int:
    """``write(2)`` ``nbytes`` of :func:`pattern` to ``fd`` in ``chunk``-byte writes (at most 64 KiB).

    ``hold_gil=True`` keeps the GIL for the whole call, like an extension that never releases it.
    """
    _check_fd(fd)
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"nbytes must be an int >= 0, not {nbytes!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= _MAX_CHUNK:
        raise ValueError(f"chunk must be an int from 1 to {_MAX_CHUNK}, not {chunk!r}")
    return _native.c_emit(fd, nbytes, chunk, bool(hold_gil))


def pattern(nbytes: int) -> bytes:
    """The first ``nbytes`` bytes that :func:`c_emit` writes: 64-byte ASCII lines, repeated."""
    whole, rest = divmod(nbytes, len(_PATTERN))
    return _PATTERN * whole + _PATTERN[:rest]
