"""The native layer apart from the public API: argument checks, the emitters, flush_all."""

from __future__ import annotations

import pytest

import fdredirect
from fdredirect import _native, testing
from helpers import open_fds, run_ok


def test_version_comes_from_cargo() -> None:
    assert fdredirect.__version__ == _native.__version__
    assert fdredirect.__version__.count(".") == 2


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((3, ("capture", None), None, "utf-8", "strict", False), ValueError, "fd must be 1 or 2, not 3"),
        ((1, ("nope", None), None, "utf-8", "strict", False), ValueError, 'unknown target kind "nope"'),
        (
            (1, ("stdout", None), None, "utf-8", "strict", False),
            ValueError,
            "STDOUT is only a target for stderr",
        ),
        ((1, ("path", b"a\0b"), None, "utf-8", "strict", False), ValueError, "embedded null byte in path"),
        (
            (1, ("path", "not bytes"), None, "utf-8", "strict", False),
            TypeError,
            "'str' object is not an instance of 'bytes'",
        ),
    ],
)
def test_native_redirect_rejects_bad_arguments(args: tuple[object, ...], error: type, message: str) -> None:
    before = open_fds()
    with pytest.raises(error, match=message):
        _native.Redirect(*args)
    assert open_fds() == before


def test_path_with_nul_from_the_public_api() -> None:
    with pytest.raises(ValueError, match=r"embedded null byte"):
        fdredirect.redirect_stdout_fd("a\0b")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: testing.c_printf(5), TypeError, "^text must be str or bytes, not int$"),  # type: ignore[arg-type]
        (lambda: testing.c_write(-1, b"x"), ValueError, "^fd must be >= 0, not -1$"),
        (lambda: testing.c_write("1", b"x"), TypeError, "^fd must be an int, not str$"),  # type: ignore[arg-type]
        (lambda: testing.c_emit(1, -5), ValueError, r"^nbytes must be an int >= 0, not -5$"),
        (lambda: testing.c_emit(1, 5, chunk=0), ValueError, r"^chunk must be an int from 1 to 65536, not 0$"),
        (lambda: testing.c_emit(1, 5, chunk=65537), ValueError, r"^chunk must be an int from 1 to 65536, not 65537$"),
    ],
)
def test_emitters_reject_bad_arguments(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


def test_emitter_write_errors_keep_errno() -> None:
    with pytest.raises(OSError, match=r"^\[Errno 9\] Bad file descriptor$") as info:
        testing.c_write(999, b"x")
    assert info.value.errno == 9
    assert type(info.value) is OSError


def test_pattern_matches_c_emit() -> None:
    with fdredirect.redirect_stdout_fd(encoding=None) as out:
        assert testing.c_emit(1, 1000, chunk=7) == 1000
    assert out.getbytes() == testing.pattern(1000)


def test_flush_all_flushes_libc(unbuffered: bool) -> None:
    child = run_ok(
        """
import os
from fdredirect import flush_all
from fdredirect.testing import c_printf
c_printf("first ")
flush_all()
os.write(1, b"second")
""",
        unbuffered=unbuffered,
    )
    assert child.out == b"first second"
