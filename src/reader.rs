//! The reader: one long-lived thread that drains the pipe of every live block, never touching
//! the GIL, so a writer that holds the GIL can write any amount without blocking on a full pipe.
//! While the delivery thread is idle it polls the live pipes itself (for latency), and the reader
//! stands back; see "Handing the live pipes over" below.
//!
//! Each block has a `Channel`: the pipe's read end, fds the reader writes every byte to as it
//! arrives (tee, the capture file behind a tee), and the bytes waiting for delivery to Python.
//! When a block ends, the channel keeps its read end until EOF and forwards late output (a child
//! that outlived the block) to the original destination.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::sys;

/// The most one `read` takes from a pipe.
const READ_CHUNK: usize = 64 << 10;
/// Reads per channel per wake-up, so one busy pipe cannot starve the others.
const READS_PER_TURN: usize = 16;

pub struct Channel {
    state: Mutex<State>,
    /// Called (with no lock held) after bytes were added for delivery.
    notify: Box<dyn Fn() + Send + Sync>,
}

struct State {
    /// The pipe's read end, non-blocking; `None` after EOF.
    read: Option<OwnedFd>,
    /// Written with every byte as it arrives, while the block runs.
    forward: Vec<OwnedFd>,
    /// Keep bytes in `pending` for delivery to a Python target.
    buffered: bool,
    pending: Vec<u8>,
    /// After the block: where late output goes (the restored original destination).
    late: Option<OwnedFd>,
    ended: bool,
    /// The delivery thread polls this pipe too (see "Handing the live pipes over").
    watched: bool,
}

impl Channel {
    pub fn new(read: OwnedFd, forward: Vec<OwnedFd>, buffered: bool, notify: Box<dyn Fn() + Send + Sync>) -> Self {
        let state = State {
            read: Some(read),
            forward,
            buffered,
            pending: Vec::new(),
            late: None,
            ended: false,
            watched: false,
        };
        Channel {
            state: Mutex::new(state),
            notify,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Also write every byte to `fd` as it arrives. Added before the channel is registered.
    pub fn add_forward(&self, fd: OwnedFd) {
        self.lock().forward.push(fd);
    }

    /// The delivery thread now polls this pipe: while it does, the reader may leave it alone.
    pub fn watch(&self) {
        self.lock().watched = true;
    }

    /// The bytes waiting for delivery, in order.
    pub fn take_pending(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().pending)
    }

    /// For the crash handler (crash.rs): show `f` the bytes waiting for delivery, only if the lock
    /// is free right now (never blocks; not reentrant, so the crashing thread holding it gets
    /// `false`). Returns whether `f` ran.
    pub fn try_with_pending(&self, f: impl FnOnce(&[u8])) -> bool {
        match self.state.try_lock() {
            Ok(state) => f(&state.pending),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => f(&poisoned.into_inner().pending),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        }
        true
    }

    /// The pipe's read end, to poll; `None` after EOF. The number may be closed and reused by the
    /// time a poll returns: a wake-up on it only ever leads to `drain`, which reads under the lock.
    pub fn read_fd(&self) -> Option<RawFd> {
        self.lock().read.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Read what the pipe holds (a bounded amount); returns (how many bytes were added for
    /// delivery, EOF reached).
    pub fn drain(&self) -> (usize, bool) {
        Self::drain_locked(&mut self.lock(), None)
    }

    /// `drain`, unless another thread is draining right now: the reader thread then leaves the
    /// pipe to it rather than queueing behind it, and polls again.
    fn try_drain(&self) -> Option<(usize, bool)> {
        match self.state.try_lock() {
            Ok(mut state) => Some(Self::drain_locked(&mut state, None)),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                Some(Self::drain_locked(&mut poisoned.into_inner(), None))
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn drain_locked(state: &mut State, limit: Option<usize>) -> (usize, bool) {
        let Some(read) = state.read.as_ref().map(AsRawFd::as_raw_fd) else {
            return (0, true);
        };
        let before = state.pending.len();
        let mut scratch = Vec::new();
        let mut left = limit.unwrap_or(usize::MAX);
        let mut eof = false;
        for _ in 0..READS_PER_TURN {
            if left == 0 {
                break;
            }
            let want = READ_CHUNK.min(left);
            let into_pending = state.buffered && !state.ended;
            let buf = if into_pending { &mut state.pending } else { &mut scratch };
            let start = buf.len();
            match read_append(read, buf, want) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    left -= n;
                    let data = if into_pending {
                        &state.pending[start..]
                    } else {
                        &scratch[start..]
                    };
                    let targets: &[OwnedFd] = if state.ended {
                        state.late.as_slice()
                    } else {
                        &state.forward
                    };
                    for target in targets {
                        // A destination that went away (EPIPE, EBADF) must not stop the draining.
                        let mut written = 0;
                        while let Err(e) = sys::write_all(target.as_raw_fd(), data, &mut written) {
                            if e.kind() != io::ErrorKind::Interrupted {
                                break;
                            }
                        }
                    }
                    scratch.clear();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            state.read = None;
            state.late = None;
        }
        (state.pending.len() - before, eof)
    }

    /// The block has ended (its fd already restored): take exactly the bytes the pipe holds now
    /// (never wait for EOF: a child may hold the write end forever), forward them, and return
    /// everything not yet delivered. Later bytes go to `late`. Returns (pending bytes, EOF reached).
    pub fn end(&self, late: Option<OwnedFd>) -> (Vec<u8>, bool) {
        let mut state = self.lock();
        let held = state
            .read
            .as_ref()
            .map_or(0, |read| sys::bytes_available(read.as_raw_fd()));
        let (_, mut eof) = Self::drain_locked(&mut state, Some(held));
        if !eof {
            // No writer left (the usual case): EOF now, and the read end can go at once.
            if let Some(read) = &state.read {
                let mut probe = Vec::new();
                if let Ok(0) = read_append(read.as_raw_fd(), &mut probe, 1) {
                    eof = true;
                    state.read = None;
                } else if !probe.is_empty() {
                    // A byte written after the block: late output.
                    if let Some(target) = &late {
                        let _ = sys::write_all(target.as_raw_fd(), &probe, &mut 0);
                    }
                }
            }
        }
        state.ended = true;
        state.forward.clear();
        if !eof {
            state.late = late;
        }
        (std::mem::take(&mut state.pending), eof)
    }
}

/// `read(2)` up to `want` bytes, appended to `buf`.
fn read_append(fd: RawFd, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    // SAFETY: `spare` has room for at least `want` bytes; read writes at most that many.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), want) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: read initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
}

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
    if let Some(timer) = registry.ours_mut() {
        sys::set_timer(timer, 0);
        registry.delivery_polling = true;
    }
}

/// The delivery thread stops polling, to deliver `drained` bytes it read itself.
pub fn delivery_leaves(drained: usize) {
    let mut registry = lock_registry();
    let Some(timer) = registry.ours_mut() else {
        return; // no reader in this process yet: it starts with the delivery thread not polling
    };
    registry.delivery_polling = false;
    if drained >= STREAMING {
        wake(&registry);
    } else {
        sys::set_timer(timer, BACKSTOP_NANOS);
    }
}

/// The registry of channels the reader thread serves.
pub(crate) struct Registry {
    /// The fork generation the thread was started in; a forked child starts its own.
    generation: Option<u64>,
    wake: Option<OwnedFd>,
    /// The backstop timer the reader polls (see "Handing the live pipes over").
    timer: Option<OwnedFd>,
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
    fn ours_mut(&mut self) -> Option<RawFd> {
        let timer = self.timer.as_ref()?.as_raw_fd();
        (self.generation == Some(crate::stack::generation())).then_some(timer)
    }
}

pub(crate) fn lock_registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serve `channel` from now on, starting the reader thread on first use.
pub fn register(channel: Arc<Channel>) -> io::Result<()> {
    let mut registry = lock_registry();
    let generation = crate::stack::generation();
    if registry.generation != Some(generation) {
        // First use, or a forked child: the parent's thread does not exist here.
        std::mem::forget(std::mem::take(&mut registry.channels));
        let (wake_read, wake_write) = sys::pipe_nonblocking()?;
        let timer = sys::timer()?;
        let timer_fd = timer.as_raw_fd(); // owned by the registry, which outlives the thread
        std::thread::Builder::new()
            .name("fdredirect-reader".into())
            .spawn(move || run(&wake_read, timer_fd))?;
        registry.wake = Some(wake_write);
        registry.timer = Some(timer);
        registry.delivery_polling = false;
        registry.generation = Some(generation);
    }
    registry.channels.push(channel);
    wake(&registry);
    Ok(())
}

/// Stop serving `channel` (its pipe reached EOF).
pub fn unregister(channel: &Arc<Channel>) {
    let mut registry = lock_registry();
    registry.channels.retain(|c| !Arc::ptr_eq(c, channel));
    wake(&registry);
}

/// The block of `channel` has ended (see `Channel::end`): stop serving the pipe at EOF, or make
/// the reader poll it again if the delivery thread had it (late output is the reader's alone).
pub fn end(channel: &Arc<Channel>, late: Option<OwnedFd>) -> Vec<u8> {
    let was_watched = channel.lock().watched;
    let (rest, eof) = channel.end(late);
    if eof {
        unregister(channel);
    } else if was_watched {
        wake(&lock_registry());
    }
    rest
}

fn wake(registry: &Registry) {
    if let Some(wake) = &registry.wake {
        sys::poke(wake.as_raw_fd());
    }
}

fn run(wake: &OwnedFd, timer: RawFd) {
    loop {
        let (channels, delivery_polling) = {
            let registry = lock_registry();
            (registry.channels.clone(), registry.delivery_polling)
        };
        let mut polled = vec![wake.as_raw_fd(), timer];
        let mut served = Vec::with_capacity(channels.len());
        for channel in &channels {
            let state = channel.lock();
            if delivery_polling && state.watched && !state.ended {
                continue;
            }
            if let Some(read) = &state.read {
                polled.push(read.as_raw_fd());
                served.push(Arc::clone(channel));
            }
        }
        let ready = sys::wait_readable(&polled);
        for (&fd, _) in polled[..2].iter().zip(&ready).filter(|(_, &ready)| ready) {
            sys::discard_available(fd);
        }
        for (channel, _) in served.iter().zip(&ready[2..]).filter(|(_, &ready)| ready) {
            // The delivery thread polls live pipes too, and may be draining this one.
            let Some((added, eof)) = channel.try_drain() else {
                continue;
            };
            if added > 0 {
                (channel.notify)();
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
    let (read, write) = sys::pipe_cloexec()?;
    sys::set_nonblocking(read.as_raw_fd())?;
    Ok((sys::lift_above_stdio(read)?, sys::lift_above_stdio(write)?))
}

#[cfg(test)]
mod tests {
    use super::*;
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
        sys::write_all(write.as_raw_fd(), &data, &mut 0).unwrap();
        drop(write);
        wait_until(|| channel.lock().read.is_none());
        assert_eq!(channel.take_pending(), data);
        assert!(notified.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn end_takes_what_the_pipe_holds_and_forwards_late_bytes() {
        let (read, write) = pipe().unwrap();
        let (late_read, late_write) = pipe().unwrap();
        let channel = Arc::new(Channel::new(read, Vec::new(), true, Box::new(|| {})));
        // Not registered: nothing drains but `end` itself.
        sys::write_all(write.as_raw_fd(), b"in block", &mut 0).unwrap();
        let (pending, eof) = channel.end(Some(late_write));
        assert_eq!(pending, b"in block");
        assert!(!eof, "the write end is still open");
        register(Arc::clone(&channel)).unwrap();
        sys::write_all(write.as_raw_fd(), b"late", &mut 0).unwrap();
        drop(write);
        wait_until(|| channel.lock().read.is_none());
        let mut got = Vec::new();
        read_append(late_read.as_raw_fd(), &mut got, 100).unwrap();
        assert_eq!(got, b"late");
        assert!(channel.take_pending().is_empty());
    }

    #[test]
    fn end_sees_eof_when_no_writer_is_left() {
        let (read, write) = pipe().unwrap();
        let channel = Channel::new(read, Vec::new(), true, Box::new(|| {}));
        sys::write_all(write.as_raw_fd(), b"all", &mut 0).unwrap();
        drop(write);
        assert_eq!(channel.end(None), (b"all".to_vec(), true));
    }

    #[test]
    fn forwards_every_byte_as_it_arrives() {
        let (read, write) = pipe().unwrap();
        let file = crate::capture::create().unwrap();
        let copy = sys::dup_above_stdio(file.as_raw_fd()).unwrap();
        let channel = Arc::new(Channel::new(read, vec![copy], false, Box::new(|| {})));
        register(Arc::clone(&channel)).unwrap();
        sys::write_all(write.as_raw_fd(), b"teed", &mut 0).unwrap();
        wait_until(|| crate::capture::size(&file).unwrap() == 4);
        drop(write);
        wait_until(|| channel.lock().read.is_none());
        assert!(channel.take_pending().is_empty());
    }
}
