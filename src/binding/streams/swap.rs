//! Putting the writer in place of `sys.stdout`/`sys.stderr` for the outermost block on a fd, and
//! the remembered object back when that block ends.

use std::os::fd::RawFd;
use std::sync::Mutex;

use pyo3::prelude::*;

use super::{line_buffering, slot, sys_module, sys_name, writer};
use crate::binding::lock;
use crate::decode::{encoding_is, UTF8_NAMES};

/// Per redirected fd: how many blocks are open, the object `sys.<name>` was at the outermost,
/// and `sys.__<name>__` if the outermost enter made it line-buffered.
struct Swap {
    depth: usize,
    original: Option<Py<PyAny>>,
    line_buffered: Option<Py<PyAny>>,
}

const NO_BLOCK: Swap = Swap {
    depth: 0,
    original: None,
    line_buffered: None,
};

static SWAPS: Mutex<[Swap; 2]> = Mutex::new([NO_BLOCK; 2]);

/// A block on `fd` begins: at the outermost, remember `sys.<name>` and put the writer there.
/// Returns the writer's previous encoding, for `deactivate`.
pub fn activate(py: Python<'_>, fd: RawFd, encoding: Option<&str>) -> PyResult<Option<String>> {
    // Everything that may initialise a once-cell (and so release the GIL) before locking.
    let writer = writer::writer(py, fd)?;
    let sys = sys_module(py)?;
    let name = sys_name(py, fd, false);
    let outermost = {
        let mut swaps = lock(py, &SWAPS);
        let swap = &mut swaps[slot(fd)];
        let outermost = swap.depth == 0;
        if outermost {
            swap.original = Some(sys.getattr(name)?.unbind());
            sys.setattr(name, writer)?;
        }
        swap.depth += 1;
        outermost
    };
    // Outside the lock: reconfiguring flushes, which releases the GIL around the write.
    if outermost {
        if let Some(stream) = line_buffering::line_buffer_dunder(py, sys, fd) {
            let previous = lock(py, &SWAPS)[slot(fd)].line_buffered.replace(stream);
            if let Some(previous) = previous {
                line_buffering::restore_dunder(py, &previous); // another thread's outermost block ended meanwhile
            }
        }
    }
    let encoding = encoding.filter(|e| !encoding_is(e, UTF8_NAMES)).map(str::to_owned);
    Ok(writer.get().replace_encoding(py, encoding))
}

/// A block on `fd` ends: at the outermost, put back the remembered object, unless the user
/// replaced `sys.<name>` meanwhile (their choice wins).
pub fn deactivate(py: Python<'_>, fd: RawFd, previous_encoding: Option<String>) {
    let (Ok(writer), Ok(sys)) = (writer::writer(py, fd), sys_module(py)) else {
        return;
    };
    let name = sys_name(py, fd, false);
    writer.get().replace_encoding(py, previous_encoding);
    let mut swaps = lock(py, &SWAPS);
    let swap = &mut swaps[slot(fd)];
    swap.depth = swap.depth.saturating_sub(1);
    if swap.depth > 0 {
        return;
    }
    let line_buffered = swap.line_buffered.take();
    let Some(original) = swap.original.take() else {
        return;
    };
    let still_ours = sys.getattr(name).is_ok_and(|current| current.is(writer));
    if still_ours {
        let _ = sys.setattr(name, &original);
    }
    drop(swaps);
    if let Some(stream) = &line_buffered {
        line_buffering::restore_dunder(py, stream);
    }
    drop(original); // outside the lock: the last reference may run Python code
}
