//! `Redirect`: the native half of `redirect_stdout_fd`/`redirect_stderr_fd`. `__enter__` and
//! `__exit__` are each one native call, so a `KeyboardInterrupt` can only land before or after a
//! switch, never inside one; `__aenter__`/`__aexit__` keep that property (see `step.rs`). State is
//! per entry, not per instance, so one instance may be nested, reused and shared between threads
//! and asyncio tasks (see `entry.rs`).

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::entry::Active;
use super::live::Live;
use super::plan::Plan;
use super::step::Step;
use crate::reader::Channel;

pub use super::tees::sync_fd;

#[pyclass(subclass, frozen, module = "fdredirect._native")]
pub struct Redirect {
    pub(super) fd: RawFd,
    pub(super) plan: Plan,
    pub(super) target: Py<PyAny>,
    pub(super) encoding: Option<String>,
    pub(super) errors: String,
    pub(super) tee: bool,
    /// Point `sys.stdout`/`sys.stderr` at the native writer inside the block. Off for the Jupyter
    /// extension, which keeps the kernel's streams and syncs them instead.
    pub(super) swap_writer: bool,
    active: Mutex<Vec<Active>>,
}

#[pymethods]
impl Redirect {
    /// `plan` is what `fdredirect._targets.classify` made of the target: `(kind, arg)`.
    #[new]
    #[pyo3(signature = (fd, plan, target, encoding, errors, tee, *, swap_writer = true))]
    fn new(
        fd: RawFd,
        plan: &Bound<'_, PyAny>,
        target: Py<PyAny>,
        encoding: Option<String>,
        errors: String,
        tee: bool,
        swap_writer: bool,
    ) -> PyResult<Self> {
        if fd != 1 && fd != 2 {
            return Err(PyValueError::new_err(format!("fd must be 1 or 2, not {fd}")));
        }
        Ok(Redirect {
            fd,
            plan: Plan::new(fd, plan, encoding.is_some())?,
            target,
            encoding,
            errors,
            tee,
            swap_writer,
            active: Mutex::new(Vec::new()),
        })
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.enter(py)
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.exit(py)
    }

    /// Does nothing until awaited: the enter happens in the awaitable's first step, one native
    /// call, so an exception landing before it leaves nothing behind.
    fn __aenter__(slf: &Bound<'_, Self>) -> Step {
        Step::enter(slf.clone().unbind().into_any(), Self::enter_any)
    }

    /// Exits at once (the call is the one native step); the awaitable only hands back the result.
    /// An exception landing between this call and the `await` finds the block already left.
    #[pyo3(signature = (*_exc_info))]
    fn __aexit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<Step> {
        Ok(Step::exited(py, self.exit(py)?))
    }

    /// A synchronisation point: flush the native runtimes, then hand everything written to the
    /// fd so far to this redirect's live targets (in this thread, in order, after any delivery
    /// in progress) and to its tee destinations. A target's exception is raised here.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        Self::sync_each(py, &[self])
    }

    /// `sync` of each redirect given, in order, for the price of one: the Jupyter extension syncs
    /// both fds before every write of the kernel's streams.
    #[staticmethod]
    #[pyo3(signature = (*redirects))]
    fn sync_all(py: Python<'_>, redirects: &Bound<'_, PyTuple>) -> PyResult<()> {
        let redirects: Vec<Bound<'_, Redirect>> = redirects
            .iter()
            .map(|redirect| redirect.cast_into::<Redirect>().map_err(PyErr::from))
            .collect::<PyResult<_>>()?;
        let redirects: Vec<&Redirect> = redirects.iter().map(Bound::get).collect();
        Self::sync_each(py, &redirects)
    }

    /// The fd this redirect switches (1 or 2).
    #[getter]
    fn fd(&self) -> RawFd {
        self.fd
    }

    /// The target as given (None for capture).
    #[getter]
    fn target(&self, py: Python<'_>) -> Py<PyAny> {
        self.target.clone_ref(py)
    }
}

impl Redirect {
    fn sync_each(py: Python<'_>, redirects: &[&Redirect]) -> PyResult<()> {
        if super::live::delivering() {
            return Ok(()); // a target writing to a synced stream: nothing to wait for
        }
        let mut lives: Vec<Arc<Live>> = Vec::new();
        let mut tees: Vec<Arc<Channel>> = Vec::new();
        for redirect in redirects {
            let entries = redirect.lock(py);
            lives.extend(entries.iter().filter_map(|a| a.live.clone()));
            tees.extend(entries.iter().filter_map(|a| a.tee.clone()));
        }
        // Usually nothing is pending: then no GIL hand-off and one syscall for all the pipes
        // (this runs before every write of a synced stream). Native buffers first, then the
        // pipes: bytes flushed from a buffer are in a pipe before it is looked at.
        if crate::flush::native_idle()
            && {
                let channels: Vec<&Channel> = tees
                    .iter()
                    .map(|channel| &**channel)
                    .chain(
                        lives
                            .iter()
                            .filter(|live| !live.inherited())
                            .map(|live| &**live.channel()),
                    )
                    .collect();
                Channel::all_idle(&channels)
            }
            && lives.iter().all(|live| live.idle(py))
        {
            for live in &lives {
                live.flush_target(py)?;
            }
            return Ok(());
        }
        // One GIL hand-off for all of it.
        py.detach(|| {
            crate::flush::flush_native();
            for channel in tees.iter().chain(lives.iter().map(|live| live.channel())) {
                channel.drain(); // a tee's reader forwards as it drains
            }
        });
        for live in &lives {
            live.sync(py, true, true)?;
        }
        Ok(())
    }

    pub(super) fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Vec<Active>> {
        super::lock(py, &self.active)
    }

    /// `Step`'s way in: enter the redirect `slf` is.
    fn enter_any(py: Python<'_>, slf: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        slf.cast::<Redirect>()?.get().enter(py)
    }
}
