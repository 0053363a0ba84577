//! Which entries were entered in the current execution context, so that an exit ends its own.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::stack;

/// The ids of the entries (of every instance) entered in the current execution context: a
/// `contextvars.ContextVar` holding a tuple. A thread id cannot tell asyncio tasks apart; each
/// task runs in its own copy of the context, so two tasks sharing one instance each exit their own
/// entry. An exit does not rewrite the tuple (one call less per block): ids of ended entries are
/// skipped when matching and dropped at the next enter, so the tuple stays as deep as the nesting.
pub struct EnteredVar {
    get: Py<PyAny>,
    set: Py<PyAny>,
}

static ENTERED: PyOnceLock<EnteredVar> = PyOnceLock::new();

/// At import (see `binding::make_once`).
pub fn make_once(py: Python<'_>) -> PyResult<()> {
    entered_var(py).map(|_| ())
}

pub fn entered_var(py: Python<'_>) -> PyResult<&EnteredVar> {
    ENTERED.get_or_try_init(py, || {
        let default = PyDict::new(py);
        default.set_item("default", PyTuple::empty(py))?;
        let var = py.import("contextvars")?.getattr("ContextVar")?;
        let var = var.call(("fdredirect_entered",), Some(&default))?;
        Ok(EnteredVar {
            get: var.getattr("get")?.unbind(),
            set: var.getattr("set")?.unbind(),
        })
    })
}

impl EnteredVar {
    /// The ids entered in the current context, oldest first (some may have ended).
    pub fn here(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        let here = self.get.bind(py).call0()?;
        // Always a tuple (only `set_here` sets it): read its items directly, no iterator.
        let here = here.cast::<PyTuple>()?;
        here.iter_borrowed().map(pyo3::Borrowed::extract::<u64>).collect()
    }

    /// The ids still open in the current context, oldest first, ready for one more.
    pub fn here_open(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        let mut here = self.here(py)?;
        if !here.is_empty() {
            stack::retain_active(&mut here); // never waits, so it may run holding the GIL
        }
        Ok(here)
    }

    pub fn set_here(&self, py: Python<'_>, ids: &[u64]) -> PyResult<()> {
        self.set.bind(py).call1((PyTuple::new(py, ids)?,))?;
        Ok(())
    }
}
