//! The live blocks open in this process, seen from Python: the delivery thread's attached side,
//! synchronisation points per fd, and interpreter shutdown.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use super::{Block, Live, Mode};
use crate::channel::Channel;
use crate::{delivery, fd, locks, reader};

/// Live blocks still open (of any fork generation), oldest first. Locked only briefly, never
/// letting go of the GIL (`locks::lock`): the sections never run Python code.
pub(super) static ACTIVE: Mutex<Vec<Arc<Live>>> = Mutex::new(Vec::new());

/// Interpreter exit has begun: no delivery begins any more.
pub(super) static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// How long the exit handler waits for deliveries in progress to finish.
pub(super) const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The delivery thread's body (see `crate::delivery`).
pub(super) fn run(wake: &OwnedFd) {
    // The first work is awaited without Python: a thread started just before the interpreter
    // exits must not try to attach to it.
    let first = delivery::wait_for_work(wake);
    // Attached for the thread's whole life, detached while waiting: attaching anew per delivery
    // would create and destroy a Python thread state every time. `try_attach`: if the
    // interpreter is already gone, there is nobody left to deliver to.
    let _ = Python::try_attach(|py| {
        let mut channels = first;
        loop {
            for live in open_blocks_of(&channels) {
                // The only place a native thread runs Python. During interpreter shutdown, taking
                // the GIL back blocks forever (PyO3 parks the thread); nothing ever joins it.
                if !SHUTTING_DOWN.load(Ordering::Acquire) {
                    live.deliver(py, crate::stamped::Stamped::default(), false);
                }
            }
            // Only channels while detached: a `Live` held there could become the last reference
            // when its block ends, and dropping it without the GIL queues its Python objects in
            // PyO3's pool, under a lock that a `fork()` at that moment would leave held in the
            // child.
            channels = py.detach(|| delivery::wait_for_work(wake));
        }
    });
}

/// The open blocks of `channels`. A block that ended meanwhile is not there any more: its exit
/// delivered what its pipe held.
fn open_blocks_of(channels: &[Arc<Channel>]) -> Vec<Arc<Live>> {
    let generation = crate::fork::generation();
    locks::lock(&ACTIVE)
        .iter()
        .filter(|live| live.generation == generation && channels.iter().any(|c| Arc::ptr_eq(c, &live.channel)))
        .cloned()
        .collect()
}

/// A synchronisation point for every live block open on `fd` in this process, oldest first:
/// see `Live::sync`. Used by `FdWriter.flush()`.
pub fn sync_fd(py: Python<'_>, fd: RawFd) -> PyResult<()> {
    let open: Vec<Arc<Live>> = locks::lock(&ACTIVE)
        .iter()
        .filter(|live| live.fd == fd)
        .cloned()
        .collect();
    let mut first_error = None;
    for live in &open {
        if let Err(err) = live.sync(py, true, false) {
            first_error.get_or_insert(err);
        }
    }
    drop(open); // dropping the last reference may run Python code: not under a lock
    first_error.map_or(Ok(()), Err)
}

/// Whether a logger block of this process is open: without one, no switch can make a loop, and
/// the enter path needs no `fstat` to find out.
pub fn logger_open() -> bool {
    let generation = crate::fork::generation();
    locks::lock(&ACTIVE)
        .iter()
        .any(|live| live.generation == generation && matches!(live.mode, Mode::Logger { .. }))
}

/// The open logger block of this process whose pipe is `pipe` (an fd's identity): the fd it
/// redirects and its logger. Used to refuse a switch that would feed a logger its own records.
pub fn logger_reading(py: Python<'_>, pipe: (u64, u64)) -> Option<(RawFd, Py<PyAny>)> {
    let generation = crate::fork::generation();
    locks::lock(&ACTIVE)
        .iter()
        .find(|live| {
            live.generation == generation && matches!(live.mode, Mode::Logger { .. }) && live.channel.is_pipe(pipe)
        })
        .map(|live| (live.fd, live.object.clone_ref(py)))
}

/// For the fork handler (`crate::fork`): the delivery thread holds the delivery queue's lock
/// without the GIL, so `os.fork()` can happen while it holds a lock that a child needs to leave
/// an inherited block or to start a live block of its own. Never held while waiting for anything
/// else, so taking them before a fork cannot deadlock.
pub fn hold_for_fork() -> Vec<Box<dyn std::any::Any>> {
    vec![Box::new(locks::lock(&ACTIVE)), delivery::lock_for_fork()]
}

/// Interpreter shutdown with live blocks still open: stop delivering (the delivery thread may be
/// waiting for a GIL it will never get again), restore each block's fd, and write what is still
/// undelivered to its original destination. Later output (libc's buffers are flushed at exit)
/// then goes straight to the restored fd.
pub fn shutdown(py: Python<'_>) {
    SHUTTING_DOWN.store(true, Ordering::Release);
    let open: Vec<Arc<Live>> = std::mem::take(&mut *locks::lock(&ACTIVE));
    for live in open.iter().rev() {
        let ours = live.generation == crate::fork::generation();
        if ours {
            // A delivery in progress may have let go of the GIL (a target written in Python
            // does, and so does PyO3's first use of an interned name): let it finish, so the
            // bytes it holds reach the target, and keep the turn so that no other delivery
            // begins. Bounded: a target that never returns must not hang the exit.
            let _ = live.claim(py, true);
        }
        let (entry, original) = match std::mem::replace(&mut *crate::binding::lock(py, &live.block), Block::Left) {
            Block::Open { entry, original } => (entry, original),
            Block::Made | Block::Left => continue,
        };
        let _ = crate::stack::exit(live.fd, entry, false);
        if !ours {
            // A forked child exiting inside its parent's block: the pipe and its pending bytes
            // are the parent's (and its lock may be held by the parent's reader): fds only.
            continue;
        }
        let late = original
            .as_ref()
            .and_then(|fd| fd::dup_above_stdio(fd.as_raw_fd()).ok());
        let rest = reader::finish_block(&live.channel, late);
        if let Some(original) = &original {
            let mut written = 0;
            while let Err(err) = fd::write_all(original.as_raw_fd(), &rest.bytes, &mut written) {
                if err.kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
        }
    }
}
