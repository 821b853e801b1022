//! The server's state machine: a deterministic function of its command log (SPEC 2.2).
//!
//! Every change to the durable state of the service is a [`Command`]; [`State::apply`] applies
//! one and says what to answer ([`Output`]). Nothing here reads a clock or touches a socket:
//! decisions that depend on time (a session expired) are taken by the serving node (see
//! [`super::liveness`]) and enter the log as [`Command::Expire`], so replaying the log gives the
//! same state, the same grants and the same fencing tokens.
//!
//! Each check of a command runs once ([`State::execute`]), beside its application in the
//! module of its domain:
//! - `sessions`: open, close, expiry, and the at-most-once window of replies;
//! - `locks`: acquire, release, cancel, revoke, and the one release-and-hand-over;
//! - `elections`: campaign, resign, observe, designations and master changes;
//! - `groups`: join, leave, checks, replacement, watching and promotions.
//!
//! The limits the state enforces are defined here, once.

mod elections;
mod groups;
mod locks;
mod sessions;

use super::members::MemberRecord;
use crate::election::{Candidate, Election};
use crate::lock::LockTable;
use crate::membership::{Group, MemberRec};
use crate::proto::{
    ElectionInfo, ErrorReply, LockInfo, MasterInfo, Notice, Reply, Request, SessionId, SessionInfo,
    StatusCursor, StatusInfo, Text, ViewInfo,
};
use serde::{Deserialize, Serialize};
use sessions::Session;
use std::collections::{BTreeMap, BTreeSet};

/// Shortest session TTL accepted, in milliseconds.
pub const MIN_TTL_MS: u64 = 50;
/// Longest session TTL accepted, in milliseconds (one day).
pub const MAX_TTL_MS: u64 = 86_400_000;

/// Checks a session TTL asked for in an open (the server's rule, which the etcd backend's
/// gateway applies too).
pub fn check_ttl(ttl_ms: u64) -> Result<(), String> {
    if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(format!(
            "session TTL {ttl_ms} ms is outside {MIN_TTL_MS}..={MAX_TTL_MS} ms"
        ))
    }
}
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

/// What [`State::execute`] did with a command that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// What to answer and whom to tell.
    pub outputs: Vec<Output>,
    /// The command was a repeat of a request applied already: it changed nothing and is not
    /// logged (its answer is the remembered one).
    pub repeat: bool,
}

impl Command {
    /// The session and request a command answers, if a client asked for it.
    pub fn asker(&self) -> Option<(SessionId, u64)> {
        match self {
            Command::Open { req, .. } => Some((0, *req)),
            Command::Request { session, req, .. } => Some((*session, *req)),
            Command::Expire { .. }
            | Command::Designate { .. }
            | Command::Promote { .. }
            | Command::StepDown { .. }
            | Command::Revoke { .. } => None,
        }
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
    /// The tenure group's members added by configuration changes (their addresses), kept
    /// here so that snapshots carry them ([`super::members`]). Changed by applied
    /// configuration changes, not by commands.
    #[serde(default)]
    members: BTreeMap<u64, MemberRecord>,
}

impl State {
    /// The members added by configuration changes, with their records.
    pub fn member_records(&self) -> &BTreeMap<u64, MemberRecord> {
        &self.members
    }

    /// A configuration change added member `id` (or changed its record).
    pub fn set_member_record(&mut self, id: u64, record: MemberRecord) {
        self.members.insert(id, record);
    }

    /// Keeps the records of the members still in the configuration only.
    pub fn retain_member_records(&mut self, keep: impl Fn(u64) -> bool) {
        self.members.retain(|id, _| keep(*id));
    }

    /// Checks a command once and, if it passes, applies it. `Err` is the reply to give
    /// instead: nothing changed, and the command must not be logged. `Ok` commands are logged
    /// unless [`Applied::repeat`].
    pub fn execute(&mut self, cmd: &Command) -> Result<Applied, ErrorReply> {
        let repeat = !self.check(cmd)?;
        let mut outputs = Vec::new();
        match cmd {
            Command::Request { session, req, body } if repeat => {
                self.answer_repeat(*session, *req, body, &mut outputs)
            }
            cmd => self.apply_checked(cmd, &mut outputs),
        }
        Ok(Applied { outputs, repeat })
    }

    /// Applies one command of the log. Deterministic: the same commands in the same order
    /// always give the same state and outputs. A command that fails its check changes nothing
    /// (a log written by an older node, or a racing expiry) and is answered with the error,
    /// as the serving node would have.
    pub fn apply(&mut self, cmd: &Command) -> Vec<Output> {
        match self.execute(cmd) {
            Ok(a) => a.outputs,
            Err(result) => match cmd.asker() {
                Some((session, req)) => vec![Output::Reply {
                    session,
                    req,
                    result: Err(result),
                }],
                None => vec![],
            },
        }
    }

    /// Every check of a command, run once: `Ok(true)` when it may be applied, `Ok(false)` for
    /// a repeat of a request applied already.
    fn check(&self, cmd: &Command) -> Result<bool, ErrorReply> {
        match cmd {
            Command::Open { ttl_ms, .. } => self.check_open(*ttl_ms)?,
            Command::Expire { session } => self.check_expire(*session)?,
            Command::Designate { election, .. } => self.check_designate(election)?,
            Command::StepDown { election } => self.check_step_down(election)?,
            Command::Revoke { name } => self.check_revoke(name)?,
            Command::Promote { group, member } => self.check_promote(group, member)?,
            Command::Request { session, req, body } => {
                let Some(s) = self.check_session(*session, *req)? else {
                    return Ok(false);
                };
                self.check_request(*session, s, body)?
            }
        }
        Ok(true)
    }

    /// The checks of a session's request that is not a repeat.
    fn check_request(
        &self,
        id: SessionId,
        session: &Session,
        body: &Request,
    ) -> Result<(), ErrorReply> {
        match body {
            Request::Acquire { name, .. } => self.check_acquire(session, name),
            Request::Release { name, .. } => self.check_release(name),
            Request::Cancel { .. } | Request::Close => Ok(()),
            Request::Campaign {
                election,
                id: candidate,
                endpoint,
                ..
            } => self.check_campaign(id, election, candidate, endpoint.as_deref()),
            Request::Resign {
                election,
                id: candidate,
            } => self.check_resign(id, election, candidate),
            Request::Observe { election } | Request::RequestElection { election } => {
                self.check_election_name(election)
            }
            Request::Join {
                group,
                id: member,
                probation_ms,
                ..
            } => self.check_join(id, group, member, *probation_ms),
            Request::Leave { group, id: member } => self.check_member(id, group, member, false),
            Request::ReportCheck {
                group, id: member, ..
            } => self.check_member(id, group, member, true),
            Request::Replace {
                group,
                failed,
                probationary,
            } => self.check_replace(group, failed, probationary),
            Request::WatchGroup { group } => self.check_watch(id, group),
            Request::Open { .. }
            | Request::Heartbeat
            | Request::Status { .. }
            | Request::Master { .. }
            | Request::Revoke { .. }
            | Request::ChangeMembers { .. }
            | Request::View { .. } => Err(ErrorReply::Invalid(
                "this request does not change state".into(),
            )),
        }
    }

    /// Applies a command that passed [`State::check`] and is not a repeat.
    fn apply_checked(&mut self, cmd: &Command, out: &mut Vec<Output>) {
        match cmd {
            Command::Open { req, ttl_ms } => self.open(*req, *ttl_ms, out),
            Command::Request { session, req, body } => self.request(*session, *req, body, out),
            Command::Expire { session } => self.end_session(*session, out),
            Command::Designate {
                election,
                candidate,
            } => self.designate(election, candidate.as_deref(), out),
            Command::StepDown { election } => self.change_master(election, None, out),
            Command::Revoke { name } => self.revoke(name, out),
            Command::Promote { group, member } => self.promote(group, member, out),
        }
    }

    fn request(&mut self, session: SessionId, req: u64, body: &Request, out: &mut Vec<Output>) {
        match body {
            Request::Acquire { name, wait } => self.acquire(session, req, name, *wait, out),
            Request::Release { name, token } => self.release(session, req, name, *token, out),
            Request::Cancel { target } => self.cancel(session, req, *target, out),
            Request::Close => self.close(session, req, out),
            Request::Campaign {
                election,
                id,
                priority,
                endpoint,
                preempt,
            } => {
                let c = Candidate {
                    id: id.clone(),
                    priority: *priority,
                    endpoint: endpoint.clone(),
                    session,
                };
                self.campaign(session, req, election, c, *preempt, out)
            }
            Request::Resign { election, id } => self.resign(session, req, election, id, out),
            Request::Observe { election } => self.observe(session, req, election, out),
            Request::RequestElection { election } => {
                self.request_election(session, req, election, out)
            }
            Request::Join {
                group,
                id,
                probation_ms,
                needs_check,
            } => {
                let rec = MemberRec {
                    session,
                    full: false,
                    probation_ms: *probation_ms,
                    needs_check: *needs_check,
                    check_passed: false,
                };
                self.join(session, req, group, id, rec, out)
            }
            Request::Leave { group, id } => self.leave(session, req, group, id, out),
            Request::ReportCheck { group, id, ok } => {
                self.report_check(session, req, group, id, *ok, out)
            }
            Request::Replace {
                group,
                failed,
                probationary,
            } => self.replace(session, req, group, failed, probationary, out),
            Request::WatchGroup { group } => self.watch(session, req, group, out),
            Request::Open { .. }
            | Request::Heartbeat
            | Request::Status { .. }
            | Request::Master { .. }
            | Request::Revoke { .. }
            | Request::ChangeMembers { .. }
            | Request::View { .. } => unreachable!("refused by the check"),
        }
    }
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
    g.info()
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
    fn an_election_request_is_answered_once_no_designation_is_needed() {
        let req = |session, req, body| Command::Request { session, req, body };
        let campaign = |id: &str| Request::Campaign {
            election: "e".into(),
            id: id.into(),
            priority: 1,
            endpoint: None,
            preempt: false,
        };
        let asked = |out: &[Output], s: SessionId, r: u64| {
            out.iter().find_map(|o| match o {
                Output::Reply {
                    session,
                    req,
                    result: Ok(Reply::Master(info)),
                } if *session == s && *req == r => Some(info.clone()),
                _ => None,
            })
        };
        // Every candidate resigns before the serving node designates one: the request is
        // answered, with no master, instead of waiting out its timeout.
        let mut st = State::new();
        let (a, b) = (open(&mut st, 1), open(&mut st, 1));
        st.apply(&req(a, 2, campaign("c1")));
        let out = st.apply(&req(
            b,
            2,
            Request::RequestElection {
                election: "e".into(),
            },
        ));
        assert!(asked(&out, b, 2).is_none(), "waits for the designation");
        let resign = Request::Resign {
            election: "e".into(),
            id: "c1".into(),
        };
        let out = st.apply(&req(a, 3, resign));
        assert!(
            asked(&out, b, 2).is_some_and(|m| m.master.is_none()),
            "{out:?}"
        );
        // Its candidate's session ends instead: the same.
        let (a, b) = (open(&mut st, 1), open(&mut st, 1));
        st.apply(&req(a, 2, campaign("c2")));
        st.apply(&req(
            b,
            2,
            Request::RequestElection {
                election: "e".into(),
            },
        ));
        let out = st.apply(&Command::Expire { session: a });
        assert!(
            asked(&out, b, 2).is_some_and(|m| m.master.is_none()),
            "{out:?}"
        );
        // A designation that went stale (its candidate left, another stays) keeps it waiting;
        // the next one answers it.
        let (a, b) = (open(&mut st, 1), open(&mut st, 1));
        st.apply(&req(a, 2, campaign("c3")));
        st.apply(&req(a, 3, campaign("c4")));
        st.apply(&req(
            b,
            2,
            Request::RequestElection {
                election: "e".into(),
            },
        ));
        let resign = Request::Resign {
            election: "e".into(),
            id: "c3".into(),
        };
        st.apply(&req(a, 4, resign));
        let mut out = Vec::new();
        st.designate("e", Some("c3"), &mut out);
        assert!(asked(&out, b, 2).is_none(), "{out:?}");
        st.designate("e", Some("c4"), &mut out);
        let m = asked(&out, b, 2)
            .and_then(|m| m.master)
            .expect("designated");
        assert_eq!(m.0, "c4");
    }

    #[test]
    fn a_duplicated_request_is_applied_once() {
        let mut st = State::new();
        let a = open(&mut st, 1);
        let b = open(&mut st, 1);
        let cmd = acquire(a, 2, "x", true);
        let t1 = token_of(&st.apply(&cmd), a).unwrap();
        let again = st.execute(&cmd).unwrap();
        assert!(again.repeat, "not logged again");
        assert_eq!(
            token_of(&again.outputs, a),
            Some(t1),
            "same reply, no new grant"
        );
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
        let applied = st.execute(&again).unwrap();
        assert!(
            applied.repeat && applied.outputs.is_empty(),
            "still one waiter, no error"
        );
        assert_eq!(st.locks().get("x").unwrap().2, vec![b]);
    }

    #[test]
    fn a_repeat_is_answered_before_any_other_check() {
        // A session at its lock limit resends the acquire it waits on: a repeat, not a
        // refusal (the limit counts that acquire already).
        let mut st = State::new();
        let a = open(&mut st, 1);
        let b = open(&mut st, 1);
        st.apply(&acquire(a, 1, "x", false));
        assert!(st.apply(&acquire(b, 1, "x", true)).is_empty(), "b waits");
        for r in 2..(MAX_LOCKS_PER_SESSION as u64 + 1) {
            st.apply(&acquire(b, r, &format!("l{r}"), false));
        }
        let over = acquire(b, MAX_LOCKS_PER_SESSION as u64 + 1, "y", false);
        assert!(matches!(st.execute(&over), Err(ErrorReply::Limit(_))));
        let again = st.execute(&acquire(b, 1, "x", true)).unwrap();
        assert!(again.repeat && again.outputs.is_empty());
        // A refused command changes nothing: the next one is applied as if it never came.
        let rev = st.locks().revision();
        assert!(st.execute(&over).is_err());
        assert_eq!(st.locks().revision(), rev);
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
            st.execute(&Command::Revoke { name: "y".into() }),
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
