//! Tee blocks (and piped captures): their channels, registered per fd so that a synchronisation
//! point can drain them, and their start and end.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use crate::fd;
use crate::reader::{self, Channel};

/// The channels of open tee blocks whose target is not live (a capture, a file), per fd, with the
/// fork generation they were made in: a synchronisation point drains them, so the reader has
/// forwarded every byte written so far. A forked child never touches its parent's (their lock
/// may have been held by the parent's reader at the fork).
static TEES: Mutex<Vec<(RawFd, u64, Arc<Channel>)>> = Mutex::new(Vec::new());

pub fn register(py: Python<'_>, fd: RawFd, channel: &Arc<Channel>) {
    super::lock(py, &TEES).push((fd, crate::fork::generation(), Arc::clone(channel)));
}

pub fn unregister(py: Python<'_>, channel: &Arc<Channel>) {
    super::lock(py, &TEES).retain(|(_, _, c)| !Arc::ptr_eq(c, channel));
}

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
pub fn tee_original(channel: &Channel, tee: bool, original: Option<&OwnedFd>) -> std::io::Result<()> {
    if let (true, Some(original)) = (tee, original) {
        channel.add_forward(fd::dup_above_stdio(original.as_raw_fd())?);
    }
    Ok(())
}

/// A tee block (or a piped capture) has ended: forward what the pipe holds, and stop serving it
/// once it is drained. Returns what a piped capture's pipe still held.
pub fn end(py: Python<'_>, channel: &Arc<Channel>, late: Option<OwnedFd>) -> Vec<u8> {
    py.detach(|| reader::finish_block(channel, late).bytes)
}
