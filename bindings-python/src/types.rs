//! Value types: `Event`, `Master`, `Member`, `View`.
//!
//! An [`Event`] has `.kind` (the stable names of SPEC 4: `"connected"`, `"lock_lost"`, ...)
//! and the fields of its kind as attributes; attributes that do not belong to the kind are
//! `None`. Field names: `session`, `incarnation` (connected); `remaining` (jeopardy, seconds);
//! `name`, `fencing_token`, `reason` (lock_acquired, lock_lost); `old_incarnation`,
//! `new_incarnation` (data_lost); `election`, `master`, `epoch` (master_changed); `peer`,
//! `suspicion` (`"process"` or `"network"`), `network` (peer_suspected, peer_recovered,
//! network_down, network_up); `group`, `view`, `members`, `member` (view_changed,
//! member_promoted, member_removed).

use pyo3::prelude::*;
use pyo3::types::PyList;

/// The master of an election: candidate id, endpoint (or None) and the epoch it was
/// designated at.
#[pyclass(frozen, eq, hash, module = "tenure", name = "Master")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Master {
    /// Candidate id.
    #[pyo3(get)]
    id: String,
    /// `host:port`, or None when the candidate gave none.
    #[pyo3(get)]
    endpoint: Option<String>,
    /// Epoch of the designation; strictly increases for an election.
    #[pyo3(get)]
    epoch: u64,
}

#[pymethods]
impl Master {
    #[new]
    #[pyo3(signature = (id, endpoint=None, epoch=0))]
    fn new(id: String, endpoint: Option<String>, epoch: u64) -> Self {
        Master {
            id,
            endpoint,
            epoch,
        }
    }

    pub(crate) fn __repr__(&self) -> String {
        format!(
            "Master(id={}, endpoint={}, epoch={})",
            pyrepr(&self.id),
            opt_repr(&self.endpoint),
            self.epoch
        )
    }
}

impl Master {
    /// The Python master of a core master state; None when there is no master.
    pub(crate) fn from_state(
        py: Python<'_>,
        st: &tenure::client::MasterState,
    ) -> PyResult<Option<Py<Master>>> {
        match &st.master {
            Some(m) => Ok(Some(Py::new(
                py,
                Master {
                    id: m.id.clone(),
                    endpoint: m.endpoint.clone(),
                    epoch: st.epoch,
                },
            )?)),
            None => Ok(None),
        }
    }
}

/// A group member and its status: `full` is False while on probation.
#[pyclass(frozen, eq, hash, module = "tenure", name = "Member")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Member {
    /// Member id.
    #[pyo3(get)]
    id: String,
    /// True for a full member, False for a probationary one.
    #[pyo3(get)]
    full: bool,
}

#[pymethods]
impl Member {
    #[new]
    #[pyo3(signature = (id, full=false))]
    fn new(id: String, full: bool) -> Self {
        Member { id, full }
    }

    fn __repr__(&self) -> String {
        format!(
            "Member(id={}, full={})",
            pyrepr(&self.id),
            py_bool(self.full)
        )
    }
}

fn members_list<'py>(py: Python<'py>, ms: &[tenure::Member]) -> PyResult<Bound<'py, PyList>> {
    let items = ms
        .iter()
        .map(|m| {
            Py::new(
                py,
                Member {
                    id: m.id.clone(),
                    full: m.full,
                },
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// A group's view: its number (strictly increasing) and its members in id order.
#[pyclass(frozen, eq, module = "tenure", name = "View")]
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct View {
    number: u64,
    members: Vec<tenure::Member>,
}

#[pymethods]
impl View {
    /// View number; 0 before the first view is known.
    #[getter]
    fn number(&self) -> u64 {
        self.number
    }

    /// The members (a new list of `Member` at each access).
    #[getter]
    fn members<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        members_list(py, &self.members)
    }

    pub(crate) fn __repr__(&self) -> String {
        let ms: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("Member(id={}, full={})", pyrepr(&m.id), py_bool(m.full)))
            .collect();
        format!("View(number={}, members=[{}])", self.number, ms.join(", "))
    }
}

impl View {
    pub(crate) fn from_core(v: tenure::client::View) -> View {
        View {
            number: v.number,
            members: v.members,
        }
    }
}

/// Something that happened to a client, its session, its locks, elections and groups, or
/// to a failure detector's peers. `.kind` says what; the fields of that kind are
/// attributes, the others are None.
#[pyclass(frozen, module = "tenure", name = "Event")]
pub(crate) struct Event {
    /// The core's flat record: the fields and their names are the core's.
    rec: tenure::events::Record,
    /// `rec.master` as the `Master` object handed out (with the epoch).
    master: Option<Py<Master>>,
}

impl Event {
    /// The Python event for a core event.
    pub(crate) fn from_core(py: Python<'_>, ev: tenure::Event) -> PyResult<Py<Event>> {
        let rec = ev.record();
        let master = match (&rec.master, rec.epoch) {
            (Some(m), Some(epoch)) => Some(Py::new(
                py,
                Master {
                    id: m.id.clone(),
                    endpoint: m.endpoint.clone(),
                    epoch,
                },
            )?),
            _ => None,
        };
        Py::new(py, Event { rec, master })
    }
}

#[pymethods]
impl Event {
    /// The event's kind: "connected", "jeopardy", "recovered", "expired", "lock_acquired",
    /// "lock_lost", "data_lost", "master_changed", "peer_suspected", "peer_recovered",
    /// "network_down", "network_up", "view_changed", "member_promoted", "member_removed".
    #[getter]
    fn kind(&self) -> &'static str {
        self.rec.kind
    }
    /// connected: the session id.
    #[getter]
    fn session(&self) -> Option<u64> {
        self.rec.session
    }
    /// connected: the service's incarnation token.
    #[getter]
    fn incarnation(&self) -> Option<u128> {
        self.rec.incarnation
    }
    /// jeopardy: seconds left until the client's deadline.
    #[getter]
    fn remaining(&self) -> Option<f64> {
        self.rec.remaining.map(|d| d.as_secs_f64())
    }
    /// lock_acquired, lock_lost: the lock's name.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.rec.name.as_deref()
    }
    /// lock_acquired, lock_lost: the fencing token of the grant.
    #[getter]
    fn fencing_token(&self) -> Option<u64> {
        self.rec.fencing_token
    }
    /// lock_lost: "session_expired", "released", "data_lost" or "client_closed".
    #[getter]
    fn reason(&self) -> Option<&'static str> {
        self.rec.reason.map(|r| r.as_str())
    }
    /// data_lost: the incarnation the client knew.
    #[getter]
    fn old_incarnation(&self) -> Option<u128> {
        self.rec.old_incarnation
    }
    /// data_lost: the new incarnation.
    #[getter]
    fn new_incarnation(&self) -> Option<u128> {
        self.rec.new_incarnation
    }
    /// master_changed: the election's name.
    #[getter]
    fn election(&self) -> Option<&str> {
        self.rec.election.as_deref()
    }
    /// master_changed: the new master, or None when the election has no master.
    #[getter]
    fn master(&self, py: Python<'_>) -> Option<Py<Master>> {
        self.master.as_ref().map(|m| m.clone_ref(py))
    }
    /// master_changed: the epoch of this change.
    #[getter]
    fn epoch(&self) -> Option<u64> {
        self.rec.epoch
    }
    /// peer_suspected, peer_recovered: the peer's name.
    #[getter]
    fn peer(&self) -> Option<&str> {
        self.rec.peer.as_deref()
    }
    /// peer_suspected: "process" or "network".
    #[getter]
    fn suspicion(&self) -> Option<&'static str> {
        self.rec.suspicion.map(|k| k.as_str())
    }
    /// peer_suspected, peer_recovered, network_down, network_up: the network (None when a
    /// process suspicion concerns every network).
    #[getter]
    fn network(&self) -> Option<&str> {
        self.rec.network.as_deref()
    }
    /// view_changed, member_promoted, member_removed: the group's name.
    #[getter]
    fn group(&self) -> Option<&str> {
        self.rec.group.as_deref()
    }
    /// view_changed: the view number.
    #[getter]
    fn view(&self) -> Option<u64> {
        self.rec.view
    }
    /// view_changed: the members of the new view (a list of `Member`).
    #[getter]
    fn members<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        self.rec
            .members
            .as_ref()
            .map(|ms| members_list(py, ms))
            .transpose()
    }
    /// member_promoted, member_removed: the member's id.
    #[getter]
    fn member(&self) -> Option<&str> {
        self.rec.member.as_deref()
    }

    fn __repr__(&self) -> String {
        use tenure::events::Field;
        let mut parts = vec![format!("kind={}", pyrepr(self.rec.kind))];
        for (name, f) in self.rec.fields() {
            let v = match f {
                Field::U64(v) => v.to_string(),
                Field::U128(v) => v.to_string(),
                Field::Duration(d) => format!("{:.3}", d.as_secs_f64()),
                Field::Text(t) => pyrepr(t),
                Field::OptText(t) => t.map_or_else(|| "None".into(), pyrepr),
                Field::Master(_) => match &self.master {
                    Some(m) => m.get().__repr__(),
                    None => "None".into(),
                },
                Field::Members(ms) => {
                    let v: Vec<String> = ms
                        .iter()
                        .map(|m| format!("Member(id={}, full={})", pyrepr(&m.id), py_bool(m.full)))
                        .collect();
                    format!("[{}]", v.join(", "))
                }
            };
            parts.push(format!("{name}={v}"));
        }
        format!("Event({})", parts.join(", "))
    }
}

fn opt_repr(v: &Option<String>) -> String {
    match v {
        Some(s) => pyrepr(s),
        None => "None".into(),
    }
}

/// A string as Python's `repr` shows it (single quotes).
pub(crate) fn pyrepr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}
