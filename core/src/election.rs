//! Priority elections (SPEC 3.3, seed 001): candidates, the master cache, and how a master is
//! designated. Pure data and rules: no I/O, no time. The server's state machine keeps one
//! [`Election`] per name and applies commands to it; the server runtime performs the
//! connectivity checks that [`Election::next_step`] asks for and logs the outcome as a
//! designation, so replicas replay the same masters and epochs.
//!
//! Rules, all here:
//! - Candidates register with an id, a priority and an optional endpoint, under a session;
//!   the registrations are the election's configuration. The session's end ends them.
//! - Candidates are ordered by priority, highest first, ties by id (ascending).
//! - The master cache holds the current master and its epoch. Every change of master
//!   (including "no master") takes a new epoch from the service's revision, so epochs
//!   strictly increase and double as fencing tokens for the master's writes.
//! - A designation is needed when there is no master and there are candidates, or when the
//!   election prefers higher priorities (`preempt`) and a candidate outranks the master.
//!   Otherwise a live master is kept: asking for an election returns it from the cache.
//! - A preemption never runs two masters at once: the master first steps down (the cache is
//!   cleared with a new epoch and everyone is told), and the successor is designated only
//!   once the old master's TTL has passed, by when the old master has either been told or
//!   seen its lease end. After a server restart, designations likewise wait for the longest
//!   TTL of the election's candidates. (Applied by the server runtime.)
//! - Designation walks the candidates in order: one without an endpoint is designated on the
//!   strength of its session being live; one with an endpoint is designated only if a
//!   connectivity check (a connection to the endpoint) succeeds; a candidate that fails is
//!   skipped in this round.

use crate::proto::SessionId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most candidates in one election: with ids of up to [`crate::proto::MAX_ID_LEN`] bytes,
/// an election's row in a status page stays within [`crate::proto::STATUS_PAGE_BYTES`].
pub const MAX_CANDIDATES: usize = 2_000;
/// Most observers of one election.
pub const MAX_OBSERVERS: usize = 10_000;

/// One registered candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Candidate id, unique in its election.
    pub id: String,
    /// Priority: higher wins.
    pub priority: i64,
    /// How to reach it (`host:port`), checked before it is designated.
    pub endpoint: Option<String>,
    /// The session it lives under.
    pub session: SessionId,
}

/// The master cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MasterCache {
    /// The master's candidate id, if there is a master.
    pub master: Option<String>,
    /// Epoch of the last change (0 before the first).
    pub epoch: u64,
}

/// What to do next to designate a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the master stays (or there are no candidates and no master).
    Keep,
    /// Designate this candidate now (no endpoint: its live session is the check).
    Designate(String),
    /// Check connectivity to this candidate's endpoint, then report the outcome.
    Check {
        /// Candidate id.
        id: String,
        /// Its endpoint.
        endpoint: String,
    },
    /// Every eligible candidate failed its check in this round: clear the master if it is
    /// one of them (it is unreachable), else keep it.
    NoneReachable,
}

/// One election.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Election {
    candidates: BTreeMap<String, Candidate>,
    cache: MasterCache,
    preempt: bool,
    observers: BTreeSet<SessionId>,
}

impl Election {
    /// The master cache.
    pub fn cache(&self) -> &MasterCache {
        &self.cache
    }

    /// The current master's registration.
    pub fn master(&self) -> Option<&Candidate> {
        self.cache
            .master
            .as_ref()
            .and_then(|m| self.candidates.get(m))
    }

    /// Whether the election prefers higher priorities over a live master.
    pub fn preempt(&self) -> bool {
        self.preempt
    }

    /// Candidates in designation order: priority descending, then id ascending.
    pub fn ordered(&self) -> Vec<&Candidate> {
        let mut v: Vec<&Candidate> = self.candidates.values().collect();
        v.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// A candidate by id.
    pub fn candidate(&self, id: &str) -> Option<&Candidate> {
        self.candidates.get(id)
    }

    /// Sessions to notify of a change: every candidate's and every observer's.
    pub fn audience(&self) -> BTreeSet<SessionId> {
        let mut s: BTreeSet<SessionId> = self.candidates.values().map(|c| c.session).collect();
        s.extend(self.observers.iter().copied());
        s
    }

    /// True when nothing is left to keep (no candidate, no observer, no master).
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty() && self.observers.is_empty() && self.cache.master.is_none()
    }

    /// Registers (or updates) a candidate. `preempt` set by any candidate makes the election
    /// prefer higher priorities.
    pub fn register(&mut self, c: Candidate, preempt: bool) -> Result<(), String> {
        if let Some(old) = self.candidates.get(&c.id) {
            if old.session != c.session {
                return Err(format!(
                    "candidate id {:?} is registered by another session",
                    c.id
                ));
            }
        } else if self.candidates.len() >= MAX_CANDIDATES {
            return Err(format!("an election may have {MAX_CANDIDATES} candidates"));
        }
        self.preempt |= preempt;
        self.candidates.insert(c.id.clone(), c);
        Ok(())
    }

    /// Adds an observer session.
    pub fn observe(&mut self, s: SessionId) -> Result<(), String> {
        if !self.observers.contains(&s) && self.observers.len() >= MAX_OBSERVERS {
            return Err(format!("an election may have {MAX_OBSERVERS} observers"));
        }
        self.observers.insert(s);
        Ok(())
    }

    /// Removes a candidate. True when it was the master (the cache must then be cleared).
    pub fn remove(&mut self, id: &str) -> bool {
        self.candidates.remove(id);
        self.cache.master.as_deref() == Some(id)
    }

    /// Removes everything of a session; true when the master was among it.
    pub fn remove_session(&mut self, s: SessionId) -> bool {
        self.observers.remove(&s);
        let gone: Vec<String> = self
            .candidates
            .values()
            .filter(|c| c.session == s)
            .map(|c| c.id.clone())
            .collect();
        let mut master_gone = false;
        for id in gone {
            master_gone |= self.remove(&id);
        }
        master_gone
    }

    /// Sets the master cache to `master` with a new `epoch`.
    pub fn set_master(&mut self, master: Option<String>, epoch: u64) {
        self.cache = MasterCache { master, epoch };
    }

    /// True when a designation should run (see the module rules).
    pub fn needs_designation(&self) -> bool {
        match self.master() {
            None => !self.candidates.is_empty(),
            Some(m) => {
                self.preempt
                    && self
                        .ordered()
                        .first()
                        .is_some_and(|top| top.id != m.id && top.priority > m.priority)
            }
        }
    }

    /// The next step of a designation, skipping candidates in `failed` (those whose check
    /// failed in this round).
    pub fn next_step(&self, failed: &BTreeSet<String>) -> Step {
        if !self.needs_designation() {
            return Step::Keep;
        }
        let current = self.master().map(|m| m.id.clone());
        for c in self.ordered() {
            if failed.contains(&c.id) {
                continue;
            }
            if Some(&c.id) == current.as_ref() {
                // Preemption found nobody above the master who answers: keep it.
                return Step::Keep;
            }
            return match &c.endpoint {
                None => Step::Designate(c.id.clone()),
                Some(e) => Step::Check {
                    id: c.id.clone(),
                    endpoint: e.clone(),
                },
            };
        }
        Step::NoneReachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, priority: i64, session: SessionId, endpoint: Option<&str>) -> Candidate {
        Candidate {
            id: id.into(),
            priority,
            endpoint: endpoint.map(Into::into),
            session,
        }
    }

    #[test]
    fn order_is_priority_then_id() {
        let mut e = Election::default();
        e.register(cand("b", 5, 1, None), false).unwrap();
        e.register(cand("a", 5, 2, None), false).unwrap();
        e.register(cand("z", 9, 3, None), false).unwrap();
        e.register(cand("c", 1, 4, None), false).unwrap();
        let ids: Vec<&str> = e.ordered().iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["z", "a", "b", "c"]);
        assert_eq!(e.next_step(&BTreeSet::new()), Step::Designate("z".into()));
    }

    #[test]
    fn a_live_master_is_kept_unless_preempt() {
        let mut e = Election::default();
        e.register(cand("low", 1, 1, None), false).unwrap();
        e.set_master(Some("low".into()), 1);
        e.register(cand("high", 3, 2, None), false).unwrap();
        assert!(!e.needs_designation());
        assert_eq!(e.next_step(&BTreeSet::new()), Step::Keep);
        e.register(cand("higher", 4, 3, None), true).unwrap();
        assert!(e.needs_designation());
        assert_eq!(
            e.next_step(&BTreeSet::new()),
            Step::Designate("higher".into())
        );
    }

    #[test]
    fn unreachable_candidates_are_skipped() {
        let mut e = Election::default();
        e.register(cand("a", 9, 1, Some("10.0.0.1:1")), false)
            .unwrap();
        e.register(cand("b", 5, 2, Some("127.0.0.1:9")), false)
            .unwrap();
        e.register(cand("c", 1, 3, None), false).unwrap();
        let mut failed = BTreeSet::new();
        assert!(matches!(e.next_step(&failed), Step::Check { ref id, .. } if id == "a"));
        failed.insert("a".to_string());
        assert!(matches!(e.next_step(&failed), Step::Check { ref id, .. } if id == "b"));
        failed.insert("b".to_string());
        assert_eq!(e.next_step(&failed), Step::Designate("c".into()));
        e.remove("c");
        assert_eq!(e.next_step(&failed), Step::NoneReachable);
    }

    #[test]
    fn session_end_removes_its_candidacies_and_reports_the_master() {
        let mut e = Election::default();
        e.register(cand("m", 2, 7, None), false).unwrap();
        e.register(cand("n", 1, 8, None), false).unwrap();
        e.observe(9).unwrap();
        e.set_master(Some("m".into()), 3);
        assert_eq!(e.audience().into_iter().collect::<Vec<_>>(), vec![7, 8, 9]);
        assert!(e.remove_session(7));
        assert!(e.master().is_none(), "the cache names no live master");
        assert!(!e.remove_session(8));
        assert!(e.register(cand("n", 1, 8, None), false).is_ok());
        assert!(
            e.register(cand("n", 1, 99, None), false).is_err(),
            "id taken"
        );
    }
}
