"""Captured.getvalue() for a finished capture: ASCII output is read back straight into a str (no
bytes made first); anything else takes the bytes path and is decoded as before. Both give the
same values."""

from __future__ import annotations

import sys

import pytest

from fdredirect import redirect_stdout_fd
from fdredirect.testing import c_emit, c_write


@pytest.mark.parametrize("encoding", ["utf-8", "UTF_8", "ascii", "latin-1"])
def test_ascii_output_reads_back_as_a_plain_str(encoding: str) -> None:
    with redirect_stdout_fd(encoding=encoding) as out:
        c_emit(1, 3 << 20, chunk=64 << 10)
        print("python")
    value, data = out.getvalue(), out.getbytes()
    assert isinstance(value, str)
    assert isinstance(data, bytes)
    assert data.endswith(b"python\n")
    assert len(data) == (3 << 20) + 7
    assert value == data.decode("ascii")
    assert hash(value) == hash(data.decode("ascii"))
    assert value.isascii()
    assert sys.getsizeof(value) == sys.getsizeof(data.decode("ascii"))
    assert out.getvalue() is value
    assert out.getbytes() == data


def test_non_ascii_output_is_decoded_with_the_blocks_encoding_and_errors() -> None:
    with redirect_stdout_fd() as out:
        print("caf\u00e9 \u20ac")
    assert out.getvalue() == "caf\u00e9 \u20ac\n"
    assert out.getbytes() == "caf\u00e9 \u20ac\n".encode()
    with redirect_stdout_fd(encoding="latin-1") as latin:
        c_write(1, b"caf\xe9\n")
    assert latin.getvalue() == "caf\u00e9\n"
    with redirect_stdout_fd(errors="replace") as replaced:
        c_write(1, b"ok \xff\n")
    assert replaced.getvalue() == "ok \ufffd\n"
    assert replaced.getbytes() == b"ok \xff\n"
    with redirect_stdout_fd(errors="strict") as strict:
        c_write(1, b"ok \xff\n")
    with pytest.raises(UnicodeDecodeError):
        strict.getvalue()


def test_a_non_ascii_byte_at_the_very_end_takes_the_bytes_path() -> None:
    with redirect_stdout_fd() as out:
        c_emit(1, 1 << 20, chunk=64 << 10)
        c_write(1, "\u00e9".encode())
    assert out.getvalue().endswith("\u00e9")
    assert len(out.getvalue()) == (1 << 20) + 1


def test_empty_and_bytes_blocks() -> None:
    with redirect_stdout_fd() as empty:
        pass
    assert empty.getvalue() == ""
    assert empty.getbytes() == b""
    with redirect_stdout_fd(encoding=None) as raw:
        c_write(1, b"raw\n")
    assert raw.getbytes() == b"raw\n"
    assert raw.getvalue() == "raw\n"


@pytest.mark.parametrize(
    ("encoding", "errors", "tail"),
    [
        ("utf-8", "replace", "caf\u00e9 \u20ac \U0001f600\n".encode()),  # valid: decoded at exit
        ("utf-8", "replace", b"bad \xff\xfe\n"),  # invalid: bytes, decoded with the handler
        ("latin-1", "strict", b"caf\xe9\n"),
        ("ascii", "replace", b"caf\xe9\n"),
    ],
)
def test_large_non_ascii_output_gives_the_same_text_and_bytes(encoding: str, errors: str, tail: bytes) -> None:
    with redirect_stdout_fd(encoding=encoding, errors=errors) as out:
        c_emit(1, 1 << 20, chunk=64 << 10)
        c_write(1, tail)
    data = out.getbytes()
    assert data.endswith(tail)
    assert len(data) == (1 << 20) + len(tail)
    assert out.getvalue() == data.decode(encoding, errors)
    assert out.getbytes() == data
