//! Crash guards for redirects made outside the library (pytest's own fd capture under `capall`):
//! see `crate::crash::guard`.

use std::os::fd::RawFd;

use pyo3::prelude::*;

use super::errors::io_error;

/// On a fatal signal, point `fd` back at `saved` and show the file `held` there (from its start),
/// before the library's own blocks entered after this call. Returns an id for `crash_unguard`.
#[pyfunction]
pub fn crash_guard(fd: RawFd, saved: RawFd, held: RawFd) -> PyResult<u64> {
    crate::crash::guard(fd, saved, held).map_err(io_error)
}

/// Forget the guard `id` (unknown ids are ignored).
#[pyfunction]
pub fn crash_unguard(id: u64) {
    crate::crash::untrack(id);
}
