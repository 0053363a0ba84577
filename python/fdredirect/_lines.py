"""Checks of the options that shape how a callable target takes its output (``lines``,
``timestamps``), before anything is touched."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._targets import Kind


def check_callable_shape(kind: Kind, target: object, *, lines: object, timestamps: object) -> None:
    """Raise for a non-bool option, or an option set for a target that is not a callable."""
    for name, value in (("lines", lines), ("timestamps", timestamps)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
        if value and kind != "callable":
            # Streams need their line endings; loggers already get lines and read times.
            raise ValueError(f"{name}=True is for callable targets, not {type(target).__name__}")
