//! The exception hierarchy of `tenure` and the one mapping from the core's error kinds
//! ([`tenure::ErrorKind`]) to it.
//!
//! Every exception derives from `tenure.TenureError`. Where a built-in exception means the
//! same thing, the class also derives from it, so callers can catch either:
//!
//! | core error | Python exception | also a |
//! |---|---|---|
//! | `InvalidArgument` | `InvalidArgument` | `ValueError` |
//! | `Timeout` (lock) | `LockTimeout` (a `Timeout`) | `TimeoutError` |
//! | `Timeout` (other) | `Timeout` | `TimeoutError` |
//! | `AlreadyHeld` | `LockHeld` | |
//! | `SessionExpired` | `SessionExpired` | |
//! | `DataLost` | `DataLost` | |
//! | `Closed` | `Closed` | |
//! | `ConnectionFailed` | `ConnectionFailed` | `ConnectionError` |
//! | `Limit` | `LimitReached` | |
//! | `Rejected` | `Rejected` | |
//! | `NotHeld` | `NotHeld` | |
//! | `Io` | `IoError` | `OSError` |
//!
//! Wrong argument types raise the built-in `TypeError` (from pyo3's argument extraction).
//!
//! The classes are built at module initialisation with `type(name, bases, namespace)`, since
//! several of them have two bases, and live in `tenure._tenure` (re-exported by `tenure`).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// The exception classes, created once per process.
pub(crate) struct Classes {
    pub base: Py<PyType>,
    pub invalid_argument: Py<PyType>,
    pub timeout: Py<PyType>,
    pub lock_timeout: Py<PyType>,
    pub lock_held: Py<PyType>,
    pub session_expired: Py<PyType>,
    pub data_lost: Py<PyType>,
    pub closed: Py<PyType>,
    pub connection_failed: Py<PyType>,
    pub limit_reached: Py<PyType>,
    pub rejected: Py<PyType>,
    pub not_held: Py<PyType>,
    pub io_error: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn make<'py>(
    py: Python<'py>,
    name: &str,
    bases: &[&Bound<'py, PyAny>],
    doc: &str,
) -> PyResult<Py<PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "tenure")?;
    ns.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, bases)?;
    let ty = py
        .import("builtins")?
        .getattr("type")?
        .call1((name, bases, ns))?;
    Ok(ty.cast_into::<PyType>()?.unbind())
}

fn build(py: Python<'_>) -> PyResult<Classes> {
    let b = py.import("builtins")?;
    let exception = b.getattr("Exception")?;
    let value_error = b.getattr("ValueError")?;
    let timeout_error = b.getattr("TimeoutError")?;
    let connection_error = b.getattr("ConnectionError")?;
    let os_error = b.getattr("OSError")?;
    let base = make(
        py,
        "TenureError",
        &[&exception],
        "Base class of every error raised by tenure.",
    )?;
    let base_b = base.bind(py).clone().into_any();
    let sub = |name: &str, extra: Option<&Bound<'_, PyAny>>, doc: &str| -> PyResult<Py<PyType>> {
        match extra {
            Some(e) => make(py, name, &[&base_b, e], doc),
            None => make(py, name, &[&base_b], doc),
        }
    };
    let timeout = sub(
        "Timeout",
        Some(&timeout_error),
        "A call did not complete within its timeout (also a TimeoutError).",
    )?;
    let lock_timeout = make(
        py,
        "LockTimeout",
        &[&timeout.bind(py).clone().into_any()],
        "The lock was not granted within the timeout; no lock is held (also a TimeoutError).",
    )?;
    Ok(Classes {
        invalid_argument: sub(
            "InvalidArgument",
            Some(&value_error),
            "An argument is out of range or malformed (also a ValueError).",
        )?,
        lock_held: sub(
            "LockHeld",
            None,
            "This client's session already holds the lock it asked for.",
        )?,
        session_expired: sub(
            "SessionExpired",
            None,
            "The session expired (or the server no longer knows it).",
        )?,
        data_lost: sub(
            "DataLost",
            None,
            "The service lost its state (its incarnation changed).",
        )?,
        closed: sub(
            "Closed",
            None,
            "The object, or the client it belongs to, is closed.",
        )?,
        connection_failed: sub(
            "ConnectionFailed",
            Some(&connection_error),
            "No server could be reached, or none answered (also a ConnectionError).",
        )?,
        limit_reached: sub("LimitReached", None, "A limit of the service was reached.")?,
        rejected: sub("Rejected", None, "The server refused the request.")?,
        not_held: sub(
            "NotHeld",
            None,
            "The lock is not held (any more) by this client: it was lost before release.",
        )?,
        io_error: sub(
            "IoError",
            Some(&os_error),
            "An operating-system error: binding a socket, the data directory (also an OSError).",
        )?,
        timeout,
        lock_timeout,
        base,
    })
}

/// Creates the classes (once) and adds them to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let c = CLASSES.get_or_try_init(py, || build(py))?;
    for (name, ty) in [
        ("TenureError", &c.base),
        ("InvalidArgument", &c.invalid_argument),
        ("Timeout", &c.timeout),
        ("LockTimeout", &c.lock_timeout),
        ("LockHeld", &c.lock_held),
        ("SessionExpired", &c.session_expired),
        ("DataLost", &c.data_lost),
        ("Closed", &c.closed),
        ("ConnectionFailed", &c.connection_failed),
        ("LimitReached", &c.limit_reached),
        ("Rejected", &c.rejected),
        ("NotHeld", &c.not_held),
        ("IoError", &c.io_error),
    ] {
        m.add(name, ty.clone_ref(py))?;
    }
    Ok(())
}

fn classes(py: Python<'_>) -> &Classes {
    CLASSES
        .get_or_try_init(py, || build(py))
        .expect("tenure: cannot create the exception classes")
}

fn raise(py: Python<'_>, ty: &Py<PyType>, msg: String) -> PyErr {
    PyErr::from_type(ty.bind(py).clone(), msg)
}

/// What a failed call was (the core's [`tenure::Call`]: a lock's timeout is a `LockTimeout`).
pub(crate) use tenure::Call as Op;

/// Converts a core error into the Python exception of its kind ([`tenure::ErrorKind`]).
pub(crate) fn to_py(py: Python<'_>, e: tenure::Error, op: Op) -> PyErr {
    use tenure::ErrorKind as K;
    let c = classes(py);
    let kind = e.kind_in(op);
    let class = match kind {
        K::InvalidArgument => {
            // The class says what kind of error it is; the message is the core's own words,
            // the same whether the binding or the core caught the argument.
            if let tenure::Error::InvalidArgument(m) = e {
                return raise(py, &c.invalid_argument, m);
            }
            &c.invalid_argument
        }
        K::AlreadyHeld => &c.lock_held,
        K::LockTimeout => &c.lock_timeout,
        K::Timeout => &c.timeout,
        K::SessionExpired => &c.session_expired,
        K::DataLost => &c.data_lost,
        K::Closed => &c.closed,
        K::ConnectionFailed => &c.connection_failed,
        K::Limit => &c.limit_reached,
        K::Rejected => &c.rejected,
        K::NotHeld => &c.not_held,
        K::Io => &c.io_error,
        // Cancelled (an asyncio caller sees CancelledError instead) and kinds newer than
        // this package.
        _ => &c.base,
    };
    raise(py, class, e.to_string())
}

/// `InvalidArgument` with a message of the bindings' own.
pub(crate) fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    raise(py, &classes(py).invalid_argument, msg.into())
}

/// `Closed` with a message of the bindings' own.
pub(crate) fn closed(py: Python<'_>, what: &str) -> PyErr {
    raise(py, &classes(py).closed, format!("the {what} is closed"))
}

/// Shorthand: map a core result with [`Op::Other`].
pub(crate) trait IntoPy<T> {
    /// Converts the error, if any.
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for tenure::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e, Op::Other))
    }
}
