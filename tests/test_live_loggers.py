"""Loggers as live targets: one record per line, with the fd; and every way a logger could write
back into the fd it is redirecting (a handler on the stream, the last resort, a parent's handler, a
delayed file handler opening /dev/stdout, stderr merged into stdout) refused before anything
changes."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from fdredirect import redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_write
from helpers import last_report, open_fds, quiet_logger, run_ok


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


def test_merging_stderr_into_a_stdout_logger_that_writes_to_stderr_is_refused() -> None:
    child = run_ok(
        """
import logging, os, sys
from fdredirect import STDOUT, redirect_stderr_fd, redirect_stdout_fd
from childlib import report
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
report((message, unchanged))
""",
        timeout=30,
    )
    message, unchanged = last_report(child)
    assert unchanged
    assert message.startswith(
        "cannot send stderr to stdout while redirect_stdout_fd(<Logger app (INFO)>) is open: "
        "logger 'app' has a handler writing to stderr"
    )
    assert child.err.decode().splitlines()[:2] == ["before", "after"]
