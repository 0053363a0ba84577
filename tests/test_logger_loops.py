"""Loggers feeding each other, or themselves through another name of their own pipe, are refused at
enter with ValueError before anything changes (adversary findings 5 and 6): `redirect_fds(A, B)`
with A writing to stderr and B to stdout, the same pair as nested blocks in either order, and
stderr sent inside a stdout logger block to fd 1 by number, file object, path or a copy of fd 1.
Combinations without a loop stay accepted."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import last_report, run_ok

PRELUDE = """
import contextlib, io, logging, os, sys, time
from fdredirect import STDOUT, redirect_fds, redirect_stderr_fd, redirect_stdout_fd
from childlib import report

received = []
class Keep(logging.Filter):
    def filter(self, record):
        received.append((record.name, record.getMessage()))
        return True

def logger(name, stream):
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler(stream))
    log.addFilter(Keep())
    return log

def state():
    return (sorted(os.listdir("/proc/self/fd")), os.fstat(1).st_ino, os.fstat(2).st_ino, sys.stdout, sys.stderr)

def attempt(make_inner):
    '''Enter make_inner() and write a line in it: (outcome, message, unchanged), unchanged
    telling whether fds, open fds and sys streams are as before after a refusal.'''
    before = state()
    try:
        with make_inner():
            print("inside")
            time.sleep(0.2)
    except ValueError as exc:
        return ("refused", str(exc), state() == before)
    return ("accepted", None, None)
"""

SELF_LOOP = (
    "logger 'app' has a handler writing to stderr (<StreamHandler <stderr> (NOTSET)>): its records would be "
    "redirected back into the logger, an endless loop. Log to another stream or a file"
)
CROSS_LOOP = (
    "logger 'a' receives stdout and has a handler writing to stderr (<StreamHandler <stderr> (NOTSET)>), and "
    "logger 'b' receives stderr and has a handler writing to stdout (<StreamHandler <stdout> (NOTSET)>): each "
    "one's records would be redirected into the other, an endless loop. Log to another stream or a file"
)


def reported(code: str, unbuffered: bool) -> Any:
    return last_report(run_ok(PRELUDE + code, unbuffered=unbuffered, timeout=60))


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("1", "'fd 1'"),
        ("sys.__stdout__", "repr(sys.__stdout__)"),
        ("'/dev/stdout'", "repr('/dev/stdout')"),
        ("'/proc/self/fd/1'", "repr('/proc/self/fd/1')"),
        ("copy", "f'fd {copy}'"),
    ],
)
def test_stderr_onto_a_stdout_logger_pipe_by_any_name_is_refused(target: str, named: str, unbuffered: bool) -> None:
    code = f"""
app = logger("app", sys.stderr)
with redirect_stdout_fd(app):
    print("before")
    copy = os.dup(1)  # a copy of fd 1 made inside the block: the logger block's pipe
    outcome = attempt(lambda: redirect_stderr_fd({target}))
    named = {named}
    os.close(copy)
    print("after")
report((outcome, named, received))
"""
    (outcome, message, unchanged), named, received = reported(code, unbuffered)
    assert (outcome, unchanged) == ("refused", True)
    open_block = "redirect_stdout_fd(<Logger app (INFO)>)"
    assert message == f"cannot send stderr to {named}, the pipe of the open {open_block}: {SELF_LOOP}"
    assert received == [("app", "before"), ("app", "after")]


def test_stdout_onto_a_stderr_logger_pipe_is_refused(unbuffered: bool) -> None:
    code = """
app = logger("app", sys.stdout)
with redirect_stderr_fd(app):
    outcome = attempt(lambda: redirect_stdout_fd(2))
report(outcome)
"""
    assert reported(code, unbuffered) == (
        "refused",
        "cannot send stdout to fd 2, the pipe of the open redirect_stderr_fd(<Logger app (INFO)>): logger 'app' has a "
        "handler writing to stdout (<StreamHandler <stdout> (NOTSET)>): its records would be redirected back into "
        "the logger, an endless loop. Log to another stream or a file",
        True,
    )


def test_redirect_fds_refuses_loggers_writing_into_each_other_before_touching_anything(unbuffered: bool) -> None:
    code = """
a, b = logger("a", sys.stderr), logger("b", sys.stdout)
report((attempt(lambda: redirect_fds(a, b)), received))
"""
    assert reported(code, unbuffered) == (
        ("refused", "cannot send stdout to <Logger a (INFO)> and stderr to <Logger b (INFO)>: " + CROSS_LOOP, True),
        [],
    )


@pytest.mark.parametrize("first", ["stdout", "stderr"])
def test_nested_logger_blocks_writing_into_each_other_are_refused(first: str, unbuffered: bool) -> None:
    code = f"""
a, b = logger("a", sys.stderr), logger("b", sys.stdout)
outer, inner = (redirect_stdout_fd(a), lambda: redirect_stderr_fd(b))
if {first!r} == "stderr":
    outer, inner = (redirect_stderr_fd(b), lambda: redirect_stdout_fd(a))
with outer:
    outcome = attempt(inner)
report((outcome, received))
"""
    open_block, refused = ("redirect_stdout_fd(<Logger a (INFO)>)", "stderr to <Logger b (INFO)>")
    if first == "stderr":
        open_block, refused = ("redirect_stderr_fd(<Logger b (INFO)>)", "stdout to <Logger a (INFO)>")
    assert reported(code, unbuffered) == (
        ("refused", f"cannot send {refused} while {open_block} is open: {CROSS_LOOP}", True),
        [],
    )


def test_loggers_that_do_not_write_into_each_other_are_accepted(unbuffered: bool) -> None:
    code = """
a, b = logger("a", sys.stderr), logger("b", io.StringIO())
with redirect_fds(a, b):
    print("out")
    print("err", file=sys.stderr)
    time.sleep(0.2)
with redirect_stdout_fd(a), redirect_stderr_fd(b):
    print("out 2")
    time.sleep(0.2)
report(received)
"""
    # a's records go to stderr, into b while its block lasts: b may get them too, once.
    received = reported(code, unbuffered)
    assert {("a", "out"), ("b", "err"), ("a", "out 2")} <= set(received)
    assert len(received) <= 5


def test_merging_into_a_block_inside_a_logger_block_is_no_loop(unbuffered: bool) -> None:
    # Only the logger whose pipe fd 1 points at counts: the outer logger does not receive stderr.
    code = """
app, quiet = logger("app", sys.stderr), logger("quiet", io.StringIO())
with redirect_stdout_fd(app):
    with redirect_fds(quiet, STDOUT):
        print("to quiet", file=sys.stderr)
    with redirect_stdout_fd(None) as captured, redirect_stderr_fd(STDOUT):
        print("captured", file=sys.stderr)
    print("to app")
report((received, captured.getvalue()))
"""
    assert reported(code, unbuffered) == ([("quiet", "to quiet"), ("app", "to app")], "captured\n")


def test_redirect_fds_stderr_on_fd_1_never_loops(unbuffered: bool) -> None:
    # fd 2 onto fd 1 by number: refused when fd 1 is the logger's pipe by then, or sent where fd 1
    # pointed before; never a loop, and both fds come back.
    code = """
app = logger("app", sys.stderr)
with redirect_fds(logger("warm-up", io.StringIO()), 1):  # the library's own fds, opened once
    pass
before = state()
outcome = attempt(lambda: redirect_fds(app, 1))
report((outcome, len(received) <= 2, state() == before))
"""
    (outcome, message, unchanged), bounded, restored = reported(code, unbuffered)
    assert bounded
    assert restored
    if outcome == "refused":
        assert unchanged
        assert message == (
            "cannot send stderr to fd 1, the pipe of the open redirect_stdout_fd(<Logger app (INFO)>): " + SELF_LOOP
        )


def test_stdout_onto_a_logger_pipe_by_fd_feeding_the_stderr_logger_is_refused(unbuffered: bool) -> None:
    code = """
a, b = logger("a", sys.stderr), logger("b", sys.stdout)
with redirect_stdout_fd(a):
    copy = os.dup(1)  # a's pipe
    with redirect_stdout_fd(None), redirect_stderr_fd(b):  # b writes into the capture: no loop
        outcome = attempt(lambda: redirect_stdout_fd(copy))
    os.close(copy)
report((outcome, copy))
"""
    (outcome, message, unchanged), copy = reported(code, unbuffered)
    assert (outcome, unchanged) == ("refused", True)
    assert message == (
        f"cannot send stdout to fd {copy}, the pipe of the open redirect_stdout_fd(<Logger a (INFO)>), while "
        f"redirect_stderr_fd(<Logger b (INFO)>) is open: {CROSS_LOOP}"
    )
