//! Python-level streams: what `sys.stdout`/`sys.stderr` do around a switch.
//!
//! - `writer`: the native writer that stands in for `sys.stdout`/`sys.stderr` inside a block.
//! - `swap`: putting it in place at the outermost enter, and back at the outermost exit.
//! - `line_buffering`: `sys.__stdout__`/`sys.__stderr__` made line-buffered while a block is open.
//! - here: flushing every Python-level stream before a switch (the writers' line buffers too).

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

/// Write out the writers' partial lines, then flush `sys.stdout`, `sys.stderr`, `sys.__stdout__`,
/// `sys.__stderr__`. The writers are drained even when `sys.stdout` is no longer one of them: code
/// may keep a reference to it (`print(file=...)`, a logging handler made inside the block).
///
/// A stream that cannot flush (closed, a broken pipe) must not stop a redirect: the redirect's
/// job is to point the fd somewhere that works, and the stream reports its own fault at its next
/// write, so an ordinary exception is dropped. Anything else (`KeyboardInterrupt`, `SystemExit`,
/// raised by a Python stream's `flush` or a signal handler running inside it) must never be lost:
/// the other streams are still flushed, then the first such exception is returned.
pub fn flush_python(py: Python<'_>) -> PyResult<()> {
    let mut interrupted = drain_writers(py).err();
    let Ok(sys) = sys_module(py) else {
        return interrupted.map_or(Ok(()), Err);
    };
    let mut flushed: [usize; 4] = [0; 4];
    let streams = [(1, false), (2, false), (1, true), (2, true)];
    // Read from `sys.__dict__`, as `getattr(sys, name)` would find them, at a fraction of the cost.
    let sys_dict = sys.dict();
    for (i, (fd, dunder)) in streams.into_iter().enumerate() {
        let Ok(Some(stream)) = sys_dict.get_item(sys_name(py, fd, dunder)) else {
            continue;
        };
        let id = stream.as_ptr() as usize;
        if stream.is_none() || stream.is_instance_of::<FdWriter>() || flushed.contains(&id) {
            continue;
        }
        flushed[i] = id;
        keep_interrupt(py, stream.call_method0(names::FLUSH.get(py)), &mut interrupted);
    }
    interrupted.map_or(Ok(()), Err)
}

/// Write out the writers' partial lines (see `flush_python` for which errors are returned).
pub fn drain_writers(py: Python<'_>) -> PyResult<()> {
    let mut interrupted = None;
    for fd in [1, 2] {
        keep_interrupt(py, writer::drain(py, fd), &mut interrupted);
    }
    interrupted.map_or(Ok(()), Err)
}

/// Drop an ordinary exception of a flush (see `flush_python`); keep the first other one.
fn keep_interrupt<T>(py: Python<'_>, result: PyResult<T>, interrupted: &mut Option<PyErr>) {
    if let Err(err) = result {
        if !err.is_instance_of::<PyException>(py) && interrupted.is_none() {
            *interrupted = Some(err);
        }
    }
}
