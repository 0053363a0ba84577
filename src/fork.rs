//! `fork()` safety. A lock held by another thread at `fork()` stays locked forever in the child,
//! so the core takes its locks before the fork and releases them on both sides. Unflushed libc
//! output would be written twice (once per process), so everything is flushed first.
//!
//! Which locks: every lock that a thread may hold while it does not hold the GIL (the reader, the
//! delivery thread while it polls, a switch in progress), and that a child may take. The binding's
//! locks taken only while attached to Python, whose sections never let go of the GIL, are free
//! whenever `os.fork()` runs (the forking thread holds the GIL); a child never touches the locks
//! of the parent's live pipes or deliveries (it only restores fds when it leaves their blocks).

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

use crate::{flush, reader, stack};

/// Bumped in every forked child, so what was made before the fork (stack entries, reader and
/// delivery threads, live blocks) is recognised there as the parent's.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation: changes in every forked child.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

thread_local! {
    // The guards taken in `prepare`, dropped (unlocked) by `parent`/`child` in the same thread.
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Takes the binding's locks of that kind, after the core's (in this order).
type HoldMore = fn() -> Vec<Box<dyn Any>>;
static HOLD_MORE: OnceLock<HoldMore> = OnceLock::new();

extern "C" fn prepare() {
    flush::flush_native();
    let stacks = stack::lock_stacks();
    let runtimes = flush::lock_runtimes();
    let registry = reader::lock_registry();
    let more = HOLD_MORE.get().map(|hold| hold()).unwrap_or_default();
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        held.push(Box::new(stacks));
        held.push(Box::new(runtimes));
        held.push(Box::new(registry));
        held.extend(more);
    });
}

extern "C" fn parent() {
    HELD.with(|held| held.borrow_mut().clear());
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    crate::crash::forked_child();
    HELD.with(|held| held.borrow_mut().clear());
    crate::linebuf::forked_child();
}

/// Register the fork handlers, once per process. `hold_more` takes the binding's locks that
/// threads hold without the GIL.
pub fn install_handlers(hold_more: HoldMore) {
    static ONCE: Once = Once::new();
    let _ = HOLD_MORE.set(hold_more);
    ONCE.call_once(|| {
        // SAFETY: the handlers are plain functions that live for the whole process.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    });
}
