//! The reader: one long-lived thread that drains the pipe of every live block, never touching
//! the GIL, so a writer that holds the GIL can write any amount without blocking on a full pipe.
//! While the delivery thread is idle it polls the live pipes itself (for latency), and the reader
//! stands back (`crate::handover`). Each block's pipe and the routing of its bytes is a `Channel`
//! (`crate::channel`); this module keeps the registry of the channels the reader serves.

use crate::locks;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::channel::{Channel, Forward};
use crate::fd;
use crate::handover::Handover;
use crate::platform::Backstop;
use crate::poll::{self, Poller};
use crate::worker::Worker;

/// The registry of channels the reader thread serves.
pub(crate) struct Registry {
    /// The reader thread of this fork generation.
    pub(crate) thread: Worker,
    pub(crate) handover: Handover,
    channels: Vec<Arc<Channel>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    thread: Worker::new(),
    handover: Handover::new(),
    channels: Vec::new(),
});

pub(crate) fn lock_registry() -> MutexGuard<'static, Registry> {
    locks::lock(&REGISTRY)
}

/// Serve `channel` from now on, starting the reader thread on first use.
pub fn register(channel: Arc<Channel>) -> io::Result<()> {
    let mut guard = lock_registry();
    let registry = &mut *guard;
    registry.thread.ensure("fdredirect-reader", || {
        // First use, or a forked child: the parent's thread does not exist here, and its
        // channels are the parent's (never dropped here: their locks may be held).
        std::mem::forget(std::mem::take(&mut registry.channels));
        let timer = registry.handover.restart()?;
        Ok(move |wake: &OwnedFd| run(wake, &timer))
    })?;
    registry.channels.push(channel);
    registry.thread.wake();
    Ok(())
}

/// Start serving a parked channel (see `Channel::park`).
pub fn unpark(channel: &Channel) {
    channel.unpark();
    lock_registry().thread.wake();
}

/// Stop serving `channel` (its pipe reached EOF, or its block never began).
pub fn unregister(channel: &Arc<Channel>) {
    let mut registry = lock_registry();
    registry.channels.retain(|c| !Arc::ptr_eq(c, channel));
    registry.thread.wake();
}

/// `unregister` by the reader itself: it builds its poll set anew anyway.
pub(crate) fn forget(channel: &Arc<Channel>) {
    lock_registry().channels.retain(|c| !Arc::ptr_eq(c, channel));
}

/// Where bytes sent to `fd` should go: when `fd` is the write end of a registered channel's
/// pipe, that channel itself, so that no thread of the library ever blocks writing into a pipe
/// that only the library drains (see `crate::channel`).
pub fn resolve(fd: OwnedFd) -> Forward {
    let Some(pipe) = fd::pipe_identity(fd.as_raw_fd()) else {
        return Forward::Fd { fd, failed: false };
    };
    let to = lock_registry()
        .channels
        .iter()
        .find(|channel| channel.is_pipe(pipe))
        .cloned();
    match to {
        Some(to) => Forward::Channel { to, _open: fd },
        None => Forward::Fd { fd, failed: false },
    }
}

/// The block of `channel` has ended (its fd restored): take what its pipe and the pipes feeding
/// it hold now, and return every byte not yet delivered. From now on the channel's bytes are
/// late output, sent to `late` (where the fd points again): the reader serves the pipe until
/// EOF, taking it back if the delivery thread had it (late output is the reader's alone).
pub fn finish_block(channel: &Arc<Channel>, late: Option<OwnedFd>) -> crate::stamped::Stamped {
    let late = late.map(resolve);
    take_inflow(channel, 0);
    let was_watched = channel.is_watched();
    let (rest, eof) = channel.switch_to_late(late);
    if eof {
        unregister(channel);
    } else if was_watched {
        lock_registry().thread.wake();
    }
    rest
}

/// Before `channel`'s block ends: what still sits in the pipes of channels that send into it (an
/// inner block's late output, a tee's copies) was written while its block was in force, so it
/// belongs to it. Bring it in first, innermost first.
fn take_inflow(channel: &Arc<Channel>, depth: usize) {
    const DEEPEST: usize = 32; // far deeper than real nesting; only a guard
    if depth > DEEPEST {
        return;
    }
    let feeders: Vec<Arc<Channel>> = lock_registry()
        .channels
        .iter()
        .filter(|other| !Arc::ptr_eq(other, channel))
        .cloned()
        .collect();
    for feeder in feeders.iter().filter(|feeder| feeder.sends_to(channel)) {
        take_inflow(feeder, depth + 1);
        feeder.drain_held();
    }
}

fn run(wake: &OwnedFd, timer: &Backstop) {
    loop {
        let (channels, delivery_polls) = {
            let registry = lock_registry();
            (registry.channels.clone(), registry.handover.delivery_polls())
        };
        // The timer's fd is -1 where the platform has none (poll skips it): the timeout then
        // plays its part.
        let wakers = [wake.as_raw_fd(), timer.fd()];
        let timeout = timer.poll_timeout(delivery_polls);
        let filled = poll::turn(Poller::Reader, &wakers, timeout, &channels, |channel| {
            channel.reader_poll_fd(delivery_polls)
        });
        for (channel, _) in filled {
            channel.notify();
        }
    }
}

/// Make a pipe for a live block: (read end, non-blocking; write end), both close-on-exec and
/// above the standard streams.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = fd::pipe_cloexec()?;
    fd::set_nonblocking(read.as_raw_fd())?;
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::read_append;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn wait_until(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn drains_more_than_a_pipe_holds_while_nobody_delivers() {
        let (read, write) = pipe().unwrap();
        let notified = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&notified);
        let channel = Arc::new(Channel::new(
            read,
            Vec::new(),
            true,
            Box::new(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            }),
        ));
        register(Arc::clone(&channel)).unwrap();
        // 8 MiB through a 64 KiB pipe: completes only because the reader keeps draining.
        let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        fd::write_all(write.as_raw_fd(), &data, &mut 0).unwrap();
        drop(write);
        wait_until(|| channel.is_drained());
        assert_eq!(channel.take_pending(), data);
        assert!(notified.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn the_block_end_takes_what_the_pipe_holds_and_forwards_late_bytes() {
        let (read, write) = pipe().unwrap();
        let (late_read, late_write) = pipe().unwrap();
        let channel = Arc::new(Channel::new(read, Vec::new(), true, Box::new(|| {})));
        // Not registered: nothing drains but the block's end itself.
        fd::write_all(write.as_raw_fd(), b"in block", &mut 0).unwrap();
        let (pending, eof) = channel.switch_to_late(Some(Forward::Fd {
            fd: late_write,
            failed: false,
        }));
        assert_eq!(pending.bytes, b"in block");
        assert!(!eof, "the write end is still open");
        register(Arc::clone(&channel)).unwrap();
        fd::write_all(write.as_raw_fd(), b"late", &mut 0).unwrap();
        drop(write);
        wait_until(|| channel.is_drained());
        let mut got = Vec::new();
        read_append(late_read.as_raw_fd(), &mut got, 100).unwrap();
        assert_eq!(got, b"late");
        assert!(channel.take_pending().is_empty());
    }

    #[test]
    fn the_block_end_sees_eof_when_no_writer_is_left() {
        let (read, write) = pipe().unwrap();
        let channel = Channel::new(read, Vec::new(), true, Box::new(|| {}));
        fd::write_all(write.as_raw_fd(), b"all", &mut 0).unwrap();
        drop(write);
        let (rest, eof) = channel.switch_to_late(None);
        assert_eq!((rest.bytes, eof), (b"all".to_vec(), true));
    }

    #[test]
    fn forwards_every_byte_as_it_arrives() {
        let (read, write) = pipe().unwrap();
        let file = crate::memfile::create().unwrap();
        let copy = fd::dup_above_stdio(file.as_raw_fd()).unwrap();
        let channel = Arc::new(Channel::new(read, vec![copy], false, Box::new(|| {})));
        register(Arc::clone(&channel)).unwrap();
        fd::write_all(write.as_raw_fd(), b"teed", &mut 0).unwrap();
        wait_until(|| crate::memfile::size(&file).unwrap() == 4);
        drop(write);
        wait_until(|| channel.is_drained());
        assert!(channel.take_pending().is_empty());
    }

    #[test]
    fn bytes_for_an_enclosing_channel_are_handed_over_without_writing_its_pipe() {
        // outer: a live block nobody delivers; inner: a tee block whose original destination is
        // the outer block's pipe. More than a pipe holds goes through the inner one, so a
        // blocking write into the outer pipe by the draining thread would wait forever.
        let (outer_read, outer_write) = pipe().unwrap();
        let outer = Arc::new(Channel::new(outer_read, Vec::new(), true, Box::new(|| {})));
        register(Arc::clone(&outer)).unwrap();
        let (inner_read, inner_write) = pipe().unwrap();
        let inner = Arc::new(Channel::new(inner_read, Vec::new(), false, Box::new(|| {})));
        inner.add_forward(fd::dup_above_stdio(outer_write.as_raw_fd()).unwrap());
        register(Arc::clone(&inner)).unwrap();
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 253) as u8).collect();
        fd::write_all(inner_write.as_raw_fd(), &data, &mut 0).unwrap();
        drop(inner_write);
        wait_until(|| inner.is_drained());
        // Late output of the outer block after its end goes to a plain fd.
        fd::write_all(outer_write.as_raw_fd(), b"tail", &mut 0).unwrap();
        let (late_read, late_write) = pipe().unwrap();
        let mut pending = finish_block(&outer, Some(late_write)).bytes;
        pending.extend(outer.take_pending());
        assert_eq!(pending.len(), data.len() + 4);
        assert_eq!(&pending[..data.len()], &data[..]);
        drop(outer_write);
        wait_until(|| outer.is_drained());
        let mut late = Vec::new();
        assert_eq!(read_append(late_read.as_raw_fd(), &mut late, 16).unwrap_or(0), 0);
    }
}
