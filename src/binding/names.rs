//! Every Python name the binding looks up, interned once at import (`intern_all`) instead of on
//! first use: `PyO3` lets go of the GIL while it makes a name, so a first use in one thread can be
//! overtaken by interpreter exit, and a `fork()` at that moment leaves the name "being made"
//! forever in the child, whose first use of it then waits forever.

use pyo3::sync::Interned;
use pyo3::Python;

pub static DUNDER_STDERR: Interned = Interned::new("__stderr__");
pub static DUNDER_STDOUT: Interned = Interned::new("__stdout__");
pub static BUFFER: Interned = Interned::new("buffer");
pub static DECODE: Interned = Interned::new("decode");
pub static EXTRA: Interned = Interned::new("extra");
pub static FDREDIRECT_FD: Interned = Interned::new("fdredirect_fd");
pub static FILENO: Interned = Interned::new("fileno");
pub static FLUSH: Interned = Interned::new("flush");
pub static GETINCREMENTALDECODER: Interned = Interned::new("getincrementaldecoder");
pub static KERNEL_TERMINAL: Interned = Interned::new("kernel_terminal");
pub static LINE_BUFFERING: Interned = Interned::new("line_buffering");
pub static LOG: Interned = Interned::new("log");
pub static RECONFIGURE: Interned = Interned::new("reconfigure");
pub static REFUSE_LOGGER_LOOP: Interned = Interned::new("refuse_logger_loop");
pub static STDERR: Interned = Interned::new("stderr");
pub static STDOUT: Interned = Interned::new("stdout");
pub static TOBYTES: Interned = Interned::new("tobytes");
pub static WRITE: Interned = Interned::new("write");
pub static WRITE_THROUGH: Interned = Interned::new("write_through");
// The logger records of live blocks (`live::target`).
pub static CREATED: Interned = Interned::new("created");
pub static HANDLE: Interned = Interned::new("handle");
pub static ISENABLEDFOR: Interned = Interned::new("isEnabledFor");
pub static MAKERECORD: Interned = Interned::new("makeRecord");
pub static MSECS: Interned = Interned::new("msecs");
pub static NAME: Interned = Interned::new("name");
pub static RELATIVECREATED: Interned = Interned::new("relativeCreated");

/// At import, while nothing else runs.
pub fn intern_all(py: Python<'_>) {
    for name in [
        &DUNDER_STDERR,
        &DUNDER_STDOUT,
        &BUFFER,
        &DECODE,
        &EXTRA,
        &FDREDIRECT_FD,
        &FILENO,
        &FLUSH,
        &GETINCREMENTALDECODER,
        &KERNEL_TERMINAL,
        &LINE_BUFFERING,
        &LOG,
        &RECONFIGURE,
        &REFUSE_LOGGER_LOOP,
        &STDERR,
        &STDOUT,
        &TOBYTES,
        &WRITE,
        &WRITE_THROUGH,
        &CREATED,
        &HANDLE,
        &ISENABLEDFOR,
        &MAKERECORD,
        &MSECS,
        &NAME,
        &RELATIVECREATED,
    ] {
        name.get(py);
    }
}
