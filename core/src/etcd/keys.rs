//! Where tenure keeps its state in etcd, and the rules read from it. Pure functions: the
//! gateway ([`super`]) does the I/O and asks these.
//!
//! Every key is under [`PREFIX`]:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `tenure/incarnation` | the service's incarnation token (32 hex digits), made once | none |
//! | `tenure/sessions/<lease>` | the session's TTL in milliseconds, written again by every heartbeat | the session's |
//! | `tenure/locks/<name>/<lease>` | `w <req>` while waiting, `h <req>` once granted | the session's |
//! | `tenure/elections/<name>/c/<id>` | the candidate ([`CandidateRecord`], JSON) | the candidate's session's |
//! | `tenure/elections/<name>/master` | the master cache ([`MasterRecord`], JSON) | none |
//! | `tenure/groups/<name>/view` | the group ([`crate::membership::Group`], JSON) | none |
//! | `tenure/groups/<name>/m/<id>` | the member's session id (its presence) | the member's session's |
//!
//! `<lease>` is the session's etcd lease id as 16 hex digits (the session id is the lease id);
//! `<name>` is the lock's name with `%` and `/` escaped, so that no name's directory is a
//! prefix of another's. `<req>` is the request id of the acquire that made the key: a resent
//! acquire (same id) finds its key again, another request of the same session is told the
//! lock is already held.
//!
//! The lock rule: a lock's waiters are the keys of its directory ordered by creation
//! revision; the first one is the holder. A key is only ever created after every key already
//! there, so once a key is first it stays first until it is deleted. The holder's fencing
//! token is the revision at which its key was written as granted (`h`): a key created into an
//! empty directory is granted at creation; a waiter that becomes first writes `h` then. Either
//! way the token is the etcd revision of the grant, so tokens grow across every lock of the
//! cluster in grant order, as the tenure server's do.

use crate::election::{Candidate, Election, Step};
use crate::proto::{SessionId, Token};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The prefix of every key tenure writes.
pub const PREFIX: &str = "tenure/";

/// The key holding the service's incarnation token.
pub fn incarnation_key() -> String {
    format!("{PREFIX}incarnation")
}

/// The directory of session keys.
pub fn sessions_dir() -> String {
    format!("{PREFIX}sessions/")
}

/// The key recording session `lease`.
pub fn session_key(lease: SessionId) -> String {
    format!("{}{lease:016x}", sessions_dir())
}

/// The directory of every lock.
pub fn locks_dir() -> String {
    format!("{PREFIX}locks/")
}

/// The directory of lock `name`: one key per waiting or holding session.
pub fn lock_dir(name: &str) -> String {
    format!("{}{}/", locks_dir(), escape(name))
}

/// The key of session `lease` in lock `name`'s queue.
pub fn lock_key(name: &str, lease: SessionId) -> String {
    format!("{}{lease:016x}", lock_dir(name))
}

/// The lock name and session of a lock key (`None` for any other key).
pub fn parse_lock_key(key: &str) -> Option<(String, SessionId)> {
    let rest = key.strip_prefix(&locks_dir())?;
    let (name, lease) = rest.rsplit_once('/')?;
    if lease.len() != 16 {
        return None;
    }
    let lease = u64::from_str_radix(lease, 16).ok()?;
    Some((unescape(name)?, lease))
}

/// The session of a session key.
pub fn parse_session_key(key: &str) -> Option<SessionId> {
    let lease = key.strip_prefix(&sessions_dir())?;
    (lease.len() == 16).then(|| u64::from_str_radix(lease, 16).ok())?
}

/// The directory of election `name`: its candidates and its master cache.
pub fn election_dir(name: &str) -> String {
    format!("{PREFIX}elections/{}/", escape(name))
}

/// The key of candidate `id` of election `name`.
pub fn candidate_key(name: &str, id: &str) -> String {
    format!("{}c/{}", election_dir(name), escape(id))
}

/// The key of election `name`'s master cache.
pub fn master_key(name: &str) -> String {
    format!("{}master", election_dir(name))
}

/// The election and, for a candidate's key, the candidate id of a key under
/// `tenure/elections/` (`Some((name, None))` for a master key; `None` for any other key).
pub fn parse_election_key(key: &str) -> Option<(String, Option<String>)> {
    let rest = key.strip_prefix(&format!("{PREFIX}elections/"))?;
    let (name, rest) = rest.split_once('/')?;
    let name = unescape(name)?;
    if rest == "master" {
        return Some((name, None));
    }
    let id = unescape(rest.strip_prefix("c/")?)?;
    Some((name, Some(id)))
}

/// The directory of group `name`: its view and its members' presence keys.
pub fn group_dir(name: &str) -> String {
    format!("{PREFIX}groups/{}/", escape(name))
}

/// The key holding group `name`'s state.
pub fn group_view_key(name: &str) -> String {
    format!("{}view", group_dir(name))
}

/// The presence key of member `id` of group `name`.
pub fn group_member_key(name: &str, id: &str) -> String {
    format!("{}m/{}", group_dir(name), escape(id))
}

/// The group and, for a presence key, the member id of a key under `tenure/groups/`
/// (`Some((name, None))` for a view key; `None` for any other key).
pub fn parse_group_key(key: &str) -> Option<(String, Option<String>)> {
    let rest = key.strip_prefix(&format!("{PREFIX}groups/"))?;
    let (name, rest) = rest.split_once('/')?;
    let name = unescape(name)?;
    if rest == "view" {
        return Some((name, None));
    }
    let id = unescape(rest.strip_prefix("m/")?)?;
    Some((name, Some(id)))
}

/// A candidate as its key records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// Its id (also in the key, escaped).
    pub id: String,
    /// Priority: higher wins.
    pub priority: i64,
    /// Checked with a connection before it is designated.
    pub endpoint: Option<String>,
    /// The session it lives under.
    pub session: SessionId,
    /// It asked to take over from a live master of lower priority.
    pub preempt: bool,
    /// Its session's TTL: how long a master it replaces waits after stepping down.
    pub ttl_ms: u64,
}

/// The master cache as its key records it. Its epoch is the key's modification revision:
/// every write is a change of master (or a step-down), so epochs strictly increase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MasterRecord {
    /// The master's candidate id, if there is a master.
    pub master: Option<String>,
    /// After a step-down for a higher-priority candidate: nobody is designated until this
    /// long after the step-down was seen (the old master's TTL, by when it has been told or
    /// seen its lease end), so two masters never overlap.
    pub wait_ms: u64,
}

/// The rules of [`crate::election`] over what etcd holds: the election's candidates and its
/// master cache.
pub fn election(candidates: &[CandidateRecord], master: &MasterRecord, epoch: u64) -> Election {
    let mut e = Election::default();
    for c in candidates {
        let cand = Candidate {
            id: c.id.clone(),
            priority: c.priority,
            endpoint: c.endpoint.clone(),
            session: c.session,
        };
        // Ids are unique per key, so registration cannot conflict.
        let _ = e.register(cand, c.preempt);
    }
    e.set_master(master.master.clone(), epoch);
    e
}

/// What a participant does next about an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing until the election changes.
    Keep,
    /// Write the master cache (if it is still as read).
    Write(MasterRecord),
    /// Check this candidate's endpoint first, then decide again.
    Check {
        /// Candidate id.
        id: String,
        /// Its endpoint.
        endpoint: String,
    },
    /// A step-down is in progress: decide again once its wait has passed.
    WaitStepDown,
}

/// Decides the next step of an election: the candidates and cache as read, whether a
/// step-down's wait has passed, the candidates whose check failed in this round and those
/// whose check passed.
pub fn decide(
    candidates: &[CandidateRecord],
    master: &MasterRecord,
    epoch: u64,
    stepdown_over: bool,
    failed: &BTreeSet<String>,
    checked: &BTreeSet<String>,
) -> Decision {
    let e = election(candidates, master, epoch);
    let live_master = e.master().map(|m| m.id.clone());
    if master.master.is_some() && live_master.is_none() && candidates.is_empty() {
        // The master's candidacy ended and nobody else stands: no master, a new epoch.
        return Decision::Write(MasterRecord::default());
    }
    if master.master.is_none() && master.wait_ms > 0 && !stepdown_over {
        return Decision::WaitStepDown;
    }
    let designate = |id: String| match &live_master {
        // A live master of lower priority steps down first and waits out its TTL.
        Some(m) => {
            let ttl = candidates
                .iter()
                .find(|c| &c.id == m)
                .map_or(0, |c| c.ttl_ms);
            Decision::Write(MasterRecord {
                master: None,
                wait_ms: ttl.max(1),
            })
        }
        None => Decision::Write(MasterRecord {
            master: Some(id),
            wait_ms: 0,
        }),
    };
    match e.next_step(failed) {
        Step::Keep => Decision::Keep,
        Step::Designate(id) => designate(id),
        Step::Check { id, .. } if checked.contains(&id) => designate(id),
        Step::Check { id, endpoint } => Decision::Check { id, endpoint },
        Step::NoneReachable => match &live_master {
            Some(m) if failed.contains(m) => Decision::Write(MasterRecord::default()),
            _ if master.master.is_some() && live_master.is_none() => {
                Decision::Write(MasterRecord::default())
            }
            _ => Decision::Keep,
        },
    }
}

/// `name` with `%` and `/` written as `%25` and `%2F`.
fn escape(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => s.push_str("%25"),
            '/' => s.push_str("%2F"),
            c => s.push(c),
        }
    }
    s
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3)? {
            "25" => out.push('%'),
            "2F" => out.push('/'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The state a lock key records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Waiting, for acquire request `req`.
    Waiting(u64),
    /// Granted to acquire request `req`.
    Held(u64),
}

impl Entry {
    /// The value written for this state.
    pub fn value(self) -> String {
        match self {
            Entry::Waiting(r) => format!("w {r}"),
            Entry::Held(r) => format!("h {r}"),
        }
    }

    /// Reads a lock key's value (`None` when it is not one tenure wrote).
    pub fn parse(v: &[u8]) -> Option<Entry> {
        let s = std::str::from_utf8(v).ok()?;
        let (kind, req) = s.split_once(' ')?;
        let req = req.parse().ok()?;
        match kind {
            "w" => Some(Entry::Waiting(req)),
            "h" => Some(Entry::Held(req)),
            _ => None,
        }
    }

    /// The acquire request that wrote it.
    pub fn req(self) -> u64 {
        match self {
            Entry::Waiting(r) | Entry::Held(r) => r,
        }
    }
}

/// What an acquire request finds when its session already has a key in the lock's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// The same request, already granted (a resend after a reconnection): the same grant.
    Granted(Token),
    /// The same request, still waiting: wait on from the key's place in the queue.
    Waiting,
    /// Another request of the session holds or waits for the lock.
    AlreadyHeld,
}

/// Decides what acquire `req` does about the key `entry` its session already has in the
/// queue, written at `mod_revision` (`None` when the value is not tenure's: treated as
/// another request's).
pub fn existing(req: u64, entry: Option<Entry>, mod_revision: i64) -> Existing {
    match entry {
        Some(Entry::Held(r)) if r == req => Existing::Granted(mod_revision as Token),
        Some(Entry::Waiting(r)) if r == req => Existing::Waiting,
        _ => Existing::AlreadyHeld,
    }
}

/// The etcd lease TTL, in whole seconds, for a session TTL of `ttl_ms`: rounded up, so that
/// etcd never ends the lease before the client's own deadline (which the client computes from
/// its TTL).
pub fn lease_seconds(ttl_ms: u64) -> i64 {
    (ttl_ms.div_ceil(1000)).max(1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_round_trip_and_no_directory_is_a_prefix_of_another() {
        for name in ["a", "a/b", "50%", "%2F", "a%2Fb", "jobs/reindex/", "é/ü"] {
            let k = lock_key(name, 0xabc);
            assert_eq!(
                parse_lock_key(&k),
                Some((name.to_string(), 0xabc)),
                "{name}"
            );
        }
        // "a" and "a/b" would share a prefix without escaping.
        assert!(!lock_key("a/b", 1).starts_with(&lock_dir("a")));
        assert!(!lock_dir("a%2Fb").starts_with(&lock_dir("a/b")));
        assert_eq!(parse_lock_key("tenure/locks/x/12"), None);
        assert_eq!(parse_lock_key("tenure/locks/%zz/0000000000000001"), None);
        assert_eq!(parse_session_key(&session_key(7)), Some(7));
        assert_eq!(parse_session_key("tenure/sessions/7"), None);
    }

    #[test]
    fn entries_round_trip_and_a_resend_finds_its_own_grant() {
        for e in [Entry::Waiting(3), Entry::Held(u64::MAX)] {
            assert_eq!(Entry::parse(e.value().as_bytes()), Some(e));
        }
        assert_eq!(Entry::parse(b"x 1"), None);
        assert_eq!(Entry::parse(b"h"), None);
        assert_eq!(Entry::parse(&[0xff, b' ', b'1']), None);
        assert_eq!(existing(5, Some(Entry::Held(5)), 42), Existing::Granted(42));
        assert_eq!(existing(5, Some(Entry::Waiting(5)), 42), Existing::Waiting);
        assert_eq!(existing(6, Some(Entry::Held(5)), 42), Existing::AlreadyHeld);
        assert_eq!(
            existing(6, Some(Entry::Waiting(5)), 42),
            Existing::AlreadyHeld
        );
        assert_eq!(existing(6, None, 42), Existing::AlreadyHeld);
    }

    fn cand(id: &str, priority: i64, preempt: bool, endpoint: Option<&str>) -> CandidateRecord {
        CandidateRecord {
            id: id.into(),
            priority,
            endpoint: endpoint.map(Into::into),
            session: 1,
            preempt,
            ttl_ms: 2000,
        }
    }

    fn master(m: Option<&str>, wait_ms: u64) -> MasterRecord {
        MasterRecord {
            master: m.map(Into::into),
            wait_ms,
        }
    }

    #[test]
    fn elections_designate_by_priority_keep_a_live_master_and_step_down_to_preempt() {
        let none = BTreeSet::new();
        let c = [cand("a", 1, false, None), cand("b", 5, false, None)];
        // No master: the highest priority is designated.
        assert_eq!(
            decide(&c, &master(None, 0), 0, false, &none, &none),
            Decision::Write(master(Some("b"), 0))
        );
        // A live master is kept, even below a higher priority, without preemption.
        assert_eq!(
            decide(&c, &master(Some("a"), 0), 7, false, &none, &none),
            Decision::Keep
        );
        // With preemption it steps down first, for its TTL, then the top is designated.
        let p = [cand("a", 1, false, None), cand("b", 5, true, None)];
        assert_eq!(
            decide(&p, &master(Some("a"), 0), 7, false, &none, &none),
            Decision::Write(master(None, 2000))
        );
        assert_eq!(
            decide(&p, &master(None, 2000), 8, false, &none, &none),
            Decision::WaitStepDown
        );
        assert_eq!(
            decide(&p, &master(None, 2000), 8, true, &none, &none),
            Decision::Write(master(Some("b"), 0))
        );
        // A master whose candidacy ended is replaced; with nobody left, cleared.
        assert_eq!(
            decide(&c[..1], &master(Some("b"), 0), 9, false, &none, &none),
            Decision::Write(master(Some("a"), 0))
        );
        assert_eq!(
            decide(&[], &master(Some("b"), 0), 9, false, &none, &none),
            Decision::Write(master(None, 0))
        );
        assert_eq!(
            decide(&[], &master(None, 0), 10, false, &none, &none),
            Decision::Keep
        );
    }

    #[test]
    fn candidates_with_endpoints_are_checked_and_skipped_when_unreachable() {
        let c = [
            cand("a", 1, false, None),
            cand("b", 5, false, Some("127.0.0.1:9")),
        ];
        let none = BTreeSet::new();
        let b: BTreeSet<String> = ["b".to_string()].into();
        assert_eq!(
            decide(&c, &master(None, 0), 0, false, &none, &none),
            Decision::Check {
                id: "b".into(),
                endpoint: "127.0.0.1:9".into()
            }
        );
        assert_eq!(
            decide(&c, &master(None, 0), 0, false, &none, &b),
            Decision::Write(master(Some("b"), 0))
        );
        assert_eq!(
            decide(&c, &master(None, 0), 0, false, &b, &none),
            Decision::Write(master(Some("a"), 0))
        );
        // Everyone unreachable: an unreachable master is cleared.
        let only_b = [cand("b", 5, false, Some("127.0.0.1:9"))];
        assert_eq!(
            decide(&only_b, &master(Some("b"), 0), 3, false, &b, &none),
            Decision::Keep,
            "a live master is kept without a designation to make"
        );
        assert_eq!(
            decide(&only_b, &master(None, 0), 3, false, &b, &none),
            Decision::Keep
        );
    }

    #[test]
    fn election_keys_escape_names_and_ids() {
        assert!(!candidate_key("e/x", "a").starts_with(&election_dir("e")));
        assert!(candidate_key("e", "a/b").starts_with(&election_dir("e")));
        assert_eq!(master_key("e"), "tenure/elections/e/master");
        assert_eq!(
            parse_election_key(&candidate_key("e/x", "a/b")),
            Some(("e/x".into(), Some("a/b".into())))
        );
        assert_eq!(
            parse_election_key(&master_key("e/x")),
            Some(("e/x".into(), None))
        );
        assert_eq!(parse_election_key("tenure/elections/e/other"), None);
        assert_eq!(
            parse_group_key(&group_member_key("g/1", "m/2")),
            Some(("g/1".into(), Some("m/2".into())))
        );
        assert_eq!(
            parse_group_key(&group_view_key("g/1")),
            Some(("g/1".into(), None))
        );
        assert!(!group_member_key("g/1", "x").starts_with(&group_dir("g")));
    }

    #[test]
    fn lease_ttls_round_up_to_whole_seconds() {
        assert_eq!(lease_seconds(50), 1);
        assert_eq!(lease_seconds(1000), 1);
        assert_eq!(lease_seconds(1001), 2);
        assert_eq!(lease_seconds(10_000), 10);
    }
}
