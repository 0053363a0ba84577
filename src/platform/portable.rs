//! POSIX: macOS and the BSDs (and Linux with the `portable` feature, which is how this file is
//! tested). Lines that only macOS runs are marked `target_os = "macos"`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A new, empty memory file, close-on-exec and `O_APPEND`: an unlinked temporary file (in
/// `$TMPDIR`, else /tmp). Its pages are the page cache's, as a memfd's are; they reach the disk
/// only under memory pressure, unless the directory is a tmpfs.
pub fn memory_file() -> io::Result<OwnedFd> {
    super::tempfile::unlinked()
}

/// A pipe, both ends close-on-exec. Set after `pipe`: a thread of ours forking and executing in
/// that window gives the child the ends (a child holding a live block's write end delays its EOF
/// until the child exits; nothing is lost).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe fills `fds` with two new fds that we own.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by pipe.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for end in [&read, &write] {
        // SAFETY: F_SETFD only changes the fd flags of an fd we own.
        if unsafe { libc::fcntl(end.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((read, write))
}

/// The reader's backstop (see `crate::reader`) without a timer fd: while the delivery thread
/// polls the live pipes, the reader wakes every `nanos` to check that it still does. The delivery
/// thread leaving its poll then needs no wake-up call (which would delay the line it delivers),
/// and the reader takes the pipes over within `nanos`, as with the Linux timer.
pub struct Backstop {
    nanos: i64,
}

impl Backstop {
    #[allow(clippy::unnecessary_wraps)] // Linux's timer fd may fail to open
    pub fn new(nanos: i64) -> io::Result<Self> {
        Ok(Backstop { nanos })
    }

    /// Nothing to do: the reader's next check notices that the delivery thread left.
    pub fn arm(&self) {}

    pub fn disarm(&self) {}

    /// No timer fd: -1, which `poll` skips (POSIX).
    pub fn fd(&self) -> RawFd {
        -1
    }

    /// The reader's poll timeout in ms: the check interval while the delivery thread has the live
    /// pipes, else none.
    pub fn poll_timeout(&self, delivery_polls: bool) -> libc::c_int {
        if delivery_polls {
            ((self.nanos + 999_999) / 1_000_000).max(1) as libc::c_int
        } else {
            -1
        }
    }
}

/// Opaque: changes whenever an object is loaded (the number of loaded images). An unload and a
/// load between two flushes go unnoticed; macOS unloads images only on `dlclose` of a bundle.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LoaderStamp(usize);

pub fn loader_stamp() -> LoaderStamp {
    LoaderStamp(image_count())
}

/// Paths of every loaded image.
pub fn loaded_objects() -> Vec<CString> {
    image_names()
}

#[cfg(not(target_os = "macos"))]
fn image_count() -> usize {
    let mut count = 0;
    super::elf::for_each_object(|_| {
        count += 1;
        true
    });
    count
}

#[cfg(not(target_os = "macos"))]
fn image_names() -> Vec<CString> {
    super::elf::object_names()
}

// macOS: dyld's image list.
#[cfg(target_os = "macos")]
fn image_count() -> usize {
    // SAFETY: no preconditions.
    unsafe { libc::_dyld_image_count() as usize }
}

#[cfg(target_os = "macos")]
fn image_names() -> Vec<CString> {
    (0..image_count() as u32)
        .filter_map(|index| {
            // SAFETY: an index below the count; null if the image went away meanwhile.
            let name = unsafe { libc::_dyld_get_image_name(index) };
            // SAFETY: dyld's image names are NUL-terminated strings.
            (!name.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_owned())
        })
        .collect()
}

/// Whether `release_pages` frees memory (the unit tests check the contents are gone).
#[cfg(test)]
pub const RELEASES_PAGES: bool = cfg!(target_os = "macos");

/// Free the pages of a range that was copied out; best effort. Only macOS has a call for it
/// (`F_PUNCHHOLE`, APFS); elsewhere the memory file keeps its pages until it is closed.
#[cfg(not(target_os = "macos"))]
pub fn release_pages(_fd: RawFd, _offset: usize, _len: usize) {}

#[cfg(target_os = "macos")]
pub fn release_pages(fd: RawFd, offset: usize, len: usize) {
    let hole = libc::fpunchhole_t {
        fp_flags: 0,
        reserved: 0,
        fp_offset: offset as libc::off_t,
        fp_length: len as libc::off_t,
    };
    // SAFETY: F_PUNCHHOLE reads one fpunchhole_t; the range's contents are no longer needed.
    unsafe { libc::fcntl(fd, libc::F_PUNCHHOLE, &raw const hole) };
}

/// Nothing portable: the copy faults the pages in.
pub fn prefault(_buf: &mut [u8]) {}

/// The calling thread's id, async-signal-safe in practice (`pthread_self` reads a register or a
/// thread pointer).
pub fn thread_id() -> i64 {
    // SAFETY: no preconditions.
    unsafe { libc::pthread_self() as usize as i64 }
}
