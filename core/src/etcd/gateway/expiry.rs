//! Waiter-driven expiry: the waiter next in a lock's queue ends a silent head's session at the
//! moment a tenure server would, TTL after its last heartbeat was seen, instead of waiting
//! for etcd to end its lease.
//!
//! Why: etcd ends leases on its own schedule. Its lessor looks for expired leases every
//! 500 ms, so a lock whose holder died is given away up to half a second (and a raft commit)
//! after the lease's TTL; and a new etcd leader restarts every lease's TTL. The tenure server
//! hands a dead holder's lock over TTL after the last heartbeat it received
//! ([`crate::server::liveness`]). This applies that same rule, with the same [`Liveness`].
//!
//! Why it is safe:
//!
//! - every heartbeat of a session writes its session key (a transaction that holds only
//!   while the key exists) besides keeping its lease alive, and the session is told `Alive`
//!   only once both are done ([`Gateway::heartbeat`]); the client counts its lease from the
//!   moment it *sent* the heartbeat, less its drift allowance and safety margin
//!   ([`crate::lease`]);
//! - the waiter just behind the head of a lock's queue watches the head's session key and
//!   counts the TTL from the moment it *saw* each write, which is after the write, so after
//!   the heartbeat was sent;
//! - when the TTL has passed since the last write it saw, the waiter deletes the head's lock
//!   key and its session key in one transaction that holds only if the session key was not
//!   written since. Either a later heartbeat's write came first (the transaction fails and
//!   the waiter counts from that write), or the expiry came first and every later heartbeat
//!   of the session fails because its key is gone: the session has ended, and its client is
//!   told `session_expired`.
//!
//! So the head's client deadline has passed before the waiter can be granted the lock, as
//! with the tenure server. The waiter then revokes the head's lease, so the session's other
//! keys (other locks, candidacies, presence) go too, as a tenure server's expiry ends a whole
//! session. The cost: every heartbeat is a write (one raft entry) as well as a keep-alive.

use super::{Fail, Gateway};
use crate::etcd::keys;
use crate::server::liveness::Liveness;
use etcd_client::{Compare, CompareOp, EventType, Txn, TxnOp, TxnOpResponse};
use std::future::pending;
use std::time::{Duration, Instant};

/// A future that never completes: the waiter's own watch of the queue will see what follows.
async fn not_mine<T>() -> Result<T, Fail> {
    pending().await
}

impl Gateway {
    /// The transaction a heartbeat of `session` writes: its session key again (same value and
    /// lease, a new revision), if the key still exists. It fails once a waiter ended the
    /// session (see the module documentation).
    pub(super) fn heartbeat_write(session: crate::proto::SessionId) -> Txn {
        let key = keys::session_key(session);
        let same = etcd_client::PutOptions::new()
            .with_ignore_value()
            .with_ignore_lease();
        Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::NotEqual,
                0,
            )])
            .and_then([TxnOp::put(key, "", Some(same))])
    }

    /// Watches the session of `head` (a lock key created at revision `created`, the first of
    /// its queue) and ends that session once it has been silent for its TTL. Returns `Ok`
    /// when it ended the session (the head's key is gone); never returns while the session
    /// lives, nor when the head's key goes otherwise (the waiter's watch of the queue sees
    /// that).
    pub(super) async fn expire_silent(&self, head: &[u8], created: i64) -> Result<(), Fail> {
        let Some((_, session)) = std::str::from_utf8(head)
            .ok()
            .and_then(keys::parse_lock_key)
        else {
            return not_mine().await;
        };
        let skey = keys::session_key(session);
        let mut c = self.etcd();
        // Watch first, then read: no write falls between.
        let (_w, mut writes) = c.watch(skey.clone(), None).await?;
        let g = c.get(skey.clone(), None).await?;
        let Some(kv) = g.kvs().first() else {
            // Ended already: its keys go with its lease.
            return not_mine().await;
        };
        let Some(ttl) = kv.value_str().ok().and_then(|v| v.parse::<u64>().ok()) else {
            return not_mine().await;
        };
        let mut seen = kv.mod_revision();
        let mut live = Liveness::new();
        live.track(session, Duration::from_millis(ttl), Instant::now());
        loop {
            let Some(due) = live.next_deadline() else {
                return not_mine().await;
            };
            tokio::select! {
                m = writes.message() => {
                    let Some(m) = m? else {
                        return Err(Fail::Broken("etcd ended a watch".into()));
                    };
                    if m.canceled() {
                        return Err(Fail::Broken("etcd cancelled a watch".into()));
                    }
                    for e in m.events() {
                        let Some(kv) = e.kv() else { continue };
                        if kv.mod_revision() <= seen {
                            continue;
                        }
                        if e.event_type() == EventType::Delete {
                            // Ended otherwise (closed, revoked, expired by etcd).
                            return not_mine().await;
                        }
                        seen = kv.mod_revision();
                        live.touch(session, Instant::now());
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {
                    if live.expired(Instant::now()).is_empty() {
                        continue;
                    }
                    let t = Txn::new()
                        .when([
                            Compare::mod_revision(skey.clone(), CompareOp::Equal, seen),
                            Compare::create_revision(head.to_vec(), CompareOp::Equal, created),
                        ])
                        .and_then([
                            TxnOp::delete(head.to_vec(), None),
                            TxnOp::delete(skey.clone(), None),
                        ])
                        .or_else([
                            TxnOp::get(skey.clone(), None),
                            TxnOp::get(head.to_vec(), None),
                        ]);
                    let r = c.txn(t).await?;
                    if r.succeeded() {
                        // Its other keys go too. Should this fail, etcd ends the lease in time,
                        // and the session cannot heartbeat any more meanwhile.
                        let _ = c.lease_revoke(session as i64).await;
                        return Ok(());
                    }
                    let found: Vec<_> = r
                        .op_responses()
                        .into_iter()
                        .map(|op| match op {
                            TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                            _ => None,
                        })
                        .collect();
                    match (found.first().cloned().flatten(), found.get(1).cloned().flatten()) {
                        (Some(s), Some(h)) if h.create_revision() == created => {
                            // Written after the last write we saw: it counts from now.
                            seen = seen.max(s.mod_revision());
                            live.touch(session, Instant::now());
                        }
                        _ => return not_mine().await,
                    }
                }
            }
        }
    }
}
