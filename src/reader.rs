//! The reader: one long-lived thread that drains the pipe of every live block, never touching
//! the GIL, so a writer that holds the GIL can write any amount without blocking on a full pipe.
//! While the delivery thread is idle it polls the live pipes itself (for latency), and the reader
//! stands back; see "Handing the live pipes over" below. Each block's pipe and the routing of its
//! bytes is a `Channel` (`crate::channel`).

use crate::locks;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::channel::{Channel, Forward};
use crate::fd;
use crate::platform::Backstop;

// Handing the live pipes over between the delivery thread and the reader.
//
// A line written to an idle process should cost one thread wake-up: the delivery thread's. So
// while the delivery thread polls the pipes of live blocks itself, the reader leaves them out of
// its own poll: two pollers would both be woken by every write, and the second wake-up delays
// the first. When the delivery thread leaves its poll to take the GIL, the reader must be able to
// take over, or a writer that holds the GIL would block forever on a full pipe:
// - after a large read (a writer is streaming), the reader is woken at once, to keep draining
//   while the delivery thread delivers;
// - after a small one (a line), a backstop timer is armed instead, because waking a thread would
//   delay the line's delivery. If the delivery thread is not back polling when it expires (it
//   waits for the GIL, or a target is slow), the reader wakes and drains the live pipes too. The
//   delay is longer than a scheduler tick: arming a timer that expires before the next tick
//   reprograms the CPU's timer, which costs several microseconds on virtual machines.

const BACKSTOP_NANOS: i64 = 5_000_000;
/// A read at least this large means a writer is streaming.
const STREAMING: usize = 16 << 10;

/// The delivery thread is about to poll the live pipes itself.
pub fn delivery_polls() {
    let mut registry = lock_registry();
    if let Some(timer) = registry.ours() {
        timer.disarm();
        registry.delivery_polling = true;
    }
}

/// The delivery thread stops polling, to deliver `drained` bytes it read itself.
pub fn delivery_leaves(drained: usize) {
    let mut registry = lock_registry();
    let Some(timer) = registry.ours() else {
        return; // no reader in this process yet: it starts with the delivery thread not polling
    };
    registry.delivery_polling = false;
    if drained >= STREAMING {
        wake(&registry);
    } else {
        timer.arm();
    }
}

/// The registry of channels the reader thread serves.
pub(crate) struct Registry {
    /// The fork generation the thread was started in; a forked child starts its own.
    generation: Option<u64>,
    wake: Option<OwnedFd>,
    /// The backstop timer the reader polls (see "Handing the live pipes over").
    timer: Option<Arc<Backstop>>,
    /// The delivery thread is polling the live pipes it watches; the reader leaves them alone.
    delivery_polling: bool,
    channels: Vec<Arc<Channel>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    generation: None,
    wake: None,
    timer: None,
    delivery_polling: false,
    channels: Vec::new(),
});

impl Registry {
    /// The backstop timer, if the reader thread is this process's (not a forked parent's).
    fn ours(&self) -> Option<Arc<Backstop>> {
        let timer = Arc::clone(self.timer.as_ref()?);
        (self.generation == Some(crate::fork::generation())).then_some(timer)
    }
}

pub(crate) fn lock_registry() -> MutexGuard<'static, Registry> {
    locks::lock(&REGISTRY)
}

/// Serve `channel` from now on, starting the reader thread on first use.
pub fn register(channel: Arc<Channel>) -> io::Result<()> {
    let mut registry = lock_registry();
    let generation = crate::fork::generation();
    if registry.generation != Some(generation) {
        // First use, or a forked child: the parent's thread does not exist here.
        std::mem::forget(std::mem::take(&mut registry.channels));
        let (wake_read, wake_write) = fd::pipe_nonblocking()?;
        let timer = Arc::new(Backstop::new(BACKSTOP_NANOS)?);
        let thread_timer = Arc::clone(&timer);
        std::thread::Builder::new()
            .name("fdredirect-reader".into())
            .spawn(move || run(&wake_read, &thread_timer))?;
        registry.wake = Some(wake_write);
        registry.timer = Some(timer);
        registry.delivery_polling = false;
        registry.generation = Some(generation);
    }
    registry.channels.push(channel);
    wake(&registry);
    Ok(())
}

/// Start serving a parked channel (see `Channel::park`).
pub fn unpark(channel: &Channel) {
    channel.unpark();
    wake(&lock_registry());
}

/// Stop serving `channel` (its pipe reached EOF, or its block never began).
pub fn unregister(channel: &Arc<Channel>) {
    let mut registry = lock_registry();
    registry.channels.retain(|c| !Arc::ptr_eq(c, channel));
    wake(&registry);
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

/// The block of `channel` has ended (see `Channel::end`): stop serving the pipe at EOF, or make
/// the reader poll it again if the delivery thread had it (late output is the reader's alone).
/// `late` is where the fd points again: bytes written to the pipe after the block go there.
pub fn end(channel: &Arc<Channel>, late: Option<OwnedFd>) -> Vec<u8> {
    let late = late.map(resolve);
    take_inflow(channel, 0);
    let was_watched = channel.is_watched();
    let (rest, eof) = channel.end(late);
    if eof {
        unregister(channel);
    } else if was_watched {
        wake(&lock_registry());
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

fn wake(registry: &Registry) {
    if let Some(wake) = &registry.wake {
        fd::poke(wake.as_raw_fd());
    }
}

fn run(wake: &OwnedFd, timer: &Backstop) {
    loop {
        let (channels, delivery_polling) = {
            let registry = lock_registry();
            (registry.channels.clone(), registry.delivery_polling)
        };
        let mut polled = vec![wake.as_raw_fd(), timer.fd()];
        let mut served = Vec::with_capacity(channels.len());
        for channel in &channels {
            if let Some(read) = channel.poll_fd(delivery_polling) {
                polled.push(read);
                served.push(Arc::clone(channel));
            }
        }
        let ready = fd::wait_readable_for(&polled, timer.poll_timeout(delivery_polling));
        for (&fd, _) in polled[..2].iter().zip(&ready).filter(|(_, &ready)| ready) {
            fd::discard_available(fd);
        }
        for (channel, _) in served.iter().zip(&ready[2..]).filter(|(_, &ready)| ready) {
            // The delivery thread polls live pipes too, and may be draining this one.
            let Some((added, eof)) = channel.try_drain() else {
                continue;
            };
            if added > 0 {
                channel.notify();
            }
            if eof {
                lock_registry().channels.retain(|c| !Arc::ptr_eq(c, channel));
            }
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
    fn end_takes_what_the_pipe_holds_and_forwards_late_bytes() {
        let (read, write) = pipe().unwrap();
        let (late_read, late_write) = pipe().unwrap();
        let channel = Arc::new(Channel::new(read, Vec::new(), true, Box::new(|| {})));
        // Not registered: nothing drains but `end` itself.
        fd::write_all(write.as_raw_fd(), b"in block", &mut 0).unwrap();
        let (pending, eof) = channel.end(Some(Forward::Fd {
            fd: late_write,
            failed: false,
        }));
        assert_eq!(pending, b"in block");
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
    fn end_sees_eof_when_no_writer_is_left() {
        let (read, write) = pipe().unwrap();
        let channel = Channel::new(read, Vec::new(), true, Box::new(|| {}));
        fd::write_all(write.as_raw_fd(), b"all", &mut 0).unwrap();
        drop(write);
        assert_eq!(channel.end(None), (b"all".to_vec(), true));
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
        let mut pending = end(&outer, Some(late_write));
        pending.extend(outer.take_pending());
        assert_eq!(pending.len(), data.len() + 4);
        assert_eq!(&pending[..data.len()], &data[..]);
        drop(outer_write);
        wait_until(|| outer.is_drained());
        let mut late = Vec::new();
        assert_eq!(read_append(late_read.as_raw_fd(), &mut late, 16).unwrap_or(0), 0);
    }
}
