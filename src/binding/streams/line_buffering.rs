//! `sys.__stdout__` (a buffered `TextIOWrapper` on fd 1 unless `PYTHONUNBUFFERED` is set) is made
//! line-buffered while a block is open on its fd, so a complete line written to it reaches the fd
//! at once, in order with flushed native output, instead of at the block's end.

use std::os::fd::RawFd;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use super::{slot, sys_name};
use crate::binding::{lock, names};

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

/// `io.TextIOWrapper` and `io.FileIO`, for `buffers_on_fd`.
fn io_types(py: Python<'_>) -> PyResult<&[Py<PyAny>; 2]> {
    IO_TYPES.get_or_try_init(py, || {
        let io = py.import("io")?;
        Ok::<_, PyErr>([io.getattr("TextIOWrapper")?.unbind(), io.getattr("FileIO")?.unbind()])
    })
}

/// At import, while nothing else runs (see `names`).
pub(super) fn make_once(py: Python<'_>) -> PyResult<()> {
    io_types(py)?;
    line_buffering_kwargs(py, true);
    Ok(())
}

/// Whether `stream` is a buffered `io.TextIOWrapper` on `fd` itself: the exact io class (whose
/// flush is all native code; a subclass's or a Python object's methods could do anything), and
/// not already unbuffered (`PYTHONUNBUFFERED`: write-through onto a raw `FileIO`).
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
pub(super) fn line_buffer_dunder(py: Python<'_>, sys: &Bound<'_, PyModule>, fd: RawFd) -> Option<Py<PyAny>> {
    let stream = sys.getattr(sys_name(py, fd, true)).ok()?;
    let cached = match &lock(py, &EXAMINED)[slot(fd)] {
        Some((seen, buffers)) if seen.is(&stream) => Some(*buffers),
        _ => None,
    };
    let buffers = if let Some(buffers) = cached {
        buffers
    } else {
        let buffers = buffers_on_fd(py, &stream, fd)?;
        let replaced = lock(py, &EXAMINED)[slot(fd)].replace((stream.clone().unbind(), buffers));
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
pub(super) fn restore_dunder(py: Python<'_>, stream: &Py<PyAny>) {
    let stream = stream.bind(py);
    let still = stream
        .getattr(names::LINE_BUFFERING.get(py))
        .and_then(|b| b.is_truthy())
        .unwrap_or(false);
    if let (true, Some(kwargs)) = (still, line_buffering_kwargs(py, false)) {
        let _ = stream.call_method(names::RECONFIGURE.get(py), (), Some(kwargs));
    }
}
