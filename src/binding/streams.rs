//! Python-level streams: what `sys.stdout`/`sys.stderr` do around a switch.
//!
//! - `writer`: the native writer that stands in for `sys.stdout`/`sys.stderr` inside a block.
//! - `swap`: putting it in place at the outermost enter, and back at the outermost exit.
//! - `line_buffering`: `sys.__stdout__`/`sys.__stderr__` made line-buffered while a block is open.
//! - here: flushing every Python-level stream before a switch.

mod line_buffering;
mod swap;
mod writer;

use std::os::fd::RawFd;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyString};

pub use swap::{activate, deactivate};
pub use writer::FdWriter;

use super::names;

static SYS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn sys_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    SYS.get_or_try_init(py, || Ok(py.import("sys")?.unbind()))
        .map(|m| m.bind(py))
}

/// Index of per-fd tables: fd 1 → 0, fd 2 → 1 (only 1 and 2 reach this module).
fn slot(fd: RawFd) -> usize {
    usize::from(fd == 2)
}

/// `stdout`/`stderr`, or with `dunder` `__stdout__`/`__stderr__`: the `sys` attribute for `fd`.
fn sys_name(py: Python<'_>, fd: RawFd, dunder: bool) -> &Bound<'_, PyString> {
    let name = match (fd == 1, dunder) {
        (true, false) => &names::STDOUT,
        (false, false) => &names::STDERR,
        (true, true) => &names::DUNDER_STDOUT,
        (false, true) => &names::DUNDER_STDERR,
    };
    name.get(py)
}

/// At import, while nothing else runs: the once-made objects of this module (see `names`).
pub fn make_once(py: Python<'_>) -> PyResult<()> {
    sys_module(py)?;
    writer::make_once(py)?;
    line_buffering::make_once(py)?;
    Ok(())
}

/// Flush `sys.stdout`, `sys.stderr`, `sys.__stdout__`, `sys.__stderr__`.
///
/// A stream that cannot flush (closed, a broken pipe) must not stop a redirect: the redirect's
/// job is to point the fd somewhere that works, and the stream reports its own fault at its next
/// write, so an ordinary exception is dropped. Anything else (`KeyboardInterrupt`, `SystemExit`,
/// raised by a Python stream's `flush` or a signal handler running inside it) must never be lost:
/// the other streams are still flushed, then the first such exception is returned.
pub fn flush_python(py: Python<'_>) -> PyResult<()> {
    let Ok(sys) = sys_module(py) else { return Ok(()) };
    let mut interrupted = None;
    let mut flushed: [usize; 4] = [0; 4];
    let streams = [(1, false), (2, false), (1, true), (2, true)];
    for (i, (fd, dunder)) in streams.into_iter().enumerate() {
        let Ok(stream) = sys.getattr(sys_name(py, fd, dunder)) else {
            continue;
        };
        let id = stream.as_ptr() as usize;
        if stream.is_none() || stream.is_instance_of::<FdWriter>() || flushed.contains(&id) {
            continue;
        }
        flushed[i] = id;
        if let Err(err) = stream.call_method0(names::FLUSH.get(py)) {
            if !err.is_instance_of::<PyException>(py) && interrupted.is_none() {
                interrupted = Some(err);
            }
        }
    }
    interrupted.map_or(Ok(()), Err)
}
