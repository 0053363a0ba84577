"""A stand-in for ``fdredirect._native`` as built where there is no fd core (src/unsupported.rs,
the Cargo feature ``unsupported``), with the same names and behaviour, as on Windows. Building that
module costs a minute and replaces the real one, so the tests use this instead;
``test_unsupported_platform.py`` checks that its names and reason match the Rust file's."""

from __future__ import annotations

from typing import Any

__version__ = "0.0.0+stand-in"

UNSUPPORTED = (
    "fdredirect does not support Windows yet: it redirects file descriptors 1 and 2 with POSIX dup2, "
    "which needs Linux, macOS or a BSD"
)


class Redirect:
    """Every redirect's base class. Its constructor raises."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Redirect:
        raise NotImplementedError(UNSUPPORTED)


class Redirects:
    """The base class of ``redirect_fds``. Its constructor raises."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Redirects:
        raise NotImplementedError(UNSUPPORTED)


class Captured:
    """Named by the public API; never made here."""


def flush_all() -> None:
    """Nothing to flush: no block can be open."""


def shutdown() -> None:
    """Nothing to end: no block can be open."""


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'fdredirect._native' has no attribute '{name}': {UNSUPPORTED}")
