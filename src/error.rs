//! The fd core's error type. It keeps `errno` and what the error was about (a path, a file
//! descriptor), so the binding can build the right `OSError` subclass with a useful message.

use std::io;
use std::os::fd::RawFd;
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
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::os(err, Subject::Nothing)
    }
}
