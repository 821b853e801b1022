//! Sessions in the state machine: opening, closing and expiring them, and the at-most-once
//! window of replies each one keeps.
//!
//! Rules kept here:
//! - A session opens with a TTL within [`MIN_TTL_MS`]..=[`MAX_TTL_MS`]; at most
//!   [`MAX_SESSIONS`] exist.
//! - Ending a session (close or expiry) releases its locks, handing each to its first waiter,
//!   drops its waiting requests, and takes it out of its elections and groups.
//! - At-most-once: a session remembers the replies to its last [`REPLY_WINDOW`] state-changing
//!   requests. A request id seen before gets the remembered reply and changes nothing; a
//!   waiting request sent again stays one waiter; an id older than the window gets `Stale`.

use super::{Output, State, MAX_SESSIONS, REPLY_WINDOW};
use crate::proto::{ErrorReply, Reply, Request, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A session as the state machine keeps it. What most sessions never use (queued acquires,
/// elections, groups) is boxed apart: a session that only holds locks, or nothing, costs
/// 88 bytes less in the session table (issue 7 measures the server's memory per session). On
/// disk a session is still a [`SessionRecord`], so logs and snapshots keep their format.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "SessionRecord", into = "SessionRecord")]
pub(super) struct Session {
    pub(super) ttl_ms: u64,
    replies: VecDeque<(u64, Result<Reply, ErrorReply>)>,
    /// Held locks (name).
    pub(super) held: BTreeSet<String>,
    /// The rest, when the session has any of it.
    pub(super) more: Option<Box<SessionMore>>,
}

/// The parts of a session few sessions use.
#[derive(Debug, Clone, Default)]
pub(super) struct SessionMore {
    /// Waiting acquires: request id -> name.
    pub(super) waiting: BTreeMap<u64, String>,
    /// Elections this session takes part in (as candidate or observer).
    pub(super) elections: BTreeSet<String>,
    /// Election requests waiting for a designation: request id -> election.
    pub(super) awaiting: BTreeMap<u64, String>,
    /// Groups this session is a member or watcher of.
    pub(super) groups: BTreeSet<String>,
}

/// A session as snapshots store it (the layout of [`Session`] before its rarely used parts
/// were boxed; kept so that existing data directories still load).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct SessionRecord {
    pub(super) ttl_ms: u64,
    pub(super) replies: VecDeque<(u64, Result<Reply, ErrorReply>)>,
    pub(super) held: BTreeSet<String>,
    pub(super) waiting: BTreeMap<u64, String>,
    #[serde(default)]
    pub(super) elections: BTreeSet<String>,
    #[serde(default)]
    pub(super) awaiting: BTreeMap<u64, String>,
    #[serde(default)]
    pub(super) groups: BTreeSet<String>,
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
    pub(super) fn waiting(&self) -> &BTreeMap<u64, String> {
        self.more.as_ref().map_or(&NO_REQUESTS, |m| &m.waiting)
    }
    pub(super) fn awaiting(&self) -> &BTreeMap<u64, String> {
        self.more.as_ref().map_or(&NO_REQUESTS, |m| &m.awaiting)
    }
    pub(super) fn elections(&self) -> &BTreeSet<String> {
        self.more.as_ref().map_or(&NO_NAMES, |m| &m.elections)
    }
    pub(super) fn groups(&self) -> &BTreeSet<String> {
        self.more.as_ref().map_or(&NO_NAMES, |m| &m.groups)
    }
    /// The boxed parts, made when first needed.
    pub(super) fn more(&mut self) -> &mut SessionMore {
        self.more.get_or_insert_with(Default::default)
    }
    pub(super) fn take_waiting(&mut self, req: &u64) -> Option<String> {
        self.more.as_mut()?.waiting.remove(req)
    }
    pub(super) fn take_awaiting(&mut self, req: &u64) -> Option<String> {
        self.more.as_mut()?.awaiting.remove(req)
    }
    pub(super) fn remembered(&self, req: u64) -> Option<&Result<Reply, ErrorReply>> {
        self.replies.iter().find(|(r, _)| *r == req).map(|(_, x)| x)
    }
    pub(super) fn remember(&mut self, req: u64, result: Result<Reply, ErrorReply>) {
        if self.replies.len() >= REPLY_WINDOW {
            self.replies.pop_front();
        }
        self.replies.push_back((req, result));
    }
    /// Whether `req` was applied already (answered, or still waiting for a grant or a
    /// designation): applying it again must change nothing.
    pub(super) fn is_repeat(&self, req: u64) -> bool {
        self.remembered(req).is_some()
            || self.waiting().contains_key(&req)
            || self.awaiting().contains_key(&req)
    }
    /// Whether `req`, not a repeat, is older than the reply window: it may have been applied
    /// and forgotten, so it must not be applied now.
    pub(super) fn too_old(&self, req: u64) -> bool {
        self.replies.len() >= REPLY_WINDOW && self.replies.front().is_some_and(|(r, _)| req < *r)
    }
}

impl State {
    pub(super) fn check_open(&self, ttl_ms: u64) -> Result<(), ErrorReply> {
        super::check_ttl(ttl_ms).map_err(ErrorReply::Invalid)?;
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(ErrorReply::Limit(format!(
                "the server holds {MAX_SESSIONS} sessions already"
            )));
        }
        Ok(())
    }

    pub(super) fn open(&mut self, req: u64, ttl_ms: u64, out: &mut Vec<Output>) {
        self.next_session += 1;
        let id = self.next_session;
        self.sessions.insert(
            id,
            Session {
                ttl_ms,
                ..Default::default()
            },
        );
        out.push(Output::SessionOpened {
            session: id,
            ttl_ms,
        });
        out.push(Output::Reply {
            session: id,
            req,
            result: Ok(Reply::Opened {
                session: id,
                ttl_ms,
            }),
        });
    }

    /// The session a request names, if it may be applied: `Ok(None)` for a repeat (applied
    /// already), `Err` for an unknown session or a request older than the reply window.
    pub(super) fn check_session(
        &self,
        session: SessionId,
        req: u64,
    ) -> Result<Option<&Session>, ErrorReply> {
        let s = self
            .sessions
            .get(&session)
            .ok_or(ErrorReply::UnknownSession)?;
        if s.is_repeat(req) {
            Ok(None)
        } else if s.too_old(req) {
            Err(ErrorReply::Stale)
        } else {
            Ok(Some(s))
        }
    }

    /// Answers a repeated request: the remembered reply, or nothing while it still waits.
    pub(super) fn answer_repeat(
        &mut self,
        session: SessionId,
        req: u64,
        body: &Request,
        out: &mut Vec<Output>,
    ) {
        let Some(r) = self.sessions.get(&session).and_then(|s| s.remembered(req)) else {
            return; // still waiting; the grant or designation will answer it
        };
        let result = match (body, r) {
            // A retried election request gets the master cache as it is now: the remembered
            // one may be older than what the client was told since.
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
    }

    /// Answers request `req` of `session` and remembers the answer in its reply window.
    pub(super) fn reply(
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

    pub(super) fn check_expire(&self, session: SessionId) -> Result<(), ErrorReply> {
        if self.sessions.contains_key(&session) {
            Ok(())
        } else {
            Err(ErrorReply::UnknownSession)
        }
    }

    /// The session asked to close: answered before it ends (its pushes come after).
    pub(super) fn close(&mut self, session: SessionId, req: u64, out: &mut Vec<Output>) {
        out.push(Output::Reply {
            session,
            req,
            result: Ok(Reply::Done),
        });
        self.end_session(session, out);
    }

    /// Ends a session (closed or expired): out of its groups and elections, its waiting
    /// requests dropped, its locks handed over.
    pub(super) fn end_session(&mut self, session: SessionId, out: &mut Vec<Output>) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        self.leave_groups(session, s.groups(), out);
        self.leave_elections(session, s.elections(), s.awaiting(), out);
        for (req, name) in s.waiting() {
            self.locks.remove_waiter(name, session, *req);
        }
        for name in &s.held {
            if let Some((token, _)) = self.locks.held_by(name, session) {
                self.release_and_hand_over(name, session, token, out);
            }
        }
        out.push(Output::SessionEnded { session });
    }

    pub(super) fn session_mut(&mut self, session: SessionId) -> &mut Session {
        self.sessions.get_mut(&session).expect("checked")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
