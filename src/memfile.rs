//! The capture sink: a fresh anonymous memory file per block (`crate::platform::memory_file`: a
//! memfd on Linux, an unlinked temporary file elsewhere). No reader thread, so it cannot
//! deadlock; readable at any time.
//!
//! The file is opened `O_APPEND`. Several writers share its open file description (threads
//! releasing the GIL, `make -j`, a pool's children): a memfd has no per-file position lock, so two
//! plain `write`s at once can take the same offset and overwrite each other. An append takes the
//! inode lock and places every write after the last one: nothing is lost.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::platform;

/// Bytes copied out between two hole punches at read-back: small enough that the memory file and
/// the copy together stay near 1× the captured size, large enough that syscalls do not dominate.
const RELEASE_CHUNK: usize = 8 << 20;

/// A new, empty, close-on-exec memory file, opened `O_APPEND`, numbered above the standard streams.
pub fn create() -> io::Result<OwnedFd> {
    crate::fd::lift_above_stdio(platform::memory_file()?)
}

/// How many bytes the memory file holds now. `lseek` to the end rather than `fstat`: a memfd's
/// `fstat` costs 0.40 µs here, `lseek` 0.16 µs, on the path of every capture block. Moving the
/// shared file offset is harmless: every write appends (`O_APPEND`) and every read is a `pread`.
pub fn size(fd: &OwnedFd) -> io::Result<usize> {
    // SAFETY: lseek only moves the offset of an fd we own.
    let end = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_END) };
    if end < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(end as usize)
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
/// (`platform::release_pages`), so memory peaks near 1× the captured size rather than 2×.
/// The file is not read again afterwards: bytes written later (a child outliving the block) are dropped.
pub fn read_and_release(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    for chunk in buf.chunks_mut(RELEASE_CHUNK) {
        platform::prefault(chunk);
        let n = read_at(fd, chunk, done)?;
        platform::release_pages(fd.as_raw_fd(), done, n);
        done += n;
        if n < chunk.len() {
            break;
        }
    }
    Ok(done)
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
        // The size is kept, the contents are gone (where the platform can free pages).
        let mut again = vec![1; 16];
        read_at(&fd, &mut again, 0).unwrap();
        let expected = if platform::RELEASES_PAGES {
            vec![0; 16]
        } else {
            data[..16].to_vec()
        };
        assert_eq!(again, expected);
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
