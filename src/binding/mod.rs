//! The Python binding: the only code in the crate that touches Python types.

pub mod both;
pub mod captured;
pub mod crash;
mod entered;
mod entry;
pub mod errors;
pub mod live;
mod loops;
pub mod names;
mod plan;
pub mod redirect;
pub mod step;
pub mod streams;
mod switch;
mod tees;
pub mod testing;

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;
use pyo3::sync::MutexExt;

/// At import, while nothing else runs: every name and object the binding makes once. Made on
/// first use instead, a `fork()` in the middle of making one leaves it "being made" forever in
/// the child (see `names`).
pub fn make_once(py: Python<'_>) -> PyResult<()> {
    names::intern_all(py);
    streams::make_once(py)?;
    entered::make_once(py)?;
    Ok(())
}

/// Lock a mutex while attached to Python. A plain `lock()` that has to wait would wait while
/// holding the GIL, and the holder may itself be waiting for the GIL (any Python call can release
/// it, e.g. any Python code): waiting detached cannot deadlock that way.
pub fn lock<'a, T>(py: Python<'_>, mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
    mutex.lock_py_attached(py).unwrap_or_else(PoisonError::into_inner)
}

/// Flush Python's `sys` streams, libc's stdout/stderr and every loaded C++/Fortran runtime.
#[pyfunction]
pub fn flush_all(py: Python<'_>) -> PyResult<()> {
    let interrupted = streams::flush_python(py);
    py.detach(crate::flush::flush_native);
    interrupted
}

/// At interpreter exit (registered with `atexit`): end open live blocks, sending what is still
/// undelivered to the original destination, so the process never hangs on them.
#[pyfunction]
pub fn shutdown(py: Python<'_>) {
    let _ = streams::drain_writers(py); // a partial line still lands in its block
    live::shutdown(py);
}
