//! `Redirect`: the native half of `redirect_stdout_fd`/`redirect_stderr_fd`. `__enter__` and
//! `__exit__` are each one native call, so a `KeyboardInterrupt` can only land before or after a
//! switch, never inside one. State is per entry (a stack per thread), not per instance, so one
//! instance may be nested, reused and shared between threads.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::sync::{Mutex, PoisonError};
use std::thread::ThreadId;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{intern, IntoPyObjectExt};

use super::captured::Captured;
use super::errors::to_pyerr;
use super::streams::{activate, deactivate, flush_python};
use crate::stack::{self, Sink};

// Target kinds, classified in Python (fdredirect/_targets.py) before anything is touched.
pub const KIND_CAPTURE: u8 = 0;
pub const KIND_FD: u8 = 1;
pub const KIND_PATH: u8 = 2;
pub const KIND_FILE: u8 = 3;
pub const KIND_DEVNULL: u8 = 4;
pub const KIND_STDOUT: u8 = 5;

enum Plan {
    Capture,
    Fd(RawFd),
    Path(CString),
    /// A real OS-level file object: flushed at enter, then its fd is used.
    File,
    DevNull,
    Stdout,
}

struct Active {
    thread: ThreadId,
    id: u64,
    captured: Option<Py<Captured>>,
    previous_encoding: Option<String>,
}

#[pyclass(subclass, frozen, module = "fdredirect._native")]
pub struct Redirect {
    fd: RawFd,
    plan: Plan,
    target: Py<PyAny>,
    encoding: Option<String>,
    errors: String,
    active: Mutex<Vec<Active>>,
}

#[pymethods]
impl Redirect {
    #[new]
    fn new(
        fd: RawFd,
        kind: u8,
        arg: &Bound<'_, PyAny>,
        target: Py<PyAny>,
        encoding: Option<String>,
        errors: String,
    ) -> PyResult<Self> {
        if fd != 1 && fd != 2 {
            return Err(PyValueError::new_err(format!("fd must be 1 or 2, not {fd}")));
        }
        let plan = match kind {
            KIND_CAPTURE => Plan::Capture,
            KIND_FD => Plan::Fd(arg.extract()?),
            KIND_PATH => {
                let path = arg.cast::<PyBytes>()?.as_bytes().to_vec();
                Plan::Path(CString::new(path).map_err(|_| PyValueError::new_err("embedded null byte in path"))?)
            }
            KIND_FILE => Plan::File,
            KIND_DEVNULL => Plan::DevNull,
            KIND_STDOUT if fd == 2 => Plan::Stdout,
            KIND_STDOUT => return Err(PyValueError::new_err("STDOUT is only a target for stderr")),
            _ => return Err(PyValueError::new_err(format!("unknown target kind {kind}"))),
        };
        Ok(Redirect {
            fd,
            plan,
            target,
            encoding,
            errors,
            active: Mutex::new(Vec::new()),
        })
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let file_fd;
        let sink = match &self.plan {
            Plan::Capture => Sink::Capture,
            Plan::Fd(target) => Sink::Fd(*target),
            Plan::Path(path) => Sink::Path(path),
            Plan::File => {
                let file = self.target.bind(py);
                file.call_method0(intern!(py, "flush"))?;
                file_fd = file.call_method0(intern!(py, "fileno"))?.extract::<RawFd>()?;
                Sink::Fd(file_fd)
            }
            Plan::DevNull => Sink::DevNull,
            Plan::Stdout => Sink::Follow(1),
        };
        flush_python(py);
        let fd = self.fd;
        let entered = py.detach(|| stack::enter(fd, &sink)).map_err(to_pyerr)?;
        let id = entered.id;
        // The fd is switched: anything failing from here on must switch it back.
        let finish_enter = || -> PyResult<(Option<Py<Captured>>, Option<String>)> {
            let captured = match entered.capture {
                Some(memfd) => Some(Py::new(
                    py,
                    Captured::new(memfd, self.encoding.clone(), self.errors.clone()),
                )?),
                None => None,
            };
            let previous_encoding = activate(py, fd, self.encoding.as_deref())?;
            Ok((captured, previous_encoding))
        };
        let (captured, previous_encoding) = match finish_enter() {
            Ok(done) => done,
            Err(err) => {
                let _ = py.detach(|| stack::exit(fd, id));
                return Err(err);
            }
        };
        let returned = match &captured {
            Some(captured) => captured.clone_ref(py).into_any(),
            None => self.target.clone_ref(py),
        };
        let thread = std::thread::current().id();
        self.lock().push(Active {
            thread,
            id,
            captured,
            previous_encoding,
        });
        Ok(returned)
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        let thread = std::thread::current().id();
        let active = {
            let mut entries = self.lock();
            let Some(index) = entries.iter().rposition(|a| a.thread == thread) else {
                return Err(PyRuntimeError::new_err(
                    "__exit__ without a matching __enter__ in this thread",
                ));
            };
            entries.remove(index)
        };
        flush_python(py);
        let fd = self.fd;
        let exited = py.detach(|| stack::exit(fd, active.id));
        deactivate(py, fd, active.previous_encoding);
        let exited = exited.map_err(to_pyerr)?;
        if let Some(captured) = &active.captured {
            captured.get().finish(py, exited.inherited)?;
        }
        if exited.orphaned_followers {
            return Err(PyRuntimeError::new_err(
                "the stdout redirect ended while a redirect_stderr_fd(STDOUT) entered inside it was still open; \
                 stdout was restored and stderr now follows it. End the stderr block first",
            ));
        }
        Ok(false)
    }

    /// The fd this redirect switches (1 or 2).
    #[getter]
    fn fd(&self) -> RawFd {
        self.fd
    }

    /// The target as given (None for capture).
    #[getter]
    fn target(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.target.clone_ref(py).into_py_any(py)
    }
}

impl Redirect {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Active>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
