//! The module on a platform the fd core does not support (Windows: no `dup2` onto the C
//! runtime's and the OS's standard handles at once yet). `import fdredirect` works, so code that
//! only sometimes redirects keeps importing; entering a redirect raises `NotImplementedError`
//! naming the platform, from `Redirect.__new__`, before anything is touched. Built on any
//! platform with the `unsupported` feature, which is how this file is tested.

use pyo3::exceptions::{PyAttributeError, PyNotImplementedError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// What the user reads, e.g. "fdredirect does not support Windows yet: ...".
fn reason() -> String {
    let platform = match std::env::consts::OS {
        "windows" => "Windows".to_owned(),
        other => format!("{other} (a build with the `unsupported` feature)"),
    };
    format!(
        "fdredirect does not support {platform} yet: it redirects file descriptors 1 and 2 with POSIX \
         dup2, which needs Linux, macOS or a BSD"
    )
}

/// Every redirect's base class. Its constructor raises.
#[pyclass(subclass, frozen, module = "fdredirect._native")]
struct Redirect;

#[pymethods]
impl Redirect {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Err(PyNotImplementedError::new_err(reason()))
    }
}

/// The base class of `redirect_fds`. Its constructor raises.
#[pyclass(subclass, frozen, module = "fdredirect._native")]
struct Redirects;

#[pymethods]
impl Redirects {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Err(PyNotImplementedError::new_err(reason()))
    }
}

/// Named by the public API; never made here.
#[pyclass(frozen, module = "fdredirect._native")]
struct Captured;

/// Nothing to flush: no block can be open.
#[pyfunction]
fn flush_all() {}

/// Nothing to end: no block can be open.
#[pyfunction]
fn shutdown() {}

/// Any other name of the real module: an `AttributeError` that says why it is missing.
#[pyfunction]
fn __getattr__(name: &str) -> PyResult<()> {
    Err(PyAttributeError::new_err(format!(
        "module 'fdredirect._native' has no attribute '{name}': {}",
        reason()
    )))
}

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("UNSUPPORTED", reason())?;
    m.add_class::<Redirect>()?;
    m.add_class::<Redirects>()?;
    m.add_class::<Captured>()?;
    m.add_function(wrap_pyfunction!(flush_all, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(__getattr__, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_imports_and_a_redirect_raises_naming_the_platform() {
        Python::initialize();
        Python::attach(|py| {
            let module = PyModule::new(py, "_native").unwrap();
            native_module(&module).unwrap();
            for class in ["Redirect", "Redirects"] {
                let err = module.getattr(class).unwrap().call1((1, "capture")).unwrap_err();
                assert!(err.is_instance_of::<PyNotImplementedError>(py));
                assert_eq!(err.value(py).to_string(), reason());
            }
            let missing = module.getattr("c_printf").unwrap_err();
            assert!(missing.is_instance_of::<PyAttributeError>(py));
            assert!(missing.value(py).to_string().ends_with(&reason()));
        });
    }

    #[test]
    fn the_reason_names_the_platform() {
        let reason = super::reason();
        assert!(reason.starts_with("fdredirect does not support "));
        assert!(reason.contains(if cfg!(windows) { "Windows" } else { std::env::consts::OS }));
    }
}
