//! What a redirect's target is, as classified in Python (`fdredirect/_targets.py`) before anything
//! is touched: a `(kind, arg)` pair whose kind is a string, read here into `Plan`, and where
//! each plan points the fd.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::to_pyerr;
use super::live::{Mode, Shape};
use super::names;
use crate::error::{Error, Subject};
use crate::stack::{self, Sink};

/// The target kinds `_targets.classify` names (`_targets.Kind`).
#[derive(Clone, Copy)]
enum Kind {
    Capture,
    Fd,
    Path,
    File,
    DevNull,
    Stdout,
    Original,
    TextStream,
    BytesStream,
    Callable,
    Logger,
}

impl<'a, 'py> FromPyObject<'a, 'py> for Kind {
    type Error = PyErr;

    fn extract(kind: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(match &*kind.extract::<std::borrow::Cow<'_, str>>()? {
            "capture" => Kind::Capture,
            "fd" => Kind::Fd,
            "path" => Kind::Path,
            "file" => Kind::File,
            "devnull" => Kind::DevNull,
            "stdout" => Kind::Stdout,
            "original" => Kind::Original,
            "text_stream" => Kind::TextStream,
            "bytes_stream" => Kind::BytesStream,
            "callable" => Kind::Callable,
            "logger" => Kind::Logger,
            other => return Err(PyValueError::new_err(format!("unknown target kind {other:?}"))),
        })
    }
}

pub enum Plan {
    Capture,
    Fd(RawFd),
    Path(CString),
    /// A real OS-level file object: flushed at enter, then its fd is used.
    File,
    DevNull,
    /// `2>&1`: share whatever fd 1 points at.
    Stdout,
    /// Where the fd pointed before any redirect (see `original`).
    Original,
    /// A Python object that receives output while the block runs, through a pipe and the reader.
    Live(Mode, Shape),
}

impl Plan {
    /// `plan` is `(kind, arg)`: `arg` is the fd for `"fd"`, the `os.fsencode`d path for `"path"`,
    /// the level for `"logger"`, `(lines, timestamps)` for `"callable"`, else ignored. `text`: the block decodes (callables get `str`).
    pub fn new(fd: RawFd, plan: &Bound<'_, PyAny>, text: bool) -> PyResult<Plan> {
        let (kind, arg): (Kind, Bound<'_, PyAny>) = plan.extract()?;
        Ok(match kind {
            Kind::Capture => Plan::Capture,
            Kind::Fd => Plan::Fd(arg.extract()?),
            Kind::Path => {
                let path = arg.cast::<PyBytes>()?.as_bytes().to_vec();
                Plan::Path(CString::new(path).map_err(|_| PyValueError::new_err("embedded null byte in path"))?)
            }
            Kind::File => Plan::File,
            Kind::DevNull => Plan::DevNull,
            Kind::Stdout if fd == 2 => Plan::Stdout,
            Kind::Stdout => return Err(PyValueError::new_err("STDOUT is only a target for stderr")),
            Kind::Original => Plan::Original,
            Kind::TextStream => Plan::Live(Mode::Text { call: false }, Shape::default()),
            Kind::BytesStream => Plan::Live(Mode::Bytes { call: false }, Shape::default()),
            Kind::Callable => {
                let (lines, timestamps) = arg.extract()?;
                let mode = if text {
                    Mode::Text { call: true }
                } else {
                    Mode::Bytes { call: true }
                };
                Plan::Live(mode, Shape { lines, timestamps })
            }
            Kind::Logger => Plan::Live(Mode::Logger { level: arg.extract()? }, Shape::default()),
        })
    }

    /// Where the fd is to point (`None`: a live target reads the block's pipe). Needs the GIL
    /// for a file object, which is flushed first, then its fd used. `held` keeps an fd the sink
    /// names open until the switch is made.
    pub fn sink<'p>(
        &'p self,
        py: Python<'_>,
        fd: RawFd,
        target: &Bound<'_, PyAny>,
        held: &mut Option<OwnedFd>,
    ) -> PyResult<Option<Sink<'p>>> {
        Ok(Some(match self {
            Plan::Capture => Sink::Capture,
            Plan::Fd(target) => Sink::Fd(*target),
            Plan::Path(path) => Sink::Path(path),
            Plan::File => {
                target.call_method0(names::FLUSH.get(py))?;
                Sink::Fd(target.call_method0(names::FILENO.get(py))?.extract()?)
            }
            Plan::DevNull => Sink::DevNull,
            Plan::Stdout => Sink::Follow { fd: 1, entry: None },
            Plan::Original => Sink::Fd(original(py, fd, held)?),
            Plan::Live(..) => return Ok(None),
        }))
    }

    /// The path of a path target, for the messages of errors about it.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Plan::Path(path) => Some(PathBuf::from(std::ffi::OsStr::from_bytes(path.as_bytes()))),
            _ => None,
        }
    }

    /// What an error writing to the target names: its path, or its fd.
    pub fn subject(&self) -> Subject {
        match (self.path(), self) {
            (Some(path), _) => Subject::Path(path),
            (None, Plan::Fd(target)) => Subject::Fd(*target),
            _ => Subject::Nothing,
        }
    }
}

/// Where `fd` pointed before any redirect: before the oldest block of this library still open
/// on it (the fd itself when there is none), and before a Jupyter kernel's own fd capture
/// (`_targets.kernel_terminal`). Other redirects made before the oldest block are not undone:
/// what they replaced is not known here.
fn original(py: Python<'_>, fd: RawFd, held: &mut Option<OwnedFd>) -> PyResult<RawFd> {
    let kernel = py
        .import("fdredirect._targets")?
        .getattr(names::KERNEL_TERMINAL.get(py))?
        .call1((fd,))?;
    if let Some(terminal) = kernel.extract::<Option<RawFd>>()? {
        return Ok(terminal);
    }
    let closed = || Error::os(std::io::Error::from_raw_os_error(libc::EBADF), Subject::Fd(fd));
    let original = stack::original(fd)
        .and_then(|o| o.ok_or_else(closed))
        .map_err(to_pyerr)?;
    Ok(held.insert(original).as_raw_fd())
}
