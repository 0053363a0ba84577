"""Write-time timestamps: the reader stamps each piece when it takes it from the pipe. Loggers get
that time as ``LogRecord.created`` (``msecs`` and ``relativeCreated`` agree), callables with
``timestamps=True`` get ``(time, piece)``, also when delivery lags because the GIL is busy."""

from __future__ import annotations

import ast
import io
import re

import pytest

from conftest import open_fds, run_ok
from fdredirect import redirect_stdout_fd

# The reader takes a piece from the pipe a thread wake-up after it was written: with 2 busy cores
# that may take a while, far less than the busy loops that make delivery lag.
SLACK = 0.4

# A child's preamble: `busy(seconds)` holds the GIL (a large switch interval keeps it from the
# delivery thread), `seen` collects what targets got with the time they got it.
PREAMBLE = """
import logging, sys, time
from fdredirect import redirect_stdout_fd, redirect_stderr_fd
from fdredirect.testing import c_write
sys.setswitchinterval(30.0)
def busy(seconds):
    end = time.time() + seconds
    while time.time() < end:
        pass
seen = []
"""


def child_result(code: str, *, unbuffered: bool) -> dict[str, object]:
    child = run_ok(PREAMBLE + code + "\nsys.stderr.write(repr(result))\n", unbuffered=unbuffered, timeout=60)
    assert child.out == b""
    return dict(ast.literal_eval(child.err.decode()))


def test_a_log_record_is_dated_when_its_line_was_read_not_when_it_was_delivered(unbuffered: bool) -> None:
    result = child_result(
        """
class Keep(logging.Handler):
    def emit(self, record):
        seen.append((record.getMessage(), record.created, record.msecs, record.relativeCreated, time.time()))
log = logging.getLogger("fdredirect.test.stamps")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(Keep())
start = logging._startTime
start = start / 1e9 if isinstance(start, int) else start  # nanoseconds on 3.13+
with redirect_stdout_fd(log):
    before = time.time()
    c_write(1, "first\\nsecond\\nthird", hold_gil=True)  # the GIL is never let go from here...
    written = time.time()
    busy(1.0)  # ...to here: nothing can be delivered meanwhile
    after = time.time()
result = dict(seen=seen, before=before, written=written, after=after, start=start)
""",
        unbuffered=unbuffered,
    )
    seen = result["seen"]
    assert isinstance(seen, list)
    assert [message for message, *_ in seen] == ["first", "second", "third"]
    for _message, created, msecs, relative, delivered in seen:
        assert result["before"] <= created <= result["written"] + SLACK  # type: ignore[operator]
        assert delivered >= result["after"]  # type: ignore[operator]
        assert msecs == int((created - int(created)) * 1000)
        assert relative == pytest.approx((created - result["start"]) * 1000, abs=0.01)  # type: ignore[operator]


def test_callable_gets_time_and_line_with_lines_and_timestamps(unbuffered: bool) -> None:
    result = child_result(
        """
marks = []
with redirect_stdout_fd(lambda t, line: seen.append((t, line, time.time())), lines=True, timestamps=True):
    marks.append(time.time())
    c_write(1, "one\\n", hold_gil=True)
    marks.append(time.time())
    busy(1.0)
    marks.append(time.time())
    c_write(1, "two\\r\\nthr", hold_gil=True)
    marks.append(time.time())
    busy(1.0)
    marks.append(time.time())
result = dict(seen=seen, marks=marks)
""",
        unbuffered=unbuffered,
    )
    seen, marks = result["seen"], result["marks"]
    assert isinstance(seen, list)
    assert isinstance(marks, list)
    assert [line for _, line, _ in seen] == ["one", "two", "thr"]
    (t1, _, _), (t2, _, d2), (t3, _, _) = seen
    assert marks[0] <= t1 <= marks[1] + SLACK
    assert marks[2] <= t2 <= marks[3] + SLACK
    assert t3 == t2, "the partial last line's time is its last byte's read"
    assert d2 >= marks[4], "delivered after the busy loop"


def test_callable_gets_time_and_piece_in_bytes_without_lines(unbuffered: bool) -> None:
    result = child_result(
        """
with redirect_stdout_fd(lambda t, piece: seen.append((t, piece)), timestamps=True, encoding=None):
    before = time.time()
    c_write(1, b"\\x00raw\\xff", hold_gil=True)
    after = time.time()
    busy(0.5)
result = dict(seen=seen, before=before, after=after)
""",
        unbuffered=unbuffered,
    )
    seen = result["seen"]
    assert isinstance(seen, list)
    assert b"".join(piece for _, piece in seen) == b"\x00raw\xff"
    assert all(result["before"] <= t <= result["after"] + SLACK for t, _ in seen)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"target": io.StringIO(), "timestamps": True},
            ValueError,
            "timestamps=True is for callable targets, not StringIO",
        ),
        ({"target": None, "timestamps": True}, ValueError, "timestamps=True is for callable targets, not NoneType"),
        ({"target": print, "timestamps": 1}, TypeError, "timestamps must be a bool, not int"),
    ],
)
def test_bad_timestamps_are_refused_before_anything_is_touched(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    fds = open_fds()
    with pytest.raises(error, match=re.escape(message)) as caught:
        redirect_stdout_fd(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message
    assert open_fds() == fds
