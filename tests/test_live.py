"""Live targets (file-like objects, callables, loggers) and tee: delivered while the block runs,
complete and in order at exit, and never a deadlock, whoever holds the GIL."""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fdredirect import STDOUT, redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_emit, c_printf, c_write, pattern
from helpers import open_fds, run_ok

MIB = 1 << 20


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


class Lines(logging.Handler):
    """Collects records without writing anywhere."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def quiet_logger(name: str) -> tuple[logging.Logger, Lines]:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Lines()
    logger.handlers[:] = [handler]
    return logger, handler


@pytest.mark.parametrize("kind", ["StringIO", "BytesIO", "callable", "logger"])
def test_no_deadlock_when_c_holds_the_gil_for_64_mib(kind: str) -> None:
    size = 64 * MIB
    got: list[str] = []
    targets: dict[str, object] = {"StringIO": io.StringIO(), "BytesIO": io.BytesIO(), "callable": got.append}
    logger, handler = quiet_logger("fdredirect.test.bulk")
    targets["logger"] = logger
    target = targets[kind]
    with redirect_stdout_fd(target):
        if kind == "logger":
            c_write(1, b"x" * size + b"\n", hold_gil=True)  # one 64 MiB line: the pipe alone holds 64 KiB
        else:
            c_emit(1, size, hold_gil=True)
    if kind == "logger":
        assert [len(r.getMessage()) for r in handler.records] == [size]
    elif kind == "callable":
        assert "".join(got) == pattern(size).decode()
    else:
        assert target.getvalue() == (pattern(size) if kind == "BytesIO" else pattern(size).decode())  # type: ignore[attr-defined]


def test_a_gil_holding_flood_right_after_a_line_is_drained_while_delivery_waits_for_the_gil() -> None:
    # The delivery thread reads a short line itself and goes to take the GIL, which the writer
    # holds while it floods the pipe: the reader must take over, or this never finishes.
    child = run_ok(
        """
        import io, sys
        from fdredirect import redirect_stdout_fd
        from fdredirect.testing import c_emit, c_write
        target = io.StringIO()
        with redirect_stdout_fd(target):
            for i in range(20):
                c_write(1, f"line {i}\\n", hold_gil=True)
                c_emit(1, 1 << 20, hold_gil=True)
        sys.stderr.write(repr(target.getvalue()))
        """,
        timeout=60,
    )
    flood = pattern(MIB).decode()
    assert eval(child.err.decode().splitlines()[-1]) == "".join(f"line {i}\n{flood}" for i in range(20))


def test_another_thread_holding_the_gil_floods_the_fd_while_blocks_start_and_end() -> None:
    # Between switching the fd to its pipe and taking the GIL back, a block's pipe must already be
    # drained: another thread holding the GIL may be writing more than a pipe holds.
    run_ok(
        """
        import io, threading
        from fdredirect import redirect_stdout_fd
        from fdredirect.testing import c_emit
        stop = False
        def flood():
            while not stop:
                c_emit(1, 200_000, hold_gil=True)
        thread = threading.Thread(target=flood)
        thread.start()
        for i in range(200):
            with redirect_stdout_fd(io.StringIO(), tee=i % 2 == 0):
                pass
            with redirect_stdout_fd(tee=True):
                pass
        stop = True
        thread.join()
        """,
        timeout=60,
    )


def test_delivery_is_live_while_the_main_thread_waits_or_runs_python() -> None:
    arrivals: list[tuple[float, str]] = []
    with redirect_stdout_fd(lambda s: arrivals.append((time.monotonic(), s))):
        sent = time.monotonic()
        c_printf("while sleeping\n", flush=True)
        time.sleep(0.3)
        assert [text for _, text in arrivals] == ["while sleeping\n"]
        sleeping_delay = arrivals[0][0] - sent
        sent = time.monotonic()
        c_write(1, "while busy\n")
        deadline = time.monotonic() + 1
        while len(arrivals) < 2 and time.monotonic() < deadline:
            sum(range(1000))  # pure Python, holding the GIL between switch intervals
        busy_delay = arrivals[1][0] - sent
    # Generous bounds: CI machines are shared. The benchmarks measure the real numbers.
    assert sleeping_delay < 0.1
    assert busy_delay < 0.2


def test_everything_is_delivered_in_order_before_exit_returns(unbuffered: bool) -> None:
    child = run_ok(
        """
import io, sys
from fdredirect import redirect_stdout_fd, redirect_stderr_fd, STDOUT
from fdredirect.testing import c_printf, c_fprintf_stderr, c_write
stream = io.StringIO()
with redirect_stdout_fd(stream), redirect_stderr_fd(STDOUT):
    for i in range(300):
        print(f"o{i}")
        c_fprintf_stderr(f"e{i}\\n")
        c_printf(f"c{i}\\n", flush=True)
        c_write(2, f"w{i}\\n")
    c_printf("unflushed at the end")
sys.__stderr__.write(repr(stream.getvalue()) + "\\n")
""",
        unbuffered=unbuffered,
    )
    expected = "".join(f"o{i}\ne{i}\nc{i}\nw{i}\n" for i in range(300)) + "unflushed at the end"
    assert eval(child.err.strip()) == expected
    assert child.out == b""


def test_every_split_offset_of_multibyte_characters_arrives_whole() -> None:
    text = "aé€😀z"
    data = text.encode()
    for cut in range(len(data) + 1):
        pieces: list[str] = []
        with redirect_stdout_fd(pieces.append):
            c_write(1, data[:cut])
            time.sleep(0.02)  # let the reader deliver the first part on its own
            c_write(1, data[cut:])
        assert "".join(pieces) == text, cut
        assert all("\ufffd" not in piece for piece in pieces), (cut, pieces)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=8),
    encoding=st.sampled_from(["utf-8", "latin-1", "ascii", "utf-16-le", "shift_jis"]),
    errors=st.sampled_from(["replace", "backslashreplace", "surrogateescape"]),
)
def test_delivered_pieces_concatenate_to_the_decoded_stream(chunks: list[bytes], encoding: str, errors: str) -> None:
    pieces: list[str] = []
    try:
        expected = b"".join(chunks).decode(encoding, errors)
    except UnicodeDecodeError:
        expected = None  # e.g. a truncated UTF-16 tail, which no handler here can escape

    def run() -> None:
        with redirect_stdout_fd(pieces.append, encoding=encoding, errors=errors):
            for chunk in chunks:
                c_write(1, chunk)

    if expected is None:
        with pytest.raises(UnicodeDecodeError):
            run()
        return
    run()
    assert "".join(pieces) == expected


def test_text_bytes_and_callable_modes() -> None:
    text, binary, raw = io.StringIO(), io.BytesIO(), []
    with redirect_stdout_fd(text) as returned:
        c_write(1, b"caf\xc3\xa9 \xff")
    assert returned is text
    assert text.getvalue() == "caf\u00e9 \ufffd"
    with redirect_stdout_fd(binary):
        c_write(1, b"\xff\x00")
    assert binary.getvalue() == b"\xff\x00"
    with redirect_stdout_fd(raw.append, encoding=None):
        c_write(1, b"\xff")
    assert raw == [b"\xff"]


def test_logger_gets_one_record_per_line_with_the_fd() -> None:
    logger, handler = quiet_logger("fdredirect.test.lines")
    with redirect_stderr_fd(logger):
        c_write(2, "first\nsecond\n\nlast without newline")
    assert [(r.levelno, r.getMessage(), r.fdredirect_fd) for r in handler.records] == [  # type: ignore[attr-defined]
        (logging.WARNING, "first", 2),
        (logging.WARNING, "second", 2),
        (logging.WARNING, "", 2),
        (logging.WARNING, "last without newline", 2),
    ]
    with redirect_stdout_fd(logger, level=logging.DEBUG):
        c_write(1, "debug line\n")
    assert handler.records[-1].levelno == logging.DEBUG


def test_target_error_surfaces_at_exit_and_writers_never_block() -> None:
    calls = []

    def failing(text: str) -> None:
        calls.append(text)
        raise ZeroDivisionError("target failed")

    def run() -> None:
        with redirect_stdout_fd(failing):
            c_write(1, "first\n")
            time.sleep(0.05)
            c_emit(1, 4 * MIB, hold_gil=True)  # far more than a pipe holds: still drained

    before = sys.stdout
    with pytest.raises(ZeroDivisionError, match="target failed"):
        run()
    assert sys.stdout is before
    assert calls == ["first\n"]  # after the first failure the output is dropped


@pytest.mark.parametrize(
    "configure",
    ["handler-on-stderr", "last-resort", "parent-on-stdout", "handler-on-fd"],
)
def test_a_logger_that_would_write_into_its_own_input_is_refused(configure: str) -> None:
    logger = logging.getLogger(f"fdredirect.test.loop.{configure}")
    logger.handlers.clear()
    logger.propagate = True
    parent = logging.getLogger("fdredirect.test.loop")
    parent.handlers.clear()
    parent.propagate = False
    if configure == "handler-on-stderr":
        logger.addHandler(logging.StreamHandler(sys.stderr))
        redirect, stream = redirect_stderr_fd, "stderr"
    elif configure == "last-resort":
        redirect, stream = redirect_stderr_fd, "stderr"
    elif configure == "parent-on-stdout":
        parent.addHandler(logging.StreamHandler(sys.stdout))
        redirect, stream = redirect_stdout_fd, "stdout"
    else:
        own = open(1, "w", closefd=False)  # noqa: SIM115 - a stream on fd 1 itself
        logger.addHandler(logging.StreamHandler(own))
        redirect, stream = redirect_stdout_fd, "stdout"
    before = (open_fds(), sys.stdout, sys.stderr)
    with pytest.raises(ValueError, match=rf"^logger '{logger.name}' has .*{stream}.*endless loop"):
        redirect(logger)
    assert (open_fds(), sys.stdout, sys.stderr) == before
    if configure == "handler-on-fd":
        own.close()
    logger.handlers.clear()
    parent.handlers.clear()


@pytest.mark.parametrize(
    ("path", "stream"),
    [
        ("/dev/stderr", "stderr"),
        ("/dev/fd/2", "stderr"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/<pid>/fd/2", "stderr"),
        ("/dev/stdout", "stdout"),
        ("symlink to /dev/stdout", "stdout"),
    ],
)
def test_a_delayed_file_handler_opening_the_redirected_fd_is_refused(tmp_path: Path, path: str, stream: str) -> None:
    # Opened at its first record, inside the block: the path then leads to the block's own pipe.
    path = path.replace("<pid>", str(os.getpid()))
    if path.startswith("symlink"):
        (tmp_path / "out").symlink_to("/dev/stdout")
        path = str(tmp_path / "out")
    logger = logging.getLogger(f"fdredirect.test.delayed.{stream}")
    logger.propagate = False
    logger.addHandler(logging.FileHandler(path, delay=True))
    redirect = redirect_stdout_fd if stream == "stdout" else redirect_stderr_fd
    before = (open_fds(), sys.stdout, sys.stderr)
    try:
        with pytest.raises(ValueError, match=rf"^logger '{logger.name}' has .*{stream}.*endless loop"):
            redirect(logger)
        assert (open_fds(), sys.stdout, sys.stderr) == before
    finally:
        logger.handlers.clear()


def test_a_delayed_file_handler_on_another_file_or_the_other_fd_is_accepted(tmp_path: Path) -> None:
    logger = logging.getLogger("fdredirect.test.delayed.accepted")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.FileHandler(tmp_path / "log", delay=True))
    logger.addHandler(logging.FileHandler("/dev/stdout", delay=True))  # fd 1 is not redirected below
    handlers = list(logger.handlers)
    try:
        with redirect_stderr_fd(logger, level=logging.INFO):
            c_write(2, "to the log\n")
        assert (tmp_path / "log").read_text() == "to the log\n"
    finally:
        for handler in handlers:
            handler.close()
        logger.handlers.clear()


def test_unconfigured_logger_on_stdout_is_accepted() -> None:
    logger = logging.getLogger("fdredirect.test.unconfigured")
    with redirect_stdout_fd(logger):
        c_write(1, "dropped: INFO is below the effective level WARNING\n")


def test_late_output_goes_to_the_original_destination(unbuffered: bool) -> None:
    child = run_ok(
        """
import io, subprocess, sys, time
from fdredirect import redirect_stdout_fd
stream = io.StringIO()
start = time.monotonic()
with redirect_stdout_fd(stream):
    print("inside")
    bg = subprocess.Popen(["sh", "-c", "echo early; sleep 1; echo late"])
    time.sleep(0.3)
took = time.monotonic() - start
bg.wait()
time.sleep(0.2)
sys.__stderr__.write(repr((took < 0.9, stream.getvalue(), bg.returncode)) + "\\n")
""",
        unbuffered=unbuffered,
    )
    assert eval(child.err.strip()) == (True, "inside\nearly\n", 0)
    assert child.out == b"late\n"  # neither blocked nor killed by SIGPIPE, and not lost


def test_no_fd_or_thread_leak_over_many_live_blocks() -> None:
    with redirect_stdout_fd(io.StringIO()):  # the reader and delivery threads exist from here on
        c_write(1, "warm up\n")
    fds, tasks = open_fds(), threads()
    for _ in range(10_000):
        sink = io.StringIO()
        with redirect_stdout_fd(sink):
            c_write(1, "x")
        assert sink.getvalue() == "x"
    for _ in range(1_000):
        with redirect_stdout_fd(tee=True), redirect_stderr_fd(STDOUT, tee=True):
            pass
    assert (open_fds(), threads()) == (fds, tasks)


def test_exit_while_a_live_block_is_open_does_not_hang_and_loses_nothing(unbuffered: bool) -> None:
    child = run_ok(
        """
import atexit, io, sys
stream = io.StringIO()
# Registered first, so it runs last: after fdredirect's own exit hook.
atexit.register(lambda: sys.__stderr__.write(repr(stream.getvalue().encode()) + "\\n"))
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit, c_printf, c_write
block = redirect_stdout_fd(stream)
block.__enter__()
c_write(1, "written in the open block\\n", hold_gil=True)
c_emit(1, 1 << 20, hold_gil=True)
c_printf("unflushed at exit\\n")
""",
        unbuffered=unbuffered,
        timeout=30,
    )
    delivered = eval(child.err.strip().splitlines()[-1])
    # Each byte was either delivered to the target before exit, or written to the real stdout.
    assert delivered + child.out == b"written in the open block\n" + pattern(1 << 20) + b"unflushed at exit\n"


@pytest.mark.parametrize("target", ["capture", "file", "StringIO"])
def test_tee_sends_every_byte_to_both(target: str, tmp_path: object, unbuffered: bool) -> None:
    make = {"capture": "None", "file": f"{str(tmp_path)!r} + '/tee.log'", "StringIO": "io.StringIO()"}[target]
    child = run_ok(
        f"""
import io, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_printf, c_write
target = {make}
with redirect_stdout_fd(target, tee=True) as got:
    print("py")
    c_printf("c\\n", flush=True)
    c_write(1, "raw\\n")
if isinstance(got, str):
    value = open(got).read()
elif isinstance(got, io.StringIO):
    value = got.getvalue()
else:
    value = got.getvalue()
sys.__stderr__.write(repr(value) + "\\n")
""",
        unbuffered=unbuffered,
    )
    assert child.out == b"py\nc\nraw\n"
    assert eval(child.err.strip()) == "py\nc\nraw\n"


def test_live_block_inside_pytests_capture(capfd: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    with redirect_stdout_fd(stream):
        print("py")
        c_printf("c\n")
    print("after")
    assert stream.getvalue() == "py\nc\n"
    assert capfd.readouterr().out == "after\n"


def test_fork_inside_a_live_block() -> None:
    child = run_ok(
        """
import io, os, sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write
stream = io.StringIO()
with redirect_stdout_fd(stream) as block:
    c_write(1, "parent\\n")
    pid = os.fork()
    if pid == 0:
        c_write(1, "child\\n")
        os._exit(0)
    os.waitpid(pid, 0)
sys.__stderr__.write(repr(stream.getvalue()) + "\\n")
"""
    )
    # CPython >= 3.12 warns on stderr that the process had threads (the reader's) at fork().
    assert eval(child.err.strip().splitlines()[-1]) == "parent\nchild\n"


def test_merging_stderr_into_a_stdout_logger_that_writes_to_stderr_is_refused() -> None:
    child = run_ok(
        """
import logging, os, sys
from fdredirect import STDOUT, redirect_stderr_fd, redirect_stdout_fd
log = logging.getLogger("app")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(logging.StreamHandler(sys.stderr))
with redirect_stdout_fd(log):
    print("before")
    fds, stderr_target = len(os.listdir("/proc/self/fd")), os.fstat(2).st_ino
    try:
        with redirect_stderr_fd(STDOUT):
            print("never")
    except ValueError as exc:
        message = str(exc)
    unchanged = (len(os.listdir("/proc/self/fd")), os.fstat(2).st_ino) == (fds, stderr_target)
    print("after")
sys.stderr.write(repr((message, unchanged)) + "\\n")
""",
        timeout=30,
    )
    message, unchanged = eval(child.err.decode().splitlines()[-1])
    assert unchanged
    assert message.startswith(
        "cannot send stderr to stdout while redirect_stdout_fd(<Logger app (INFO)>) is open: "
        "logger 'app' has a handler writing to stderr"
    )
    assert child.err.decode().splitlines()[:2] == ["before", "after"]


def test_a_synchronisation_point_reached_during_interpreter_exit_returns_at_once() -> None:
    # At exit the shutdown hook takes every open live block's delivery for good; a thread that
    # then flushes (a kernel's I/O thread flushing its streams, which syncs) must not wait for it.
    child = run_ok(
        """
import atexit, io, sys, threading, time
errors = []
def sync():
    try:
        block.sync()
    except BaseException as exc:
        errors.append(repr(exc))
def late_sync():
    worker = threading.Thread(target=sync)
    start = time.monotonic()
    worker.start()
    worker.join(10)
    sys.__stderr__.write(repr((worker.is_alive(), time.monotonic() - start < 1, errors)) + "\\n")
atexit.register(late_sync)  # registered first: runs after fdredirect's own exit hook
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_write
block = redirect_stdout_fd(io.StringIO())
block.__enter__()
c_write(1, "pending at exit\\n")
""",
        timeout=30,
    )
    assert child.err.strip().splitlines()[-1] == b"(False, True, [])"
    assert child.out in (b"", b"pending at exit\n")
