"""Memory when a live target is slower than the writer: the target is called with pieces of at
most 1 MiB, so the objects made for it stay small however large the backlog; what is not yet
delivered is held once, by the reader."""

from __future__ import annotations

import pytest

from helpers import last_report, run_ok

PIECE = 1 << 20


@pytest.mark.parametrize("encoding", [None, "utf-8"], ids=["bytes", "text"])
def test_a_backlog_is_delivered_in_bounded_pieces_with_bounded_memory(encoding: str | None) -> None:
    size = 96 << 20
    child = run_ok(
        f"""
import resource, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit
from childlib import report
sizes = []
def discard(piece):
    sizes.append(len(piece))
with redirect_stdout_fd(discard, encoding={encoding!r}):  # warm-up
    c_emit(1, 1 << 20, hold_gil=True)
sizes.clear()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with redirect_stdout_fd(discard, encoding={encoding!r}):
    c_emit(1, {size}, hold_gil=True)   # nothing can be delivered until this returns
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report(((peak - base) * 1024 / {size}, max(sizes), sum(sizes)))
""",
        timeout=120,
    )
    growth, largest, total = last_report(child)
    assert total == size
    assert largest <= PIECE
    # The backlog itself (1x) plus small pieces; before pieces: 2x for bytes, 4x for text.
    assert growth < 1.5, growth


def test_pieces_never_split_a_character_or_reorder() -> None:
    child = run_ok(
        """
import sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write
from childlib import report
text = "a" + "é€😀" * 300_000     # 2-, 3- and 4-byte characters across every piece boundary
pieces = []
with redirect_stdout_fd(pieces.append):
    c_write(1, text.encode(), hold_gil=True)
report(("".join(pieces) == text, len(pieces) > 1))
""",
        timeout=60,
    )
    assert last_report(child) == (True, True)
