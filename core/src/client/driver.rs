//! The client's driver: connection, heartbeats, replies, lock table. No user code runs here;
//! no protocol rule lives here (the lease decides when to heartbeat and when the session is
//! over; the server decides grants).
//!
//! Threads. The driver's state is one [`Driver`] behind a mutex in [`Core`]. Every input is a
//! [`Cmd`] on one queue: user requests, replies and notices read by the connection's reader
//! thread, timer work. Whoever queues a command then tries the mutex and, when it is free,
//! runs every queued command itself, in queue order ([`Core::poke`], never blocking); a
//! thread that holds the mutex runs what others queued meanwhile before it lets go. So a
//! request is written to the socket by the caller's own thread and its reply is completed by
//! the reader thread that read it: no hand-off to a driver thread on either way (each cost
//! about 10 µs of scheduling on an idle machine), while the order of everything stays that of
//! the queue, as with a single driver thread. The timer thread wakes at the lease's next
//! deadline (or when nudged because that moved earlier).
//!
//! Nothing that holds the driver waits on the network (see [`super::conn`]): connecting and
//! the handshake run on a dial thread of their own, which reports through the queue
//! ([`Cmd::Dialed`]); writes never block. So the timer thread takes the driver at once at the
//! lease deadline, whatever the sockets do, and expiry, `is_held()` turning false and the
//! lost callbacks happen then.

use super::conn::{dial, queue, Connection, Dialed};
use super::election::ElectionShared;
use super::group::{view_events, GroupShared};
use super::ClientConfig;
use super::{Answer, Held, LockShared, SessionState, Shared};
use crate::error::{Error, Result};
use crate::events::{Event, LostReason, Sink};
use crate::lease::{Lease, LeaseAction, LeaseConfig, LeaseState};
use crate::proto::{
    self, ClientMsg, ErrorReply, Incarnation, MasterInfo, Notice, Reply, Request, ServerMsg,
    SessionId, ViewInfo,
};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Heartbeats travel with this bit set in their request id, so their replies go to the lease.
const HEARTBEAT_BIT: u64 = 1 << 63;
/// Opens remembered while in flight.
const MAX_OPENING: usize = 8;

pub(crate) enum Cmd {
    /// A user request; `reply` gets exactly one answer (none for fire-and-forget).
    Call {
        req: u64,
        body: Request,
        reply: Option<Sender<Answer>>,
    },
    /// The user gave up waiting for acquire `req`.
    Cancel {
        req: u64,
    },
    Subscribe(Sink),
    /// An election handle was dropped: stop updating it.
    Forget {
        shared: Arc<ElectionShared>,
    },
    /// A group handle was dropped: stop updating it.
    ForgetGroup {
        shared: Arc<GroupShared>,
    },
    Frame {
        conn: u64,
        msg: ServerMsg,
    },
    Broken {
        conn: u64,
    },
    /// A dial thread's outcome: the connection, or what every endpoint said.
    Dialed {
        seq: u64,
        result: std::result::Result<Dialed, String>,
    },
    Close {
        done: Sender<()>,
    },
}

struct Pending {
    body: Request,
    reply: Option<Sender<Answer>>,
}

/// A close waiting for the server's reply.
struct Closing {
    /// The close request's id.
    req: u64,
    /// Told when the close has ended.
    done: Sender<()>,
    /// When to stop waiting for the reply.
    until: Instant,
}

/// What a client's threads share: the driver behind its mutex, the command queue, and the
/// timer thread's wake-up channel.
pub(crate) struct Core {
    driver: Mutex<Driver>,
    rx: Receiver<Cmd>,
    alarm: Alarm,
}

/// The timer thread's sleep: until an instant, or until nudged because that instant moved
/// earlier. A parking_lot condvar rather than a channel's timed receive: crossbeam's
/// `recv_deadline` yields the CPU a few times after its deadline before it returns, and on a
/// machine whose cores are busy each yield costs a time slice, which made the timer thread,
/// and so the expiry and the lost callbacks, 10 ms late at the median and 50 ms in the tail
/// (`examples/lost_bench.rs`); a condvar wakes within the scheduler's latency.
#[derive(Default)]
struct Alarm {
    nudged: Mutex<bool>,
    wake: Condvar,
}

impl Alarm {
    fn nudge(&self) {
        *self.nudged.lock() = true;
        self.wake.notify_one();
    }

    /// Sleeps until `until` (for ever when `None`) or a nudge, whichever comes first.
    fn sleep(&self, until: Option<Instant>) {
        let mut n = self.nudged.lock();
        while !*n {
            match until {
                Some(t) => {
                    if Instant::now() >= t || self.wake.wait_until(&mut n, t).timed_out() {
                        break;
                    }
                }
                None => self.wake.wait(&mut n),
            }
        }
        *n = false;
    }
}

impl Core {
    /// Runs the queued commands now unless another thread is running the driver (which then
    /// runs them before letting go). Never blocks; call after queueing a command.
    pub(crate) fn poke(&self) {
        // The hand-off is "queue, then try the mutex" against "unlock, then look at the
        // queue": each side must see the other's first step, which needs full fences.
        fence(Ordering::SeqCst);
        while let Some(d) = self.driver.try_lock() {
            if !self.let_go(d) {
                return;
            }
        }
    }

    /// Runs `f` on the driver (waiting for the mutex), then the queued commands.
    fn with<T>(&self, f: impl FnOnce(&mut Driver) -> T) -> T {
        let mut d = self.driver.lock();
        let out = f(&mut d);
        if self.let_go(d) {
            self.poke();
        }
        out
    }

    /// Runs what is queued, lets go of the driver, nudges the timer thread when its wake-up
    /// moved earlier, and says whether commands were queued meanwhile (someone must run them).
    fn let_go(&self, mut d: MutexGuard<'_, Driver>) -> bool {
        d.drain(&self.rx);
        let nudge = d.wants_timer();
        drop(d);
        if nudge {
            self.alarm.nudge();
        }
        fence(Ordering::SeqCst);
        !self.rx.is_empty()
    }
}

pub(crate) struct Driver {
    cfg: ClientConfig,
    lease_cfg: LeaseConfig,
    shared: Arc<Shared>,
    tx: Sender<Cmd>,
    /// The core this driver lives in (for the reader threads it starts).
    core: Weak<Core>,
    conn: Option<Connection>,
    conn_seq: u64,
    /// The dial in progress, by sequence number (older outcomes are dropped).
    dialing: Option<u64>,
    dial_seq: u64,
    endpoint_idx: usize,
    session: SessionId,
    lease: Option<Lease>,
    /// Opens in flight (request id, send time), newest last. A late reply to an older one is
    /// still a session: adopted when we have none, closed when we have one already.
    opening: Vec<(u64, Instant)>,
    /// When to try opening a session next, while there is none.
    reopen_at: Option<Instant>,
    incarnation: Option<Incarnation>,
    pending: BTreeMap<u64, Pending>,
    locks: HashMap<String, Arc<LockShared>>,
    /// Campaigns and observations, per election.
    elections: HashMap<String, Vec<Arc<ElectionShared>>>,
    /// The newest epoch told to subscribers, per election.
    epochs: HashMap<String, u64>,
    /// Memberships and watches, per group.
    groups: HashMap<String, Vec<Arc<GroupShared>>>,
    /// The newest view told to subscribers, per group.
    views: HashMap<String, ViewInfo>,
    subs: Vec<Sink>,
    seed: u64,
    /// When the current connection last delivered a frame.
    last_heard: Instant,
    /// When the timer thread plans to wake next (set by it before it sleeps).
    planned: Option<Instant>,
    /// While the first session is being opened: where its outcome goes.
    first: Option<Sender<Result<()>>>,
    /// Closed: the timer thread ends, and requests get [`Error::Closed`].
    exited: bool,
    /// A close in progress (see [`Driver::close`]).
    closing: Option<Closing>,
    /// `Client::connect` gave up waiting for the first open: if its reply still comes, the
    /// session is closed at once (so it does not linger on the server for a TTL), and this
    /// is told when that is done.
    abandoned: Option<Sender<()>>,
}

impl Driver {
    /// Connects, opens the first session synchronously, then starts the timer thread.
    pub(crate) fn start(
        cfg: ClientConfig,
        lease_cfg: LeaseConfig,
        shared: Arc<Shared>,
        tx: Sender<Cmd>,
        rx: Receiver<Cmd>,
        first_sub: Option<Sink>,
    ) -> Result<(Arc<Core>, JoinHandle<()>)> {
        let seed = (std::process::id() as u64) << 32 ^ shared.epoch.elapsed().as_nanos() as u64;
        let core = Arc::new_cyclic(|weak| Core {
            driver: Mutex::new(Driver {
                cfg,
                lease_cfg,
                shared,
                tx,
                core: weak.clone(),
                conn: None,
                conn_seq: 0,
                dialing: None,
                dial_seq: 0,
                endpoint_idx: 0,
                session: 0,
                lease: None,
                opening: Vec::new(),
                reopen_at: None,
                incarnation: None,
                pending: BTreeMap::new(),
                locks: HashMap::new(),
                elections: HashMap::new(),
                epochs: HashMap::new(),
                groups: HashMap::new(),
                views: HashMap::new(),
                subs: first_sub.into_iter().collect(),
                seed,
                last_heard: Instant::now(),
                planned: None,
                first: None,
                exited: false,
                closing: None,
                abandoned: None,
            }),
            rx,
            alarm: Alarm::default(),
        });
        // The first session: connect from the caller's thread (nothing else runs yet), then
        // send the open; the reply is taken by the reader thread, which reports it through
        // `first`.
        let (endpoints, step, name, ttl) = core.with(|d| {
            (
                d.cfg.endpoints.clone(),
                d.cfg.connect_timeout,
                d.cfg.client_name.clone(),
                d.lease_cfg.ttl,
            )
        });
        let dialed = dial(&endpoints, 0, step, &name).map_err(Error::ConnectionFailed)?;
        let (first_tx, first_rx) = crossbeam_channel::bounded(1);
        core.with(|d| {
            d.first = Some(first_tx);
            d.install(dialed);
            if d.conn.is_none() {
                return Err(Error::ConnectionFailed(
                    "connection closed while opening the session".into(),
                ));
            }
            d.send_open();
            Ok(())
        })?;
        let wait = step.max(Duration::from_secs(1));
        let outcome = first_rx.recv_timeout(wait).unwrap_or_else(|_| {
            Err(Error::ConnectionFailed(format!(
                "no answer to opening the session within {wait:?}"
            )))
        });
        if let Err(e) = outcome {
            // The open may still be answered: whoever reads that reply closes the session.
            // This thread keeps the driver (and its connection) alive until then, or a TTL.
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            let in_flight = core.with(|d| {
                d.first = None;
                let in_flight = d.conn.is_some() && !d.opening.is_empty();
                if in_flight {
                    d.abandoned = Some(done_tx);
                } else {
                    d.exited = true;
                    d.conn = None;
                }
                in_flight
            });
            if in_flight {
                let keep = core.clone();
                let spawned = std::thread::Builder::new()
                    .name("tenure-client-abandon".into())
                    .spawn(move || {
                        let _ = done_rx.recv_timeout(ttl + Duration::from_secs(1));
                        keep.with(|d| {
                            d.exited = true;
                            d.conn = None;
                        });
                    });
                if spawned.is_err() {
                    core.with(|d| {
                        d.exited = true;
                        d.conn = None;
                    });
                }
            }
            return Err(e);
        }
        let c = core.clone();
        let timer = std::thread::Builder::new()
            .name("tenure-client".into())
            .spawn(move || timer_loop(&c))?;
        Ok((core, timer))
    }

    /// Runs every queued command, in order.
    fn drain(&mut self, rx: &Receiver<Cmd>) {
        while let Ok(cmd) = rx.try_recv() {
            // A deadline that passed is acted on before anything else.
            self.tick();
            self.handle(cmd);
        }
    }

    /// Whether the timer thread must wake before it planned to.
    fn wants_timer(&self) -> bool {
        if self.exited {
            return true;
        }
        match (self.next_wakeup(), self.planned) {
            (Some(n), Some(p)) => n < p,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn emit(&mut self, ev: Event) {
        self.subs.retain(|s| s.send(ev.clone()));
    }

    fn set_state(&self, s: SessionState) {
        *self.shared.state.lock() = s;
    }

    /// Starts a dial thread unless one runs. Its outcome comes back as [`Cmd::Dialed`].
    fn want_dial(&mut self) {
        if self.dialing.is_some() || self.exited {
            return;
        }
        self.dial_seq += 1;
        let seq = self.dial_seq;
        // Each step has a short bound of its own: within a lease, no longer than a
        // heartbeat may go unanswered, so a stalled endpoint leaves time for the next.
        let step = match &self.lease {
            Some(_) => self
                .cfg
                .connect_timeout
                .min(self.lease_cfg.heartbeat_timeout),
            None => self.cfg.connect_timeout,
        };
        let endpoints = self.cfg.endpoints.clone();
        let start = self.endpoint_idx;
        let name = self.cfg.client_name.clone();
        let (tx, core) = (self.tx.clone(), self.core.clone());
        let spawned = std::thread::Builder::new()
            .name("tenure-client-dial".into())
            .spawn(move || {
                let result = dial(&endpoints, start, step, &name);
                let poke = || match core.upgrade() {
                    Some(c) => {
                        c.poke();
                        true
                    }
                    None => false,
                };
                let never = AtomicBool::new(false);
                if queue(&tx, &poke, &never, Cmd::Dialed { seq, result }) {
                    poke();
                }
            });
        match spawned {
            Ok(_) => self.dialing = Some(seq),
            Err(_) => self.dial_failed(), // out of threads: a failed attempt, retried later
        }
    }

    /// A dial's outcome.
    fn dialed(&mut self, seq: u64, result: std::result::Result<Dialed, String>) {
        if self.dialing != Some(seq) {
            return; // an older attempt; its connection (if any) is dropped
        }
        self.dialing = None;
        match result {
            Ok(d) => {
                self.install(d);
                if self.conn.is_some() {
                    self.connected();
                } else {
                    self.dial_failed();
                }
            }
            Err(_) => {
                // Next time, start from the endpoint after the one tried first.
                self.endpoint_idx = (self.endpoint_idx + 1) % self.cfg.endpoints.len().max(1);
                self.dial_failed();
            }
        }
    }

    fn dial_failed(&mut self) {
        let now = Instant::now();
        match self.lease.as_mut() {
            Some(l) => l.on_failure(now),
            None => {
                if self.cfg.reopen && self.reopen_at.is_none() && !self.exited {
                    self.reopen_at = Some(now + self.reopen_gap());
                }
            }
        }
    }

    /// Makes a dialed connection the current one (starting its reader).
    fn install(&mut self, d: Dialed) {
        self.conn = None;
        self.conn_seq += 1;
        let write_timeout = self.lease_cfg.heartbeat_timeout;
        // Without a reader thread (out of threads) there is no connection: a failed attempt.
        let Ok(c) = Connection::start(
            d.stream,
            self.conn_seq,
            self.tx.clone(),
            self.core.clone(),
            write_timeout,
        ) else {
            return;
        };
        self.conn = Some(c);
        self.endpoint_idx = d.endpoint;
        self.last_heard = Instant::now();
        // A changed incarnation ends the session (data_lost) in check_incarnation; the new
        // connection then serves the next session.
        self.check_incarnation(d.incarnation);
    }

    /// A new connection is up: carry the session over to it (a fresh heartbeat, requests
    /// in flight resent with their ids, master caches and views read again), or open a
    /// session if one is wanted.
    fn connected(&mut self) {
        let now = Instant::now();
        if self.lease.is_some() {
            let s = self.session;
            // Notices sent while we were away are lost: read the master caches again.
            let names: Vec<String> = self.elections.keys().cloned().collect();
            for election in names {
                let r = self.shared.req();
                let body = Request::Master { election };
                self.pending.insert(r, Pending { body, reply: None });
            }
            let names: Vec<String> = self.groups.keys().cloned().collect();
            for group in names {
                let r = self.shared.req();
                let body = Request::View { group };
                self.pending.insert(r, Pending { body, reply: None });
            }
            // The heartbeat first: it is what keeps the lease, and its ack is counted (a
            // heartbeat asked for before the connection broke would not be).
            let hb = self.lease.as_mut().and_then(|l| l.send_now(now));
            if let Some(LeaseAction::SendHeartbeat { id, .. }) = hb {
                if !self.write(s, HEARTBEAT_BIT | id, Request::Heartbeat) {
                    return;
                }
            }
            let reqs: Vec<(u64, Request)> = self
                .pending
                .iter()
                .map(|(k, p)| (*k, p.body.clone()))
                .collect();
            for (req, body) in reqs {
                let session = if matches!(body, Request::Status { .. } | Request::Revoke { .. }) {
                    0
                } else {
                    s
                };
                if !self.write(session, req, body) {
                    return;
                }
            }
        } else if self.cfg.reopen && !self.exited && self.first.is_none() {
            self.send_open();
            self.reopen_at = Some(now + self.reopen_gap().max(self.lease_cfg.heartbeat_timeout));
        }
    }

    /// Sends a request on the current connection without waiting for the network. False
    /// when there is no connection or it broke (then the lease is told).
    fn write(&mut self, session: SessionId, req: u64, body: Request) -> bool {
        let Some(c) = self.conn.as_ref() else {
            return false;
        };
        let mut b = Vec::new();
        if proto::encode(&ClientMsg::Request { session, req, body }, &mut b).is_err() {
            // Arguments are checked before they get here; a message that still does not fit
            // is not sent, and its caller times out.
            return true;
        }
        if !c.send(&b) {
            self.disconnected();
            return false;
        }
        true
    }

    fn disconnected(&mut self) {
        self.conn = None;
        if let Some(l) = self.lease.as_mut() {
            l.on_disconnect(Instant::now());
        }
    }

    fn send_open(&mut self) {
        let req = self.shared.req();
        let ttl_ms = self.lease_cfg.ttl.as_millis() as u64;
        self.opening.push((req, Instant::now()));
        if self.opening.len() > MAX_OPENING {
            self.opening.remove(0);
        }
        self.write(0, req, Request::Open { ttl_ms });
    }

    /// Acts on one command.
    fn handle(&mut self, cmd: Cmd) {
        if self.exited {
            // Closed: nothing is done any more; whoever waits is told. A close in progress
            // ends with the server's reply or the connection's end.
            let cur = self.conn.as_ref().map(|x| x.id);
            let close_req = self.closing.as_ref().map(|c| c.req);
            match cmd {
                Cmd::Frame {
                    conn,
                    msg: ServerMsg::Reply { req, .. },
                } if Some(conn) == cur && Some(req) == close_req => self.close_end(),
                Cmd::Broken { conn } if Some(conn) == cur => self.close_end(),
                Cmd::Call { reply: Some(r), .. } => {
                    let _ = r.send(Err(Error::Closed));
                }
                Cmd::Close { done } => {
                    let _ = done.send(());
                }
                Cmd::Dialed { seq, .. } if self.dialing == Some(seq) => self.dialing = None,
                _ => {}
            }
            return;
        }
        match cmd {
            Cmd::Call { req, body, reply } => self.call(req, body, reply),
            Cmd::ForgetGroup { shared } => {
                if let Some(v) = self.groups.get_mut(&shared.name) {
                    v.retain(|e| !Arc::ptr_eq(e, &shared));
                    if v.is_empty() {
                        self.groups.remove(&shared.name);
                    }
                }
            }
            Cmd::Forget { shared } => {
                if let Some(v) = self.elections.get_mut(&shared.name) {
                    v.retain(|e| !Arc::ptr_eq(e, &shared));
                    if v.is_empty() {
                        self.elections.remove(&shared.name);
                    }
                }
            }
            Cmd::Cancel { req } => self.cancel(req),
            Cmd::Subscribe(s) => self.subs.push(s),
            Cmd::Frame { conn, msg } => {
                if self.conn.as_ref().is_some_and(|c| c.id == conn) {
                    self.last_heard = Instant::now();
                    self.frame(msg);
                }
            }
            Cmd::Broken { conn } => {
                if self.conn.as_ref().is_some_and(|c| c.id == conn) {
                    self.disconnected();
                    if let Some(f) = self.first.take() {
                        let _ = f.send(Err(Error::ConnectionFailed(
                            "connection closed while opening the session".into(),
                        )));
                    }
                }
            }
            Cmd::Dialed { seq, result } => self.dialed(seq, result),
            Cmd::Close { done } => self.close(done),
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        if let Some(c) = &self.closing {
            return Some(c.until);
        }
        match (&self.lease, self.reopen_at) {
            (Some(l), _) => l.next_wakeup(),
            (None, r) => r,
        }
    }

    /// Runs the lease (and session reopening) up to now. Never waits on the network: what
    /// needs a connection starts a dial and goes on when it is done.
    fn tick(&mut self) {
        if self.exited {
            return;
        }
        let now = Instant::now();
        if self.lease.is_some() {
            let actions = match self.lease.as_mut() {
                Some(l) => l.poll(now),
                None => Vec::new(),
            };
            for a in actions {
                match a {
                    LeaseAction::SendHeartbeat { id, retry } => {
                        // A retry on a connection that has said nothing for a heartbeat
                        // timeout (hung server, half-open TCP) goes over a new connection,
                        // to the next endpoint if this one does not answer.
                        let silent = now.saturating_duration_since(self.last_heard)
                            > self.lease_cfg.heartbeat_timeout;
                        if retry && silent && self.conn.is_some() {
                            self.conn = None;
                            self.endpoint_idx = (self.endpoint_idx + 1) % self.cfg.endpoints.len();
                        }
                        if self.conn.is_none() {
                            // This retry is a connection attempt; once connected, a fresh
                            // heartbeat goes out at once.
                            self.want_dial();
                            continue;
                        }
                        let s = self.session;
                        self.write(s, HEARTBEAT_BIT | id, Request::Heartbeat);
                    }
                    LeaseAction::Jeopardy { remaining } => {
                        self.set_state(SessionState::Jeopardy);
                        self.emit(Event::SessionJeopardy { remaining });
                    }
                    LeaseAction::Recovered => {
                        self.set_state(SessionState::Connected);
                        self.emit(Event::SessionRecovered);
                    }
                    LeaseAction::Expired => {
                        self.session_over(LostReason::SessionExpired, None);
                        return;
                    }
                }
            }
            if let Some(l) = &self.lease {
                if l.state() != LeaseState::Expired {
                    self.shared.set_deadline(Some(l.deadline()));
                }
            }
        } else if self.reopen_at.is_some_and(|t| now >= t) {
            if self.conn.is_some() {
                self.send_open();
                self.reopen_at =
                    Some(now + self.reopen_gap().max(self.lease_cfg.heartbeat_timeout));
            } else {
                // The dial's outcome opens the session, or plans the next try.
                self.reopen_at = None;
                self.want_dial();
            }
        }
    }

    fn reopen_gap(&self) -> Duration {
        (self.lease_cfg.ttl / 10).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// False when the service's incarnation changed: the state, and our session, are gone.
    fn check_incarnation(&mut self, inc: Incarnation) -> bool {
        match self.incarnation {
            Some(old) if old != inc => {
                self.incarnation = Some(inc);
                *self.shared.incarnation.lock() = inc;
                self.session_over(LostReason::DataLost, Some((old, inc)));
                false
            }
            _ => {
                self.incarnation = Some(inc);
                *self.shared.incarnation.lock() = inc;
                true
            }
        }
    }

    /// The session is over: report every lock lost first, then the session event, fail what
    /// was waiting, and plan a new session.
    fn session_over(&mut self, reason: LostReason, data_lost: Option<(Incarnation, Incarnation)>) {
        self.shared.set_deadline(None);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        for (_, l) in self.locks.drain().collect::<Vec<_>>() {
            if let Some(ev) = l.mark_lost(reason) {
                self.emit(ev);
            }
        }
        // Candidacies end with the session; observers stay and observe again on the next one.
        for v in self.elections.values_mut() {
            v.retain(|e| {
                if e.id.is_some() {
                    e.end();
                    false
                } else {
                    true
                }
            });
        }
        self.elections.retain(|_, v| !v.is_empty());
        // Memberships end with the session (the service removed them); watches carry over.
        for v in self.groups.values_mut() {
            v.retain(|g| {
                if g.id.is_some() {
                    g.end();
                    false
                } else {
                    true
                }
            });
        }
        self.groups.retain(|_, v| !v.is_empty());
        if data_lost.is_some() {
            self.views.clear();
            for v in self.groups.values() {
                for g in v {
                    g.reset();
                }
            }
            // A new incarnation numbers its epochs anew.
            self.epochs.clear();
            for v in self.elections.values() {
                for e in v {
                    e.reset();
                }
            }
        }
        let err = match data_lost {
            Some((old, new)) => {
                self.emit(Event::DataLost { old, new });
                Error::DataLost
            }
            None => {
                self.emit(Event::SessionExpired);
                Error::SessionExpired
            }
        };
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(err.clone()));
            }
        }
        self.lease = None;
        self.session = 0;
        self.shared.session.store(0, Ordering::Release);
        self.opening.clear();
        self.set_state(SessionState::Expired);
        if self.cfg.reopen && !self.shared.closed.load(Ordering::Acquire) {
            self.reopen_at = Some(Instant::now());
        }
    }

    fn call(&mut self, req: u64, body: Request, reply: Option<Sender<Answer>>) {
        if self.lease.is_none() && !matches!(body, Request::Status { .. } | Request::Revoke { .. })
        {
            if matches!(body, Request::Release { .. }) {
                // No session, so nothing is held: the release is done already.
                if let Some(r) = reply {
                    let _ = r.send(Err(Error::SessionExpired));
                }
                return;
            }
            if let Some(r) = reply {
                let _ = r.send(Err(Error::SessionExpired));
            }
            return;
        }
        if let Request::Release { name, token } = &body {
            // From now on a loss of this lock is not reported: the user gave it up.
            if self.locks.get(name).is_some_and(|l| l.token == *token) {
                self.locks.remove(name);
            }
        }
        let session = if matches!(body, Request::Status { .. } | Request::Revoke { .. }) {
            0
        } else {
            self.session
        };
        self.pending.insert(
            req,
            Pending {
                body: body.clone(),
                reply,
            },
        );
        if self.conn.is_some() {
            self.write(session, req, body);
        }
    }

    fn cancel(&mut self, req: u64) {
        if let Some(p) = self.pending.remove(&req) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(Error::Timeout));
            }
            // Tell the server; it removes the waiter, or gives back a grant that raced us.
            let c = self.shared.req();
            self.call(c, Request::Cancel { target: req }, None);
        }
    }

    fn frame(&mut self, msg: ServerMsg) {
        if let ServerMsg::Reply {
            session,
            req,
            result,
        } = msg
        {
            let opening = self.opening.iter().any(|(r, _)| *r == req);
            // Replies name their session: one for another session (or an older one of ours)
            // is not ours to act on.
            if !opening && session != self.session && session != 0 {
                return;
            }
            self.on_reply(req, result);
        } else if let ServerMsg::Notice { session, notice } = msg {
            if session != self.session {
                return;
            }
            match notice {
                Notice::MasterChanged { election, info } => self.master_changed(&election, &info),
                Notice::ViewChanged { group, info } => self.view_changed(&group, &info),
                Notice::LockRevoked { name, token } => {
                    if self.locks.get(&name).is_some_and(|l| l.token == token) {
                        if let Some(l) = self.locks.remove(&name) {
                            if let Some(ev) = l.mark_lost(LostReason::Released) {
                                self.emit(ev);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A newer master cache for `election`: update its handles and tell subscribers, once per
    /// epoch, in increasing order.
    fn master_changed(&mut self, election: &str, info: &MasterInfo) {
        if let Some(v) = self.elections.get(election) {
            for e in v {
                e.update(info);
            }
        }
        let last = self.epochs.entry(election.to_string()).or_insert(0);
        if info.epoch > *last {
            *last = info.epoch;
            let st = super::election::to_state(info);
            self.emit(Event::MasterChanged {
                election: election.to_string(),
                epoch: st.epoch,
                master: st.master,
            });
        }
    }

    /// A newer view of `group`: update its handles and tell subscribers, once per view.
    fn view_changed(&mut self, group: &str, info: &ViewInfo) {
        let prev = self.views.get(group).cloned().unwrap_or_default();
        if info.view <= prev.view {
            return;
        }
        let events = view_events(group, &prev, info);
        self.views.insert(group.to_string(), info.clone());
        if let Some(v) = self.groups.get(group) {
            for g in v {
                g.update(info, &events);
            }
        }
        for ev in events {
            self.emit(ev);
        }
    }

    /// The reply to a join, watch or view read.
    fn view_reply(&mut self, body: Request, info: ViewInfo, reply: Option<Sender<Answer>>) {
        let (group, id) = match &body {
            Request::Join { group, id, .. } => (group.clone(), Some(id.clone())),
            Request::WatchGroup { group }
            | Request::View { group }
            | Request::Replace { group, .. } => (group.clone(), None),
            _ => return,
        };
        let handle = matches!(body, Request::Join { .. } | Request::WatchGroup { .. });
        self.view_changed(&group, &info);
        let Some(reply) = reply else { return };
        if !handle {
            let _ = reply.send(Ok((Reply::View(info), Held::None)));
            return;
        }
        let gen = self.shared.generation.load(Ordering::Acquire);
        let shared = GroupShared::new(group.clone(), id.clone(), gen, info.clone());
        self.groups
            .entry(group.clone())
            .or_default()
            .push(shared.clone());
        if reply
            .send(Ok((Reply::View(info), Held::Group(shared.clone()))))
            .is_err()
        {
            if let Some(v) = self.groups.get_mut(&group) {
                v.retain(|g| !Arc::ptr_eq(g, &shared));
            }
            if let Some(id) = id {
                let c = self.shared.req();
                self.call(c, Request::Leave { group, id }, None);
            }
        }
    }

    /// The reply to a campaign, observation, election request or master read.
    fn master_reply(&mut self, body: Request, info: MasterInfo, reply: Option<Sender<Answer>>) {
        let (election, id) = match &body {
            Request::Campaign { election, id, .. } => (election.clone(), Some(id.clone())),
            Request::Observe { election }
            | Request::Master { election }
            | Request::RequestElection { election } => (election.clone(), None),
            _ => return,
        };
        let handle = matches!(body, Request::Campaign { .. } | Request::Observe { .. });
        let Some(reply) = reply else {
            // Internal (re-observe, catch-up read): just take the news.
            self.master_changed(&election, &info);
            return;
        };
        if !handle {
            self.master_changed(&election, &info);
            let _ = reply.send(Ok((Reply::Master(info), Held::None)));
            return;
        }
        let gen = self.shared.generation.load(Ordering::Acquire);
        let shared = ElectionShared::new(election.clone(), id.clone(), gen, MasterInfo::default());
        shared.update(&info);
        self.elections
            .entry(election.clone())
            .or_default()
            .push(shared.clone());
        self.master_changed(&election, &info);
        if reply
            .send(Ok((Reply::Master(info), Held::Election(shared.clone()))))
            .is_err()
        {
            // Nobody waits for this handle any more: undo the candidacy.
            if let Some(v) = self.elections.get_mut(&election) {
                v.retain(|e| !Arc::ptr_eq(e, &shared));
            }
            if let Some(id) = id {
                let c = self.shared.req();
                self.call(c, Request::Resign { election, id }, None);
            }
        }
    }

    fn on_reply(&mut self, req: u64, result: Result<Reply, ErrorReply>) {
        let now = Instant::now();
        if req & HEARTBEAT_BIT != 0 {
            match result {
                Ok(_) => {
                    if let Some(l) = self.lease.as_mut() {
                        l.on_ack(req & !HEARTBEAT_BIT, now);
                        // Published now, not at the timer's next turn: is_held() reads it.
                        if l.state() != LeaseState::Expired {
                            self.shared.set_deadline(Some(l.deadline()));
                        }
                    }
                }
                Err(ErrorReply::UnknownSession) => {
                    self.session_over(LostReason::SessionExpired, None)
                }
                Err(_) => {
                    if let Some(l) = self.lease.as_mut() {
                        l.on_failure(now);
                    }
                }
            }
            return;
        }
        if let Some(pos) = self.opening.iter().position(|(r, _)| *r == req) {
            let (_, sent) = self.opening.remove(pos);
            if let Some(done) = self.abandoned.take() {
                // Client::connect gave up on this open: close the session it made, if any.
                match result {
                    Ok(Reply::Opened { session, .. }) => {
                        self.session = session;
                        self.lease = Some(Lease::new(self.lease_cfg.clone(), sent, self.seed));
                        self.close(done);
                    }
                    _ => {
                        let _ = done.send(());
                    }
                }
                return;
            }
            {
                match result {
                    Ok(Reply::Opened { session, .. }) if self.lease.is_some() => {
                        // A slower, older open also succeeded: that session is surplus.
                        let r = self.shared.req();
                        self.write(session, r, Request::Close);
                    }
                    Err(e) if self.first.is_some() => {
                        // The first session was refused: Client::connect fails with why.
                        self.conn = None;
                        if let Some(f) = self.first.take() {
                            let _ = f.send(Err(match e {
                                ErrorReply::Invalid(s) => Error::InvalidArgument(s),
                                ErrorReply::Limit(s) => Error::Limit(s),
                                e => Error::Rejected(e.to_string()),
                            }));
                        }
                    }
                    Ok(Reply::Opened { session, .. }) => {
                        self.session = session;
                        self.shared.session.store(session, Ordering::Release);
                        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                        let lease = Lease::new(self.lease_cfg.clone(), sent, self.seed);
                        self.shared.set_deadline(Some(lease.deadline()));
                        self.lease = Some(lease);
                        self.reopen_at = None;
                        self.set_state(SessionState::Connected);
                        let inc = self.incarnation.unwrap_or(0);
                        self.emit(Event::SessionConnected {
                            session,
                            incarnation: inc,
                        });
                        // Client::connect returns now: everything above is visible to it.
                        if let Some(f) = self.first.take() {
                            let _ = f.send(Ok(()));
                        }
                        // Observers and group watches carry over to the new session.
                        let names: Vec<String> = self.elections.keys().cloned().collect();
                        for election in names {
                            let r = self.shared.req();
                            self.call(r, Request::Observe { election }, None);
                        }
                        let names: Vec<String> = self.groups.keys().cloned().collect();
                        for group in names {
                            let r = self.shared.req();
                            self.call(r, Request::WatchGroup { group }, None);
                        }
                    }
                    _ if self.lease.is_none() && self.opening.is_empty() => {
                        self.reopen_at = Some(now + self.reopen_gap())
                    }
                    _ => {}
                }
                return;
            }
        }
        let Some(p) = self.pending.remove(&req) else {
            return;
        };
        let answer: Answer = match result {
            Ok(Reply::Granted { name, token }) => {
                let gen = self.shared.generation.load(Ordering::Acquire);
                let l = LockShared::new(name.clone(), token, gen);
                self.locks.insert(name.clone(), l.clone());
                self.emit(Event::LockAcquired {
                    name: name.clone(),
                    token,
                });
                let answer = Ok((
                    Reply::Granted {
                        name: name.clone(),
                        token,
                    },
                    Held::Lock(l),
                ));
                match p.reply {
                    Some(r) if r.send(answer).is_ok() => {}
                    _ => {
                        // Nobody waits for this grant any more: give it back.
                        self.locks.remove(&name);
                        let c = self.shared.req();
                        self.call(c, Request::Release { name, token }, None);
                    }
                }
                return;
            }
            Ok(Reply::Master(info)) => {
                self.master_reply(p.body, info, p.reply);
                return;
            }
            Ok(Reply::View(info)) => {
                self.view_reply(p.body, info, p.reply);
                return;
            }
            Ok(r) => Ok((r, Held::None)),
            Err(ErrorReply::UnknownSession) => {
                if let Some(r) = p.reply {
                    let _ = r.send(Err(Error::SessionExpired));
                }
                self.session_over(LostReason::SessionExpired, None);
                return;
            }
            Err(ErrorReply::Invalid(s)) => Err(Error::InvalidArgument(s)),
            Err(ErrorReply::Limit(s)) => Err(Error::Limit(s)),
            Err(ErrorReply::AlreadyHeld) => Err(Error::AlreadyHeld(match &p.body {
                Request::Acquire { name, .. } => name.clone(),
                _ => String::new(),
            })),
            Err(e) => Err(Error::Rejected(e.to_string())),
        };
        if let Some(r) = p.reply {
            let _ = r.send(answer);
        }
    }

    /// Starts closing: everything held is reported lost, what waits fails, and the session is
    /// closed on the server so that its locks go to waiters now, not at expiry. The close
    /// ends when the server's reply arrives (on whichever thread reads it), the connection
    /// breaks, or a second has passed (the timer thread); then `done` is told. Not waiting
    /// here matters: the thread running this may be the reader that would read the reply.
    fn close(&mut self, done: Sender<()>) {
        self.exited = true;
        self.set_state(SessionState::Closed);
        self.shared.set_deadline(None);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        for (_, l) in self.locks.drain().collect::<Vec<_>>() {
            if let Some(ev) = l.mark_lost(LostReason::ClientClosed) {
                self.emit(ev);
            }
        }
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(Error::Closed));
            }
        }
        let had_session = self.lease.take().is_some();
        self.reopen_at = None;
        if had_session && self.conn.is_some() {
            let req = self.shared.req();
            let s = self.session;
            if self.write(s, req, Request::Close) {
                self.closing = Some(Closing {
                    req,
                    done,
                    until: Instant::now() + Duration::from_secs(1),
                });
                return;
            }
        }
        self.closing = Some(Closing {
            req: 0,
            done,
            until: Instant::now(),
        });
        self.close_end();
    }

    /// Ends a close: lets go of the connection and of everything the driver holds for the
    /// handles (subscriptions end, handle records are freed), and tells whoever waits.
    fn close_end(&mut self) {
        self.conn = None;
        self.subs.clear();
        self.elections.clear();
        self.groups.clear();
        self.locks.clear();
        self.pending.clear();
        if let Some(c) = self.closing.take() {
            let _ = c.done.send(());
        }
    }
}

/// The timer thread: runs the lease at its deadlines and ends when the client is closed.
fn timer_loop(core: &Core) {
    loop {
        let mut d = core.driver.lock();
        if d.closing
            .as_ref()
            .is_some_and(|c| Instant::now() >= c.until)
        {
            d.close_end(); // the server did not answer the close in time
        }
        if d.exited && d.closing.is_none() {
            return;
        }
        d.tick();
        d.drain(&core.rx);
        if d.exited && d.closing.is_none() {
            return;
        }
        let wake = d.next_wakeup();
        d.planned = wake;
        if core.let_go(d) {
            core.poke();
        }
        core.alarm.sleep(wake);
    }
}
