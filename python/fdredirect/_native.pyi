"""The native core of fdredirect (Rust, PyO3). Private: use the ``fdredirect`` package."""

from collections.abc import Generator
from types import TracebackType
from typing import Any, Literal, NoReturn, final

from typing_extensions import Self, disjoint_base

__all__ = [
    "Captured",
    "FdWriter",
    "Redirect",
    "Redirects",
    "Step",
    "__version__",
    "c_emit",
    "c_fprintf_stderr",
    "c_printf",
    "c_write",
    "crash_guard",
    "crash_unguard",
    "flush_all",
    "shutdown",
]

__version__: str

_Kind = Literal[
    "capture",
    "fd",
    "path",
    "file",
    "devnull",
    "stdout",
    "original",
    "text_stream",
    "bytes_stream",
    "callable",
    "logger",
]

@disjoint_base
class Redirect:
    """One redirect of fd 1 or 2; ``__enter__`` and ``__exit__`` are one native call each.

    Args:
        fd: 1 or 2.
        plan: ``(kind, arg)`` as classified by ``fdredirect._targets.classify``; ``arg`` is the fd
            (``"fd"``), the ``os.fsencode``d path (``"path"``), the level of the records
            (``"logger"``), ``(lines, timestamps)`` (``"callable"``), else ignored: ``lines``:
            one call per line, without ``\n``/``\r\n`` (a partial last line at the block's end;
            a line over 1 MiB in 1 MiB parts); ``timestamps``: call ``target(time, piece)``,
            ``time`` in seconds since the epoch when the piece's last byte was read from the pipe (to
            the millisecond).
        target: what ``__enter__`` returns (and, for ``"file"``, the file object to flush and use).
        encoding: the decoding of text targets and captures; ``None`` for bytes.
        errors: the decoding error handler.
        tee: also send every byte to the fd's original destination as it arrives.
        swap_writer: point ``sys.stdout``/``sys.stderr`` at the native writer inside the block.

    Raises:
        ValueError: fd is not 1 or 2, an unknown kind, ``"stdout"`` for fd 1, a NUL in the path.
    """

    def __new__(
        cls,
        fd: int,
        plan: tuple[_Kind, Any],
        target: Any,
        encoding: str | None,
        errors: str,
        tee: bool,
        *,
        swap_writer: bool = True,
    ) -> Self: ...
    def __enter__(self) -> Any:
        """Flush, switch the fd, point ``sys.stdout``/``sys.stderr`` at the native writer (unless
        ``swap_writer`` is false).

        Returns:
            A ``Captured`` for ``"capture"``, else ``target``.

        Raises:
            OSError: the sink could not be opened (with the path or fd), the fd table is full, or
                (``"original"``) the fd was closed before any redirect.
            BaseException: a ``KeyboardInterrupt`` (or other non-``Exception``) raised by a Python
                stream's ``flush``; nothing was switched.
        """
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Flush, restore the fd, read back a capture. Never suppresses the exception.

        Ends the newest entry entered in the current execution context (thread, or asyncio task),
        else the instance's newest entry (a generator finished in another thread).

        Raises:
            BaseException: a ``KeyboardInterrupt`` (or other non-``Exception``) raised by a Python
                stream's ``flush``, once everything was restored and finished.
            RuntimeError: the instance has no open entry, or a ``STDOUT`` stderr block begun
                inside this stdout block is still open (both fds were restored first).
            Exception: the first exception a live target raised (after the fd was restored).
        """
    def __aenter__(self) -> Step:
        """An awaitable that enters when first stepped (``__enter__`` in one native call)."""
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Step:
        """Exit now (as ``__exit__``, raising what it raises); the awaitable hands back ``False``."""
    def sync(self) -> None:
        """Flush the native runtimes, then deliver everything written to the fd so far to this
        redirect's live targets (in the calling thread, after any delivery in progress) and tee
        destinations. Does nothing when called from inside a target's delivery.

        Raises:
            Exception: what a live target raised (delivery goes on afterwards).
        """
    @staticmethod
    def sync_all(*redirects: Redirect) -> None:
        """``sync`` of each redirect given, in order, for the price of one."""
    @property
    def fd(self) -> int: ...
    @property
    def target(self) -> Any: ...

@disjoint_base
class Redirects:
    """fd 1 and fd 2 redirected together: ``__enter__`` and ``__exit__`` are one native call each.

    Args:
        stdout: the redirect of fd 1.
        stderr: the redirect of fd 2.
        merged: ``stderr`` follows fd 1 (``2>&1``); ``__enter__`` then returns ``None`` for it.

    Raises:
        ValueError: ``stdout`` is not a redirect of fd 1, or ``stderr`` not one of fd 2.
    """

    def __new__(cls, stdout: Redirect, stderr: Redirect, merged: bool) -> Self: ...
    def __enter__(self) -> tuple[Any, Any]:
        """Enter ``stdout``, then ``stderr``; if ``stderr`` fails, exit ``stdout`` and raise.

        Returns:
            ``(out, err)``: what each redirect's ``__enter__`` returned (``err`` is ``None`` when
            merged).
        """
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Exit ``stderr``, then ``stdout`` whatever the first raised; raise the first error."""
    def __aenter__(self) -> Step:
        """An awaitable that enters when first stepped (``__enter__`` in one native call)."""
    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Step:
        """Exit now (as ``__exit__``); the awaitable hands back ``False``."""
    @property
    def stdout(self) -> Redirect: ...
    @property
    def stderr(self) -> Redirect: ...

@final
class Step:
    """The awaitable of ``async with``: its first step does the work in one native call and
    finishes (raises ``StopIteration`` with the result); it never suspends."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> NoReturn: ...
    def send(self, _value: object) -> NoReturn: ...

@final
class Captured:
    """What a capture block collected."""

    def getbytes(self) -> bytes:
        """All bytes captured so far (inside the block, after flushing every buffer) or in all."""
    def getvalue(self) -> str:
        """``getbytes()`` decoded with the block's encoding and errors (UTF-8 when encoding is None)."""

@final
class FdWriter:
    """The line-buffered stand-in for ``sys.stdout``/``sys.stderr`` inside a block: a complete line
    reaches the fd before the write that completes it returns."""

    def write(self, data: str | bytes | bytearray | memoryview) -> int: ...
    def writelines(self, lines: Any) -> None: ...
    def flush(self) -> None:
        """Write this thread's partial line, then an ordering barrier: flush the native runtimes;
        live and tee blocks on the fd deliver everything written so far to their targets, which
        are then flushed."""
    def close(self) -> None: ...
    def fileno(self) -> int: ...
    def isatty(self) -> bool: ...
    def readable(self) -> bool: ...
    def writable(self) -> bool: ...
    def seekable(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def encoding(self) -> str: ...
    @property
    def errors(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def line_buffering(self) -> bool: ...
    @property
    def write_through(self) -> bool: ...
    def reconfigure(self, **_options: Any) -> None: ...
    def tell(self) -> int: ...
    def seek(self, *_args: Any) -> int: ...
    def truncate(self, *_args: Any) -> int: ...
    def read(self, *_args: Any) -> str: ...
    def readline(self, *_args: Any) -> str: ...
    def detach(self) -> Any: ...
    @property
    def newlines(self) -> None: ...
    @property
    def buffer(self) -> FdWriter: ...

def flush_all() -> None:
    """Flush ``sys.stdout``/``sys.stderr`` (and ``__stdout__``/``__stderr__``), libc's stdout and
    stderr, and every loaded libstdc++ and libgfortran.

    Raises:
        BaseException: a ``KeyboardInterrupt`` (or other non-``Exception``) raised by a Python
            stream's ``flush``, after everything else was flushed.
    """

def shutdown() -> None:
    """At interpreter exit: end open live blocks, writing undelivered output to the original fd."""

def crash_guard(fd: int, saved: int, held: int) -> int:
    """On a fatal signal, point ``fd`` back at ``saved`` and show the file ``held`` there (from its
    start), before what the blocks entered after this call hold. For a redirect made outside the
    library (pytest's fd capture). Returns an id for :func:`crash_unguard`.

    Raises:
        OSError: ``saved`` or ``held`` could not be duplicated.
    """

def crash_unguard(id: int) -> None:
    """Forget the guard ``id`` (unknown ids are ignored)."""

def c_printf(text: bytes, flush: bool) -> int:
    """``printf`` into libc's buffered stdout, holding the GIL. Raises OSError on a failed flush."""

def c_fprintf_stderr(text: bytes) -> int:
    """``fprintf(stderr, ...)``."""

def c_write(fd: int, data: bytes, hold_gil: bool) -> int:
    """``write(2)`` all of ``data``. Raises OSError with the errno."""

def c_emit(fd: int, nbytes: int, chunk: int, hold_gil: bool) -> int:
    """``write(2)`` ``nbytes`` of the test pattern in ``chunk``-byte writes. Raises OSError."""
