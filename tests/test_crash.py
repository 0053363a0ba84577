"""A crash inside a block does not swallow the evidence: on a fatal signal, what was captured and
not yet handed to the user reaches the original fd, and the process still dies of that signal
(with faulthandler's traceback, and any handler installed before, still run)."""

from __future__ import annotations

import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from childlib import written
from helpers import run_child

CRASHES = {
    "SIGSEGV": ("ctypes.string_at(0)", signal.SIGSEGV),
    "SIGABRT": ("os.abort()", signal.SIGABRT),
    "SIGFPE": ("os.kill(os.getpid(), signal.SIGFPE)", signal.SIGFPE),
    "SIGBUS": ("os.kill(os.getpid(), signal.SIGBUS)", signal.SIGBUS),
    "SIGILL": ("os.kill(os.getpid(), signal.SIGILL)", signal.SIGILL),
}

PRELUDE = """\
import ctypes, faulthandler, io, os, signal, sys, threading
from fdredirect import redirect_stderr_fd, redirect_stdout_fd
from fdredirect.testing import c_fprintf_stderr, c_printf, c_write
from childlib import Seen, report, writes
"""


def crash_child(body: str, unbuffered: bool, side: Path | None = None) -> tuple[int, bytes, bytes, bytes]:
    """Run PRELUDE + body in a child whose argv[1] is the fd of `side` (what a live target was handed)."""
    code = PRELUDE + textwrap.dedent(body)
    if side is None:
        child = run_child(code, unbuffered=unbuffered, timeout=30)
        return child.returncode, child.out, child.err, b""
    with side.open("wb") as handle:
        fd = handle.fileno()
        child = run_child(code, unbuffered=unbuffered, timeout=30, argv=[str(fd)], pass_fds=(fd,))
    return child.returncode, child.out, child.err, side.read_bytes()


@pytest.mark.parametrize("crash", CRASHES)
def test_capture_shows_what_it_held(crash: str, unbuffered: bool) -> None:
    statement, signum = CRASHES[crash]
    rc, out, err, _ = crash_child(
        f"""
        with redirect_stdout_fd() as out:
            writes("in")
            {statement}
        """,
        unbuffered,
    )
    assert rc == -signum, err
    assert out == written("in")


@pytest.mark.parametrize("crash", ["SIGSEGV", "SIGABRT"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_faulthandler_traceback_reaches_real_stderr(crash: str, when: str, unbuffered: bool) -> None:
    statement, signum = CRASHES[crash]
    before = "faulthandler.enable()" if when == "before" else ""
    after = "faulthandler.enable()" if when == "after" else ""
    rc, out, err, _ = crash_child(
        f"""
        {before}
        with redirect_stdout_fd() as out, redirect_stderr_fd() as err:
            {after}
            writes("in")
            c_fprintf_stderr("err line\\n")
            {statement}
        """,
        unbuffered,
    )
    assert rc == -signum, err
    assert out == written("in")
    assert err.startswith(b"err line\n"), err
    assert b"Fatal Python error" in err
    assert b'File "<string>"' in err


def test_stack_overflow_without_faulthandler(unbuffered: bool) -> None:
    # Handling a stack overflow needs a signal stack: the library gives the entering thread one.
    rc, out, _, _ = crash_child(
        """
        sys.setrecursionlimit(10**8)
        nested = []
        for _ in range(10**6):
            nested = [nested]
        with redirect_stdout_fd() as out:
            writes("in")
            repr(nested)
        """,
        unbuffered,
    )
    if rc != -signal.SIGSEGV:
        pytest.skip(f"this Python stops deep C recursion itself (exit status {rc})")
    assert out == written("in")


def test_nested_captures_in_write_order(unbuffered: bool) -> None:
    rc, out, err, _ = crash_child(
        """
        with redirect_stdout_fd() as outer:
            writes("outer")
            with redirect_stdout_fd() as inner:
                writes("inner")
                with redirect_stdout_fd(os.devnull):
                    print("dropped")
                    with redirect_stdout_fd() as innermost:
                        writes("innermost")
                        ctypes.string_at(0)
        """,
        unbuffered,
    )
    assert rc == -signal.SIGSEGV, err
    # Each unflushed printf was flushed into its own block by the next enter.
    assert out == written("outer") + written("inner") + written("innermost")


def test_stderr_merged_into_stdout_capture(unbuffered: bool) -> None:
    rc, out, err, _ = crash_child(
        """
        from fdredirect import STDOUT
        with redirect_stdout_fd() as out, redirect_stderr_fd(STDOUT):
            writes("in")
            c_fprintf_stderr("to stderr\\n")
            ctypes.string_at(0)
        """,
        unbuffered,
    )
    assert rc == -signal.SIGSEGV, err
    # Unbuffered, the printf went out at once; else it is flushed from libc's buffer after the dump.
    printf, stderr = b"in c-printf\n", b"to stderr\n"
    assert out == b"in python\nin c-write\n" + (printf + stderr if unbuffered else stderr + printf)


# In these live tests the main thread never gives up the GIL once the block has output (native
# writes that hold it, a switch interval of 1000 s), so nothing can be delivered: everything
# written must be shown at the crash, from the channel's undelivered bytes and the pipe.
HOLD_GIL = "sys.setswitchinterval(1000)"
NATIVE_WRITES = """
c_write(1, b"held gil\\n" * 1000, hold_gil=True)
c_write(1, b"last write\\n", hold_gil=True)
c_printf("last printf\\n", flush=False)
"""
NATIVE_WRITTEN = b"held gil\n" * 1000 + b"last write\n" + b"last printf\n"


@pytest.mark.parametrize("tee", [False, True], ids=["live", "tee-live"])
def test_live_target_shows_what_was_not_delivered(tee: bool, unbuffered: bool, tmp_path: Path) -> None:
    rc, out, err, handed = crash_child(
        f"""
        {HOLD_GIL}
        with redirect_stdout_fd(Seen(), tee={tee}):
            {textwrap.indent(NATIVE_WRITES, " " * 12).strip()}
            ctypes.string_at(0)
        """,
        unbuffered,
        tmp_path / "side",
    )
    assert rc == -signal.SIGSEGV, err
    assert (handed, out) == (b"", NATIVE_WRITTEN)


def test_live_target_partly_delivered_shows_the_rest_once(unbuffered: bool, tmp_path: Path) -> None:
    # Deliveries run meanwhile (print gives up the GIL): every byte reaches the target or is shown,
    # none twice, in order. Bytes a delivery had taken but not yet handed over when the process
    # died are lost (README: Limits), so a gap between the two is allowed.
    rc, out, err, handed = crash_child(
        """
        with redirect_stdout_fd(Seen()):
            for i in range(200):
                print(f"line {i}")
            c_write(1, b"last words\\n", hold_gil=True)
            ctypes.string_at(0)
        """,
        unbuffered,
        tmp_path / "side",
    )
    assert rc == -signal.SIGSEGV, err
    written = b"".join(f"line {i}\n".encode() for i in range(200)) + b"last words\n"
    assert written.startswith(handed)
    assert written.endswith(out)
    assert len(handed) + len(out) <= len(written)


@pytest.mark.parametrize("target", ["None", "io.StringIO()"])
def test_tee_shows_the_rest(target: str, unbuffered: bool) -> None:
    rc, out, err, _ = crash_child(
        f"""
        with redirect_stdout_fd({target}, tee=True):
            writes("tee")
            ctypes.string_at(0)
        """,
        unbuffered,
    )
    assert rc == -signal.SIGSEGV, err
    assert out == written("tee")


def test_live_inside_capture(unbuffered: bool, tmp_path: Path) -> None:
    rc, out, err, handed = crash_child(
        f"""
        with redirect_stdout_fd() as outer:
            writes("outer")
            {HOLD_GIL}
            with redirect_stdout_fd(Seen()):
                {textwrap.indent(NATIVE_WRITES, " " * 16).strip()}
                ctypes.string_at(0)
        """,
        unbuffered,
        tmp_path / "side",
    )
    assert rc == -signal.SIGSEGV, err
    assert (handed, out) == (b"", written("outer") + NATIVE_WRITTEN)


def test_crash_in_another_thread(unbuffered: bool) -> None:
    rc, out, err, _ = crash_child(
        """
        with redirect_stdout_fd() as out:
            writes("in")
            t = threading.Thread(target=ctypes.string_at, args=(0,))
            t.start()
            t.join()
        """,
        unbuffered,
    )
    assert rc == -signal.SIGSEGV, err
    assert out == written("in")


def test_forked_child_leaves_the_parents_capture_alone(unbuffered: bool) -> None:
    rc, out, err, _ = crash_child(
        """
        with redirect_stdout_fd() as out:
            print("parent")
            pid = os.fork()
            if pid == 0:
                os.write(1, b"child\\n")
                ctypes.string_at(0)
            _, status = os.waitpid(pid, 0)
        print("child died of", os.WTERMSIG(status), "captured", repr(out.getvalue()))
        """,
        unbuffered,
    )
    assert rc == 0, err
    assert out == f"child died of {int(signal.SIGSEGV)} captured 'parent\\nchild\\n'\n".encode()


def test_python_handler_that_survives_keeps_the_block(unbuffered: bool) -> None:
    # A handler installed before the block handles the signal: the dump happened (it could not
    # know), and the block goes on capturing afterwards.
    rc, out, err, _ = crash_child(
        """
        signal.signal(signal.SIGFPE, lambda *a: print("handled", file=sys.stderr))
        with redirect_stdout_fd() as out:
            print("before")
            os.kill(os.getpid(), signal.SIGFPE)
            print("after")
        report(out.getvalue())
        """,
        unbuffered,
    )
    assert rc == 0, err
    assert out == b"before\n"
    assert err == b"handled\n'before\\nafter\\n'\n"


USER_HANDLER = r"""
#include <signal.h>
#include <string.h>
#include <unistd.h>
static void handler(int sig) {
    const char *text = "user handler\n";
    write(2, text, strlen(text));
    signal(sig, SIG_DFL);
    raise(sig);
}
void install(void) { signal(SIGSEGV, handler); }
"""


def test_user_c_handler_installed_before_runs_after_the_dump(unbuffered: bool, tmp_path: Path) -> None:
    source, lib = tmp_path / "handler.c", tmp_path / "libhandler.so"
    source.write_text(USER_HANDLER)
    try:
        subprocess.run(["gcc", "-shared", "-fPIC", str(source), "-o", str(lib)], check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot build the C handler: {err}")
    rc, out, err, _ = crash_child(
        f"""
        ctypes.CDLL({str(lib)!r}).install()
        with redirect_stdout_fd() as out:
            writes("in")
            ctypes.string_at(0)
        """,
        unbuffered,
    )
    assert rc == -signal.SIGSEGV, err
    assert out == written("in")
    assert err == b"user handler\n"


CRASHING_TEST = """
import ctypes
from fdredirect.testing import c_write

def test_fine(capall):
    print("fine")

def test_crash(capall):
    print("from python")
    c_write(1, b"from c\\n")
    ctypes.string_at(0)
"""


@pytest.mark.parametrize("capture", ["--capture=fd", "--capture=sys", "-s"])
def test_capall_under_pytest(capture: str, unbuffered: bool, tmp_path: Path) -> None:
    (tmp_path / "test_crashing.py").write_text(CRASHING_TEST)
    rc, out, err, _ = crash_child(
        f"""
        import pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", {capture!r}, {str(tmp_path)!r}]))
        """,
        unbuffered,
    )
    assert rc == -signal.SIGSEGV, err
    assert out.endswith(b"from python\nfrom c\n"), out
    assert b"Fatal Python error: Segmentation fault" in err
