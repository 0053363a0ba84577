//! Sinks: where a redirected fd is pointed, and opening them. Every sink the library opens is
//! close-on-exec and numbered above the standard streams.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::error::Error;
use crate::{fd, memfile};

/// Where a redirected fd should point.
#[derive(Debug)]
pub enum Sink<'a> {
    /// A fresh memory file, handed back to the caller to read.
    Capture,
    /// An fd the caller keeps owning (an `int` target, a file object's fd).
    Fd(RawFd),
    /// A file, created and truncated, written with `O_APPEND`.
    Path(&'a CStr),
    DevNull,
    /// Share an open file description of `fd` (`2>&1`): with `entry: None`, whatever `fd` points
    /// at now; with `Some(id)`, the sink of `fd`'s entry `id`, even when another thread's entry
    /// went on top of it meanwhile (the stderr of a `redirect_fds` pair follows its own stdout
    /// block). Either way the follower keeps following when the followed entry ends first: it
    /// then shares what that entry had saved.
    Follow {
        fd: RawFd,
        entry: Option<u64>,
    },
}

impl Sink<'_> {
    /// A `Follow` sink follows `fd`'s entry `entry` (when given) rather than its newest one.
    pub fn following(self, entry: Option<u64>) -> Self {
        match (self, entry) {
            (Sink::Follow { fd, .. }, Some(entry)) => Sink::Follow { fd, entry: Some(entry) },
            (sink, _) => sink,
        }
    }
}

/// Open the sink: the fd to `dup2` from, and the fd to keep for the caller (capture only).
pub(super) fn open_sink(fd: RawFd, sink: &Sink<'_>) -> Result<(Option<OwnedFd>, RawFd), Error> {
    let opened = match sink {
        Sink::Fd(target) | Sink::Follow { fd: target, .. } => {
            let target = *target;
            let mode = fd::access_mode(target).map_err(Error::about_fd(target))?;
            if mode == libc::O_RDONLY {
                return Err(Error::ReadOnly(target));
            }
            return Ok((None, target));
        }
        Sink::Capture => memfile::create()?,
        Sink::Path(path) => fd::open_for_append(path).map_err(Error::about_path(path))?,
        Sink::DevNull => fd::open_devnull()?,
    };
    if opened.as_raw_fd() == fd {
        // `fd` was closed and the open reused its number: it already points at the sink.
        // Keep it there, and hold a second copy so that dropping ours leaves `fd` alone.
        let copy = fd::dup_above_stdio(fd)?;
        let _already_in_place = std::os::fd::IntoRawFd::into_raw_fd(opened);
        return Ok((Some(copy), fd));
    }
    let raw = opened.as_raw_fd();
    Ok((Some(opened), raw))
}

/// An fd for `sink` that the caller owns, for a reader to write to (tee): the memory file, the
/// opened path or /dev/null, or a copy of the target fd.
pub fn open_target(sink: &Sink<'_>) -> Result<OwnedFd, Error> {
    match open_sink(-1, sink)? {
        (Some(opened), _) => Ok(opened),
        (None, target) => fd::dup_above_stdio(target).map_err(Error::about_fd(target)),
    }
}
