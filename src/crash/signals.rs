//! The signal side: installing the handlers (once, keeping the previous actions to chain to), a
//! signal stack per thread that enters a block, and the handler itself.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::dump::{claim_all, dump, errno, flush_libc, reestablish, Restored};
use super::{sleep_ms, SLOTS};

/// The signals whose default action ends the process with a core dump, and that a crash raises.
const FATAL: [libc::c_int; 5] = [libc::SIGSEGV, libc::SIGABRT, libc::SIGBUS, libc::SIGFPE, libc::SIGILL];

/// The thread id of the thread dumping now; 0 if none.
static DUMPER: AtomicI64 = AtomicI64::new(0);

/// The handlers' previous actions, written once before the handlers are installed.
struct Previous(UnsafeCell<[libc::sigaction; FATAL.len()]>);
// SAFETY: written only in `install` before our handler for that signal exists, read-only after.
unsafe impl Sync for Previous {}

// SAFETY: an all-zero sigaction is a valid value (SIG_DFL, no flags, empty mask).
static PREVIOUS: Previous = Previous(UnsafeCell::new(unsafe { std::mem::zeroed() }));
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn our_action() -> libc::sigaction {
    // SAFETY: an all-zero sigaction is a valid value; the mask is then emptied properly.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = on_fatal as *const () as libc::sighandler_t;
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: a valid sigset_t to fill.
    unsafe { libc::sigemptyset(&raw mut ours.sa_mask) };
    ours
}

/// Install the handlers, once per process. The previous actions are kept to chain to.
pub(super) fn install() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let ours = our_action();
    for (index, &signal) in FATAL.iter().enumerate() {
        // SAFETY: plain sigaction calls with valid pointers; PREVIOUS[index] is written before our
        // handler for `signal` is installed, and never again.
        unsafe {
            let previous = &mut (*PREVIOUS.0.get())[index];
            if libc::sigaction(signal, ptr::null(), previous) != 0 || previous.sa_sigaction == libc::SIG_IGN {
                continue; // an ignored signal is left alone
            }
            libc::sigaction(signal, &raw const ours, ptr::null_mut());
        }
    }
}

/// Put our handler back for `signal` after the previous one handled it, unless that handler
/// changed the action meanwhile.
fn reinstall(signal: libc::c_int, previous: &libc::sigaction) {
    // SAFETY: sigaction is async-signal-safe; valid pointers.
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, ptr::null(), &raw mut now);
        if now.sa_sigaction == previous.sa_sigaction {
            let ours = our_action();
            libc::sigaction(signal, &raw const ours, ptr::null_mut());
        }
    }
}

/// A signal stack for this thread, set while the thread lives.
struct SignalStack(Option<Box<[u8]>>);

impl Drop for SignalStack {
    fn drop(&mut self) {
        if let Some(memory) = &self.0 {
            // Only if it is still ours: disable before the memory goes.
            // SAFETY: sigaltstack with valid pointers.
            unsafe {
                let mut now: libc::stack_t = std::mem::zeroed();
                libc::sigaltstack(ptr::null(), &raw mut now);
                if now.ss_sp == memory.as_ptr().cast_mut().cast() {
                    let off = libc::stack_t {
                        ss_sp: ptr::null_mut(),
                        ss_flags: libc::SS_DISABLE,
                        ss_size: 0,
                    };
                    libc::sigaltstack(&raw const off, ptr::null_mut());
                }
            }
        }
    }
}

thread_local! {
    static SIGNAL_STACK: std::cell::RefCell<Option<SignalStack>> = const { std::cell::RefCell::new(None) };
}

/// A stack overflow can only be handled on a separate signal stack (`SA_ONSTACK`): give the thread
/// entering a block one if it has none (faulthandler does the same for the thread enabling it).
/// Once per thread; freed when the thread ends.
pub(super) fn ensure_signal_stack() {
    const SIZE: usize = 64 << 10;
    let _ = SIGNAL_STACK.try_with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_some() {
            return;
        }
        // SAFETY: sigaltstack with valid pointers; the memory lives in the thread-local until
        // the thread ends, and is unregistered before it is freed.
        unsafe {
            let mut now: libc::stack_t = std::mem::zeroed();
            if libc::sigaltstack(ptr::null(), &raw mut now) != 0 || now.ss_flags & libc::SS_DISABLE == 0 {
                *cell = Some(SignalStack(None)); // the thread has one already
                return;
            }
            let mut memory = vec![0u8; SIZE].into_boxed_slice();
            let stack = libc::stack_t {
                ss_sp: memory.as_mut_ptr().cast(),
                ss_flags: 0,
                ss_size: SIZE,
            };
            let ours = libc::sigaltstack(&raw const stack, ptr::null_mut()) == 0;
            *cell = Some(SignalStack(ours.then_some(memory)));
        }
    });
}

fn previous(signal: libc::c_int) -> Option<libc::sigaction> {
    let index = FATAL.iter().position(|&s| s == signal)?;
    // SAFETY: read-only after `install`.
    Some(unsafe { (*PREVIOUS.0.get())[index] })
}

/// Hand the signal on: restore the previous action (this handler is one-shot), then let the
/// default action run (re-raised: it is blocked here, so it is delivered when the handler
/// returns), or call the previous handler. Returns whether the process will die on return.
fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) -> bool {
    let Some(previous) = previous(signal) else {
        return false;
    };
    // SAFETY: sigaction/raise/sigpending are async-signal-safe; the previous handler is called the
    // way the kernel would have called it.
    unsafe {
        libc::sigaction(signal, &raw const previous, ptr::null_mut());
        match previous.sa_sigaction {
            libc::SIG_DFL => {
                libc::raise(signal);
                return true;
            }
            libc::SIG_IGN => return false,
            handler if previous.sa_flags & libc::SA_SIGINFO != 0 => {
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                    std::mem::transmute(handler);
                handler(signal, info, context);
            }
            handler => {
                let handler: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
                handler(signal);
            }
        }
        // The previous handler returned. If it re-raised the signal with the default action
        // (faulthandler does), the process dies when this handler returns.
        let mut pending: libc::sigset_t = std::mem::zeroed();
        let mut now: libc::sigaction = std::mem::zeroed();
        libc::sigpending(&raw mut pending);
        libc::sigaction(signal, ptr::null(), &raw mut now);
        libc::sigismember(&raw const pending, signal) == 1 && now.sa_sigaction == libc::SIG_DFL
    }
}

extern "C" fn on_fatal(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let errno_before = errno();
    let me = crate::platform::thread_id();
    // One thread dumps; another thread crashing meanwhile waits for it (the process is dying).
    // The dumping thread itself crashing again skips straight to the chain.
    let owner = loop {
        match DUMPER.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break true,
            Err(holder) if holder == me => break false,
            Err(_) => sleep_ms(1),
        }
    };
    let mut claimed = [0; SLOTS];
    let mut restored = [Restored::NONE; SLOTS];
    let (count, fds) = if owner {
        let count = claim_all(crate::fork::generation(), &mut claimed);
        let fds = dump(&claimed[..count], &mut restored);
        flush_libc();
        crate::linebuf::write_at_crash();
        (count, fds)
    } else {
        (0, 0)
    };
    let dies = chain(signal, info, context);
    if !dies && owner {
        reestablish(&claimed[..count], &restored[..fds]);
        // SAFETY: reading si_code of the siginfo the kernel passed (a handler chaining to us by
        // hand may pass none: then the signal counts as sent).
        let sent = info.is_null() || unsafe { (*info).si_code } <= 0;
        // A signal sent by a process (kill, raise) may come again and be fatal then: stay in
        // the chain. After a fault a handler returned from, stand aside: re-dumping on every
        // retried instruction would only repeat the same output.
        if let (true, Some(previous)) = (sent, previous(signal)) {
            reinstall(signal, &previous);
        }
    }
    if owner {
        DUMPER.store(0, Ordering::Release);
    }
    // SAFETY: restoring the interrupted code's errno.
    unsafe { *crate::platform::errno_location() = errno_before };
}
