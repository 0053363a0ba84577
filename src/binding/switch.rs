//! How an entry switches its fd: straight to its sink (`dup2`, no thread, no copy), or to a
//! pipe the reader serves (live targets, `tee`, captures that cannot use a memory file).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use pyo3::prelude::*;

use super::captured::Captured;
use super::entry::{undo_switch, Switched};
use super::errors::{io_error, to_pyerr};
use super::live::Live;
use super::plan::Plan;
use super::redirect::Redirect;
use super::tees;
use crate::crash::{self, Held};
use crate::reader::{self, Channel};
use crate::stack::{self, Sink};
use crate::{fd, memfile};

impl Redirect {
    fn new_captured(&self, py: Python<'_>, memfd: OwnedFd) -> PyResult<Py<Captured>> {
        Py::new(py, Captured::new(memfd, self.encoding.clone(), self.errors.clone()))
    }

    /// `dup2` the sink straight onto the fd: no thread, no copy.
    pub(super) fn switch_direct(&self, py: Python<'_>, sink: &Sink<'_>) -> PyResult<Switched> {
        let fd = self.fd;
        let entered = py.detach(|| stack::enter(fd, sink, false)).map_err(to_pyerr)?;
        let id = entered.id;
        let (memfd, file) = match sink {
            // A path that opens a file with no name already (`/dev/stderr` onto an unlinked
            // temporary file, as pytest's fd capture uses) cannot be removed during the block.
            Sink::Path(_) => (
                None,
                entered
                    .capture
                    .filter(|file| fd::link_count(file.as_raw_fd()).is_ok_and(|links| links > 0)),
            ),
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
    pub(super) fn switch_to_pipe(
        &self,
        py: Python<'_>,
        sink: Option<&Sink<'_>>,
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
        let (live, channel) = if let Plan::Live(mode, shape) = &self.plan {
            let target = self.target.clone_ref(py);
            let (encoding, errors) = (self.encoding.as_deref(), self.errors.as_str());
            let live = Live::new(py, fd, target, (*mode, *shape), encoding, errors, read, forward)?;
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
                    match tees::tee_original(&channel, tee, entered.original.as_ref()) {
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
