//! A `Channel`: the pipe of one live or tee block, and where its bytes go.
//!
//! Bytes read from the pipe are kept for delivery to a Python target (`pending`, live blocks) and
//! written, as they arrive, to the block's forward targets (tee: the original destination, the
//! capture file behind a tee). When the block ends, the channel keeps its read end until EOF and
//! sends late output (a child that outlived the block) to where the fd points again.
//!
//! A forward target may be the pipe of another channel (a tee block nested in a live or tee block:
//! its "original destination" is the enclosing block's pipe). Only this library's threads drain
//! that pipe, so a blocking `write` into it from the thread that drains it could wait forever.
//! Such bytes are therefore handed to the other channel in-process (`Forward::Channel`), as if
//! they had been read from its pipe: each channel's bytes stay in order, and nothing waits.
//!
//! Locking: a channel hands bytes only to the channel of a block that switched the fd *before*
//! its own block did (a tee's original destination, the destination restored at its end: both
//! were in place before the block began), and takes that channel's lock while holding its own.
//! Locks are therefore always taken in reverse switch order, which cannot deadlock. The receiving
//! channel's notification (`crate::delivery::schedule`) takes the delivery queue's lock under
//! them, so no channel's lock is ever taken under the queue's.

use crate::locks;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

mod forward;

pub use crate::stamped::Stamped;
pub use forward::Forward;

use crate::fd;

/// The most one `read` takes from a pipe.
const READ_CHUNK: usize = 64 << 10;
/// Reads per channel per call, so one busy pipe cannot starve the others.
const READS_PER_TURN: usize = 16;

pub struct Channel {
    /// The pipe's identity (`st_dev`, `st_ino`), to recognise its write end as a forward target.
    pipe: Option<(u64, u64)>,
    state: Mutex<State>,
    /// Called (with this channel's lock released) after bytes were added for delivery.
    notify: Box<dyn Fn() + Send + Sync>,
}

struct State {
    phase: Phase,
    /// The first error of a forward target (a tee onto a full disk), reported at the block's end,
    /// and whether it was the original destination (`add_forward`) or the block's own target.
    forward_error: Option<(io::Error, bool)>,
    /// How many forward targets are the block's own (given to `new`); the rest are copies to the
    /// original destination.
    own_targets: usize,
    /// Keep bytes in `pending` for delivery to a Python target.
    buffered: bool,
    pending: Stamped,
}

/// Where a channel is in its block's life. Each phase holds what only it needs: the read end
/// until EOF, the forward targets while the block runs, the late destination after it.
enum Phase {
    /// Registered, but not served yet: the fd is being switched to the pipe (see `park`).
    Parked { read: OwnedFd, forward: Vec<Forward> },
    /// The block runs: bytes are kept for delivery and sent to the forward targets.
    Open {
        read: OwnedFd,
        forward: Vec<Forward>,
        /// The delivery thread polls this pipe too (see `crate::handover`).
        watched: bool,
    },
    /// The block has ended: bytes still arriving are late output, sent to where the fd points
    /// again.
    Ended { read: OwnedFd, late: Option<Forward> },
    /// EOF: no writer is left, nothing more can come. The read end is closed, and so are the
    /// write ends held into other channels' pipes (forward and late targets).
    Drained,
}

impl Phase {
    fn read(&self) -> Option<RawFd> {
        match self {
            Phase::Parked { read, .. } | Phase::Open { read, .. } | Phase::Ended { read, .. } => Some(read.as_raw_fd()),
            Phase::Drained => None,
        }
    }
}

impl State {
    /// Take `data` as read from the pipe at `at`: keep it for delivery, and send it on. Returns
    /// whether bytes were added for delivery.
    fn accept(&mut self, data: &[u8], at: SystemTime) -> bool {
        if data.is_empty() {
            return false;
        }
        let forward = match &mut self.phase {
            Phase::Parked { forward, .. } | Phase::Open { forward, .. } => forward,
            Phase::Ended { late, .. } => {
                // Late output: best effort, a destination that went away (EPIPE) must not stop
                // draining.
                if let Some(late) = late {
                    let _ = late.send(data);
                }
                return false;
            }
            // Cannot receive: every channel sending here holds a write end of this pipe.
            Phase::Drained => return false,
        };
        for (index, target) in forward.iter_mut().enumerate() {
            if let Err(err) = target.send(data) {
                self.forward_error.get_or_insert((err, index >= self.own_targets));
            }
        }
        if self.buffered {
            self.pending.push(data, at);
        }
        self.buffered
    }

    /// Move to the phase `next` makes of the current one.
    fn reshape(&mut self, next: impl FnOnce(Phase) -> Phase) {
        let phase = std::mem::replace(&mut self.phase, Phase::Drained);
        self.phase = next(phase);
    }

    fn forward_targets(&self) -> &[Forward] {
        match &self.phase {
            Phase::Parked { forward, .. } | Phase::Open { forward, .. } => forward,
            Phase::Ended { late: Some(late), .. } => std::slice::from_ref(late),
            Phase::Ended { late: None, .. } | Phase::Drained => &[],
        }
    }
}

impl Channel {
    pub fn new(read: OwnedFd, forward: Vec<OwnedFd>, buffered: bool, notify: Box<dyn Fn() + Send + Sync>) -> Self {
        let pipe = fd::pipe_identity(read.as_raw_fd());
        let forward: Vec<Forward> = forward.into_iter().map(crate::reader::resolve).collect();
        let state = State {
            own_targets: forward.len(),
            phase: Phase::Open {
                read,
                forward,
                watched: false,
            },
            forward_error: None,
            buffered,
            pending: Stamped::default(),
        };
        Channel {
            pipe,
            state: Mutex::new(state),
            notify,
        }
    }

    /// Whether `pipe` (an fd's identity) is this channel's pipe.
    pub fn is_pipe(&self, pipe: (u64, u64)) -> bool {
        self.pipe == Some(pipe)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        locks::lock(&self.state)
    }

    /// Also send every byte to `fd` as it arrives. Added before the block's bytes flow (parked).
    pub fn add_forward(&self, fd: OwnedFd) {
        let target = crate::reader::resolve(fd);
        if let Phase::Parked { forward, .. } | Phase::Open { forward, .. } = &mut self.lock().phase {
            forward.push(target);
        }
    }

    /// Not to be served until `unpark`: registered before its block switches the fd, so that a
    /// block another thread switches right after finds it (see `reader::resolve`), while the
    /// reader leaves it alone until its forward targets are in place.
    pub fn park(&self) {
        self.lock().reshape(|phase| match phase {
            Phase::Open { read, forward, .. } => Phase::Parked { read, forward },
            other => other,
        });
    }

    pub(crate) fn unpark(&self) {
        self.lock().reshape(|phase| match phase {
            Phase::Parked { read, forward } => Phase::Open {
                read,
                forward,
                watched: false,
            },
            other => other,
        });
    }

    /// The delivery thread now polls this pipe: while it does, the reader may leave it alone.
    pub fn watch(&self) {
        if let Phase::Open { watched, .. } = &mut self.lock().phase {
            *watched = true;
        }
    }

    pub(crate) fn is_watched(&self) -> bool {
        matches!(self.lock().phase, Phase::Open { watched: true, .. })
    }

    /// Whether bytes wait for delivery.
    pub fn has_pending(&self) -> bool {
        !self.lock().pending.bytes.is_empty()
    }

    /// Whether every byte written to the pipes of `channels` so far has been taken from them and
    /// handed on: all pipes are empty (one `poll`, not waiting), then no bytes wait for delivery.
    /// In that order, each asked under its channel's lock: a drain in progress (bytes read, not
    /// yet handed on) is waited for. A read end closed meanwhile (EOF) only makes the answer `false`.
    pub fn all_idle(channels: &[&Channel]) -> bool {
        let mut polled: Vec<libc::pollfd> = channels
            .iter()
            .filter_map(|channel| channel.read_fd())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if !polled.is_empty() {
            // SAFETY: `polled` is a valid array of pollfd for its whole length; timeout 0.
            let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, 0) };
            if ready != 0 {
                return false; // readable, hung up, or the poll failed (EINTR): the slow way
            }
        }
        channels.iter().all(|channel| !channel.has_pending())
    }

    /// The bytes waiting for delivery, in order.
    pub fn take_pending(&self) -> Vec<u8> {
        self.take_stamped().bytes
    }

    /// The bytes waiting for delivery, in order, with the times they were read.
    pub fn take_stamped(&self) -> Stamped {
        std::mem::take(&mut self.lock().pending)
    }

    /// For the crash handler (`crate::crash`): show `f` the bytes waiting for delivery, only if
    /// the lock is free right now (never blocks; not reentrant, so the crashing thread holding it
    /// gets `false`). Returns whether `f` ran.
    pub fn try_with_pending(&self, f: impl FnOnce(&[u8])) -> bool {
        match self.state.try_lock() {
            Ok(state) => f(&state.pending.bytes),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => f(&poisoned.into_inner().pending.bytes),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        }
        true
    }

    /// The first error a forward target gave while the block ran, once, and whether that target
    /// was the original destination (the tee copy) rather than the block's own target.
    pub fn take_forward_error(&self) -> Option<(io::Error, bool)> {
        self.lock().forward_error.take()
    }

    /// The pipe's read end, to poll; `None` after EOF. The number may be closed and reused by the
    /// time a poll returns: a wake-up on it only ever leads to `drain`, which reads under the lock.
    pub fn read_fd(&self) -> Option<RawFd> {
        self.lock().phase.read()
    }

    /// For the reader's poll: the read end, unless the channel is parked, or the delivery thread
    /// polls this pipe now (`delivery_polls`: see `crate::handover`).
    pub(crate) fn reader_poll_fd(&self, delivery_polls: bool) -> Option<RawFd> {
        let state = self.lock();
        match &state.phase {
            Phase::Parked { .. } => None,
            Phase::Open { watched: true, .. } if delivery_polls => None,
            phase => phase.read(),
        }
    }

    /// Read what the pipe holds (a bounded amount); returns (how many bytes were added for
    /// delivery, EOF reached).
    pub fn drain(&self) -> (usize, bool) {
        Self::drain_locked(&mut self.lock(), None)
    }

    /// `drain`, unless another thread is draining right now: the reader thread then leaves the
    /// pipe to it rather than queueing behind it, and polls again.
    pub(crate) fn try_drain(&self) -> Option<(usize, bool)> {
        match self.state.try_lock() {
            Ok(mut state) => Some(Self::drain_locked(&mut state, None)),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                Some(Self::drain_locked(&mut poisoned.into_inner(), None))
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Bytes handed over by a newer channel (see the module docs), as if read from this pipe.
    fn take_in(&self, data: &[u8]) {
        let added = self.lock().accept(data, SystemTime::now());
        if added {
            self.notify();
        }
    }

    /// Whether this channel sends bytes to `other` (tee copies, or late output).
    pub(crate) fn sends_to(&self, other: &Arc<Channel>) -> bool {
        self.lock()
            .forward_targets()
            .iter()
            .any(|target| matches!(target, Forward::Channel { to, .. } if Arc::ptr_eq(to, other)))
    }

    /// Take exactly what the pipe holds now and send it on (delivery is notified).
    pub(crate) fn drain_held(&self) {
        let mut state = self.lock();
        let held = state.phase.read().map_or(0, fd::bytes_available);
        let (added, _) = Self::drain_locked(&mut state, Some(held));
        drop(state);
        if added > 0 {
            self.notify();
        }
    }

    /// Tell whoever delivers this channel's bytes that some were added (with no lock held).
    pub(crate) fn notify(&self) {
        (self.notify)();
    }

    fn drain_locked(state: &mut State, limit: Option<usize>) -> (usize, bool) {
        let Some(read) = state.phase.read() else {
            return (0, true);
        };
        let before = state.pending.bytes.len();
        let mut scratch = Vec::new();
        let mut left = limit.unwrap_or(usize::MAX);
        let mut eof = false;
        for _ in 0..READS_PER_TURN {
            if left == 0 {
                break;
            }
            scratch.clear();
            let want = READ_CHUNK.min(left);
            match read_append(read, &mut scratch, want) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    left -= n;
                    state.accept(&scratch, SystemTime::now());
                    if n < want {
                        // A pipe's read returns all it holds: it is empty now. Asking again
                        // would cost a syscall (EAGAIN) on every line's way to its target.
                        break;
                    }
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
            state.phase = Phase::Drained;
        }
        (state.pending.bytes.len() - before, eof)
    }

    /// The block has ended (its fd already restored): take exactly the bytes the pipe holds now
    /// (never wait for EOF: a child may hold the write end forever), send them on, and return
    /// everything not yet delivered. From now on, bytes are late output and go to `late` (see
    /// `reader::finish_block`). Returns (pending bytes, EOF reached).
    pub(crate) fn switch_to_late(&self, late: Option<Forward>) -> (Stamped, bool) {
        let mut state = self.lock();
        let held = state.phase.read().map_or(0, fd::bytes_available);
        let (_, mut eof) = Self::drain_locked(&mut state, Some(held));
        let mut probe = Vec::new();
        if !eof {
            // No writer left (the usual case): EOF now, and the read end can go at once.
            if let Some(read) = state.phase.read() {
                if let Ok(0) = read_append(read, &mut probe, 1) {
                    eof = true;
                }
            }
        }
        state.reshape(|phase| match phase {
            Phase::Parked { read, .. } | Phase::Open { read, .. } | Phase::Ended { read, .. } if !eof => {
                Phase::Ended { read, late }
            }
            _ => Phase::Drained,
        });
        // A byte written after the block: late output.
        state.accept(&probe, SystemTime::now());
        (std::mem::take(&mut state.pending), eof)
    }
}

/// `read(2)` up to `want` bytes, appended to `buf`.
pub(crate) fn read_append(fd: RawFd, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
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

#[cfg(test)]
impl Channel {
    pub(crate) fn is_drained(&self) -> bool {
        matches!(self.lock().phase, Phase::Drained)
    }
}
