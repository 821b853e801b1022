//! The client's session machine: everything the client decides, with no sockets, threads or
//! clock reads (SPEC 2.1). The runtime ([`super::driver`]) feeds it what happened, with the
//! time, and performs what it asks ([`Io`]): dial, send, drop a connection. Timers are its
//! [`Session::next_wakeup`].
//!
//! What lives here: the lease's actions (heartbeats, jeopardy, expiry, through
//! [`crate::lease::Lease`]), opening and reopening sessions, endpoint rotation and dialling
//! on retries, resending requests in flight with their ids after a reconnect, reading master
//! caches and views again after one, ending handles when the session ends (locks reported
//! lost before anything else), the incarnation check (`data_lost`), closing, and the one
//! mapping of the server's error replies to [`Error`]s. Handles share records with it
//! ([`LockShared`], [`ElectionShared`], [`GroupShared`], [`Shared`]) that it updates in
//! memory; answers and events go out on channels without waiting.
//!
//! Inputs take `now`, the runtime's reading of the monotonic clock; the session keeps the
//! latest one for the rules that need the time.

use super::election::ElectionShared;
use super::group::{view_events, GroupShared};
use super::pending::Completer;
use super::watched::{Versioned, Watched};
use super::ClientConfig;
use super::{Answer, Held, LockShared, SessionState, Shared};
use crate::error::{Error, Result};
use crate::events::{Event, LostReason, Sink};
use crate::lease::{Lease, LeaseAction, LeaseConfig, LeaseState};
use crate::proto::{
    ClientMsg, ErrorReply, Incarnation, MasterInfo, Notice, Reply, Request, ServerMsg, SessionId,
    ViewInfo,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Heartbeats travel with this bit set in their request id, so their replies go to the lease.
pub(crate) const HEARTBEAT_BIT: u64 = 1 << 63;
/// Opens remembered while in flight.
const MAX_OPENING: usize = 8;
/// How long a close waits for the server's reply.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// A broken connection is followed by a dial at once at most this often.
pub const QUICK_REDIAL_EVERY: Duration = Duration::from_secs(1);
/// A retry gives up a dial that has gone unanswered this long (or four smoothed round trips,
/// if longer) and dials again: a dial into a black-holed path waits out its whole step
/// (connect timeout, up to a heartbeat timeout), and the retries that fall meanwhile, the
/// close ones before the deadline above all, would otherwise be lost with it. Measured by
/// the retry benchmark (BENCHMARKS.md): without it, the inverse exponential schedule's last
/// retries did nothing through a black hole.
pub const STALE_DIAL: Duration = Duration::from_millis(50);
/// Most endpoints a session tries: those configured, and leaders learnt from redirects.
pub const MAX_ENDPOINTS: usize = 64;
/// The first pause before trying the next member when the one reached named no leader (an
/// election under way): short, because a crashed leader's successor is usually elected
/// within milliseconds (the members campaign as soon as its port refuses them).
pub const REDIRECT_PAUSE_FIRST: Duration = Duration::from_millis(5);
/// The longest such pause: each "no leader" answer in a row doubles the pause from
/// [`REDIRECT_PAUSE_FIRST`] up to this. An election after a timeout takes a few hundred
/// milliseconds; this finds its leader soon after, and keeps a group of clients from
/// spinning on the members meanwhile (about ten tries per client per second).
pub const REDIRECT_PAUSE: Duration = Duration::from_millis(50);

/// What the session asks of the runtime. Connections are named by the number of the dial
/// that made them.
#[derive(Debug)]
pub(crate) enum Io {
    /// Connect to the endpoints in turn from index `start`, each step (resolving, connecting,
    /// the handshake) bounded by `step`; report with [`Session::dialed`] under `attempt`,
    /// which then names the connection.
    Dial {
        attempt: u64,
        start: usize,
        step: Duration,
        /// The endpoints to try in turn from `start`: the configured ones, and leaders
        /// that members named which were not among them.
        endpoints: Vec<String>,
        /// Wait this long before the first step (after a member said no leader is known).
        after: Duration,
    },
    /// Write `msg` on connection `conn` without waiting; a failure is reported with
    /// [`Session::broken`].
    Send { conn: u64, msg: ClientMsg },
    /// Close connection `conn`; what it still delivers is ignored.
    Drop { conn: u64 },
}

/// What a dial found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DialInfo {
    /// The service's incarnation, from the handshake.
    pub(crate) incarnation: Incarnation,
    /// Index of the endpoint that answered.
    pub(crate) endpoint: usize,
}

struct Pending {
    body: Request,
    reply: Option<Completer>,
    /// Its entry in [`Session::deadlines`], if it has one.
    deadline: Option<Instant>,
}

/// A close waiting for the server's reply, or a first open the caller gave up on, waiting
/// for its reply so that the session it made is closed at once and does not linger on the
/// server for a TTL.
struct Closing {
    /// The close request's id, or the abandoned open's.
    req: u64,
    /// The request awaited is an abandoned first open, not a close.
    open: bool,
    /// Told when the close has ended.
    done: Vec<Completer>,
    /// When to stop waiting for the reply.
    until: Instant,
}

/// The first session being opened for `Client::connect`: where its outcome goes, and until
/// when it may take.
struct First {
    /// The connect call's request id (what cancelling it names).
    req: u64,
    reply: Completer,
    until: Instant,
    within: Duration,
}

/// The client's session machine. See the module documentation.
pub(crate) struct Session {
    cfg: ClientConfig,
    lease_cfg: LeaseConfig,
    shared: Arc<Shared>,
    /// The latest time an input came with.
    now: Instant,
    io: VecDeque<Io>,
    /// The current connection.
    conn: Option<u64>,
    /// The dial in progress, by attempt number (older outcomes are dropped), and when it
    /// was asked for.
    dialing: Option<u64>,
    dial_started: Instant,
    attempts: u64,
    endpoint_idx: usize,
    session: SessionId,
    lease: Option<Lease>,
    /// Opens in flight (request id, send time), newest last. A late reply to an older one is
    /// still a session: adopted when we have none, closed when we have one already.
    opening: Vec<(u64, Instant)>,
    /// When to try opening a session next, while there is none.
    reopen_at: Option<Instant>,
    /// The pause before the next dial (a member said no leader is known: an election is
    /// under way): from [`REDIRECT_PAUSE_FIRST`], doubling up to [`REDIRECT_PAUSE`].
    dial_pause: Duration,
    /// "No leader" answers in a row (see [`REDIRECT_PAUSE_FIRST`]).
    no_leader: u32,
    /// The endpoint the last redirect named, until a request is answered.
    redirected_to: Option<usize>,
    /// When a broken connection was last followed by a dial at once.
    quick_redial: Option<Instant>,
    incarnation: Option<Incarnation>,
    pending: BTreeMap<u64, Pending>,
    /// When calls give up (a lock's timeout; no answer from the service), by request id,
    /// with the error they then end with. An entry whose call was answered meanwhile is
    /// dropped when it comes due.
    deadlines: BTreeMap<(Instant, u64), Error>,
    locks: BTreeMap<String, Arc<LockShared>>,
    /// Campaigns and observations, per election.
    elections: BTreeMap<String, Vec<Arc<ElectionShared>>>,
    /// The newest epoch told to subscribers, per election.
    epochs: BTreeMap<String, u64>,
    /// Memberships and watches, per group.
    groups: BTreeMap<String, Vec<Arc<GroupShared>>>,
    /// The newest view told to subscribers, per group.
    views: BTreeMap<String, ViewInfo>,
    subs: Vec<Sink>,
    seed: u64,
    /// When the current connection last delivered a frame.
    last_heard: Instant,
    /// Smoothed round trip of acknowledged heartbeats and its variation (as TCP's RFC 6298
    /// estimate), to tell a slow connection from a silent one.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// While the first session is being opened: where its outcome goes.
    first: Option<First>,
    /// Closed: nothing more is done, and requests get [`Error::Closed`].
    exited: bool,
    /// A close in progress (see [`Session::close`]), or an abandoned first open.
    closing: Option<Closing>,
}

impl Session {
    /// A session machine with no connection yet. `seed` seeds the lease's retry jitter.
    pub(crate) fn new(
        cfg: ClientConfig,
        lease_cfg: LeaseConfig,
        shared: Arc<Shared>,
        seed: u64,
        first_sub: Option<Sink>,
        now: Instant,
    ) -> Session {
        Session {
            cfg,
            lease_cfg,
            shared,
            now,
            io: VecDeque::new(),
            conn: None,
            dialing: None,
            dial_started: now,
            attempts: 0,
            endpoint_idx: 0,
            session: 0,
            lease: None,
            opening: Vec::new(),
            reopen_at: None,
            dial_pause: Duration::ZERO,
            no_leader: 0,
            redirected_to: None,
            quick_redial: None,
            incarnation: None,
            pending: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            locks: BTreeMap::new(),
            elections: BTreeMap::new(),
            epochs: BTreeMap::new(),
            groups: BTreeMap::new(),
            views: BTreeMap::new(),
            subs: first_sub.into_iter().collect(),
            seed,
            last_heard: now,
            srtt: None,
            rttvar: Duration::ZERO,
            first: None,
            exited: false,
            closing: None,
        }
    }

    // ---- outputs -------------------------------------------------------------------------

    /// The next thing to do, in order.
    pub(crate) fn poll_io(&mut self) -> Option<Io> {
        self.io.pop_front()
    }

    /// When [`Session::tick`] next has something to do.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        if let Some(c) = &self.closing {
            return Some(c.until);
        }
        if self.exited {
            return None;
        }
        let first = self.first.as_ref().map(|f| f.until);
        let lease = match (&self.lease, self.reopen_at) {
            (Some(l), _) => l.next_wakeup(),
            (None, r) => r,
        };
        let call = self.deadlines.first_key_value().map(|(k, _)| k.0);
        [first, lease, call].into_iter().flatten().min()
    }

    /// Closed, and the close has ended: the runtime may stop.
    pub(crate) fn is_done(&self) -> bool {
        self.exited && self.closing.is_none()
    }

    // ---- inputs --------------------------------------------------------------------------

    /// Starts the first session (`Client::connect`, call `req`): dials (at once) and opens a
    /// session on the connection; the outcome goes to `reply`: `Ok` once the session is open,
    /// [`Error::ConnectionFailed`] when no endpoint answers or [`connect_within`] passes
    /// first, [`Error::Cancelled`] when the call is cancelled. A session opened for a caller
    /// that gave up is closed at once.
    pub(crate) fn begin(&mut self, now: Instant, req: u64, reply: Completer) {
        self.now = now;
        let within = connect_within(&self.cfg);
        self.first = Some(First {
            req,
            reply,
            until: now + within,
            within,
        });
        self.want_dial();
    }

    /// The first open failed (or its caller gave up): the caller is told `why`, and the
    /// session ends. An open still in flight on a connection is waited for (up to a TTL and
    /// a second) so that the session it makes, if any, is closed at once.
    fn first_failed(&mut self, why: Error) {
        let Some(f) = self.first.take() else {
            return;
        };
        let _ = f.reply.send(Err(why));
        self.exited = true;
        self.set_state(SessionState::Closed);
        match self.opening.last() {
            Some(&(req, _)) if self.conn.is_some() => {
                self.closing = Some(Closing {
                    req,
                    open: true,
                    done: Vec::new(),
                    until: self.now + self.lease_cfg.ttl + Duration::from_secs(1),
                });
            }
            _ => {
                self.closing = None;
                self.drop_conn();
            }
        }
    }

    /// A user request; `reply` gets exactly one answer (none for fire-and-forget). At
    /// `deadline` (a lock's timeout; how long a call waits for the service) a call still
    /// unanswered is withdrawn and answered with the deadline's error.
    pub(crate) fn call(
        &mut self,
        now: Instant,
        req: u64,
        body: Request,
        reply: Option<Completer>,
        deadline: Option<(Instant, Error)>,
    ) {
        self.now = now;
        if self.exited {
            if let Some(r) = reply {
                let _ = r.send(Err(Error::Closed));
            }
            return;
        }
        self.request(req, body, reply);
        if let (Some((d, why)), Some(p)) = (deadline, self.pending.get_mut(&req)) {
            p.deadline = Some(d);
            self.deadlines.insert((d, req), why);
        }
    }

    /// The user gave up call `req` (`why`: it timed out, or was cancelled).
    pub(crate) fn cancel(&mut self, now: Instant, req: u64, why: Error) {
        self.now = now;
        if self.first.as_ref().is_some_and(|f| f.req == req) {
            self.first_failed(why);
        } else if !self.exited {
            self.withdraw(req, why);
        }
    }

    /// A subscription to every event of the client.
    pub(crate) fn subscribe(&mut self, sink: Sink) {
        if !self.exited {
            self.subs.push(sink);
        }
    }

    /// An election or group handle was dropped: stop updating it.
    pub(crate) fn forget(&mut self, held: Held) {
        match held {
            Held::Election(e) => forget_in(&mut self.elections, &e),
            Held::Group(g) => forget_in(&mut self.groups, &g),
            Held::None | Held::Lock(_) => {}
        }
    }

    /// A frame read on connection `conn`.
    pub(crate) fn frame(&mut self, now: Instant, conn: u64, msg: ServerMsg) {
        self.now = now;
        if self.conn != Some(conn) {
            return; // an older connection's
        }
        if self.exited {
            let awaited = self.closing.as_ref().map(|c| (c.req, c.open));
            if let ServerMsg::Reply { req, result, .. } = msg {
                match (awaited, result) {
                    (Some((r, true)), Ok(Reply::Opened { session, .. })) if r == req => {
                        // An abandoned first open made a session after all: close it.
                        let close = self.shared.req();
                        if self.write(session, close, Request::Close) {
                            if let Some(c) = self.closing.as_mut() {
                                c.req = close;
                                c.open = false;
                                c.until = now + CLOSE_WAIT;
                            }
                        } else {
                            self.close_end();
                        }
                    }
                    (Some((r, _)), _) if r == req => self.close_end(),
                    _ => {}
                }
            }
            return;
        }
        self.last_heard = now;
        self.on_frame(msg);
    }

    /// Connection `conn` broke (read end, write failure).
    pub(crate) fn broken(&mut self, now: Instant, conn: u64) {
        self.now = now;
        if self.conn != Some(conn) {
            return;
        }
        if self.exited {
            self.close_end();
            return;
        }
        self.disconnected();
        if self.first.is_some() {
            self.first_failed(Error::ConnectionFailed(
                "connection closed while opening the session".into(),
            ));
            return;
        }
        // The connection broke (its server died, or a member of a group went away): look
        // for another at once, without waiting for the lease's next retry; that is what
        // makes a failover take about an election.
        self.quick_dial();
    }

    /// Dials now rather than at the lease's next retry, at most once per
    /// [`QUICK_REDIAL_EVERY`] (against a server that closes every connection, or a path
    /// that refuses, the retry schedule rules).
    fn quick_dial(&mut self) {
        let now = self.now;
        let quick = self.quick_redial.map_or(true, |t| {
            now.saturating_duration_since(t) >= QUICK_REDIAL_EVERY
        });
        if self.lease.is_some() && quick {
            self.quick_redial = Some(now);
            self.want_dial();
        }
    }

    /// The outcome of dial `attempt`: on success the connection is named `attempt`.
    pub(crate) fn dialed(
        &mut self,
        now: Instant,
        attempt: u64,
        result: std::result::Result<DialInfo, String>,
    ) {
        self.now = now;
        if self.dialing != Some(attempt) {
            if result.is_ok() {
                self.io.push_back(Io::Drop { conn: attempt }); // an older attempt's
            }
            return;
        }
        self.dialing = None;
        if self.exited {
            if result.is_ok() {
                self.io.push_back(Io::Drop { conn: attempt });
            }
            return;
        }
        match result {
            Ok(d) => {
                self.drop_conn();
                self.conn = Some(attempt);
                self.endpoint_idx = d.endpoint;
                self.last_heard = now;
                // A changed incarnation ends the session (data_lost); the new connection
                // then serves the next session.
                self.check_incarnation(d.incarnation);
                self.connected();
            }
            Err(why) => {
                if self.first.is_some() {
                    self.first_failed(Error::ConnectionFailed(why));
                    return;
                }
                // Next time, start from the endpoint after the one tried first.
                self.endpoint_idx = (self.endpoint_idx + 1) % self.cfg.endpoints.len().max(1);
                self.dial_failed();
            }
        }
    }

    /// Runs the lease (and session reopening, and a close's time limit) up to `now`. Never
    /// waits on the network: what needs a connection asks for a dial and goes on when its
    /// outcome comes.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.now = now;
        if self.closing.as_ref().is_some_and(|c| now >= c.until) {
            self.close_end(); // the server did not answer the close in time
        }
        if let Some(f) = self.first.as_ref().filter(|f| now >= f.until) {
            let why = format!("no session opened within {:?}", f.within);
            self.first_failed(Error::ConnectionFailed(why));
        }
        if self.exited {
            return;
        }
        while self
            .deadlines
            .first_key_value()
            .is_some_and(|(k, _)| k.0 <= now)
        {
            if let Some(((_, req), why)) = self.deadlines.pop_first() {
                self.withdraw(req, why);
            }
        }
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
                        let silent =
                            now.saturating_duration_since(self.last_heard) > self.silent_after();
                        if retry && silent && self.conn.is_some() {
                            self.drop_conn();
                            self.endpoint_idx = (self.endpoint_idx + 1) % self.cfg.endpoints.len();
                        }
                        if self.conn.is_none() {
                            // This retry is a connection attempt; once connected, a fresh
                            // heartbeat goes out at once. A dial still unanswered after
                            // [`STALE_DIAL`] is given up for a new one, from the next
                            // endpoint (as after a failed dial).
                            if retry && self.dialing.is_some() {
                                let stale = STALE_DIAL.max(4 * self.srtt.unwrap_or_default());
                                if now.saturating_duration_since(self.dial_started) >= stale {
                                    self.dialing = None;
                                    self.endpoint_idx =
                                        (self.endpoint_idx + 1) % self.cfg.endpoints.len().max(1);
                                }
                            }
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

    /// Closes the client (see [`Session::close_session`]); `done` is told once the close has
    /// ended (the server answered, the connection broke, or [`CLOSE_WAIT`] passed), or, when
    /// a close or an abandoned first open is under way, once that has. A connect still
    /// opening the first session ends with [`Error::Closed`].
    pub(crate) fn close(&mut self, now: Instant, done: Completer) {
        self.now = now;
        if self.first.is_some() {
            self.first_failed(Error::Closed);
        }
        match self.closing.as_mut() {
            // A close (or an abandoned open) under way: told when it ends.
            Some(c) => c.done.push(done),
            None if self.exited => {
                let _ = done.send(Ok((Reply::Done, Held::None)));
            }
            None => self.close_session(Some(done)),
        }
    }

    // ---- rules ---------------------------------------------------------------------------

    fn emit(&mut self, ev: Event) {
        self.subs.retain(|s| s.send(ev.clone()));
    }

    fn set_state(&self, s: SessionState) {
        *self.shared.state.lock() = s;
    }

    /// Asks for a dial unless one runs.
    fn want_dial(&mut self) {
        if self.dialing.is_some() || self.exited {
            return;
        }
        self.attempts += 1;
        // Each step has a short bound of its own: within a lease, no longer than a heartbeat
        // may go unanswered, so a stalled endpoint leaves time for the next.
        let step = match &self.lease {
            Some(_) => self
                .cfg
                .connect_timeout
                .min(self.lease_cfg.heartbeat_timeout),
            None => self.cfg.connect_timeout,
        };
        self.dialing = Some(self.attempts);
        self.dial_started = self.now;
        self.io.push_back(Io::Dial {
            attempt: self.attempts,
            start: self.endpoint_idx,
            step,
            endpoints: self.cfg.endpoints.clone(),
            after: std::mem::take(&mut self.dial_pause),
        });
    }

    fn dial_failed(&mut self) {
        let now = self.now;
        match self.lease.as_mut() {
            Some(l) => l.on_failure(now),
            None => {
                if self.cfg.reopen && self.reopen_at.is_none() && !self.exited {
                    self.reopen_at = Some(now + self.reopen_gap());
                }
            }
        }
    }

    /// Lets go of the current connection.
    fn drop_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            self.io.push_back(Io::Drop { conn: c });
        }
    }

    /// A new connection is up: carry the session over to it (a fresh heartbeat, requests
    /// in flight resent with their ids, master caches and views read again), or open a
    /// session if one is wanted.
    fn connected(&mut self) {
        let now = self.now;
        if self.lease.is_some() {
            let s = self.session;
            // Notices sent while we were away are lost: read the master caches again.
            let names: Vec<String> = self.elections.keys().cloned().collect();
            for election in names {
                let r = self.shared.req();
                let body = Request::Master { election };
                self.pending.insert(
                    r,
                    Pending {
                        body,
                        reply: None,
                        deadline: None,
                    },
                );
            }
            let names: Vec<String> = self.groups.keys().cloned().collect();
            for group in names {
                let r = self.shared.req();
                let body = Request::View { group };
                self.pending.insert(
                    r,
                    Pending {
                        body,
                        reply: None,
                        deadline: None,
                    },
                );
            }
            // The heartbeat first: it is what keeps the lease, and its ack is counted (a
            // heartbeat asked for before the connection broke would not be).
            let hb = self.lease.as_mut().and_then(|l| l.send_now(now));
            if let Some(LeaseAction::SendHeartbeat { id, .. }) = hb {
                self.write(s, HEARTBEAT_BIT | id, Request::Heartbeat);
            }
            let reqs: Vec<(u64, Request)> = self
                .pending
                .iter()
                .map(|(k, p)| (*k, p.body.clone()))
                .collect();
            for (req, body) in reqs {
                let session = if sessionless(&body) { 0 } else { s };
                self.write(session, req, body);
            }
        } else if self.first.is_some() || (self.cfg.reopen && !self.exited) {
            self.send_open();
            if self.first.is_none() {
                self.reopen_at =
                    Some(now + self.reopen_gap().max(self.lease_cfg.heartbeat_timeout));
            }
        }
    }

    /// Asks for `req` to be sent on the current connection; false without one.
    fn write(&mut self, session: SessionId, req: u64, body: Request) -> bool {
        let Some(conn) = self.conn else {
            return false;
        };
        self.io.push_back(Io::Send {
            conn,
            msg: ClientMsg::Request { session, req, body },
        });
        true
    }

    /// The member this connection reaches does not lead its group: go to the leader it
    /// named (added to the endpoints if it was not one); otherwise (no leader known: an
    /// election under way; or the named leader could not be reached last time) to the next
    /// endpoint after a pause of [`REDIRECT_PAUSE_FIRST`] doubling up to [`REDIRECT_PAUSE`]
    /// with each such answer in a row. Requests in flight are resent
    /// there with their ids (the server's reply window makes that safe); the lease counts
    /// the lost heartbeat as a failure, so a failover longer than it can bear shows as
    /// jeopardy, never as silence.
    fn redirect(&mut self, leader: Option<String>) {
        self.disconnected();
        if let Some(l) = &leader {
            // A leader the user did not list (they gave one member's address, or another
            // spelling of it): learnt, up to a bound, so that one address is enough.
            let known = self.cfg.endpoints.iter().any(|e| e == l);
            if !known && self.cfg.endpoints.len() < MAX_ENDPOINTS {
                self.cfg.endpoints.push(l.clone());
            }
        }
        let n = self.cfg.endpoints.len().max(1);
        let named = leader.and_then(|l| self.cfg.endpoints.iter().position(|e| *e == l));
        // Sent to the same leader again from another member: the last dial could not reach
        // it (a crashed leader that its followers still name until they elect another), so
        // this is "no leader" too, with its pause, not a dial loop.
        let unreachable =
            named.is_some() && named == self.redirected_to && named != Some(self.endpoint_idx);
        self.redirected_to = named;
        match named {
            Some(i) if !unreachable => {
                self.endpoint_idx = i;
                self.want_dial();
            }
            _ => {
                self.endpoint_idx = (self.endpoint_idx + 1) % n;
                let doubled = (REDIRECT_PAUSE_FIRST * 2u32.saturating_pow(self.no_leader))
                    .min(REDIRECT_PAUSE);
                self.no_leader = self.no_leader.saturating_add(1).min(16);
                self.dial_pause = doubled;
                self.want_dial();
            }
        }
    }

    fn disconnected(&mut self) {
        self.drop_conn();
        let now = self.now;
        if let Some(l) = self.lease.as_mut() {
            l.on_disconnect(now);
        }
    }

    fn send_open(&mut self) {
        let req = self.shared.req();
        let ttl_ms = self.lease_cfg.ttl.as_millis() as u64;
        self.opening.push((req, self.now));
        if self.opening.len() > MAX_OPENING {
            self.opening.remove(0);
        }
        self.write(0, req, Request::Open { ttl_ms });
    }

    /// How long a connection may say nothing before a retry gives it up for a new one: a
    /// heartbeat timeout, or more on a connection whose round trips are long (its acks are on
    /// their way, and a new connection would cost a round trip more).
    fn silent_after(&self) -> Duration {
        let t = self.lease_cfg.heartbeat_timeout;
        match self.srtt {
            Some(s) => t.max(s + 4 * self.rttvar),
            None => t,
        }
    }

    /// Takes a round-trip sample of an acknowledged heartbeat.
    fn rtt_sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = if s > r { s - r } else { r - s };
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(s * 7 / 8 + r / 8);
            }
        }
    }

    fn reopen_gap(&self) -> Duration {
        (self.lease_cfg.ttl / 10).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// Takes the service's incarnation from a handshake; a changed one means the state, and
    /// our session, are gone (`data_lost`).
    fn check_incarnation(&mut self, inc: Incarnation) {
        let old = self.incarnation.replace(inc);
        *self.shared.incarnation.lock() = inc;
        if let Some(old) = old.filter(|o| *o != inc) {
            self.session_over(LostReason::DataLost, Some((old, inc)));
        }
    }

    /// The session is over: report every lock lost first, then the session event, fail what
    /// was waiting, and plan a new session.
    fn session_over(&mut self, reason: LostReason, data_lost: Option<(Incarnation, Incarnation)>) {
        self.shared.set_deadline(None);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        for (_, l) in std::mem::take(&mut self.locks) {
            if let Some(ev) = l.mark_lost(reason) {
                self.emit(ev);
            }
        }
        // Candidacies and memberships end with the session (the service removed them);
        // observers and watches stay and carry over to the next one.
        end_owned(&mut self.elections);
        end_owned(&mut self.groups);
        if data_lost.is_some() {
            // A new incarnation numbers its epochs and views anew.
            self.views.clear();
            self.epochs.clear();
            self.elections.values().flatten().for_each(|e| e.reset());
            self.groups.values().flatten().for_each(|g| g.reset());
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
        self.deadlines.clear();
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
            self.reopen_at = Some(self.now);
        }
    }

    fn request(&mut self, req: u64, body: Request, reply: Option<Completer>) {
        if self.lease.is_none() && !sessionless(&body) {
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
        let session = if sessionless(&body) { 0 } else { self.session };
        self.pending.insert(
            req,
            Pending {
                body: body.clone(),
                reply,
                deadline: None,
            },
        );
        if self.conn.is_some() {
            self.write(session, req, body);
        } else {
            // Someone waits for this: dial now rather than at the next retry, which the
            // inverse exponential schedule may place seconds away (the retry benchmark
            // measured a median 3.6 s to `recovered` after a 0.5 s outage).
            self.quick_dial();
        }
    }

    /// Removes call `req` from those in flight, with its deadline.
    fn take_pending(&mut self, req: u64) -> Option<Pending> {
        let p = self.pending.remove(&req)?;
        if let Some(d) = p.deadline {
            self.deadlines.remove(&(d, req));
        }
        Some(p)
    }

    fn withdraw(&mut self, req: u64, why: Error) {
        if let Some(p) = self.take_pending(req) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(why));
            }
            // Tell the server; it removes the waiter, or gives back a grant that raced us.
            let c = self.shared.req();
            self.request(c, Request::Cancel { target: req }, None);
        }
    }

    fn on_frame(&mut self, msg: ServerMsg) {
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
                g.update(info);
            }
        }
        for ev in events {
            self.emit(ev);
        }
    }

    /// The reply to a join, watch or view read.
    fn view_reply(&mut self, body: Request, info: ViewInfo, reply: Option<Completer>) {
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
                self.request(c, Request::Leave { group, id }, None);
            }
        }
    }

    /// The reply to a campaign, observation, election request or master read.
    fn master_reply(&mut self, body: Request, info: MasterInfo, reply: Option<Completer>) {
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
                self.request(c, Request::Resign { election, id }, None);
            }
        }
    }

    fn on_reply(&mut self, req: u64, result: Result<Reply, ErrorReply>) {
        let now = self.now;
        if let Err(ErrorReply::NotLeader { leader }) = &result {
            // Nothing was done; whatever waits on this connection is resent on the next.
            self.opening.retain(|(r, _)| *r != req);
            self.redirect(leader.clone());
            return;
        }
        self.no_leader = 0;
        self.redirected_to = None;
        if req & HEARTBEAT_BIT != 0 {
            match result {
                Ok(_) => {
                    let mut sample = None;
                    if let Some(l) = self.lease.as_mut() {
                        if let Some(sent) = l.on_ack(req & !HEARTBEAT_BIT, now) {
                            sample = Some(now.saturating_duration_since(sent));
                        }
                        // Published now, not at the timer's next turn: is_held() reads it.
                        if l.state() != LeaseState::Expired {
                            self.shared.set_deadline(Some(l.deadline()));
                        }
                    }
                    if let Some(r) = sample {
                        self.rtt_sample(r);
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
            {
                match result {
                    Ok(Reply::Opened { session, .. }) if self.lease.is_some() => {
                        // A slower, older open also succeeded: that session is surplus.
                        let r = self.shared.req();
                        self.write(session, r, Request::Close);
                    }
                    Err(e) if self.first.is_some() => {
                        // The first session was refused: Client::connect fails with why.
                        self.drop_conn();
                        self.first_failed(error_of(e, &Request::Open { ttl_ms: 0 }));
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
                        // Client::connect returns now: everything above is visible to it. A
                        // caller that gave up meanwhile gets nothing: the session is closed.
                        if let Some(f) = self.first.take() {
                            if f.reply.send(Ok((Reply::Done, Held::None))).is_err() {
                                self.close_session(None);
                                return;
                            }
                        }
                        // Observers and group watches carry over to the new session.
                        let names: Vec<String> = self.elections.keys().cloned().collect();
                        for election in names {
                            let r = self.shared.req();
                            self.request(r, Request::Observe { election }, None);
                        }
                        let names: Vec<String> = self.groups.keys().cloned().collect();
                        for group in names {
                            let r = self.shared.req();
                            self.request(r, Request::WatchGroup { group }, None);
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
        let Some(p) = self.take_pending(req) else {
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
                let taken = match p.reply {
                    Some(r) => r.send(answer).is_ok(),
                    None => false,
                };
                match taken {
                    true => {}
                    false => {
                        // Nobody waits for this grant any more: give it back.
                        self.locks.remove(&name);
                        let c = self.shared.req();
                        self.request(c, Request::Release { name, token }, None);
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
            Err(e) => Err(error_of(e, &p.body)),
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
    fn close_session(&mut self, done: Option<Completer>) {
        let done: Vec<Completer> = done.into_iter().collect();
        self.exited = true;
        self.set_state(SessionState::Closed);
        self.shared.set_deadline(None);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        for (_, l) in std::mem::take(&mut self.locks) {
            if let Some(ev) = l.mark_lost(LostReason::ClientClosed) {
                self.emit(ev);
            }
        }
        self.deadlines.clear();
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
                    open: false,
                    done,
                    until: self.now + CLOSE_WAIT,
                });
                return;
            }
        }
        self.closing = Some(Closing {
            req: 0,
            open: false,
            done,
            until: self.now,
        });
        self.close_end();
    }

    /// Ends a close: lets go of the connection and of everything the driver holds for the
    /// handles (subscriptions end, handle records are freed), and tells whoever waits.
    fn close_end(&mut self) {
        self.drop_conn();
        self.subs.clear();
        self.elections.clear();
        self.groups.clear();
        self.locks.clear();
        self.pending.clear();
        self.deadlines.clear();
        if let Some(c) = self.closing.take() {
            for d in c.done {
                let _ = d.send(Ok((Reply::Done, Held::None)));
            }
        }
    }
}

/// How long a connect may take to open the first session: a connect timeout per endpoint,
/// and one more (at least a second) for the open itself.
pub(crate) fn connect_within(cfg: &ClientConfig) -> Duration {
    let n = u32::try_from(cfg.endpoints.len().max(1)).unwrap_or(u32::MAX);
    cfg.connect_timeout.saturating_mul(n) + cfg.connect_timeout.max(Duration::from_secs(1))
}

/// Removes `w` from the handles of its name.
fn forget_in<V: Versioned>(map: &mut BTreeMap<String, Vec<Arc<Watched<V>>>>, w: &Arc<Watched<V>>) {
    if let Some(v) = map.get_mut(&w.name) {
        v.retain(|x| !Arc::ptr_eq(x, w));
        if v.is_empty() {
            map.remove(&w.name);
        }
    }
}

/// At the end of a session: ends and drops the handles with an id of their own (candidacies,
/// memberships), keeps the others (observers, watches).
fn end_owned<V: Versioned>(map: &mut BTreeMap<String, Vec<Arc<Watched<V>>>>) {
    for v in map.values_mut() {
        v.retain(|w| {
            if w.id.is_some() {
                w.end();
            }
            w.id.is_none()
        });
    }
    map.retain(|_, v| !v.is_empty());
}

fn sessionless(body: &Request) -> bool {
    matches!(
        body,
        Request::Status { .. } | Request::Revoke { .. } | Request::ChangeMembers { .. }
    )
}

/// The one mapping of the server's error replies to the client's errors, for request
/// `body`. (`UnknownSession` ends the session before it gets here.)
fn error_of(e: ErrorReply, body: &Request) -> Error {
    match e {
        ErrorReply::Invalid(s) => Error::InvalidArgument(s),
        ErrorReply::Limit(s) => Error::Limit(s),
        ErrorReply::AlreadyHeld => Error::AlreadyHeld(match body {
            Request::Acquire { name, .. } => name.clone(),
            _ => String::new(),
        }),
        ErrorReply::UnknownSession => Error::SessionExpired,
        e @ (ErrorReply::NotHolder | ErrorReply::Stale) => Error::Rejected(e.to_string()),
        e @ ErrorReply::NotLeader { .. } => Error::ConnectionFailed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::pending::slot;
    use crate::clock::{Clock, ManualClock};
    use crossbeam_channel::Receiver;

    const INC: Incarnation = 7;
    const SID: SessionId = 42;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A session driven by hand: a manual clock, the I/O it asks for, the events it emits.
    struct T {
        s: Session,
        clock: ManualClock,
        events: Receiver<Event>,
        shared: Arc<Shared>,
    }

    /// A request the session asked to send: (connection, session, request id, body).
    type Sent = (u64, SessionId, u64, Request);

    impl T {
        fn new(ttl_ms: u64, endpoints: usize) -> T {
            let clock = ManualClock::new();
            let eps: Vec<String> = (0..endpoints).map(|i| format!("10.0.0.{i}:7411")).collect();
            let cfg = ClientConfig::new(eps).session_ttl(ms(ttl_ms));
            let lease_cfg = cfg.lease_config();
            let shared = Arc::new(Shared::new(clock.now()));
            let (sink, events) = Sink::channel();
            let s = Session::new(cfg, lease_cfg, shared.clone(), 1, Some(sink), clock.now());
            T {
                s,
                clock,
                events,
                shared,
            }
        }

        fn now(&self) -> Instant {
            self.clock.now()
        }

        /// Moves time to the session's next wake-up and runs it; returns the new time.
        fn wake(&mut self) -> Instant {
            let t = self.s.next_wakeup().expect("a wake-up");
            self.clock.set(t - self.clock.start());
            self.s.tick(self.now());
            self.now()
        }

        fn io(&mut self) -> Vec<Io> {
            std::iter::from_fn(|| self.s.poll_io()).collect()
        }

        fn sent(io: &[Io]) -> Vec<Sent> {
            io.iter()
                .filter_map(|i| match i {
                    Io::Send {
                        conn,
                        msg: ClientMsg::Request { session, req, body },
                    } => Some((*conn, *session, *req, body.clone())),
                    _ => None,
                })
                .collect()
        }

        fn dials(io: &[Io]) -> Vec<(u64, usize)> {
            io.iter()
                .filter_map(|i| match i {
                    Io::Dial { attempt, start, .. } => Some((*attempt, *start)),
                    _ => None,
                })
                .collect()
        }

        fn reply(&mut self, conn: u64, session: SessionId, req: u64, r: Result<Reply, ErrorReply>) {
            let now = self.now();
            let msg = ServerMsg::Reply {
                session,
                req,
                result: r,
            };
            self.s.frame(now, conn, msg);
        }

        fn events(&self) -> Vec<Event> {
            self.events.try_iter().collect()
        }

        /// Opens the first session on endpoint 0: (connection, its open request id).
        fn open(&mut self) -> u64 {
            let (tx, rx) = slot();
            let req = self.shared.req();
            self.s.begin(self.now(), req, tx);
            let io = self.io();
            let [(attempt, 0)] = T::dials(&io)[..] else {
                panic!("{io:?}")
            };
            let info = DialInfo {
                incarnation: INC,
                endpoint: 0,
            };
            self.s.dialed(self.now(), attempt, Ok(info));
            let sent = T::sent(&self.io());
            let [(conn, 0, req, Request::Open { ttl_ms })] = sent[..] else {
                panic!("{sent:?}")
            };
            self.reply(
                conn,
                0,
                req,
                Ok(Reply::Opened {
                    session: SID,
                    ttl_ms,
                }),
            );
            assert!(matches!(rx.try_recv(), Some(Ok(_))));
            assert_eq!(
                self.events(),
                vec![Event::SessionConnected {
                    session: SID,
                    incarnation: INC
                }]
            );
            conn
        }

        /// Takes lock `name` (granted with `token`): the handle's record.
        fn lock(&mut self, conn: u64, name: &str, token: u64) -> Arc<LockShared> {
            let (tx, rx) = crate::client::pending::slot();
            let req = self.shared.req();
            let body = Request::Acquire {
                name: name.into(),
                wait: true,
            };
            self.s.call(self.now(), req, body, Some(tx), None);
            assert_eq!(T::sent(&self.io()).len(), 1);
            let granted = Reply::Granted {
                name: name.into(),
                token,
            };
            self.reply(conn, SID, req, Ok(granted));
            let Some(Ok((_, Held::Lock(l)))) = rx.try_recv() else {
                panic!("no grant")
            };
            self.events();
            l
        }
    }

    fn lost(l: &LockShared) -> Option<LostReason> {
        l.inner.lock().lost
    }

    #[test]
    fn heartbeats_every_third_of_the_ttl_extend_the_deadline() {
        let mut t = T::new(3000, 1);
        let conn = t.open();
        let opened_at = t.now();
        let d0 = t.shared.deadline().unwrap();
        assert!(d0 >= opened_at + ms(2919) && d0 <= opened_at + ms(2920));
        let at = t.wake();
        assert_eq!(at, opened_at + ms(1000));
        let sent = T::sent(&t.io());
        let [(c, SID, req, Request::Heartbeat)] = sent[..] else {
            panic!("{sent:?}")
        };
        assert_eq!(c, conn);
        assert!(req & HEARTBEAT_BIT != 0);
        t.clock.advance(ms(2));
        t.reply(conn, SID, req, Ok(Reply::Alive));
        let d1 = t.shared.deadline().unwrap();
        assert!(
            d1 > d0 && d1 <= at + ms(2920),
            "from the heartbeat's send time"
        );
    }

    #[test]
    fn a_stalled_endpoint_cannot_delay_the_expiry_and_locks_are_lost_first() {
        // The scenario of issue 11: the link freezes; the retries dial an endpoint that
        // accepts and never answers. The session expires at its deadline all the same.
        let mut t = T::new(1000, 2);
        let conn = t.open();
        let l = t.lock(conn, "jobs/a", 5);
        t.s.tick(t.now());
        let deadline = t.shared.deadline().unwrap();
        let mut dials = vec![];
        let mut dropped = vec![];
        let mut heartbeats = 0;
        loop {
            let now = t.wake();
            let io = t.io();
            heartbeats += T::sent(&io).len();
            dials.extend(T::dials(&io));
            dropped.extend(io.iter().filter_map(|i| match i {
                Io::Drop { conn } => Some(*conn),
                _ => None,
            }));
            let ev = t.events();
            if ev.iter().any(|e| matches!(e, Event::SessionExpired)) {
                // At the deadline to within the clock's rounding, never later.
                assert!(now <= deadline + ms(1) && now + ms(1) >= deadline);
                let lost_at = ev
                    .iter()
                    .position(|e| matches!(e, Event::LockLost { .. }))
                    .unwrap();
                let expired_at = ev
                    .iter()
                    .position(|e| matches!(e, Event::SessionExpired))
                    .unwrap();
                assert!(lost_at < expired_at, "{ev:?}");
                break;
            }
            assert!(now < deadline, "no expiry by the deadline");
        }
        assert_eq!(lost(&l), Some(LostReason::SessionExpired));
        assert_eq!(t.shared.deadline(), None, "is_held() is false");
        assert!(
            heartbeats >= 1,
            "the first heartbeat went on the frozen link"
        );
        // The silent connection was given up for the next endpoint; each dial left
        // unanswered was given up by a later retry for the endpoint after.
        assert_eq!(dropped, vec![conn]);
        assert!(!dials.is_empty());
        for (i, d) in dials.iter().enumerate() {
            assert_eq!(d.1, (1 + i) % 2, "the next endpoint each time: {dials:?}");
        }
    }

    #[test]
    fn a_call_s_deadline_withdraws_it_with_timeout_and_a_late_grant_is_given_back() {
        let mut t = T::new(3000, 1);
        let conn = t.open();
        let (tx, rx) = crate::client::pending::slot();
        let req = t.shared.req();
        let body = Request::Acquire {
            name: "q".into(),
            wait: true,
        };
        let deadline = t.now() + ms(500);
        t.s.call(
            t.now(),
            req,
            body,
            Some(tx),
            Some((deadline, Error::Timeout)),
        );
        t.io();
        // The timer is asked for the deadline, before the next heartbeat (TTL/3 = 1 s).
        assert_eq!(t.s.next_wakeup(), Some(deadline));
        t.clock.advance(ms(499));
        t.s.tick(t.now());
        assert!(rx.try_recv().is_none() && T::sent(&t.io()).is_empty());
        t.clock.advance(ms(1));
        t.s.tick(t.now());
        assert!(matches!(rx.try_recv(), Some(Err(Error::Timeout))));
        let sent = T::sent(&t.io());
        assert!(
            matches!(sent[..], [(_, SID, _, Request::Cancel { target })] if target == req),
            "{sent:?}"
        );
        // A grant that crossed the cancel is no one's: the session has forgotten the call,
        // and the server's answer to the cancel gives the lock back.
        let granted = Reply::Granted {
            name: "q".into(),
            token: 9,
        };
        t.reply(conn, SID, req, Ok(granted));
        assert!(t.s.locks.is_empty());
    }

    #[test]
    fn a_grant_for_a_caller_that_gave_up_is_released_at_once() {
        let mut t = T::new(3000, 1);
        let conn = t.open();
        let (tx, rx) = crate::client::pending::slot();
        let req = t.shared.req();
        let body = Request::Acquire {
            name: "q".into(),
            wait: true,
        };
        t.s.call(t.now(), req, body, Some(tx), None);
        t.io();
        // The caller gives up (a `Pending` dropped) just before the grant comes.
        assert!(rx.abandon().is_none());
        let granted = Reply::Granted {
            name: "q".into(),
            token: 9,
        };
        t.reply(conn, SID, req, Ok(granted));
        assert!(t.s.locks.is_empty());
        let sent = T::sent(&t.io());
        assert!(
            matches!(&sent[..], [(_, SID, _, Request::Release { name, token: 9 })] if name == "q"),
            "{sent:?}"
        );
    }

    #[test]
    fn a_reconnect_in_jeopardy_sends_a_fresh_heartbeat_then_resends_what_was_in_flight() {
        let mut t = T::new(3000, 1);
        let conn = t.open();
        // A waiting acquire in flight when the connection breaks.
        let (tx, _rx) = crate::client::pending::slot();
        let req = t.shared.req();
        let body = Request::Acquire {
            name: "q".into(),
            wait: true,
        };
        t.s.call(t.now(), req, body.clone(), Some(tx), None);
        t.io();
        t.clock.advance(ms(100));
        t.s.broken(t.now(), conn);
        t.s.tick(t.now());
        assert!(matches!(t.events()[..], [Event::SessionJeopardy { .. }]));
        // The broken connection is let go, and another looked for at once.
        let io = t.io();
        assert!(matches!(io[0], Io::Drop { conn: c } if c == conn));
        let dials = T::dials(&io);
        let [(attempt, 0)] = dials[..] else {
            panic!("{dials:?}")
        };
        let info = DialInfo {
            incarnation: INC,
            endpoint: 0,
        };
        t.s.dialed(t.now(), attempt, Ok(info));
        let sent = T::sent(&t.io());
        let (c0, s0, hb, ref b0) = sent[0];
        assert_eq!((c0, s0, b0), (attempt, SID, &Request::Heartbeat));
        assert!(hb & HEARTBEAT_BIT != 0);
        assert_eq!(sent[1], (attempt, SID, req, body), "resent with its id");
        // The fresh heartbeat's ack recovers the session.
        t.clock.advance(ms(1));
        t.reply(attempt, SID, hb, Ok(Reply::Alive));
        t.s.tick(t.now());
        assert_eq!(t.events(), vec![Event::SessionRecovered]);
        assert_eq!(*t.shared.state.lock(), SessionState::Connected);
        // Broken again within a second: the retry schedule decides when to dial.
        t.s.broken(t.now(), attempt);
        let io = t.io();
        assert!(T::dials(&io).is_empty(), "{io:?}");
    }

    #[test]
    fn a_changed_incarnation_loses_every_lock_with_data_lost_and_opens_anew() {
        let mut t = T::new(3000, 1);
        let conn = t.open();
        let l = t.lock(conn, "x", 3);
        t.s.broken(t.now(), conn);
        t.s.tick(t.now());
        t.wake();
        let dials = T::dials(&t.io());
        let info = DialInfo {
            incarnation: INC + 1,
            endpoint: 0,
        };
        // The retry gave up the first dial for a second one.
        t.s.dialed(t.now(), dials.last().unwrap().0, Ok(info));
        let ev = t.events();
        let tail: Vec<_> = ev
            .iter()
            .filter(|e| !matches!(e, Event::SessionJeopardy { .. }))
            .cloned()
            .collect();
        assert_eq!(
            tail,
            vec![
                Event::LockLost {
                    name: "x".into(),
                    token: 3,
                    reason: LostReason::DataLost
                },
                Event::DataLost {
                    old: INC,
                    new: INC + 1
                }
            ]
        );
        assert_eq!(lost(&l), Some(LostReason::DataLost));
        let sent = T::sent(&t.io());
        assert!(
            matches!(sent[..], [(_, 0, _, Request::Open { .. })]),
            "{sent:?}"
        );
    }

    #[test]
    fn an_unknown_session_ends_the_session_and_a_new_one_is_opened() {
        let mut t = T::new(3000, 1);
        let conn = t.open();
        let l = t.lock(conn, "y", 4);
        t.wake();
        let sent = T::sent(&t.io());
        let (_, _, hb, _) = sent[0];
        t.reply(conn, SID, hb, Err(ErrorReply::UnknownSession));
        assert_eq!(
            t.events(),
            vec![
                Event::LockLost {
                    name: "y".into(),
                    token: 4,
                    reason: LostReason::SessionExpired
                },
                Event::SessionExpired
            ]
        );
        assert_eq!(lost(&l), Some(LostReason::SessionExpired));
        t.wake();
        let sent = T::sent(&t.io());
        assert!(matches!(sent[..], [(c, 0, _, Request::Open { .. })] if c == conn));
    }

    #[test]
    fn a_first_open_answered_after_connect_gave_up_is_closed() {
        // Gave up three ways: the connect's time passed, it was cancelled, or its caller
        // went away (the answer has nowhere to go).
        for how in ["timed out", "cancelled", "caller gone"] {
            let mut t = T::new(30_000, 1);
            let (tx, rx) = slot();
            let req = t.shared.req();
            t.s.begin(t.now(), req, tx);
            let attempt = T::dials(&t.io())[0].0;
            let info = DialInfo {
                incarnation: INC,
                endpoint: 0,
            };
            t.s.dialed(t.now(), attempt, Ok(info));
            let (_, _, open, _) = T::sent(&t.io())[0].clone();
            match how {
                "timed out" => {
                    let within = connect_within(&t.s.cfg);
                    assert_eq!(t.s.next_wakeup(), Some(t.clock.start() + within));
                    t.wake();
                    let r = rx.try_recv().map(|a| a.map(|_| ()));
                    assert!(
                        matches!(&r, Some(Err(Error::ConnectionFailed(m))) if m.contains("no session opened within")),
                        "{r:?}"
                    );
                }
                "cancelled" => {
                    t.s.cancel(t.now(), req, Error::Cancelled);
                    assert!(matches!(rx.try_recv(), Some(Err(Error::Cancelled))));
                }
                _ => drop(rx),
            }
            assert!(!t.s.is_done(), "{how}: the open in flight is waited for");
            t.reply(
                attempt,
                0,
                open,
                Ok(Reply::Opened {
                    session: 9,
                    ttl_ms: 30_000,
                }),
            );
            let sent = T::sent(&t.io());
            let [(_, 9, close, Request::Close)] = sent[..] else {
                panic!("{how}: {sent:?}")
            };
            t.reply(attempt, 9, close, Ok(Reply::Done));
            assert!(t.s.is_done(), "{how}");
        }
    }

    #[test]
    fn a_first_open_never_answered_ends_a_ttl_after_connect_gave_up() {
        let mut t = T::new(3000, 1);
        let (tx, rx) = slot();
        let req = t.shared.req();
        t.s.begin(t.now(), req, tx);
        let attempt = T::dials(&t.io())[0].0;
        let info = DialInfo {
            incarnation: INC,
            endpoint: 0,
        };
        t.s.dialed(t.now(), attempt, Ok(info));
        t.io();
        t.wake();
        assert!(matches!(
            rx.try_recv(),
            Some(Err(Error::ConnectionFailed(_)))
        ));
        assert!(!t.s.is_done());
        let at = t.wake();
        let within = connect_within(&t.s.cfg);
        assert_eq!(at, t.clock.start() + within + ms(3000) + ms(1000));
        assert!(t.s.is_done());
        // A close asked meanwhile is told at once, the session being over.
        let (done, told) = slot();
        t.s.close(t.now(), done);
        assert!(matches!(told.try_recv(), Some(Ok(_))));
    }

    #[test]
    fn a_named_leader_that_cannot_be_reached_is_waited_for_with_a_growing_pause() {
        let mut t = T::new(3000, 3);
        let conn = t.open();
        let l = t.lock(conn, "held", 5);
        let not_leader = |leader: Option<&str>| {
            Err(ErrorReply::NotLeader {
                leader: leader.map(String::from),
            })
        };
        let hb = |t: &mut T| T::sent(&t.io())[0].2;
        let pause_of = |io: &[Io]| {
            io.iter().find_map(|i| match i {
                Io::Dial { after, start, .. } => Some((*after, *start)),
                _ => None,
            })
        };
        // A request in flight; the member says the leader is endpoint 2: dialled at once.
        let (tx, _rx) = crate::client::pending::slot();
        let req = t.shared.req();
        let body = Request::Acquire {
            name: "next".into(),
            wait: true,
        };
        t.s.call(t.now(), req, body, Some(tx), None);
        t.io();
        t.reply(conn, SID, req, not_leader(Some("10.0.0.2:7411")));
        let io = t.io();
        assert_eq!(pause_of(&io), Some((Duration::ZERO, 2)));
        // It refused (crashed): the dialler went on to endpoint 1, which names it again.
        let dial = T::dials(&io)[0].0;
        let info = DialInfo {
            incarnation: INC,
            endpoint: 1,
        };
        t.s.dialed(t.now(), dial, Ok(info));
        let req = hb(&mut t);
        t.reply(dial, SID, req, not_leader(Some("10.0.0.2:7411")));
        // Not a dial loop: a pause, as for "no leader".
        let io = t.io();
        assert_eq!(pause_of(&io).map(|p| p.0), Some(REDIRECT_PAUSE_FIRST));
        let dial = T::dials(&io)[0].0;
        let info = DialInfo {
            incarnation: INC,
            endpoint: 0,
        };
        t.s.dialed(t.now(), dial, Ok(info));
        let req = hb(&mut t);
        t.reply(dial, SID, req, not_leader(None));
        // "No leader" again: the pause doubles.
        let io = t.io();
        assert_eq!(pause_of(&io).map(|p| p.0), Some(2 * REDIRECT_PAUSE_FIRST));
        assert_eq!(lost(&l), None);
    }

    #[test]
    fn a_member_that_does_not_lead_sends_the_session_to_the_leader_with_its_requests() {
        let mut t = T::new(3000, 3);
        let conn = t.open();
        let l = t.lock(conn, "held", 5);
        // A request in flight when the leader changes: the member says it no longer leads.
        let (tx, rx) = crate::client::pending::slot();
        let req = t.shared.req();
        let body = Request::Acquire {
            name: "next".into(),
            wait: true,
        };
        t.s.call(t.now(), req, body.clone(), Some(tx), None);
        t.io();
        let not_leader = |leader: Option<&str>| {
            Err(ErrorReply::NotLeader {
                leader: leader.map(String::from),
            })
        };
        t.reply(conn, SID, req, not_leader(Some("10.0.0.2:7411")));
        // Straight to the named leader, endpoint 2.
        let io = t.io();
        assert!(io
            .iter()
            .any(|i| matches!(i, Io::Drop { conn: c } if *c == conn)));
        let [(attempt, 2)] = T::dials(&io)[..] else {
            panic!("{io:?}")
        };
        let info = DialInfo {
            incarnation: INC,
            endpoint: 2,
        };
        t.s.dialed(t.now(), attempt, Ok(info));
        let sent = T::sent(&t.io());
        assert!(
            matches!(sent[0], (c, SID, hb, Request::Heartbeat) if c == attempt && hb & HEARTBEAT_BIT != 0)
        );
        assert!(
            sent.contains(&(attempt, SID, req, body)),
            "the request is resent with its id: {sent:?}"
        );
        t.reply(
            attempt,
            SID,
            req,
            Ok(Reply::Granted {
                name: "next".into(),
                token: 9,
            }),
        );
        assert!(matches!(rx.try_recv(), Some(Ok(_))));
        // No leader known (an election): the next endpoint, after a pause.
        t.reply(attempt, SID, sent[0].2, not_leader(None));
        let io = t.io();
        let pause = io.iter().find_map(|i| match i {
            Io::Dial { after, .. } => Some(*after),
            _ => None,
        });
        assert_eq!(
            pause,
            Some(REDIRECT_PAUSE_FIRST),
            "redialled after the pause"
        );
        let dials = T::dials(&io);
        assert_eq!(dials[0].1, 0, "the endpoint after 2");
        let info = DialInfo {
            incarnation: INC,
            endpoint: 0,
        };
        t.s.dialed(t.now(), dials[0].0, Ok(info));
        let sent = T::sent(&t.io());
        // A leader that is not among the endpoints is learnt and dialled.
        t.reply(
            dials[0].0,
            SID,
            sent[0].2,
            not_leader(Some("10.9.9.9:7411")),
        );
        let io = t.io();
        let dial = io.iter().find_map(|i| match i {
            Io::Dial {
                start, endpoints, ..
            } => Some((*start, endpoints.clone())),
            _ => None,
        });
        let (start, endpoints) = dial.expect("a dial");
        assert_eq!(endpoints[start], "10.9.9.9:7411");
        assert_eq!(endpoints.len(), 4);
        // The session and its lock were kept throughout, and nothing was reported lost.
        assert_eq!(lost(&l), None);
        assert!(!t
            .events()
            .iter()
            .any(|e| matches!(e, Event::SessionExpired | Event::LockLost { .. })),);
    }

    #[test]
    fn failed_dials_rotate_the_endpoints() {
        let mut t = T::new(3000, 3);
        let conn = t.open();
        t.s.broken(t.now(), conn);
        t.s.tick(t.now());
        let mut starts = vec![];
        for i in 0..3 {
            if i > 0 {
                t.wake();
            }
            let dials = T::dials(&t.io());
            let [(attempt, start)] = dials[..] else {
                panic!("{dials:?}")
            };
            starts.push(start);
            t.s.dialed(t.now(), attempt, Err("refused".into()));
        }
        assert_eq!(starts, vec![0, 1, 2]);
    }

    #[test]
    fn a_retry_gives_up_a_dial_left_unanswered_and_dials_again() {
        // A black-holed path: the connection breaks, and no dial is ever answered.
        let mut t = T::new(10_000, 1);
        let conn = t.open();
        t.s.broken(t.now(), conn);
        t.s.tick(t.now());
        let deadline = t.s.lease.as_ref().unwrap().deadline();
        let mut dials: Vec<(Instant, u64)> =
            T::dials(&t.io()).iter().map(|d| (t.now(), d.0)).collect();
        while t.s.next_wakeup().is_some_and(|w| w < deadline) {
            t.wake();
            dials.extend(T::dials(&t.io()).iter().map(|d| (t.now(), d.0)));
        }
        assert!(dials.len() >= 4, "{dials:?}");
        for w in dials.windows(2) {
            assert!(w[1].1 > w[0].1, "each dial is a new attempt: {dials:?}");
            assert!(
                w[1].0 - w[0].0 >= STALE_DIAL,
                "a dial is given up only after {STALE_DIAL:?}: {dials:?}"
            );
        }
        // The close retries before the deadline still reach the path.
        let last = dials.last().unwrap().0;
        assert!(
            deadline - last < ms(200),
            "last dial {:?} before the deadline",
            deadline - last
        );
        // A given-up dial that connects after all is dropped; the current one is used.
        let (old, cur) = (dials[0].1, dials.last().unwrap().1);
        let info = DialInfo {
            incarnation: 1,
            endpoint: 0,
        };
        t.s.dialed(t.now(), old, Ok(info));
        assert!(matches!(t.io()[..], [Io::Drop { conn }] if conn == old));
        t.s.dialed(t.now(), cur, Ok(info));
        assert_eq!(t.s.conn, Some(cur));
    }

    #[test]
    fn a_request_without_a_connection_dials_at_once_at_most_once_a_second() {
        let mut t = T::new(10_000, 1);
        let conn = t.open();
        t.s.broken(t.now(), conn);
        t.s.tick(t.now());
        let [(first, _)] = T::dials(&t.io())[..] else {
            panic!("the broken connection is followed by a dial")
        };
        t.s.dialed(t.now(), first, Err("refused".into()));
        // Jeopardy: the inverse exponential schedule's first retry is seconds away.
        let retry_at = t.s.next_wakeup().unwrap();
        assert!(retry_at - t.now() > ms(2000));
        t.clock.advance(ms(1500));
        let (tx, _rx) = crate::client::pending::slot();
        let req = t.shared.req();
        t.s.call(t.now(), req, Request::Status { from: None }, Some(tx), None);
        let [(second, _)] = T::dials(&t.io())[..] else {
            panic!("a request without a connection dials at once")
        };
        t.s.dialed(t.now(), second, Err("refused".into()));
        // Another request soon after waits for the schedule (or the next second).
        t.clock.advance(ms(100));
        let (tx, _rx) = crate::client::pending::slot();
        let req = t.shared.req();
        t.s.call(t.now(), req, Request::Status { from: None }, Some(tx), None);
        assert!(T::dials(&t.io()).is_empty());
    }

    #[test]
    fn a_close_ends_with_the_reply_or_after_a_second() {
        for answered in [true, false] {
            let mut t = T::new(3000, 1);
            let conn = t.open();
            let l = t.lock(conn, "z", 1);
            let (done_tx, done_rx) = slot();
            t.s.close(t.now(), done_tx);
            assert_eq!(lost(&l), Some(LostReason::ClientClosed));
            let sent = T::sent(&t.io());
            let [(_, SID, close, Request::Close)] = sent[..] else {
                panic!("{sent:?}")
            };
            if answered {
                t.reply(conn, SID, close, Ok(Reply::Done));
            } else {
                assert!(done_rx.try_recv().is_none());
                let at = t.wake();
                assert!(at >= t.clock.start() + ms(1000));
            }
            assert!(matches!(done_rx.try_recv(), Some(Ok(_))));
            assert!(t.s.is_done());
            let (tx, rx) = crate::client::pending::slot();
            t.s.call(t.now(), 99, Request::Status { from: None }, Some(tx), None);
            assert!(matches!(rx.try_recv(), Some(Err(Error::Closed))));
        }
    }

    #[test]
    fn a_connection_with_long_round_trips_is_given_more_time_before_it_counts_as_silent() {
        let mut t = T::new(1000, 1);
        assert_eq!(
            t.s.silent_after(),
            ms(250),
            "a heartbeat timeout, with no estimate"
        );
        for _ in 0..8 {
            t.s.rtt_sample(ms(200));
        }
        let s = t.s.silent_after();
        assert!(s >= ms(250) && s < ms(400), "{s:?}");
        t.s.rtt_sample(ms(600));
        assert!(t.s.silent_after() > ms(400), "a slow ack widens it");
        let mut fast = T::new(1000, 1);
        for _ in 0..8 {
            fast.s.rtt_sample(ms(1));
        }
        assert_eq!(
            fast.s.silent_after(),
            ms(250),
            "never below the heartbeat timeout"
        );
    }

    #[test]
    fn error_replies_map_to_errors_in_one_place() {
        let acquire = Request::Acquire {
            name: "n".into(),
            wait: false,
        };
        assert_eq!(
            error_of(ErrorReply::Invalid("bad".into()), &acquire),
            Error::InvalidArgument("bad".into())
        );
        assert_eq!(
            error_of(ErrorReply::Limit("full".into()), &acquire),
            Error::Limit("full".into())
        );
        assert_eq!(
            error_of(ErrorReply::AlreadyHeld, &acquire),
            Error::AlreadyHeld("n".into())
        );
        assert_eq!(
            error_of(ErrorReply::UnknownSession, &acquire),
            Error::SessionExpired
        );
        assert!(matches!(
            error_of(ErrorReply::Stale, &acquire),
            Error::Rejected(_)
        ));
    }
}
