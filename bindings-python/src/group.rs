//! `Membership` (this process in a group) and `GroupWatch`.

use crate::client::Subscription;
use crate::errors::{self, IntoPy};
use crate::pending;
use crate::types::View;
use crate::watch::Watch;
use pyo3::prelude::*;

/// Membership of this client in a group, from `client.join(...)`. It starts on probation;
/// the service promotes it to full member (a member_promoted event) or removes it. `leave()`
/// (or the end of the `with` block, or dropping the object) leaves the group.
#[pyclass(frozen, module = "tenure._tenure", name = "Membership")]
pub(crate) struct Membership {
    pub(crate) w: Watch<tenure::client::Membership>,
    group: String,
    member_id: String,
}

impl Membership {
    pub(crate) fn new(w: Watch<tenure::client::Membership>, member_id: String) -> Membership {
        Membership {
            group: w.with(|m| m.group().to_string()).unwrap_or_default(),
            w,
            member_id,
        }
    }

    /// The core's pending report, started while the membership lasts.
    fn start_report(
        &self,
        py: Python<'_>,
        ok: bool,
    ) -> PyResult<tenure::Result<tenure::Pending<()>>> {
        self.w
            .with(|m| m.report_check_start(ok))
            .ok_or_else(|| errors::closed(py, "membership"))
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
        View::from_core(self.w.value())
    }

    /// True while this process is a member in the last view told and its lease is valid.
    #[getter]
    fn is_member(&self) -> bool {
        self.w.with(|m| m.is_member()).unwrap_or(false)
    }

    /// True while this process is a full member (see `is_member`).
    #[getter]
    fn is_full(&self) -> bool {
        self.w.with(|m| m.is_full()).unwrap_or(false)
    }

    /// Calls `callback(event)` with view_changed, member_promoted and member_removed events
    /// of this group, in view order, on the client's dispatcher thread; first with the
    /// current view.
    fn on_view_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        self.w.on_change(callback)
    }

    /// See `tenure.Membership.report_check`.
    fn report_check_start(&self, py: Python<'_>, ok: bool) -> PyResult<pending::Pending> {
        let started = self.start_report(py, ok)?;
        Ok(pending::start("report_check", started, |py, r| {
            r.py_err(py).map(|()| py.None())
        }))
    }

    /// See `tenure.Membership.leave`.
    fn leave_start(&self, py: Python<'_>) -> pending::Pending {
        self.w.give_up_start(py, "leave", |m| Some(m.leave_start()))
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
#[pyclass(frozen, module = "tenure._tenure", name = "GroupWatch")]
pub(crate) struct GroupWatch {
    pub(crate) w: Watch<tenure::client::GroupWatch>,
    group: String,
}

impl GroupWatch {
    pub(crate) fn new(w: Watch<tenure::client::GroupWatch>, group: String) -> GroupWatch {
        GroupWatch { w, group }
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
        View::from_core(self.w.value())
    }

    /// See `Membership.on_view_change`.
    fn on_view_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        self.w.on_change(callback)
    }

    /// See `tenure.GroupWatch.close` (done at once).
    fn close_start(&self, py: Python<'_>) -> pending::Pending {
        self.w.give_up_start(py, "close", |w| {
            w.close();
            None
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure GroupWatch {:?} view={}>",
            self.group,
            self.view().__repr__()
        )
    }
}
