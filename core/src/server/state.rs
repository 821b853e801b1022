//! The server's state machine: a deterministic function of its command log (SPEC 2.2).
//!
//! Every change to the durable state of the service is a [`Command`]; [`State::apply`] applies
//! one and says what to answer ([`Output`]). Nothing here reads a clock or touches a socket:
//! decisions that depend on time (a session expired) are taken by the serving node (see
//! [`super::liveness`]) and enter the log as [`Command::Expire`], so replaying the log gives the
//! same state, the same grants and the same fencing tokens.
//!
//! Rules kept here:
//! - Sessions: opened with a TTL within [`MIN_TTL_MS`]..=[`MAX_TTL_MS`]; at most
//!   [`MAX_SESSIONS`]; closing or expiring one releases its locks (handing each to its first
//!   waiter) and drops its waiting requests.
//! - At-most-once: each session remembers the replies to its last [`REPLY_WINDOW`] state-changing
//!   requests. A request id seen before gets the remembered reply and changes nothing; a
//!   waiting acquire sent again stays one waiter; an id older than the window gets `Stale`.
//! - Locks: see [`crate::lock`].

use crate::election::{Candidate, Election};
use crate::lock::{Acquired, Grant, LockTable};
use crate::membership::{Change, Group, MemberRec};
use crate::proto::{
    echo, ElectionInfo, ErrorReply, LockInfo, MasterInfo, Notice, Reply, Request, SessionId,
    SessionInfo, StatusCursor, StatusInfo, Text, ViewInfo,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Shortest session TTL accepted, in milliseconds.
pub const MIN_TTL_MS: u64 = 50;
/// Longest session TTL accepted, in milliseconds (one day).
pub const MAX_TTL_MS: u64 = 86_400_000;
/// Most sessions one service holds.
pub const MAX_SESSIONS: usize = 1_000_000;
/// Most locks held or awaited by one session.
pub const MAX_LOCKS_PER_SESSION: usize = 10_000;
/// Replies remembered per session for at-most-once application.
pub const REPLY_WINDOW: usize = 64;

/// One entry of the command log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Open a new session (its id is the state's next one).
    Open {
        /// Request id of the open, for the reply.
        req: u64,
        /// TTL in milliseconds.
        ttl_ms: u64,
    },
    /// A state-changing request of a session (acquire, cancel, release, close).
    Request {
        /// Session.
        session: SessionId,
        /// Request id.
        req: u64,
        /// The request.
        body: Request,
    },
    /// The serving node decided that this session expired.
    Expire {
        /// Session.
        session: SessionId,
    },
    /// The master steps down so that a higher-priority candidate can take over (preempt):
    /// the master cache is cleared with a new epoch. The serving node designates the successor
    /// only after the old master's TTL (the rule is in [`crate::election`]).
    StepDown {
        /// Election name.
        election: String,
    },
    /// An administrator released a lock, whoever holds it.
    Revoke {
        /// Lock name.
        name: String,
    },
    /// The serving node found a probationary member healthy for its probation time.
    Promote {
        /// Group name.
        group: String,
        /// Member id.
        member: String,
    },
    /// The serving node designated a master after its connectivity checks (`None`: no
    /// candidate answered).
    Designate {
        /// Election name.
        election: String,
        /// The designated candidate.
        candidate: Option<String>,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Answer request `req` of `session`.
    Reply {
        /// Session to answer.
        session: SessionId,
        /// Request answered.
        req: u64,
        /// The answer.
        result: Result<Reply, ErrorReply>,
    },
    /// A session was created (liveness should start tracking it).
    SessionOpened {
        /// Session.
        session: SessionId,
        /// TTL in milliseconds.
        ttl_ms: u64,
    },
    /// A session ended (closed or expired); liveness should forget it.
    SessionEnded {
        /// Session.
        session: SessionId,
    },
    /// A probationary member joined: the serving node starts evaluating it.
    ProbationStarted {
        /// Group name.
        group: String,
        /// Member id.
        member: String,
        /// Its session.
        session: SessionId,
        /// Minimum probation in milliseconds.
        probation_ms: u64,
    },
    /// A member is no longer probationary (promoted or removed).
    ProbationEnded {
        /// Group name.
        group: String,
        /// Member id.
        member: String,
    },
    /// A probationary member's application check passed.
    CheckPassed {
        /// Group name.
        group: String,
        /// Member id.
        member: String,
    },
    /// Tell a session something.
    Notice {
        /// Session to notify.
        session: SessionId,
        /// What.
        notice: Notice,
    },
}

/// A session as the state machine keeps it. What most sessions never use (queued acquires,
/// elections, groups) is boxed apart: a session that only holds locks, or nothing, costs
/// 88 bytes less in the session table (issue 7 measures the server's memory per session). On
/// disk a session is still a [`SessionRecord`], so logs and snapshots keep their format.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "SessionRecord", into = "SessionRecord")]
struct Session {
    ttl_ms: u64,
    replies: VecDeque<(u64, Result<Reply, ErrorReply>)>,
    /// Held locks (name).
    held: BTreeSet<String>,
    /// The rest, when the session has any of it.
    more: Option<Box<SessionMore>>,
}

/// The parts of a session few sessions use.
#[derive(Debug, Clone, Default)]
struct SessionMore {
    /// Waiting acquires: request id -> name.
    waiting: BTreeMap<u64, String>,
    /// Elections this session takes part in (as candidate or observer).
    elections: BTreeSet<String>,
    /// Election requests waiting for a designation: request id -> election.
    awaiting: BTreeMap<u64, String>,
    /// Groups this session is a member or watcher of.
    groups: BTreeSet<String>,
}

/// A session as snapshots store it (the layout of [`Session`] before its rarely used parts
/// were boxed; kept so that existing data directories still load).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SessionRecord {
    ttl_ms: u64,
    replies: VecDeque<(u64, Result<Reply, ErrorReply>)>,
    held: BTreeSet<String>,
    waiting: BTreeMap<u64, String>,
    #[serde(default)]
    elections: BTreeSet<String>,
    #[serde(default)]
    awaiting: BTreeMap<u64, String>,
    #[serde(default)]
    groups: BTreeSet<String>,
}

impl From<SessionRecord> for Session {
    fn from(r: SessionRecord) -> Session {
        let more = SessionMore {
            waiting: r.waiting,
            elections: r.elections,
            awaiting: r.awaiting,
            groups: r.groups,
        };
        let empty = more.waiting.is_empty()
            && more.elections.is_empty()
            && more.awaiting.is_empty()
            && more.groups.is_empty();
        Session {
            ttl_ms: r.ttl_ms,
            replies: r.replies,
            held: r.held,
            more: (!empty).then(|| Box::new(more)),
        }
    }
}

impl From<Session> for SessionRecord {
    fn from(s: Session) -> SessionRecord {
        let more = s.more.map(|m| *m).unwrap_or_default();
        SessionRecord {
            ttl_ms: s.ttl_ms,
            replies: s.replies,
            held: s.held,
            waiting: more.waiting,
            elections: more.elections,
            awaiting: more.awaiting,
            groups: more.groups,
        }
    }
}

static NO_REQUESTS: BTreeMap<u64, String> = BTreeMap::new();
static NO_NAMES: BTreeSet<String> = BTreeSet::new();

impl Session {
    fn waiting(&self) -> &BTreeMap<u64, String> {
        self.more.as_ref().map_or(&NO_REQUESTS, |m| &m.waiting)
    }
    fn awaiting(&self) -> &BTreeMap<u64, String> {
        self.more.as_ref().map_or(&NO_REQUESTS, |m| &m.awaiting)
    }
    fn elections(&self) -> &BTreeSet<String> {
        self.more.as_ref().map_or(&NO_NAMES, |m| &m.elections)
    }
    fn groups(&self) -> &BTreeSet<String> {
        self.more.as_ref().map_or(&NO_NAMES, |m| &m.groups)
    }
    /// The boxed parts, made when first needed.
    fn more(&mut self) -> &mut SessionMore {
        self.more.get_or_insert_with(Default::default)
    }
    fn take_waiting(&mut self, req: &u64) -> Option<String> {
        self.more.as_mut()?.waiting.remove(req)
    }
    fn take_awaiting(&mut self, req: &u64) -> Option<String> {
        self.more.as_mut()?.awaiting.remove(req)
    }
    fn remembered(&self, req: u64) -> Option<&Result<Reply, ErrorReply>> {
        self.replies.iter().find(|(r, _)| *r == req).map(|(_, x)| x)
    }
    fn remember(&mut self, req: u64, result: Result<Reply, ErrorReply>) {
        if self.replies.len() >= REPLY_WINDOW {
            self.replies.pop_front();
        }
        self.replies.push_back((req, result));
    }
    fn too_old(&self, req: u64) -> bool {
        self.replies.len() >= REPLY_WINDOW && self.replies.front().is_some_and(|(r, _)| req < *r)
    }
}

/// The durable state of the service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    next_session: SessionId,
    sessions: BTreeMap<SessionId, Session>,
    locks: LockTable,
    #[serde(default)]
    elections: BTreeMap<String, Election>,
    /// Election requests waiting for a designation, per election, in arrival order.
    #[serde(default)]
    awaiting: BTreeMap<String, Vec<(SessionId, u64)>>,
    /// Elections changed since the runtime last asked (not part of the durable state).
    #[serde(skip)]
    touched: BTreeSet<String>,
    #[serde(default)]
    groups: BTreeMap<String, Group>,
    /// Sessions watching a group without being members.
    #[serde(default)]
    watchers: BTreeMap<String, BTreeSet<SessionId>>,
}

impl State {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a session exists.
    pub fn has_session(&self, s: SessionId) -> bool {
        self.sessions.contains_key(&s)
    }

    /// Every session with its TTL in milliseconds.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, u64)> + '_ {
        self.sessions.iter().map(|(id, s)| (*id, s.ttl_ms))
    }

    /// A session's TTL in milliseconds.
    pub fn session_ttl(&self, s: SessionId) -> Option<u64> {
        self.sessions.get(&s).map(|x| x.ttl_ms)
    }

    /// Number of sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The lock table.
    pub fn locks(&self) -> &LockTable {
        &self.locks
    }

    /// Whether applying this request would change nothing: a repeat of one already applied
    /// (or still waiting). The serving node answers those without logging them.
    pub fn is_repeat(&self, session: SessionId, req: u64) -> bool {
        self.sessions.get(&session).is_some_and(|s| {
            s.remembered(req).is_some()
                || s.waiting().contains_key(&req)
                || s.awaiting().contains_key(&req)
        })
    }

    /// The whole status in one value (for tests and replay checks; the network serves it in
    /// pages, see [`State::status_page`]).
    pub fn status(&self, incarnation: u128) -> StatusInfo {
        let mut st = self.status_page(incarnation, None, usize::MAX);
        st.next = None;
        st
    }

    /// One page of the status, from `from` (the start when `None`), holding rows while their
    /// encoded size stays within `budget` bytes; at least one row, so paging always moves on.
    /// [`StatusInfo::next`] says where the next page begins.
    pub fn status_page(
        &self,
        incarnation: u128,
        from: Option<&StatusCursor>,
        budget: usize,
    ) -> StatusInfo {
        let mut st = StatusInfo {
            incarnation,
            revision: self.locks.revision(),
            ..Default::default()
        };
        let mut page = Page { used: 0, budget };
        let section = match from {
            None | Some(StatusCursor::Sessions(_)) => 0,
            Some(StatusCursor::Locks(_)) => 1,
            Some(StatusCursor::Elections(_)) => 2,
            Some(StatusCursor::Groups(_)) => 3,
        };
        if section <= 0 {
            let start = match from {
                Some(StatusCursor::Sessions(id)) => *id,
                _ => 0,
            };
            for (id, s) in self.sessions.range(start..) {
                let row = SessionInfo {
                    id: *id,
                    ttl_ms: s.ttl_ms,
                };
                if !page.fits(&row) {
                    st.next = Some(StatusCursor::Sessions(*id));
                    return st;
                }
                st.sessions.push(row);
            }
        }
        if section <= 1 {
            let start = match from {
                Some(StatusCursor::Locks(n)) => n.clone(),
                _ => String::new(),
            };
            for n in self.locks.names_from(&start) {
                let Some((holder, token, waiters)) = self.locks.get(n) else {
                    continue;
                };
                let row = LockInfo {
                    name: n.clone(),
                    holder,
                    token,
                    waiters,
                };
                if !page.fits(&row) {
                    st.next = Some(StatusCursor::Locks(n.clone()));
                    return st;
                }
                st.locks.push(row);
            }
        }
        if section <= 2 {
            let start = match from {
                Some(StatusCursor::Elections(n)) => n.clone(),
                _ => String::new(),
            };
            for (n, e) in self.elections.range(start..) {
                let row = ElectionInfo {
                    name: n.clone(),
                    master: master_info(e),
                    candidates: e
                        .ordered()
                        .iter()
                        .map(|c| (c.id.clone(), c.priority, c.session))
                        .collect(),
                };
                if !page.fits(&row) {
                    st.next = Some(StatusCursor::Elections(n.clone()));
                    return st;
                }
                st.elections.push(row);
            }
        }
        let start = match from {
            Some(StatusCursor::Groups(n)) => n.clone(),
            _ => String::new(),
        };
        for (n, g) in self.groups.range(start..) {
            let row = (n.clone(), view_info(g));
            if !page.fits(&row) {
                st.next = Some(StatusCursor::Groups(n.clone()));
                return st;
            }
            st.groups.push(row);
        }
        st
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Every probationary member: (group, member, session, probation in ms).
    pub fn probationary(&self) -> Vec<(String, String, SessionId, u64)> {
        let mut v = vec![];
        for (g, grp) in &self.groups {
            for (id, m) in grp.members() {
                if !m.full {
                    v.push((g.clone(), id.clone(), m.session, m.probation_ms));
                }
            }
        }
        v
    }

    /// A group's view (view 0, no members, for an unknown one).
    pub fn view(&self, name: &str) -> ViewInfo {
        self.groups.get(name).map(view_info).unwrap_or_default()
    }

    /// Elections a session takes part in, as candidate or observer.
    pub fn elections_of(&self, s: SessionId) -> Vec<String> {
        self.sessions
            .get(&s)
            .map(|x| x.elections().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Each election with candidates, and the longest session TTL among them in
    /// milliseconds: how long a restarted server holds off designations there.
    pub fn longest_candidate_ttls(&self) -> Vec<(String, u64)> {
        self.elections
            .iter()
            .filter_map(|(name, e)| {
                let ttl = e
                    .ordered()
                    .iter()
                    .filter_map(|c| self.session_ttl(c.session))
                    .max()?;
                Some((name.clone(), ttl))
            })
            .collect()
    }

    /// An election by name.
    pub fn election(&self, name: &str) -> Option<&Election> {
        self.elections.get(name)
    }

    /// The master cache of an election (no master, epoch 0, for an unknown one).
    pub fn master(&self, name: &str) -> MasterInfo {
        self.elections
            .get(name)
            .map(master_info)
            .unwrap_or_default()
    }

    /// Elections changed since the last call that now need a designation. After a restart,
    /// call [`State::mark_all_elections`] first.
    pub fn take_designations(&mut self) -> Vec<String> {
        let touched = std::mem::take(&mut self.touched);
        touched
            .into_iter()
            .filter(|n| self.elections.get(n).is_some_and(|e| e.needs_designation()))
            .collect()
    }

    /// Marks every election as changed (after recovery), so pending designations resume.
    pub fn mark_all_elections(&mut self) {
        self.touched = self.elections.keys().cloned().collect();
    }

    /// Checks a command before it is logged: `Err` is the reply to give instead, and the
    /// command must not be logged. Commands that pass are logged and then applied.
    pub fn precheck(&self, cmd: &Command) -> Result<(), ErrorReply> {
        match cmd {
            Command::Open { ttl_ms, .. } => {
                if !(MIN_TTL_MS..=MAX_TTL_MS).contains(ttl_ms) {
                    return Err(ErrorReply::Invalid(format!(
                        "session TTL {ttl_ms} ms is outside {MIN_TTL_MS}..={MAX_TTL_MS} ms"
                    )));
                }
                if self.sessions.len() >= MAX_SESSIONS {
                    return Err(ErrorReply::Limit(format!(
                        "the server holds {MAX_SESSIONS} sessions already"
                    )));
                }
                Ok(())
            }
            Command::Request { session, req, body } => {
                let Some(s) = self.sessions.get(session) else {
                    return Err(ErrorReply::UnknownSession);
                };
                let waiting = s.waiting().contains_key(req) || s.awaiting().contains_key(req);
                if s.too_old(*req) && s.remembered(*req).is_none() && !waiting {
                    return Err(ErrorReply::Stale);
                }
                match body {
                    Request::Acquire { name, .. } => {
                        check(Text::LockName, name)?;
                        if s.held.len() + s.waiting().len() >= MAX_LOCKS_PER_SESSION {
                            return Err(ErrorReply::Limit(format!(
                                "a session may hold or wait for {MAX_LOCKS_PER_SESSION} locks"
                            )));
                        }
                        Ok(())
                    }
                    Request::Release { name, .. } => check(Text::LockName, name),
                    Request::Cancel { .. } | Request::Close => Ok(()),
                    Request::Campaign {
                        election,
                        id,
                        endpoint,
                        ..
                    } => {
                        check(Text::ElectionName, election)?;
                        check(Text::CandidateId, id)?;
                        if let Some(e) = endpoint {
                            check(Text::Endpoint, e)?;
                        }
                        let taken = self
                            .elections
                            .get(election)
                            .and_then(|e| e.candidate(id))
                            .is_some_and(|c| c.session != *session);
                        if taken {
                            return Err(ErrorReply::Invalid(format!(
                                "candidate id {} is registered in {} by another session",
                                echo(id),
                                echo(election)
                            )));
                        }
                        Ok(())
                    }
                    Request::Resign { election, id } => {
                        check(Text::ElectionName, election)?;
                        check(Text::CandidateId, id)
                    }
                    Request::Observe { election } | Request::RequestElection { election } => {
                        check(Text::ElectionName, election)
                    }
                    Request::Join {
                        group,
                        id,
                        probation_ms,
                        ..
                    } => {
                        check(Text::GroupName, group)?;
                        check(Text::MemberId, id)?;
                        if *probation_ms > MAX_TTL_MS {
                            return Err(ErrorReply::Invalid(format!(
                                "probation of {probation_ms} ms is longer than {MAX_TTL_MS} ms"
                            )));
                        }
                        match self.groups.get(group) {
                            Some(g) => g.check_join(id, *session).map_err(ErrorReply::Invalid),
                            None => Ok(()),
                        }
                    }
                    Request::Replace {
                        group,
                        failed,
                        probationary,
                    } => {
                        check(Text::GroupName, group)?;
                        check(Text::MemberId, failed)?;
                        check(Text::MemberId, probationary)?;
                        match self.groups.get(group) {
                            Some(g) => g
                                .check_replace(failed, probationary)
                                .map_err(ErrorReply::Invalid),
                            None => Err(ErrorReply::Invalid(format!("no group {}", echo(group)))),
                        }
                    }
                    Request::Leave { group, id } | Request::ReportCheck { group, id, .. } => {
                        check(Text::GroupName, group)?;
                        check(Text::MemberId, id)?;
                        let theirs = self
                            .groups
                            .get(group)
                            .and_then(|g| g.member(id))
                            .is_some_and(|m| m.session != *session);
                        if theirs {
                            return Err(ErrorReply::Invalid(format!(
                                "member {} belongs to another session",
                                echo(id)
                            )));
                        }
                        Ok(())
                    }
                    Request::WatchGroup { group } => check(Text::GroupName, group),
                    Request::Open { .. }
                    | Request::Heartbeat
                    | Request::Status { .. }
                    | Request::Master { .. }
                    | Request::Revoke { .. }
                    | Request::View { .. } => Err(ErrorReply::Invalid(
                        "this request does not change state".into(),
                    )),
                }
            }
            Command::Expire { session } => {
                if self.sessions.contains_key(session) {
                    Ok(())
                } else {
                    Err(ErrorReply::UnknownSession)
                }
            }
            Command::Designate { election, .. } => {
                if self.elections.contains_key(election) {
                    Ok(())
                } else {
                    Err(ErrorReply::Invalid(format!("no election {election:?}")))
                }
            }
            Command::StepDown { election } => {
                if self
                    .elections
                    .get(election)
                    .is_some_and(|e| e.master().is_some())
                {
                    Ok(())
                } else {
                    Err(ErrorReply::Invalid(format!("{election:?} has no master")))
                }
            }
            Command::Revoke { name } => {
                check(Text::LockName, name)?;
                if self.locks.get(name).is_some() {
                    Ok(())
                } else {
                    Err(ErrorReply::Invalid(format!(
                        "no lock {} is held",
                        echo(name)
                    )))
                }
            }
            Command::Promote { group, member } => {
                if self
                    .groups
                    .get(group)
                    .and_then(|g| g.member(member))
                    .is_some()
                {
                    Ok(())
                } else {
                    Err(ErrorReply::Invalid(format!(
                        "no member {member:?} in {group:?}"
                    )))
                }
            }
        }
    }

    /// Applies one command. Deterministic: the same commands in the same order always give the
    /// same state and outputs.
    pub fn apply(&mut self, cmd: &Command) -> Vec<Output> {
        let mut out = Vec::new();
        if let Err(e) = self.precheck(cmd) {
            // A command that fails its check changes nothing (replay of a log written by an
            // older node, or a racing expiry); answer it like the serving node would have.
            match cmd {
                Command::Open { req, .. } => out.push(Output::Reply {
                    session: 0,
                    req: *req,
                    result: Err(e),
                }),
                Command::Request { session, req, .. } => out.push(Output::Reply {
                    session: *session,
                    req: *req,
                    result: Err(e),
                }),
                Command::Expire { .. }
                | Command::Designate { .. }
                | Command::Promote { .. }
                | Command::StepDown { .. }
                | Command::Revoke { .. } => {}
            }
            return out;
        }
        match cmd {
            Command::Open { req, ttl_ms } => {
                self.next_session += 1;
                let id = self.next_session;
                self.sessions.insert(
                    id,
                    Session {
                        ttl_ms: *ttl_ms,
                        ..Default::default()
                    },
                );
                out.push(Output::SessionOpened {
                    session: id,
                    ttl_ms: *ttl_ms,
                });
                out.push(Output::Reply {
                    session: id,
                    req: *req,
                    result: Ok(Reply::Opened {
                        session: id,
                        ttl_ms: *ttl_ms,
                    }),
                });
            }
            Command::Request { session, req, body } => {
                let (session, req) = (*session, *req);
                let s = self.sessions.get(&session).expect("prechecked");
                if let Some(r) = s.remembered(req) {
                    let result = match (body, r) {
                        // A retried election request gets the master cache as it is now: the
                        // remembered one may be older than what the client was told since.
                        (
                            Request::Campaign { election, .. }
                            | Request::Observe { election }
                            | Request::RequestElection { election },
                            Ok(Reply::Master(_)),
                        ) => Ok(Reply::Master(self.master(election))),
                        _ => r.clone(),
                    };
                    out.push(Output::Reply {
                        session,
                        req,
                        result,
                    });
                    return out;
                }
                if s.waiting().contains_key(&req) || s.awaiting().contains_key(&req) {
                    return out; // still waiting; the grant or designation will answer it
                }
                self.request(session, req, body, &mut out);
            }
            Command::Expire { session } => self.end_session(*session, &mut out),
            Command::Designate {
                election,
                candidate,
            } => self.designate(election, candidate.as_deref(), &mut out),
            Command::StepDown { election } => self.change_master(election, None, &mut out),
            Command::Revoke { name } => {
                if let Some((holder, token, _)) = self.locks.get(name) {
                    let (_, next) = self.locks.release(name, holder, token);
                    if let Some(s) = self.sessions.get_mut(&holder) {
                        s.held.remove(name);
                    }
                    out.push(Output::Notice {
                        session: holder,
                        notice: Notice::LockRevoked {
                            name: name.clone(),
                            token,
                        },
                    });
                    if let Some(g) = next {
                        self.granted(g, &mut out);
                    }
                }
            }
            Command::Promote { group, member } => {
                let ch = self.groups.get_mut(group).and_then(|g| g.promote(member));
                if let Some(ch) = ch {
                    self.view_changed(group, ch, &mut out);
                }
            }
        }
        out
    }

    /// Tells the group's members and watchers of a new view; ends evaluations of members no
    /// longer on probation.
    fn view_changed(&mut self, name: &str, ch: Change, out: &mut Vec<Output>) {
        for m in ch.promoted.iter().chain(ch.removed.iter()) {
            out.push(Output::ProbationEnded {
                group: name.to_string(),
                member: m.clone(),
            });
        }
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let info = view_info(g);
        let mut audience: BTreeSet<SessionId> = g.members().map(|(_, m)| m.session).collect();
        // Removed members hear of the view that removed them, if their session lives.
        audience.extend(ch.gone.iter().filter(|s| self.sessions.contains_key(s)));
        if let Some(w) = self.watchers.get(name) {
            audience.extend(w.iter().copied());
        }
        for session in audience {
            out.push(Output::Notice {
                session,
                notice: Notice::ViewChanged {
                    group: name.to_string(),
                    info: info.clone(),
                },
            });
        }
    }

    /// Sets a new master (or none) with a new epoch and notifies the election's audience.
    fn change_master(&mut self, name: &str, master: Option<String>, out: &mut Vec<Output>) {
        let epoch = self.locks.bump();
        let Some(e) = self.elections.get_mut(name) else {
            return;
        };
        e.set_master(master, epoch);
        let info = master_info(e);
        for session in e.audience() {
            out.push(Output::Notice {
                session,
                notice: Notice::MasterChanged {
                    election: name.to_string(),
                    info: info.clone(),
                },
            });
        }
        self.touched.insert(name.to_string());
    }

    fn designate(&mut self, name: &str, candidate: Option<&str>, out: &mut Vec<Output>) {
        let Some(e) = self.elections.get(name) else {
            return;
        };
        match candidate {
            Some(id) => {
                // A designation decided before a later change may be stale: apply it only
                // if it still makes sense.
                if e.candidate(id).is_none()
                    || !e.needs_designation()
                    || e.master().is_some_and(|m| m.id == id)
                {
                    return;
                }
                self.change_master(name, Some(id.to_string()), out);
            }
            None => {
                // Nobody answered. A master that was kept stays; waiters learn there is none.
                if e.master().is_some() {
                    return;
                }
            }
        }
        let info = self.master(name);
        for (session, req) in self.awaiting.remove(name).unwrap_or_default() {
            if let Some(s) = self.sessions.get_mut(&session) {
                s.take_awaiting(&req);
            }
            self.reply(session, req, Ok(Reply::Master(info.clone())), out);
        }
    }

    fn reply(
        &mut self,
        session: SessionId,
        req: u64,
        result: Result<Reply, ErrorReply>,
        out: &mut Vec<Output>,
    ) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.remember(req, result.clone());
        }
        out.push(Output::Reply {
            session,
            req,
            result,
        });
    }

    fn granted(&mut self, g: Grant, out: &mut Vec<Output>) {
        let s = self
            .sessions
            .get_mut(&g.session)
            .expect("waiters belong to live sessions");
        s.take_waiting(&g.req);
        s.held.insert(g.name.clone());
        self.reply(
            g.session,
            g.req,
            Ok(Reply::Granted {
                name: g.name,
                token: g.token,
            }),
            out,
        );
    }

    fn request(&mut self, session: SessionId, req: u64, body: &Request, out: &mut Vec<Output>) {
        match body {
            Request::Acquire { name, wait } => {
                match self.locks.acquire(name, session, req, *wait) {
                    Acquired::Granted(g) => self.granted(g, out),
                    Acquired::Queued => {
                        let s = self.sessions.get_mut(&session).expect("checked");
                        s.more().waiting.insert(req, name.clone());
                    }
                    Acquired::Busy => self.reply(session, req, Ok(Reply::Busy), out),
                    Acquired::AlreadyHeld => {
                        self.reply(session, req, Err(ErrorReply::AlreadyHeld), out)
                    }
                    Acquired::QueueFull => self.reply(
                        session,
                        req,
                        Err(ErrorReply::Limit(format!(
                            "lock {name:?} has {} waiters already",
                            crate::lock::MAX_WAITERS
                        ))),
                        out,
                    ),
                }
            }
            Request::Release { name, token } => {
                let (ok, next) = self.locks.release(name, session, *token);
                if ok {
                    self.sessions
                        .get_mut(&session)
                        .expect("checked")
                        .held
                        .remove(name);
                    if let Some(g) = next {
                        self.granted(g, out);
                    }
                    self.reply(session, req, Ok(Reply::Done), out);
                } else {
                    self.reply(session, req, Err(ErrorReply::NotHolder), out);
                }
            }
            Request::Cancel { target } => {
                let s = self.sessions.get_mut(&session).expect("checked");
                if let Some(name) = s.take_waiting(target) {
                    self.locks.remove_waiter(&name, session, *target);
                    // The cancelled acquire gets no grant; remember that it ended.
                    s.remember(
                        *target,
                        Err(ErrorReply::Invalid("acquire cancelled".into())),
                    );
                } else if let Some(Ok(Reply::Granted { name, token })) =
                    s.remembered(*target).cloned()
                {
                    // Granted before the cancel arrived: give it back.
                    if self.locks.held_by(&name, session) == Some((token, *target)) {
                        let (_, next) = self.locks.release(&name, session, token);
                        self.sessions
                            .get_mut(&session)
                            .expect("checked")
                            .held
                            .remove(&name);
                        if let Some(g) = next {
                            self.granted(g, out);
                        }
                    }
                } else if let Some(election) = s.take_awaiting(target) {
                    // An election request given up on; remember that it ended, so that a copy
                    // still in flight (resent on another connection) is not applied again.
                    if let Some(v) = self.awaiting.get_mut(&election) {
                        v.retain(|w| *w != (session, *target));
                    }
                    s.remember(
                        *target,
                        Err(ErrorReply::Invalid("election request cancelled".into())),
                    );
                } else if s.remembered(*target).is_none() {
                    // The cancel overtook its request (it was sent on a connection the
                    // client gave up): leave a tombstone so the request, if it arrives, is
                    // answered as cancelled instead of taking a lock nobody waits for.
                    s.remember(
                        *target,
                        Err(ErrorReply::Invalid("request cancelled".into())),
                    );
                }
                self.reply(session, req, Ok(Reply::Done), out);
            }
            Request::Close => {
                out.push(Output::Reply {
                    session,
                    req,
                    result: Ok(Reply::Done),
                });
                self.end_session(session, out);
            }
            Request::Campaign {
                election,
                id,
                priority,
                endpoint,
                preempt,
            } => {
                let e = self.election_entry(election);
                let c = Candidate {
                    id: id.clone(),
                    priority: *priority,
                    endpoint: endpoint.clone(),
                    session,
                };
                match e.register(c, *preempt) {
                    Ok(()) => {
                        let info = master_info(e);
                        self.touched.insert(election.clone());
                        self.session_mut(session)
                            .more()
                            .elections
                            .insert(election.clone());
                        self.reply(session, req, Ok(Reply::Master(info)), out);
                    }
                    Err(m) => self.reply(session, req, Err(ErrorReply::Limit(m)), out),
                }
            }
            Request::Resign { election, id } => {
                let mine = self
                    .elections
                    .get(election)
                    .and_then(|e| e.candidate(id))
                    .map(|c| c.session == session);
                match mine {
                    Some(false) => self.reply(
                        session,
                        req,
                        Err(ErrorReply::Invalid(format!(
                            "candidate {id:?} belongs to another session"
                        ))),
                        out,
                    ),
                    Some(true) => {
                        let e = self.elections.get_mut(election).expect("checked");
                        if e.remove(id) {
                            self.change_master(election, None, out);
                        }
                        self.touched.insert(election.clone());
                        self.reply(session, req, Ok(Reply::Done), out);
                    }
                    None => self.reply(session, req, Ok(Reply::Done), out),
                }
            }
            Request::Observe { election } => {
                let e = self.election_entry(election);
                match e.observe(session) {
                    Ok(()) => {
                        let info = master_info(e);
                        self.session_mut(session)
                            .more()
                            .elections
                            .insert(election.clone());
                        self.reply(session, req, Ok(Reply::Master(info)), out);
                    }
                    Err(m) => self.reply(session, req, Err(ErrorReply::Limit(m)), out),
                }
            }
            Request::RequestElection { election } => {
                let pending = self
                    .elections
                    .get(election)
                    .is_some_and(|e| e.master().is_none() && e.needs_designation());
                if pending {
                    self.awaiting
                        .entry(election.clone())
                        .or_default()
                        .push((session, req));
                    self.session_mut(session)
                        .more()
                        .awaiting
                        .insert(req, election.clone());
                    self.touched.insert(election.clone());
                } else {
                    // The cache names a live master (or there is nobody to designate).
                    let info = self.master(election);
                    self.reply(session, req, Ok(Reply::Master(info)), out);
                }
            }
            Request::Join {
                group,
                id,
                probation_ms,
                needs_check,
            } => {
                let g = self.groups.entry(group.clone()).or_default();
                let rec = MemberRec {
                    session,
                    full: false,
                    probation_ms: *probation_ms,
                    needs_check: *needs_check,
                    check_passed: false,
                };
                let joined = g.join(id, rec);
                self.session_mut(session)
                    .more()
                    .groups
                    .insert(group.clone());
                if joined {
                    out.push(Output::ProbationStarted {
                        group: group.clone(),
                        member: id.clone(),
                        session,
                        probation_ms: *probation_ms,
                    });
                    self.view_changed(group, Change::default(), out);
                }
                let info = self.view(group);
                self.reply(session, req, Ok(Reply::View(info)), out);
            }
            Request::Leave { group, id } => {
                let ch = self.groups.get_mut(group).and_then(|g| g.remove(id));
                if let Some(ch) = ch {
                    self.view_changed(group, ch, out);
                }
                self.reply(session, req, Ok(Reply::Done), out);
            }
            Request::ReportCheck { group, id, ok } => {
                let known = self.groups.get(group).and_then(|g| g.member(id)).is_some();
                if !known {
                    let e = ErrorReply::Invalid(format!("no member {id:?} in {group:?}"));
                    self.reply(session, req, Err(e), out);
                    return;
                }
                let ch = self
                    .groups
                    .get_mut(group)
                    .and_then(|g| g.report_check(id, *ok));
                if let Some(ch) = ch {
                    self.view_changed(group, ch, out);
                } else if *ok {
                    out.push(Output::CheckPassed {
                        group: group.clone(),
                        member: id.clone(),
                    });
                }
                self.reply(session, req, Ok(Reply::Done), out);
            }
            Request::Replace {
                group,
                failed,
                probationary,
            } => {
                let r = self
                    .groups
                    .get_mut(group)
                    .map(|g| g.replace(failed, probationary));
                match r {
                    Some(Ok(ch)) => {
                        self.view_changed(group, ch, out);
                        let info = self.view(group);
                        self.reply(session, req, Ok(Reply::View(info)), out);
                    }
                    Some(Err(e)) => self.reply(session, req, Err(ErrorReply::Invalid(e)), out),
                    None => self.reply(
                        session,
                        req,
                        Err(ErrorReply::Invalid(format!("no group {group:?}"))),
                        out,
                    ),
                }
            }
            Request::WatchGroup { group } => {
                let w = self.watchers.entry(group.clone()).or_default();
                if w.len() >= crate::membership::MAX_MEMBERS && !w.contains(&session) {
                    let e = ErrorReply::Limit("too many watchers of this group".into());
                    self.reply(session, req, Err(e), out);
                    return;
                }
                w.insert(session);
                self.session_mut(session)
                    .more()
                    .groups
                    .insert(group.clone());
                let info = self.view(group);
                self.reply(session, req, Ok(Reply::View(info)), out);
            }
            Request::Open { .. }
            | Request::Heartbeat
            | Request::Status { .. }
            | Request::Master { .. }
            | Request::Revoke { .. }
            | Request::View { .. } => {
                unreachable!("prechecked")
            }
        }
    }

    /// The election `name`, created if new. A new election's master cache starts at the
    /// service's current revision, not at 0: a name dropped when nobody was left in it and
    /// used again must not go back to epochs older than what its members were told (they
    /// ignore older epochs, and would keep a master that is gone).
    fn election_entry(&mut self, name: &str) -> &mut Election {
        let revision = self.locks.revision();
        self.elections.entry(name.to_string()).or_insert_with(|| {
            let mut e = Election::default();
            e.set_master(None, revision);
            e
        })
    }

    fn session_mut(&mut self, session: SessionId) -> &mut Session {
        self.sessions.get_mut(&session).expect("checked")
    }

    fn end_session(&mut self, session: SessionId, out: &mut Vec<Output>) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        for (req, name) in s.awaiting() {
            if let Some(v) = self.awaiting.get_mut(name) {
                v.retain(|w| *w != (session, *req));
            }
        }
        for name in s.groups() {
            if let Some(w) = self.watchers.get_mut(name) {
                w.remove(&session);
                if w.is_empty() {
                    self.watchers.remove(name);
                }
            }
            let ch = self
                .groups
                .get_mut(name)
                .and_then(|g| g.remove_session(session));
            if let Some(ch) = ch {
                self.view_changed(name, ch, out);
            }
            if self.groups.get(name).is_some_and(|g| g.is_empty()) {
                self.groups.remove(name);
            }
        }
        for name in s.elections() {
            let Some(e) = self.elections.get_mut(name) else {
                continue;
            };
            if e.remove_session(session) {
                self.change_master(name, None, out);
            }
            self.touched.insert(name.clone());
            if self.elections.get(name).is_some_and(|e| e.is_empty()) {
                self.elections.remove(name);
            }
        }
        for (req, name) in s.waiting() {
            self.locks.remove_waiter(name, session, *req);
        }
        for name in &s.held {
            if let Some((token, _)) = self.locks.held_by(name, session) {
                let (_, next) = self.locks.release(name, session, token);
                if let Some(g) = next {
                    self.granted(g, out);
                }
            }
        }
        out.push(Output::SessionEnded { session });
    }
}

/// Checks a string of a request, as an error reply.
fn check(kind: Text, s: &str) -> Result<(), ErrorReply> {
    kind.check(s).map_err(ErrorReply::Invalid)
}

/// The room left in a status page.
struct Page {
    used: usize,
    budget: usize,
}

impl Page {
    /// Takes room for `row` if it fits (the first row of a page always does).
    fn fits<T: Serialize>(&mut self, row: &T) -> bool {
        let n = crate::proto::encoded_len(row).unwrap_or(usize::MAX);
        if self.used > 0 && self.used.saturating_add(n) > self.budget {
            return false;
        }
        self.used = self.used.saturating_add(n);
        true
    }
}

fn view_info(g: &Group) -> ViewInfo {
    ViewInfo {
        view: g.view(),
        members: g.members().map(|(id, m)| (id.clone(), m.full)).collect(),
    }
}

fn master_info(e: &Election) -> MasterInfo {
    MasterInfo {
        epoch: e.cache().epoch,
        master: e.master().map(|c| (c.id.clone(), c.endpoint.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(st: &mut State, req: u64) -> SessionId {
        let out = st.apply(&Command::Open { req, ttl_ms: 1000 });
        match &out[..] {
            [Output::SessionOpened { session, .. }, Output::Reply { .. }] => *session,
            o => panic!("{o:?}"),
        }
    }

    fn acquire(session: SessionId, req: u64, name: &str, wait: bool) -> Command {
        Command::Request {
            session,
            req,
            body: Request::Acquire {
                name: name.into(),
                wait,
            },
        }
    }

    fn token_of(out: &[Output], s: SessionId) -> Option<u64> {
        out.iter().find_map(|o| match o {
            Output::Reply {
                session,
                result: Ok(Reply::Granted { token, .. }),
                ..
            } if *session == s => Some(*token),
            _ => None,
        })
    }

    #[test]
    fn a_duplicated_request_is_applied_once() {
        let mut st = State::new();
        let a = open(&mut st, 1);
        let b = open(&mut st, 1);
        let cmd = acquire(a, 2, "x", true);
        let t1 = token_of(&st.apply(&cmd), a).unwrap();
        assert!(st.is_repeat(a, 2));
        let again = st.apply(&cmd);
        assert_eq!(token_of(&again, a), Some(t1), "same reply, no new grant");
        assert_eq!(st.locks().revision(), 1);
        // A waiting acquire sent twice is one waiter.
        assert!(st.apply(&acquire(b, 5, "x", true)).is_empty());
        assert!(st.apply(&acquire(b, 5, "x", true)).is_empty());
        assert_eq!(st.locks().get("x").unwrap().2, vec![b]);
        // A release sent twice releases once (the second does not touch b's grant).
        let rel = Command::Request {
            session: a,
            req: 3,
            body: Request::Release {
                name: "x".into(),
                token: t1,
            },
        };
        let out = st.apply(&rel);
        let tb = token_of(&out, b).unwrap();
        assert!(tb > t1);
        let out2 = st.apply(&rel);
        assert_eq!(out2.len(), 1);
        assert_eq!(st.locks().get("x").unwrap().0, b);
    }

    #[test]
    fn expiry_hands_locks_to_waiters_in_order() {
        let mut st = State::new();
        let a = open(&mut st, 1);
        let b = open(&mut st, 1);
        let c = open(&mut st, 1);
        st.apply(&acquire(a, 2, "x", true));
        st.apply(&acquire(b, 2, "x", true));
        st.apply(&acquire(c, 2, "x", true));
        let out = st.apply(&Command::Expire { session: a });
        assert!(token_of(&out, b).is_some());
        assert!(out.contains(&Output::SessionEnded { session: a }));
        assert!(!st.has_session(a));
        let out = st.apply(&Command::Request {
            session: b,
            req: 3,
            body: Request::Close,
        });
        assert!(token_of(&out, c).is_some());
        // Requests of an expired session are refused.
        let out = st.apply(&acquire(a, 9, "y", false));
        assert!(matches!(
            &out[..],
            [Output::Reply {
                result: Err(ErrorReply::UnknownSession),
                ..
            }]
        ));
    }

    #[test]
    fn cancel_removes_a_waiter_or_gives_back_a_grant() {
        let mut st = State::new();
        let a = open(&mut st, 1);
        let b = open(&mut st, 1);
        let t = token_of(&st.apply(&acquire(a, 2, "x", true)), a).unwrap();
        st.apply(&acquire(b, 2, "x", true));
        st.apply(&Command::Request {
            session: b,
            req: 3,
            body: Request::Cancel { target: 2 },
        });
        assert!(st.locks().get("x").unwrap().2.is_empty());
        // a cancels its own granted acquire: released.
        st.apply(&Command::Request {
            session: a,
            req: 3,
            body: Request::Cancel { target: 2 },
        });
        assert!(st.locks().get("x").is_none());
        let _ = t;
    }

    #[test]
    fn a_cancel_that_overtakes_its_acquire_leaves_nothing_held() {
        let mut st = State::new();
        let a = open(&mut st, 1);
        st.apply(&Command::Request {
            session: a,
            req: 3,
            body: Request::Cancel { target: 2 },
        });
        let out = st.apply(&acquire(a, 2, "x", true));
        assert!(token_of(&out, a).is_none(), "{out:?}");
        assert!(st.locks().get("x").is_none());
    }

    #[test]
    fn a_waiting_acquire_resent_after_the_reply_window_is_not_stale() {
        let mut st = State::new();
        let a = open(&mut st, 1);
        let b = open(&mut st, 1);
        st.apply(&acquire(a, 1, "x", true));
        assert!(st.apply(&acquire(b, 1, "x", true)).is_empty(), "b waits");
        for r in 2..(2 + REPLY_WINDOW as u64 + 5) {
            st.apply(&acquire(b, r, &format!("other{r}"), false));
        }
        let again = acquire(b, 1, "x", true);
        assert_eq!(st.precheck(&again), Ok(()));
        assert!(st.apply(&again).is_empty(), "still one waiter, no error");
        assert_eq!(st.locks().get("x").unwrap().2, vec![b]);
    }

    #[test]
    fn revoke_tells_the_holder_and_hands_over() {
        let mut st = State::new();
        let a = open(&mut st, 1);
        let b = open(&mut st, 1);
        let ta = token_of(&st.apply(&acquire(a, 2, "x", true)), a).unwrap();
        st.apply(&acquire(b, 2, "x", true));
        let out = st.apply(&Command::Revoke { name: "x".into() });
        assert!(out.contains(&Output::Notice {
            session: a,
            notice: Notice::LockRevoked {
                name: "x".into(),
                token: ta
            }
        }));
        assert!(token_of(&out, b).unwrap() > ta);
        assert_eq!(
            st.precheck(&Command::Revoke { name: "y".into() }),
            Err(ErrorReply::Invalid("no lock \"y\" is held".into()))
        );
    }

    #[test]
    fn bad_requests_get_errors_and_change_nothing() {
        let mut st = State::new();
        for ttl in [0, 10, MAX_TTL_MS + 1, u64::MAX] {
            let out = st.apply(&Command::Open {
                req: 1,
                ttl_ms: ttl,
            });
            assert!(matches!(
                &out[..],
                [Output::Reply {
                    result: Err(ErrorReply::Invalid(_)),
                    ..
                }]
            ));
        }
        let a = open(&mut st, 1);
        for name in ["", "a\0b", &"n".repeat(1025)] {
            let out = st.apply(&acquire(a, 7, name, false));
            assert!(matches!(
                &out[..],
                [Output::Reply {
                    result: Err(ErrorReply::Invalid(_)),
                    ..
                }]
            ));
        }
        assert_eq!(st.locks().revision(), 0);
    }

    #[test]
    fn replay_gives_the_same_state() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut log = vec![];
        let mut st = State::new();
        let mut sessions = vec![];
        for i in 0..2000u64 {
            let cmd = match rng.u8(0..10) {
                0 => Command::Open {
                    req: i,
                    ttl_ms: 1000,
                },
                1 if !sessions.is_empty() => Command::Expire {
                    session: sessions[rng.usize(..sessions.len())],
                },
                _ if !sessions.is_empty() => {
                    let s = sessions[rng.usize(..sessions.len())];
                    if rng.bool() {
                        acquire(s, i, &format!("l{}", rng.u8(0..4)), rng.bool())
                    } else {
                        let name = format!("l{}", rng.u8(0..4));
                        let token = st.locks().get(&name).map(|x| x.1).unwrap_or(0);
                        Command::Request {
                            session: s,
                            req: i,
                            body: Request::Release { name, token },
                        }
                    }
                }
                _ => continue,
            };
            for o in st.apply(&cmd) {
                if let Output::SessionOpened { session, .. } = o {
                    sessions.push(session);
                }
            }
            log.push(cmd);
        }
        let mut st2 = State::new();
        for c in &log {
            st2.apply(c);
        }
        assert_eq!(st.status(1), st2.status(1));
    }

    #[test]
    fn the_largest_row_of_each_kind_fits_a_status_page_within_a_frame() {
        use crate::proto::{
            encoded_len, ServerMsg, MAX_FRAME, MAX_ID_LEN, MAX_NAME_LEN, STATUS_PAGE_BYTES,
        };
        let name = "n".repeat(MAX_NAME_LEN);
        let id = |i: usize| format!("{i:05}{}", "i".repeat(MAX_ID_LEN - 5));
        let lock = LockInfo {
            name: name.clone(),
            holder: u64::MAX,
            token: u64::MAX,
            waiters: vec![u64::MAX; crate::lock::MAX_WAITERS],
        };
        let election = ElectionInfo {
            name: name.clone(),
            master: MasterInfo {
                epoch: u64::MAX,
                master: Some((id(0), Some("e".repeat(crate::proto::MAX_ENDPOINT_LEN)))),
            },
            candidates: (0..crate::election::MAX_CANDIDATES)
                .map(|i| (id(i), i64::MIN, u64::MAX))
                .collect(),
        };
        let group = (
            name.clone(),
            ViewInfo {
                view: u64::MAX,
                members: (0..crate::membership::MAX_MEMBERS)
                    .map(|i| (id(i), true))
                    .collect(),
            },
        );
        let rows = [
            encoded_len(&lock).unwrap(),
            encoded_len(&election).unwrap(),
            encoded_len(&group).unwrap(),
        ];
        for n in rows {
            assert!(n <= STATUS_PAGE_BYTES, "a row of {n} bytes");
        }
        // A page holding the largest row, with the largest cursor, fits in a frame.
        for i in 0..3 {
            let mut st = StatusInfo {
                incarnation: u128::MAX,
                revision: u64::MAX,
                next: Some(StatusCursor::Groups(name.clone())),
                ..Default::default()
            };
            match i {
                0 => st.locks.push(lock.clone()),
                1 => st.elections.push(election.clone()),
                _ => st.groups.push(group.clone()),
            }
            let msg = ServerMsg::Reply {
                session: u64::MAX,
                req: u64::MAX,
                result: Ok(Reply::Status(st)),
            };
            let mut b = Vec::new();
            crate::proto::encode(&msg, &mut b).expect("fits in a frame");
            assert!(b.len() <= MAX_FRAME + 4);
        }
        // A view sent whole in a notice fits too.
        let notice = ServerMsg::Notice {
            session: u64::MAX,
            notice: Notice::ViewChanged {
                group: name,
                info: group.1,
            },
        };
        assert!(encoded_len(&notice).unwrap() <= MAX_FRAME);
    }

    #[test]
    fn status_pages_cover_everything_once_in_order() {
        let mut st = State::new();
        let sessions: Vec<_> = (0..3000).map(|i| open(&mut st, i)).collect();
        for (i, s) in sessions.iter().enumerate().take(500) {
            let name = format!("{i:04}{}", "x".repeat(1000));
            st.apply(&acquire(*s, 10_000, &name, false));
        }
        let whole = st.status(7);
        // Small pages (4 KiB): many of them, each within its budget, together the whole.
        let mut all = StatusInfo::default();
        let mut from = None;
        let mut pages = 0;
        loop {
            let p = st.status_page(7, from.as_ref(), 4096);
            pages += 1;
            let rows = crate::proto::encoded_len(&p.sessions).unwrap()
                + crate::proto::encoded_len(&p.locks).unwrap();
            assert!(rows <= 4096 + 16 + 1100, "page of {rows} bytes");
            all.sessions.extend(p.sessions);
            all.locks.extend(p.locks);
            all.elections.extend(p.elections);
            all.groups.extend(p.groups);
            match p.next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        assert!(pages > 100, "{pages} pages");
        all.incarnation = 7;
        all.revision = whole.revision;
        assert_eq!(all, whole);
    }
}

#[cfg(test)]
mod session_format {
    use super::*;

    /// Snapshots store a session in the layout it had before its rarely used parts were boxed:
    /// both forms encode to the same bytes, and decoding boxes only what is not empty.
    #[test]
    fn sessions_keep_their_snapshot_format() {
        let mut waiting = BTreeMap::new();
        waiting.insert(7, "jobs/a".to_string());
        let rec = SessionRecord {
            ttl_ms: 3000,
            replies: VecDeque::new(),
            held: ["jobs/b".to_string()].into_iter().collect(),
            waiting,
            elections: ["db".to_string()].into_iter().collect(),
            awaiting: BTreeMap::new(),
            groups: BTreeSet::new(),
        };
        let bytes = bincode::serialize(&rec).unwrap();
        let s: Session = bincode::deserialize(&bytes).unwrap();
        assert_eq!(s.waiting().get(&7).map(String::as_str), Some("jobs/a"));
        assert!(s.elections().contains("db") && s.groups().is_empty());
        assert_eq!(bincode::serialize(&s).unwrap(), bytes);
        // A session with nothing but held locks has nothing boxed, and encodes the same.
        let plain = SessionRecord {
            ttl_ms: 1000,
            held: ["x".to_string()].into_iter().collect(),
            ..SessionRecord::default()
        };
        let bytes = bincode::serialize(&plain).unwrap();
        let s: Session = bincode::deserialize(&bytes).unwrap();
        assert!(s.more.is_none());
        assert_eq!(bincode::serialize(&s).unwrap(), bytes);
    }
}
