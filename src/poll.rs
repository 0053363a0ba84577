//! One turn of a poll loop over the library's pipes. The reader and the delivery thread both
//! sleep in `poll` on their wake-up fds and on the pipes of some channels, then drain the pipes
//! that are ready; they differ only in what a busy channel and EOF mean to them (`Poller`).

use std::os::fd::RawFd;
use std::sync::Arc;

use crate::channel::Channel;
use crate::{fd, reader};

/// Who polls: also who polls the live pipes now (see `crate::handover`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Poller {
    /// The reader thread: never waits for a channel another thread is draining (it leaves the
    /// pipe to that thread and polls again).
    Reader,
    /// The delivery thread, polling the pipes of the open live blocks while it is idle.
    Delivery,
}

/// Wait until one of `wakers` or one of the pipes `pick` chooses among `channels` is readable
/// (or hung up), or `timeout_ms` has passed (-1: no timeout); empty the wakers that fired and drain the ready pipes. A pipe at EOF is no
/// longer served. Returns the channels that got bytes for delivery, with how many.
pub fn turn(
    poller: Poller,
    wakers: &[RawFd],
    timeout_ms: libc::c_int,
    channels: &[Arc<Channel>],
    pick: impl Fn(&Channel) -> Option<RawFd>,
) -> Vec<(Arc<Channel>, usize)> {
    let mut fds = wakers.to_vec();
    let mut served = Vec::with_capacity(channels.len());
    for channel in channels {
        if let Some(read) = pick(channel) {
            fds.push(read);
            served.push(channel);
        }
    }
    let ready = fd::wait_readable_for(&fds, timeout_ms);
    let (wakers_ready, pipes_ready) = ready.split_at(wakers.len());
    for (&waker, _) in wakers.iter().zip(wakers_ready).filter(|(_, &ready)| ready) {
        fd::discard_available(waker);
    }
    let mut filled = Vec::new();
    for (channel, _) in served.into_iter().zip(pipes_ready).filter(|(_, &ready)| ready) {
        let drained = match poller {
            Poller::Reader => channel.try_drain(),
            Poller::Delivery => Some(channel.drain()),
        };
        let Some((added, eof)) = drained else {
            continue; // another thread is draining it
        };
        if eof {
            match poller {
                Poller::Reader => reader::forget(channel),
                // The reader may be polling it: let it build its poll set anew.
                Poller::Delivery => reader::unregister(channel),
            }
        }
        if added > 0 {
            filled.push((Arc::clone(channel), added));
        }
    }
    filled
}
