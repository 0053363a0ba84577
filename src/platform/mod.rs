//! Everything the core does differently per operating system, behind one small interface with two
//! implementations: `linux` (calls only Linux has) and `portable` (POSIX: macOS and the BSDs).
//! Building with the `portable` feature selects the portable one on Linux too, so its code paths
//! run in the test suite here; only the few lines marked `target_os = "macos"` are not.
//!
//! | what | `linux` | `portable` |
//! |---|---|---|
//! | memory file | `memfd_create` | an unlinked temporary file |
//! | close-on-exec pipe | `pipe2` | `pipe` + `fcntl(FD_CLOEXEC)` |
//! | reader's backstop | `timerfd` | a poll timeout |
//! | loaded runtimes | `dl_iterate_phdr`, change counters | the image list (dyld on macOS), its length |
//! | freeing read pages | `FALLOC_FL_PUNCH_HOLE` | `F_PUNCHHOLE` on macOS, none elsewhere |
//! | faulting a buffer in | `MADV_POPULATE_WRITE` | none (the copy faults it in) |
//! | a thread's id | `gettid` | `pthread_self` |
//!
//! What differs by libc rather than by kernel (the names of `stdout` and `errno`, asking a
//! `FILE` for its buffer size) is declared below, for both.

#[cfg(not(target_os = "macos"))]
mod elf;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod linux;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
mod portable;
mod tempfile;

#[cfg(all(target_os = "linux", not(feature = "portable")))]
pub use linux::*;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
pub use portable::*;

extern "C" {
    // `stdout`/`stderr` are macros for these in the BSDs' <stdio.h>.
    #[cfg_attr(
        any(target_os = "macos", target_os = "freebsd", target_os = "dragonfly"),
        link_name = "__stdoutp"
    )]
    static stdout: *mut libc::FILE;
    #[cfg_attr(
        any(target_os = "macos", target_os = "freebsd", target_os = "dragonfly"),
        link_name = "__stderrp"
    )]
    static stderr: *mut libc::FILE;
}

/// libc's `stdout`. Initialised before any code of ours runs; reading it is async-signal-safe.
pub fn c_stdout() -> *mut libc::FILE {
    // SAFETY: a plain read of a pointer libc sets up before main and never changes.
    unsafe { stdout }
}

/// libc's `stderr` (see `c_stdout`).
pub fn c_stderr() -> *mut libc::FILE {
    // SAFETY: as in `c_stdout`.
    unsafe { stderr }
}

/// The size of `stream`'s buffer, 0 while none has been chosen yet; `None` where libc does not
/// tell. glibc and musl have `__fbufsize` (`<stdio_ext.h>`).
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_wraps)] // other platforms may not know
pub fn buffer_size(stream: *mut libc::FILE) -> Option<usize> {
    extern "C" {
        fn __fbufsize(stream: *mut libc::FILE) -> libc::size_t;
    }
    // SAFETY: `stream` is a valid FILE (the caller's); __fbufsize only reads it.
    Some(unsafe { __fbufsize(stream) })
}

// macOS: the buffer of a BSD `FILE` (`struct __sFILE` in <stdio.h>, public because the getc/putc
// macros read it): `_bf._size` is 0 until the first I/O chooses a buffer.
#[cfg(target_os = "macos")]
pub fn buffer_size(stream: *mut libc::FILE) -> Option<usize> {
    #[repr(C)]
    struct Sbuf {
        base: *mut u8,
        size: libc::c_int,
    }
    #[repr(C)]
    struct SFilePrefix {
        p: *mut u8,
        r: libc::c_int,
        w: libc::c_int,
        flags: libc::c_short,
        file: libc::c_short,
        bf: Sbuf,
    }
    // SAFETY: `stream` is a valid FILE, whose layout starts with these fields; only read.
    Some(unsafe { (*stream.cast::<SFilePrefix>()).bf.size }.max(0) as usize)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn buffer_size(_stream: *mut libc::FILE) -> Option<usize> {
    None
}

/// How many bytes `stream`'s buffer holds that are not written out yet; `None` where libc does
/// not tell (callers then assume some are). glibc, musl and bionic have `__fpending`
/// (`<stdio_ext.h>`): it only reads the stream's pointers, no lock, no syscall.
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_wraps)] // other platforms may not know
pub fn pending(stream: *mut libc::FILE) -> Option<usize> {
    extern "C" {
        fn __fpending(stream: *mut libc::FILE) -> libc::size_t;
    }
    // SAFETY: `stream` is a valid FILE (the caller's); __fpending only reads it.
    Some(unsafe { __fpending(stream) })
}

#[cfg(not(target_os = "linux"))]
pub fn pending(_stream: *mut libc::FILE) -> Option<usize> {
    None
}

/// Where this thread's `errno` lives: the crash handler reads and restores it around its work.
pub fn errno_location() -> *mut libc::c_int {
    // SAFETY: these functions only return the calling thread's errno address.
    #[cfg(any(target_os = "linux", target_os = "dragonfly"))]
    return unsafe { libc::__errno_location() };
    #[cfg(any(target_os = "macos", target_os = "freebsd"))]
    return unsafe { libc::__error() };
    #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
    return unsafe { libc::__errno() };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn has_flag(fd: std::os::fd::RawFd, get: libc::c_int, flag: libc::c_int) -> bool {
        // SAFETY: F_GETFD/F_GETFL only read the flags of `fd`.
        (unsafe { libc::fcntl(fd, get) } & flag) == flag
    }

    #[test]
    fn memory_file_is_nameless_appending_and_closed_on_exec() {
        let file = memory_file().unwrap();
        assert!(has_flag(file.as_raw_fd(), libc::F_GETFD, libc::FD_CLOEXEC));
        assert!(has_flag(file.as_raw_fd(), libc::F_GETFL, libc::O_APPEND));
        assert_eq!(crate::fd::access_mode(file.as_raw_fd()).unwrap(), libc::O_RDWR);
        assert_eq!(crate::fd::link_count(file.as_raw_fd()).unwrap(), 0);
    }

    #[test]
    fn the_portable_memory_file_is_nameless_too() {
        let file = tempfile::unlinked().unwrap();
        assert!(has_flag(file.as_raw_fd(), libc::F_GETFD, libc::FD_CLOEXEC));
        assert!(has_flag(file.as_raw_fd(), libc::F_GETFL, libc::O_APPEND));
        assert_eq!(crate::fd::link_count(file.as_raw_fd()).unwrap(), 0);
    }

    #[test]
    fn pipe_ends_are_closed_on_exec() {
        let (read, write) = pipe().unwrap();
        assert!(has_flag(read.as_raw_fd(), libc::F_GETFD, libc::FD_CLOEXEC));
        assert!(has_flag(write.as_raw_fd(), libc::F_GETFD, libc::FD_CLOEXEC));
    }

    #[test]
    fn backstop_wakes_a_reader_polling_without_the_live_pipes() {
        let backstop = Backstop::new(2_000_000).unwrap();
        backstop.arm();
        let start = std::time::Instant::now();
        // The reader's poll while the delivery thread has the live pipes: only the backstop.
        let fds = [backstop.fd()];
        let ready = crate::fd::wait_readable_for(&fds, backstop.poll_timeout(true));
        assert!(start.elapsed() >= std::time::Duration::from_millis(1));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Linux: the timer fd is readable; portable: the poll timed out.
        assert_eq!(ready, [backstop.fd() >= 0]);
        backstop.disarm();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn pending_counts_buffered_bytes() {
        // A private stream onto /dev/null, fully buffered: nothing of it reaches a real fd.
        // SAFETY: fopen/setvbuf/fputs/fflush/fclose on a FILE of our own.
        unsafe {
            let file = libc::fopen(c"/dev/null".as_ptr(), c"w".as_ptr());
            assert!(!file.is_null());
            libc::setvbuf(file, std::ptr::null_mut(), libc::_IOFBF, 4096);
            assert_eq!(pending(file), Some(0));
            libc::fputs(c"abc".as_ptr(), file);
            assert_eq!(pending(file), Some(3));
            libc::fflush(file);
            assert_eq!(pending(file), Some(0));
            libc::fclose(file);
        }
    }

    #[test]
    fn libc_streams_are_found() {
        assert!(!c_stdout().is_null() && !c_stderr().is_null() && c_stdout() != c_stderr());
        // SAFETY: valid FILE pointers; fileno only reads them.
        assert_eq!(unsafe { (libc::fileno(c_stdout()), libc::fileno(c_stderr())) }, (1, 2));
    }
}
