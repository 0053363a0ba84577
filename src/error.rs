//! The fd core's error type. It keeps `errno` and what the error was about (a path, a file
//! descriptor), so the binding can build the right `OSError` subclass with a useful message.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What an OS error was about, for the message the user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Nothing,
    Fd(RawFd),
    Path(PathBuf),
    /// Writing the block's bytes of this fd to its forward targets (tee).
    Tee(RawFd),
}

#[derive(Debug)]
pub enum Error {
    /// A syscall failed; `errno` is kept.
    Os { err: io::Error, subject: Subject },
    /// The target fd is open, but not for writing.
    ReadOnly(RawFd),
    /// `exit` named an entry that is not on the stack (already left, or never entered).
    NotActive,
}

impl Error {
    pub fn os(err: io::Error, subject: Subject) -> Self {
        Error::Os { err, subject }
    }

    /// For `map_err`: an OS error about file descriptor `fd`.
    pub fn about_fd(fd: RawFd) -> impl FnOnce(io::Error) -> Self {
        move |err| Error::os(err, Subject::Fd(fd))
    }

    /// For `map_err`: an OS error about `path`.
    pub fn about_path(path: &CStr) -> impl FnOnce(io::Error) -> Self + '_ {
        move |err| Error::os(err, Subject::Path(PathBuf::from(OsStr::from_bytes(path.to_bytes()))))
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::os(err, Subject::Nothing)
    }
}
