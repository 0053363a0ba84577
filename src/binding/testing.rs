//! The C emitters (csrc/emitters.c) as Python functions, for `fdredirect.testing`.
//! `hold_gil` decides whether the GIL is released around the C call, like an extension that
//! does or does not release it.

use std::ffi::c_char;
use std::os::fd::RawFd;

use pyo3::prelude::*;

use super::errors::{io_error, os_error};

extern "C" {
    fn fdr_printf(text: *const c_char, len: usize, flush: libc::c_int) -> libc::c_int;
    fn fdr_fprintf_stderr(text: *const c_char, len: usize) -> libc::c_int;
    fn fdr_write(fd: RawFd, buf: *const c_char, len: usize) -> libc::c_long;
    fn fdr_emit(fd: RawFd, nbytes: usize, chunk: usize) -> libc::c_long;
}

fn written(n: libc::c_long) -> PyResult<usize> {
    if n < 0 {
        Err(os_error(-n as i32))
    } else {
        Ok(n as usize)
    }
}

fn run<T: Send>(py: Python<'_>, hold_gil: bool, call: impl FnOnce() -> T + Send) -> PyResult<T> {
    if hold_gil {
        Ok(call())
    } else {
        let result = py.detach(call);
        py.check_signals()?;
        Ok(result)
    }
}

/// `printf("%.*s", text)` into libc's buffered stdout (holding the GIL, as most extensions do).
#[pyfunction]
pub fn c_printf(text: &[u8], flush: bool) -> PyResult<usize> {
    // SAFETY: `text` is valid for `len` bytes; printf reads exactly that many.
    let n = unsafe { fdr_printf(text.as_ptr().cast(), text.len(), libc::c_int::from(flush)) };
    written(libc::c_long::from(n)).map_err(|_| io_error(std::io::Error::last_os_error()))
}

/// `fprintf(stderr, "%.*s", text)`.
#[pyfunction]
pub fn c_fprintf_stderr(text: &[u8]) -> PyResult<usize> {
    // SAFETY: `text` is valid for `len` bytes.
    let n = unsafe { fdr_fprintf_stderr(text.as_ptr().cast(), text.len()) };
    written(libc::c_long::from(n)).map_err(|_| io_error(std::io::Error::last_os_error()))
}

/// `write(2)` all of `data` to `fd`.
#[pyfunction]
pub fn c_write(py: Python<'_>, fd: RawFd, data: &[u8], hold_gil: bool) -> PyResult<usize> {
    // SAFETY: `data` is valid for its length for the whole call.
    written(run(py, hold_gil, || unsafe {
        fdr_write(fd, data.as_ptr().cast(), data.len())
    })?)
}

/// `write(2)` `nbytes` of the test pattern to `fd`, `chunk` bytes at a time.
#[pyfunction]
pub fn c_emit(py: Python<'_>, fd: RawFd, nbytes: usize, chunk: usize, hold_gil: bool) -> PyResult<usize> {
    // SAFETY: plain values; the C function owns its buffer.
    written(run(py, hold_gil, || unsafe { fdr_emit(fd, nbytes, chunk) })?)
}
