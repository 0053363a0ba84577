"""Failures at the edges: a slow or failing live target, a closed StringIO, a full disk or
/dev/full under a path or tee target, a path whose directory is removed mid-block. Each ends in a
clear error at exit (the right OSError subclass, with the path), fds and sys.stdout restored,
nothing else lost, no hang."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import last_report, run_child, run_ok

# The block given as BODY (indented code using the names imported here) runs under
# childlib.outcome_of_exit, which reports what the exit raised, whether fd 1 and sys.stdout came
# back, and whether an fd leaked.
HARNESS = """
import io, os, time
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit, c_printf, c_write
from childlib import outcome_of_exit
def body():
{body}
outcome_of_exit(body)
"""


def run_body(body: str, *, unbuffered: bool = True, timeout: float = 30) -> tuple[object, bytes]:
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    child = run_ok(HARNESS.format(body=indented), unbuffered=unbuffered, timeout=timeout)
    raised, restored, leaked = last_report(child)
    assert restored, "fd 1 or sys.stdout not restored"
    assert leaked == 0, f"{leaked} fds leaked"
    return raised, child.out


def test_a_slow_live_target_gets_everything_before_exit_returns() -> None:
    raised, out = run_body(
        """
got = []
def slow(text):
    time.sleep(0.05)
    got.append(text)
with redirect_stdout_fd(slow):
    for i in range(10):
        c_write(1, f"{i}\\n")
    c_emit(1, 1 << 20, hold_gil=True)  # more than a pipe holds while the target sleeps
assert "".join(got).startswith("0\\n1\\n2\\n") and len("".join(got)) == 20 + (1 << 20), len("".join(got))
"""
    )
    assert raised is None
    assert out == b"after\n"


def test_a_raising_live_target_raises_its_error_at_exit() -> None:
    raised, out = run_body(
        """
def failing(text):
    raise ZeroDivisionError("target failed")
with redirect_stdout_fd(failing):
    c_write(1, "to the target\\n")
    c_emit(1, 1 << 20, hold_gil=True)
"""
    )
    assert raised is not None
    assert raised[0] == "ZeroDivisionError"
    assert out == b"after\n"  # nothing of the block leaks to the real fd


@pytest.mark.parametrize("when", ["before", "inside"])
def test_a_closed_stringio_raises_at_exit(when: str) -> None:
    close_before = "stream.close()" if when == "before" else "pass"
    close_inside = "stream.close()" if when == "inside" else "pass"
    raised, out = run_body(
        f"""
stream = io.StringIO()
{close_before}
with redirect_stdout_fd(stream):
    {close_inside}
    c_write(1, "lost\\n")
"""
    )
    assert raised is not None
    assert raised[0] == "ValueError"
    assert "closed file" in raised[3]
    assert out == b"after\n"


def test_dev_full_as_a_path_target_raises_enospc_with_the_path(unbuffered: bool) -> None:
    raised, out = run_body(
        """
with redirect_stdout_fd("/dev/full"):
    c_printf("stays in libc's buffer until exit\\n")
""",
        unbuffered=unbuffered,
    )
    assert raised is not None
    assert raised[:2] == ("OSError", 28)
    if not unbuffered:  # buffered: the write happens at the block's exit, which reports it
        assert raised[2] == "/dev/full"
    # glibc drops a buffer it could not write: nothing reaches the restored fd twice.
    assert out == b"after\n"


def test_dev_full_under_print_raises_at_the_write() -> None:
    raised, out = run_body(
        """
with redirect_stdout_fd("/dev/full"):
    print("python text")
"""
    )
    assert raised is not None
    assert raised[:2] == ("OSError", 28)
    assert out == b"after\n"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs, already full. Needs root (mount); skipped elsewhere."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        filler = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(filler, b"x" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_a_path_target_raises_enospc_with_the_path(full_disk: Path, unbuffered: bool) -> None:
    path = str(full_disk / "out.txt")
    raised, out = run_body(
        f"""
with redirect_stdout_fd({path!r}):
    c_printf("no room for this\\n")
""",
        unbuffered=unbuffered,
    )
    assert raised is not None
    assert raised[:2] == ("OSError", 28)
    if not unbuffered:
        assert raised[2] == path
    assert out == b"after\n"


@pytest.mark.parametrize("target", ["dev-full", "full-disk"])
def test_tee_onto_a_full_target_raises_at_exit(target: str, full_disk: Path) -> None:
    path = "/dev/full" if target == "dev-full" else str(full_disk / "tee.txt")
    raised, out = run_body(
        f"""
with redirect_stdout_fd({path!r}, tee=True):
    c_write(1, "teed\\n")
"""
    )
    assert raised is not None
    assert raised[:3] == ("OSError", 28, path)
    # The body runs twice (a warm-up, then the measured run): the tee copy reaches stdout each time.
    assert out == b"teed\nteed\nafter\n"


def test_a_path_whose_directory_is_removed_mid_block_raises_file_not_found(tmp_path: Path) -> None:
    raised, out = run_body(
        f"""
import shutil, tempfile
directory = tempfile.mkdtemp(dir={str(tmp_path)!r})
with redirect_stdout_fd(os.path.join(directory, "out.txt")):
    c_write(1, "before\\n")
    shutil.rmtree(directory)
    c_write(1, "into a file nobody can open\\n")
"""
    )
    assert raised is not None
    assert raised[:2] == ("FileNotFoundError", 2)
    assert str(raised[2]).endswith("out.txt")
    assert out == b"after\n"


def test_a_path_target_that_still_exists_raises_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    child = run_child(
        f"""
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_printf
with redirect_stdout_fd({str(path)!r}):
    c_printf("kept\\n")
""",
        timeout=30,
    )
    assert child.returncode == 0, child.err
    assert path.read_bytes() == b"kept\n"
    assert os.path.exists(path)
