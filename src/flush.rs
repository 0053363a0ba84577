//! Flushing every user-space buffer that holds bytes meant for fd 1/2: libc's `stdout`/`stderr`,
//! each loaded libstdc++ (`cout`, `clog`, `wcout`, `wclog`) and each loaded libgfortran.
//!
//! Extensions are loaded `RTLD_LOCAL`, so their runtimes are invisible to
//! `dlsym(RTLD_DEFAULT, …)`: each loaded object is found in the loader's list
//! (`platform::loaded_objects`), opened again with `RTLD_NOLOAD` and searched there. The list is
//! rebuilt only when the loader's stamp changes: a scan costs far more than the flush itself.

use crate::locks;
use crate::platform::{self, c_stderr, c_stdout, LoaderStamp};
use std::ffi::{c_void, CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard, Once};

/// `std::basic_ostream<C>::flush()`, called on `this`.
type OstreamFlush = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
/// libgfortran's `FLUSH` statement; a null unit flushes every unit.
type FortranFlush = unsafe extern "C" fn(*const i32);
/// `std::ios_base::sync_with_stdio(bool)`, a static member function: returns the current setting.
/// Called with `true` it only reads it: libstdc++ acts only on a change from synchronised to not.
type SyncWithStdio = unsafe extern "C" fn(bool) -> bool;

/// (stream object, its flush member function) for libstdc++.
const CXX_STREAMS: [(&CStr, &CStr); 4] = [
    (c"_ZSt4cout", c"_ZNSo5flushEv"),
    (c"_ZSt4clog", c"_ZNSo5flushEv"),
    (c"_ZSt5wcout", c"_ZNSt13basic_ostreamIwSt11char_traitsIwEE5flushEv"),
    (c"_ZSt5wclog", c"_ZNSt13basic_ostreamIwSt11char_traitsIwEE5flushEv"),
];

enum Flusher {
    Ostream { stream: *mut c_void, flush: OstreamFlush },
    Fortran(FortranFlush),
}

// SAFETY: the pointers point into shared objects that we hold a dlopen handle for (never closed),
// so they stay valid in every thread for the life of the process.
unsafe impl Send for Flusher {}

impl Flusher {
    fn flush(&self) {
        match *self {
            Flusher::Ostream { stream, flush } => {
                // A libstdc++ older than GCC 13 constructs `cout` only when some translation unit
                // including <iostream> runs its initialiser; until then the object is zeroed static
                // storage, and its first word (the vtable pointer) is null. Never call into that.
                // SAFETY: `stream` points to a static ostream object, at least one word long.
                let unconstructed = unsafe { stream.cast::<*const c_void>().read() }.is_null();
                if !unconstructed {
                    // SAFETY: a constructed std::ostream; flush() takes `this` as its only argument.
                    unsafe { flush(stream) };
                }
            }
            // SAFETY: flush_i4(NULL) is libgfortran's "flush all units".
            Flusher::Fortran(flush) => unsafe { flush(std::ptr::null()) },
        }
    }
}

#[derive(Default)]
pub(crate) struct Runtimes {
    /// The loader's stamp when the list was built; `None` before the first scan.
    seen: Option<LoaderStamp>,
    flushers: Vec<Flusher>,
    /// Per loaded libstdc++, how to ask whether its streams write straight into libc's (see
    /// `native_idle`); `None` where it cannot be asked.
    cxx_synced: Vec<Option<SyncWithStdio>>,
    /// A libgfortran is loaded: its units keep buffers that cannot be looked into.
    fortran: bool,
    /// Runtimes opened by an earlier scan. Never opened twice: musl counts every successful
    /// `dlopen`, even of a loaded object, as a load, so opening again would change the stamp
    /// and make every flush scan again.
    opened: Vec<(CString, Handle)>,
}

/// A `dlopen` handle, never closed.
struct Handle(*mut c_void);
// SAFETY: a dlopen handle may be used from any thread; ours is never closed.
unsafe impl Send for Handle {}

static RUNTIMES: Mutex<Runtimes> = Mutex::new(Runtimes {
    seen: None,
    flushers: Vec::new(),
    cxx_synced: Vec::new(),
    fortran: false,
    opened: Vec::new(),
});

pub(crate) fn lock_runtimes() -> MutexGuard<'static, Runtimes> {
    locks::lock(&RUNTIMES)
}

/// Flush libc's `stdout` and `stderr`, and every loaded C++ and Fortran runtime.
///
/// Not `fflush(NULL)`: that locks every `FILE`, and a thread blocked in `fgets(stdin)` would hang it.
pub fn flush_native() {
    let _ = flush_native_checked(1);
}

/// Whether no user-space buffer holds bytes for fd 1/2 right now, so that `flush_native` would
/// write nothing: told without a syscall, without flushing, and without waiting for a lock (a
/// synchronisation point asks this with the GIL held, before every write of a synced stream).
/// libc's `stdout` and `stderr` are empty, and every loaded C++ runtime writes straight into them
/// (`sync_with_stdio(true)`, the default: `cout` and friends keep no buffer of their own then).
/// `false` whenever that cannot be told: libc does not say, a Fortran runtime is loaded (its
/// units' buffers cannot be looked into), a runtime was loaded since the last scan, or another
/// thread is flushing. Not seen: a `streambuf` of its own that a program gave `cout` (`rdbuf`).
pub fn native_idle() -> bool {
    let empty = |stream| platform::pending(stream) == Some(0);
    if !(empty(c_stdout()) && empty(c_stderr())) {
        return false;
    }
    let Ok(runtimes) = RUNTIMES.try_lock() else {
        return false; // busy (a flush), or poisoned: the slow way
    };
    runtimes.seen == Some(platform::loader_stamp())
        && !runtimes.fortran
        // SAFETY: `sync_with_stdio` of a loaded libstdc++ (never unloaded: we hold a handle);
        // called with `true`, it only returns the current setting.
        && runtimes.cxx_synced.iter().all(|synced| synced.is_some_and(|synced| unsafe { synced(true) }))
}

/// `flush_native`, reporting whether libc's stream for `fd` (1: `stdout`, 2: `stderr`) could write
/// its buffer out: at the end of a block onto a full disk, the error belongs to that block.
/// (On a failed write glibc and musl drop the buffer, so nothing leaks to the fd restored after.)
pub fn flush_native_checked(fd: RawFd) -> io::Result<()> {
    {
        let mut runtimes = lock_runtimes();
        runtimes.refresh();
        for flusher in &runtimes.flushers {
            flusher.flush();
        }
    }
    // After the C++ streams: with sync_with_stdio(true) they write into libc's stdout.
    // SAFETY: libc's stdout/stderr are valid FILE pointers for the life of the process.
    let out = unsafe { libc::fflush(c_stdout()) };
    let out_error = io::Error::last_os_error();
    // SAFETY: as above.
    let err = unsafe { libc::fflush(c_stderr()) };
    let err_error = io::Error::last_os_error();
    // EINTR is not reported: Python code never sees InterruptedError (PEP 475), and a signal
    // handler's exception, if any, is raised on its own.
    let failed = |ret: libc::c_int, error: &io::Error| ret != 0 && error.kind() != io::ErrorKind::Interrupted;
    match fd {
        1 if failed(out, &out_error) => Err(out_error),
        2 if failed(err, &err_error) => Err(err_error),
        _ => Ok(()),
    }
}

/// C stdio fixes its buffering at first use. If the first use happens inside a redirect, stdout
/// becomes fully buffered for the whole process, and terminal output appears late forever after.
/// So, once per process and before the first switch: a terminal stdout with no buffer chosen yet
/// is made line-buffered, as it would have been. Where libc does not tell whether a buffer was
/// chosen (`platform::buffer_size` is `None`), nothing is changed: `setvbuf` after the first I/O
/// is undefined.
pub fn line_buffer_terminal_stdout() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let stdout = c_stdout();
        if crate::fd::isatty(1) && platform::buffer_size(stdout) == Some(0) {
            // SAFETY: stdout is a valid FILE; setvbuf is allowed before the first I/O on the
            // stream, which is exactly when no buffer size has been chosen.
            unsafe { libc::setvbuf(stdout, std::ptr::null_mut(), libc::_IOLBF, libc::BUFSIZ as usize) };
        }
    });
}

impl Runtimes {
    /// A handle to the loaded object at `path`, opened once.
    fn open(&mut self, path: CString) -> Option<*mut c_void> {
        if let Some((_, handle)) = self.opened.iter().find(|(opened, _)| *opened == path) {
            return Some(handle.0);
        }
        // SAFETY: RTLD_NOLOAD never loads anything; it returns a handle to an object that is
        // already loaded (and pins it: we never dlclose, so our symbol pointers stay valid).
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
        if handle.is_null() {
            return None;
        }
        self.opened.push((path, Handle(handle)));
        Some(handle)
    }

    fn refresh(&mut self) {
        let stamp = platform::loader_stamp();
        if self.seen == Some(stamp) {
            return;
        }
        self.flushers.clear();
        self.cxx_synced.clear();
        self.fortran = false;
        for path in platform::loaded_objects() {
            let name = path.to_bytes();
            let is_cxx = contains(name, b"libstdc++");
            let is_fortran = contains(name, b"libgfortran");
            if !(is_cxx || is_fortran) {
                continue;
            }
            let Some(handle) = self.open(path) else {
                continue;
            };
            if is_cxx {
                for (stream, flush) in CXX_STREAMS {
                    if let (Some(stream), Some(flush)) = (symbol(handle, stream), symbol(handle, flush)) {
                        // SAFETY: the mangled name is that of basic_ostream::flush(), whose ABI
                        // on this platform is a C function taking `this`.
                        let flush = unsafe { std::mem::transmute::<*mut c_void, OstreamFlush>(flush) };
                        self.flushers.push(Flusher::Ostream { stream, flush });
                    }
                }
                let synced = symbol(handle, c"_ZNSt8ios_base15sync_with_stdioEb");
                // SAFETY: the mangled name is that of the static `ios_base::sync_with_stdio(bool)`,
                // a plain C-ABI function on this platform.
                self.cxx_synced
                    .push(synced.map(|f| unsafe { std::mem::transmute::<*mut c_void, SyncWithStdio>(f) }));
            }
            self.fortran |= is_fortran;
            if let Some(flush) = symbol(handle, c"_gfortran_flush_i4").filter(|_| is_fortran) {
                // SAFETY: `_gfortran_flush_i4(GFC_INTEGER_4 *unit)` is a C-ABI function.
                let flush = unsafe { std::mem::transmute::<*mut c_void, FortranFlush>(flush) };
                self.flushers.push(Flusher::Fortran(flush));
            }
        }
        self.seen = Some(stamp);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn symbol(handle: *mut c_void, name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `handle` is a live dlopen handle and `name` is NUL-terminated.
    let ptr = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!ptr.is_null()).then_some(ptr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_does_not_move_without_loading() {
        assert_eq!(platform::loader_stamp(), platform::loader_stamp());
    }

    #[test]
    fn loaded_objects_include_libc() {
        let libc_name: &[u8] = if cfg!(target_os = "macos") {
            b"libSystem"
        } else {
            b"libc"
        };
        assert!(platform::loaded_objects()
            .iter()
            .any(|p| contains(p.to_bytes(), libc_name)));
    }

    #[test]
    fn idle_once_flushed() {
        flush_native();
        // The test harness's own output goes through Rust's std, not libc's buffers; another
        // test flushing at this moment makes it `false`, never the other way.
        if platform::pending(c_stdout()).is_some() && !lock_runtimes().fortran {
            for _ in 0..100 {
                if native_idle() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            panic!("never idle");
        }
    }

    #[test]
    fn flush_native_is_repeatable() {
        flush_native();
        flush_native();
        assert!(lock_runtimes().seen.is_some());
    }
}
