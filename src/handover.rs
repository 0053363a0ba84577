//! Handing the live pipes over between the delivery thread and the reader.
//!
//! A line written to an idle process should cost one thread wake-up: the delivery thread's. So
//! while the delivery thread polls the pipes of live blocks itself, the reader leaves them out of
//! its own poll: two pollers would both be woken by every write, and the second wake-up delays
//! the first. When the delivery thread leaves its poll to take the GIL, the reader must be able to
//! take over, or a writer that holds the GIL would block forever on a full pipe:
//! - after a large read (a writer is streaming), the reader is woken at once, to keep draining
//!   while the delivery thread delivers;
//! - after a small one (a line), a backstop timer is armed instead, because waking a thread would
//!   delay the line's delivery. If the delivery thread is not back polling when it expires (it
//!   waits for the GIL, or a target is slow), the reader wakes and drains the live pipes too. The
//!   delay is longer than a scheduler tick: arming a timer that expires before the next tick
//!   reprograms the CPU's timer, which costs several microseconds on virtual machines.

use std::io;
use std::sync::Arc;

use crate::platform::Backstop;
use crate::poll::Poller;
use crate::reader::lock_registry;

const BACKSTOP_NANOS: i64 = 5_000_000;
/// A read at least this large means a writer is streaming.
const STREAMING: usize = 16 << 10;

/// Who polls the live pipes the delivery thread watches, and the reader's backstop timer. Part
/// of the reader's registry (one lock).
pub struct Handover {
    timer: Option<Arc<Backstop>>,
    live_pipes: Poller,
}

impl Handover {
    pub const fn new() -> Self {
        Handover {
            timer: None,
            live_pipes: Poller::Reader,
        }
    }

    /// A new reader thread (first use, or a forked child): a new timer, and the reader polls
    /// every pipe until the delivery thread says otherwise. Returns the timer for the reader to
    /// poll (owned here, so it outlives the thread).
    pub fn restart(&mut self) -> io::Result<Arc<Backstop>> {
        let timer = Arc::new(Backstop::new(BACKSTOP_NANOS)?);
        self.timer = Some(Arc::clone(&timer));
        self.live_pipes = Poller::Reader;
        Ok(timer)
    }

    /// Whether the delivery thread polls the pipes it watches (the reader leaves them alone).
    pub fn delivery_polls(&self) -> bool {
        self.live_pipes == Poller::Delivery
    }
}

/// The delivery thread is about to poll the live pipes itself.
pub fn delivery_polls() {
    let mut registry = lock_registry();
    if !registry.thread.is_ours() {
        return; // no reader in this process yet: it starts with the delivery thread not polling
    }
    if let Some(timer) = &registry.handover.timer {
        timer.disarm();
        registry.handover.live_pipes = Poller::Delivery;
    }
}

/// The delivery thread stops polling, to deliver `drained` bytes it read itself.
pub fn delivery_leaves(drained: usize) {
    let mut registry = lock_registry();
    if !registry.thread.is_ours() {
        return;
    }
    let Some(timer) = registry.handover.timer.clone() else {
        return;
    };
    registry.handover.live_pipes = Poller::Reader;
    if drained >= STREAMING {
        registry.thread.wake();
    } else {
        timer.arm();
    }
}
