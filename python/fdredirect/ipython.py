"""IPython extension: ``%load_ext fdredirect`` adds native output to a notebook, in place.

What C, C++, Fortran, Rust and child processes write to fd 1 and fd 2 appears in the cell that
wrote it, in order with the cell's Python output, displays, results and errors. Everything else
stays the kernel's:

- ``sys.stdout``/``sys.stderr`` stay the kernel's objects (or whatever a magic, a widget or the
  user puts there); Python output takes the kernel's own synchronous path, untouched.
- fd 1 and fd 2 are redirected once, at load, to live targets that write to whatever
  ``sys.stdout``/``sys.stderr`` is when the output is delivered (so ``%%capture``,
  ``capture_output()`` and widget ``Output`` contexts receive it), and restored at unload.
- Synchronisation points deliver everything written to the fds so far, in the calling thread,
  before going on: each write to ``sys.stdout``/``sys.stderr`` during a cell, each flush of the
  kernel's streams (ipykernel, IPython and ipywidgets flush them before display data, results,
  errors, ``clear_output`` and a widget's exit), and the start and end of each cell. Between
  them, the delivery thread delivers native output as it arrives.
- stdout and stderr keep their relative order where native output is involved: the kernel
  collects each stream's text and publishes it later, one stream after the other, so before text
  goes to one stream after native text went to the other (or native text after any text went to
  the other), the other stream is flushed, which publishes what it holds first. A cell of pure
  Python output is published exactly as without the extension. Native writes to fd 1 and fd 2
  come through two pipes: their relative order is kept when the delivery thread takes them apart
  (about one thread wake-up between them); a faster burst may come grouped by stream.

Where fdredirect has no fd core (Windows), loading prints one line saying so and changes nothing;
unloading does nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from . import _native
from ._platform import UNSUPPORTED
from ._redirect import redirect_stderr_fd, redirect_stdout_fd
from ._targets import real_file

_NO_KERNEL = "fdredirect: no Jupyter kernel here; native output already reaches the terminal, nothing to do."
_NAMES = {1: "stdout", 2: "stderr"}


class _KernelStdout(redirect_stdout_fd):
    """fd 1 to a live target, leaving ``sys.stdout`` alone: the kernel keeps its stream."""

    _SWAP_WRITER = False


class _KernelStderr(redirect_stderr_fd):
    """fd 2 to a live target, leaving ``sys.stderr`` alone."""

    _SWAP_WRITER = False


class _Forward:
    """The live target of one fd: native output goes to ``sys.<name>`` as it is at delivery time.

    A stream that would write back into a redirected fd (the native writer of a block opened in a
    cell, ``sys.__stdout__``) would feed the output to itself, or into the wrong block: the kernel
    stream seen at load takes it instead, as it does when the current stream fails.
    """

    def __init__(self, fd: int, fallback: Any) -> None:
        self.fd = fd
        self.name = _NAMES[fd]
        self.fallback = fallback

    def __call__(self, text: str) -> None:
        extension = _CURRENT
        if extension is not None:
            extension.order(self.fd, native=True)
        stream = getattr(sys, self.name, None)
        if stream is None or stream is self.fallback or _writes_to_std_fd(stream):
            _unsynced_write(self.fallback, text)
            return
        try:
            _unsynced_write(stream, text)
        except Exception:
            _unsynced_write(self.fallback, text)


def _unsynced_write(stream: Any, text: str) -> None:
    """Write native text past our ``_Synced`` wrapper: it is not a synchronisation point (this is
    the delivery), and it must not count as the Python text the wrapper follows line by line."""
    write = stream.write
    (write.call if isinstance(write, _Synced) else write)(text)


def _writes_to_std_fd(stream: object) -> bool:
    if isinstance(stream, _native.FdWriter):
        return True
    file = real_file(stream)
    return file is not None and not file.closed and file.fileno() in (1, 2)


class _Synced:
    """Stands in for a stream's ``write`` or ``flush``: a synchronisation point, then the call.

    Installed as an instance attribute, as IPython's ``_tee`` does: Python output keeps the
    stream's own code. Harmless once the extension is unloaded (it only calls through).
    Before a write, native output of both fds is delivered (so stdout and stderr keep their
    order); before a flush, that of the stream's own fd.
    """

    __slots__ = ("call", "fd", "line_start", "write")

    def __init__(self, call: Any, fd: int, write: bool) -> None:
        self.call = call
        self.fd = fd
        self.write = write
        # Whether the stream's last text ended a line. Only a write that starts a line is a
        # synchronisation point: ``print("a", b)`` makes four writes, and native output cannot
        # come between the pieces of one line anyway on a line-buffered terminal.
        self.line_start = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        extension = _CURRENT
        if extension is not None:
            if self.write:
                if self.line_start:
                    extension.sync_all()
                fd = self.fd
                if extension.native_held[3 - fd]:
                    extension.order(fd, native=False)
                else:  # what ``order`` does when no native text waits: each write pays for it
                    extension.last_fd = fd
                text = args[0] if args else None
                if isinstance(text, str) and text:
                    self.line_start = text[-1] == "\n"
            else:
                extension.syncs[self.fd]()
        return self.call(*args, **kwargs)


def _wrap(stream: object, attribute: str, fd: int) -> _Synced | None:
    """Make ``stream.<attribute>`` a synchronisation point; None if it already is or cannot be."""
    current = getattr(stream, attribute, None)
    if current is None or isinstance(current, _Synced):
        return None
    synced = _Synced(current, fd, attribute == "write")
    try:
        setattr(stream, attribute, synced)
    except (AttributeError, TypeError):
        return None  # a stream without instance attributes: the cell's end and flushes still sync
    return synced


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back a KeyboardInterrupt (the kernel's Stop button) until the body is done, so that
    entering or leaving both redirects and recording them is all or nothing. Only the main thread
    receives signals; elsewhere (a subshell) there is nothing to hold back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(*received[0])


class _CaptureHooks:
    """``IPython.utils.capture.capture_output`` (``%%capture``, ``with capture_output():``) swaps
    ``sys.stdout`` for a ``StringIO`` and back without flushing: native output written before each
    swap is delivered first, and the ``StringIO``'s writes become synchronisation points."""

    def __init__(self, extension: _Extension) -> None:
        # Imported by name: the package does not depend on IPython (nor do its type checks).
        capture_output: Any = importlib.import_module("IPython.utils.capture").capture_output
        self.cls = capture_output
        self.originals = (capture_output.__enter__, capture_output.__exit__)
        original_enter, original_exit = self.originals

        def __enter__(capture: Any) -> Any:  # noqa: N807 - stands in for the method
            extension.sync_all()
            captured = original_enter(capture)
            extension.wrap_writes()
            return captured

        def __exit__(capture: Any, *exc_info: Any) -> Any:  # noqa: N807
            extension.sync_all()
            return original_exit(capture, *exc_info)

        self.hooks = (__enter__, __exit__)
        capture_output.__enter__, capture_output.__exit__ = self.hooks

    def remove(self) -> None:
        if (vars(self.cls).get("__enter__"), vars(self.cls).get("__exit__")) == self.hooks:  # still ours
            self.cls.__enter__, self.cls.__exit__ = self.originals


class _Extension:
    """The long-lived redirect of fd 1 and fd 2 for one kernel, and its synchronisation points."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.blocks: dict[int, _KernelStdout | _KernelStderr] = {
            1: _KernelStdout(_Forward(1, sys.stdout)),
            2: _KernelStderr(_Forward(2, sys.stderr)),
        }
        self.syncs = {fd: block.sync for fd, block in self.blocks.items()}
        self.entered: list[_KernelStdout | _KernelStderr] = []
        self.flushes: list[tuple[object, _Synced]] = []
        self.capture_hooks: _CaptureHooks | None = None
        # Which stream was written last, and which holds native text the kernel may not have
        # published yet (see ``order``).
        self.last_fd = 0
        self.native_held = {1: False, 2: False}

    def start(self) -> None:
        for block in self.blocks.values():
            block.__enter__()
            self.entered.append(block)
        for fd, name in _NAMES.items():
            stream = getattr(sys, name)
            synced = _wrap(stream, "flush", fd)
            if synced is not None:
                self.flushes.append((stream, synced))
        self.wrap_writes()
        self.capture_hooks = _CaptureHooks(self)
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)

    def stop(self) -> None:
        for event in ("pre_run_cell", "post_run_cell"):
            with contextlib.suppress(ValueError):  # not registered: a start that failed half-way
                self.shell.events.unregister(event, getattr(self, event))
        if self.capture_hooks is not None:
            self.capture_hooks.remove()
            self.capture_hooks = None
        for stream, synced in self.flushes:
            if vars(stream).get("flush") is synced:  # still ours: nobody wrapped it since
                del stream.flush  # type: ignore[attr-defined]
        self.flushes.clear()
        self.unwrap_writes()
        # Each block ends even if another fails; the first error is raised after all ended.
        error: BaseException | None = None
        while self.entered:
            try:
                self.entered.pop().__exit__(None, None, None)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    def sync_all(self) -> None:
        # One native call for both fds: before every write, it usually finds nothing pending.
        _native.Redirect.sync_all(self.blocks[1], self.blocks[2])

    def order(self, fd: int, *, native: bool) -> None:
        """Called before text goes to the stream of ``fd``: when native text is involved and the
        other stream was written since it was last published, flush it, so that the kernel
        publishes its text first. Pure Python output never gets here with native text around,
        so its messages stay the kernel's own."""
        other = 3 - fd
        if self.native_held[other] or (native and self.last_fd == other):
            self.native_held[other] = False
            stream = getattr(sys, _NAMES[other], None)
            flush = getattr(stream, "flush", None)
            if flush is not None:
                with contextlib.suppress(Exception):  # a failing flush must not lose this text
                    flush()
        if native:
            self.native_held[fd] = True
        self.last_fd = fd

    def wrap_writes(self) -> None:
        # IPython's ``_tee`` wraps ``write`` for each cell (re-entrant cells too) and puts the
        # previous one back at the cell's end, taking ours with it: so ours goes on top per cell.
        for fd, name in _NAMES.items():
            _wrap(getattr(sys, name), "write", fd)

    def unwrap_writes(self) -> None:
        # IPython >= 9 puts its own ``write`` back at each cell's end, dropping ours; older
        # IPython does not: a wrapper of ours still on top goes, so the stream is the kernel's own.
        for name in _NAMES.values():
            stream: Any = getattr(sys, name)
            synced = getattr(stream, "__dict__", {}).get("write")
            if not isinstance(synced, _Synced):
                continue
            inner = synced.call
            own_method = getattr(type(stream), "write", None)
            if getattr(inner, "__func__", None) is own_method and getattr(inner, "__self__", None) is stream:
                delattr(stream, "write")  # it wrapped the class's own method: no attribute was there before
            else:
                stream.write = inner

    def pre_run_cell(self, *_: object) -> None:
        self.sync_all()
        self.wrap_writes()

    def post_run_cell(self, *_: object) -> None:
        # Unflushed libc output and whatever is still in the pipes lands at the end of this cell.
        self.sync_all()


_CURRENT: _Extension | None = None


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext fdredirect``. Safe to load twice; does nothing outside a kernel, nor where
    fdredirect has no fd core."""
    global _CURRENT
    if UNSUPPORTED is not None:
        print(f"{UNSUPPORTED}. Native output is not captured on this platform: the extension does nothing.")
        return
    if getattr(shell, "kernel", None) is None:
        print(_NO_KERNEL)
        return
    if _CURRENT is not None:
        return
    extension = _Extension(shell)
    with _interrupts_deferred():
        try:
            extension.start()
        except BaseException:
            with contextlib.suppress(Exception):
                extension.stop()
            raise
        _CURRENT = extension


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext fdredirect``: back to the kernel's own behaviour, from here on."""
    global _CURRENT
    extension = _CURRENT
    if extension is None:
        return
    with _interrupts_deferred():
        _CURRENT = None
        extension.stop()
