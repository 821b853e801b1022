//! Where tenure keeps its state in etcd, and the rules read from it. Pure functions: the
//! gateway ([`super`]) does the I/O and asks these.
//!
//! Every key is under [`PREFIX`]:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `tenure/incarnation` | the service's incarnation token (32 hex digits), made once | none |
//! | `tenure/sessions/<lease>` | the session's TTL in milliseconds | the session's |
//! | `tenure/locks/<name>/<lease>` | `w <req>` while waiting, `h <req>` once granted | the session's |
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

use crate::proto::{SessionId, Token};

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

    #[test]
    fn lease_ttls_round_up_to_whole_seconds() {
        assert_eq!(lease_seconds(50), 1);
        assert_eq!(lease_seconds(1000), 1);
        assert_eq!(lease_seconds(1001), 2);
        assert_eq!(lease_seconds(10_000), 10);
    }
}
