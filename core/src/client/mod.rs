//! The client runtime: a session kept alive on a library thread, locks with fencing tokens and
//! lost callbacks, reconnection and resending of in-flight requests.
//!
//! Threads of a client:
//! - the *driver* is state, not a thread: the connection's write side, the
//!   [`Lease`](crate::lease::Lease) machine and the table of held locks, behind one mutex. It
//!   acts on one queue of commands, run in order by whichever thread finds the mutex free
//!   (see `driver.rs`); it never runs user code.
//! - the *timer* thread runs the lease at its deadlines (heartbeats, expiry) and makes every
//!   connection attempt.
//! - a *reader* per connection queues the frames it reads and usually completes them itself.
//! - one dispatcher thread per client runs user callbacks ([`crate::events`]).
//!
//! User calls (`lock`, `release`, ...) queue a command (usually writing the request from
//! their own thread) and wait for its answer on a channel of their own. The rules of the lease (heartbeat schedule, deadline,
//! retries) are in [`crate::lease`]; this module only acts on what the lease asks.

mod conn;
mod driver;
pub(crate) mod election;
mod group;
pub(crate) mod pending;
pub(crate) mod session;
mod watched;

pub use election::{Candidacy, Election, MasterState, Observer};
pub use group::{GroupWatch, JoinOptions, Membership, View};
pub use pending::Pending;
pub use watched::WatchHandle;

use crate::error::{Error, Result};
use crate::events::{Dispatcher, Event, Handler, LostReason, Sink, Subscription};
use crate::lease::LeaseConfig;
use crate::proto::{Incarnation, Reply, Request, SessionId, StatusInfo, Text, Token};
use crate::retry::{InverseExponential, RetryPolicy};
use crossbeam_channel::Sender;
use driver::{Cmd, Driver};
use parking_lot::Mutex;
use pending::Waiter;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest timeout accepted by blocking calls; longer ones are refused (a year).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Configuration of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Server endpoints (`host:port`), tried in order; `etcd://host:port` for the members of
    /// an etcd cluster instead (the etcd backend, [`crate::etcd`]). An entry may hold several,
    /// comma-separated; the first endpoint's scheme applies to the whole list.
    pub endpoints: Vec<String>,
    /// Session TTL (default 10 s).
    pub session_ttl: Duration,
    /// Clock-drift allowance as a fraction of the TTL (default 0.01).
    pub drift_ratio: f64,
    /// Safety margin taken off the client's deadline besides the drift allowance; `None`
    /// (the default) takes [`crate::lease::default_safety_margin`] of the TTL: 50 ms, at most
    /// a tenth of the TTL. It is what lets the lost callback run before the server can grant
    /// the lock to another client on a loaded machine (see the README's Semantics).
    pub safety_margin: Option<Duration>,
    /// Retry policy in jeopardy (default inverse exponential).
    pub retry: Arc<dyn RetryPolicy>,
    /// Longest wait for one connection attempt (default 1 s).
    pub connect_timeout: Duration,
    /// Open a new session automatically after the old one expired (default true). Locks are
    /// never re-taken.
    pub reopen: bool,
    /// A name shown in logs and `tenure status`.
    pub client_name: String,
    /// A callback for every event of the client, started before the first session opens,
    /// so that it also sees the first `connected` (a [`Client::subscribe`] made after
    /// `connect` cannot). It lives as long as the client. Set with [`ClientConfig::on_event`].
    pub on_event: Option<EventCallback>,
}

/// The callback of [`ClientConfig::on_event`].
#[derive(Clone)]
pub struct EventCallback(pub Handler);

impl fmt::Debug for EventCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventCallback(..)")
    }
}

impl ClientConfig {
    /// Defaults for a list of endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            session_ttl: Duration::from_secs(10),
            drift_ratio: 0.01,
            safety_margin: None,
            retry: Arc::new(InverseExponential::default()),
            connect_timeout: Duration::from_secs(1),
            reopen: true,
            client_name: format!("pid-{}", std::process::id()),
            on_event: None,
        }
    }

    /// Sets the session TTL.
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Delivers every event of the client to `callback`, from the first `connected` on, on
    /// the client's dispatcher thread (see [`ClientConfig::on_event`]; set the field with an
    /// [`EventCallback`] to give another [`Handler`]).
    pub fn on_event(mut self, callback: impl Fn(Event) + Send + Sync + 'static) -> Self {
        self.on_event = Some(EventCallback(Handler::dispatched(callback)));
        self
    }

    /// Sets the retry policy used in jeopardy.
    pub fn retry(mut self, p: Arc<dyn RetryPolicy>) -> Self {
        self.retry = p;
        self
    }

    pub(crate) fn lease_config(&self) -> LeaseConfig {
        let mut c = LeaseConfig::new(self.session_ttl);
        c.drift_ratio = self.drift_ratio;
        if let Some(m) = self.safety_margin {
            c.safety_margin = m;
        }
        c.retry = self.retry.clone();
        c
    }

    fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".into()));
        }
        for e in &self.endpoints {
            check(Text::Endpoint, e)?;
        }
        check(Text::ClientName, &self.client_name)?;
        let ms = self.session_ttl.as_millis();
        let (lo, hi) = (
            crate::server::state::MIN_TTL_MS as u128,
            crate::server::state::MAX_TTL_MS as u128,
        );
        if ms < lo || ms > hi {
            return Err(Error::InvalidArgument(format!(
                "session TTL {:?} is outside {lo} ms ..= {hi} ms",
                self.session_ttl
            )));
        }
        if !(0.0..0.5).contains(&self.drift_ratio) || self.drift_ratio.is_nan() {
            return Err(Error::InvalidArgument(format!(
                "drift ratio {} is outside [0, 0.5)",
                self.drift_ratio
            )));
        }
        if self
            .safety_margin
            .is_some_and(|m| m >= self.session_ttl / 2)
        {
            return Err(Error::InvalidArgument(
                "safety margin must be under half the TTL".into(),
            ));
        }
        if self.connect_timeout.is_zero() || self.connect_timeout > MAX_TIMEOUT {
            return Err(Error::InvalidArgument(
                "connect timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The session state as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Heartbeats are answered.
    Connected,
    /// A heartbeat failed; retrying until the deadline.
    Jeopardy,
    /// The session expired; a new one is being opened (if `reopen`).
    Expired,
    /// The client is closed.
    Closed,
}

/// State shared between the driver and the handles; read without messages.
pub(crate) struct Shared {
    epoch: Instant,
    /// Client deadline in ns since `epoch`; 0 when there is no valid session.
    deadline_ns: AtomicU64,
    /// Increments with every new session.
    generation: AtomicU64,
    session: AtomicU64,
    closed: AtomicBool,
    state: Mutex<SessionState>,
    incarnation: Mutex<Incarnation>,
    next_req: AtomicU64,
}

impl Shared {
    /// The incarnation token of the service as learnt at the last connection (0: none yet).
    pub(crate) fn incarnation(&self) -> Incarnation {
        *self.incarnation.lock()
    }

    /// Shared state of a client that has no session yet; deadlines are kept relative to
    /// `epoch`, which must come before every instant the client's session will see.
    pub(crate) fn new(epoch: Instant) -> Shared {
        Shared {
            epoch,
            deadline_ns: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            session: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            state: Mutex::new(SessionState::Expired),
            incarnation: Mutex::new(0),
            next_req: AtomicU64::new(1),
        }
    }

    /// The client's deadline, if it has a valid session.
    #[cfg(test)]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let d = self.deadline_ns.load(Ordering::Acquire);
        (d != 0).then(|| self.epoch + std::time::Duration::from_nanos(d))
    }

    pub(crate) fn set_deadline(&self, d: Option<Instant>) {
        let ns = match d {
            Some(d) => (d.saturating_duration_since(self.epoch).as_nanos() as u64).max(1),
            None => 0,
        };
        self.deadline_ns.store(ns, Ordering::Release);
    }
    fn valid_now(&self) -> bool {
        self.valid_at(Instant::now())
    }

    /// The current session's id (0 while there is none).
    #[cfg(test)]
    pub(crate) fn session_id(&self) -> SessionId {
        self.session.load(Ordering::Acquire)
    }

    /// True while there is a session whose client deadline is after `now`.
    pub(crate) fn valid_at(&self, now: Instant) -> bool {
        let d = self.deadline_ns.load(Ordering::Acquire);
        d != 0 && (now.saturating_duration_since(self.epoch).as_nanos() as u64) < d
    }
    pub(crate) fn req(&self) -> u64 {
        self.next_req.fetch_add(1, Ordering::Relaxed)
    }
}

/// The shared record of one held lock, between its [`Lock`] handle and the driver.
pub(crate) struct LockShared {
    name: String,
    token: Token,
    generation: u64,
    inner: Mutex<LockInner>,
}

struct LockInner {
    lost: Option<LostReason>,
    released: bool,
    sinks: Vec<Sink>,
    subs: Vec<Subscription>,
}

impl LockShared {
    pub(crate) fn new(name: String, token: Token, generation: u64) -> Arc<Self> {
        Arc::new(LockShared {
            name,
            token,
            generation,
            inner: Mutex::new(LockInner {
                lost: None,
                released: false,
                sinks: vec![],
                subs: vec![],
            }),
        })
    }

    /// True while the lock counts as held at `now` (`Lock::is_held`): not released, not
    /// lost, granted in the current session, and that session's deadline after `now`.
    pub(crate) fn held_at(&self, shared: &Shared, now: Instant) -> bool {
        let g = self.inner.lock();
        !g.released
            && g.lost.is_none()
            && shared.generation.load(Ordering::Acquire) == self.generation
            && shared.valid_at(now)
    }

    /// Marks the lock released by its user: a loss is not reported any more. False when it
    /// was lost (or released) already.
    #[cfg(test)]
    pub(crate) fn set_released(&self) -> bool {
        let mut g = self.inner.lock();
        let was = !g.released && g.lost.is_none();
        g.released = true;
        was
    }

    /// The lock's name.
    #[cfg(test)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The grant's fencing token.
    #[cfg(test)]
    pub(crate) fn token(&self) -> Token {
        self.token
    }

    /// Marks the lock lost and queues the lost event for its callbacks. Returns the event, or
    /// None when it was already lost or released.
    pub(crate) fn mark_lost(&self, reason: LostReason) -> Option<Event> {
        let mut g = self.inner.lock();
        if g.lost.is_some() || g.released {
            return None;
        }
        g.lost = Some(reason);
        let ev = Event::LockLost {
            name: self.name.clone(),
            token: self.token,
            reason,
        };
        for s in &g.sinks {
            s.send(ev.clone());
        }
        Some(ev)
    }
}

/// What a reply created on the client side, besides the reply itself.
pub(crate) enum Held {
    None,
    Lock(Arc<LockShared>),
    Election(Arc<election::ElectionShared>),
    Group(Arc<group::GroupShared>),
}

/// A request in flight, as the user's thread sees it.
pub(crate) type Answer = Result<(Reply, Held)>;

struct Inner {
    tx: Sender<Cmd>,
    core: Arc<driver::Core>,
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
    ttl: Duration,
    /// Runs the callbacks of this client's subscriptions.
    dispatcher: Dispatcher,
    /// The subscription of [`ClientConfig::on_event`], if any.
    _config_sub: Option<Subscription>,
}

/// A connection to the tenure service with one session. Cheap to clone (clones share the
/// session); `Send + Sync`. The session is closed, and its locks released, when
/// [`Client::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.session_id())
            .field("state", &self.state())
            .finish()
    }
}

/// Checks a string argument (see [`Text::check`]).
pub(crate) fn check(kind: Text, s: &str) -> Result<()> {
    kind.check(s).map_err(Error::InvalidArgument)
}

pub(crate) fn check_timeout(t: Duration) -> Result<()> {
    if t > MAX_TIMEOUT {
        return Err(Error::InvalidArgument(format!(
            "timeout {t:?} is larger than the limit of {MAX_TIMEOUT:?}"
        )));
    }
    Ok(())
}

/// Converts a timeout in seconds (as given by the CLI and the bindings) to a duration,
/// refusing negative, NaN and absurd values.
pub fn timeout_from_secs(secs: f64) -> Result<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(Error::InvalidArgument(format!(
            "timeout {secs} s must be a finite number of seconds, zero or more"
        )));
    }
    if secs > MAX_TIMEOUT.as_secs_f64() {
        return Err(Error::InvalidArgument(format!(
            "timeout {secs} s is larger than the limit of {} s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Commands (user requests, frames read, dial outcomes) waiting for the client's driver before
/// a sender waits for room. Whoever queues one runs the queue when the driver is free, so it
/// rarely holds more than a few; the space is set aside up front (280 bytes a command, so
/// 280 KiB), so it is kept small: 65,536 made every client cost 18 MiB, and a process of
/// 1,000 clients ran out of memory in the retry benchmark.
pub const COMMAND_QUEUE: usize = 1024;

/// Longest a blocking close (and a client's last handle going) waits for the session to end
/// its close, which it does within a second with or without the server's answer: the bound
/// is for a client whose threads cannot run.
const CLOSE_BOUND: Duration = Duration::from_secs(2);

impl Client {
    /// Connects to the first reachable endpoint, opens a session and starts keeping it alive.
    /// Fails with [`Error::ConnectionFailed`] when no endpoint answers.
    pub fn connect(cfg: ClientConfig) -> Result<Client> {
        Client::connect_start(cfg)?.wait()
    }

    /// [`Client::connect`] without blocking: the result is the connected client, or
    /// [`Error::ConnectionFailed`] when no endpoint answered within the connect timeout (per
    /// endpoint, plus one), or [`Error::Cancelled`] after [`Pending::cancel`]. A session
    /// opened for a call that was cancelled, or whose `Pending` was dropped, is closed at
    /// once. Fails at once (no call started) on an invalid configuration.
    pub fn connect_start(mut cfg: ClientConfig) -> Result<Pending<Client>> {
        cfg.endpoints = crate::etcd::normalize(&cfg.endpoints)?;
        cfg.validate()?;
        let shared = Arc::new(Shared::new(Instant::now()));
        let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
        let ttl = cfg.session_ttl;
        let dispatcher = Dispatcher::new("client");
        let (config_sub, sink) = match &cfg.on_event {
            Some(cb) => {
                let (sub, sink) = dispatcher.subscribe(cb.0.clone());
                (Some(sub), Some(sink))
            }
            None => (None, None),
        };
        let req = shared.req();
        let (core, driver, first) = Driver::start(
            cfg.clone(),
            cfg.lease_config(),
            shared.clone(),
            tx.clone(),
            rx,
            sink,
            req,
        )?;
        let client = Client {
            inner: Arc::new(Inner {
                tx,
                core,
                shared,
                driver: Mutex::new(Some(driver)),
                ttl,
                dispatcher,
                _config_sub: config_sub,
            }),
        };
        Ok(Pending::new(
            client.clone(),
            req,
            first,
            Client::connected,
            "connect",
        ))
    }

    /// The result of a connect call.
    fn connected(&self, a: Answer) -> Result<Client> {
        match a {
            Ok(_) => Ok(self.clone()),
            Err(e) => {
                // The session is over (or ends by itself once a first open still in flight
                // is answered): nothing to close, and its thread is not waited for.
                self.inner.shared.closed.store(true, Ordering::Release);
                drop(self.inner.driver.lock().take());
                Err(e)
            }
        }
    }

    /// The current session id (0 while none is open).
    pub fn session_id(&self) -> SessionId {
        self.inner.shared.session.load(Ordering::Acquire)
    }

    /// The incarnation token of the service, as learnt at the last connection.
    pub fn incarnation(&self) -> Incarnation {
        self.inner.shared.incarnation()
    }

    /// The session state.
    pub fn state(&self) -> SessionState {
        *self.inner.shared.state.lock()
    }

    /// True while the session's lease is valid by the client's own deadline.
    pub fn is_connected(&self) -> bool {
        !self.inner.shared.closed.load(Ordering::Acquire) && self.inner.shared.valid_now()
    }

    /// Delivers every event of this client (session, locks, data loss) to `callback`, on
    /// the client's dispatcher thread.
    pub fn subscribe(
        &self,
        callback: impl Fn(Event) + Send + Sync + 'static,
    ) -> Result<Subscription> {
        self.subscribe_with(Handler::dispatched(callback))
    }

    /// [`Client::subscribe`] with a [`Handler`] (an inline one, for language bindings).
    pub fn subscribe_with(&self, handler: Handler) -> Result<Subscription> {
        self.check_open()?;
        let (sub, sink) = self.inner.dispatcher.subscribe(handler);
        self.send(Cmd::Subscribe(sink))?;
        Ok(sub)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        self.inner.send(cmd)
    }

    /// How long a call waits for the service's answer before it fails: the TTL, at least
    /// 5 s (a lock's own timeout aside).
    pub(crate) fn answer_wait(&self) -> Duration {
        self.inner.ttl.max(Duration::from_secs(5))
    }

    /// The deadline of a call that waits for an answer: [`Client::answer_wait`] from now,
    /// then [`Error::ConnectionFailed`].
    pub(crate) fn no_answer(&self) -> Option<(Instant, Error)> {
        let why = Error::ConnectionFailed("no answer from the service".into());
        Instant::now()
            .checked_add(self.answer_wait())
            .map(|t| (t, why))
    }

    /// Starts call `body`, which ends at `deadline` if unanswered: its pending result, made
    /// by `make` from the session's answer.
    pub(crate) fn pending<T>(
        &self,
        body: Request,
        deadline: Option<(Instant, Error)>,
        make: fn(&Client, Answer) -> Result<T>,
        what: &'static str,
    ) -> Result<Pending<T>> {
        let (req, rx) = self.start(body, deadline)?;
        Ok(Pending::new(self.clone(), req, rx, make, what))
    }

    /// Sends call `body` (the session withdraws it at `deadline` if still unanswered); its
    /// request id and the caller's end of its answer.
    fn start(&self, body: Request, deadline: Option<(Instant, Error)>) -> Result<(u64, Waiter)> {
        self.check_open()?;
        let req = self.inner.shared.req();
        let (tx, rx) = pending::slot();
        self.send(Cmd::Call {
            req,
            body,
            reply: Some(tx),
            deadline,
        })?;
        Ok((req, rx))
    }

    /// Sends call `body` and waits up to `timeout` for its answer (`None`: none came).
    fn call(&self, body: Request, timeout: Duration) -> Result<(u64, Waiter, Option<Answer>)> {
        let (req, rx) = self.start(body, None)?;
        let r = rx.recv_timeout(timeout);
        Ok((req, rx, r))
    }

    /// Waits up to `timeout` for the lock `name`. Waiters are served in arrival order. Fails
    /// with [`Error::Timeout`] when the time passes; no lock is then held.
    pub fn lock(&self, name: &str, timeout: Duration) -> Result<Lock> {
        self.lock_start(name, timeout)?.wait()
    }

    /// Starts waiting up to `timeout` for the lock `name`, without blocking: the result is
    /// the [`Lock`], or [`Error::Timeout`] once the time passed with no lock held, or
    /// [`Error::Cancelled`] after [`Pending::cancel`]. The client's session keeps the timeout,
    /// so no thread waits for it.
    pub fn lock_start(&self, name: &str, timeout: Duration) -> Result<Pending<Lock>> {
        check(Text::LockName, name)?;
        check_timeout(timeout)?;
        let body = Request::Acquire {
            name: name.to_string(),
            wait: true,
        };
        let deadline = Instant::now()
            .checked_add(timeout)
            .map(|t| (t, Error::Timeout));
        self.pending(body, deadline, Client::lock_from, "lock")
    }

    /// Takes the lock `name` if it is free; `Ok(None)` when another session holds it.
    pub fn try_lock(&self, name: &str) -> Result<Option<Lock>> {
        self.try_lock_start(name)?.wait()
    }

    /// [`Client::try_lock`] without blocking (see [`Client::lock_start`]).
    pub fn try_lock_start(&self, name: &str) -> Result<Pending<Option<Lock>>> {
        check(Text::LockName, name)?;
        let body = Request::Acquire {
            name: name.to_string(),
            wait: false,
        };
        let make = |c: &Client, a: Answer| match a {
            Ok((Reply::Busy, _)) => Ok(None),
            a => c.lock_from(a).map(Some),
        };
        self.pending(body, self.no_answer(), make, "try_lock")
    }

    fn lock_from(&self, a: Answer) -> Result<Lock> {
        match a? {
            (_, Held::Lock(l)) => Ok(Lock {
                client: self.clone(),
                shared: l,
            }),
            (r, _) => Err(Error::Rejected(format!("unexpected reply {r:?}"))),
        }
    }

    /// The service's sessions, locks, elections and groups. Read in pages of at most a frame
    /// each (a service may hold a million sessions); each page is a consistent snapshot, the
    /// whole is their concatenation, so a change between two pages may show in one and not
    /// the other.
    pub fn status(&self) -> Result<StatusInfo> {
        self.status_start()?.wait()
    }

    /// [`Client::status`] without blocking. Each page is asked for when the one before has
    /// come; cancelling ends the call at once with [`Error::Cancelled`] and asks for no more.
    pub fn status_start(&self) -> Result<Pending<StatusInfo>> {
        self.check_open()?;
        let (tx, rx) = pending::slot();
        self.status_page(None, StatusInfo::default(), tx);
        fn make(_: &Client, a: Answer) -> Result<StatusInfo> {
            match a? {
                (Reply::Status(s), _) => Ok(s),
                (r, _) => Err(Error::Rejected(format!("unexpected reply {r:?}"))),
            }
        }
        Ok(Pending::new(self.clone(), 0, rx, make, "status"))
    }

    /// Asks for the status page from `from`; adds it to `all`, and asks for the next, or
    /// answers `out` with the whole.
    fn status_page(
        &self,
        from: Option<crate::proto::StatusCursor>,
        mut all: StatusInfo,
        out: pending::Completer,
    ) {
        let wait = self.inner.ttl.max(Duration::from_secs(5));
        let deadline = Instant::now().checked_add(wait).map(|t| {
            let why = Error::ConnectionFailed("no answer from the service".into());
            (t, why)
        });
        let body = Request::Status { from };
        let page = match self.pending(body, deadline, |_, a| a, "status") {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        };
        let (client, taker) = (self.clone(), page.clone());
        page.on_complete(move || {
            let page = match taker.take() {
                Some(Ok((Reply::Status(page), _))) => page,
                Some(Ok((r, _))) => {
                    let _ = out.send(Err(Error::Rejected(format!("unexpected reply {r:?}"))));
                    return;
                }
                Some(Err(e)) => {
                    let _ = out.send(Err(e));
                    return;
                }
                None => return,
            };
            all.incarnation = page.incarnation;
            all.revision = page.revision;
            all.sessions.extend(page.sessions);
            all.locks.extend(page.locks);
            all.elections.extend(page.elections);
            all.groups.extend(page.groups);
            all.leader = page.leader;
            all.members = page.members;
            match page.next {
                Some(n) if out.is_wanted() => client.status_page(Some(n), all, out),
                Some(_) => {} // given up
                None => {
                    let _ = out.send(Ok((Reply::Status(all), Held::None)));
                }
            }
        });
    }

    /// Sends a request that gives something up (a release, a resignation, leaving a group)
    /// and, with `wait`, waits up to a TTL for the service to confirm. A session that is gone
    /// (expired, lost, closed) has given everything up already, so that counts as done, and so
    /// does no answer within a TTL: by then the lease has lapsed.
    /// `None`: nothing left to give up (done already).
    pub(crate) fn give_up_start(&self, body: Option<Request>) -> Result<Pending<()>> {
        let Some(body) = body else {
            return Ok(self.done_pending());
        };
        let deadline = Instant::now()
            .checked_add(self.inner.ttl)
            .map(|t| (t, Error::Timeout));
        fn given_up(_: &Client, a: Answer) -> Result<()> {
            match a {
                Ok(_) => Ok(()),
                // Gone, or no answer within a TTL (the lease lapsed): given up all the same.
                Err(Error::SessionExpired | Error::DataLost | Error::Closed | Error::Timeout) => {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        /// A release the server refuses: the lock was not held any more.
        fn released(c: &Client, a: Answer) -> Result<()> {
            match given_up(c, a) {
                Err(Error::Rejected(_)) => Err(Error::NotHeld),
                r => r,
            }
        }
        let make = match body {
            Request::Release { .. } => released,
            _ => given_up,
        };
        match self.pending(body, deadline, make, "give_up") {
            Err(Error::Closed) => Ok(self.done_pending()),
            r => r,
        }
    }

    /// Sends a request that gives something up: see [`Client::give_up_start`]. Without
    /// `wait`, sends it and returns.
    pub(crate) fn give_up(&self, body: Request, wait: bool) -> Result<()> {
        if wait {
            return self.give_up_start(Some(body))?.wait();
        }
        let call = Cmd::Call {
            req: self.inner.shared.req(),
            body,
            reply: None,
            deadline: None,
        };
        let _ = self.inner.send(call);
        Ok(())
    }

    /// A pending call that is done already, with `Ok(())`.
    fn done_pending(&self) -> Pending<()> {
        let (tx, rx) = pending::slot();
        let _ = tx.send(Ok((Reply::Done, Held::None)));
        Pending::new(self.clone(), 0, rx, |_, _| Ok(()), "give_up")
    }

    /// Administrative: releases the lock `name` whoever holds it. The holder is told (its
    /// lock is lost with reason `released`) and the next waiter is granted it.
    pub fn revoke(&self, name: &str) -> Result<()> {
        self.revoke_start(name)?.wait()
    }

    /// [`Client::revoke`] without blocking (see [`Client::lock_start`]).
    pub fn revoke_start(&self, name: &str) -> Result<Pending<()>> {
        check(Text::LockName, name)?;
        let body = Request::Revoke {
            name: name.to_string(),
        };
        let make = |_: &Client, a: Answer| a.map(|_| ());
        self.pending(body, self.no_answer(), make, "revoke")
    }

    /// Administrative: changes the tenure group's own members (`tenure member`). Answered
    /// once the change is applied; a replacement once its new member is a learner (it is
    /// promoted, and the old member removed in the same change, once it has caught up).
    /// [`Error::Limit`] while another change is under way; [`Error::InvalidArgument`] for a
    /// change the configuration refuses.
    pub fn change_members(&self, change: crate::proto::MemberChange) -> Result<()> {
        let body = Request::ChangeMembers { change };
        let (_, _, r) = self.call(body, self.inner.ttl.max(Duration::from_secs(5)))?;
        match r {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e),
            None => Err(Error::ConnectionFailed("no answer from the service".into())),
        }
    }

    /// Closes the session: every held lock is reported lost with reason `client_closed` and released
    /// on the server, and later calls fail with [`Error::Closed`]. Idempotent.
    pub fn close(&self) {
        // The session ends the close within a second (CLOSE_WAIT); the bound here is for a
        // client whose thread cannot run.
        let _ = self.close_start().wait_timeout(CLOSE_BOUND);
    }

    /// [`Client::close`] without blocking: done once the server confirmed the close, or a
    /// second passed without its answer. Every held lock is reported lost (reason
    /// `client_closed`) before it is done. Cancelling it changes nothing: the client is
    /// closed all the same.
    pub fn close_start(&self) -> Pending<()> {
        if self.inner.shared.closed.swap(true, Ordering::AcqRel) {
            return self.done_pending();
        }
        let (tx, rx) = pending::slot();
        if self.inner.send(Cmd::Close { done: tx }).is_err() {
            return self.done_pending();
        }
        Pending::new(self.clone(), 0, rx, Client::closed, "close")
    }

    /// The result of a close call: the session is over, so its thread ends; waited for unless
    /// this is that thread.
    fn closed(&self, _: Answer) -> Result<()> {
        if let Some(t) = self.inner.driver.lock().take() {
            if std::thread::current().id() != t.thread().id() {
                let _ = t.join();
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Queues a command for the driver and runs the queue if no other thread is running it
    /// (see [`driver`]): a request is written to the socket from the caller's thread.
    pub(crate) fn send(&self, cmd: Cmd) -> Result<()> {
        self.tx.send(cmd).map_err(|_| Error::Closed)?;
        self.core.poke();
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut over = false;
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            let (tx, rx) = pending::slot();
            over = self.send(Cmd::Close { done: tx }).is_err()
                || rx.recv_timeout(CLOSE_BOUND).is_some();
        }
        if let Some(t) = self.driver.lock().take() {
            if !over && !t.is_finished() {
                return; // it ends by itself; not waited for beyond the bound
            }
            // The last handle may go on the timer thread itself (in a completion callback):
            // it ends by itself once the session has closed.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// A held lock. Dropping it releases it.
pub struct Lock {
    client: Client,
    shared: Arc<LockShared>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.shared.name)
            .field("token", &self.shared.token)
            .field("held", &self.is_held())
            .finish()
    }
}

impl Lock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The fencing token of this grant: larger than every token granted before it, for any
    /// lock of the service. Pass it to the resources you write, and have them refuse tokens
    /// older than the newest they have seen.
    pub fn fencing_token(&self) -> Token {
        self.shared.token
    }

    /// True while the lock is held: not released, not reported lost, and the session's lease
    /// valid by the client's own deadline. It turns false at the deadline with no message
    /// needed, before the server could grant the lock to anyone else.
    pub fn is_held(&self) -> bool {
        self.shared
            .held_at(&self.client.inner.shared, Instant::now())
    }

    /// Why the lock was lost, once it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.shared.inner.lock().lost
    }

    /// Calls `callback` with the `lock_lost` event when the lock is lost, on the client's
    /// dispatcher thread; at once (on that thread) if it is lost already. It fires no later
    /// than the client's lease deadline. Releasing the lock is not a loss.
    pub fn on_lost(&self, callback: impl Fn(Event) + Send + Sync + 'static) {
        self.on_lost_with(Handler::dispatched(callback))
    }

    /// [`Lock::on_lost`] with a [`Handler`] (an inline one, for language bindings).
    pub fn on_lost_with(&self, handler: Handler) {
        let (sub, sink) = self.client.inner.dispatcher.subscribe(handler);
        let mut g = self.shared.inner.lock();
        if let Some(reason) = g.lost {
            sink.send(Event::LockLost {
                name: self.shared.name.clone(),
                token: self.shared.token,
                reason,
            });
        }
        g.sinks.push(sink);
        g.subs.push(sub);
    }

    /// Releases the lock and waits for the server to confirm. Fails with
    /// [`Error::NotHeld`] when the lock had already been lost.
    pub fn release(self) -> Result<()> {
        self.release_inner(true)
    }

    /// [`Lock::release`] without blocking (see [`Client::lock_start`]): the pending
    /// confirmation. Fails at once with [`Error::NotHeld`] when the lock was lost.
    pub fn release_start(self) -> Result<Pending<()>> {
        self.client.give_up_start(self.mark_released()?)
    }

    /// Marks the lock released: the release to send (`None` when released already).
    fn mark_released(&self) -> Result<Option<Request>> {
        let mut g = self.shared.inner.lock();
        if g.released {
            return Ok(None);
        }
        g.released = true;
        if g.lost.is_some() {
            return Err(Error::NotHeld);
        }
        Ok(Some(Request::Release {
            name: self.shared.name.clone(),
            token: self.shared.token,
        }))
    }

    fn release_inner(&self, wait: bool) -> Result<()> {
        let Some(body) = self.mark_released()? else {
            return Ok(());
        };
        match self.client.give_up(body, wait) {
            Err(Error::Rejected(_)) => Err(Error::NotHeld),
            r => r,
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.release_inner(false);
        // Stop this lock's callbacks, unless we are inside one of them.
        let subs = std::mem::take(&mut self.shared.inner.lock().subs);
        drop(subs);
    }
}
