//! `Redirects`: the native half of `redirect_fds`, one `Redirect` of fd 1 and one of fd 2 entered
//! and exited together. Each of `__enter__` and `__exit__` is still one native call: a
//! `KeyboardInterrupt` cannot land between the two switches, and a failure of the second undoes
//! the first, so users see both fds switched or neither.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::redirect::Redirect;
use super::step::Step;

#[pyclass(subclass, frozen, module = "fdredirect._native")]
pub struct Redirects {
    stdout: Py<Redirect>,
    stderr: Py<Redirect>,
    /// `stderr` follows fd 1 (`2>&1`): its own value is not handed out.
    merged: bool,
}

#[pymethods]
impl Redirects {
    #[new]
    fn new(stdout: Py<Redirect>, stderr: Py<Redirect>, merged: bool) -> PyResult<Self> {
        if stdout.get().fd != 1 || stderr.get().fd != 2 {
            return Err(PyValueError::new_err(
                "Redirects takes a redirect of fd 1, then one of fd 2",
            ));
        }
        Ok(Redirects { stdout, stderr, merged })
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.enter(py)
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.exit(py)
    }

    /// Does nothing until awaited (see `Redirect.__aenter__`).
    fn __aenter__(slf: &Bound<'_, Self>) -> Step {
        Step::enter(slf.clone().unbind().into_any(), |py, slf| {
            slf.cast::<Redirects>()?.get().enter(py)
        })
    }

    /// Exits at once; the awaitable only hands back the result (see `Redirect.__aexit__`).
    #[pyo3(signature = (*_exc_info))]
    fn __aexit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<Step> {
        Ok(Step::exited(py, self.exit(py)?))
    }

    /// The redirect of fd 1.
    #[getter]
    fn stdout(&self, py: Python<'_>) -> Py<Redirect> {
        self.stdout.clone_ref(py)
    }

    /// The redirect of fd 2.
    #[getter]
    fn stderr(&self, py: Python<'_>) -> Py<Redirect> {
        self.stderr.clone_ref(py)
    }
}

impl Redirects {
    /// fd 1 first, then fd 2; if fd 2 cannot be switched, fd 1 is switched back before the error
    /// is raised. Returns `(out, err)`, `err` being `None` when merged. Merged, fd 2 follows this
    /// pair's own fd 1 entry, not fd 1's newest one: the GIL is let go during each switch, so
    /// another thread's block may be entered on fd 1 in between, and fd 2 must not share (and
    /// then outlive) that block's sink.
    fn enter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (out, out_id) = self.stdout.get().enter_following(py, None)?;
        let follows = self.merged.then_some(out_id);
        let err = match self.stderr.get().enter_following(py, follows) {
            Ok((err, _)) => err,
            Err(error) => {
                // The undo's own failure (a live target's exception) would hide why.
                let _ = self.stdout.get().exit(py);
                return Err(error);
            }
        };
        let err = if self.merged { py.None() } else { err };
        Ok(PyTuple::new(py, [out, err])?.into_any().unbind())
    }

    /// fd 2 first (it may follow fd 1's block), then fd 1 whatever fd 2's exit raised; the
    /// first error is raised once both are restored.
    fn exit(&self, py: Python<'_>) -> PyResult<bool> {
        let err = self.stderr.get().exit(py);
        let out = self.stdout.get().exit(py);
        err.and(out)
    }
}
