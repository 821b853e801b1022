//! The etcd backend: tenure's client on an etcd cluster (endpoints written `etcd://host:port`).
//!
//! The client is the one users run against a tenure server: the same session ([`crate::lease`]
//! deciding heartbeats, deadline, jeopardy and retries), the same locks, events and bindings.
//! Only the far end of its connection differs. Dialing `etcd://host:port` starts a *gateway*
//! in this process, joined to the session by a socket pair: it speaks tenure's protocol to the
//! session and etcd's v3 API to that etcd member, one gateway per connection, all on one
//! small runtime shared by the process. So there is one rule set for when to heartbeat, retry
//! or give up (the session's), and one place that says how each request maps onto etcd (the
//! gateway, with the key layout and lock rule in [`keys`]):
//!
//! - a session is an etcd lease with the session's TTL rounded up to whole seconds (etcd's
//!   unit), so etcd never ends it before the client's own deadline; a heartbeat is one
//!   `LeaseKeepAlive` on the connection's stream and one write of the session's key;
//! - a session that stops heartbeating while it heads a lock's queue is ended by the waiter
//!   next in line, TTL after the last heartbeat write that waiter saw (the tenure server's
//!   rule), not up to half a second later by etcd's lease expiry (`gateway/expiry.rs` says
//!   why that is safe);
//! - a lock is a key per session under the lock's directory, ordered by creation revision;
//!   each waiter watches the key just before its own from the revision it read, so a
//!   hand-over costs one watch event and one write, with no polling;
//! - the fencing token is the etcd revision at which the grant was written;
//! - a lock key deleted by anyone else (`etcdctl del`, `tenure revoke`) is reported lost with
//!   reason `released`; a lease ended from outside (`etcdctl lease revoke`) ends the session,
//!   and its locks are reported lost with reason `session_expired`;
//! - the incarnation token is a random value kept in etcd (`tenure/incarnation`): an etcd
//!   whose data was wiped makes a new one, and clients report `data_lost`.
//!
//! The gateway keeps two things across a session's connections, in the process: which locks
//! each session was granted, so that a new connection watches them again from their grant's
//! revision and so reports a deletion that happened while the session was disconnected; and
//! the replies to its last requests, so that a request resent after a reconnection is
//! answered as the first attempt was, not done twice.

pub mod keys;

#[cfg(feature = "etcd")]
mod gateway;

use crate::error::{Error, Result};

/// How an endpoint names an etcd member: `etcd://host:port`.
pub const SCHEME: &str = "etcd://";

/// The `host:port` of an etcd endpoint (`None` for a tenure server's).
pub fn address(endpoint: &str) -> Option<&str> {
    endpoint.strip_prefix(SCHEME)
}

/// True when this build has the etcd backend (cargo feature `etcd`).
pub const AVAILABLE: bool = cfg!(feature = "etcd");

/// The endpoint list as given (each entry possibly comma-separated) made into one endpoint
/// per member. The scheme of the first endpoint applies to the whole list: after
/// `etcd://a:2379`, a bare `b:2379` is an etcd member too (so `etcd://a:2379,b:2379` and
/// a command line's `--endpoints etcd://a:2379,b:2379` name two etcd members), and a list that
/// begins with a tenure server cannot name etcd members.
pub fn normalize(endpoints: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut etcd = None;
    for entry in endpoints {
        for ep in entry.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let this = address(ep).is_some();
            match etcd {
                None => etcd = Some(this),
                Some(false) if this => {
                    return Err(Error::InvalidArgument(format!(
                        "endpoint {} names etcd but the list began with a tenure server; \
                         one client uses one backend",
                        crate::proto::echo(ep)
                    )))
                }
                _ => {}
            }
            if etcd == Some(true) && !this {
                out.push(format!("{SCHEME}{ep}"));
            } else {
                out.push(ep.to_string());
            }
        }
    }
    if etcd == Some(true) && !AVAILABLE {
        return Err(Error::InvalidArgument(
            "this build of tenure has no etcd backend (build it with the cargo feature `etcd`)"
                .into(),
        ));
    }
    Ok(out)
}

/// Opens a connection to the etcd member at `addr` (`host:port`): a socket pair whose other
/// end is a new gateway. The gateway answers the handshake once it has reached etcd and read
/// the incarnation token, or refuses it with why; `step` bounds its wait for etcd.
#[cfg(feature = "etcd")]
pub(crate) fn open(
    addr: &str,
    step: std::time::Duration,
) -> std::result::Result<std::os::unix::net::UnixStream, String> {
    gateway::open(addr, step)
}

/// Without the `etcd` feature there is no gateway to open ([`normalize`] refuses such
/// endpoints first).
#[cfg(not(feature = "etcd"))]
pub(crate) fn open(
    _addr: &str,
    _step: std::time::Duration,
) -> std::result::Result<std::os::unix::net::UnixStream, String> {
    Err("this build of tenure has no etcd backend".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_first_endpoint_chooses_the_backend_of_the_list() {
        assert_eq!(
            normalize(&s(&["a:1, b:2", "c:3"])).unwrap(),
            s(&["a:1", "b:2", "c:3"])
        );
        if AVAILABLE {
            assert_eq!(
                normalize(&s(&["etcd://a:1,b:2", "etcd://c:3"])).unwrap(),
                s(&["etcd://a:1", "etcd://b:2", "etcd://c:3"])
            );
            assert_eq!(
                normalize(&s(&["etcd://a:1", "b:2"])).unwrap(),
                s(&["etcd://a:1", "etcd://b:2"])
            );
        } else {
            let e = normalize(&s(&["etcd://a:1"])).unwrap_err().to_string();
            assert!(e.contains("feature `etcd`"), "{e}");
        }
        let e = normalize(&s(&["a:1", "etcd://b:2"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("began with a tenure server"), "{e}");
        assert_eq!(address("etcd://h:2379"), Some("h:2379"));
        assert_eq!(address("h:2379"), None);
    }
}
