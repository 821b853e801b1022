//! `Client`, `Lock` and `Subscription`.
//!
//! Which calls run where:
//! - Calls that wait on other processes by design (`lock`, `campaign`, `observe`,
//!   `request_election`, `join`, `watch_group`, `replace`, `revoke`, `report_check`) are
//!   the core's pending calls, which need no thread: the calling thread waits with the GIL
//!   released and checks for signals every 50 ms ([`crate::pending`]). Connecting and
//!   `close` still run on a helper thread.
//! - `try_lock`, `Lock.release`, `Election.resign` and `Membership.leave` are one request
//!   and its answer: they run on the calling thread with the GIL released (no thread
//!   hand-off, which would cost more than the rest of the binding). The core bounds their
//!   wait (a TTL, or five seconds for `try_lock`, when the service does not answer); Ctrl-C
//!   is seen when they return.
//! - Properties (`held`, `is_master`, `state`, ...) read shared state and never block.

use crate::dispatch::{Dispatcher, Registration, Regs};
use crate::election::{Election, Observer};
use crate::errors::{self, IntoPy, Op};
use crate::group::{GroupWatch, Membership};
use crate::pending;
use crate::types::{Master, View};
use crate::util;
use crate::watch::Watch;
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyString;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenure::client::WatchHandle as CoreHandle;
use tenure::proto::Text;

/// What a client's handles share: the core client, its dispatcher and its subscriptions.
pub(crate) struct ClientShared {
    /// Dropped on a thread of its own (see the `Drop` impl).
    client: ManuallyDrop<tenure::Client>,
    dispatcher: Mutex<Option<Arc<Dispatcher>>>,
    /// Subscriptions of `on_event`, kept until closed or the client is closed.
    subs: Mutex<Vec<Arc<SubInner>>>,
    /// Every lock this client holds, whether its `Lock` object is alive or not: garbage
    /// collection never releases a lock (see `Lock`'s `Drop`). Emptied cells are removed at
    /// release; the rest go with `close()`.
    locks: Mutex<Vec<LockCell>>,
    closed: AtomicBool,
}

/// A held core lock, shared by its `Lock` object and the client's list of held locks;
/// `None` once released.
pub(crate) type LockCell = Arc<Mutex<Option<tenure::Lock>>>;

impl ClientShared {
    fn new(client: tenure::Client) -> Arc<ClientShared> {
        Arc::new(ClientShared {
            client: ManuallyDrop::new(client),
            dispatcher: Mutex::new(None),
            subs: Mutex::new(Vec::new()),
            locks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Keeps `cell` in the list of held locks. Cells of locks no longer held (lost, and
    /// never released by their owner) are dropped from the list as it doubles, so a
    /// long-running client does not accumulate them.
    fn hold(&self, cell: &LockCell) {
        let mut v = self.locks.lock();
        if v.len() >= 64 && v.len().is_power_of_two() {
            v.retain(|c| c.lock().as_ref().is_some_and(|l| l.is_held()));
        }
        v.push(cell.clone());
    }

    /// Takes the core lock out of `cell` and drops the cell from the list of held locks.
    fn unhold(&self, cell: &LockCell) -> Option<tenure::Lock> {
        let l = cell.lock().take();
        self.locks.lock().retain(|c| !Arc::ptr_eq(c, cell));
        l
    }

    /// Takes out the held lock named `name`, if this client holds it.
    fn unhold_name(&self, name: &str) -> Option<tenure::Lock> {
        let cell = self
            .locks
            .lock()
            .iter()
            .find(|c| {
                c.lock()
                    .as_ref()
                    .is_some_and(|l| l.name() == name && l.is_held())
            })
            .cloned()?;
        self.unhold(&cell)
    }

    /// The client's dispatcher thread, started at first use.
    pub(crate) fn dispatcher(&self) -> PyResult<Arc<Dispatcher>> {
        let mut g = self.dispatcher.lock();
        if let Some(d) = &*g {
            return Ok(d.clone());
        }
        let d = Dispatcher::start("client")
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a dispatcher: {e}")))?;
        *g = Some(d.clone());
        Ok(d)
    }

    /// `Closed` once [`Client::close`] was called.
    pub(crate) fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(errors::closed(py, "client"));
        }
        Ok(())
    }

    /// Registers `cb` with the client's dispatcher for a callback kind of the core.
    pub(crate) fn register(
        &self,
        cb: Py<PyAny>,
        what: &'static str,
    ) -> PyResult<(Arc<Registration>, tenure::Handler)> {
        Ok(self.dispatcher()?.register(cb, what))
    }
}

/// A client's `on_event` given at construction: its dispatcher and registration, made before
/// the core client so that the callback sees the session's first `connected` event.
struct EarlyEvents {
    dispatcher: Arc<Dispatcher>,
    reg: Arc<Registration>,
}

impl EarlyEvents {
    /// Registers `on_event` (when given) and hands it to the core's configuration.
    fn prepare(
        on_event: Option<Bound<'_, PyAny>>,
        cfg: tenure::ClientConfig,
    ) -> PyResult<(tenure::ClientConfig, Option<EarlyEvents>)> {
        let Some(cb) = on_event else {
            return Ok((cfg, None));
        };
        let cb = util::required_callback("on_event", cb)?;
        let dispatcher = Dispatcher::start("client")
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a dispatcher: {e}")))?;
        let (reg, forward) = dispatcher.register(cb, "on_event");
        let mut cfg = cfg;
        cfg.on_event = Some(tenure::client::EventCallback(forward));
        Ok((cfg, Some(EarlyEvents { dispatcher, reg })))
    }

    /// The shared record of a connected client, delivering to the early callback until the
    /// client is closed.
    fn attach(early: Option<EarlyEvents>, client: tenure::Client) -> Arc<ClientShared> {
        let shared = ClientShared::new(client);
        if let Some(e) = early {
            *shared.dispatcher.lock() = Some(e.dispatcher);
            shared.subs.lock().push(Arc::new(SubInner {
                reg: e.reg,
                core: Mutex::new(None),
            }));
        }
        shared
    }
}

impl Drop for ClientShared {
    fn drop(&mut self) {
        // SAFETY: `client` is not used after this; the field is never dropped otherwise.
        let client = unsafe { ManuallyDrop::take(&mut self.client) };
        // This may run in a Python deallocation with the GIL held: the close is started,
        // not waited for (the session ends it within a second on its own thread).
        drop(Unclaimed::of(client));
        drop(std::mem::take(&mut *self.locks.lock()));
    }
}

/// A connected core client no Python object owns yet (a connect's result). Dropped unclaimed
/// (the call was given up as it connected), or as the last handle of a Python client, it is
/// closed without waiting: its close is started and ends on the client's own thread.
pub(crate) struct Unclaimed(Option<tenure::Client>);

impl Unclaimed {
    fn of(c: tenure::Client) -> Unclaimed {
        Unclaimed(Some(c))
    }

    fn claim(mut self) -> tenure::Client {
        self.0.take().expect("claimed once")
    }
}

/// A connect's result, as it arrives.
fn unclaimed(r: tenure::Result<tenure::Client>) -> tenure::Result<Unclaimed> {
    r.map(Unclaimed::of)
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            drop(c.close_start());
        }
    }
}

/// One subscription: its registration, and the core subscription when it owns one.
pub(crate) struct SubInner {
    reg: Arc<Registration>,
    core: Mutex<Option<tenure::Subscription>>,
}

impl SubInner {
    fn close(&self, py: Python<'_>) {
        self.reg.deactivate(py);
        if let Some(s) = self.core.lock().take() {
            py.detach(|| drop(s));
        }
    }
}

/// A callback registration. Delivery goes on until `close()` or until what it belongs to
/// (the client, lock, election, ...) is closed; dropping this object does not stop it.
#[pyclass(frozen, module = "tenure", name = "Subscription")]
pub(crate) struct Subscription {
    inner: Arc<SubInner>,
    owner: Option<Arc<ClientShared>>,
}

impl Subscription {
    /// A subscription for a callback that the core keeps with a handle (a lock's `on_lost`,
    /// an election's `on_master_change`, ...).
    pub(crate) fn attached(reg: Arc<Registration>) -> Subscription {
        Subscription {
            inner: Arc::new(SubInner {
                reg,
                core: Mutex::new(None),
            }),
            owner: None,
        }
    }

    /// Stops delivery (see `close`).
    pub(crate) fn close_now(&self, py: Python<'_>) {
        self.inner.close(py);
        if let Some(o) = &self.owner {
            o.subs.lock().retain(|s| !Arc::ptr_eq(s, &self.inner));
        }
    }

    /// A subscription that owns a core subscription (a detector's `on_event`).
    pub(crate) fn owning(reg: Arc<Registration>, core: tenure::Subscription) -> Subscription {
        Subscription {
            inner: Arc::new(SubInner {
                reg,
                core: Mutex::new(Some(core)),
            }),
            owner: None,
        }
    }
}

#[pymethods]
impl Subscription {
    /// Stops delivery. After it returns the callback does not start again; a call running on
    /// the dispatcher thread is waited for, except when `close()` is called from a callback.
    /// Idempotent.
    fn close(&self, py: Python<'_>) {
        self.close_now(py);
    }

    /// True until closed.
    #[getter]
    fn active(&self) -> bool {
        self.inner.reg.is_active()
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
            "<tenure Subscription ({})>",
            if self.inner.reg.is_active() {
                "active"
            } else {
                "closed"
            }
        )
    }
}

/// A connection to the tenure service with one session, kept alive by heartbeats on a
/// library thread. `Client(endpoints, session_ttl=10.0)` connects (blocking; Ctrl-C aborts
/// it); `"etcd://host:port,host:port"` endpoints use an etcd cluster instead of tenure
/// servers (the etcd backend). Use it as a context manager, or call `close()`: the session ends and every lock it
/// holds is released (reported lost with reason "client_closed"). `on_event=callback` gets
/// every event of the client from the session's first `connected` on (`client.on_event(...)`,
/// called after the constructor returns, cannot see that first one), until the client closes.
#[pyclass(frozen, module = "tenure._tenure", name = "Client")]
pub(crate) struct Client {
    shared: Arc<ClientShared>,
}

struct Config {
    cfg: tenure::ClientConfig,
}

#[allow(clippy::too_many_arguments)]
fn config(
    py: Python<'_>,
    endpoints: &Bound<'_, PyAny>,
    session_ttl: f64,
    connect_timeout: f64,
    reopen: bool,
    name: Option<String>,
    drift_ratio: f64,
    safety_margin: Option<f64>,
    retry: &str,
) -> PyResult<Config> {
    let eps = util::endpoints(endpoints)?;
    let ttl = util::secs(py, "session_ttl", session_ttl)?;
    let mut cfg = tenure::ClientConfig::new(eps).session_ttl(ttl);
    cfg.connect_timeout = util::secs(py, "connect_timeout", connect_timeout)?;
    cfg.reopen = reopen;
    if let Some(n) = name {
        Text::ClientName
            .check(&n)
            .map_err(|m| errors::invalid(py, m))?;
        cfg.client_name = n;
    }
    if !drift_ratio.is_finite() {
        return Err(errors::invalid(py, "drift_ratio must be finite"));
    }
    cfg.drift_ratio = drift_ratio;
    if let Some(m) = safety_margin {
        cfg.safety_margin = Some(util::secs(py, "safety_margin", m)?);
    }
    cfg = cfg.retry(match retry {
        "inverse_exponential" => Arc::new(tenure::retry::InverseExponential::default()),
        "exponential" => Arc::new(tenure::retry::Exponential::default()),
        "fixed" => Arc::new(tenure::retry::Fixed::default()),
        other => {
            return Err(errors::invalid(
                py,
                format!(
                    "retry must be 'inverse_exponential', 'exponential' or 'fixed', not {other:?}"
                ),
            ))
        }
    });
    Ok(Config { cfg })
}

/// The Python `Lock` for a grant. `name` is the caller's own str when there is one (saves a
/// copy on the `try_lock` path).
fn lock_obj(
    py: Python<'_>,
    shared: &Arc<ClientShared>,
    l: tenure::Lock,
    name: Option<Py<PyString>>,
    on_lost: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let name = name.unwrap_or_else(|| PyString::new(py, l.name()).unbind());
    let lock = Lock::new(shared.clone(), l, name);
    if let Some(cb) = on_lost {
        lock.add_on_lost(cb)?;
    }
    Ok(Py::new(py, lock)?.into_any())
}

/// The Python object `wrap` makes of a handle's watch, with `cb` (the call's change
/// callback, if given) registered first.
fn handle_obj<H: CoreHandle, P: pyo3::PyClass>(
    py: Python<'_>,
    w: Watch<H>,
    cb: Option<Py<PyAny>>,
    wrap: impl FnOnce(Watch<H>) -> P,
) -> PyResult<Py<PyAny>>
where
    PyClassInitializer<P>: From<P>,
{
    if let Some(cb) = cb {
        w.add_callback(cb)?;
    }
    Ok(Py::new(py, wrap(w))?.into_any())
}

/// Checks a lock, election or group name before the call starts, so that bad
/// input fails at once with the core's message (which names what was wrong: "election name
/// is 2000 bytes long; the limit is 1024").
fn check_name(py: Python<'_>, kind: Text, name: &str) -> PyResult<()> {
    kind.check(name).map_err(|m| errors::invalid(py, m))
}

/// A call's Python result when it is a `Master` or None.
fn master_result(
    py: Python<'_>,
    r: tenure::Result<tenure::client::MasterState>,
) -> PyResult<Py<PyAny>> {
    let st = r.map_err(|e| errors::to_py(py, e, Op::Other))?;
    Ok(match Master::from_state(py, &st)? {
        Some(m) => m.into_any(),
        None => py.None(),
    })
}

/// A call's Python result when it is None.
fn none_result(py: Python<'_>, r: tenure::Result<()>) -> PyResult<Py<PyAny>> {
    r.py_err(py).map(|()| py.None())
}

impl Client {
    fn client(&self, py: Python<'_>) -> PyResult<&tenure::Client> {
        self.shared.check_open(py)?;
        Ok(&self.shared.client)
    }

    fn mark_closed(&self, py: Python<'_>) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let subs = std::mem::take(&mut *self.shared.subs.lock());
        for s in subs {
            s.close(py);
        }
    }
}

/// The native client. The `tenure.Client` of the Python layer (`tenure/_client.py`) wraps it:
/// every call here starts the core's pending call and returns its `Pending`; the layer makes
/// the blocking method ("start, then wait") and the `*_async` one (an awaitable over the same
/// `Pending`) of each.
#[pymethods]
impl Client {
    /// Connects (see `tenure.Client`): a `Pending` of the native client.
    #[staticmethod]
    #[pyo3(signature = (endpoints, session_ttl=10.0, *, connect_timeout=1.0, reopen=true,
                        name=None, drift_ratio=0.01, safety_margin=None,
                        retry="inverse_exponential", on_event=None))]
    #[allow(clippy::too_many_arguments)]
    fn connect_start(
        py: Python<'_>,
        endpoints: &Bound<'_, PyAny>,
        session_ttl: f64,
        connect_timeout: f64,
        reopen: bool,
        name: Option<String>,
        drift_ratio: f64,
        safety_margin: Option<f64>,
        retry: &str,
        on_event: Option<Bound<'_, PyAny>>,
    ) -> PyResult<pending::Pending> {
        let Config { cfg } = config(
            py,
            endpoints,
            session_ttl,
            connect_timeout,
            reopen,
            name,
            drift_ratio,
            safety_margin,
            retry,
        )?;
        let (cfg, early) = EarlyEvents::prepare(on_event.filter(|c| !c.is_none()), cfg)?;
        let started = tenure::Client::connect_start(cfg);
        Ok(pending::start_as(
            "connect",
            started,
            unclaimed,
            move |py, r| {
                let c = r.py_err(py)?.claim();
                let shared = EarlyEvents::attach(early, c);
                Ok(Py::new(py, Client { shared })?.into_any())
            },
        ))
    }

    /// The current session id (0 while none is open).
    #[getter]
    fn session_id(&self) -> u64 {
        self.shared.client.session_id()
    }

    /// The service's incarnation token, as learnt at the last connection.
    #[getter]
    fn incarnation(&self) -> u128 {
        self.shared.client.incarnation()
    }

    /// "connected", "jeopardy", "expired" or "closed".
    #[getter]
    fn state(&self) -> &'static str {
        if self.shared.closed.load(Ordering::Acquire) {
            return "closed";
        }
        match self.shared.client.state() {
            tenure::SessionState::Connected => "connected",
            tenure::SessionState::Jeopardy => "jeopardy",
            tenure::SessionState::Expired => "expired",
            tenure::SessionState::Closed => "closed",
        }
    }

    /// True while the session's lease is valid by the client's own deadline.
    #[getter]
    fn connected(&self) -> bool {
        self.shared.client.is_connected()
    }

    /// True once `close_start()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// See `tenure.Client.on_event`.
    fn on_event(&self, py: Python<'_>, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        let cb = util::required_callback("callback", callback)?;
        let c = self.client(py)?;
        let (reg, forward) = self.shared.register(cb, "on_event")?;
        let core = c.subscribe_with(forward).py_err(py)?;
        let inner = Arc::new(SubInner {
            reg,
            core: Mutex::new(Some(core)),
        });
        self.shared.subs.lock().push(inner.clone());
        Ok(Subscription {
            inner,
            owner: Some(self.shared.clone()),
        })
    }

    /// See `tenure.Client.lock`: a `Pending` of the native lock.
    #[pyo3(signature = (name, timeout=None, on_lost=None))]
    fn lock_start(
        &self,
        py: Python<'_>,
        name: String,
        timeout: Option<f64>,
        on_lost: Option<Bound<'_, PyAny>>,
    ) -> PyResult<pending::Pending> {
        let on_lost = util::callback("on_lost", on_lost)?;
        let t = util::timeout(py, timeout)?;
        check_name(py, Text::LockName, &name)?;
        let p = self
            .client(py)?
            .lock_start(&name, t)
            .map_err(|e| errors::to_py(py, e, Op::Lock))?;
        let shared = self.shared.clone();
        Ok(pending::adopt("lock", p, move |py, r| {
            let l = r.map_err(|e| errors::to_py(py, e, Op::Lock))?;
            lock_obj(py, &shared, l, None, on_lost)
        }))
    }

    /// See `tenure.Client.try_lock`: a `Pending` of the native lock or None.
    #[pyo3(signature = (name, on_lost=None))]
    fn try_lock_start(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyString>,
        on_lost: Option<Bound<'_, PyAny>>,
    ) -> PyResult<pending::Pending> {
        let on_lost = util::callback("on_lost", on_lost)?;
        let c = self.client(py)?;
        let started = util::with_str(name, |text| c.try_lock_start(text))?;
        let shared = self.shared.clone();
        // The caller's own str is the lock's name (saves a copy).
        let name = name.clone().unbind();
        Ok(pending::start("try_lock", started, move |py, r| match r {
            Ok(Some(l)) => lock_obj(py, &shared, l, Some(name), on_lost),
            Ok(None) => Ok(py.None()),
            Err(e) => Err(errors::to_py(py, e, Op::Lock)),
        }))
    }

    /// See `tenure.Client.held_locks`.
    fn held_locks(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .locks
            .lock()
            .iter()
            .filter_map(|c| {
                c.lock()
                    .as_ref()
                    .filter(|l| l.is_held())
                    .map(|l| l.name().to_string())
            })
            .collect();
        names.sort();
        names
    }

    /// See `tenure.Client.release`.
    fn release_start(&self, py: Python<'_>, name: String) -> PyResult<pending::Pending> {
        self.client(py)?;
        let started = match self.shared.unhold_name(&name) {
            Some(l) => l.release_start(),
            None => Err(tenure::Error::NotHeld),
        };
        Ok(pending::start("release", started, |py, r| {
            r.map_err(|e| errors::to_py(py, e, Op::Other))
                .map(|()| py.None())
        }))
    }

    /// See `tenure.Client.revoke`.
    fn revoke_start(&self, py: Python<'_>, name: String) -> PyResult<pending::Pending> {
        check_name(py, Text::LockName, &name)?;
        let started = self.client(py)?.revoke_start(&name);
        Ok(pending::start("revoke", started, none_result))
    }

    /// See `tenure.Client.campaign`: a `Pending` of the native election.
    #[pyo3(signature = (election, candidate_id, priority=0, *, endpoint=None,
                        on_master_change=None, preempt=false))]
    #[allow(clippy::too_many_arguments)]
    fn campaign_start(
        &self,
        py: Python<'_>,
        election: String,
        candidate_id: String,
        priority: i64,
        endpoint: Option<String>,
        on_master_change: Option<Bound<'_, PyAny>>,
        preempt: bool,
    ) -> PyResult<pending::Pending> {
        let cb = util::callback("on_master_change", on_master_change)?;
        check_name(py, Text::ElectionName, &election)?;
        let shared = self.shared.clone();
        let id = candidate_id.clone();
        let mut cand = tenure::client::Candidacy::new(candidate_id, priority);
        cand.endpoint = endpoint;
        cand.preempt = preempt;
        let started = self.client(py)?.campaign_start(&election, cand);
        Ok(pending::start("campaign", started, move |py, r| {
            let w = Watch::new(shared, r.py_err(py)?, "on_master_change");
            handle_obj(py, w, cb, |w| Election::new(w, id))
        }))
    }

    /// See `tenure.Client.observe`: a `Pending` of the native observer.
    #[pyo3(signature = (election, on_master_change=None))]
    fn observe_start(
        &self,
        py: Python<'_>,
        election: String,
        on_master_change: Option<Bound<'_, PyAny>>,
    ) -> PyResult<pending::Pending> {
        let cb = util::callback("on_master_change", on_master_change)?;
        check_name(py, Text::ElectionName, &election)?;
        let shared = self.shared.clone();
        let started = self.client(py)?.observe_start(&election);
        Ok(pending::start("observe", started, move |py, r| {
            let w = Watch::new(shared, r.py_err(py)?, "on_master_change");
            handle_obj(py, w, cb, Observer::new)
        }))
    }

    /// See `tenure.Client.request_election`: a `Pending` of a `Master` or None.
    #[pyo3(signature = (election, timeout=5.0))]
    fn request_election_start(
        &self,
        py: Python<'_>,
        election: String,
        timeout: f64,
    ) -> PyResult<pending::Pending> {
        check_name(py, Text::ElectionName, &election)?;
        let t = util::secs(py, "timeout", timeout)?;
        let started = self.client(py)?.request_election_start(&election, t);
        Ok(pending::start("request_election", started, master_result))
    }

    /// See `tenure.Client.join`: a `Pending` of the native membership.
    #[pyo3(signature = (group, member_id, *, probation=0.0, needs_check=false,
                        on_view_change=None))]
    fn join_start(
        &self,
        py: Python<'_>,
        group: String,
        member_id: String,
        probation: f64,
        needs_check: bool,
        on_view_change: Option<Bound<'_, PyAny>>,
    ) -> PyResult<pending::Pending> {
        let cb = util::callback("on_view_change", on_view_change)?;
        check_name(py, Text::GroupName, &group)?;
        let probation = util::secs(py, "probation", probation)?;
        let shared = self.shared.clone();
        let id = member_id.clone();
        let mut o = tenure::client::JoinOptions::new(member_id, probation);
        o.needs_check = needs_check;
        let started = self.client(py)?.join_start(&group, o);
        Ok(pending::start("join", started, move |py, r| {
            let w = Watch::new(shared, r.py_err(py)?, "on_view_change");
            handle_obj(py, w, cb, |w| Membership::new(w, id))
        }))
    }

    /// See `tenure.Client.watch_group`: a `Pending` of the native group watch.
    #[pyo3(signature = (group, on_view_change=None))]
    fn watch_group_start(
        &self,
        py: Python<'_>,
        group: String,
        on_view_change: Option<Bound<'_, PyAny>>,
    ) -> PyResult<pending::Pending> {
        let cb = util::callback("on_view_change", on_view_change)?;
        check_name(py, Text::GroupName, &group)?;
        let shared = self.shared.clone();
        let name = group.clone();
        let started = self.client(py)?.watch_group_start(&group);
        Ok(pending::start("watch_group", started, move |py, r| {
            let w = Watch::new(shared, r.py_err(py)?, "on_view_change");
            handle_obj(py, w, cb, |w| GroupWatch::new(w, name))
        }))
    }

    /// See `tenure.Client.replace`: a `Pending` of the new `View`.
    fn replace_start(
        &self,
        py: Python<'_>,
        group: String,
        failed: String,
        probationary: String,
    ) -> PyResult<pending::Pending> {
        check_name(py, Text::GroupName, &group)?;
        let started = self
            .client(py)?
            .replace_start(&group, &failed, &probationary);
        Ok(pending::start("replace", started, |py, r| {
            Ok(Py::new(py, View::from_core(r.py_err(py)?))?.into_any())
        }))
    }

    /// See `tenure.Client.close`: callbacks stop now; the `Pending` is done once the session
    /// has closed (every lock reported lost and forgotten here). Idempotent.
    fn close_start(&self, py: Python<'_>) -> pending::Pending {
        self.mark_closed(py);
        let p = self.shared.client.close_start();
        let shared = self.shared.clone();
        // Every lock was reported lost ("client_closed"); forget them.
        p.on_complete(move || drop(std::mem::take(&mut *shared.locks.lock())));
        pending::adopt("close", p, none_result)
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure Client session={} state={}>",
            self.session_id(),
            self.state()
        )
    }
}

/// A held lock. `fencing_token` is larger than every token granted before it: pass it to
/// the resources you write. `held` turns False at the client's lease deadline with no message
/// needed, before the service could grant the lock to anyone else. Use it as a context
/// manager or call `release()`; dropping the object also releases the lock.
#[pyclass(frozen, module = "tenure._tenure", name = "Lock")]
pub(crate) struct Lock {
    /// Shared with the client's list of held locks.
    inner: LockCell,
    name: Py<PyString>,
    token: u64,
    /// Why it was lost, recorded at release.
    lost_at_release: Mutex<Option<&'static str>>,
    /// The outcome of the first release, which every later release repeats (as Node's
    /// `release()` does): `None` then, or `NotHeld` again when the lock had been lost.
    released: Arc<Mutex<Option<Result<(), tenure::Error>>>>,
    regs: Regs,
    client: Arc<ClientShared>,
}

impl Lock {
    fn new(client: Arc<ClientShared>, l: tenure::Lock, name: Py<PyString>) -> Lock {
        let l_token = l.fencing_token();
        let inner = Arc::new(Mutex::new(Some(l)));
        client.hold(&inner);
        Lock {
            name,
            token: l_token,
            inner,
            lost_at_release: Mutex::new(None),
            released: Arc::new(Mutex::new(None)),
            regs: Regs::default(),
            client,
        }
    }

    fn add_on_lost(&self, cb: Py<PyAny>) -> PyResult<Subscription> {
        let (reg, forward) = self.client.register(cb, "on_lost")?;
        match &*self.inner.lock() {
            Some(l) => l.on_lost_with(forward),
            // Released: a release is not a loss, so the callback never runs.
            None => drop(forward),
        }
        self.regs.push(reg.clone());
        Ok(Subscription::attached(reg))
    }

    fn take(&self) -> Option<tenure::Lock> {
        let l = self.client.unhold(&self.inner)?;
        *self.lost_at_release.lock() = l.lost_reason().map(|r| r.as_str());
        Some(l)
    }
}

impl Drop for Lock {
    /// Garbage collection never releases a lock: a `Lock` collected while held stays held
    /// (in the client's list) until `client.release(name)` or `client.close()`, as kazoo,
    /// redis-py and `threading` users expect, and a `ResourceWarning` says so.
    fn drop(&mut self) {
        let held = self.inner.lock().as_ref().is_some_and(|l| l.is_held());
        if !held {
            return;
        }
        Python::attach(|py| {
            let name = self
                .name
                .bind(py)
                .to_cow()
                .map(|c| c.into_owned())
                .unwrap_or_default();
            let msg = std::ffi::CString::new(format!(
                "tenure.Lock {name:?} was garbage-collected while held: it stays held until \
                 client.release({name:?}) or client.close()"
            ))
            .unwrap_or_default();
            let warned = PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyResourceWarning>(),
                &msg,
                1,
            );
            if let Err(e) = warned {
                e.write_unraisable(py, None);
            }
        });
    }
}

#[pymethods]
impl Lock {
    /// The lock's name.
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyString> {
        self.name.clone_ref(py)
    }

    /// The fencing token of this grant.
    #[getter]
    fn fencing_token(&self) -> u64 {
        self.token
    }

    /// True while the lock is held: not released, not lost, and the session's lease valid by
    /// the client's own deadline.
    #[getter]
    fn held(&self) -> bool {
        self.inner.lock().as_ref().is_some_and(|l| l.is_held())
    }

    /// Why the lock was lost ("session_expired", "released", "data_lost",
    /// "client_closed"), or None.
    #[getter]
    fn lost_reason(&self) -> Option<&'static str> {
        match &*self.inner.lock() {
            Some(l) => l.lost_reason().map(|r| r.as_str()),
            None => *self.lost_at_release.lock(),
        }
    }

    /// Calls `callback(event)` with the lock_lost event when the lock is lost (at once if it
    /// is lost already), on the client's dispatcher thread. A release is not a loss.
    fn on_lost(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        let cb = util::required_callback("callback", callback)?;
        self.add_on_lost(cb)
    }

    /// See `tenure.Lock.release`: the first release's outcome is what every later one gives.
    fn release_start(&self) -> pending::Pending {
        let l = self.take();
        let earlier = self.released.lock().clone();
        // The first release's outcome is known only when it completes; a release made
        // meanwhile is done at once, with None.
        let record = l.is_some().then(|| self.released.clone());
        let finish = move |py: Python<'_>, r: tenure::Result<()>| {
            if let Some(slot) = record {
                *slot.lock() = Some(r.clone());
            }
            r.py_err(py).map(|()| py.None())
        };
        match l {
            Some(l) => pending::start("release", l.release_start(), finish),
            None => pending::ready("release", earlier.unwrap_or(Ok(())), finish),
        }
    }

    /// See `tenure.Lock.close`: releases the lock if it is still held; never `NotHeld`.
    fn close_start(&self) -> pending::Pending {
        let finish = |py: Python<'_>, r: tenure::Result<()>| match r {
            Ok(()) | Err(tenure::Error::NotHeld) => Ok(py.None()),
            Err(e) => Err(errors::to_py(py, e, Op::Other)),
        };
        match self.take() {
            Some(l) => pending::start("release", l.release_start(), finish),
            None => pending::ready("release", Ok(()), finish),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<tenure Lock {} token={} held={}>",
            crate::types::pyrepr(&self.name.bind(py).to_cow().unwrap_or_default()),
            self.token,
            if self.held() { "True" } else { "False" }
        )
    }
}

/// Runs the core's try_lock + release `n` times in Rust, for the benchmark; returns the
/// seconds taken.
pub(crate) fn bench_try_lock_release(
    py: Python<'_>,
    client: &Client,
    name: &str,
    n: u64,
) -> PyResult<f64> {
    let c = client.client(py)?;
    let r = py.detach(|| -> tenure::Result<Duration> {
        let start = std::time::Instant::now();
        for _ in 0..n {
            match c.try_lock(name)? {
                Some(l) => l.release()?,
                None => return Err(tenure::Error::Rejected("the lock is busy".into())),
            }
        }
        Ok(start.elapsed())
    });
    match r {
        Ok(d) => Ok(d.as_secs_f64()),
        Err(tenure::Error::Rejected(m)) => Err(PyValueError::new_err(m)),
        Err(e) => Err(errors::to_py(py, e, Op::Other)),
    }
}
