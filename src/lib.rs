//! fdredirect's native core. The fd core (`fd`, `flush`, `memfile`, `stack`, `fork`) is plain
//! Rust; `binding` is the only part that touches Python types.

mod binding;
mod channel;
mod crash;
mod decode;
mod delivery;
mod error;
mod fd;
mod flush;
mod fork;
mod handover;
mod linebuf;
mod locks;
mod memfile;
mod poll;
mod reader;
mod stack;
mod stamped;
mod worker;

use pyo3::prelude::*;

#[pymodule]
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
