//! `Redirect`: the native half of `redirect_stdout_fd`/`redirect_stderr_fd`. `__enter__` and
//! `__exit__` are each one native call, so a `KeyboardInterrupt` can only land before or after a
//! switch, never inside one; `__aenter__`/`__aexit__` keep that property (see `step.rs`). State is
//! per entry, not per instance, so one instance may be nested, reused and shared between threads
//! and asyncio tasks: an exit ends the newest entry that was entered in the same execution context
//! (`contextvars`: a thread, or an asyncio task's copy of it), else the instance's newest entry.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyTuple};

use super::captured::Captured;
use super::errors::{io_error, removed_file_error, to_pyerr};
use super::live::{Live, Mode};
use super::names;
use super::step::Step;
use super::streams::{activate, deactivate, flush_python};
use crate::crash::{self, Held};
use crate::error::Subject;
use crate::reader::{self, Channel};
use crate::stack::{self, Sink};
use crate::{fd, memfile};

// Target kinds, classified in Python (fdredirect/_targets.py) before anything is touched.
pub const KIND_CAPTURE: u8 = 0;
pub const KIND_FD: u8 = 1;
pub const KIND_PATH: u8 = 2;
pub const KIND_FILE: u8 = 3;
pub const KIND_DEVNULL: u8 = 4;
pub const KIND_STDOUT: u8 = 5;
pub const KIND_TEXT_STREAM: u8 = 6;
pub const KIND_BYTES_STREAM: u8 = 7;
pub const KIND_CALLABLE: u8 = 8;
pub const KIND_LOGGER: u8 = 9;

enum Plan {
    Capture,
    Fd(RawFd),
    Path(CString),
    /// A real OS-level file object: flushed at enter, then its fd is used.
    File,
    DevNull,
    Stdout,
    /// A Python object that receives output while the block runs, through a pipe and the reader.
    Live(Mode),
}

/// What one entry holds until its exit.
struct Active {
    id: u64,
    captured: Option<Py<Captured>>,
    live: Option<Arc<Live>>,
    /// A tee's channel (for a live target, the channel is the `Live`'s).
    tee: Option<Arc<Channel>>,
    /// A path target's file, checked at exit (removed meanwhile?).
    file: Option<OwnedFd>,
    previous_encoding: Option<String>,
}

#[pyclass(subclass, frozen, module = "fdredirect._native")]
pub struct Redirect {
    fd: RawFd,
    plan: Plan,
    target: Py<PyAny>,
    encoding: Option<String>,
    errors: String,
    tee: bool,
    /// Point `sys.stdout`/`sys.stderr` at the native writer inside the block. Off for the Jupyter
    /// extension, which keeps the kernel's streams and syncs them instead.
    swap_writer: bool,
    active: Mutex<Vec<Active>>,
}

/// What `__enter__` switched to, before the entry is recorded.
struct Switched {
    id: u64,
    captured: Option<Py<Captured>>,
    live: Option<Arc<Live>>,
    tee: Option<Arc<Channel>>,
    file: Option<OwnedFd>,
}

impl Switched {
    /// `__enter__` failed after the switch: switch back and stop serving the block's pipe, then
    /// hand back the error.
    fn undo(self, py: Python<'_>, fd: RawFd, err: PyErr) -> PyErr {
        undo_switch(py, fd, self.id);
        if let Some(live) = &self.live {
            let _ = live.end(py, None);
        }
        if let Some(channel) = &self.tee {
            end_tee(py, channel, None);
        }
        err
    }
}

/// The ids of the entries (of every instance) entered in the current execution context: a
/// `contextvars.ContextVar` holding a tuple. A thread id cannot tell asyncio tasks apart; each
/// task runs in its own copy of the context, so two tasks sharing one instance each exit their own
/// entry. An exit does not rewrite the tuple (one call less per block): ids of ended entries are
/// skipped when matching and dropped at the next enter, so the tuple stays as deep as the nesting.
struct EnteredVar {
    get: Py<PyAny>,
    set: Py<PyAny>,
}

static ENTERED: PyOnceLock<EnteredVar> = PyOnceLock::new();

/// At import (see `binding::make_once`).
pub fn make_once(py: Python<'_>) -> PyResult<()> {
    entered_var(py).map(|_| ())
}

fn entered_var(py: Python<'_>) -> PyResult<&EnteredVar> {
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
    fn here(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        self.get.bind(py).call0()?.extract()
    }

    fn set_here(&self, py: Python<'_>, ids: &[u64]) -> PyResult<()> {
        self.set.bind(py).call1((PyTuple::new(py, ids)?,))?;
        Ok(())
    }
}

/// `2>&1` while a logger block on stdout is open: fd 2 would share that block's pipe, so a logger
/// writing to stderr would feed on itself. The check (in Python, like the logger block's own at
/// its classification) raises `ValueError` before anything is touched.
fn refuse_merge_into_loggers(py: Python<'_>) -> PyResult<()> {
    let loggers = super::live::open_loggers(py, 1);
    if loggers.is_empty() {
        return Ok(());
    }
    let check = py
        .import("fdredirect._targets")?
        .getattr(names::REFUSE_MERGE_INTO_LOGGER.get(py))?;
    for logger in loggers {
        check.call1((logger,))?;
    }
    Ok(())
}

fn undo_switch(py: Python<'_>, fd: RawFd, id: u64) {
    let _ = py.detach(|| stack::exit(fd, id, false));
}

/// The channels of open tee blocks whose target is not live (a capture, a file), per fd, with the
/// fork generation they were made in: a synchronisation point drains them, so the reader has
/// forwarded every byte written so far. A forked child never touches its parent's (their lock
/// may have been held by the parent's reader at the fork).
static TEES: Mutex<Vec<(RawFd, u64, Arc<Channel>)>> = Mutex::new(Vec::new());

/// A synchronisation point for every block open on `fd`: tee destinations and live targets get
/// everything written so far (see `Redirect::sync`). Used by `FdWriter.flush()`.
pub fn sync_fd(py: Python<'_>, fd: RawFd) -> PyResult<()> {
    py.detach(crate::flush::flush_native);
    let generation = crate::fork::generation();
    let tees: Vec<Arc<Channel>> = super::lock(py, &TEES)
        .iter()
        .filter(|(f, made_in, _)| *f == fd && *made_in == generation)
        .map(|(_, _, c)| Arc::clone(c))
        .collect();
    for channel in &tees {
        py.detach(|| channel.drain());
    }
    super::live::sync_fd(py, fd)
}

/// With `tee`, also forward every byte to where the fd pointed before the switch.
fn tee_original(channel: &Channel, tee: bool, original: Option<&OwnedFd>) -> std::io::Result<()> {
    if let (true, Some(original)) = (tee, original) {
        channel.add_forward(fd::dup_above_stdio(original.as_raw_fd())?);
    }
    Ok(())
}

/// A tee block (or a piped capture) has ended: forward what the pipe holds, and stop serving it
/// once it is drained. Returns what a piped capture's pipe still held.
fn end_tee(py: Python<'_>, channel: &Arc<Channel>, late: Option<OwnedFd>) -> Vec<u8> {
    py.detach(|| reader::end(channel, late))
}

/// The first failure to write a byte of the block to its forward targets: the tee copy, or the
/// block's own target behind a tee (`/dev/full`, a full disk). Those bytes are lost, so exit
/// says so, naming the path or fd where it can.
fn forward_error(fd: RawFd, channel: &Channel, plan: &Plan) -> Option<PyErr> {
    let (err, original) = channel.take_forward_error()?;
    let subject = match plan {
        _ if original => Subject::Tee(fd),
        Plan::Path(path) => Subject::Path(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path.to_bytes()))),
        Plan::Fd(target) => Subject::Fd(*target),
        _ => Subject::Nothing,
    };
    Some(to_pyerr(crate::error::Error::os(err, subject)))
}

#[pymethods]
impl Redirect {
    #[new]
    #[pyo3(signature = (fd, kind, arg, target, encoding, errors, tee, level, *, swap_writer = true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        fd: RawFd,
        kind: u8,
        arg: &Bound<'_, PyAny>,
        target: Py<PyAny>,
        encoding: Option<String>,
        errors: String,
        tee: bool,
        level: i32,
        swap_writer: bool,
    ) -> PyResult<Self> {
        if fd != 1 && fd != 2 {
            return Err(PyValueError::new_err(format!("fd must be 1 or 2, not {fd}")));
        }
        let text = encoding.is_some();
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
            KIND_TEXT_STREAM => Plan::Live(Mode::Text { call: false }),
            KIND_BYTES_STREAM => Plan::Live(Mode::Bytes { call: false }),
            KIND_CALLABLE if text => Plan::Live(Mode::Text { call: true }),
            KIND_CALLABLE => Plan::Live(Mode::Bytes { call: true }),
            KIND_LOGGER => Plan::Live(Mode::Logger { level }),
            _ => return Err(PyValueError::new_err(format!("unknown target kind {kind}"))),
        };
        Ok(Redirect {
            fd,
            plan,
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
        Step::enter(slf.clone().unbind())
    }

    /// Exits at once (the call is the one native step); the awaitable only hands back the result.
    /// An exception landing between this call and the `await` finds the block already left.
    #[pyo3(signature = (*_exc_info))]
    fn __aexit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<Step> {
        let suppress = self.exit(py)?;
        Ok(Step::done(PyBool::new(py, suppress).to_owned().into_any().unbind()))
    }

    /// A synchronisation point: flush the native runtimes, then hand everything written to the
    /// fd so far to this redirect's live targets (in this thread, in order, after any delivery
    /// in progress) and to its tee destinations. A target's exception is raised here.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        if super::live::delivering() {
            return Ok(()); // a target writing to a synced stream: nothing to wait for
        }
        let (lives, tees): (Vec<Arc<Live>>, Vec<Arc<Channel>>) = {
            let entries = self.lock(py);
            (
                entries.iter().filter_map(|a| a.live.clone()).collect(),
                entries.iter().filter_map(|a| a.tee.clone()).collect(),
            )
        };
        // One GIL hand-off for all of it: this runs before every write of a synced stream.
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
    pub fn enter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if matches!(self.plan, Plan::Stdout) {
            refuse_merge_into_loggers(py)?;
        }
        // Made before the switch: only setting it can fail after.
        let var = entered_var(py)?;
        let mut here = var.here(py)?;
        if !here.is_empty() {
            stack::retain_active(&mut here); // never waits, so it may run holding the GIL
        }
        let file_fd;
        let sink = match &self.plan {
            Plan::Capture => Some(Sink::Capture),
            Plan::Fd(target) => Some(Sink::Fd(*target)),
            Plan::Path(path) => Some(Sink::Path(path)),
            Plan::File => {
                let file = self.target.bind(py);
                file.call_method0(names::FLUSH.get(py))?;
                file_fd = file.call_method0(names::FILENO.get(py))?.extract::<RawFd>()?;
                Some(Sink::Fd(file_fd))
            }
            Plan::DevNull => Some(Sink::DevNull),
            Plan::Stdout => Some(Sink::Follow(1)),
            Plan::Live(_) => None,
        };
        // An interrupt raised by a Python stream's flush: nothing is switched yet.
        flush_python(py)?;
        // A memory file cannot grow past RLIMIT_FSIZE: capture through a pipe (see `Captured`).
        let in_memory = matches!(self.plan, Plan::Capture) && fd::file_size_limited();
        let switched = match (&sink, &self.plan) {
            (Some(sink), _) if !self.tee && !in_memory => self.switch_direct(py, sink)?,
            (_, plan) => self.switch_to_pipe(py, sink.as_ref(), plan, in_memory)?,
        };
        let fd = self.fd;
        let id = switched.id;
        let previous_encoding = match self.swap_writer.then(|| activate(py, fd, self.encoding.as_deref())) {
            None => None,
            Some(Ok(previous)) => previous,
            Some(Err(err)) => return Err(switched.undo(py, fd, err)),
        };
        here.push(id);
        if let Err(err) = var.set_here(py, &here) {
            if self.swap_writer {
                deactivate(py, fd, previous_encoding);
            }
            return Err(switched.undo(py, fd, err));
        }
        let returned = match &switched.captured {
            Some(captured) => captured.clone_ref(py).into_any(),
            None => self.target.clone_ref(py),
        };
        let Switched {
            captured,
            live,
            tee,
            file,
            ..
        } = switched;
        if let Some(channel) = &tee {
            super::lock(py, &TEES).push((fd, crate::fork::generation(), Arc::clone(channel)));
        }
        self.lock(py).push(Active {
            id,
            captured,
            live,
            tee,
            file,
            previous_encoding,
        });
        Ok(returned)
    }

    /// End the newest entry entered in this execution context; when there is none (a generator
    /// entered in one thread and resumed or collected in another), the instance's newest entry:
    /// an exit always ends a block, so the fd and `sys.stdout` always come back.
    pub fn exit(&self, py: Python<'_>) -> PyResult<bool> {
        let here = entered_var(py)?.here(py)?;
        let active = {
            let mut entries = self.lock(py);
            let mine = here
                .iter()
                .rev()
                .find_map(|id| entries.iter().rposition(|a| a.id == *id));
            let Some(index) = mine.or_else(|| entries.len().checked_sub(1)) else {
                return Err(PyRuntimeError::new_err("__exit__ without a matching __enter__"));
            };
            entries.remove(index)
        };
        if let Some(channel) = &active.tee {
            super::lock(py, &TEES).retain(|(_, _, c)| !Arc::ptr_eq(c, channel));
        }
        // An interrupt raised by a Python stream's flush is raised once everything is restored.
        let interrupted = flush_python(py).err();
        let fd = self.fd;
        let piped = active.live.is_some() || active.tee.is_some();
        let exited = py.detach(|| stack::exit(fd, active.id, piped));
        if self.swap_writer {
            deactivate(py, fd, active.previous_encoding);
        }
        // Whatever the restore reported, the sinks are finished: nothing captured is left behind.
        let (inherited, restored, orphaned_followers, flush_error, exit_error) = match exited {
            Ok(e) => (e.inherited, e.restored, e.orphaned_followers, e.flush_error, None),
            Err(err) => (false, None, false, None, Some(to_pyerr(err))),
        };
        let mut delivery_error = None;
        let mut rest = Vec::new();
        if let Some(live) = &active.live {
            if inherited {
                live.forget(py); // a forked child leaving its parent's block: the sinks are the parent's
            } else {
                delivery_error = live.end(py, restored).err();
                delivery_error = delivery_error.or_else(|| forward_error(fd, live.channel(), &self.plan));
            }
        } else if let (Some(channel), false) = (&active.tee, inherited) {
            // Late output of a capture is dropped, piped or not; a tee's goes to the original.
            rest = end_tee(py, channel, restored.filter(|_| self.tee));
            delivery_error = forward_error(fd, channel, &self.plan);
        }
        let finish_error = match &active.captured {
            Some(captured) => captured.get().finish(py, inherited, &rest).err(),
            None => None,
        };
        let sink_error = if inherited {
            None
        } else {
            self.sink_error(flush_error, active.file.as_ref())
        };
        let first = interrupted
            .or(exit_error)
            .or(delivery_error)
            .or(finish_error)
            .or(sink_error);
        if let Some(err) = first {
            return Err(err);
        }
        if orphaned_followers {
            return Err(PyRuntimeError::new_err(
                "the stdout redirect ended while a redirect_stderr_fd(STDOUT) entered inside it was still open; \
                 stdout was restored and stderr now follows it. End the stderr block first",
            ));
        }
        Ok(false)
    }

    fn lock(&self, py: Python<'_>) -> std::sync::MutexGuard<'_, Vec<Active>> {
        super::lock(py, &self.active)
    }

    /// What went wrong with the sink that the block's writers could not have seen: libc's buffer
    /// failed to reach it at exit (a full disk), or the path was removed while the block wrote
    /// to it (its output went to a file nobody can open any more).
    fn sink_error(&self, flush_error: Option<std::io::Error>, file: Option<&OwnedFd>) -> Option<PyErr> {
        let path = match &self.plan {
            Plan::Path(path) => Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path.as_bytes()))),
            _ => None,
        };
        if let Some(err) = flush_error {
            let subject = path.map_or(Subject::Nothing, Subject::Path);
            return Some(to_pyerr(crate::error::Error::os(err, subject)));
        }
        let removed = file.is_some_and(|file| fd::link_count(file.as_raw_fd()).is_ok_and(|links| links == 0));
        match (removed, path) {
            (true, Some(path)) => Some(removed_file_error(path)),
            _ => None,
        }
    }

    fn new_captured(&self, py: Python<'_>, memfd: OwnedFd) -> PyResult<Py<Captured>> {
        Py::new(py, Captured::new(memfd, self.encoding.clone(), self.errors.clone()))
    }

    /// `dup2` the sink straight onto the fd: no thread, no copy.
    fn switch_direct(&self, py: Python<'_>, sink: &Sink<'_>) -> PyResult<Switched> {
        let fd = self.fd;
        let entered = py.detach(|| stack::enter(fd, sink, false)).map_err(to_pyerr)?;
        let id = entered.id;
        let (memfd, file) = match sink {
            Sink::Path(_) => (None, entered.capture),
            _ => (entered.capture, None),
        };
        let memfd_number = memfd.as_ref().map(AsRawFd::as_raw_fd);
        let captured = match memfd.map(|memfd| self.new_captured(py, memfd)).transpose() {
            Ok(captured) => captured,
            Err(err) => {
                undo_switch(py, fd, id);
                return Err(err);
            }
        };
        // Once `Captured` owns the memory file: it is closed after the block's exit (see `Held`).
        if memfd_number.is_some() {
            let held = Held {
                memfd: memfd_number,
                pipe: None,
                channel: None,
                show_pending: false,
            };
            crash::attach(id, &held);
        }
        Ok(Switched {
            id,
            captured,
            live: None,
            tee: None,
            file,
        })
    }

    /// Point the fd at a pipe the reader drains: for live targets, and for `tee` with any target
    /// (the reader writes each byte to the target's fd and to the original destination).
    /// With `in_memory` (a capture only), the reader keeps the bytes in memory instead of writing
    /// them to a memory file.
    fn switch_to_pipe(
        &self,
        py: Python<'_>,
        sink: Option<&Sink<'_>>,
        plan: &Plan,
        in_memory: bool,
    ) -> PyResult<Switched> {
        let fd = self.fd;
        let (read, write) = reader::pipe().map_err(io_error)?;
        let read_end = read.as_raw_fd();
        let mut forward = Vec::new();
        let mut memfd = None;
        match sink {
            Some(Sink::Capture) if in_memory => {}
            Some(Sink::Capture) => {
                let file = memfile::create().map_err(io_error)?;
                forward.push(fd::dup_above_stdio(file.as_raw_fd()).map_err(io_error)?);
                memfd = Some(file);
            }
            Some(sink) => forward.push(stack::open_target(sink).map_err(to_pyerr)?),
            None => {}
        }
        // Everything that needs the GIL is made before the switch.
        let (live, channel) = if let Plan::Live(mode) = plan {
            let target = self.target.clone_ref(py);
            let (encoding, errors) = (self.encoding.as_deref(), self.errors.as_str());
            let live = Live::new(py, fd, target, *mode, encoding, errors, read, forward)?;
            let channel = Arc::clone(live.channel());
            (Some(live), channel)
        } else {
            (None, Arc::new(Channel::new(read, forward, in_memory, Box::new(|| {}))))
        };
        // Registered before the switch, parked: a block that another thread switches right
        // after this one must find this channel (its forward targets may be this pipe). Served
        // right after the switch, without the GIL: once the fd points at the pipe, another
        // thread holding the GIL may write more than a pipe holds, and only the reader can
        // drain it until this thread has the GIL back.
        let tee = self.tee;
        let write_end = write.as_raw_fd();
        let entered = py
            .detach(|| {
                channel.park();
                reader::register(Arc::clone(&channel))?;
                let entered = stack::enter(fd, &Sink::Fd(write_end), true).and_then(|entered| {
                    // On a crash, what the pipe holds is shown, and what awaits delivery (unless
                    // a tee already copied it to the original destination).
                    let undelivered = (live.is_some() || in_memory) && !tee;
                    let held = Held {
                        memfd: None,
                        pipe: Some(read_end),
                        channel: Some(&channel),
                        show_pending: undelivered,
                    };
                    crash::attach(entered.id, &held);
                    match tee_original(&channel, tee, entered.original.as_ref()) {
                        Ok(()) => Ok(entered),
                        Err(err) => {
                            let _ = stack::exit(fd, entered.id, false);
                            Err(crate::error::Error::from(err))
                        }
                    }
                });
                match &entered {
                    Ok(_) => reader::unpark(&channel),
                    Err(_) => reader::unregister(&channel),
                }
                entered
            })
            .map_err(to_pyerr)?;
        drop(write); // fd itself is now the only write end in this process
        let id = entered.id;
        let captured = if in_memory {
            let piped = Captured::piped(Arc::clone(&channel), self.encoding.clone(), self.errors.clone());
            Py::new(py, piped).map(Some)
        } else {
            memfd.map(|memfd| self.new_captured(py, memfd)).transpose()
        };
        let captured = match captured {
            Ok(captured) => captured,
            Err(err) => {
                let switched = Switched {
                    id,
                    captured: None,
                    live: live.clone(),
                    tee: live.is_none().then(|| Arc::clone(&channel)),
                    file: None,
                };
                return Err(switched.undo(py, fd, err));
            }
        };
        if let Some(live) = &live {
            live.open(py, id, entered.original);
        }
        Ok(Switched {
            id,
            captured,
            tee: live.is_none().then_some(channel),
            live,
            file: None,
        })
    }
}
