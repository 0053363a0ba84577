"""The Python-level writer that stands in for sys.stdout/sys.stderr inside a block."""

from __future__ import annotations

import io
import sys

import pytest

from fdredirect import redirect_stderr_fd, redirect_stdout_fd
from helpers import run_file_ok, run_ok


def test_sys_stdout_is_restored_after_the_outermost_block() -> None:
    before_out, before_err = sys.stdout, sys.stderr
    with redirect_stdout_fd():
        inside = sys.stdout
        assert inside is not before_out
        assert sys.stderr is before_err
        with redirect_stdout_fd():
            assert sys.stdout is inside  # one writer per fd, reused
        assert sys.stdout is inside
    assert sys.stdout is before_out


def test_a_user_replacement_made_inside_the_block_is_respected() -> None:
    before = sys.stdout
    mine = io.StringIO()
    with redirect_stdout_fd():
        sys.stdout = mine
    try:
        assert sys.stdout is mine
    finally:
        sys.stdout = before


def test_writer_behaves_like_a_text_stream() -> None:
    with redirect_stdout_fd() as out:
        writer = sys.stdout
        assert writer.write("text ") == 5
        assert writer.buffer.write(b"bytes ") == 6
        assert writer.write(bytearray(b"bytearray ")) == 10
        assert writer.write(memoryview(b"view ")) == 5
        writer.writelines(["a", "b\n"])
        writer.flush()
        writer.close()  # a no-op: later prints must still work
        print("still open")
        assert writer.fileno() == 1
        assert writer.writable()
        assert not writer.readable()
        assert not writer.seekable()
        assert not writer.closed
        assert writer.encoding == "utf-8"
        assert writer.isatty() is False
        with pytest.raises(TypeError, match=r"memoryview: a bytes-like object is required, not 'int'"):
            writer.write(5)
    assert out.getvalue() == "text bytes bytearray view ab\nstill open\n"


def test_unencodable_text_never_fails_a_print() -> None:
    with redirect_stdout_fd(encoding=None) as out:
        print("lone surrogate \udcff")
    assert out.getbytes() == b"lone surrogate \\udcff\n"
    with redirect_stdout_fd(encoding="ascii") as ascii_out:
        print("caf\u00e9")
        assert sys.stdout.encoding == "ascii"
    assert ascii_out.getvalue() == "caf\\xe9\n"


def test_writer_encoding_follows_the_innermost_block() -> None:
    with redirect_stderr_fd(encoding="latin-1") as outer:
        with redirect_stderr_fd() as inner:
            print("\u00e9", file=sys.stderr)
        print("\u00e9", file=sys.stderr)
    assert inner.getbytes() == b"\xc3\xa9\n"
    assert outer.getbytes() == b"\xe9\n"


@pytest.mark.parametrize("target", ["None", "io.StringIO()"])
@pytest.mark.parametrize("when", ["enter", "exit"])
@pytest.mark.parametrize("raised", ["KeyboardInterrupt", "SystemExit", "ValueError"])
def test_an_interrupt_raised_by_a_python_stream_flush_is_never_lost(target: str, when: str, raised: str) -> None:
    # sys.stderr is a Python object (pytest, Jupyter): its flush() runs at every switch of fd 1.
    # An interrupt is raised after the switch is complete (at enter: nothing was switched; at exit:
    # everything is restored and the capture finished). An ordinary exception of a broken stream
    # is ignored: the redirect itself works, and the stream's next write reports the fault.
    child = run_file_ok("flush_interrupt.py", target, when, raised, timeout=30)
    assert child.out == b"after\n"
    if raised == "ValueError":
        expected: tuple[object, ...] = (None, (True, True), "inside\n")
    elif when == "enter":
        expected = (f"{raised}('from flush')", (True, True), None)
    else:
        expected = (f"{raised}('from flush')", (True, True), "inside\n")
    assert child.err.decode().strip() == repr(expected)


def test_python_writes_to_sys_dunder_stdout_keep_their_place_among_native_output(unbuffered: bool) -> None:
    # sys.__stdout__ is a buffered TextIOWrapper on fd 1: inside a block it is line-buffered, so
    # each complete line reaches the fd when written, in order with (flushed) native output.
    child = run_ok(
        """
import sys
from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_printf, c_write
from childlib import report
stream = sys.__stdout__
before = (stream.line_buffering, stream.write_through)
with redirect_stdout_fd() as out:
    print("py 1", file=sys.__stdout__)
    c_write(1, "c 1\\n")
    with redirect_stdout_fd() as inner:
        print("py 2", file=sys.__stdout__)
        c_printf("c 2\\n", flush=True)
    print("py 3", file=sys.__stdout__)
    c_write(1, "c 3\\n")
after = (stream.line_buffering, stream.write_through)
print("done")
report((out.getvalue(), inner.getvalue(), before == after))
""",
        unbuffered=unbuffered,
        timeout=30,
    )
    assert child.out == b"done\n"
    assert child.err.decode().strip() == repr(("py 1\nc 1\npy 3\nc 3\n", "py 2\nc 2\n", True))


def test_a_line_buffering_chosen_inside_the_block_is_kept() -> None:
    child = run_ok(
        """
import sys
from fdredirect import redirect_stdout_fd
from childlib import report
with redirect_stdout_fd():
    sys.__stdout__.reconfigure(line_buffering=False, write_through=True)
report((sys.__stdout__.line_buffering, sys.__stdout__.write_through))
""",
        unbuffered=False,
        timeout=30,
    )
    assert child.err.strip() == b"(False, True)"


def test_writer_takes_attribute_assignment_like_ipythons_tee() -> None:
    seen: list[str] = []
    with redirect_stdout_fd() as out:
        writer = sys.stdout
        original = writer.write

        def tee(data: str) -> int:
            seen.append(data)
            return original(data)

        writer.write = tee  # type: ignore[method-assign]
        print("teed")
        writer.write = original  # type: ignore[method-assign]
        del writer.write  # type: ignore[method-assign]
        print("plain")
    assert seen == ["teed", "\n"]
    assert out.getvalue() == "teed\nplain\n"


def test_writer_has_the_text_stream_attributes_code_reads() -> None:
    with redirect_stdout_fd():
        writer = sys.stdout
        assert writer.write_through is False  # type: ignore[attr-defined]
        assert writer.line_buffering is True
        assert writer.newlines is None
        writer.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
        for call in (writer.tell, writer.detach, writer.read, writer.readline):  # type: ignore[attr-defined]
            with pytest.raises(io.UnsupportedOperation):
                call()
        with pytest.raises(io.UnsupportedOperation):
            writer.seek(0)


def test_flush_delivers_everything_written_so_far_to_a_live_target() -> None:
    got: list[str] = []
    from fdredirect.testing import c_printf, c_write

    with redirect_stdout_fd(got.append):
        for i in range(20):
            c_write(1, f"c {i}\n")
            sys.stdout.flush()
            assert "".join(got).endswith(f"c {i}\n")
        c_printf("unflushed libc\n")
        sys.stdout.flush()
        assert "".join(got).endswith("unflushed libc\n")


def test_flush_flushes_a_live_stream_target_and_a_tee_capture() -> None:
    from fdredirect.testing import c_write

    class Flushed(io.StringIO):
        flushed_with = ""

        def flush(self) -> None:
            self.flushed_with = self.getvalue()

    target = Flushed()
    with redirect_stdout_fd(target):
        c_write(1, "before the flush\n")
        sys.stdout.flush()
        assert target.flushed_with == "before the flush\n"
    with redirect_stdout_fd(tee=True) as out:
        c_write(1, "teed\n")
        sys.stdout.flush()
        assert out.getvalue() == "teed\n"
