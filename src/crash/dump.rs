//! What the handler does with the table: claim every active entry, point the fds back, write
//! out what each block holds — async-signal-safe calls only, no allocation.

use std::cell::UnsafeCell;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use super::{sleep_ms, ACTIVE, BUSY, DUMPING, SLOTS, TABLE};
use crate::reader::Channel;

/// A destination that accepts nothing for this long is given up (a pipe nobody reads must not
/// turn a crash into a hang).
const STALL_MS: libc::c_int = 2000;
/// What a destination is written in at a time: a pipe that polls writable takes this much
/// without blocking.
const WRITE_CHUNK: usize = 4096;

/// Read-write scratch memory for the handler: no allocation there. Used only by the thread that
/// holds `DUMPER` (signals.rs).
struct Buffer(UnsafeCell<[u8; 64 << 10]>);
// SAFETY: only the thread holding DUMPER touches it.
unsafe impl Sync for Buffer {}
static BUFFER: Buffer = Buffer(UnsafeCell::new([0; 64 << 10]));

pub(super) fn errno() -> libc::c_int {
    // SAFETY: errno is thread-local; reading it is async-signal-safe.
    unsafe { *crate::platform::errno_location() }
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

/// What a block's pipe holds, preceded by a live target's undelivered bytes (with `show`). Done
/// holding the channel's lock when it can be had without blocking: the reader and the delivery
/// thread hold it only while they read and forward a piece, so it is tried for a while, and
/// holding it keeps them from taking bytes out of the pipe while it is shown (a tee's copy in
/// flight would land after the rest). If the crashing thread itself holds it, the pending bytes
/// are skipped rather than deadlocking, and the pipe is shown anyway.
fn dump_channel(channel: &Channel, show: bool, pipe: RawFd, fd: RawFd, buf: &mut [u8]) {
    for _ in 0..50 {
        if channel.try_with_pending(|pending| {
            if show {
                write_out(fd, pending);
            }
            if pipe >= 0 {
                dump_pipe(pipe, fd, buf);
            }
        }) {
            return;
        }
        sleep_ms(1);
    }
    if pipe >= 0 {
        dump_pipe(pipe, fd, buf);
    }
}

/// Claim every active entry of this fork generation (`DUMPING`), waiting briefly for a slot that
/// another thread is changing. Returns how many, in `claimed`, in enter order (outer-most first).
pub(super) fn claim_all(generation: u64, claimed: &mut [usize; SLOTS]) -> usize {
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
pub(super) struct Restored {
    pub(super) fd: RawFd,
    /// A copy of the sink the fd pointed at; -1 if none could be made.
    pub(super) spare: RawFd,
    /// Whether the fd now points at a destination (it was not closed before the outer-most block).
    pub(super) open: bool,
}

impl Restored {
    /// An unused entry of the fixed array a dump fills (no allocation in a signal handler).
    pub(super) const NONE: Restored = Restored {
        fd: -1,
        spare: -1,
        open: false,
    };
}

/// End every active redirect of this process: point each fd back at its destination before the
/// outer-most block (all fds first, so that whatever writes next — faulthandler, the previous
/// handler — reaches it), then write there, outer-most block first, what each block holds.
/// That is write order: an outer capture holds what was written before the inner block began.
/// Blocks in between whose sink is a file or /dev/null hold nothing to show, and are not
/// written into. Returns the fds restored, and how many.
pub(super) fn dump(claimed: &[usize], restored: &mut [Restored; SLOTS]) -> usize {
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
        let pipe = slot.pipe.load(Ordering::Relaxed);
        if !channel.is_null() {
            let show = slot.show_pending.load(Ordering::Relaxed);
            // SAFETY: the slot holds a strong reference (from `attach`) until `untrack`.
            dump_channel(unsafe { &*channel }, show, pipe, fd, buf);
        } else if pipe >= 0 {
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
pub(super) fn reestablish(claimed: &[usize], restored: &[Restored]) {
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
    fn ftrylockfile(stream: *mut libc::FILE) -> libc::c_int;
    fn funlockfile(stream: *mut libc::FILE);
}

/// Bytes still in libc's `stdout`/`stderr` buffers (a `printf` without `fflush`, stdout not a
/// terminal) go to the restored fds too, after everything else: the last words of a native
/// library are often exactly these. Only when the stream's lock is free (`ftrylockfile`); the
/// lock is recursive (POSIX), so a crash inside `printf` in this thread flushes a buffer in
/// mid-update — which is why this runs last, when everything captured is already out. (`fflush`
/// takes the lock we hold once more; `fflush_unlocked` is not in macOS's libc.)
pub(super) fn flush_libc() {
    // SAFETY: libc's standard streams are always initialised; the lock is only tried.
    unsafe {
        for stream in [crate::platform::c_stdout(), crate::platform::c_stderr()] {
            if ftrylockfile(stream) == 0 {
                libc::fflush(stream);
                funlockfile(stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crash::{attach, Held};
    use crate::{fd, memfile, stack};
    use std::os::fd::AsRawFd;

    /// The dump itself, run in a forked child (it is async-signal-safe, so it may run there even
    /// though this test process has other threads): a capture on a private fd is shown on the
    /// fd's original destination, and the parent's block is untouched.
    #[test]
    fn dump_shows_a_capture_on_the_original_destination() {
        let (read, write) = fd::pipe_cloexec().unwrap();
        fd::set_nonblocking(read.as_raw_fd()).unwrap();
        let fd = write.as_raw_fd();
        let entered = stack::enter(fd, &stack::Sink::Capture, false).unwrap();
        let memfd = entered.capture.as_ref().unwrap();
        let held = Held {
            memfd: Some(memfd.as_raw_fd()),
            pipe: None,
            channel: None,
            show_pending: false,
        };
        attach(entered.id, &held);
        fd::write_all(fd, b"last words", &mut 0).unwrap();
        // SAFETY: the child only makes async-signal-safe calls, then _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut claimed = [0; SLOTS];
            let mut restored = [Restored::NONE; SLOTS];
            let count = claim_all(crate::fork::generation(), &mut claimed);
            dump(&claimed[..count], &mut restored);
            // SAFETY: leaving the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
        assert_eq!(crate::fd::testing::read_available(&read), b"last words");
        assert_eq!(memfile::size(memfd).unwrap(), 10, "the parent's capture is unchanged");
        stack::exit(fd, entered.id, false).unwrap();
        assert!(crate::crash::lock_slot(entered.id).is_none());
    }
}
