//! `Election` (a candidacy) and `Observer`.

use crate::client::{ClientShared, Subscription};
use crate::dispatch::Regs;
use crate::errors::IntoPy;
use crate::pending;
use crate::types::Master;
use crate::util;
use parking_lot::Mutex;
use pyo3::prelude::*;
use std::sync::Arc;
use tenure::client::MasterState;

/// A candidacy in an election, from `client.campaign(...)`. `master` is the master as last
/// told (a `Master` with its epoch, or None); `is_master` is True while this candidate is the
/// master by the client's own lease deadline. `resign()` withdraws (a master hands over at
/// once); so does leaving the `with` block or dropping the object.
#[pyclass(frozen, module = "tenure", name = "Election")]
pub(crate) struct Election {
    inner: Mutex<Option<tenure::client::Election>>,
    name: String,
    candidate_id: String,
    /// The master state when the candidacy ended.
    last: Mutex<MasterState>,
    regs: Regs,
    client: Arc<ClientShared>,
}

impl Election {
    pub(crate) fn new(
        client: Arc<ClientShared>,
        e: tenure::client::Election,
        candidate_id: String,
    ) -> Election {
        Election {
            name: e.name().to_string(),
            last: Mutex::new(e.master()),
            inner: Mutex::new(Some(e)),
            candidate_id,
            regs: Regs::default(),
            client,
        }
    }

    pub(crate) fn add_callback(&self, cb: Py<PyAny>) -> PyResult<Subscription> {
        let (reg, forward) = self.client.register(cb, "on_master_change")?;
        if let Some(e) = &*self.inner.lock() {
            e.on_master_change(forward);
        }
        self.regs.push(reg.clone());
        Ok(Subscription::attached(reg))
    }

    fn state(&self) -> MasterState {
        match &*self.inner.lock() {
            Some(e) => e.master(),
            None => self.last.lock().clone(),
        }
    }

    fn take(&self) -> Option<tenure::client::Election> {
        let e = self.inner.lock().take()?;
        *self.last.lock() = e.master();
        Some(e)
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
        Master::from_state(py, &self.state())
    }

    /// The epoch of the last master change seen (0 before any).
    #[getter]
    fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// True while this candidate is the master: designated, not resigned, and the session's
    /// lease valid by the client's own deadline.
    #[getter]
    fn is_master(&self) -> bool {
        self.inner.lock().as_ref().is_some_and(|e| e.is_master())
    }

    /// The epoch at which this candidate became master, while it is master (use it as a
    /// fencing token for the master's writes); None otherwise.
    #[getter]
    fn master_epoch(&self) -> Option<u64> {
        self.inner.lock().as_ref().and_then(|e| e.master_epoch())
    }

    /// Calls `callback(event)` with every master_changed event of this election, in epoch
    /// order, on the client's dispatcher thread; first with the current master if known.
    fn on_master_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        let cb = util::required_callback("callback", callback)?;
        self.add_callback(cb)
    }

    /// Withdraws the candidacy and waits for the service to confirm. Idempotent.
    fn resign(&self, py: Python<'_>) -> PyResult<()> {
        self.regs.close_all(py);
        match self.take() {
            Some(e) => py.detach(|| e.resign()).py_err(py),
            None => Ok(()),
        }
    }

    /// Awaitable variant of `resign`.
    fn resign_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.regs.close_all(py);
        let finish = |py: Python<'_>, r: tenure::Result<()>| r.py_err(py).map(|()| py.None());
        match self.take() {
            Some(e) => pending::awaitable_core(py, "resign", e.resign_start(), finish),
            None => pending::ready(py, "resign", Ok(()), finish),
        }
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
        let st = self.state();
        format!(
            "<tenure Election {:?} candidate={:?} master={:?} epoch={}>",
            self.name,
            self.candidate_id,
            st.master.map(|m| m.id),
            st.epoch
        )
    }
}

/// An observation of an election's master, from `client.observe(...)`. `close()` (or the
/// end of the `with` block, or dropping the object) stops it.
#[pyclass(frozen, module = "tenure", name = "Observer")]
pub(crate) struct Observer {
    inner: Mutex<Option<tenure::client::Observer>>,
    name: String,
    last: Mutex<MasterState>,
    regs: Regs,
    client: Arc<ClientShared>,
}

impl Observer {
    pub(crate) fn new(client: Arc<ClientShared>, o: tenure::client::Observer) -> Observer {
        Observer {
            name: o.name().to_string(),
            last: Mutex::new(o.master()),
            inner: Mutex::new(Some(o)),
            regs: Regs::default(),
            client,
        }
    }

    pub(crate) fn add_callback(&self, cb: Py<PyAny>) -> PyResult<Subscription> {
        let (reg, forward) = self.client.register(cb, "on_master_change")?;
        if let Some(o) = &*self.inner.lock() {
            o.on_master_change(forward);
        }
        self.regs.push(reg.clone());
        Ok(Subscription::attached(reg))
    }

    fn state(&self) -> MasterState {
        match &*self.inner.lock() {
            Some(o) => o.master(),
            None => self.last.lock().clone(),
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
        Master::from_state(py, &self.state())
    }

    /// The epoch of the last master change seen (0 before any).
    #[getter]
    fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// See `Election.on_master_change`.
    fn on_master_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        let cb = util::required_callback("callback", callback)?;
        self.add_callback(cb)
    }

    /// Stops the observation and its callbacks. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.regs.close_all(py);
        let o = self.inner.lock().take();
        if let Some(o) = o {
            *self.last.lock() = o.master();
            py.detach(|| o.close());
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let st = self.state();
        format!(
            "<tenure Observer {:?} master={:?} epoch={}>",
            self.name,
            st.master.map(|m| m.id),
            st.epoch
        )
    }
}
