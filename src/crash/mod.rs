//! A crash inside a block does not swallow the evidence. When the process dies on a fatal signal
//! (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL), the handler here points every redirected fd back
//! at where it pointed before the outer-most block (`dup2`), then writes there, outer-most block
//! first, what was captured and not yet handed to the user: a memory file (read with `pread`), a
//! live or tee pipe's contents, a live target's undelivered bytes. Then the previous handler, or
//! the default action, runs.
//!
//! The handler may only make async-signal-safe calls: no allocation, no lock that can block.
//! So the stack's state is mirrored in a fixed table of atomics (`track`/`retarget`/`untrack`,
//! called under the stack lock for the stack's entries; a `guard` has a slot of its own). A
//! number a slot holds is never closed and reused behind its back: it either owns a copy, or the
//! fd's owner keeps it open until the entry is untracked (the stack's saved fd; a capture's memory
//! file, which its `Captured` closes only after the block's exit).
//!
//! A slot being changed (`BUSY`) is waited for briefly; a slot being dumped (`DUMPING`) makes a
//! changer wait until the dump is over — the process is dying, and closing the saved fd would
//! make the handler write to a reused number.

mod dump;
mod signals;

use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::reader::Channel;
use signals::{ensure_signal_stack, install};

/// Active entries the handler can see; beyond this nesting depth (all fds, all threads), entries
/// are not covered.
const SLOTS: usize = 64;

const FREE: u32 = 0;
const BUSY: u32 = 1;
const ACTIVE: u32 = 2;
const DUMPING: u32 = 3;

struct Slot {
    state: AtomicU32,
    id: AtomicU64,
    /// Enter order, across fds and threads: the highest is the inner-most.
    order: AtomicU64,
    generation: AtomicU64,
    fd: AtomicI32,
    /// The stack entry's saved fd (owned by the stack); -1 when the fd was closed before.
    saved: AtomicI32,
    /// The capture's memory file, kept open by its owner until `untrack` (for a guard: the slot's
    /// own copy, closed with the slot); -1 if none.
    memfd: AtomicI32,
    /// A copy of the live pipe's read end (non-blocking), owned by the slot; -1 if none.
    pipe: AtomicI32,
    /// For a guard (`guard`): the slot's own copies of `saved` and `memfd`, closed with the
    /// slot; -1 otherwise.
    owned_saved: AtomicI32,
    owned_held: AtomicI32,
    /// `Arc::into_raw` of the block's channel (live or tee). Null if none.
    channel: AtomicPtr<Channel>,
    /// Whether the channel's undelivered bytes are shown (a live target's; a tee's were already
    /// copied to the original destination). Either way the dump first waits for a thread that
    /// is draining the pipe to finish, so bytes it took are forwarded before the rest is shown.
    show_pending: AtomicBool,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            state: AtomicU32::new(FREE),
            id: AtomicU64::new(0),
            order: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            fd: AtomicI32::new(-1),
            saved: AtomicI32::new(-1),
            memfd: AtomicI32::new(-1),
            pipe: AtomicI32::new(-1),
            owned_saved: AtomicI32::new(-1),
            owned_held: AtomicI32::new(-1),
            channel: AtomicPtr::new(ptr::null_mut()),
            show_pending: AtomicBool::new(false),
        }
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
static ORDER: AtomicU64 = AtomicU64::new(1);
fn raw(fd: Option<&impl AsRawFd>) -> RawFd {
    fd.map_or(-1, AsRawFd::as_raw_fd)
}

fn sleep_ms(ms: i64) {
    let time = libc::timespec {
        tv_sec: 0,
        tv_nsec: ms * 1_000_000,
    };
    // SAFETY: a valid timespec; nanosleep is async-signal-safe.
    unsafe { libc::nanosleep(&raw const time, ptr::null_mut()) };
}

/// Take the slot of entry `id` for a change: `ACTIVE` -> `BUSY`. Waits while it is being dumped.
fn lock_slot(id: u64) -> Option<&'static Slot> {
    for slot in &TABLE {
        if slot.state.load(Ordering::Acquire) == FREE || slot.id.load(Ordering::Acquire) != id {
            continue;
        }
        loop {
            match slot
                .state
                .compare_exchange(ACTIVE, BUSY, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if slot.id.load(Ordering::Acquire) == id => return Some(slot),
                Ok(_) => {
                    slot.state.store(ACTIVE, Ordering::Release);
                    break; // reused for another entry meanwhile
                }
                Err(FREE) => break,
                Err(DUMPING) => sleep_ms(1),
                Err(_) => std::thread::yield_now(),
            }
        }
    }
    None
}

/// In a forked child: a slot that another thread of the parent was changing at the fork (`attach`
/// runs outside the stack lock) would stay `BUSY` forever, and leaving the inherited block would
/// wait for it. That thread does not exist here: the slot is as complete as it will ever be.
pub fn forked_child() {
    for slot in &TABLE {
        let _ = slot
            .state
            .compare_exchange(BUSY, ACTIVE, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// A new entry `id` on `fd` (called by `stack::enter` under the stack lock).
pub fn track(id: u64, fd: RawFd, saved: Option<&impl AsRawFd>, generation: u64) {
    for slot in &TABLE {
        if slot
            .state
            .compare_exchange(FREE, BUSY, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        slot.id.store(id, Ordering::Relaxed);
        slot.order
            .store(ORDER.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        slot.generation.store(generation, Ordering::Relaxed);
        slot.fd.store(fd, Ordering::Relaxed);
        slot.saved.store(raw(saved), Ordering::Relaxed);
        slot.state.store(ACTIVE, Ordering::Release);
        return;
    }
}

/// Entry `id` now restores to `saved` (an out-of-order exit relinked the stack). Must be called
/// before the previous saved fd is closed.
pub fn retarget(id: u64, saved: Option<&impl AsRawFd>) {
    if let Some(slot) = lock_slot(id) {
        slot.saved.store(raw(saved), Ordering::Relaxed);
        slot.state.store(ACTIVE, Ordering::Release);
    }
}

/// Entry `id` has ended (called by `stack::exit` before its saved fd is closed).
pub fn untrack(id: u64) {
    let Some(slot) = lock_slot(id) else {
        return;
    };
    for fd in [&slot.pipe, &slot.owned_saved, &slot.owned_held] {
        let fd = fd.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            crate::fd::close(fd);
        }
    }
    slot.memfd.store(-1, Ordering::Relaxed);
    let channel = slot.channel.swap(ptr::null_mut(), Ordering::Relaxed);
    slot.saved.store(-1, Ordering::Relaxed);
    slot.state.store(FREE, Ordering::Release);
    if !channel.is_null() {
        // SAFETY: the pointer came from `Arc::into_raw` in `attach`, and was swapped out above.
        drop(unsafe { Arc::from_raw(channel) });
    }
}

/// What a block holds that the user has not seen yet.
pub struct Held<'a> {
    /// The memory file of a capture (not a tee's: that was shown as it arrived). The slot reads
    /// it without a copy of its own (one `dup` and one `close` less per block): the caller must
    /// keep it open until the entry is untracked (`stack::exit` does that before returning).
    pub memfd: Option<RawFd>,
    /// The read end of a live or tee block's pipe.
    pub pipe: Option<RawFd>,
    /// The block's channel (live or tee): a thread draining it is waited for before the pipe is
    /// read.
    pub channel: Option<&'a Arc<Channel>>,
    /// Show the channel's undelivered bytes too (a live target's, not a tee's).
    pub show_pending: bool,
}

/// Record what entry `id` holds, and install the signal handlers on first use. Best effort: a
/// failure only costs the crash dump of this block.
pub fn attach(id: u64, held: &Held<'_>) {
    install();
    ensure_signal_stack();
    // The pipe's read end is the channel's, which may close it at EOF while the block lasts.
    let pipe = held.pipe.and_then(|fd| crate::fd::dup_above_stdio(fd).ok());
    let Some(slot) = lock_slot(id) else {
        return;
    };
    slot.memfd.store(held.memfd.unwrap_or(-1), Ordering::Relaxed);
    slot.pipe
        .store(pipe.map_or(-1, std::os::fd::IntoRawFd::into_raw_fd), Ordering::Relaxed);
    if let Some(channel) = held.channel {
        let channel = Arc::into_raw(Arc::clone(channel)).cast_mut();
        slot.channel.store(channel, Ordering::Relaxed);
        slot.show_pending.store(held.show_pending, Ordering::Relaxed);
    }
    slot.state.store(ACTIVE, Ordering::Release);
}

/// Guards have ids of their own, apart from the stack's.
static NEXT_GUARD: AtomicU64 = AtomicU64::new(1 << 63);

/// A redirect made by someone else (pytest's own fd capture) whose captured bytes a crash should
/// show too: `fd` points at the file `held` and pointed at `saved` before. The table keeps its own
/// copies of both. Entered before the library's own blocks, it is their outer-most: on a crash
/// `fd` goes back to `saved`, and `held` (from its start), then the blocks' bytes, are shown there.
pub fn guard(fd: RawFd, saved: RawFd, held: RawFd) -> std::io::Result<u64> {
    let saved = crate::fd::dup_above_stdio(saved)?;
    let held = crate::fd::dup_above_stdio(held)?;
    install();
    let id = NEXT_GUARD.fetch_add(1, Ordering::Relaxed);
    track(id, fd, Some(&saved), crate::fork::generation());
    if let Some(slot) = lock_slot(id) {
        slot.owned_saved
            .store(std::os::fd::IntoRawFd::into_raw_fd(saved), Ordering::Relaxed);
        let held = std::os::fd::IntoRawFd::into_raw_fd(held);
        slot.owned_held.store(held, Ordering::Relaxed);
        slot.memfd.store(held, Ordering::Relaxed);
        slot.state.store(ACTIVE, Ordering::Release);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd;

    fn slot(id: u64) -> Option<&'static Slot> {
        TABLE
            .iter()
            .find(|s| s.state.load(Ordering::Acquire) != FREE && s.id.load(Ordering::Acquire) == id)
    }

    #[test]
    fn guard_owns_its_copies_until_untracked() {
        let (read, write) = fd::pipe_cloexec().unwrap();
        // The held file is a pipe's write end, so that the slot's copy being closed shows as EOF
        // (asking whether its number is closed would race with tests opening fds in other threads).
        let (held_read, held_write) = fd::pipe_nonblocking().unwrap();
        let id = guard(write.as_raw_fd(), write.as_raw_fd(), held_write.as_raw_fd()).unwrap();
        let entry = slot(id).unwrap();
        let (saved, held) = (entry.saved.load(Ordering::Relaxed), entry.memfd.load(Ordering::Relaxed));
        assert_eq!(entry.owned_saved.load(Ordering::Relaxed), saved);
        assert!(saved > 2 && held > 2 && saved != write.as_raw_fd() && held != held_write.as_raw_fd());
        retarget(id, Some(&read));
        assert_eq!(entry.saved.load(Ordering::Relaxed), read.as_raw_fd());
        drop(held_write);
        let mut byte = [0u8; 1];
        // SAFETY: reading into a local buffer from a non-blocking pipe we own.
        let still_open = unsafe { libc::read(held_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        assert_eq!(still_open, -1, "the slot's copy keeps the pipe open (EAGAIN, not EOF)");
        untrack(id);
        assert!(slot(id).is_none());
        // SAFETY: as above.
        let closed = unsafe { libc::read(held_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        assert_eq!(closed, 0, "the slot's copy of the held file is closed: EOF");
    }
}
