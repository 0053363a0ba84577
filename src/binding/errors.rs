//! Core errors → Python exceptions, in one place. `OSError` is built as (errno, strerror[, path])
//! so Python picks the subclass (`FileNotFoundError`, `PermissionError`, …) and keeps `.errno`.

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::PyErr;

use crate::error::{Error, Subject};

pub fn to_pyerr(err: Error) -> PyErr {
    match err {
        Error::Os { err, subject } => match err.raw_os_error() {
            Some(errno) => {
                let message = strerror(errno);
                match subject {
                    Subject::Nothing => os_error(errno),
                    Subject::Fd(fd) => PyOSError::new_err((errno, format!("{message}: fd {fd}"))),
                    Subject::Path(path) => PyOSError::new_err((errno, message, path.into_os_string())),
                    Subject::Tee(fd) => PyOSError::new_err((
                        errno,
                        format!("{message}: output of fd {fd} could not be copied to its tee destination"),
                    )),
                }
            }
            None => PyOSError::new_err(err.to_string()),
        },
        Error::ReadOnly(fd) => PyOSError::new_err((libc::EBADF, format!("fd {fd} is open read-only, not for writing"))),
        Error::NotActive => PyRuntimeError::new_err("this redirect is not active (already exited?)"),
    }
}

/// A path target was removed while its block wrote to it: `FileNotFoundError` with the path.
pub fn removed_file_error(path: std::path::PathBuf) -> PyErr {
    PyOSError::new_err((
        libc::ENOENT,
        "the file was removed while the block wrote to it; its output is lost",
        path.into_os_string(),
    ))
}

/// An `OSError` from an `io::Error` of a syscall made here.
#[allow(clippy::needless_pass_by_value)] // used as `.map_err(io_error)`
pub fn io_error(err: std::io::Error) -> PyErr {
    os_error(err.raw_os_error().unwrap_or(libc::EIO))
}

/// An `OSError` for a raw errno from C code or a syscall made here.
pub fn os_error(errno: i32) -> PyErr {
    PyOSError::new_err((errno, strerror(errno)))
}

/// The C library's text for `errno`, without Rust's " (os error N)" suffix.
fn strerror(errno: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: strerror_r (XSI variant in the libc crate) writes a NUL-terminated string into `buf`.
    let ok = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) } == 0;
    if !ok {
        return format!("error {errno}");
    }
    // SAFETY: strerror_r succeeded, so `buf` holds a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
