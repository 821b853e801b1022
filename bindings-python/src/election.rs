//! `Election` (a candidacy) and `Observer`.

use crate::client::Subscription;
use crate::types::Master;
use crate::watch::Watch;
use pyo3::prelude::*;
use tenure::client::MasterState;

/// A candidacy in an election, from `client.campaign(...)`. `master` is the master as last
/// told (a `Master` with its epoch, or None); `is_master` is True while this candidate is the
/// master by the client's own lease deadline. `resign()` withdraws (a master hands over at
/// once); so does leaving the `with` block or dropping the object.
#[pyclass(frozen, module = "tenure", name = "Election")]
pub(crate) struct Election {
    pub(crate) w: Watch<tenure::client::Election>,
    name: String,
    candidate_id: String,
}

impl Election {
    pub(crate) fn new(w: Watch<tenure::client::Election>, candidate_id: String) -> Election {
        Election {
            name: w.with(|e| e.name().to_string()).unwrap_or_default(),
            w,
            candidate_id,
        }
    }
}

#[pymethods]
impl Election {
    /// The election's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// This candidate's id.
    #[getter]
    fn candidate_id(&self) -> &str {
        &self.candidate_id
    }

    /// The master as last told (with its epoch), or None.
    #[getter]
    fn master(&self, py: Python<'_>) -> PyResult<Option<Py<Master>>> {
        Master::from_state(py, &self.w.value())
    }

    /// The epoch of the last master change seen (0 before any).
    #[getter]
    fn epoch(&self) -> u64 {
        self.w.value().epoch
    }

    /// True while this candidate is the master: designated, not resigned, and the session's
    /// lease valid by the client's own deadline.
    #[getter]
    fn is_master(&self) -> bool {
        self.w.with(|e| e.is_master()).unwrap_or(false)
    }

    /// The epoch at which this candidate became master, while it is master (use it as a
    /// fencing token for the master's writes); None otherwise.
    #[getter]
    fn master_epoch(&self) -> Option<u64> {
        self.w.with(|e| e.master_epoch()).flatten()
    }

    /// Calls `callback(event)` with every master_changed event of this election, in epoch
    /// order, on the client's dispatcher thread; first with the current master if known.
    fn on_master_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        self.w.on_change(callback)
    }

    /// Withdraws the candidacy and waits for the service to confirm. Idempotent.
    fn resign(&self, py: Python<'_>) -> PyResult<()> {
        self.w.give_up(py, |e| e.resign())
    }

    /// Awaitable variant of `resign`.
    fn resign_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.w.give_up_async(py, "resign", |e| e.resign_start())
    }

    /// Same as `resign()`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.resign(py)
    }

    /// Same as `resign_async()`.
    fn close_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.resign_async(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.resign(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure Election {:?} candidate={:?} {}>",
            self.name,
            self.candidate_id,
            master_repr(&self.w.value())
        )
    }
}

/// `master=... epoch=...` for the reprs.
fn master_repr(st: &MasterState) -> String {
    format!(
        "master={:?} epoch={}",
        st.master.as_ref().map(|m| &m.id),
        st.epoch
    )
}

/// An observation of an election's master, from `client.observe(...)`. `close()` (or the
/// end of the `with` block, or dropping the object) stops it.
#[pyclass(frozen, module = "tenure", name = "Observer")]
pub(crate) struct Observer {
    pub(crate) w: Watch<tenure::client::Observer>,
    name: String,
}

impl Observer {
    pub(crate) fn new(w: Watch<tenure::client::Observer>) -> Observer {
        Observer {
            name: w.with(|o| o.name().to_string()).unwrap_or_default(),
            w,
        }
    }
}

#[pymethods]
impl Observer {
    /// The election's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The master as last told (with its epoch), or None.
    #[getter]
    fn master(&self, py: Python<'_>) -> PyResult<Option<Py<Master>>> {
        Master::from_state(py, &self.w.value())
    }

    /// The epoch of the last master change seen (0 before any).
    #[getter]
    fn epoch(&self) -> u64 {
        self.w.value().epoch
    }

    /// See `Election.on_master_change`.
    fn on_master_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        self.w.on_change(callback)
    }

    /// Stops the observation and its callbacks. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.w.give_up(py, |o| {
            o.close();
            Ok(())
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure Observer {:?} {}>",
            self.name,
            master_repr(&self.w.value())
        )
    }
}
