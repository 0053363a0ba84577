//! Refusing a switch that would send a logger block's records back into a logger block: its own
//! (`redirect_stderr_fd(1)` inside `redirect_stdout_fd(logger)` whose logger writes to stderr), or
//! one that writes back into it (a stdout logger writing to stderr, with stderr on a logger that
//! writes to stdout). Either way one line becomes an endless stream of records.
//!
//! Python refuses what it can tell from the targets alone (`_targets.refuse_logging_loop`, and
//! `redirect_fds`'s pair); only here, at enter, is it known what each fd will point at: a target
//! naming an fd, a file or a path is the pipe of a logger block when its open file is that pipe
//! (compared by identity, whatever name it was given). Which handlers write where is decided in
//! Python (`_targets.refuse_logger_loop`), which raises `ValueError` before anything is touched.

use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use pyo3::prelude::*;

use super::live::{logger_open, logger_reading, Mode};
use super::names;
use super::plan::Plan;
use crate::fd;
use crate::stack::Sink;

/// Refuse the switch of `fd` to `sink` (`None`: the block's own pipe, for a live `plan`) if a
/// logger would then receive its own records, directly or through the other fd's logger.
pub fn refuse_logger_loop(
    py: Python<'_>,
    fd: RawFd,
    plan: &Plan,
    target: &Bound<'_, PyAny>,
    sink: Option<&Sink<'_>>,
) -> PyResult<()> {
    let is_logger = matches!(plan, Plan::Live(Mode::Logger { .. }, _));
    if !is_logger && !logger_open() {
        return Ok(()); // the common case: no syscall per enter
    }
    let other = if fd == 1 { 2 } else { 1 };
    let here = if is_logger {
        // The block's pipe is made by the switch: no other block reads it yet.
        Some((fd, target.clone().unbind()))
    } else {
        sink.and_then(identity).and_then(|pipe| logger_reading(py, pipe))
    };
    let there = fd::identity(other).and_then(|pipe| logger_reading(py, pipe));
    if here.is_none() && there.is_none() {
        return Ok(());
    }
    let (out, err) = if fd == 1 { (here, there) } else { (there, here) };
    let stream = if fd == 1 { &names::STDOUT } else { &names::STDERR };
    py.import("fdredirect._targets")?
        .getattr(names::REFUSE_LOGGER_LOOP.get(py))?
        .call1((stream.get(py), target, out, err))?;
    Ok(())
}

/// What the fd will point at once switched to `sink`, when that is an open file that exists
/// already (the followed fd's, the target fd's, the file a path names now).
fn identity(sink: &Sink<'_>) -> Option<(u64, u64)> {
    match sink {
        // A pair's merged stderr follows its own stdout block, which fd 1 points at here.
        Sink::Fd(target) | Sink::Follow { fd: target, .. } => fd::identity(*target),
        // stat follows /dev/stdout and /proc/self/fd/1 to the open file itself; nothing is opened.
        Sink::Path(path) => {
            let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
            std::fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
        }
        Sink::Capture | Sink::DevNull => None,
    }
}
