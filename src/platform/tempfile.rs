//! The portable memory file: a temporary file, removed as soon as it is open, so only the fd
//! names it. Plain POSIX `open` with a fresh name (no `mkostemp`: the libc crate lacks it for
//! macOS), close-on-exec and `O_APPEND` from the start.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tries before giving up on names that exist already (another process's, or a guess taken).
const ATTEMPTS: u32 = 100;

pub fn unlinked() -> io::Result<OwnedFd> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_APPEND | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    for _ in 0..ATTEMPTS {
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("fdredirect-{pid}-{unique}-{}", nanos_now()));
        let path =
            CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `path` is NUL-terminated; open returns a new fd we own.
        let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EEXIST | libc::EINTR) => continue,
                _ => return Err(err),
            }
        }
        // SAFETY: `fd` was just returned by open.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `path` is NUL-terminated; we created it (O_EXCL) a moment ago.
        if unsafe { libc::unlink(path.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(file);
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}

/// Nanoseconds of the wall clock: names differ between processes that reuse a pid.
fn nanos_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
