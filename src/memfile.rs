//! The capture sink: a fresh anonymous memory file per block (`memfd_create`; an unlinked temp
//! file where memfd is missing). No reader thread, so it cannot deadlock; readable at any time.
//!
//! The file is opened `O_APPEND`. Several writers share its open file description (threads
//! releasing the GIL, `make -j`, a pool's children): a memfd has no per-file position lock, so two
//! plain `write`s at once can take the same offset and overwrite each other. An append takes the
//! inode lock and places every write after the last one: nothing is lost.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes copied out between two hole punches at read-back: small enough that the memory file and
/// the copy together stay near 1× the captured size, large enough that syscalls do not dominate.
const RELEASE_CHUNK: usize = 8 << 20;

/// A new, empty, close-on-exec memory file numbered above the standard streams.
pub fn create() -> io::Result<OwnedFd> {
    // The raw syscall, not glibc's wrapper: the wrapper is glibc 2.27+, and the manylinux_2_17
    // wheel must load on older glibc (the ENOSYS fallback below covers kernels before 3.17).
    let name = c"fdredirect-capture".as_ptr();
    // SAFETY: a literal name; memfd_create returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_create, name, libc::MFD_CLOEXEC) } as libc::c_int;
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
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    crate::fd::set_status_flags_of_new(fd.as_raw_fd(), libc::O_APPEND)?;
    crate::fd::lift_above_stdio(fd)
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
    Ok(crate::fd::fstat(fd.as_raw_fd())?.st_size as usize)
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
        crate::fd::write_all(fd.as_raw_fd(), data, &mut written).unwrap();
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
    fn concurrent_writers_on_one_description_lose_nothing() {
        let fd = create().unwrap();
        let chunk = [b'x'; 64];
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let copy = crate::fd::dup_above_stdio(fd.as_raw_fd()).unwrap();
                std::thread::spawn(move || {
                    for _ in 0..4096 {
                        crate::fd::write_all(copy.as_raw_fd(), &chunk, &mut 0).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(size(&fd).unwrap(), 4 * 4096 * 64);
    }

    #[test]
    fn short_file_reads_short() {
        let fd = create().unwrap();
        write(&fd, b"abc");
        let mut buf = vec![0; 10];
        assert_eq!(read_at(&fd, &mut buf, 0).unwrap(), 3);
    }
}
