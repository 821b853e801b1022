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
    kind: &'static str,
    session: Option<u64>,
    incarnation: Option<u128>,
    remaining: Option<f64>,
    name: Option<String>,
    fencing_token: Option<u64>,
    reason: Option<&'static str>,
    old_incarnation: Option<u128>,
    new_incarnation: Option<u128>,
    election: Option<String>,
    master: Option<Py<Master>>,
    epoch: Option<u64>,
    peer: Option<String>,
    suspicion: Option<&'static str>,
    network: Option<String>,
    group: Option<String>,
    view: Option<u64>,
    members: Option<Vec<tenure::Member>>,
    member: Option<String>,
}

impl Event {
    fn empty(kind: &'static str) -> Event {
        Event {
            kind,
            session: None,
            incarnation: None,
            remaining: None,
            name: None,
            fencing_token: None,
            reason: None,
            old_incarnation: None,
            new_incarnation: None,
            election: None,
            master: None,
            epoch: None,
            peer: None,
            suspicion: None,
            network: None,
            group: None,
            view: None,
            members: None,
            member: None,
        }
    }

    /// The Python event for a core event.
    pub(crate) fn from_core(py: Python<'_>, ev: tenure::Event) -> PyResult<Py<Event>> {
        use tenure::Event as E;
        let mut e = Event::empty(ev.kind());
        match ev {
            E::SessionConnected {
                session,
                incarnation,
            } => {
                e.session = Some(session);
                e.incarnation = Some(incarnation);
            }
            E::SessionJeopardy { remaining } => e.remaining = Some(remaining.as_secs_f64()),
            E::SessionRecovered | E::SessionExpired => {}
            E::LockAcquired { name, token } => {
                e.name = Some(name);
                e.fencing_token = Some(token);
            }
            E::LockLost {
                name,
                token,
                reason,
            } => {
                e.name = Some(name);
                e.fencing_token = Some(token);
                e.reason = Some(reason.as_str());
            }
            E::DataLost { old, new } => {
                e.old_incarnation = Some(old);
                e.new_incarnation = Some(new);
            }
            E::MasterChanged {
                election,
                epoch,
                master,
            } => {
                e.master = Master::from_state(py, &tenure::client::MasterState { master, epoch })?;
                e.election = Some(election);
                e.epoch = Some(epoch);
            }
            E::PeerSuspected {
                peer,
                kind,
                network,
            } => {
                e.peer = Some(peer);
                e.suspicion = Some(kind.as_str());
                e.network = network;
            }
            E::PeerRecovered { peer, network } => {
                e.peer = Some(peer);
                e.network = network;
            }
            E::NetworkDown { network } | E::NetworkUp { network } => e.network = Some(network),
            E::ViewChanged {
                group,
                view,
                members,
            } => {
                e.group = Some(group);
                e.view = Some(view);
                e.members = Some(members);
            }
            E::MemberPromoted { group, member } | E::MemberRemoved { group, member } => {
                e.group = Some(group);
                e.member = Some(member);
            }
            _ => {}
        }
        Py::new(py, e)
    }
}

#[pymethods]
impl Event {
    /// The event's kind: "connected", "jeopardy", "recovered", "expired", "lock_acquired",
    /// "lock_lost", "data_lost", "master_changed", "peer_suspected", "peer_recovered",
    /// "network_down", "network_up", "view_changed", "member_promoted", "member_removed".
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }
    /// connected: the session id.
    #[getter]
    fn session(&self) -> Option<u64> {
        self.session
    }
    /// connected: the service's incarnation token.
    #[getter]
    fn incarnation(&self) -> Option<u128> {
        self.incarnation
    }
    /// jeopardy: seconds left until the client's deadline.
    #[getter]
    fn remaining(&self) -> Option<f64> {
        self.remaining
    }
    /// lock_acquired, lock_lost: the lock's name.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// lock_acquired, lock_lost: the fencing token of the grant.
    #[getter]
    fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }
    /// lock_lost: "session_expired", "released", "data_lost" or "client_closed".
    #[getter]
    fn reason(&self) -> Option<&'static str> {
        self.reason
    }
    /// data_lost: the incarnation the client knew.
    #[getter]
    fn old_incarnation(&self) -> Option<u128> {
        self.old_incarnation
    }
    /// data_lost: the new incarnation.
    #[getter]
    fn new_incarnation(&self) -> Option<u128> {
        self.new_incarnation
    }
    /// master_changed: the election's name.
    #[getter]
    fn election(&self) -> Option<&str> {
        self.election.as_deref()
    }
    /// master_changed: the new master, or None when the election has no master.
    #[getter]
    fn master(&self, py: Python<'_>) -> Option<Py<Master>> {
        self.master.as_ref().map(|m| m.clone_ref(py))
    }
    /// master_changed: the epoch of this change.
    #[getter]
    fn epoch(&self) -> Option<u64> {
        self.epoch
    }
    /// peer_suspected, peer_recovered: the peer's name.
    #[getter]
    fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }
    /// peer_suspected: "process" or "network".
    #[getter]
    fn suspicion(&self) -> Option<&'static str> {
        self.suspicion
    }
    /// peer_suspected, peer_recovered, network_down, network_up: the network (None when a
    /// process suspicion concerns every network).
    #[getter]
    fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }
    /// view_changed, member_promoted, member_removed: the group's name.
    #[getter]
    fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
    /// view_changed: the view number.
    #[getter]
    fn view(&self) -> Option<u64> {
        self.view
    }
    /// view_changed: the members of the new view (a list of `Member`).
    #[getter]
    fn members<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        self.members
            .as_ref()
            .map(|ms| members_list(py, ms))
            .transpose()
    }
    /// member_promoted, member_removed: the member's id.
    #[getter]
    fn member(&self) -> Option<&str> {
        self.member.as_deref()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let mut parts = vec![format!("kind={}", pyrepr(self.kind))];
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        };
        add("session", self.session.map(|v| v.to_string()));
        add("incarnation", self.incarnation.map(|v| v.to_string()));
        add("remaining", self.remaining.map(|v| format!("{v:.3}")));
        add("name", self.name.as_ref().map(|v| pyrepr(v)));
        add("fencing_token", self.fencing_token.map(|v| v.to_string()));
        add("reason", self.reason.map(pyrepr));
        add(
            "old_incarnation",
            self.old_incarnation.map(|v| v.to_string()),
        );
        add(
            "new_incarnation",
            self.new_incarnation.map(|v| v.to_string()),
        );
        add("election", self.election.as_ref().map(|v| pyrepr(v)));
        if self.kind == "master_changed" {
            add(
                "master",
                Some(match &self.master {
                    Some(m) => m.get().__repr__(),
                    None => "None".into(),
                }),
            );
        }
        add("epoch", self.epoch.map(|v| v.to_string()));
        add("peer", self.peer.as_ref().map(|v| pyrepr(v)));
        add("suspicion", self.suspicion.map(pyrepr));
        add("network", self.network.as_ref().map(|v| pyrepr(v)));
        add("group", self.group.as_ref().map(|v| pyrepr(v)));
        add("view", self.view.map(|v| v.to_string()));
        add(
            "members",
            self.members.as_ref().map(|ms| {
                let v: Vec<String> = ms
                    .iter()
                    .map(|m| format!("Member(id={}, full={})", pyrepr(&m.id), py_bool(m.full)))
                    .collect();
                format!("[{}]", v.join(", "))
            }),
        );
        add("member", self.member.as_ref().map(|v| pyrepr(v)));
        let _ = py;
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
