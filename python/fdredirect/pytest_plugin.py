"""pytest plugin (``pytest11`` entry point ``fdredirect``): the ``capall``/``capallbinary`` fixtures,
and native output attributed to the test that wrote it.

pytest's own fd capture never flushes C stdio, so an unflushed ``printf`` shows up in the next
test's output, or after the summary. With this plugin, every loaded runtime (libc, libstdc++,
libgfortran) is flushed at the end of each test phase, inside pytest's capture window. The ini
option ``fdredirect_flush = false`` turns that off.

``capall`` can also show everything on the terminal as it is written (``--capall-tee``, ini
``capall_tee``), and keep stdout and stderr as one stream in write order (``--capall-merged``, ini
``capall_merged``); ``@pytest.mark.capall(tee=..., merged=...)`` sets either for one test, and
``capall.tee``/``capall.merged`` change it during a test (from a fixture, say).

Where fdredirect has no fd core (Windows: ``fdredirect._native.UNSUPPORTED``), the plugin touches
no fd: the options and the marker are still accepted (a cross-platform suite keeps its
configuration), ``capall``/``capallbinary`` skip the test with the reason, nothing is flushed, and
the terminal header says so once (a line, not a warning: ``filterwarnings = error`` is common).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import Generic, TypeVar

import pytest

# pytest has no public name for the type readouterr() returns; this is the one capfd uses.
from _pytest.capture import CaptureResult

from . import _native
from ._platform import UNSUPPORTED
from ._redirect import redirect_stderr_fd, redirect_stdout_fd
from ._targets import STDOUT

AnyStr = TypeVar("AnyStr", str, bytes)

_OTHER_CAPTURE_FIXTURES = ("capfd", "capfdbinary", "capsys", "capsysbinary", "capteesys")
_OURS = ("capall", "capallbinary")
_CAPALL = pytest.StashKey["CapAll[str] | CapAll[bytes]"]()
_MARKER_OPTIONS = ("tee", "merged")
# The report section of merged output (pytest titles it "Captured capall stdout+stderr call").
MERGED_SECTION = "capall stdout+stderr"


class CapAll(Generic[AnyStr]):
    """Everything written to fd 1 and 2 during a test: Python, C, C++, Fortran, child processes.

    A fresh redirect runs during each test phase (setup, call, teardown), inside pytest's own
    capture, so it works under every ``--capture`` mode.

    With ``tee``, every byte also reaches the terminal as it is written (under pytest's fd capture:
    the terminal pytest saved, not pytest's capture file, so it is not reported twice). With
    ``merged``, fd 2 shares fd 1's capture (the shell's ``2>&1``): ``readouterr()`` returns
    everything in write order as ``out``, and ``err`` is empty.
    """

    def __init__(self, binary: bool, config: pytest.Config, *, tee: bool = False, merged: bool = False) -> None:
        self._binary = binary
        self._config = config
        self._tee = tee
        self._merged = merged
        self._out = bytearray()
        self._err = bytearray()
        self._reported = (0, 0)  # what the report sections already show
        self._blocks: list[redirect_stdout_fd | redirect_stderr_fd] | None = None
        self._captures: tuple[_native.Captured, _native.Captured | None] | None = None
        self._guards: list[int] = []

    def _start(self) -> None:
        if self._blocks is not None:
            return
        self._guards = []
        pytest_captures = _pytest_fd_captures(self._config)
        for capture in pytest_captures:
            with contextlib.suppress(OSError):  # best effort: a full fd table only costs the crash dump
                self._guards.append(_native.crash_guard(*capture))
        entered: list[redirect_stdout_fd | redirect_stderr_fd] = []

        def enter(block: redirect_stdout_fd | redirect_stderr_fd) -> object:
            result = block.__enter__()
            entered.append(block)
            return result

        try:
            if self._tee:
                # Under pytest's fd capture the fds point at its capture files: point them back at
                # the terminal it saved first, so that the tee copy goes there.
                for fd, saved, _ in pytest_captures:
                    if fd == 1:
                        enter(redirect_stdout_fd(saved))
                    elif not self._merged:
                        enter(redirect_stderr_fd(saved))
            out = enter(redirect_stdout_fd(encoding=None, tee=self._tee))
            if self._merged:  # fd 2 joins fd 1's capture, and its tee with it
                err = enter(redirect_stderr_fd(STDOUT))
            else:
                err = enter(redirect_stderr_fd(encoding=None, tee=self._tee))
        except BaseException:
            _exit_all(entered)
            raise
        assert isinstance(out, _native.Captured)
        self._blocks = entered
        self._captures = (out, err if isinstance(err, _native.Captured) else None)

    def _stop(self) -> None:
        if self._blocks is None or self._captures is None:
            return
        _exit_all(self._blocks)
        out, err = self._captures
        self._out += out.getbytes()
        if err is not None:
            self._err += err.getbytes()
        self._blocks = self._captures = None
        for guard in self._guards:
            _native.crash_unguard(guard)
        self._guards = []

    @property
    def tee(self) -> bool:
        """Whether output also reaches the terminal as it is written. Settable during the test
        (e.g. by a fixture that requests ``capall``): from then on."""
        return self._tee

    @tee.setter
    def tee(self, value: bool) -> None:
        self._switch(value, self._merged)

    @property
    def merged(self) -> bool:
        """Whether stdout and stderr form one stream in write order (``out``). Settable during the
        test: what was captured before stays where it is."""
        return self._merged

    @merged.setter
    def merged(self, value: bool) -> None:
        self._switch(self._tee, value)

    def _switch(self, tee: bool, merged: bool) -> None:
        for name, value in (("tee", tee), ("merged", merged)):
            if not isinstance(value, bool):
                raise TypeError(f"capall.{name} must be a bool, not {type(value).__name__}")
        running = self._blocks is not None
        self._stop()
        self._tee, self._merged = tee, merged
        if running:
            self._start()

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


def _exit_all(blocks: list[redirect_stdout_fd | redirect_stderr_fd]) -> None:
    """Exit ``blocks``, newest first; each one even if another fails (the first error is raised)."""
    error: BaseException | None = None
    while blocks:
        try:
            blocks.pop().__exit__(None, None, None)
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


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
    group = parser.getgroup("fdredirect")
    group.addoption(
        "--capall-tee",
        action="store_true",
        default=None,
        help="capall/capallbinary also show everything on the terminal as it is written (ini: capall_tee)",
    )
    group.addoption(
        "--capall-merged",
        action="store_true",
        default=None,
        help="capall/capallbinary keep stdout and stderr as one stream in write order, returned as out "
        "and reported as one section (ini: capall_merged)",
    )
    parser.addini(
        "capall_tee",
        type="bool",
        default=False,
        help="fdredirect: capall/capallbinary also show everything on the terminal as it is written",
    )
    parser.addini(
        "capall_merged",
        type="bool",
        default=False,
        help="fdredirect: capall/capallbinary keep stdout and stderr as one stream in write order",
    )
    parser.addini(
        "fdredirect_flush",
        type="bool",
        default=True,
        help="fdredirect: flush C/C++/Fortran stdio buffers at the end of each test phase, so their "
        "output is attributed to the test that wrote it (default: true)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "capall(tee=None, merged=None): for this test, capall/capallbinary also show everything on the "
        "terminal as it is written (tee), or keep stdout and stderr as one stream in write order (merged)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    if UNSUPPORTED is None:
        return None
    return f"{UNSUPPORTED}. The fdredirect plugin is off: capall/capallbinary skip their tests."


def _options(item: pytest.Item) -> dict[str, bool]:
    """``tee`` and ``merged`` for this test: the marker's, else the command line's, else the ini's."""
    options = {}
    for name in _MARKER_OPTIONS:
        flag = item.config.getoption(f"capall_{name}")
        options[name] = bool(item.config.getini(f"capall_{name}") if flag is None else flag)
    marker = item.get_closest_marker("capall")
    if marker is not None:
        if marker.args or set(marker.kwargs) - set(_MARKER_OPTIONS):
            raise TypeError(
                f"@pytest.mark.capall takes only the keyword arguments tee and merged, not "
                f"args={marker.args!r} kwargs={marker.kwargs!r}"
            )
        for name, value in marker.kwargs.items():
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"@pytest.mark.capall({name}=...) must be a bool or None, not {type(value).__name__}")
            if value is not None:
                options[name] = value
    return options


def _new_capall(item: pytest.Item, binary: bool) -> CapAll[str] | CapAll[bytes]:
    capall: CapAll[str] | CapAll[bytes] = CapAll(binary, item.config, **_options(item))
    item.stash[_CAPALL] = capall
    return capall


def _capall_of(item: pytest.Item) -> CapAll[str] | CapAll[bytes] | None:
    return item.stash.get(_CAPALL, None)


def _run_phase(item: pytest.Item, when: str) -> Generator[None, object, object]:
    """Around one test phase, innermost of all wrappers (so inside pytest's capture window)."""
    if UNSUPPORTED is not None:  # no fd core: nothing to capture or flush (the fixtures skip)
        return (yield)
    capall = _capall_of(item)
    if capall is None and when == "setup":  # once per test (a bad marker: one error, in setup)
        fixtures = getattr(item, "fixturenames", ())
        if "capall" in fixtures or "capallbinary" in fixtures:
            capall = _new_capall(item, binary="capallbinary" in fixtures)
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
    return (yield from _run_phase(item, "setup"))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _run_phase(item, "call"))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _run_phase(item, "teardown"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """Output the test never read still shows in its report, like pytest's own captured output."""
    capall = _capall_of(item)
    if capall is not None:
        out, err = capall._unreported()
        if out:
            item.add_report_section(call.when, MERGED_SECTION if capall.merged else "capall stdout", out)
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
    if UNSUPPORTED is not None:
        pytest.skip(f"{name}: {UNSUPPORTED}")
    capall = _capall_of(request.node)
    if capall is None:  # requested dynamically (request.getfixturevalue): start now
        capall = _new_capall(request.node, binary)
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
