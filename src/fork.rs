//! `fork()` safety. A lock held by another thread at `fork()` stays locked forever in the child,
//! so the core takes its locks before the fork and releases them on both sides. Unflushed libc
//! output would be written twice (once per process), so everything is flushed first.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;

use crate::{flush, reader, stack};

thread_local! {
    // The guards taken in `prepare`, dropped (unlocked) by `parent`/`child` in the same thread.
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn prepare() {
    flush::flush_native();
    let stacks = stack::lock_stacks();
    let runtimes = flush::lock_runtimes();
    let registry = reader::lock_registry();
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        held.push(Box::new(stacks));
        held.push(Box::new(runtimes));
        held.push(Box::new(registry));
    });
}

extern "C" fn parent() {
    HELD.with(|held| held.borrow_mut().clear());
}

extern "C" fn child() {
    stack::forked_child();
    HELD.with(|held| held.borrow_mut().clear());
}

/// Register the fork handlers, once per process.
pub fn install_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers are plain functions that live for the whole process.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    });
}
