//! Argument checks shared by the classes.

use crate::errors;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use std::time::Duration;

/// Seconds (a float or int) to a duration: finite, zero or more, at most a year;
/// `InvalidArgument` (a ValueError) otherwise.
pub(crate) fn secs(py: Python<'_>, what: &str, v: f64) -> PyResult<Duration> {
    tenure::client::timeout_from_secs(v).map_err(|_| {
        errors::invalid(
            py,
            format!("{what} must be a finite number of seconds between 0 and one year, not {v}"),
        )
    })
}

/// An optional timeout: None means the longest accepted ([`tenure::client::MAX_TIMEOUT`]).
pub(crate) fn timeout(py: Python<'_>, v: Option<f64>) -> PyResult<Duration> {
    match v {
        Some(v) => secs(py, "timeout", v),
        None => Ok(tenure::client::MAX_TIMEOUT),
    }
}

/// An optional callable: TypeError when it is given and cannot be called.
pub(crate) fn callback(what: &str, cb: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    match cb {
        None => Ok(None),
        Some(c) if c.is_none() => Ok(None),
        Some(c) if c.is_callable() => Ok(Some(c.unbind())),
        Some(c) => Err(PyTypeError::new_err(format!(
            "{what} must be callable, not {}",
            c.get_type().name()?
        ))),
    }
}

/// A required callable.
pub(crate) fn required_callback(what: &str, cb: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    match callback(what, Some(cb))? {
        Some(c) => Ok(c),
        None => Err(PyTypeError::new_err(format!(
            "{what} must be callable, not None"
        ))),
    }
}

/// Endpoints: one `"host:port"` string, or an iterable of them.
pub(crate) fn endpoints(v: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(vec![s.extract::<String>()?]);
    }
    if v.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "endpoints must be a str or a list of str, not bytes",
        ));
    }
    let iter = v.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "endpoints must be a str or a list of str, not {}",
            v.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let mut out = Vec::new();
    for item in iter {
        let item = item?;
        let s = item.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "each endpoint must be a str, not {}",
                item.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        out.push(s.extract::<String>()?);
    }
    Ok(out)
}

// `PyUnicode_AsUTF8AndSize` is in the stable ABI from Python 3.10 on and exported by every
// CPython 3 (outside the limited API before 3.10). pyo3 does not declare it for an abi3-py39
// build, so it is declared here and only called where the running interpreter is 3.10 or
// later (`FAST_STR`).
extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const std::os::raw::c_char;
}

/// Set at module initialisation: the interpreter is 3.10 or later.
pub(crate) static FAST_STR: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Runs `f` on the UTF-8 text of `s`: without a copy on Python 3.10 and later (the buffer
/// the str object caches), through a copy on 3.9. UnicodeEncodeError for lone surrogates.
pub(crate) fn with_str<R>(s: &Bound<'_, PyString>, f: impl FnOnce(&str) -> R) -> PyResult<R> {
    if FAST_STR.load(std::sync::atomic::Ordering::Relaxed) {
        let mut n: pyo3::ffi::Py_ssize_t = 0;
        // SAFETY: `s` is a live str object (its type was checked when it was extracted)
        // and we are attached to the interpreter; the returned buffer belongs to `s`, which
        // outlives this call, and holds `n` bytes of valid UTF-8.
        let text = unsafe {
            let p = PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut n);
            if p.is_null() {
                return Err(PyErr::fetch(s.py()));
            }
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(p.cast::<u8>(), n as usize))
        };
        return Ok(f(text));
    }
    let text = s.to_cow()?;
    Ok(f(&text))
}
