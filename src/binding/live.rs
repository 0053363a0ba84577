//! A live block's delivery to its Python target (file-like object, callable, logger).
//!
//! The delivery thread (`crate::delivery`, its Python side in `live::thread`) hands the block's
//! bytes to the target while the block runs; synchronisation points and the block's exit deliver
//! in the calling thread. Deliveries of one block never overlap (one turn at a time), so the target sees
//! bytes in write order; the exit delivers the rest itself, after any delivery in progress.

mod target;
mod thread;

use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};

use pyo3::prelude::*;
use pyo3::PyErr;

use crate::delivery;
use crate::locks;
use crate::reader::{self, Channel};
use crate::stamped::Stamped;
use target::Target;
pub use target::{delivering, Mode, Shape};
pub use thread::{hold_for_fork, logger_open, logger_reading, shutdown, sync_fd};
use thread::{ACTIVE, SHUTDOWN_WAIT, SHUTTING_DOWN};

/// Where a block is in its life, for its delivery.
enum Block {
    /// Made before the switch; the fd is being switched to the pipe.
    Made,
    /// The fd points at the pipe. `entry`: the block's stack entry, to end it at interpreter
    /// shutdown; `original`: where pending bytes go if the process exits while the block is open.
    Open { entry: u64, original: Option<OwnedFd> },
    /// The block has ended (or is a forked parent's that a child left): the delivery queue may
    /// hold the `Live` a while longer, but not the original fd.
    Left,
}

/// Whether a delivery of the block is running (one at a time, in write order).
#[derive(PartialEq, Eq)]
enum Turn {
    Free,
    /// Taken by a delivery; at interpreter exit, by `shutdown` for good.
    Taken,
}

pub struct Live {
    fd: RawFd,
    /// The fork generation the block was opened in: a forked child must not read its parent's
    /// pipes.
    generation: u64,
    object: Py<PyAny>,
    mode: Mode,
    channel: Arc<Channel>,
    block: Mutex<Block>,
    turn: Mutex<Turn>,
    turn_free: Condvar,
    /// Only the holder of the turn touches it.
    target: Mutex<Target>,
}

impl Live {
    /// A live block's delivery, made before the switch (it needs the GIL). The caller registers
    /// `channel()` with the reader right after switching the fd, without the GIL, then calls
    /// `open`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        py: Python<'_>,
        fd: RawFd,
        object: Py<PyAny>,
        (mode, shape): (Mode, Shape),
        encoding: Option<&str>,
        errors: &str,
        read: OwnedFd,
        forward: Vec<OwnedFd>,
    ) -> PyResult<Arc<Live>> {
        let target = Target::new(py, fd, object.clone_ref(py), mode, shape, encoding, errors)?;
        delivery::start(thread::run).map_err(super::errors::io_error)?;
        let channel = Arc::new_cyclic(|me: &Weak<Channel>| {
            let me = me.clone();
            let notify = Box::new(move || {
                if let Some(channel) = me.upgrade() {
                    delivery::schedule(&channel);
                }
            });
            Channel::new(read, forward, true, notify)
        });
        Ok(Arc::new(Live {
            fd,
            generation: crate::fork::generation(),
            object,
            mode,
            channel,
            block: Mutex::new(Block::Made),
            turn: Mutex::new(Turn::Free),
            turn_free: Condvar::new(),
            target: Mutex::new(target),
        }))
    }

    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// The fd now points at the pipe and the reader serves it: the block is open. `original` is
    /// where pending bytes go if the process exits while the block is open.
    pub fn open(self: &Arc<Self>, py: Python<'_>, entry: u64, original: Option<OwnedFd>) {
        *super::lock(py, &self.block) = Block::Open { entry, original };
        locks::lock(&ACTIVE).push(Arc::clone(self));
        delivery::watch(&self.channel);
        // Bytes the reader took before the block was open found no open block to deliver to.
        if self.channel.has_pending() {
            delivery::schedule(&self.channel);
        }
    }

    /// The block has ended (fd restored): deliver everything the pipe held, in order, then
    /// return the target's first exception, if any.
    pub fn deliver_rest(&self, py: Python<'_>, late: Option<OwnedFd>) -> PyResult<()> {
        self.forget(py);
        let rest = py.detach(|| reader::finish_block(&self.channel, late));
        match self.deliver(py, rest, true) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Drop the block from the open ones (and its copy of the original fd). On its own: a forked
    /// child leaving an inherited block, whose channel belongs to the parent's reader.
    pub fn forget(&self, py: Python<'_>) {
        drop(std::mem::replace(&mut *super::lock(py, &self.block), Block::Left));
        delivery::unwatch(&self.channel);
        let removed: Vec<Arc<Live>> = {
            let mut active = locks::lock(&ACTIVE);
            let (mine, others) = active.drain(..).partition(|live| std::ptr::eq(Arc::as_ptr(live), self));
            *active = others;
            mine
        };
        drop(removed); // outside the lock: dropping may run Python code
    }

    /// Take the block's turn: one delivery of a block at a time. Usually nobody else delivers:
    /// take it at once (detaching costs a GIL hand-off). Otherwise wait without the GIL, which
    /// the other delivery may need to finish. Returns whether the turn was taken. A delivery
    /// gives up once interpreter exit has begun: `shutdown` then takes the turn for good (and
    /// everything pending with it); `shutdown` itself waits at most `SHUTDOWN_WAIT`.
    fn claim(&self, py: Python<'_>, for_shutdown: bool) -> bool {
        let was = std::mem::replace(&mut *super::lock(py, &self.turn), Turn::Taken);
        if was == Turn::Free {
            return true;
        }
        py.detach(|| {
            const SLICE: std::time::Duration = std::time::Duration::from_millis(50);
            let deadline = std::time::Instant::now() + SHUTDOWN_WAIT;
            let mut turn = locks::lock(&self.turn);
            while *turn == Turn::Taken {
                let now = std::time::Instant::now();
                let gave_up = if for_shutdown {
                    now >= deadline
                } else {
                    SHUTTING_DOWN.load(Ordering::Acquire)
                };
                if gave_up {
                    return false;
                }
                let wait = if for_shutdown { deadline - now } else { SLICE };
                turn = self
                    .turn_free
                    .wait_timeout(turn, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            *turn = Turn::Taken;
            true
        })
    }

    fn release(&self, py: Python<'_>) {
        *super::lock(py, &self.turn) = Turn::Free;
        self.turn_free.notify_all();
    }

    /// Deliver what is pending plus `extra`. With `last`, returns the target's first exception.
    fn deliver(&self, py: Python<'_>, extra: Stamped, last: bool) -> Option<PyErr> {
        if !self.claim(py, false) {
            return None; // interpreter exit: `shutdown` writes what is pending to the original fd
        }
        // Taken with the GIL held: bytes taken by a thread that then waited for the GIL could be
        // stranded forever at interpreter shutdown. The channel lock is only ever held briefly.
        let mut pending = self.channel.take_stamped();
        pending.extend(extra);
        // Uncontended: only the holder of the turn touches the target.
        let error = super::lock(py, &self.target).deliver(py, &pending, last);
        self.release(py);
        error
    }

    /// A synchronisation point, in the calling thread: deliver everything written to the block's
    /// fd so far (what the reader holds and what the pipe holds now), after any delivery in
    /// progress, then flush the target if it is a stream. A target's exception is raised here
    /// (the bytes of that call are lost) and does not end the block's delivery, unlike one in the
    /// delivery thread: in the calling thread it may be a `KeyboardInterrupt`. Inside a delivery
    /// (a target that writes to a synced stream) it does nothing, instead of waiting for itself.
    /// `drained`: the caller has just drained the channel itself, without the GIL.
    pub fn sync(&self, py: Python<'_>, flush_target: bool, drained: bool) -> PyResult<()> {
        if delivering() || self.generation != crate::fork::generation() {
            return Ok(());
        }
        // One bounded drain: it takes all a pipe holds, and a writer in another thread that
        // keeps writing must not keep this caller here.
        if !drained {
            py.detach(|| self.channel.drain());
        }
        if !self.claim(py, false) {
            return Ok(()); // interpreter exit: `shutdown` has taken everything
        }
        let pending = self.channel.take_stamped();
        let sent = super::lock(py, &self.target).deliver_now(py, &pending);
        self.release(py);
        sent?;
        if flush_target {
            self.flush_target(py)?;
        }
        Ok(())
    }

    /// Whether a synchronisation point would deliver nothing, once `Channel::all_idle` found the
    /// block's channel idle: no delivery is running either. In that order: a delivery that took
    /// the bytes before the channel was asked still holds the turn. A forked child's inherited
    /// block is never synced. Asked with the GIL held, waiting only for brief locks.
    pub fn idle(&self, py: Python<'_>) -> bool {
        self.inherited() || *super::lock(py, &self.turn) == Turn::Free
    }

    /// Whether this block is a forked parent's, which a synchronisation point leaves alone.
    pub fn inherited(&self) -> bool {
        self.generation != crate::fork::generation()
    }

    /// A stream target's `flush()`, as a synchronisation point ends. Not under the turn: a
    /// stream's flush may sync, and must not wait for itself.
    pub fn flush_target(&self, py: Python<'_>) -> PyResult<()> {
        if let Mode::Text { call: false } | Mode::Bytes { call: false } = self.mode {
            let target = self.object.bind(py);
            if target.hasattr(super::names::FLUSH.get(py))? {
                target.call_method0(super::names::FLUSH.get(py))?;
            }
        }
        Ok(())
    }
}
