//! Thin wrappers over the portable file-descriptor syscalls of the switch, the sinks and the
//! reader (dup, open, poll, status flags). Elsewhere in the core, `unsafe` is about something
//! other than handing out fds, or differs per operating system: the calls that differ
//! (`platform`: memory file, pipe, timer, loader, page release), the memory file's reads
//! (`memfile`), libc's `FILE` objects and the loader's handles (`flush`), the fork handlers
//! (`fork`), and the crash handler, which may only make async-signal-safe calls and so makes its
//! own (`crash`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The lowest number for the fds the library keeps: above 0–2 so they never get mistaken for a
/// standard stream, and above the few low fds that programs tend to hard-code.
const SAVED_FD_MIN: RawFd = 10;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// A close-on-exec duplicate of `fd` numbered at least `min`.
fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC reads `fd` and returns a new descriptor that nobody else owns.
    let new = retry(|| check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) }))?;
    // SAFETY: `new` was just returned by fcntl and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Save `fd` for later restoring: a close-on-exec copy at fd >= 10, or at >= 3 when
/// `RLIMIT_NOFILE` is too small for that (fcntl answers EINVAL). `Ok(None)` when `fd` is closed.
pub fn save(fd: RawFd) -> io::Result<Option<OwnedFd>> {
    match dup_at_least(fd, SAVED_FD_MIN) {
        Ok(saved) => Ok(Some(saved)),
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => match dup_at_least(fd, 3) {
            Ok(saved) => Ok(Some(saved)),
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => Ok(None),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Duplicate `fd` above the standard streams (used for sinks, whose number must never be 0–2:
/// when fd 1 is closed, a fresh open would otherwise land on it).
pub fn dup_above_stdio(fd: RawFd) -> io::Result<OwnedFd> {
    dup_at_least(fd, 3)
}

/// Make sure an fd we own is above 0–2, moving it if needed.
pub fn lift_above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        Ok(fd)
    } else {
        dup_above_stdio(fd.as_raw_fd())
    }
}

/// `dup2(src, dst)`, retried on EINTR and on EBUSY (a race with open/dup in another thread).
pub fn dup2(src: RawFd, dst: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: dup2 only changes the fd table entry `dst`, which the caller has decided to replace.
        match check(unsafe { libc::dup2(src, dst) }) {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Close an fd the library does not own as an `OwnedFd` (fd 1/2 when they were closed before).
pub fn close(fd: RawFd) {
    // SAFETY: the caller restores "fd was closed"; nothing in this process owns `fd` as an object.
    unsafe { libc::close(fd) };
}

/// `O_ACCMODE` bits of `fd`: `Err(EBADF)` when closed.
pub fn access_mode(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL only reads the status flags of `fd`.
    Ok(check(unsafe { libc::fcntl(fd, libc::F_GETFL) })? & libc::O_ACCMODE)
}

/// Open `path` for the redirect: created, truncated, then appended to (`O_APPEND`), so two
/// blocks writing one file never overwrite each other's bytes.
pub fn open_for_append(path: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND | libc::O_CLOEXEC;
    // SAFETY: `path` is a valid NUL-terminated string; open returns a new fd we own.
    let fd = retry(|| check(unsafe { libc::open(path.as_ptr(), flags, 0o666) }))?;
    // SAFETY: `fd` was just returned by open.
    lift_above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn open_devnull() -> io::Result<OwnedFd> {
    let fd = retry(|| {
        // SAFETY: a literal path; open returns a new fd we own.
        check(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })
    })?;
    // SAFETY: `fd` was just returned by open.
    lift_above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `RLIMIT_FSIZE` caps how large a file this process may write (a memory file too).
pub fn file_size_limited() -> bool {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit fills `limit` on success.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, limit.as_mut_ptr()) } < 0 {
        return false;
    }
    // SAFETY: getrlimit succeeded, so `limit` is initialised.
    unsafe { limit.assume_init() }.rlim_cur != libc::RLIM_INFINITY
}

/// How many names the file behind `fd` has: 0 once it was removed.
pub fn link_count(fd: RawFd) -> io::Result<u64> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills `stat` on success.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so `stat` is initialised.
    #[allow(clippy::useless_conversion)] // st_nlink is 16 bits on macOS
    Ok(u64::from(unsafe { stat.assume_init() }.st_nlink))
}

pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only queries `fd`.
    unsafe { libc::isatty(fd) == 1 }
}

/// `write(2)` all of `data`, retrying short writes. EINTR is returned to the caller, which may
/// want to run signal handlers; `written` says how far it got.
pub fn write_all(fd: RawFd, data: &[u8], written: &mut usize) -> io::Result<()> {
    while *written < data.len() {
        let rest = &data[*written..];
        // SAFETY: `rest` is a valid readable slice for its whole length.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        *written += n as usize;
    }
    Ok(())
}

/// A pipe, both ends close-on-exec and above the standard streams: with fd 1 closed, `pipe`
/// would hand out 1, and restoring "fd 1 closed" at a block's end would close the library's pipe.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = crate::platform::pipe()?;
    Ok((lift_above_stdio(read)?, lift_above_stdio(write)?))
}

/// A pipe, both ends close-on-exec, non-blocking and above the standard streams.
pub fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = pipe_cloexec()?;
    set_nonblocking(read.as_raw_fd())?;
    set_nonblocking(write.as_raw_fd())?;
    Ok((read, write))
}

/// `write(2)` all of `data` as a blocking write would, also when the open file description is
/// non-blocking (set by someone else: a parent's Node.js or asyncio pipe): `EAGAIN` waits until
/// the fd is writable. `EINTR` retries.
pub fn write_all_waiting(fd: RawFd, data: &[u8]) -> io::Result<()> {
    let mut written = 0;
    loop {
        match write_all(fd, data, &mut written) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut polled = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd. Errors (EINTR) just lead to another write attempt.
                unsafe { libc::poll(&raw mut polled, 1, -1) };
            }
            Err(e) => return Err(e),
        }
    }
}

/// Wait until at least one of `fds` is readable (or hung up), or `timeout_ms` has passed (-1:
/// never); returns which are. A signal or the timeout ends the wait early with none ready.
/// Negative numbers in `fds` are skipped.
pub fn wait_readable_for(fds: &[RawFd], timeout_ms: libc::c_int) -> Vec<bool> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `polled` is a valid array of pollfd for its whole length.
    let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout_ms) };
    polled.iter().map(|entry| ready > 0 && entry.revents != 0).collect()
}

/// Write one byte to a wake-up pipe. A full pipe already wakes its reader, so errors are ignored.
pub fn poke(fd: RawFd) {
    let _ = write_all(fd, b"w", &mut 0);
}

/// Read and discard everything a non-blocking wake-up pipe or timer fd holds.
pub fn discard_available(fd: RawFd) {
    let mut scratch = [0u8; 256];
    // SAFETY: reading into a local buffer from a non-blocking fd we own.
    while unsafe { libc::read(fd, scratch.as_mut_ptr().cast(), scratch.len()) } > 0 {}
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    add_status_flags(fd, libc::O_NONBLOCK)
}

/// Add file status flags (`O_NONBLOCK`, `O_APPEND`) to the open file description of `fd`. Only
/// for descriptions the library created: every fd sharing the description sees the change.
pub fn add_status_flags(fd: RawFd, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL only read and change the status flags of `fd`.
    unsafe {
        let current = check(libc::fcntl(fd, libc::F_GETFL))?;
        check(libc::fcntl(fd, libc::F_SETFL, current | flags))?;
    }
    Ok(())
}

/// `fstat(fd)`: the one place the core asks what an fd refers to.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` into the buffer, which is read only on success.
    check(unsafe { libc::fstat(fd, stat.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialised the struct.
    Ok(unsafe { stat.assume_init() })
}

/// Which pipe `fd` is an end of, as (`st_dev`, `st_ino`); `None` when it is not a pipe or FIFO.
pub fn pipe_identity(fd: RawFd) -> Option<(u64, u64)> {
    let stat = fstat(fd).ok()?;
    (stat.st_mode & libc::S_IFMT == libc::S_IFIFO).then(|| identity_of(&stat))
}

/// How many bytes a pipe holds now (`FIONREAD`); 0 if that cannot be told.
pub fn bytes_available(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &raw mut n) } < 0 {
        return 0;
    }
    n.max(0) as usize
}

/// What open file `fd` refers to (device, inode), to tell later whether it still points there;
/// `None` if `fd` is closed.
pub fn identity(fd: RawFd) -> Option<(u64, u64)> {
    fstat(fd).ok().map(|stat| identity_of(&stat))
}

#[allow(clippy::useless_conversion)] // the field types differ between platforms
fn identity_of(stat: &libc::stat) -> (u64, u64) {
    (u64::from(stat.st_dev), u64::from(stat.st_ino))
}

/// Test helpers shared by the core's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};

    /// Everything `fd` (a pipe's read end) holds now, without waiting for more.
    pub fn read_available(fd: &OwnedFd) -> Vec<u8> {
        super::set_nonblocking(fd.as_raw_fd()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    /// An fd number that is closed and stays closed while the tests run, for tests about closed
    /// fds. Not a number a test has just closed: cargo runs tests in parallel threads, and the
    /// kernel gives the lowest free number to the next `open` in any of them. This one lies near
    /// the top of the fd table, which no test comes near; `slot` keeps the tests using one apart.
    pub fn unused_fd(slot: RawFd) -> RawFd {
        let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
        // SAFETY: getrlimit fills `limit` on success, and it is read only then.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, limit.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful call above.
            unsafe { limit.assume_init() }.rlim_cur
        } else {
            256
        };
        let top = soft.min(1024) as RawFd - 1;
        assert!(top - slot > 64, "too few fds allowed for the tests");
        let fd = top - slot;
        assert!(super::access_mode(fd).is_err(), "fd {fd} should be closed");
        fd
    }
}

#[cfg(test)]
mod tests {
    use super::testing::unused_fd;
    use super::*;

    #[test]
    fn save_returns_none_for_closed_fd() {
        assert!(save(unused_fd(2)).unwrap().is_none());
    }

    #[test]
    fn saved_fds_are_high_and_cloexec() {
        let saved = save(0).unwrap().unwrap();
        assert!(saved.as_raw_fd() >= SAVED_FD_MIN);
        // SAFETY: F_GETFD only reads the fd flags.
        let flags = unsafe { libc::fcntl(saved.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn access_mode_reports_ebadf_for_closed_fd() {
        let probe = open_devnull().unwrap();
        assert_eq!(access_mode(probe.as_raw_fd()).unwrap(), libc::O_WRONLY);
        assert_eq!(access_mode(unused_fd(3)).unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
