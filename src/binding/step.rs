//! `Step`: what `Redirect.__aenter__`/`__aexit__` return for `async with`. A coroutine written in
//! Python would wrap the native enter in bytecode, and an exception (a signal handler's, a
//! `KeyboardInterrupt`) landing between the native call and the coroutine's return would leave
//! the fd switched with no exit to come. A `Step` completes in its first `__next__`, which does
//! the whole work and raises `StopIteration(value)` in one native call: it never suspends.

use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::PyBool;

use super::lock;

/// How a context manager is entered natively: `enter(py, manager)`.
pub type Enter = fn(Python<'_>, &Bound<'_, PyAny>) -> PyResult<Py<PyAny>>;

enum Pending {
    /// Enter this context manager when first stepped.
    Enter(Py<PyAny>, Enter),
    /// Already done: hand back this value.
    Done(Py<PyAny>),
}

#[pyclass(frozen, module = "fdredirect._native")]
pub struct Step {
    pending: Mutex<Option<Pending>>,
}

impl Step {
    pub fn enter(manager: Py<PyAny>, enter: Enter) -> Self {
        Step {
            pending: Mutex::new(Some(Pending::Enter(manager, enter))),
        }
    }

    pub fn done(value: Py<PyAny>) -> Self {
        Step {
            pending: Mutex::new(Some(Pending::Done(value))),
        }
    }

    /// What `__aexit__` returns once the exit is done: hands back whether to suppress.
    pub fn exited(py: Python<'_>, suppress: bool) -> Self {
        Step::done(PyBool::new(py, suppress).to_owned().into_any().unbind())
    }
}

#[pymethods]
impl Step {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Do the work and finish: always raises (`StopIteration` carrying the result, or the error).
    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let pending = lock(py, &self.pending).take();
        let value = match pending {
            Some(Pending::Enter(manager, enter)) => enter(py, manager.bind(py))?,
            Some(Pending::Done(value)) => value,
            None => {
                return Err(PyRuntimeError::new_err(
                    "cannot reuse an already awaited fdredirect step",
                ))
            }
        };
        Err(PyStopIteration::new_err((value,)))
    }

    /// What a coroutine delegating to this one calls when it is driven with `send`.
    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__(py)
    }
}
