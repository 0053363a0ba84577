//! Linux: the calls only Linux has, each with a reason to prefer it over the portable way.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A new, empty memory file, close-on-exec and `O_APPEND`. memfd: no writable directory needed
/// (containers often lack one), and captured output never reaches a disk.
pub fn memory_file() -> io::Result<OwnedFd> {
    // The raw syscall, not glibc's wrapper: the wrapper is glibc 2.27+, and the manylinux_2_17
    // wheel must load on older glibc (the ENOSYS fallback below covers kernels before 3.17).
    let name = c"fdredirect-capture".as_ptr();
    // SAFETY: a literal name; memfd_create returns a new fd we own (or -1).
    let fd = unsafe { libc::syscall(libc::SYS_memfd_create, name, libc::MFD_CLOEXEC) } as libc::c_int;
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOSYS) => super::tempfile::unlinked(), // a kernel before 3.17
            _ => Err(err),
        };
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A memfd is created without O_APPEND; its settable status flags are all off, so one F_SETFL.
    // SAFETY: F_SETFL only changes the status flags of `fd`.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_APPEND) })?;
    Ok(fd)
}

/// A pipe whose ends are close-on-exec from the start (no window for a `fork`+`exec` elsewhere).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills `fds` with two new fds that we own.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds were just created by pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The reader's backstop (see `crate::reader`): a timer fd the reader polls, so that arming it
/// never wakes the reader before it expires.
pub struct Backstop {
    timer: OwnedFd,
    nanos: i64,
}

impl Backstop {
    /// A disarmed backstop that expires `nanos` after each `arm`.
    pub fn new(nanos: i64) -> io::Result<Self> {
        let flags = libc::TFD_CLOEXEC | libc::TFD_NONBLOCK;
        // SAFETY: timerfd_create returns a new fd that we own.
        let fd = check(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) })?;
        // SAFETY: `fd` was just returned by timerfd_create.
        let timer = crate::fd::lift_above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })?;
        Ok(Backstop { timer, nanos })
    }

    pub fn arm(&self) {
        self.set(self.nanos);
    }

    pub fn disarm(&self) {
        self.set(0);
    }

    fn set(&self, nanos: i64) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: nanos / 1_000_000_000,
                tv_nsec: nanos % 1_000_000_000,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for. Errors cannot
        // happen on a valid timer fd with a valid value.
        unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &raw const spec, std::ptr::null_mut()) };
    }

    /// The fd the reader polls: readable once the backstop has expired (read it to rearm).
    pub fn fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }

    /// The reader's poll timeout in ms: never, the timer fd wakes it.
    pub fn poll_timeout(&self, _delivery_polls: bool) -> libc::c_int {
        -1
    }
}

/// Opaque: changes whenever an object is loaded or unloaded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LoaderStamp(u64, u64);

/// The loader's (adds, subs) counters: the same in every entry, so the first one is enough.
pub fn loader_stamp() -> LoaderStamp {
    let mut stamp = LoaderStamp(0, 0);
    super::elf::for_each_object(|info| {
        stamp = LoaderStamp(info.dlpi_adds, info.dlpi_subs);
        false
    });
    stamp
}

/// Paths of every loaded object.
pub fn loaded_objects() -> Vec<CString> {
    super::elf::object_names()
}

/// Whether `release_pages` frees memory (the unit tests check the contents are gone).
#[cfg(test)]
pub const RELEASES_PAGES: bool = true;

/// Free the pages of `[offset, offset + len)` of a memory file whose bytes were copied out.
/// Best effort: a file system without hole punching only costs memory, not correctness.
pub fn release_pages(fd: RawFd, offset: usize, len: usize) {
    // SAFETY: fallocate on the caller's fd; the range's contents are no longer needed.
    unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        );
    }
}

/// Fault in the pages of `buf` with one call (`MADV_POPULATE_WRITE`, Linux 5.14+) instead of one
/// page fault per 4 KiB inside the copy: for a fresh 256 MiB buffer, faulting pages in was the
/// largest single cost of the read-back (measured 175 -> 155 ms). Not `MADV_HUGEPAGE`: with THP
/// defrag on `madvise`, it made some read-backs 3× slower (synchronous compaction).
/// Best effort: older kernels answer EINVAL and the copy faults the pages in as before.
pub fn prefault(buf: &mut [u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    let start = buf.as_mut_ptr() as usize;
    let first_page = start.div_ceil(page) * page;
    let past_last_page = (start + buf.len()) / page * page;
    if past_last_page > first_page {
        let whole_pages = past_last_page - first_page;
        // SAFETY: the whole pages from `first_page` lie inside `buf`, which we may write;
        // populating changes no contents.
        unsafe { libc::madvise(first_page as *mut libc::c_void, whole_pages, libc::MADV_POPULATE_WRITE) };
    }
}

/// The calling thread's id (as in `gettid`), async-signal-safe.
pub fn thread_id() -> i64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}
