//! `Captured`: what a capture block returns. Reads the memory file while the block runs (after
//! flushing), and holds what was read back at exit: a `str` when the output is ASCII and the
//! block decodes text (`text`), else the bytes.
//!
//! Under a finite `RLIMIT_FSIZE` a memory file cannot grow past the limit (writes fail with
//! `EFBIG`, and `SIGXFSZ` kills a process that does not ignore it), where the pipe or terminal
//! the user redirected from never would: such a capture is a pipe that the reader thread drains
//! into memory instead.

mod text;

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use text::ReadBack;

use super::errors::io_error;
use super::names;
use super::streams::flush_python;
use crate::reader::Channel;
use crate::{flush, memfile};

enum State {
    /// The block runs; the memory file is read on demand. `Arc`: a reader may hold it while
    /// another thread ends the block.
    Active(Arc<OwnedFd>),
    /// The block runs on a pipe (see above); `taken` holds what was already taken from it.
    Piped {
        channel: Arc<Channel>,
        taken: Vec<u8>,
    },
    Done(ReadBack),
}

#[pyclass(frozen, module = "fdredirect._native")]
pub struct Captured {
    encoding: Option<String>,
    errors: String,
    state: Mutex<State>,
}

impl Captured {
    pub fn new(memfd: OwnedFd, encoding: Option<String>, errors: String) -> Self {
        Captured {
            encoding,
            errors,
            state: Mutex::new(State::Active(Arc::new(memfd))),
        }
    }

    pub fn piped(channel: Arc<Channel>, encoding: Option<String>, errors: String) -> Self {
        Captured {
            encoding,
            errors,
            state: Mutex::new(State::Piped {
                channel,
                taken: Vec::new(),
            }),
        }
    }

    fn lock(&self, py: Python<'_>) -> std::sync::MutexGuard<'_, State> {
        super::lock(py, &self.state)
    }

    /// The block has ended: read everything back (releasing the file's pages behind the copy),
    /// or, in a forked child that inherited the block, leave the parent's file untouched.
    /// For a piped capture, `rest` is what the pipe still held at the block's end.
    pub fn finish(&self, py: Python<'_>, inherited: bool, rest: &[u8]) -> PyResult<()> {
        let memfd = {
            let mut state = self.lock(py);
            match &mut *state {
                State::Active(memfd) => Arc::clone(memfd),
                State::Piped { taken, .. } => {
                    let taken = std::mem::take(taken);
                    drop(state);
                    return self.finish_piped(py, inherited, &taken, rest);
                }
                State::Done(_) => return Ok(()),
            }
        };
        let read_back = if inherited {
            ReadBack::Bytes(PyBytes::new(py, b"").unbind())
        } else {
            let size = memfile::size(&memfd).map_err(io_error)?;
            match text::as_text(self.encoding.as_deref(), size) {
                Some(how) => text::read_text(py, &memfd, size, how)?,
                None => {
                    ReadBack::Bytes(new_bytes_filled(py, size, |buf| memfile::read_and_release(&memfd, buf))?.unbind())
                }
            }
        };
        *self.lock(py) = State::Done(read_back);
        Ok(())
    }
}

/// A new `bytes` of `len` bytes filled by `fill` with the GIL released, without zeroing it
/// first: zeroing would touch every page and double the peak memory of a large capture.
fn new_bytes_filled(
    py: Python<'_>,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> std::io::Result<usize> + Send,
) -> PyResult<Bound<'_, PyBytes>> {
    if len == 0 {
        return Ok(PyBytes::new(py, b"")); // an empty block: no GIL hand-off for nothing to read
    }
    let len_ssize =
        isize::try_from(len).map_err(|_| pyo3::exceptions::PyOverflowError::new_err("capture too large"))?;
    // SAFETY: a NULL source asks CPython for an uninitialised bytes object of `len` bytes.
    let raw = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), len_ssize) };
    // SAFETY: `raw` is a new reference (or NULL with an exception set).
    let bytes = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?.cast_into::<PyBytes>()?;
    // SAFETY: the object is new and not shared with any other code yet, so writing its buffer
    // (len bytes, as allocated) is allowed; it stays alive (we hold `bytes`) while `buf` is used.
    let buf = unsafe { std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(bytes.as_ptr()).cast::<u8>(), len) };
    let filled = py.detach(|| fill(buf)).map_err(io_error)?;
    if filled < len {
        // The file shrank under us (someone truncated the fd): keep only what was read.
        return Ok(PyBytes::new(py, &bytes.as_bytes()[..filled]));
    }
    Ok(bytes)
}

impl Captured {
    fn finish_piped(&self, py: Python<'_>, inherited: bool, taken: &[u8], rest: &[u8]) -> PyResult<()> {
        let bytes = if inherited {
            PyBytes::new(py, b"")
        } else {
            new_bytes_filled(py, taken.len() + rest.len(), |buf| {
                let (head, tail) = buf.split_at_mut(taken.len());
                head.copy_from_slice(taken);
                tail.copy_from_slice(rest);
                Ok(buf.len())
            })?
        };
        *self.lock(py) = State::Done(ReadBack::Bytes(bytes.unbind()));
        Ok(())
    }

    /// All bytes of a piped capture so far: flush, then take everything the pipe holds now.
    fn take_piped(&self, py: Python<'_>, channel: &Channel) -> PyResult<Py<PyBytes>> {
        flush_python(py)?;
        py.detach(|| {
            flush::flush_native();
            while channel.drain().0 > 0 {}
        });
        let mut state = self.lock(py);
        Ok(match &mut *state {
            State::Piped { taken, .. } => {
                taken.extend(channel.take_pending());
                PyBytes::new(py, taken).unbind()
            }
            // The block ended meanwhile (another thread): everything is there.
            State::Done(read_back) => read_back.bytes(py)?,
            State::Active(_) => PyBytes::new(py, b"").unbind(),
        })
    }
}

#[pymethods]
impl Captured {
    /// All bytes captured so far (inside the block, after flushing every buffer), or all of them.
    fn getbytes(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let source = match &*self.lock(py) {
            State::Done(read_back) => return read_back.bytes(py),
            State::Active(memfd) => Ok(Arc::clone(memfd)),
            State::Piped { channel, .. } => Err(Arc::clone(channel)),
        };
        let memfd = match source {
            Ok(memfd) => memfd,
            Err(channel) => return self.take_piped(py, &channel),
        };
        flush_python(py)?;
        py.detach(flush::flush_native);
        let size = memfile::size(&memfd).map_err(io_error)?;
        Ok(new_bytes_filled(py, size, |buf| memfile::read_at(&memfd, buf, 0))?.unbind())
    }

    /// `getbytes()` decoded with the block's encoding and errors (UTF-8 when encoding is None).
    fn getvalue(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let State::Done(ReadBack::Text(text)) = &*self.lock(py) {
            return Ok(text.clone_ref(py).into_any());
        }
        let bytes = self.getbytes(py)?;
        let encoding = self.encoding.as_deref().unwrap_or("utf-8");
        Ok(bytes
            .bind(py)
            .call_method1(names::DECODE.get(py), (encoding, &self.errors))?
            .unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match &*self.lock(py) {
            State::Active(_) | State::Piped { .. } => "<fdredirect.Captured (block running)>".to_owned(),
            State::Done(_) => "<fdredirect.Captured (done)>".to_owned(),
        }
    }
}
