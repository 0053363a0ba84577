"""Targets other than capture, and bad input: the exact error, raised before anything changes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fdredirect import DEVNULL, STDOUT, redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_write
from helpers import open_fds, run_file_ok, run_ok


def test_constants_equal_subprocess() -> None:
    assert DEVNULL == subprocess.DEVNULL
    assert STDOUT == subprocess.STDOUT


def test_path_target_gets_everything_and_is_returned(tmp_path: Path, unbuffered: bool) -> None:
    log = tmp_path / "out.log"
    log.write_text("old contents\n")
    child = run_ok(
        f"""
import os, sys
from fdredirect import redirect_stdout_fd, redirect_stderr_fd
from fdredirect.testing import c_printf, c_fprintf_stderr, c_write
with redirect_stdout_fd({str(log)!r}) as returned, redirect_stderr_fd({str(log)!r}):
    print("py")
    c_printf("c\\n")
    c_fprintf_stderr("err\\n")
    os.system("echo child")
print("after", returned)
""",
        unbuffered=unbuffered,
    )
    assert child.out == f"after {log}\n".encode()
    # Both blocks append to one file: nothing overwritten. The stdio line is flushed at exit.
    assert sorted(log.read_text().splitlines()) == ["c", "child", "err", "py"]


def test_pathlike_and_bytes_paths(tmp_path: Path) -> None:
    for target in (tmp_path / "a.log", os.fsencode(tmp_path / "b.log")):
        with redirect_stdout_fd(target) as returned:
            c_write(1, "x\n")
        assert returned is target
    assert (tmp_path / "a.log").read_bytes() == b"x\n"
    assert (tmp_path / "b.log").read_bytes() == b"x\n"


def test_int_fd_target(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as f:
        fd = f.fileno()
        with redirect_stdout_fd(fd) as returned:
            print("py")
            c_write(1, "raw\n")
        assert returned == fd
    assert (tmp_path / "f").read_bytes() == b"py\nraw\n"


def test_file_object_targets_are_flushed_first(tmp_path: Path) -> None:
    with open(tmp_path / "t.txt", "w") as text:
        text.write("already buffered\n")  # still in the TextIOWrapper's buffer
        with redirect_stdout_fd(text) as returned:
            c_write(1, "native\n")
        assert returned is text
    assert (tmp_path / "t.txt").read_text() == "already buffered\nnative\n"
    with open(tmp_path / "b.bin", "wb", buffering=0) as raw, redirect_stderr_fd(raw):
        c_write(2, b"raw\n")
    assert (tmp_path / "b.bin").read_bytes() == b"raw\n"


def test_devnull_swallows_everything(unbuffered: bool) -> None:
    child = run_ok(
        """
import os
from fdredirect import redirect_stdout_fd, DEVNULL
from fdredirect.testing import c_printf
with redirect_stdout_fd(DEVNULL) as returned:
    print("gone"); c_printf("gone too\\n"); os.system("echo gone as well")
print("kept", returned)
""",
        unbuffered=unbuffered,
    )
    assert child.out == f"kept {DEVNULL}\n".encode()


@pytest.mark.parametrize("target", [1.5, True, object(), [1]], ids=["float", "bool", "object", "list"])
def test_wrong_type_lists_the_accepted_kinds(target: object) -> None:
    with pytest.raises(TypeError) as info:
        redirect_stdout_fd(target)
    message = str(info.value)
    assert message.startswith("target must be None (capture), DEVNULL, STDOUT (stderr only), an fd (int), a path")
    assert "an object with a write() method, a callable, or a logging.Logger" in message
    assert message.endswith(f"not {type(target).__name__}")


def test_stdout_target_for_stdout_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^STDOUT is a target for redirect_stderr_fd only"):
        redirect_stdout_fd(STDOUT)


@pytest.mark.parametrize("target", [-1, -4, -100])
def test_other_negative_ints_are_value_errors(target: int) -> None:
    with pytest.raises(ValueError, match=rf"^invalid target {target}: fds are >= 0"):
        redirect_stdout_fd(target)


def test_unknown_encoding_and_errors() -> None:
    with pytest.raises(LookupError, match=r"unknown encoding: no-such-codec"):
        redirect_stdout_fd(encoding="no-such-codec")
    with pytest.raises(LookupError, match=r"unknown error handler name 'nope'"):
        redirect_stdout_fd(errors="nope")
    with pytest.raises(TypeError, match=r"^encoding must be a str or None, not int"):
        redirect_stdout_fd(encoding=8)  # type: ignore[arg-type]


def _stdout_state() -> tuple[int, object, int]:
    return os.fstat(1).st_ino, sys.stdout, open_fds()


def test_missing_directory_is_file_not_found_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir.log"
    before = _stdout_state()
    redirect = redirect_stdout_fd(missing)
    with pytest.raises(FileNotFoundError) as info:
        redirect.__enter__()
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(missing)
    assert _stdout_state() == before


def test_permission_denied_is_permission_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores file modes; a directory path cannot be opened for writing by anyone
        target, expected = tmp_path, IsADirectoryError
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
        target, expected = target / "f", PermissionError
    before = _stdout_state()
    with pytest.raises(expected) as info, redirect_stdout_fd(target):
        pass
    assert info.value.filename == str(target)
    assert _stdout_state() == before


def test_closed_fd_is_ebadf_with_the_fd() -> None:
    closed = 1000  # far above anything open (a just-closed number may be reused by another thread)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(closed)
    before = _stdout_state()
    with pytest.raises(OSError, match=rf"Bad file descriptor: fd {closed}$") as info, redirect_stdout_fd(closed):
        pass
    assert info.value.errno == errno.EBADF
    assert _stdout_state() == before


def test_read_only_fd_is_ebadf_with_the_fd(tmp_path: Path) -> None:
    (tmp_path / "r").write_text("x")
    with open(tmp_path / "r", "rb") as f:
        before = _stdout_state()
        with pytest.raises(OSError, match=rf"^\[Errno 9\] fd {f.fileno()} is open read-only") as info:  # noqa: SIM117
            with redirect_stdout_fd(f.fileno()):
                pass
        assert info.value.errno == errno.EBADF
        assert _stdout_state() == before


def test_closed_file_object_is_a_value_error(tmp_path: Path) -> None:
    f = open(tmp_path / "c", "w")  # noqa: SIM115
    f.close()
    with pytest.raises(ValueError, match=r"is closed$"):
        redirect_stdout_fd(f)


def test_objects_with_a_fileno_that_are_not_real_files_are_live_targets() -> None:
    class KernelLikeStream:
        """Like ipykernel's OutStream: fileno() is the kernel's terminal, not where text goes."""

        def __init__(self) -> None:
            self.got: list[str] = []

        def write(self, text: str) -> int:
            self.got.append(text)
            return len(text)

        def fileno(self) -> int:
            return 1

    stream = KernelLikeStream()
    with redirect_stdout_fd(stream) as returned:
        c_write(1, "to the stream, not to fd 1\n")
    assert returned is stream
    assert "".join(stream.got) == "to the stream, not to fd 1\n"


def test_fd_table_full_is_emfile_and_changes_nothing() -> None:
    child = run_file_ok("fd_table_full.py")
    assert child.out == b"EMFILE\nworks again\n"


def test_no_fd_leak_over_many_blocks_of_each_kind(tmp_path: Path) -> None:
    log = tmp_path / "leak.log"
    with open(tmp_path / "f", "wb") as f:
        kinds = [None, DEVNULL, str(log), f.fileno(), f]
        for target in kinds:
            before = open_fds()
            for _ in range(10_000):
                with redirect_stdout_fd(target):
                    pass
            assert open_fds() == before, target
    before = open_fds()
    for _ in range(10_000):
        with redirect_stdout_fd(), redirect_stderr_fd(STDOUT):
            pass
    assert open_fds() == before


def test_library_fds_are_close_on_exec(unbuffered: bool) -> None:
    child = run_ok(
        """
import os, subprocess, sys
from fdredirect import redirect_stdout_fd
before = set(os.listdir("/proc/self/fd"))
with redirect_stdout_fd() as out:
    mine = set(os.listdir("/proc/self/fd")) - before
    seen = subprocess.run(["ls", "/proc/self/fd"], capture_output=True, text=True).stdout.split()
leaked = [fd for fd in mine if fd in seen]
sys.__stderr__.write(f"MINE={sorted(mine)} LEAKED={leaked}\\n")
assert mine and not leaked
""",
        unbuffered=unbuffered,
    )
    assert b"LEAKED=[]" in child.err
