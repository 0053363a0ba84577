//! A crash inside a block does not swallow the evidence. When the process dies on a fatal signal
//! (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL), the handler here points every redirected fd back
//! at where it pointed before the outer-most block (`dup2`), then writes there, outer-most block
//! first, what was captured and not yet handed to the user: a memory file (read with `pread`), a
//! live or tee pipe's contents, a live target's undelivered bytes. Then the previous handler, or
//! the default action, runs.
//!
//! The handler may only make async-signal-safe calls: no allocation, no lock that can block.
//! So the stack's state is mirrored in a fixed table of atomics (`track`/`retarget`/`untrack`,
//! called under the stack lock), and each slot owns its own copies of the fds it reads, so a
//! number it holds is never closed and reused behind its back.
//!
//! A slot being changed (`BUSY`) is waited for briefly; a slot being dumped (`DUMPING`) makes a
//! changer wait until the dump is over — the process is dying, and closing the saved fd would
//! make the handler write to a reused number.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::reader::Channel;

/// Active entries the handler can see; beyond this nesting depth (all fds, all threads), entries
/// are not covered.
const SLOTS: usize = 64;
/// A destination that accepts nothing for this long is given up (a pipe nobody reads must not
/// turn a crash into a hang).
const STALL_MS: libc::c_int = 2000;
/// What a destination is written in at a time: a pipe that polls writable takes this much
/// without blocking.
const WRITE_CHUNK: usize = 4096;
const FATAL: [libc::c_int; 5] = [libc::SIGSEGV, libc::SIGABRT, libc::SIGBUS, libc::SIGFPE, libc::SIGILL];

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
    /// A copy of the capture's memory file, owned by the slot; -1 if none.
    memfd: AtomicI32,
    /// A copy of the live pipe's read end (non-blocking), owned by the slot; -1 if none.
    pipe: AtomicI32,
    /// For a guard (`guard`): the slot's own copy of `saved`, closed with the slot; -1 otherwise.
    owned_saved: AtomicI32,
    /// `Arc::into_raw` of a live target's channel: its undelivered bytes. Null if none.
    channel: AtomicPtr<Channel>,
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
            channel: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
static ORDER: AtomicU64 = AtomicU64::new(1);
/// The thread id of the thread dumping now; 0 if none.
static DUMPER: AtomicI32 = AtomicI32::new(0);

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
    for fd in [&slot.memfd, &slot.pipe, &slot.owned_saved] {
        let fd = fd.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            crate::sys::close(fd);
        }
    }
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
    /// The memory file of a capture (not a tee's: that was shown as it arrived).
    pub memfd: Option<RawFd>,
    /// The read end of a live or tee block's pipe.
    pub pipe: Option<RawFd>,
    /// A live target's channel (not a tee's), whose undelivered bytes are shown too.
    pub channel: Option<&'a Arc<Channel>>,
}

/// Record what entry `id` holds, and install the signal handlers on first use. Best effort: a
/// failure only costs the crash dump of this block.
pub fn attach(id: u64, held: &Held<'_>) {
    install();
    ensure_signal_stack();
    let copy = |fd: Option<RawFd>| fd.and_then(|fd| crate::sys::dup_above_stdio(fd).ok());
    let (memfd, pipe) = (copy(held.memfd), copy(held.pipe));
    let Some(slot) = lock_slot(id) else {
        return;
    };
    slot.memfd
        .store(memfd.map_or(-1, std::os::fd::IntoRawFd::into_raw_fd), Ordering::Relaxed);
    slot.pipe
        .store(pipe.map_or(-1, std::os::fd::IntoRawFd::into_raw_fd), Ordering::Relaxed);
    if let Some(channel) = held.channel {
        let channel = Arc::into_raw(Arc::clone(channel)).cast_mut();
        slot.channel.store(channel, Ordering::Relaxed);
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
    let saved = crate::sys::dup_above_stdio(saved)?;
    let held = crate::sys::dup_above_stdio(held)?;
    install();
    let id = NEXT_GUARD.fetch_add(1, Ordering::Relaxed);
    track(id, fd, Some(&saved), crate::stack::generation());
    if let Some(slot) = lock_slot(id) {
        slot.owned_saved
            .store(std::os::fd::IntoRawFd::into_raw_fd(saved), Ordering::Relaxed);
        slot.memfd
            .store(std::os::fd::IntoRawFd::into_raw_fd(held), Ordering::Relaxed);
        slot.state.store(ACTIVE, Ordering::Release);
    }
    Ok(id)
}

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
fn install() {
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
fn ensure_signal_stack() {
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

/// Read-write scratch memory for the handler: no allocation there. Used only by the thread that
/// holds `DUMPER`.
struct Buffer(UnsafeCell<[u8; 64 << 10]>);
// SAFETY: only the thread holding DUMPER touches it.
unsafe impl Sync for Buffer {}
static BUFFER: Buffer = Buffer(UnsafeCell::new([0; 64 << 10]));

fn errno() -> libc::c_int {
    // SAFETY: errno is thread-local; reading it is async-signal-safe.
    unsafe { *libc::__errno_location() }
}

/// Write all of `data` to `fd`, giving up on a destination that stalls.
fn write_out(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd; poll is async-signal-safe.
        let ready = unsafe { libc::poll(&raw mut poll, 1, STALL_MS) };
        if ready == 0 || (ready < 0 && errno() != libc::EINTR) {
            return;
        }
        let len = data.len().min(WRITE_CHUNK);
        // SAFETY: `data` is valid for `len` bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), len) };
        if n > 0 {
            data = &data[n as usize..];
        } else if n == 0 || !matches!(errno(), libc::EINTR | libc::EAGAIN) {
            return;
        }
    }
}

/// Copy the memory file `memfd`, from its start, to `fd`.
fn dump_memfd(memfd: RawFd, fd: RawFd, buf: &mut [u8]) {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on an fd the slot owns; async-signal-safe.
    if unsafe { libc::fstat(memfd, &raw mut stat) } != 0 {
        return;
    }
    let size = stat.st_size;
    let mut offset: libc::off_t = 0;
    while offset < size {
        // SAFETY: `buf` is writable for its length; pread is async-signal-safe.
        let n = unsafe { libc::pread(memfd, buf.as_mut_ptr().cast(), buf.len(), offset) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return;
        }
        write_out(fd, &buf[..n as usize]);
        offset += n as libc::off_t;
    }
}

/// Copy what the (non-blocking) pipe holds now to `fd`.
fn dump_pipe(pipe: RawFd, fd: RawFd, buf: &mut [u8]) {
    loop {
        // SAFETY: `buf` is writable for its length; read is async-signal-safe.
        let n = unsafe { libc::read(pipe, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return;
        }
        write_out(fd, &buf[..n as usize]);
    }
}

/// A live target's undelivered bytes, if its lock can be had without blocking: the reader or the
/// delivery thread holds it only briefly, so it is tried for a while; if the crashing thread
/// itself holds it, the bytes are skipped rather than deadlocking.
fn dump_pending(channel: &Channel, fd: RawFd) {
    for _ in 0..50 {
        if channel.try_with_pending(|pending| write_out(fd, pending)) {
            return;
        }
        sleep_ms(1);
    }
}

/// Claim every active entry of this fork generation (`DUMPING`), waiting briefly for a slot that
/// another thread is changing. Returns how many, in `claimed`, in enter order (outer-most first).
fn claim_all(generation: u64, claimed: &mut [usize; SLOTS]) -> usize {
    let mut count = 0;
    for (index, slot) in TABLE.iter().enumerate() {
        for _ in 0..100 {
            let state = slot.state.load(Ordering::Acquire);
            if state != ACTIVE && state != BUSY {
                break;
            }
            if slot.generation.load(Ordering::Relaxed) != generation {
                break; // a forked parent's block: its sink and fds are the parent's business
            }
            if slot
                .state
                .compare_exchange(ACTIVE, DUMPING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                claimed[count] = index;
                count += 1;
                break;
            }
            // BUSY: another thread is changing it (or this thread was, when it crashed).
            sleep_ms(1);
        }
    }
    let order = |index: usize| TABLE[index].order.load(Ordering::Relaxed);
    // Insertion sort: no allocation, at most SLOTS entries.
    for i in 1..count {
        let mut j = i;
        while j > 0 && order(claimed[j - 1]) > order(claimed[j]) {
            claimed.swap(j - 1, j);
            j -= 1;
        }
    }
    count
}

/// What a dump changed for one fd, to undo if the process survives.
#[derive(Clone, Copy)]
struct Restored {
    fd: RawFd,
    /// A copy of the sink the fd pointed at; -1 if none could be made.
    spare: RawFd,
    /// Whether the fd now points at a destination (it was not closed before the outer-most block).
    open: bool,
}

/// End every active redirect of this process: point each fd back at its destination before the
/// outer-most block (all fds first, so that whatever writes next — faulthandler, the previous
/// handler — reaches it), then write there, outer-most block first, what each block holds.
/// That is write order: an outer capture holds what was written before the inner block began.
/// Blocks in between whose sink is a file or /dev/null hold nothing to show, and are not
/// written into. Returns the fds restored, and how many.
fn dump(claimed: &[usize], restored: &mut [Restored; SLOTS]) -> usize {
    // SAFETY: only the thread holding DUMPER gets here.
    let buf = unsafe { &mut *BUFFER.0.get() };
    let mut fds = 0;
    for &index in claimed {
        let slot = &TABLE[index];
        let fd = slot.fd.load(Ordering::Relaxed);
        if restored[..fds].iter().any(|r| r.fd == fd) {
            continue; // not the outer-most block of its fd
        }
        let saved = slot.saved.load(Ordering::Relaxed);
        // SAFETY: fcntl/dup2/close are async-signal-safe; `saved` is kept open by the stack entry,
        // which cannot end while the slot is DUMPING.
        let spare = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        let open = saved >= 0;
        // SAFETY: as above.
        unsafe {
            if open {
                libc::dup2(saved, fd);
            } else {
                libc::close(fd); // closed before the block: there is nowhere to show it
            }
        }
        restored[fds] = Restored { fd, spare, open };
        fds += 1;
    }
    for &index in claimed {
        let slot = &TABLE[index];
        let fd = slot.fd.load(Ordering::Relaxed);
        if !restored[..fds].iter().any(|r| r.fd == fd && r.open) {
            continue;
        }
        let channel = slot.channel.load(Ordering::Relaxed);
        if !channel.is_null() {
            // SAFETY: the slot holds a strong reference (from `attach`) until `untrack`.
            dump_pending(unsafe { &*channel }, fd);
        }
        let pipe = slot.pipe.load(Ordering::Relaxed);
        if pipe >= 0 {
            dump_pipe(pipe, fd, buf);
        }
        let memfd = slot.memfd.load(Ordering::Relaxed);
        if memfd >= 0 {
            dump_memfd(memfd, fd, buf);
        }
    }
    fds
}

/// The process survived the signal (a handler installed before ours handled it): point the fds
/// back at the blocks' sinks, and let the blocks go on.
fn reestablish(claimed: &[usize], restored: &[Restored]) {
    for restored in restored {
        if restored.spare >= 0 {
            // SAFETY: dup2/close on fds the handler made; async-signal-safe.
            unsafe {
                libc::dup2(restored.spare, restored.fd);
                libc::close(restored.spare);
            }
        }
    }
    for &index in claimed {
        TABLE[index].state.store(ACTIVE, Ordering::Release);
    }
}

extern "C" {
    static stdout: *mut libc::FILE;
    static stderr: *mut libc::FILE;
    fn ftrylockfile(stream: *mut libc::FILE) -> libc::c_int;
    fn funlockfile(stream: *mut libc::FILE);
    fn fflush_unlocked(stream: *mut libc::FILE) -> libc::c_int;
}

/// Bytes still in libc's `stdout`/`stderr` buffers (a `printf` without `fflush`, stdout not a
/// terminal) go to the restored fds too, after everything else: the last words of a native
/// library are often exactly these. Only when the stream's lock is free (`ftrylockfile`); glibc's
/// lock is recursive, so a crash inside `printf` in this thread flushes a buffer in mid-update —
/// which is why this runs last, when everything captured is already out.
fn flush_libc() {
    // SAFETY: glibc's standard streams are always initialised; the lock is only tried.
    unsafe {
        for stream in [stdout, stderr] {
            if ftrylockfile(stream) == 0 {
                fflush_unlocked(stream);
                funlockfile(stream);
            }
        }
    }
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
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
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
    let mut restored = [Restored {
        fd: -1,
        spare: -1,
        open: false,
    }; SLOTS];
    let (count, fds) = if owner {
        let count = claim_all(crate::stack::generation(), &mut claimed);
        let fds = dump(&claimed[..count], &mut restored);
        flush_libc();
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
    unsafe { *libc::__errno_location() = errno_before };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{capture, stack, sys};
    use std::os::fd::OwnedFd;

    fn slot(id: u64) -> Option<&'static Slot> {
        TABLE
            .iter()
            .find(|s| s.state.load(Ordering::Acquire) != FREE && s.id.load(Ordering::Acquire) == id)
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    #[test]
    fn guard_owns_its_copies_until_untracked() {
        let (read, write) = sys::pipe_cloexec().unwrap();
        let file = capture::create().unwrap();
        let id = guard(write.as_raw_fd(), write.as_raw_fd(), file.as_raw_fd()).unwrap();
        let entry = slot(id).unwrap();
        let (saved, held) = (entry.saved.load(Ordering::Relaxed), entry.memfd.load(Ordering::Relaxed));
        assert_eq!(entry.owned_saved.load(Ordering::Relaxed), saved);
        assert!(saved > 2 && held > 2 && saved != write.as_raw_fd() && held != file.as_raw_fd());
        retarget(id, Some(&read));
        assert_eq!(entry.saved.load(Ordering::Relaxed), read.as_raw_fd());
        untrack(id);
        assert!(slot(id).is_none());
        assert!(sys::access_mode(held).is_err(), "the slot's copy of the file is closed");
    }

    /// The dump itself, run in a forked child (it is async-signal-safe, so it may run there even
    /// though this test process has other threads): a capture on a private fd is shown on the
    /// fd's original destination, and the parent's block is untouched.
    #[test]
    fn dump_shows_a_capture_on_the_original_destination() {
        let (read, write) = sys::pipe_cloexec().unwrap();
        sys::set_nonblocking(read.as_raw_fd()).unwrap();
        let fd = write.as_raw_fd();
        let entered = stack::enter(fd, &stack::Sink::Capture, false).unwrap();
        let memfd = entered.capture.as_ref().unwrap();
        let held = Held {
            memfd: Some(memfd.as_raw_fd()),
            pipe: None,
            channel: None,
        };
        attach(entered.id, &held);
        sys::write_all(fd, b"last words", &mut 0).unwrap();
        // SAFETY: the child only makes async-signal-safe calls, then _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut claimed = [0; SLOTS];
            let mut restored = [Restored {
                fd: -1,
                spare: -1,
                open: false,
            }; SLOTS];
            let count = claim_all(stack::generation(), &mut claimed);
            dump(&claimed[..count], &mut restored);
            // SAFETY: leaving the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
        assert_eq!(read_all(&read), b"last words");
        assert_eq!(capture::size(memfd).unwrap(), 10, "the parent's capture is unchanged");
        stack::exit(fd, entered.id, false).unwrap();
        assert!(slot(entered.id).is_none());
    }
}
