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
mod lines;
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
    fork::install_handlers(binding::live::hold_for_fork);
    binding::make_once(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<binding::redirect::Redirect>()?;
    m.add_class::<binding::captured::Captured>()?;
    m.add_class::<binding::streams::FdWriter>()?;
    m.add_class::<binding::step::Step>()?;
    m.add_function(wrap_pyfunction!(binding::flush_all, m)?)?;
    m.add_function(wrap_pyfunction!(binding::shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(binding::crash::crash_guard, m)?)?;
    m.add_function(wrap_pyfunction!(binding::crash::crash_unguard, m)?)?;
    for (name, kind) in [
        ("KIND_CAPTURE", binding::redirect::KIND_CAPTURE),
        ("KIND_FD", binding::redirect::KIND_FD),
        ("KIND_PATH", binding::redirect::KIND_PATH),
        ("KIND_FILE", binding::redirect::KIND_FILE),
        ("KIND_DEVNULL", binding::redirect::KIND_DEVNULL),
        ("KIND_STDOUT", binding::redirect::KIND_STDOUT),
        ("KIND_TEXT_STREAM", binding::redirect::KIND_TEXT_STREAM),
        ("KIND_BYTES_STREAM", binding::redirect::KIND_BYTES_STREAM),
        ("KIND_CALLABLE", binding::redirect::KIND_CALLABLE),
        ("KIND_LOGGER", binding::redirect::KIND_LOGGER),
    ] {
        m.add(name, kind)?;
    }
    m.add_function(wrap_pyfunction!(binding::testing::c_printf, m)?)?;
    m.add_function(wrap_pyfunction!(binding::testing::c_fprintf_stderr, m)?)?;
    m.add_function(wrap_pyfunction!(binding::testing::c_write, m)?)?;
    m.add_function(wrap_pyfunction!(binding::testing::c_emit, m)?)?;
    Ok(())
}
