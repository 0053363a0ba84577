//! `FdWriter`: what `sys.stdout`/`sys.stderr` are inside a block (one per fd, made once).
//!
//! It writes to the fd itself, line-buffered (`linebuf`: a complete line reaches the fd before the
//! `write` that completes it returns), so `print`ed lines and flushed native output reach the fd in
//! call order, also when `sys.stdout` was not fd 1 at all (a `StringIO`, pytest, a Jupyter kernel).

use std::os::fd::RawFd;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyMemoryView, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use super::slot;
use crate::binding::errors::io_error;
use crate::binding::{lock, names};
use crate::fd;
use crate::linebuf::{self, LineBuffer};

/// What the writer does with characters its encoding cannot represent: never fail a `print`.
const WRITER_ERRORS: &str = "backslashreplace";

/// `dict`: code assigns attributes on `sys.stdout` (`_tee` in `IPython` wraps `stream.write`).
#[pyclass(frozen, dict, module = "fdredirect._native")]
pub struct FdWriter {
    fd: RawFd,
    /// The encoding of the innermost block; `None` is UTF-8 (the fast path).
    encoding: Mutex<Option<String>>,
}

static WRITERS: PyOnceLock<[Py<FdWriter>; 2]> = PyOnceLock::new();

/// The writer for `fd` (1 or 2).
pub(super) fn writer(py: Python<'_>, fd: RawFd) -> PyResult<&Py<FdWriter>> {
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
    Ok(&writers[slot(fd)])
}

/// At import, while nothing else runs (see `names`).
pub(super) fn make_once(py: Python<'_>) -> PyResult<()> {
    writer(py, 1).map(|_| ())
}

/// Run a blocking step of `fd`'s line buffer with the GIL released (the fd may be a pipe whose
/// reader needs this thread to let go of it). A signal interrupting the write runs the Python
/// handlers, which may raise (Ctrl-C on a write blocked on a full pipe) or print themselves: the
/// buffer keeps what is left, and writes it first at its next step.
fn emit(py: Python<'_>, fd: RawFd, step: impl FnOnce(&LineBuffer) -> std::io::Result<()> + Send) -> PyResult<()> {
    let buffer = linebuf::for_fd(fd);
    let mut result = py.detach(|| step(buffer));
    loop {
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                py.check_signals()?;
                result = py.detach(|| buffer.resume());
            }
            Err(e) => return Err(io_error(e)),
        }
    }
}

/// Write out every thread's partial line on `fd` (a switch or a flush is coming).
pub(super) fn drain(py: Python<'_>, fd: RawFd) -> PyResult<()> {
    if linebuf::for_fd(fd).is_idle() {
        return Ok(()); // the common case: no GIL hand-off
    }
    emit(py, fd, LineBuffer::drain)
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
    /// Set the encoding of the innermost block, returning the one it replaces.
    pub(super) fn replace_encoding(&self, py: Python<'_>, encoding: Option<String>) -> Option<String> {
        std::mem::replace(&mut *lock(py, &self.encoding), encoding)
    }

    /// Keep `data` in the line buffer, writing out what it completes (see `linebuf`).
    fn write_bytes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        if linebuf::for_fd(self.fd).keep(data) {
            return Ok(());
        }
        emit(py, self.fd, |buffer| buffer.write_lines(data))
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
    /// Write `str` (encoded) or bytes-like data, line-buffered. Returns the length written.
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

    /// Writes out this thread's partial line (another thread's would be split: it is written at its
    /// newline or the next switch), then is an ordering barrier beyond the fd (as ipykernel,
    /// ipywidgets and matplotlib use it before a display): the native runtimes are flushed, and
    /// live and tee blocks on the fd hand everything written so far to their targets, which are
    /// flushed, before this returns.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        emit(py, self.fd, LineBuffer::flush_mine)?;
        crate::binding::redirect::sync_fd(py, self.fd)
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
        true
    }

    #[getter]
    fn write_through(&self) -> bool {
        false
    }

    /// Accepted and ignored (the writer is always line-buffered; its encoding is the block's):
    /// code that reconfigures `sys.stdout` must not fail inside a block.
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
