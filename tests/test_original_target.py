"""``ORIGINAL``: where the fd pointed before any redirect, as a target."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from conftest import run_ok
from fdredirect import ORIGINAL, redirect_fds, redirect_stdout_fd
from fdredirect._targets import ACCEPTED

PRELUDE = """
import os, sys, types
from fdredirect import ORIGINAL, STDOUT, redirect_fds, redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_fprintf_stderr, c_printf, c_write
fds = lambda: sorted(os.listdir("/proc/self/fd"))
"""


def run(code: str, unbuffered: bool) -> tuple[bytes, bytes]:
    child = run_ok(PRELUDE + code, unbuffered=unbuffered, timeout=60)
    return child.out, child.err


def test_without_a_redirect_it_is_the_fd_itself(unbuffered: bool) -> None:
    out, err = run(
        """
before = fds()
with redirect_stdout_fd(ORIGINAL) as returned:
    print("py")
    c_printf("c\\n", flush=True)
    os.system("echo child")
    c_printf("unflushed\\n")
print("after", returned, before == fds())
""",
        unbuffered,
    )
    assert out == b"py\nc\nchild\nunflushed\nafter ORIGINAL True\n"
    assert err == b""


def test_inside_captures_it_reaches_the_real_fd(unbuffered: bool) -> None:
    out, err = run(
        """
before = fds()
with redirect_stdout_fd() as outer:
    print("outer")
    with redirect_stdout_fd() as inner:
        with redirect_stdout_fd(ORIGINAL):
            print("real py")
            c_printf("real c\\n", flush=True)
            os.system("echo real child")
            c_printf("real unflushed\\n")
        c_printf("inner\\n")
    print("outer again")
with redirect_fds(stderr=STDOUT) as (merged, _):
    c_fprintf_stderr("merged\\n")
    with redirect_stderr_fd(ORIGINAL):
        c_fprintf_stderr("real stderr\\n")
        print("py stderr", file=sys.stderr)
print(repr(outer.getvalue()), repr(inner.getvalue()), repr(merged.getvalue()), before == fds())
""",
        unbuffered,
    )
    assert out == b"real py\nreal c\nreal child\nreal unflushed\n'outer\\nouter again\\n' 'inner\\n' 'merged\\n' True\n"
    assert err == b"real stderr\npy stderr\n"


def test_with_tee_and_in_both_streams(unbuffered: bool) -> None:
    out, err = run(
        """
with redirect_fds() as (cap_out, cap_err):
    with redirect_fds(ORIGINAL, ORIGINAL) as returned:
        print("o")
        c_fprintf_stderr("e\\n")
    with redirect_stdout_fd(ORIGINAL, tee=True):
        print("teed")
print(returned, repr(cap_out.getvalue()), repr(cap_err.getvalue()))
""",
        unbuffered,
    )
    # The tee copy goes where fd 1 pointed before the block: the capture.
    assert out == b"o\nteed\n(ORIGINAL, ORIGINAL) 'teed\\n' ''\n"
    assert err == b"e\n"


def test_a_foreign_redirect_underneath_is_kept(tmp_path: Path, unbuffered: bool) -> None:
    foreign = tmp_path / "foreign.log"
    out, err = run(
        f"""
real = os.dup(1)
file = os.open({str(foreign)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.dup2(file, 1)   # another library's redirect, before any block of ours
with redirect_stdout_fd() as cap:
    with redirect_stdout_fd(ORIGINAL):
        c_printf("to the foreign file\\n")
os.dup2(real, 1)
print(repr(cap.getvalue()))
""",
        unbuffered,
    )
    assert out == b"''\n"
    assert foreign.read_bytes() == b"to the foreign file\n"
    assert err == b""


def test_a_foreign_redirect_above_is_bypassed_then_kept(tmp_path: Path, unbuffered: bool) -> None:
    foreign = tmp_path / "foreign.log"
    out, _ = run(
        f"""
with redirect_stdout_fd() as cap:
    saved = os.dup(1)
    file = os.open({str(foreign)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(file, 1)   # another library's redirect, made inside our block
    with redirect_stdout_fd(ORIGINAL):
        c_printf("real\\n")
    c_write(1, "foreign again\\n")
    os.dup2(saved, 1)
    c_write(1, "captured\\n")
print(repr(cap.getvalue()))
""",
        unbuffered,
    )
    assert out == b"real\n'captured\\n'\n"
    assert foreign.read_bytes() == b"foreign again\n"


def test_in_a_forked_child_it_is_the_parents_original(unbuffered: bool) -> None:
    out, _ = run(
        """
with redirect_stdout_fd() as cap:
    print("parent captured")
    pid = os.fork()
    if pid == 0:
        with redirect_stdout_fd(ORIGINAL):
            print("child to the real stdout")
            c_printf("child c\\n")
        print("child captured")
        sys.stdout.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
print(status, repr(cap.getvalue()))
""",
        unbuffered,
    )
    assert out == b"child to the real stdout\nchild c\n0 'parent captured\\nchild captured\\n'\n"


def test_a_fd_closed_before_any_redirect_is_an_error(unbuffered: bool) -> None:
    _, err = run(
        """
os.close(1)
before = fds()
try:
    with redirect_stdout_fd(ORIGINAL):
        pass
except OSError as exc:
    sys.stderr.write(f"{type(exc).__name__} {exc.errno} {exc} {before == fds()}\\n")
""",
        unbuffered,
    )
    assert err == b"OSError 9 [Errno 9] Bad file descriptor: fd 1 True\n"


def test_in_a_jupyter_kernel_with_fd_capture_it_is_the_terminal(tmp_path: Path, unbuffered: bool) -> None:
    # ipykernel's OutStream, with its own fd capture on, returns the terminal it replaced from
    # fileno(): a stand-in of that shape (a real kernel is in test_jupyter_kernel.py's domain).
    terminal = tmp_path / "terminal.log"
    out, _ = run(
        f"""
iostream = types.ModuleType("ipykernel.iostream")
class OutStream:
    def __init__(self, fd):
        self.fd = fd
    def fileno(self):
        return self.fd
    def write(self, text):
        return len(text)
    def flush(self):
        pass
iostream.OutStream = OutStream
sys.modules["ipykernel.iostream"] = iostream
kernel = sys.stdout = OutStream(os.open({str(terminal)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
with redirect_stdout_fd(ORIGINAL):
    print("py")
    c_printf("c\\n")
restored = sys.stdout is kernel
sys.stdout = sys.__stdout__
print(restored)
""",
        unbuffered,
    )
    assert out == b"True\n"
    assert terminal.read_bytes() == b"py\nc\n"


def test_the_constant() -> None:
    assert repr(ORIGINAL) == "ORIGINAL"
    assert pickle.loads(pickle.dumps(ORIGINAL)) is ORIGINAL
    assert repr(redirect_stdout_fd(ORIGINAL)) == "redirect_stdout_fd(ORIGINAL)"
    assert redirect_stdout_fd(ORIGINAL).target is ORIGINAL
    # Only the constant itself means ORIGINAL.
    with pytest.raises(TypeError, match=rf"^{re.escape(f'target must be {ACCEPTED}, not _Original')}$"):
        redirect_fds(type(ORIGINAL)())
