//! When the server considers a session expired (SPEC 3.1): TTL after it *received* the last
//! heartbeat (or any request) of the session.
//!
//! Sans-IO and volatile: receipt times are not logged (heartbeats would otherwise cost a disk
//! write each). After a restart or failover every session is tracked anew from the moment the
//! server starts serving, which gives each one a grace period of its TTL to reconnect. The
//! decision "this session expired" is returned by [`Liveness::expired`] and enters the command
//! log as `Command::Expire`, so the state stays a function of the log.

use crate::proto::SessionId;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Tracked {
    ttl: Duration,
    last: Instant,
}

/// Receipt times and expiry deadlines of sessions.
#[derive(Debug, Default)]
pub struct Liveness {
    sessions: BTreeMap<SessionId, Tracked>,
    /// Candidate deadlines; an entry is stale when the session was heard from since.
    heap: BinaryHeap<Reverse<(Instant, SessionId)>>,
}

impl Liveness {
    /// No sessions tracked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start tracking `session`, as if heard from at `now`.
    pub fn track(&mut self, session: SessionId, ttl: Duration, now: Instant) {
        self.sessions.insert(session, Tracked { ttl, last: now });
        self.heap.push(Reverse((now + ttl, session)));
    }

    /// A request of `session` was received at `now`. False when the session is not tracked.
    pub fn touch(&mut self, session: SessionId, now: Instant) -> bool {
        match self.sessions.get_mut(&session) {
            Some(t) => {
                // The old heap entry stays; it is re-armed lazily when it comes due.
                t.last = t.last.max(now);
                true
            }
            None => false,
        }
    }

    /// Stop tracking a session (it closed or expired).
    pub fn forget(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }

    /// Number of tracked sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Sessions whose TTL has passed since they were last heard from, as of `now`. They stay
    /// tracked until [`Liveness::forget`], so a caller that cannot apply the expiry yet will be
    /// told again.
    pub fn expired(&mut self, now: Instant) -> Vec<SessionId> {
        let mut out = Vec::new();
        while let Some(Reverse((at, s))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(t) = self.sessions.get(&s) else {
                continue;
            };
            let due = t.last + t.ttl;
            if due <= now {
                out.push(s);
            } else {
                self.heap.push(Reverse((due, s)));
            }
        }
        out
    }

    /// The earliest instant at which [`Liveness::expired`] may return something.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0 .0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn expiry_is_measured_from_the_last_receipt() {
        let c = ManualClock::new();
        let mut l = Liveness::new();
        l.track(1, Duration::from_secs(3), c.now());
        l.track(2, Duration::from_secs(3), c.now());
        for i in 1..=10 {
            c.advance(Duration::from_secs(1));
            assert!(l.touch(1, c.now()));
            let exp = l.expired(c.now());
            assert_eq!(exp.contains(&2), i == 3, "second {i}: {exp:?}");
            assert!(!exp.contains(&1));
            for s in exp {
                l.forget(s);
            }
        }
        assert_eq!(l.len(), 1);
        c.advance(Duration::from_millis(2999));
        assert!(l.expired(c.now()).is_empty());
        c.advance(Duration::from_millis(1));
        assert_eq!(l.expired(c.now()), vec![1]);
        assert!(!l.touch(7, c.now()));
    }

    #[test]
    fn next_deadline_never_misses_an_expiry() {
        let c = ManualClock::new();
        let mut l = Liveness::new();
        let mut rng = fastrand::Rng::with_seed(3);
        for s in 0..100 {
            l.track(s, Duration::from_millis(rng.u64(100..1000)), c.now());
        }
        let mut ended = 0;
        while let Some(t) = l.next_deadline() {
            c.set(t - c.start());
            for s in l.expired(c.now()) {
                l.forget(s);
                ended += 1;
            }
            for s in 0..100 {
                if rng.u8(0..50) == 0 {
                    l.touch(s, c.now());
                }
            }
        }
        assert_eq!(ended, 100);
    }
}
