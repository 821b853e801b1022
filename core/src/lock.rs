//! The lock table: who holds each lock, who waits, and which fencing token a grant gets
//! (SPEC 3.2). Used by the server's state machine; pure data, no I/O, no time.
//!
//! Rules, all here:
//! - A free lock is granted at once; a held one queues waiters in arrival order (FIFO).
//! - Every grant takes the next value of the service-wide revision as its fencing token, so
//!   tokens strictly increase across all locks of the service.
//! - Releasing a lock hands it to the first waiter, with a new token.
//! - A lock has at most [`MAX_WAITERS`] waiters.

use crate::proto::{SessionId, Token};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Most waiters queued on one lock.
pub const MAX_WAITERS: usize = 10_000;

/// A grant made by the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Lock name.
    pub name: String,
    /// Session now holding it.
    pub session: SessionId,
    /// Request id of the acquire that is granted.
    pub req: u64,
    /// Its fencing token.
    pub token: Token,
}

/// Outcome of an acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Granted now.
    Granted(Grant),
    /// Queued behind the holder.
    Queued,
    /// Held by another session and the caller does not wait.
    Busy,
    /// The calling session already holds it.
    AlreadyHeld,
    /// The waiter queue is full.
    QueueFull,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    holder: SessionId,
    req: u64,
    token: Token,
    waiters: VecDeque<(SessionId, u64)>,
}

/// All locks of the service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LockTable {
    revision: u64,
    locks: BTreeMap<String, Entry>,
}

impl LockTable {
    /// The last fencing token handed out (0 before the first grant).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Takes the next revision for something other than a lock grant (an election's epoch),
    /// so that every token of the service comes from one increasing sequence.
    pub fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Holder, token and waiters of a lock.
    pub fn get(&self, name: &str) -> Option<(SessionId, Token, Vec<SessionId>)> {
        self.locks
            .get(name)
            .map(|e| (e.holder, e.token, e.waiters.iter().map(|w| w.0).collect()))
    }

    /// Names of all held locks, in order.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.locks.keys()
    }

    /// Names of held locks from `start` on (inclusive), in order.
    pub fn names_from(&self, start: &str) -> impl Iterator<Item = &String> {
        self.locks
            .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
            .map(|(k, _)| k)
    }

    /// `session` asks for `name` with request `req`.
    pub fn acquire(&mut self, name: &str, session: SessionId, req: u64, wait: bool) -> Acquired {
        match self.locks.get_mut(name) {
            None => {
                self.revision += 1;
                let token = self.revision;
                self.locks.insert(
                    name.to_string(),
                    Entry {
                        holder: session,
                        req,
                        token,
                        waiters: VecDeque::new(),
                    },
                );
                Acquired::Granted(Grant {
                    name: name.to_string(),
                    session,
                    req,
                    token,
                })
            }
            Some(e) if e.holder == session => Acquired::AlreadyHeld,
            Some(_) if !wait => Acquired::Busy,
            Some(e) => {
                if e.waiters.iter().any(|w| *w == (session, req)) {
                    return Acquired::Queued;
                }
                if e.waiters.len() >= MAX_WAITERS {
                    return Acquired::QueueFull;
                }
                e.waiters.push_back((session, req));
                Acquired::Queued
            }
        }
    }

    /// Releases `name` if `session` holds it with `token`; returns whether it did and the
    /// grant to the next waiter, if any.
    pub fn release(
        &mut self,
        name: &str,
        session: SessionId,
        token: Token,
    ) -> (bool, Option<Grant>) {
        match self.locks.get(name) {
            Some(e) if e.holder == session && e.token == token => (true, self.hand_over(name)),
            _ => (false, None),
        }
    }

    /// Removes a waiting request; true when it was waiting.
    pub fn remove_waiter(&mut self, name: &str, session: SessionId, req: u64) -> bool {
        if let Some(e) = self.locks.get_mut(name) {
            let before = e.waiters.len();
            e.waiters.retain(|w| *w != (session, req));
            return e.waiters.len() != before;
        }
        false
    }

    /// The token and request of `session`'s hold on `name`, if it holds it.
    pub fn held_by(&self, name: &str, session: SessionId) -> Option<(Token, u64)> {
        self.locks
            .get(name)
            .filter(|e| e.holder == session)
            .map(|e| (e.token, e.req))
    }

    fn hand_over(&mut self, name: &str) -> Option<Grant> {
        let e = self.locks.get_mut(name)?;
        match e.waiters.pop_front() {
            Some((session, req)) => {
                self.revision += 1;
                e.holder = session;
                e.req = req;
                e.token = self.revision;
                Some(Grant {
                    name: name.to_string(),
                    session,
                    req,
                    token: self.revision,
                })
            }
            None => {
                self.locks.remove(name);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_granted_in_arrival_order_with_increasing_tokens() {
        let mut t = LockTable::default();
        let Acquired::Granted(g) = t.acquire("a", 1, 1, true) else {
            panic!()
        };
        assert_eq!(g.token, 1);
        for s in 2..=5 {
            assert_eq!(t.acquire("a", s, 10 + s, true), Acquired::Queued);
        }
        assert_eq!(t.acquire("a", 6, 1, false), Acquired::Busy);
        assert_eq!(t.acquire("a", 1, 2, true), Acquired::AlreadyHeld);
        let mut holder = (1, 1);
        let mut last_token = 1;
        for s in 2..=5 {
            let (ok, next) = t.release("a", holder.0, holder.1);
            assert!(ok);
            let g = next.unwrap();
            assert_eq!((g.session, g.req), (s, 10 + s), "FIFO");
            assert!(g.token > last_token);
            last_token = g.token;
            holder = (s, g.token);
        }
        assert_eq!(t.release("a", 5, last_token), (true, None));
        assert!(t.get("a").is_none());
    }

    #[test]
    fn release_needs_holder_and_token() {
        let mut t = LockTable::default();
        t.acquire("a", 1, 1, false);
        assert_eq!(t.release("a", 2, 1), (false, None));
        assert_eq!(t.release("a", 1, 99), (false, None));
        assert_eq!(t.release("b", 1, 1), (false, None));
        assert!(t.release("a", 1, 1).0);
    }

    #[test]
    fn tokens_increase_across_locks() {
        let mut t = LockTable::default();
        let mut last = 0;
        for i in 0..100 {
            let Acquired::Granted(g) = t.acquire(&format!("l{}", i % 7), i, 1, false) else {
                t.release(
                    &format!("l{}", i % 7),
                    t.get(&format!("l{}", i % 7)).unwrap().0,
                    t.get(&format!("l{}", i % 7)).unwrap().1,
                );
                continue;
            };
            assert!(g.token > last);
            last = g.token;
        }
    }
}
