//! `Membership` (this process in a group) and `GroupWatch`.

use crate::client::{ClientShared, Subscription};
use crate::dispatch::Regs;
use crate::errors::{self, IntoPy};
use crate::pending;
use crate::types::View;
use crate::util;
use parking_lot::Mutex;
use pyo3::prelude::*;
use std::sync::Arc;

/// Membership of this client in a group, from `client.join(...)`. It starts on probation;
/// the service promotes it to full member (a member_promoted event) or removes it. `leave()`
/// (or the end of the `with` block, or dropping the object) leaves the group.
#[pyclass(frozen, module = "tenure", name = "Membership")]
pub(crate) struct Membership {
    inner: Mutex<Option<Arc<tenure::client::Membership>>>,
    group: String,
    member_id: String,
    last: Mutex<tenure::client::View>,
    regs: Regs,
    client: Arc<ClientShared>,
}

impl Membership {
    pub(crate) fn new(
        client: Arc<ClientShared>,
        m: tenure::client::Membership,
        member_id: String,
    ) -> Membership {
        Membership {
            group: m.group().to_string(),
            last: Mutex::new(m.view()),
            inner: Mutex::new(Some(Arc::new(m))),
            member_id,
            regs: Regs::default(),
            client,
        }
    }

    pub(crate) fn add_callback(&self, cb: Py<PyAny>) -> PyResult<Subscription> {
        let (reg, forward) = self.client.register(cb, "on_view_change")?;
        if let Some(m) = &*self.inner.lock() {
            m.on_view_change(forward);
        }
        self.regs.push(reg.clone());
        Ok(Subscription::attached(reg))
    }

    fn current(&self) -> Option<Arc<tenure::client::Membership>> {
        self.inner.lock().clone()
    }

    fn take(&self) -> Option<tenure::client::Membership> {
        let m = self.inner.lock().take()?;
        *self.last.lock() = m.view();
        // A report_check being started may hold a clone for a moment.
        let mut m = m;
        loop {
            match Arc::try_unwrap(m) {
                Ok(m) => return Some(m),
                Err(back) => {
                    m = back;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }
}

#[pymethods]
impl Membership {
    /// The group's name.
    #[getter]
    fn group(&self) -> &str {
        &self.group
    }

    /// This member's id.
    #[getter]
    fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The group's view as last told.
    #[getter]
    fn view(&self) -> View {
        View::from_core(match self.current() {
            Some(m) => m.view(),
            None => self.last.lock().clone(),
        })
    }

    /// True while this process is a member in the last view told and its lease is valid.
    #[getter]
    fn is_member(&self) -> bool {
        self.current().is_some_and(|m| m.is_member())
    }

    /// True while this process is a full member (see `is_member`).
    #[getter]
    fn is_full(&self) -> bool {
        self.current().is_some_and(|m| m.is_full())
    }

    /// Calls `callback(event)` with view_changed, member_promoted and member_removed events
    /// of this group, in view order, on the client's dispatcher thread; first with the
    /// current view.
    fn on_view_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        let cb = util::required_callback("callback", callback)?;
        self.add_callback(cb)
    }

    /// Reports the application's evaluation of this probationary member: True lets the
    /// service promote it once its probation has passed; False removes it.
    fn report_check(&self, py: Python<'_>, ok: bool) -> PyResult<()> {
        let m = self
            .current()
            .ok_or_else(|| errors::closed(py, "membership"))?;
        let started = m.report_check_start(ok);
        drop(m);
        pending::wait_core(py, "report_check", started)?.py_err(py)
    }

    /// Awaitable variant of `report_check`.
    fn report_check_async(&self, py: Python<'_>, ok: bool) -> PyResult<Py<PyAny>> {
        let m = self
            .current()
            .ok_or_else(|| errors::closed(py, "membership"))?;
        let started = m.report_check_start(ok);
        drop(m);
        pending::awaitable_core(py, "report_check", started, |py, r| {
            r.py_err(py).map(|()| py.None())
        })
    }

    /// Leaves the group and waits for the service to confirm. Idempotent.
    fn leave(&self, py: Python<'_>) -> PyResult<()> {
        self.regs.close_all(py);
        match py.detach(|| self.take()) {
            Some(m) => py.detach(|| m.leave()).py_err(py),
            None => Ok(()),
        }
    }

    /// Awaitable variant of `leave`.
    fn leave_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.regs.close_all(py);
        let finish = |py: Python<'_>, r: tenure::Result<()>| r.py_err(py).map(|()| py.None());
        match py.detach(|| self.take()) {
            Some(m) => pending::awaitable_core(py, "leave", m.leave_start(), finish),
            None => pending::ready(py, "leave", Ok(()), finish),
        }
    }

    /// Same as `leave()`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.leave(py)
    }

    /// Same as `leave_async()`.
    fn close_async(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.leave_async(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.leave(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure Membership {:?} member={:?} full={}>",
            self.group,
            self.member_id,
            if self.is_full() { "True" } else { "False" }
        )
    }
}

/// A watch on a group's views, from `client.watch_group(...)`. `close()` stops it.
#[pyclass(frozen, module = "tenure", name = "GroupWatch")]
pub(crate) struct GroupWatch {
    inner: Mutex<Option<tenure::client::GroupWatch>>,
    group: String,
    last: Mutex<tenure::client::View>,
    regs: Regs,
    client: Arc<ClientShared>,
}

impl GroupWatch {
    pub(crate) fn new(
        client: Arc<ClientShared>,
        w: tenure::client::GroupWatch,
        group: String,
    ) -> GroupWatch {
        GroupWatch {
            group,
            last: Mutex::new(w.view()),
            inner: Mutex::new(Some(w)),
            regs: Regs::default(),
            client,
        }
    }

    pub(crate) fn add_callback(&self, cb: Py<PyAny>) -> PyResult<Subscription> {
        let (reg, forward) = self.client.register(cb, "on_view_change")?;
        if let Some(w) = &*self.inner.lock() {
            w.on_view_change(forward);
        }
        self.regs.push(reg.clone());
        Ok(Subscription::attached(reg))
    }
}

#[pymethods]
impl GroupWatch {
    /// The group's name.
    #[getter]
    fn group(&self) -> &str {
        &self.group
    }

    /// The group's view as last told.
    #[getter]
    fn view(&self) -> View {
        View::from_core(match &*self.inner.lock() {
            Some(w) => w.view(),
            None => self.last.lock().clone(),
        })
    }

    /// See `Membership.on_view_change`.
    fn on_view_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        let cb = util::required_callback("callback", callback)?;
        self.add_callback(cb)
    }

    /// Stops watching. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.regs.close_all(py);
        let w = self.inner.lock().take();
        if let Some(w) = w {
            *self.last.lock() = w.view();
            py.detach(|| w.close());
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
        format!(
            "<tenure GroupWatch {:?} view={}>",
            self.group,
            self.view().__repr__()
        )
    }
}
