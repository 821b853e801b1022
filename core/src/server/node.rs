//! The server node: everything a serving tenure node decides around its state machine, with
//! no sockets, threads, disk or clock reads (SPEC 2.1). The runtime ([`super`]) feeds it
//! what happened, with the time, and performs what it asks ([`NodeIo`]): append a command to
//! the log, send a message on a connection (after the turn's group commit), close a
//! connection, check a candidate's endpoint. Timers are its [`Node::next_wakeup`].
//!
//! What lives here: the handshake; binding each session to the connection it was last heard
//! on, and routing replies and notices there; catching a session up on master caches when
//! it moves to another connection; turning requests into commands (logged unless repeated
//! or refused, then applied to the [`State`]); expiry ([`Liveness`], decided here and logged
//! as [`Command::Expire`]); designations (connectivity checks, retries, the hold-off after a
//! step-down or a restart); promotions of probationary members; which connections carry no
//! session.

use super::liveness::Liveness;
use super::state::{Command, Output, State};
use crate::election::Step;
use crate::membership::Evaluator;
use crate::proto::{
    self, ClientMsg, ErrorReply, Incarnation, Notice, Reply, Request, ServerMsg, SessionId, Text,
};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Most sessions bound to one connection.
pub const MAX_SESSIONS_PER_CONNECTION: usize = 100_000;
/// When no candidate of an election answered its check, the next round starts this much later.
pub const DESIGNATION_RETRY: Duration = Duration::from_millis(500);

/// What the node asks of the runtime, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum NodeIo {
    /// Append this command to the log; it is durable after the turn's group commit.
    Log(Command),
    /// Send `msg` on connection `conn`, after the turn's group commit.
    Send { conn: usize, msg: ServerMsg },
    /// Close connection `conn` once what was queued for it is written. The node has
    /// forgotten it already.
    Close { conn: usize },
    /// Check that `endpoint` accepts a TCP connection; report with [`Node::checked`].
    Check {
        election: String,
        candidate: String,
        endpoint: String,
    },
}

/// What the node knows of a connection.
struct ConnState {
    greeted: bool,
    sessions: HashSet<SessionId>,
    /// Since when the connection carries no session (`None` while it carries one).
    sessionless_since: Option<Instant>,
}

/// A serving node. See the module documentation.
pub(crate) struct Node {
    state: State,
    liveness: Liveness,
    incarnation: Incarnation,
    /// The latest time an input came with.
    now: Instant,
    io: VecDeque<NodeIo>,
    conns: HashMap<usize, ConnState>,
    /// Session -> connection it was last heard on.
    bound: HashMap<SessionId, usize>,
    /// Designations in progress: election -> candidates that failed their check this round,
    /// and whether a check is running.
    designations: HashMap<String, (BTreeSet<String>, bool)>,
    /// Elections whose designation starts again at a given time.
    retries: Vec<(Instant, String)>,
    /// Elections where no master may be designated before a given time: after a step-down
    /// (preemption), or after a restart, until any former master's lease has surely ended.
    holdoff: HashMap<String, Instant>,
    /// Evaluation of probationary group members.
    evaluator: Evaluator,
}

impl Node {
    /// A node serving `state` (recovered from storage, or new) from `now`: every session gets
    /// its full TTL from now (the grace period after a restart), interrupted designations
    /// resume after the hold-off, probation starts over.
    pub(crate) fn new(mut state: State, incarnation: Incarnation, now: Instant) -> Node {
        let mut liveness = Liveness::new();
        for (s, ttl) in state.sessions() {
            liveness.track(s, Duration::from_millis(ttl), now);
        }
        // Designations interrupted by the restart resume, but not before any master that
        // stepped down just before the crash (whose notice may never have left) has seen its
        // lease end: hold every election off for the longest TTL of its candidates.
        state.mark_all_elections();
        let mut holdoff = HashMap::new();
        for (name, ttl) in state.longest_candidate_ttls() {
            if ttl > 0 {
                holdoff.insert(name, now + Duration::from_millis(ttl));
            }
        }
        let mut evaluator = Evaluator::new();
        for (g, m, session, ms) in state.probationary() {
            let ttl = Duration::from_millis(state.session_ttl(session).unwrap_or(0));
            evaluator.start(&g, &m, session, Duration::from_millis(ms), ttl, now);
        }
        Node {
            state,
            liveness,
            incarnation,
            now,
            io: VecDeque::new(),
            conns: HashMap::new(),
            bound: HashMap::new(),
            designations: HashMap::new(),
            retries: Vec::new(),
            holdoff,
            evaluator,
        }
    }

    /// The state machine (for snapshots and status).
    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    // ---- outputs -------------------------------------------------------------------------

    /// The next thing to do, in order.
    pub(crate) fn poll_io(&mut self) -> Option<NodeIo> {
        self.io.pop_front()
    }

    /// When [`Node::tick`] next has something to do.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        self.liveness
            .next_deadline()
            .into_iter()
            .chain(self.retries.iter().map(|r| r.0))
            .chain(self.evaluator.next_due())
            .min()
    }

    /// Connections that have carried no session for `limit` or longer.
    pub(crate) fn idle(&self, now: Instant, limit: Duration) -> Vec<usize> {
        self.conns
            .iter()
            .filter(|(_, x)| {
                x.sessionless_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= limit)
            })
            .map(|(c, _)| *c)
            .collect()
    }

    /// The connection that has carried no session for the longest time, if any.
    pub(crate) fn oldest_idle(&self) -> Option<usize> {
        self.conns
            .iter()
            .filter_map(|(c, x)| x.sessionless_since.map(|t| (t, *c)))
            .min()
            .map(|(_, c)| c)
    }

    // ---- inputs --------------------------------------------------------------------------

    /// A new connection `conn`.
    pub(crate) fn accepted(&mut self, now: Instant, conn: usize) {
        self.now = now;
        self.conns.insert(
            conn,
            ConnState {
                greeted: false,
                sessions: HashSet::new(),
                sessionless_since: Some(now),
            },
        );
    }

    /// A message read on `conn`.
    pub(crate) fn frame(&mut self, now: Instant, conn: usize, msg: ClientMsg) {
        self.now = now;
        if self.conns.contains_key(&conn) {
            self.handle(conn, msg);
        }
    }

    /// Connection `conn` is gone (closed by its peer or by the runtime). Its sessions stay;
    /// they are heard again on another connection or expire.
    pub(crate) fn closed(&mut self, now: Instant, conn: usize) {
        self.now = now;
        if let Some(c) = self.conns.remove(&conn) {
            for s in c.sessions {
                if self.bound.get(&s) == Some(&conn) {
                    self.bound.remove(&s);
                }
            }
        }
    }

    /// The outcome of a check asked for with [`NodeIo::Check`]; `ran` is false when the
    /// runtime could not run it (out of threads): the round is tried again later.
    pub(crate) fn checked(
        &mut self,
        now: Instant,
        election: String,
        candidate: String,
        ran: bool,
        ok: bool,
    ) {
        self.now = now;
        if !ran {
            if let Some(d) = self.designations.get_mut(&election) {
                d.1 = false;
            }
            self.retries.push((now + DESIGNATION_RETRY, election));
            return;
        }
        if ok {
            self.designations.remove(&election);
            self.designate(election, candidate, now);
        } else {
            if let Some(d) = self.designations.get_mut(&election) {
                d.0.insert(candidate);
                d.1 = false;
            }
            self.designation_step(election, now);
        }
    }

    /// Acts on what is due at `now`: expiries, designations, promotions.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.now = now;
        for s in self.liveness.expired(now) {
            self.execute(Command::Expire { session: s }, None);
        }
        self.run_designations(now);
        self.run_promotions(now);
    }

    // ---- rules ---------------------------------------------------------------------------

    fn send(&mut self, conn: usize, msg: ServerMsg) {
        self.io.push_back(NodeIo::Send { conn, msg });
    }

    /// Closes a connection on the node's own account (a protocol violation).
    fn close(&mut self, conn: usize) {
        self.closed(self.now, conn);
        self.io.push_back(NodeIo::Close { conn });
    }

    fn handle(&mut self, c: usize, msg: ClientMsg) {
        let greeted = self.conns.get(&c).is_some_and(|x| x.greeted);
        match msg {
            ClientMsg::Hello { magic, version, .. } if !greeted => {
                if magic != proto::MAGIC || version != proto::PROTOCOL_VERSION {
                    let m = ServerMsg::Reject {
                        reason: format!(
                            "protocol version {version} is not supported (this server speaks {})",
                            proto::PROTOCOL_VERSION
                        ),
                    };
                    self.send(c, m);
                    self.close(c);
                    return;
                }
                if let Some(conn) = self.conns.get_mut(&c) {
                    conn.greeted = true;
                }
                self.send(
                    c,
                    ServerMsg::Welcome {
                        version: proto::PROTOCOL_VERSION,
                        incarnation: self.incarnation,
                    },
                );
            }
            ClientMsg::Request { session, req, body } if greeted => {
                self.request(c, session, req, body)
            }
            _ => self.close(c), // a request before the handshake, or a second hello
        }
    }

    fn reply(&mut self, c: usize, session: SessionId, req: u64, result: Result<Reply, ErrorReply>) {
        self.send(
            c,
            ServerMsg::Reply {
                session,
                req,
                result,
            },
        );
    }

    fn bind(&mut self, c: usize, session: SessionId) -> bool {
        if let Some(old) = self.bound.get(&session).copied() {
            if old == c {
                return true;
            }
            self.unbind(old, session);
        }
        let Some(conn) = self.conns.get_mut(&c) else {
            return false;
        };
        if conn.sessions.len() >= MAX_SESSIONS_PER_CONNECTION {
            return false;
        }
        conn.sessions.insert(session);
        conn.sessionless_since = None;
        self.bound.insert(session, c);
        true
    }

    /// Takes `session` off connection `c` (it moved, or ended).
    fn unbind(&mut self, c: usize, session: SessionId) {
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.sessions.remove(&session);
            if conn.sessions.is_empty() && conn.sessionless_since.is_none() {
                conn.sessionless_since = Some(self.now);
            }
        }
    }

    fn request(&mut self, c: usize, session: SessionId, req: u64, body: Request) {
        let now = self.now;
        match body {
            Request::Open { ttl_ms } => {
                let over = self
                    .conns
                    .get(&c)
                    .is_some_and(|x| x.sessions.len() >= MAX_SESSIONS_PER_CONNECTION);
                if over {
                    let e = ErrorReply::Limit(format!(
                        "a connection may carry {MAX_SESSIONS_PER_CONNECTION} sessions"
                    ));
                    self.reply(c, 0, req, Err(e));
                    return;
                }
                self.execute(Command::Open { req, ttl_ms }, Some(c));
            }
            Request::Status { from } => {
                let st = self.state.status_page(
                    self.incarnation,
                    from.as_ref(),
                    proto::STATUS_PAGE_BYTES,
                );
                self.reply(c, session, req, Ok(Reply::Status(st)));
            }
            Request::Revoke { name } => {
                let r = self.try_execute(Command::Revoke { name }, None);
                self.reply(c, session, req, r.map(|()| Reply::Done));
            }
            Request::View { group } => {
                let r = match Text::GroupName.check(&group) {
                    Ok(()) => Ok(Reply::View(self.state.view(&group))),
                    Err(e) => Err(ErrorReply::Invalid(e)),
                };
                self.reply(c, session, req, r);
            }
            Request::Master { election } => {
                let r = match Text::ElectionName.check(&election) {
                    Ok(()) => Ok(Reply::Master(self.state.master(&election))),
                    Err(e) => Err(ErrorReply::Invalid(e)),
                };
                self.reply(c, session, req, r);
            }
            Request::Heartbeat => {
                if self.liveness.touch(session, now) {
                    self.evaluator.heard(session, now);
                    let moved = self.bound.get(&session) != Some(&c);
                    self.bind(c, session);
                    if moved {
                        self.catch_up(c, session);
                    }
                    self.reply(c, session, req, Ok(Reply::Alive));
                } else {
                    self.reply(c, session, req, Err(ErrorReply::UnknownSession));
                }
            }
            body => {
                if !self.liveness.touch(session, now) {
                    self.reply(c, session, req, Err(ErrorReply::UnknownSession));
                    return;
                }
                self.evaluator.heard(session, now);
                let moved = self.bound.get(&session) != Some(&c);
                self.bind(c, session);
                self.execute(Command::Request { session, req, body }, Some(c));
                if moved {
                    self.catch_up(c, session);
                }
            }
        }
    }

    /// A session now heard on another connection than before (a reconnect, or a late request
    /// on a connection its client gave up) may have missed notices sent while it had none, or
    /// sent where it no longer reads: tell it the master cache of every election it takes part
    /// in. After the request's reply, which may be a remembered, older cache. Clients ignore
    /// epochs they know already.
    fn catch_up(&mut self, c: usize, session: SessionId) {
        if self.bound.get(&session) != Some(&c) {
            return;
        }
        for election in self.state.elections_of(session) {
            if self.state.election(&election).is_none() {
                continue; // dropped since (nobody was left in it)
            }
            let info = self.state.master(&election);
            let notice = Notice::MasterChanged { election, info };
            self.send(c, ServerMsg::Notice { session, notice });
        }
    }

    /// [`Node::try_execute`] for a command whose refusal needs nothing more: it is answered on
    /// `origin`, or it is the node's own decision gone stale (an expiry racing a close).
    fn execute(&mut self, cmd: Command, origin: Option<usize>) {
        let _refused = self.try_execute(cmd, origin);
    }

    /// Checks and applies a command, logs it unless it is a repeat, and routes its outputs. A
    /// refused command changes nothing and is not logged: its error goes to the connection it
    /// came from (`origin`), if a client asked for it, and is returned.
    fn try_execute(&mut self, cmd: Command, origin: Option<usize>) -> Result<(), ErrorReply> {
        let applied = match self.state.execute(&cmd) {
            Ok(a) => a,
            Err(e) => {
                if let (Some(c), Some((session, req))) = (origin, cmd.asker()) {
                    self.reply(c, session, req, Err(e.clone()));
                }
                return Err(e);
            }
        };
        if !applied.repeat {
            self.io.push_back(NodeIo::Log(cmd));
        }
        let outputs = applied.outputs;
        for o in outputs {
            match o {
                Output::SessionOpened { session, ttl_ms } => {
                    self.liveness
                        .track(session, Duration::from_millis(ttl_ms), self.now);
                    if let Some(c) = origin {
                        self.bind(c, session);
                    }
                }
                Output::ProbationStarted {
                    group,
                    member,
                    session,
                    probation_ms,
                } => {
                    let ttl = Duration::from_millis(self.state.session_ttl(session).unwrap_or(0));
                    let min = Duration::from_millis(probation_ms);
                    self.evaluator
                        .start(&group, &member, session, min, ttl, self.now);
                }
                Output::ProbationEnded { group, member } => self.evaluator.stop(&group, &member),
                Output::CheckPassed { group, member } => {
                    if self.evaluator.is_eligible(&group, &member) {
                        self.execute(Command::Promote { group, member }, None);
                    }
                }
                Output::Notice { session, notice } => {
                    if let Some(c) = self.bound.get(&session).copied() {
                        self.send(c, ServerMsg::Notice { session, notice });
                    }
                    // A session without a connection reads the master cache when it
                    // reconnects.
                }
                Output::SessionEnded { session } => {
                    self.liveness.forget(session);
                    if let Some(c) = self.bound.remove(&session) {
                        self.unbind(c, session);
                    }
                }
                Output::Reply {
                    session,
                    req,
                    result,
                } => {
                    // A reply goes to the connection its own session was last heard on, never
                    // to the connection whose command caused it (a release that grants the
                    // lock to another session answers that session on its own connection).
                    if let Some(c) = self.bound.get(&session).copied() {
                        self.reply(c, session, req, result);
                    } else if session == 0 {
                        if let Some(c) = origin {
                            self.reply(c, session, req, result);
                        }
                    }
                    // Otherwise the session has no connection now; the client resends the
                    // request after reconnecting and gets the remembered reply.
                }
            }
        }
        Ok(())
    }

    fn run_designations(&mut self, now: Instant) {
        let mut names = self.state.take_designations();
        let (due, later): (Vec<_>, Vec<_>) = self.retries.drain(..).partition(|r| r.0 <= now);
        self.retries = later;
        names.extend(due.into_iter().map(|r| r.1));
        for name in names {
            if self.designations.get(&name).is_some_and(|d| d.1) {
                continue; // a check is running; its result continues the round
            }
            self.designation_step(name, now);
        }
    }

    /// Designates `id`, unless the election still has a master (a preemption): then the
    /// master steps down first, and the successor is designated once the old master's TTL has
    /// passed. The old master stops believing by then: any heartbeat reply that would extend
    /// its lease reaches it after the step-down notice (same connection, or the catch-up on a
    /// new one), so its deadline is at most the step-down plus its TTL less drift.
    fn designate(&mut self, name: String, id: String, now: Instant) {
        let master = self
            .state
            .election(&name)
            .and_then(|e| e.master())
            .map(|m| m.session);
        match master {
            Some(session) => {
                let ttl = Duration::from_millis(self.state.session_ttl(session).unwrap_or(0));
                self.execute(
                    Command::StepDown {
                        election: name.clone(),
                    },
                    None,
                );
                let until = now + ttl;
                self.holdoff.insert(name.clone(), until);
                if !self.retries.iter().any(|r| r.1 == name) {
                    self.retries.push((until, name));
                }
            }
            None => self.execute(
                Command::Designate {
                    election: name,
                    candidate: Some(id),
                },
                None,
            ),
        }
    }

    fn designation_step(&mut self, name: String, now: Instant) {
        if let Some(until) = self.holdoff.get(&name).copied() {
            if until > now {
                if !self.retries.iter().any(|r| r.1 == name) {
                    self.retries.push((until, name));
                }
                return;
            }
            self.holdoff.remove(&name);
        }
        let failed = self
            .designations
            .get(&name)
            .map(|d| d.0.clone())
            .unwrap_or_default();
        let step = match self.state.election(&name) {
            Some(e) => e.next_step(&failed),
            None => Step::Keep,
        };
        match step {
            Step::Keep => {
                // With preemption, candidates above the master that failed their check are
                // checked again later (they may answer then), as after NoneReachable.
                let failed = self
                    .designations
                    .remove(&name)
                    .is_some_and(|d| !d.0.is_empty());
                if failed && !self.retries.iter().any(|r| r.1 == name) {
                    self.retries.push((now + DESIGNATION_RETRY, name));
                }
            }
            Step::Designate(id) => {
                self.designations.remove(&name);
                self.designate(name, id, now);
            }
            Step::Check { id, endpoint } => {
                self.designations.entry(name.clone()).or_default().1 = true;
                self.io.push_back(NodeIo::Check {
                    election: name,
                    candidate: id,
                    endpoint,
                });
            }
            Step::NoneReachable => {
                self.designations.remove(&name);
                self.execute(
                    Command::Designate {
                        election: name.clone(),
                        candidate: None,
                    },
                    None,
                );
                if !self.retries.iter().any(|r| r.1 == name) {
                    self.retries.push((now + DESIGNATION_RETRY, name));
                }
            }
        }
    }

    /// Promotes probationary members whose probation has passed; those that still wait for
    /// their application's check are marked and promoted when it passes.
    fn run_promotions(&mut self, now: Instant) {
        for (group, member) in self.evaluator.due(now) {
            let waits_for_check = self
                .state
                .group(&group)
                .and_then(|g| g.member(&member))
                .is_some_and(|m| m.needs_check && !m.check_passed);
            if waits_for_check {
                self.evaluator.mark_eligible(&group, &member);
            } else {
                self.evaluator.stop(&group, &member);
                self.execute(Command::Promote { group, member }, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::proto::MasterInfo;

    const INC: Incarnation = 99;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A node driven by hand against a manual clock.
    struct T {
        n: Node,
        clock: ManualClock,
    }

    impl T {
        fn new() -> T {
            T::with_state(State::new())
        }

        fn with_state(state: State) -> T {
            let clock = ManualClock::new();
            let n = Node::new(state, INC, clock.now());
            T { n, clock }
        }

        fn now(&self) -> Instant {
            self.clock.now()
        }

        fn io(&mut self) -> Vec<NodeIo> {
            std::iter::from_fn(|| self.n.poll_io()).collect()
        }

        /// A greeted connection.
        fn conn(&mut self, c: usize) {
            self.n.accepted(self.now(), c);
            let hello = ClientMsg::Hello {
                magic: proto::MAGIC,
                version: proto::PROTOCOL_VERSION,
                client_name: "t".into(),
            };
            self.n.frame(self.now(), c, hello);
            assert!(matches!(
                self.io()[..],
                [NodeIo::Send {
                    msg: ServerMsg::Welcome { .. },
                    ..
                }]
            ));
        }

        fn req(&mut self, c: usize, session: SessionId, req: u64, body: Request) -> Vec<NodeIo> {
            let msg = ClientMsg::Request { session, req, body };
            self.n.frame(self.now(), c, msg);
            self.io()
        }

        fn open(&mut self, c: usize, req: u64, ttl_ms: u64) -> SessionId {
            let io = self.req(c, 0, req, Request::Open { ttl_ms });
            match &io[..] {
                [NodeIo::Log(Command::Open { .. }), NodeIo::Send {
                    conn,
                    msg:
                        ServerMsg::Reply {
                            result: Ok(Reply::Opened { session, .. }),
                            ..
                        },
                }] if *conn == c => *session,
                other => panic!("{other:?}"),
            }
        }

        fn advance(&mut self, d: Duration) -> Vec<NodeIo> {
            self.clock.advance(d);
            self.n.tick(self.now());
            self.io()
        }
    }

    fn replies(io: &[NodeIo]) -> Vec<(usize, SessionId, Result<Reply, ErrorReply>)> {
        io.iter()
            .filter_map(|i| match i {
                NodeIo::Send {
                    conn,
                    msg:
                        ServerMsg::Reply {
                            session, result, ..
                        },
                } => Some((*conn, *session, result.clone())),
                _ => None,
            })
            .collect()
    }

    fn acquire(name: &str) -> Request {
        Request::Acquire {
            name: name.into(),
            wait: true,
        }
    }

    #[test]
    fn the_handshake_comes_first_and_a_wrong_version_is_refused() {
        let mut t = T::new();
        t.n.accepted(t.now(), 1);
        let io = t.req(1, 0, 1, Request::Open { ttl_ms: 1000 });
        assert_eq!(
            io,
            vec![NodeIo::Close { conn: 1 }],
            "a request before the hello"
        );
        t.n.accepted(t.now(), 2);
        let hello = ClientMsg::Hello {
            magic: proto::MAGIC,
            version: 1,
            client_name: "old".into(),
        };
        t.n.frame(t.now(), 2, hello);
        let io = t.io();
        assert!(matches!(
            &io[..],
            [NodeIo::Send { conn: 2, msg: ServerMsg::Reject { reason } }, NodeIo::Close { conn: 2 }]
                if reason.contains("protocol version 1")
        ));
        t.conn(3);
        let io = t.req(3, 0, 1, Request::Open { ttl_ms: 1000 });
        assert!(matches!(io[0], NodeIo::Log(Command::Open { .. })));
    }

    #[test]
    fn heartbeats_are_not_logged_and_expiry_hands_the_lock_to_the_waiter() {
        let mut t = T::new();
        t.conn(1);
        t.conn(2);
        let a = t.open(1, 1, 1000);
        let b = t.open(2, 1, 10_000);
        let io = t.req(1, a, 2, acquire("l"));
        assert!(matches!(io[0], NodeIo::Log(_)));
        assert!(matches!(
            replies(&io)[..],
            [(1, _, Ok(Reply::Granted { .. }))]
        ));
        let io = t.req(2, b, 2, acquire("l"));
        assert!(replies(&io).is_empty(), "the waiter waits");
        // Heartbeats keep a alive, and are not logged.
        for _ in 0..5 {
            assert!(t.advance(ms(300)).is_empty());
            let io = t.req(1, a, 1 << 63 | 3, Request::Heartbeat);
            assert!(!io.iter().any(|i| matches!(i, NodeIo::Log(_))));
            assert!(matches!(replies(&io)[..], [(1, _, Ok(Reply::Alive))]));
        }
        // Silence: expired TTL after the last receipt, not before.
        assert!(t.advance(ms(999)).is_empty());
        let io = t.advance(ms(1));
        assert!(matches!(io[0], NodeIo::Log(Command::Expire { session }) if session == a));
        // The grant goes to the waiter, on its own connection.
        assert!(matches!(
            replies(&io)[..],
            [(2, s, Ok(Reply::Granted { .. }))] if s == b
        ));
        assert_eq!(t.n.next_wakeup(), Some(t.now() + ms(10_000) - ms(2500)));
    }

    #[test]
    fn a_session_heard_on_another_connection_is_answered_and_caught_up_there() {
        let mut t = T::new();
        t.conn(1);
        let a = t.open(1, 1, 5000);
        let campaign = Request::Campaign {
            election: "e".into(),
            id: "me".into(),
            priority: 1,
            endpoint: None,
            preempt: false,
        };
        t.req(1, a, 2, campaign);
        t.n.tick(t.now());
        let io = t.io();
        assert!(io
            .iter()
            .any(|i| matches!(i, NodeIo::Log(Command::Designate { .. }))));
        // The client reconnects: a heartbeat on connection 7 moves the session there.
        t.n.closed(t.now(), 1);
        t.conn(7);
        let io = t.req(7, a, 1 << 63 | 5, Request::Heartbeat);
        let notices: Vec<_> = io
            .iter()
            .filter_map(|i| match i {
                NodeIo::Send {
                    conn: 7,
                    msg:
                        ServerMsg::Notice {
                            notice: Notice::MasterChanged { info, .. },
                            ..
                        },
                } => Some(info.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(notices.len(), 1, "caught up on the master cache: {io:?}");
        assert!(notices[0].master.is_some());
        assert!(matches!(replies(&io)[..], [(7, _, Ok(Reply::Alive))]));
        assert_eq!(t.n.idle(t.now() + ms(1), ms(0)), Vec::<usize>::new());
    }

    #[test]
    fn candidates_with_endpoints_are_checked_before_designation() {
        let mut t = T::new();
        t.conn(1);
        t.conn(2);
        let a = t.open(1, 1, 5000);
        let b = t.open(2, 1, 5000);
        for (c, s, id, prio) in [(1, a, "low", 1), (2, b, "high", 2)] {
            let campaign = Request::Campaign {
                election: "e".into(),
                id: id.into(),
                priority: prio,
                endpoint: Some(format!("{id}.example:1")),
                preempt: false,
            };
            t.req(c, s, 2, campaign);
        }
        t.n.tick(t.now());
        let io = t.io();
        let checks: Vec<_> = io
            .iter()
            .filter_map(|i| match i {
                NodeIo::Check { candidate, .. } => Some(candidate.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            checks,
            vec!["high".to_string()],
            "highest priority first, once"
        );
        // It does not answer: the next one is checked.
        t.n.checked(t.now(), "e".into(), "high".into(), true, false);
        let io = t.io();
        assert!(matches!(&io[..], [NodeIo::Check { candidate, .. }] if candidate == "low"));
        t.n.checked(t.now(), "e".into(), "low".into(), true, true);
        let io = t.io();
        assert!(matches!(
            &io[0],
            NodeIo::Log(Command::Designate { candidate: Some(c), .. }) if c == "low"
        ));
        assert_eq!(
            t.n.state().master("e").master.map(|m| m.0),
            Some("low".to_string())
        );
        // A check that could not run is tried again after the retry interval.
        let mut t2 = T::new();
        t2.conn(1);
        let s = t2.open(1, 1, 5000);
        let campaign = Request::Campaign {
            election: "f".into(),
            id: "x".into(),
            priority: 1,
            endpoint: Some("x.example:1".into()),
            preempt: false,
        };
        t2.req(1, s, 2, campaign);
        t2.n.tick(t2.now());
        t2.io();
        t2.n.checked(t2.now(), "f".into(), "x".into(), false, false);
        assert!(t2.io().is_empty());
        let io = t2.advance(DESIGNATION_RETRY);
        assert!(matches!(&io[..], [NodeIo::Check { candidate, .. }] if candidate == "x"));
    }

    #[test]
    fn after_a_restart_no_master_is_designated_before_the_longest_candidate_ttl() {
        // A state with an election whose master's session is gone.
        let mut t = T::new();
        t.conn(1);
        t.conn(2);
        let a = t.open(1, 1, 3000);
        let b = t.open(2, 1, 2000);
        for (c, s, id, prio) in [(1, a, "a", 2), (2, b, "b", 1)] {
            let campaign = Request::Campaign {
                election: "e".into(),
                id: id.into(),
                priority: prio,
                endpoint: None,
                preempt: false,
            };
            t.req(c, s, 2, campaign);
        }
        t.n.tick(t.now());
        t.io();
        assert_eq!(
            t.n.state().master("e").master.map(|m| m.0),
            Some("a".to_string())
        );
        // Restart: sessions get a grace period; a's session closes at once after it, and the
        // designation of b waits for the hold-off of 3 s (a's TTL) from the restart.
        let state = t.n.state().clone();
        let mut r = T::with_state(state);
        r.conn(5);
        let io = r.req(5, a, 9, Request::Close);
        assert!(io.iter().any(|i| matches!(i, NodeIo::Log(_))));
        r.n.tick(r.now());
        let no_master = |r: &T| {
            r.n.state().master("e")
                == MasterInfo {
                    epoch: r.n.state().master("e").epoch,
                    master: None,
                }
        };
        assert!(no_master(&r));
        // b stays alive with heartbeats on its new connection.
        r.conn(6);
        for i in 0..6 {
            r.advance(ms(499));
            r.req(6, b, 1 << 63 | (10 + i), Request::Heartbeat);
            assert!(no_master(&r), "held off");
        }
        r.advance(ms(6));
        assert_eq!(
            r.n.state().master("e").master.map(|m| m.0),
            Some("b".to_string())
        );
    }

    #[test]
    fn connections_without_sessions_are_idle_from_when_their_last_session_left() {
        let mut t = T::new();
        t.conn(1);
        t.clock.advance(ms(10));
        t.conn(2);
        assert_eq!(t.n.oldest_idle(), Some(1));
        let s = t.open(2, 1, 1000);
        t.clock.advance(ms(10));
        let mut idle = t.n.idle(t.now(), ms(15));
        idle.sort_unstable();
        assert_eq!(idle, vec![1]);
        // The session ends: its connection is idle from then on.
        t.req(2, s, 2, Request::Close);
        assert_eq!(t.n.oldest_idle(), Some(1));
        t.n.closed(t.now(), 1);
        assert_eq!(t.n.oldest_idle(), Some(2));
        assert!(
            t.n.idle(t.now(), ms(1)).is_empty(),
            "idle only since the close"
        );
    }
}
