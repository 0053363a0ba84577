//! Locking that survives a panic. A panic while a lock is held (a bug, or an allocation failure
//! in a signal-free path) poisons it; every later user would then panic too, and a panic in the
//! reader or at a block's exit leaves fd 1 or 2 switched for good. The data behind our locks is
//! always left consistent between statements, so the guard is taken as is.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `mutex`, ignoring poison. Never lets go of the GIL: only for sections that are short and
/// never run Python code (the binding has `binding::lock` for waits that may be long).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
