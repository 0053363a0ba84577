//! Python-level streams: flushing `sys.stdout`/`sys.stderr` before every switch, and the native
//! writer that stands in for them inside a block.
//!
//! Inside a block `sys.stdout` is a small write-through writer on fd 1 (one per fd, made once):
//! no Python-side buffer, so `print` and flushed native output reach the fd in call order, also
//! when `sys.stdout` was not fd 1 at all (a `StringIO`, pytest, a Jupyter kernel).
//!
//! `sys.__stdout__` (a buffered `TextIOWrapper` on fd 1 unless `PYTHONUNBUFFERED` is set) is made
//! line-buffered while a block is open on its fd, so a complete line written to it reaches the fd
//! at once, in order with flushed native output, instead of at the block's end.

use std::os::fd::RawFd;
use std::sync::Mutex;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyMemoryView, PyModule, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use super::errors::os_error;
use super::lock;
use super::names;
use crate::decode::{encoding_is, UTF8_NAMES};
use crate::fd;

/// What the writer does with characters its encoding cannot represent: never fail a `print`.
const WRITER_ERRORS: &str = "backslashreplace";

/// `dict`: code assigns attributes on `sys.stdout` (`_tee` in `IPython` wraps `stream.write`).
#[pyclass(frozen, dict, module = "fdredirect._native")]
pub struct FdWriter {
    fd: RawFd,
    /// The encoding of the innermost block; `None` is UTF-8 (the fast path).
    encoding: Mutex<Option<String>>,
}

/// Per redirected fd: how many blocks are open, the object `sys.<name>` was at the outermost,
/// and `sys.__<name>__` if the outermost enter made it line-buffered.
struct Swap {
    depth: usize,
    original: Option<Py<PyAny>>,
    line_buffered: Option<Py<PyAny>>,
}

static SWAPS: Mutex<[Swap; 2]> = Mutex::new([
    Swap {
        depth: 0,
        original: None,
        line_buffered: None,
    },
    Swap {
        depth: 0,
        original: None,
        line_buffered: None,
    },
]);
static WRITERS: PyOnceLock<[Py<FdWriter>; 2]> = PyOnceLock::new();
static SYS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn sys_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    SYS.get_or_try_init(py, || Ok(py.import("sys")?.unbind()))
        .map(|m| m.bind(py))
}

fn writer(py: Python<'_>, fd: RawFd) -> PyResult<&Py<FdWriter>> {
    let writers = WRITERS.get_or_try_init(py, || {
        let make = |fd| {
            Py::new(
                py,
                FdWriter {
                    fd,
                    encoding: Mutex::new(None),
                },
            )
        };
        Ok::<_, PyErr>([make(1)?, make(2)?])
    })?;
    Ok(&writers[(fd - 1) as usize])
}

fn sys_name(py: Python<'_>, fd: RawFd) -> &Bound<'_, PyString> {
    if fd == 1 {
        names::STDOUT.get(py)
    } else {
        names::STDERR.get(py)
    }
}

fn dunder_name(py: Python<'_>, fd: RawFd) -> &Bound<'_, PyString> {
    if fd == 1 {
        names::DUNDER_STDOUT.get(py)
    } else {
        names::DUNDER_STDERR.get(py)
    }
}

/// Flush `sys.stdout`, `sys.stderr`, `sys.__stdout__`, `sys.__stderr__`.
///
/// A stream that cannot flush (closed, a broken pipe) must not stop a redirect: the redirect's
/// job is to point the fd somewhere that works, and the stream reports its own fault at its next
/// write, so an ordinary exception is dropped. Anything else (`KeyboardInterrupt`, `SystemExit`,
/// raised by a Python stream's `flush` or a signal handler running inside it) must never be lost:
/// the other streams are still flushed, then the first such exception is returned.
pub fn flush_python(py: Python<'_>) -> PyResult<()> {
    let Ok(sys) = sys_module(py) else { return Ok(()) };
    let mut interrupted = None;
    let names = [
        names::STDOUT.get(py),
        names::STDERR.get(py),
        names::DUNDER_STDOUT.get(py),
        names::DUNDER_STDERR.get(py),
    ];
    let mut flushed: [usize; 4] = [0; 4];
    for (i, name) in names.into_iter().enumerate() {
        let Ok(stream) = sys.getattr(name) else {
            continue;
        };
        let id = stream.as_ptr() as usize;
        if stream.is_none() || stream.is_instance_of::<FdWriter>() || flushed.contains(&id) {
            continue;
        }
        flushed[i] = id;
        if let Err(err) = stream.call_method0(names::FLUSH.get(py)) {
            if !err.is_instance_of::<PyException>(py) && interrupted.is_none() {
                interrupted = Some(err);
            }
        }
    }
    interrupted.map_or(Ok(()), Err)
}

/// A `sys.__<name>__` examined, and whether it keeps written text in a buffer.
type Examined = Option<(Py<PyAny>, bool)>;

/// Per fd: the last stream examined.
static EXAMINED: Mutex<[Examined; 2]> = Mutex::new([None, None]);
static IO_TYPES: PyOnceLock<[Py<PyAny>; 2]> = PyOnceLock::new();
/// `reconfigure` keyword arguments, made once: `line_buffering=False`, `line_buffering=True`.
static LINE_BUFFERING: PyOnceLock<[Py<PyDict>; 2]> = PyOnceLock::new();

fn line_buffering_kwargs(py: Python<'_>, on: bool) -> Option<&Bound<'_, PyDict>> {
    let kwargs = LINE_BUFFERING
        .get_or_try_init(py, || {
            let make = |on: bool| {
                let kwargs = PyDict::new(py);
                kwargs.set_item(names::LINE_BUFFERING.get(py), on)?;
                Ok::<_, PyErr>(kwargs.unbind())
            };
            Ok::<_, PyErr>([make(false)?, make(true)?])
        })
        .ok()?;
    Some(kwargs[usize::from(on)].bind(py))
}

/// Whether `stream` is a buffered `io.TextIOWrapper` on `fd` itself: the exact io class (whose
/// flush is all native code; a subclass's or a Python object's methods could do anything), and
/// not already unbuffered (`PYTHONUNBUFFERED`: write-through onto a raw `FileIO`).
fn io_types(py: Python<'_>) -> PyResult<&[Py<PyAny>; 2]> {
    IO_TYPES.get_or_try_init(py, || {
        let io = py.import("io")?;
        Ok::<_, PyErr>([io.getattr("TextIOWrapper")?.unbind(), io.getattr("FileIO")?.unbind()])
    })
}

/// At import, while nothing else runs: the once-made objects of this module (see `names`).
pub fn make_once(py: Python<'_>) -> PyResult<()> {
    sys_module(py)?;
    writer(py, 1)?;
    io_types(py)?;
    line_buffering_kwargs(py, true);
    Ok(())
}

fn buffers_on_fd(py: Python<'_>, stream: &Bound<'_, PyAny>, fd: RawFd) -> Option<bool> {
    let [text_io_wrapper, file_io] = io_types(py).ok()?;
    if !stream.get_type().is(text_io_wrapper.bind(py)) {
        return Some(false);
    }
    if stream
        .call_method0(names::FILENO.get(py))
        .ok()?
        .extract::<RawFd>()
        .ok()?
        != fd
    {
        return Some(false);
    }
    let write_through = stream.getattr(names::WRITE_THROUGH.get(py)).ok()?.is_truthy().ok()?;
    let raw = stream
        .getattr(names::BUFFER.get(py))
        .ok()?
        .get_type()
        .is(file_io.bind(py));
    Some(!(write_through && raw))
}

/// At the outermost enter: make `sys.__<name>__` line-buffered if it buffers text written to
/// `fd`, returning it so the exit can undo it. The examination is cached per stream object: this
/// runs at every outermost enter.
fn line_buffer_dunder(py: Python<'_>, sys: &Bound<'_, PyModule>, fd: RawFd) -> Option<Py<PyAny>> {
    let stream = sys.getattr(dunder_name(py, fd)).ok()?;
    let index = (fd - 1) as usize;
    let cached = match &lock(py, &EXAMINED)[index] {
        Some((seen, buffers)) if seen.is(&stream) => Some(*buffers),
        _ => None,
    };
    let buffers = if let Some(buffers) = cached {
        buffers
    } else {
        let buffers = buffers_on_fd(py, &stream, fd)?;
        let replaced = lock(py, &EXAMINED)[index].replace((stream.clone().unbind(), buffers));
        drop(replaced); // outside the lock: the last reference may run Python code
        buffers
    };
    if !buffers || stream.getattr(names::LINE_BUFFERING.get(py)).ok()?.is_truthy().ok()? {
        return None;
    }
    stream
        .call_method(names::RECONFIGURE.get(py), (), Some(line_buffering_kwargs(py, true)?))
        .ok()?;
    Some(stream.unbind())
}

/// At the outermost exit: undo `line_buffer_dunder` on the stream it changed, unless the user
/// reconfigured that stream meanwhile (it is no longer line-buffered: nothing to undo).
fn restore_dunder(py: Python<'_>, stream: &Py<PyAny>) {
    let stream = stream.bind(py);
    let still = stream
        .getattr(names::LINE_BUFFERING.get(py))
        .and_then(|b| b.is_truthy())
        .unwrap_or(false);
    if let (true, Some(kwargs)) = (still, line_buffering_kwargs(py, false)) {
        let _ = stream.call_method(names::RECONFIGURE.get(py), (), Some(kwargs));
    }
}

/// A block on `fd` begins: at the outermost, remember `sys.<name>` and put the writer there.
/// Returns the writer's previous encoding, for `deactivate`.
pub fn activate(py: Python<'_>, fd: RawFd, encoding: Option<&str>) -> PyResult<Option<String>> {
    // Everything that may initialise a once-cell (and so release the GIL) before locking.
    let writer = writer(py, fd)?;
    let sys = sys_module(py)?;
    let name = sys_name(py, fd);
    let outermost = {
        let mut swaps = lock(py, &SWAPS);
        let swap = &mut swaps[(fd - 1) as usize];
        let outermost = swap.depth == 0;
        if outermost {
            swap.original = Some(sys.getattr(name)?.unbind());
            sys.setattr(name, writer)?;
        }
        swap.depth += 1;
        outermost
    };
    // Outside the lock: reconfiguring flushes, which releases the GIL around the write.
    if outermost {
        if let Some(stream) = line_buffer_dunder(py, sys, fd) {
            let previous = lock(py, &SWAPS)[(fd - 1) as usize].line_buffered.replace(stream);
            if let Some(previous) = previous {
                restore_dunder(py, &previous); // another thread's outermost block ended meanwhile
            }
        }
    }
    let encoding = encoding.filter(|e| !encoding_is(e, UTF8_NAMES)).map(str::to_owned);
    let mut current = lock(py, &writer.get().encoding);
    Ok(std::mem::replace(&mut *current, encoding))
}

/// A block on `fd` ends: at the outermost, put back the remembered object, unless the user
/// replaced `sys.<name>` meanwhile (their choice wins).
pub fn deactivate(py: Python<'_>, fd: RawFd, previous_encoding: Option<String>) {
    let (Ok(writer), Ok(sys)) = (writer(py, fd), sys_module(py)) else {
        return;
    };
    let name = sys_name(py, fd);
    *lock(py, &writer.get().encoding) = previous_encoding;
    let mut swaps = lock(py, &SWAPS);
    let swap = &mut swaps[(fd - 1) as usize];
    swap.depth = swap.depth.saturating_sub(1);
    if swap.depth > 0 {
        return;
    }
    let line_buffered = swap.line_buffered.take();
    let Some(original) = swap.original.take() else {
        return;
    };
    let still_ours = sys.getattr(name).is_ok_and(|current| current.is(writer));
    if still_ours {
        let _ = sys.setattr(name, &original);
    }
    drop(swaps);
    if let Some(stream) = &line_buffered {
        restore_dunder(py, stream);
    }
    drop(original); // outside the lock: the last reference may run Python code
}

/// `io.UnsupportedOperation(name)`, as a text stream that cannot do `name` raises.
fn unsupported(py: Python<'_>, name: &str) -> PyErr {
    let made = py
        .import("io")
        .and_then(|io| io.getattr("UnsupportedOperation"))
        .and_then(|class| class.call1((name,)));
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(err) => err,
    }
}

impl FdWriter {
    fn write_bytes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let fd = self.fd;
        let mut written = 0;
        loop {
            // Released: the fd may be a pipe whose reader needs this thread to let go of the GIL.
            match py.detach(|| fd::write_all(fd, data, &mut written)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => py.check_signals()?,
                Err(e) => return Err(os_error(e.raw_os_error().unwrap_or(libc::EIO))),
            }
        }
    }

    fn encode<'py>(&self, text: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyBytes>> {
        let encoding = lock(text.py(), &self.encoding).clone();
        match encoding {
            None => match text.encode_utf8() {
                Ok(bytes) => Ok(bytes),
                // Lone surrogates: same as any other unencodable character.
                Err(_) => Ok(text.call_method1("encode", ("utf-8", WRITER_ERRORS))?.cast_into()?),
            },
            Some(encoding) => Ok(text.call_method1("encode", (encoding, WRITER_ERRORS))?.cast_into()?),
        }
    }
}

#[pymethods]
impl FdWriter {
    /// Write `str` (encoded) or bytes-like data straight to the fd. Returns the length written.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(text) = data.cast::<PyString>() {
            let bytes = self.encode(text)?;
            self.write_bytes(py, bytes.as_bytes())?;
            return text.len();
        }
        if let Ok(bytes) = data.cast::<PyBytes>() {
            self.write_bytes(py, bytes.as_bytes())?;
            return Ok(bytes.as_bytes().len());
        }
        // Any other bytes-like object; memoryview() raises the TypeError for everything else.
        let view = PyMemoryView::from(data)?;
        let bytes = view.call_method0(names::TOBYTES.get(py))?.cast_into::<PyBytes>()?;
        self.write_bytes(py, bytes.as_bytes())?;
        Ok(bytes.as_bytes().len())
    }

    fn writelines(&self, py: Python<'_>, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(py, &line?)?;
        }
        Ok(())
    }

    /// Every write has already reached the fd; flushing is an ordering barrier beyond it (as
    /// ipykernel, ipywidgets and matplotlib use it before a display): the native runtimes are
    /// flushed, and live and tee blocks on the fd hand everything written so far to their
    /// targets, which are flushed, before this returns.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        super::redirect::sync_fd(py, self.fd)
    }

    /// Closing the stand-in for `sys.stdout` would only break later prints: it stays open.
    fn close(&self) {}

    fn fileno(&self) -> RawFd {
        self.fd
    }

    fn isatty(&self) -> bool {
        fd::isatty(self.fd)
    }

    fn readable(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    fn seekable(&self) -> bool {
        false
    }

    #[getter]
    fn closed(&self) -> bool {
        false
    }

    #[getter]
    fn encoding(&self, py: Python<'_>) -> String {
        lock(py, &self.encoding).clone().unwrap_or_else(|| "utf-8".to_owned())
    }

    #[getter]
    fn errors(&self) -> &'static str {
        WRITER_ERRORS
    }

    #[getter]
    fn name(&self) -> String {
        format!("<fdredirect fd {}>", self.fd)
    }

    #[getter]
    fn mode(&self) -> &'static str {
        "w"
    }

    #[getter]
    fn line_buffering(&self) -> bool {
        false
    }

    /// Every write goes straight to the fd.
    #[getter]
    fn write_through(&self) -> bool {
        true
    }

    /// Accepted and ignored (the writer has no buffer; its encoding is the block's): code that
    /// reconfigures `sys.stdout` must not fail inside a block.
    #[pyo3(signature = (**_options))]
    fn reconfigure(&self, _options: Option<&Bound<'_, PyDict>>) {}

    fn tell(&self, py: Python<'_>) -> PyResult<u64> {
        Err(unsupported(py, "tell"))
    }

    #[pyo3(signature = (*_args))]
    fn seek(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<u64> {
        Err(unsupported(py, "seek"))
    }

    #[pyo3(signature = (*_args))]
    fn truncate(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<u64> {
        Err(unsupported(py, "truncate"))
    }

    #[pyo3(signature = (*_args))]
    fn read(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<String> {
        Err(unsupported(py, "read"))
    }

    #[pyo3(signature = (*_args))]
    fn readline(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<String> {
        Err(unsupported(py, "readline"))
    }

    fn detach(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Err(unsupported(py, "detach"))
    }

    #[getter]
    fn newlines(&self, py: Python<'_>) -> Py<PyAny> {
        py.None()
    }

    /// Code that writes bytes to `sys.stdout.buffer` gets the same writer: it takes bytes too.
    #[getter]
    fn buffer(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.clone().into_py_any(slf.py())
    }

    fn __repr__(&self) -> String {
        format!("<fdredirect.FdWriter fd={}>", self.fd)
    }
}
