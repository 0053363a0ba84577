//! One entry of a `Redirect`, from `__enter__` to `__exit__`: the switch (see `switch.rs`), the
//! native writer, and at exit the restore and the finishing of whatever received the output.
//! An exit ends the newest entry that was entered in the same execution context (`contextvars`:
//! a thread, or an asyncio task's copy of it; see `entered.rs`), else the instance's newest entry.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::captured::Captured;
use super::entered::entered_var;
use super::errors::{removed_file_error, to_pyerr};
use super::live::Live;
use super::plan::Plan;
use super::redirect::Redirect;
use super::streams::{activate, deactivate, flush_python};
use super::tees;
use crate::error::{Error, Subject};
use crate::fd;
use crate::reader::Channel;
use crate::stack;

/// What one entry holds until its exit.
pub struct Active {
    id: u64,
    captured: Option<Py<Captured>>,
    pub live: Option<Arc<Live>>,
    /// A tee's channel (for a live target, the channel is the `Live`'s).
    pub tee: Option<Arc<Channel>>,
    /// A path target's file, checked at exit (removed meanwhile?).
    file: Option<OwnedFd>,
    previous_encoding: Option<String>,
}

/// What `__enter__` switched to, before the entry is recorded.
pub struct Switched {
    pub id: u64,
    pub captured: Option<Py<Captured>>,
    pub live: Option<Arc<Live>>,
    pub tee: Option<Arc<Channel>>,
    pub file: Option<OwnedFd>,
}

impl Switched {
    /// `__enter__` failed after the switch: switch back and stop serving the block's pipe, then
    /// hand back the error.
    pub fn undo(self, py: Python<'_>, fd: RawFd, err: PyErr) -> PyErr {
        undo_switch(py, fd, self.id);
        if let Some(live) = &self.live {
            let _ = live.deliver_rest(py, None);
        }
        if let Some(channel) = &self.tee {
            tees::end(py, channel, None);
        }
        err
    }
}

pub fn undo_switch(py: Python<'_>, fd: RawFd, id: u64) {
    let _ = py.detach(|| stack::exit(fd, id, false));
}

/// The first failure to write a byte of the block to its forward targets: the tee copy, or the
/// block's own target behind a tee (`/dev/full`, a full disk). Those bytes are lost, so exit
/// says so, naming the path or fd where it can.
fn forward_error(fd: RawFd, channel: &Channel, plan: &Plan) -> Option<PyErr> {
    let (err, original) = channel.take_forward_error()?;
    let subject = if original { Subject::Tee(fd) } else { plan.subject() };
    Some(to_pyerr(Error::os(err, subject)))
}

impl Redirect {
    pub fn enter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.enter_following(py, None).map(|(returned, _)| returned)
    }

    /// `enter`, also handing back the entry's id; with `follows`, a `STDOUT` target follows fd 1's
    /// entry of that id (its pair's, in `redirect_fds`) rather than whatever fd 1 points at now.
    pub fn enter_following(&self, py: Python<'_>, follows: Option<u64>) -> PyResult<(Py<PyAny>, u64)> {
        // Made before the switch: only setting it can fail after.
        let var = entered_var(py)?;
        let mut here = var.here_open(py)?;
        let mut held = None;
        let sink = self.plan.sink(py, self.fd, self.target.bind(py), &mut held)?;
        let sink = sink.map(|sink| sink.following(follows));
        super::loops::refuse_logger_loop(py, self.fd, &self.plan, self.target.bind(py), sink.as_ref())?;
        // An interrupt raised by a Python stream's flush: nothing is switched yet.
        flush_python(py)?;
        // A memory file cannot grow past RLIMIT_FSIZE: capture through a pipe (see `Captured`).
        let in_memory = matches!(self.plan, Plan::Capture) && fd::file_size_limited();
        let switched = match &sink {
            Some(sink) if !self.tee && !in_memory => self.switch_direct(py, sink)?,
            _ => self.switch_to_pipe(py, sink.as_ref(), in_memory)?,
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
            tees::register(py, fd, channel);
        }
        self.lock(py).push(Active {
            id,
            captured,
            live,
            tee,
            file,
            previous_encoding,
        });
        Ok((returned, id))
    }

    /// End the newest entry entered in this execution context; when there is none (a generator
    /// entered in one thread and resumed or collected in another), the instance's newest entry:
    /// an exit always ends a block, so the fd and `sys.stdout` always come back.
    pub fn exit(&self, py: Python<'_>) -> PyResult<bool> {
        // An instance with one open entry ends that one whichever context entered it: the
        // context variable is read only when there is a choice (one Python call less per block).
        let only = {
            let mut entries = self.lock(py);
            (entries.len() == 1).then(|| entries.remove(0))
        };
        let active = match only {
            Some(active) => active,
            None => self.take_newest_here(py)?,
        };
        if let Some(channel) = &active.tee {
            tees::unregister(py, channel);
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
                delivery_error = live.deliver_rest(py, restored).err();
                delivery_error = delivery_error.or_else(|| forward_error(fd, live.channel(), &self.plan));
            }
        } else if let (Some(channel), false) = (&active.tee, inherited) {
            // Late output of a capture is dropped, piped or not; a tee's goes to the original.
            rest = tees::end(py, channel, restored.filter(|_| self.tee));
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

    /// Take the newest entry entered in the current context, else the instance's newest.
    fn take_newest_here(&self, py: Python<'_>) -> PyResult<Active> {
        let here = entered_var(py)?.here(py)?;
        let mut entries = self.lock(py);
        let mine = here
            .iter()
            .rev()
            .find_map(|id| entries.iter().rposition(|a| a.id == *id));
        let Some(index) = mine.or_else(|| entries.len().checked_sub(1)) else {
            return Err(PyRuntimeError::new_err("__exit__ without a matching __enter__"));
        };
        Ok(entries.remove(index))
    }

    /// What went wrong with the sink that the block's writers could not have seen: libc's buffer
    /// failed to reach it at exit (a full disk), or the path was removed while the block wrote
    /// to it (its output went to a file nobody can open any more).
    fn sink_error(&self, flush_error: Option<std::io::Error>, file: Option<&OwnedFd>) -> Option<PyErr> {
        let path = self.plan.path();
        if let Some(err) = flush_error {
            let subject = path.map_or(Subject::Nothing, Subject::Path);
            return Some(to_pyerr(Error::os(err, subject)));
        }
        let removed = file.is_some_and(|file| fd::link_count(file.as_raw_fd()).is_ok_and(|links| links == 0));
        match (removed, path) {
            (true, Some(path)) => Some(removed_file_error(path)),
            _ => None,
        }
    }
}
