//! `Election` (a candidacy) and `Observer`.

use crate::client::Subscription;
use crate::pending;
use crate::types::Master;
use crate::watch::Watch;
use pyo3::prelude::*;
use tenure::client::MasterState;

/// A candidacy in an election, from `client.campaign(...)`. `master` is the master as last
/// told (a `Master` with its epoch, or None); `is_master` is True while this candidate is the
/// master by the client's own lease deadline. `resign()` withdraws (a master hands over at
/// once); so does leaving the `with` block or dropping the object.
#[pyclass(frozen, module = "tenure._tenure", name = "Election")]
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

    /// See `tenure.Election.resign`.
    fn resign_start(&self, py: Python<'_>) -> pending::Pending {
        self.w
            .give_up_start(py, "resign", |e| Some(e.resign_start()))
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
#[pyclass(frozen, module = "tenure._tenure", name = "Observer")]
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

    /// See `tenure.Observer.close` (done at once).
    fn close_start(&self, py: Python<'_>) -> pending::Pending {
        self.w.give_up_start(py, "close", |o| {
            o.close();
            None
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure Observer {:?} {}>",
            self.name,
            master_repr(&self.w.value())
        )
    }
}
