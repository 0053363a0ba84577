"""pytest plugin (``pytest11`` entry point ``fdredirect``): the ``capall``/``capallbinary`` fixtures,
and native output attributed to the test that wrote it.

pytest's own fd capture never flushes C stdio, so an unflushed ``printf`` shows up in the next
test's output, or after the summary. With this plugin, every loaded runtime (libc, libstdc++,
libgfortran) is flushed at the end of each test phase, inside pytest's capture window. The ini
option ``fdredirect_flush = false`` turns that off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import Generic, TypeVar

import pytest

# pytest has no public name for the type readouterr() returns; this is the one capfd uses.
from _pytest.capture import CaptureResult

from . import _native
from ._redirect import redirect_stderr_fd, redirect_stdout_fd

AnyStr = TypeVar("AnyStr", str, bytes)

_OTHER_CAPTURE_FIXTURES = ("capfd", "capfdbinary", "capsys", "capsysbinary", "capteesys")
_OURS = ("capall", "capallbinary")
_CAPALL = pytest.StashKey["CapAll[str] | CapAll[bytes]"]()


class CapAll(Generic[AnyStr]):
    """Everything written to fd 1 and 2 during a test: Python, C, C++, Fortran, child processes.

    A fresh redirect runs during each test phase (setup, call, teardown), inside pytest's own
    capture, so it works under every ``--capture`` mode.
    """

    def __init__(self, binary: bool, config: pytest.Config) -> None:
        self._binary = binary
        self._config = config
        self._out = bytearray()
        self._err = bytearray()
        self._reported = (0, 0)  # what the report sections already show
        self._blocks: tuple[redirect_stdout_fd, redirect_stderr_fd] | None = None
        self._captures: tuple[_native.Captured, _native.Captured] | None = None
        self._guards: list[int] = []

    def _start(self) -> None:
        if self._blocks is not None:
            return
        self._guards = []
        for capture in _pytest_fd_captures(self._config):
            with contextlib.suppress(OSError):  # best effort: a full fd table only costs the crash dump
                self._guards.append(_native.crash_guard(*capture))
        blocks = (redirect_stdout_fd(encoding=None), redirect_stderr_fd(encoding=None))
        out = blocks[0].__enter__()
        try:
            err = blocks[1].__enter__()
        except BaseException:
            blocks[0].__exit__(None, None, None)
            raise
        self._blocks, self._captures = blocks, (out, err)

    def _stop(self) -> None:
        if self._blocks is None or self._captures is None:
            return
        out_block, err_block = self._blocks
        try:
            err_block.__exit__(None, None, None)
        finally:
            out_block.__exit__(None, None, None)
        self._out += self._captures[0].getbytes()
        self._err += self._captures[1].getbytes()
        self._blocks = self._captures = None
        for guard in self._guards:
            _native.crash_unguard(guard)
        self._guards = []

    def _decode(self, data: bytes) -> AnyStr:
        return data if self._binary else data.decode("utf-8", "replace")  # type: ignore[return-value]

    def readouterr(self) -> CaptureResult[AnyStr]:
        """Return what was written so far as ``(out, err)``, and consume it."""
        running = self._blocks is not None
        self._stop()  # flushes every runtime and reads the captures back
        out, err = bytes(self._out), bytes(self._err)
        self._out.clear()
        self._err.clear()
        self._reported = (0, 0)
        if running:
            self._start()
        return CaptureResult(self._decode(out), self._decode(err))

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Let output through to the real terminal inside the ``with`` block, like ``capfd.disabled()``."""
        running = self._blocks is not None
        self._stop()
        manager = self._config.pluginmanager.getplugin("capturemanager")
        suspend = manager.global_and_fixture_disabled() if manager is not None else contextlib.nullcontext()
        try:
            with suspend:
                try:
                    yield
                finally:
                    # Still outside the capture: what sits in a buffer belongs to the terminal.
                    _native.flush_all()
        finally:
            if running:
                self._start()

    def _unreported(self) -> tuple[str, str]:
        """Unread output not yet shown in a report section, as text for the report."""
        out_from, err_from = self._reported
        self._reported = (len(self._out), len(self._err))
        return (
            bytes(self._out[out_from:]).decode("utf-8", "replace"),
            bytes(self._err[err_from:]).decode("utf-8", "replace"),
        )


def _pytest_fd_captures(config: pytest.Config) -> list[tuple[int, int, int]]:
    """pytest's own fd capture of fd 1 and 2 now, as (fd, saved fd, capture file fd).

    If the process crashes inside a test, what pytest captured dies with it: the crash handler is
    told where pytest keeps it, so it shows that too (pytest #7600). Reads pytest internals; a
    pytest that keeps them elsewhere only loses this.
    """
    manager = config.pluginmanager.getplugin("capturemanager")
    capturing = getattr(manager, "_global_capturing", None)
    found: list[tuple[int, int, int]] = []
    for name in ("out", "err"):
        capture = getattr(capturing, name, None)
        fd = getattr(capture, "targetfd", None)
        saved = getattr(capture, "targetfd_save", None)
        held = getattr(capture, "tmpfile", None)
        if fd in (1, 2) and isinstance(saved, int) and held is not None:
            with contextlib.suppress(OSError, ValueError):  # a closed capture file: nothing to show
                found.append((fd, saved, held.fileno()))
    return found


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "fdredirect_flush",
        type="bool",
        default=True,
        help="fdredirect: flush C/C++/Fortran stdio buffers at the end of each test phase, so their "
        "output is attributed to the test that wrote it (default: true)",
    )


def _capall_of(item: pytest.Item) -> CapAll[str] | CapAll[bytes] | None:
    return item.stash.get(_CAPALL, None)


def _run_phase(item: pytest.Item) -> Generator[None, object, object]:
    """Around one test phase, innermost of all wrappers (so inside pytest's capture window)."""
    if any(name in getattr(item, "fixturenames", ()) for name in _OURS) and _CAPALL not in item.stash:
        binary = "capallbinary" in getattr(item, "fixturenames", ())
        item.stash[_CAPALL] = CapAll(binary, item.config)
    capall = _capall_of(item)
    if capall is not None:
        capall._start()
    try:
        return (yield)
    finally:
        if capall is not None:
            capall._stop()
        if item.config.getini("fdredirect_flush"):
            _native.flush_all()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _run_phase(item))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _run_phase(item))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _run_phase(item))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """Output the test never read still shows in its report, like pytest's own captured output."""
    capall = _capall_of(item)
    if capall is not None:
        out, err = capall._unreported()
        if out:
            item.add_report_section(call.when, "capall stdout", out)
        if err:
            item.add_report_section(call.when, "capall stderr", err)
        if call.when == "teardown":
            del item.stash[_CAPALL]
    return (yield)


def _check_conflicts(request: pytest.FixtureRequest, name: str) -> None:
    for other in (*_OTHER_CAPTURE_FIXTURES, *_OURS):
        if other != name and other in request.fixturenames:
            raise pytest.UsageError(
                f"cannot use {name} and {other} at the same time: both capture the test's output "
                f"(use {name} alone: it sees everything {other} would)"
            )


def _fixture(request: pytest.FixtureRequest, name: str, binary: bool) -> CapAll[str] | CapAll[bytes]:
    _check_conflicts(request, name)
    capall = _capall_of(request.node)
    if capall is None:  # requested dynamically (request.getfixturevalue): start now
        capall = CapAll(binary, request.config)
        request.node.stash[_CAPALL] = capall
        capall._start()
    return capall


@pytest.fixture
def capall(request: pytest.FixtureRequest) -> CapAll[str]:
    """Capture everything written to fd 1 and 2 during the test, as text.

    Unlike ``capfd``, this sees C ``printf`` output that was never flushed, C++ and Fortran
    output, and child processes, each in the test that wrote it::

        def test_solver(capall):
            run_native_solver()
            out, err = capall.readouterr()
            assert "converged" in out
    """
    return _fixture(request, "capall", binary=False)  # type: ignore[return-value]


@pytest.fixture
def capallbinary(request: pytest.FixtureRequest) -> CapAll[bytes]:
    """Like ``capall``, but ``readouterr()`` returns bytes."""
    return _fixture(request, "capallbinary", binary=True)  # type: ignore[return-value]


__all__ = ["CapAll", "capall", "capallbinary"]
