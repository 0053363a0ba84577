//! The Python binding: the only code in the crate that touches Python types.

pub mod captured;
pub mod errors;
pub mod live;
pub mod redirect;
pub mod streams;
pub mod testing;

use pyo3::prelude::*;

/// Flush Python's `sys` streams, libc's stdout/stderr and every loaded C++/Fortran runtime.
#[pyfunction]
pub fn flush_all(py: Python<'_>) {
    streams::flush_python(py);
    py.detach(crate::flush::flush_native);
}

/// At interpreter exit (registered with `atexit`): end open live blocks, sending what is still
/// undelivered to the original destination, so the process never hangs on them.
#[pyfunction]
pub fn shutdown(py: Python<'_>) {
    live::shutdown(py);
}
