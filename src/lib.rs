//! fdredirect's native core. The fd core (`fd`, `flush`, `memfile`, `stack`, `fork`, `platform`)
//! is plain Rust; `binding` is the only part that touches Python types. Where there is no POSIX
//! fd core (`cfg(fdr_posix)`, set by build.rs), the module is `unsupported`'s.

#[cfg(fdr_posix)]
mod binding;
#[cfg(fdr_posix)]
mod channel;
#[cfg(fdr_posix)]
mod crash;
#[cfg(fdr_posix)]
mod decode;
#[cfg(fdr_posix)]
mod delivery;
#[cfg(fdr_posix)]
mod error;
#[cfg(fdr_posix)]
mod fd;
#[cfg(fdr_posix)]
mod flush;
#[cfg(fdr_posix)]
mod fork;
#[cfg(fdr_posix)]
mod handover;
#[cfg(fdr_posix)]
mod linebuf;
#[cfg(fdr_posix)]
mod lines;
#[cfg(fdr_posix)]
mod locks;
#[cfg(fdr_posix)]
mod memfile;
#[cfg(fdr_posix)]
mod platform;
#[cfg(fdr_posix)]
mod poll;
#[cfg(fdr_posix)]
mod reader;
#[cfg(fdr_posix)]
mod stack;
#[cfg(fdr_posix)]
mod stamped;
#[cfg(fdr_posix)]
mod worker;

#[cfg(fdr_posix)]
use pyo3::prelude::*;

#[cfg(not(fdr_posix))]
mod unsupported;

// Relies on the GIL: see docs/platforms.md, "Free-threaded CPython".
#[cfg(fdr_posix)]
#[pymodule(gil_used = true)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    fork::install_handlers(|| {
        let mut held = binding::live::hold_for_fork();
        held.extend(linebuf::hold_for_fork());
        held
    });
    binding::make_once(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<binding::redirect::Redirect>()?;
    m.add_class::<binding::both::Redirects>()?;
    m.add_class::<binding::captured::Captured>()?;
    m.add_class::<binding::streams::FdWriter>()?;
    m.add_class::<binding::step::Step>()?;
    m.add_function(wrap_pyfunction!(binding::flush_all, m)?)?;
    m.add_function(wrap_pyfunction!(binding::shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(binding::crash::crash_guard, m)?)?;
    m.add_function(wrap_pyfunction!(binding::crash::crash_unguard, m)?)?;
    m.add_function(wrap_pyfunction!(binding::testing::c_printf, m)?)?;
    m.add_function(wrap_pyfunction!(binding::testing::c_fprintf_stderr, m)?)?;
    m.add_function(wrap_pyfunction!(binding::testing::c_write, m)?)?;
    m.add_function(wrap_pyfunction!(binding::testing::c_emit, m)?)?;
    Ok(())
}
