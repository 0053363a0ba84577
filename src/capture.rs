//! The capture sink: a fresh anonymous memory file per block (`memfd_create`; an unlinked temp
//! file where memfd is missing). No reader thread, so it cannot deadlock; readable at any time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Bytes copied out between two hole punches at read-back: small enough that the memory file and
/// the copy together stay near 1× the captured size, large enough that syscalls do not dominate.
const RELEASE_CHUNK: usize = 8 << 20;

/// Fresh memory files kept ready by the worker.
const FRESH: usize = 4;
/// Finished files closed per wake-up of the worker (one wake-up costs a syscall).
const RETIRE_BATCH: usize = 4;
/// How long a finished file may wait for its close when no more come.
const RETIRE_DELAY: Duration = Duration::from_millis(50);

/// Creating and destroying a memory file are most of the cost of an empty capture block
/// (4.5 µs of 7.7 µs on the CI machine), and neither needs the caller to wait: a worker thread
/// makes files ahead of time and closes finished ones. A file from the stock has never been
/// exposed to anyone, so nothing is reused: every block still gets a file that no child or
/// forked process can hold.
pub(crate) struct Stock {
    /// The fork generation the worker runs in; a forked child starts its own.
    generation: Option<u64>,
    fresh: Vec<OwnedFd>,
    retired: Vec<OwnedFd>,
    /// The worker is making files or closing them right now.
    busy: bool,
}

static STOCK: Mutex<Stock> = Mutex::new(Stock {
    generation: None,
    fresh: Vec::new(),
    retired: Vec::new(),
    busy: false,
});
static WORK: Condvar = Condvar::new();
static IDLE: Condvar = Condvar::new();

pub(crate) fn lock_stock() -> MutexGuard<'static, Stock> {
    STOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Stock {
    /// The worker of this process, started on first use. In a forked child the stock's fds are
    /// copies of the parent's, which the parent will still hand out: never use them here.
    fn in_this_process(&mut self) -> bool {
        let generation = crate::stack::generation();
        if self.generation == Some(generation) {
            return true;
        }
        self.fresh.clear();
        self.retired.clear();
        self.busy = false;
        let started = std::thread::Builder::new()
            .name("fdredirect-files".into())
            .spawn(work)
            .is_ok();
        if started {
            self.generation = Some(generation);
        }
        started
    }
}

/// An empty memory file for a capture: from the stock, or made now if the stock is empty.
pub fn take() -> io::Result<OwnedFd> {
    let mut stock = lock_stock();
    let fd = if stock.in_this_process() {
        stock.fresh.pop()
    } else {
        None
    };
    if stock.fresh.len() <= FRESH / 2 {
        WORK.notify_one();
    }
    drop(stock);
    fd.map_or_else(create, Ok)
}

/// A capture's file after its bytes were read back: closed by the worker, off the caller's path.
pub fn retire(fd: OwnedFd) {
    let mut stock = lock_stock();
    if !stock.in_this_process() {
        drop(stock);
        drop(fd);
        return;
    }
    stock.retired.push(fd);
    if stock.retired.len() >= RETIRE_BATCH {
        WORK.notify_one();
    }
}

/// Wait until the worker has closed every retired file and refilled the stock (for tests that
/// count fds).
pub fn settle() {
    let mut stock = lock_stock();
    if !stock.in_this_process() {
        return;
    }
    WORK.notify_one();
    while stock.busy || !stock.retired.is_empty() || stock.fresh.len() < FRESH {
        let (next, timeout) = IDLE
            .wait_timeout(stock, Duration::from_secs(5))
            .unwrap_or_else(PoisonError::into_inner);
        stock = next;
        if timeout.timed_out() {
            return;
        }
        WORK.notify_one();
    }
}

fn work() {
    let mut stock = lock_stock();
    loop {
        stock.busy = false;
        IDLE.notify_all();
        while stock.retired.is_empty() && stock.fresh.len() >= FRESH {
            stock = WORK.wait(stock).unwrap_or_else(PoisonError::into_inner);
        }
        if stock.fresh.len() >= FRESH {
            // Only closes are due: give a few more blocks the chance to join the batch.
            stock = WORK
                .wait_timeout(stock, RETIRE_DELAY)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        stock.busy = true;
        let retired = std::mem::take(&mut stock.retired);
        let missing = FRESH.saturating_sub(stock.fresh.len());
        drop(stock);
        drop(retired);
        let made: Vec<OwnedFd> = (0..missing).filter_map(|_| create().ok()).collect();
        stock = lock_stock();
        if stock.generation == Some(crate::stack::generation()) {
            stock.fresh.extend(made);
        }
    }
}

/// A new, empty, close-on-exec memory file numbered above the standard streams.
pub fn create() -> io::Result<OwnedFd> {
    // SAFETY: a literal name; memfd_create returns a new fd we own.
    let fd = unsafe { libc::memfd_create(c"fdredirect-capture".as_ptr(), libc::MFD_CLOEXEC) };
    let fd = if fd >= 0 {
        fd
    } else {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOSYS) {
            return Err(err);
        }
        unlinked_temp_file()?
    };
    // SAFETY: `fd` was just created and is owned by nothing else.
    crate::sys::lift_above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlinked_temp_file() -> io::Result<RawFd> {
    let dir = std::env::temp_dir();
    let dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: `dir` is NUL-terminated; O_TMPFILE creates an unnamed file and returns its fd.
    let fd = unsafe { libc::open(dir.as_ptr(), flags, 0o600) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

/// How many bytes the memory file holds now.
pub fn size(fd: &OwnedFd) -> io::Result<usize> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills `stat` on success.
    if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so `stat` is initialised.
    Ok(unsafe { stat.assume_init() }.st_size as usize)
}

/// Fill `buf` from `offset` on. Returns how many bytes were read (less only if the file is shorter).
pub fn read_at(fd: &OwnedFd, buf: &mut [u8], offset: usize) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid writable slice for its whole length.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                rest.as_mut_ptr().cast(),
                rest.len(),
                (offset + done) as libc::off_t,
            )
        };
        match n {
            0 => break,
            n if n < 0 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            n => done += n as usize,
        }
    }
    Ok(done)
}

/// Copy the file's first `buf.len()` bytes into `buf`, releasing the file's pages behind the copy
/// (`FALLOC_FL_PUNCH_HOLE`), so memory peaks near 1× the captured size rather than 2×.
/// The file is not read again afterwards: bytes written later (a child outliving the block) are dropped.
pub fn read_and_release(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    for chunk in buf.chunks_mut(RELEASE_CHUNK) {
        populate(chunk);
        let n = read_at(fd, chunk, done)?;
        // Best effort: a file system without hole punching only costs memory, not correctness.
        // SAFETY: fallocate on an fd we own; the range was just copied out.
        unsafe {
            libc::fallocate(
                fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                done as libc::off_t,
                n as libc::off_t,
            );
        }
        done += n;
        if n < chunk.len() {
            break;
        }
    }
    Ok(done)
}

/// Fault in the pages of `buf` with one call (`MADV_POPULATE_WRITE`, Linux 5.14+) instead of one
/// page fault per 4 KiB inside the copy: for a fresh 256 MiB buffer, faulting pages in was the
/// largest single cost of the read-back (measured 175 -> 155 ms). Not `MADV_HUGEPAGE`: with THP
/// defrag on `madvise`, it made some read-backs 3× slower (synchronous compaction).
/// Best effort: older kernels answer EINVAL and the copy faults the pages in as before.
fn populate(buf: &mut [u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    let start = buf.as_mut_ptr() as usize;
    let first = start.div_ceil(page) * page;
    let end = (start + buf.len()) / page * page;
    if end > first {
        // SAFETY: [first, end) lies inside `buf`, which we may write; populating changes no contents.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_POPULATE_WRITE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(fd: &OwnedFd, data: &[u8]) {
        let mut written = 0;
        crate::sys::write_all(fd.as_raw_fd(), data, &mut written).unwrap();
    }

    #[test]
    fn captures_what_is_written() {
        let fd = create().unwrap();
        assert!(fd.as_raw_fd() > 2);
        write(&fd, b"hello ");
        write(&fd, b"world");
        assert_eq!(size(&fd).unwrap(), 11);
        let mut buf = vec![0; 11];
        assert_eq!(read_at(&fd, &mut buf, 0).unwrap(), 11);
        assert_eq!(&buf, b"hello world");
    }

    #[test]
    fn read_and_release_copies_across_chunks_and_frees_pages() {
        let fd = create().unwrap();
        let data: Vec<u8> = (0..RELEASE_CHUNK * 2 + 123).map(|i| (i % 251) as u8).collect();
        write(&fd, &data);
        let mut buf = vec![0; data.len()];
        assert_eq!(read_and_release(&fd, &mut buf).unwrap(), data.len());
        assert_eq!(buf, data);
        // The size is kept, the contents are gone.
        let mut again = vec![1; 16];
        read_at(&fd, &mut again, 0).unwrap();
        assert_eq!(again, vec![0; 16]);
    }

    #[test]
    fn short_file_reads_short() {
        let fd = create().unwrap();
        write(&fd, b"abc");
        let mut buf = vec![0; 10];
        assert_eq!(read_at(&fd, &mut buf, 0).unwrap(), 3);
    }
}
