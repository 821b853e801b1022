//! The client's session lease (SPEC 3.1, seed 000): when to heartbeat, when the lease ends,
//! and how to retry when a heartbeat goes wrong.
//!
//! [`Lease`] is a sans-IO machine. The runtime tells it what happened (a heartbeat was
//! acknowledged, a request failed, the connection broke) and asks it, with the current time,
//! what to do ([`Lease::poll`]) and when to ask again ([`Lease::next_wakeup`]).
//!
//! The rules, all here:
//! - Heartbeats are sent every `heartbeat_interval` (default TTL/3), counted from the send time
//!   of the last acknowledged one.
//! - The client's deadline is `sent + TTL - drift - margin`, where `sent` is the send time of
//!   the latest acknowledged heartbeat (or of the request that opened the session), `drift` is
//!   `drift_ratio * TTL` (default 1%) and `margin` a safety margin (default
//!   [`default_safety_margin`]: 50 ms, at most a tenth of the TTL). The server expires the
//!   session TTL after it *received* the last heartbeat, which is later than its send time;
//!   so as long as the two clocks' rates differ by less than `drift_ratio`, the client's
//!   deadline comes first by at least the margin. The margin is the time the client has to
//!   act on its deadline (wake its timer thread, report every lock lost, run the lost
//!   callbacks on their dispatcher threads) before the server can act on its own (expire,
//!   grant the next waiter, and that waiter's client see it): both sides are delayed by the
//!   scheduler on a loaded machine, by tens of milliseconds (`examples/lost_bench.rs`
//!   measures it with both cores saturated).
//! - A heartbeat unanswered for `heartbeat_timeout` (default TTL/4), an error reply or a broken
//!   connection is an abnormal response: the session enters `Jeopardy` and retries on the
//!   configured [`RetryPolicy`] (inverse exponential by default), never past the deadline.
//! - A retry that is acknowledged before the deadline returns the session to `Connected`
//!   (`Recovered`). At the deadline the session is `Expired`, for good.

use crate::retry::{InverseExponential, RetryContext, RetryPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Parameters of a client lease.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Session time-to-live agreed with the server.
    pub ttl: Duration,
    /// Gap between heartbeats while connected (default TTL/3).
    pub heartbeat_interval: Duration,
    /// How long a heartbeat may go unanswered before it counts as failed (default TTL/4).
    pub heartbeat_timeout: Duration,
    /// Clock-drift allowance as a fraction of the TTL (default 0.01).
    pub drift_ratio: f64,
    /// Safety margin taken off the deadline besides the drift allowance (default
    /// [`default_safety_margin`]).
    pub safety_margin: Duration,
    /// Retry policy in jeopardy (default [`InverseExponential`]).
    pub retry: Arc<dyn RetryPolicy>,
}

impl LeaseConfig {
    /// Defaults for a TTL: heartbeat every TTL/3, timeout TTL/4, 1% drift, inverse exponential
    /// retries.
    pub fn new(ttl: Duration) -> Self {
        LeaseConfig {
            ttl,
            heartbeat_interval: ttl / 3,
            heartbeat_timeout: ttl / 4,
            drift_ratio: 0.01,
            safety_margin: default_safety_margin(ttl),
            retry: Arc::new(InverseExponential::default()),
        }
    }

    /// The lease length the client counts on after an acknowledged send: TTL less drift
    /// allowance and safety margin.
    pub fn effective_ttl(&self) -> Duration {
        self.ttl
            .saturating_sub(self.ttl.mul_f64(self.drift_ratio.clamp(0.0, 0.5)))
            .saturating_sub(self.safety_margin)
    }
}

/// The default safety margin before a TTL's deadline: see [`default_safety_margin`].
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_millis(50);

/// The safety margin used unless one is chosen: [`DEFAULT_SAFETY_MARGIN`], but at most a
/// tenth of the TTL (so short TTLs keep most of their lease; below a TTL of 500 ms the
/// margin for scheduling delays shrinks with it).
pub fn default_safety_margin(ttl: Duration) -> Duration {
    DEFAULT_SAFETY_MARGIN.min(ttl / 10)
}

/// The session's state as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Heartbeats are answered.
    Connected,
    /// A heartbeat failed; retrying until the deadline.
    Jeopardy,
    /// The deadline passed. Terminal.
    Expired,
}

/// What the lease asks of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// Send heartbeat `id` now (reconnecting first if the connection is down).
    SendHeartbeat {
        /// Identifier to echo in [`Lease::on_ack`].
        id: u64,
        /// True when this is a retry in jeopardy.
        retry: bool,
    },
    /// The session entered jeopardy with this much lease left.
    Jeopardy {
        /// Time left until the client's deadline.
        remaining: Duration,
    },
    /// A retry succeeded before the deadline.
    Recovered,
    /// The deadline passed; every lock of the session is lost.
    Expired,
}

#[derive(Debug)]
struct Retrying {
    attempt: u32,
    remaining_at_failure: Duration,
    next: Option<Instant>,
}

/// The client's lease machine. See the module documentation for its rules.
#[derive(Debug)]
pub struct Lease {
    cfg: LeaseConfig,
    state: LeaseState,
    deadline: Instant,
    /// Latest send time that was acknowledged.
    acked_sent: Instant,
    next_heartbeat: Instant,
    outstanding: BTreeMap<u64, Instant>,
    retrying: Option<Retrying>,
    next_id: u64,
    rng: fastrand::Rng,
    pending: Vec<LeaseAction>,
}

/// Most heartbeats remembered as unanswered; older ones are forgotten (their acks ignored).
const MAX_OUTSTANDING: usize = 64;

impl Lease {
    /// A lease that was granted by a request sent at `sent` (the open or resume request).
    pub fn new(cfg: LeaseConfig, sent: Instant, seed: u64) -> Self {
        let deadline = sent + cfg.effective_ttl();
        let next_heartbeat = sent + cfg.heartbeat_interval;
        Lease {
            cfg,
            state: LeaseState::Connected,
            deadline,
            acked_sent: sent,
            next_heartbeat,
            outstanding: BTreeMap::new(),
            retrying: None,
            next_id: 1,
            rng: fastrand::Rng::with_seed(seed),
            pending: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> LeaseState {
        self.state
    }

    /// The client's deadline: from this instant on the session counts as expired.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True while `now` is before the deadline and the lease has not expired.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.state != LeaseState::Expired && now < self.deadline
    }

    /// Heartbeat `id`, sent at the time `poll` returned it, was answered normally at `now`.
    /// Returns when the acknowledged heartbeat was sent (for the runtime's round-trip
    /// estimate), `None` when the ack is for no heartbeat in flight.
    pub fn on_ack(&mut self, id: u64, now: Instant) -> Option<Instant> {
        if self.state == LeaseState::Expired {
            return None;
        }
        let sent = self.outstanding.remove(&id)?;
        // Older heartbeats cannot extend the lease any further than this one.
        self.outstanding.retain(|k, _| *k > id);
        self.on_acked_send(sent, now);
        Some(sent)
    }

    /// A request sent at `sent` that the server treats as a heartbeat (open, resume) was
    /// answered normally at `now`.
    pub fn on_acked_send(&mut self, sent: Instant, now: Instant) {
        if self.state == LeaseState::Expired || now >= self.deadline {
            // Too late: the deadline has passed even if poll has not run yet.
            return;
        }
        if sent > self.acked_sent {
            self.acked_sent = sent;
            self.deadline = self.deadline.max(sent + self.cfg.effective_ttl());
        }
        self.next_heartbeat = (self.acked_sent + self.cfg.heartbeat_interval).max(now);
        if self.state == LeaseState::Jeopardy {
            self.state = LeaseState::Connected;
            self.retrying = None;
            self.pending.push(LeaseAction::Recovered);
        }
    }

    /// A heartbeat or its connection failed at `now` (error reply, broken connection,
    /// failed connect). Starts jeopardy if the session was connected.
    pub fn on_failure(&mut self, now: Instant) {
        if self.state != LeaseState::Connected {
            return;
        }
        if now >= self.deadline {
            return; // poll will expire it.
        }
        let remaining = self.deadline - now;
        self.state = LeaseState::Jeopardy;
        let mut r = Retrying {
            attempt: 0,
            remaining_at_failure: remaining,
            next: None,
        };
        r.next = self.cfg.retry.schedule(
            RetryContext {
                attempt: 0,
                remaining_at_failure: remaining,
                remaining,
            },
            now,
            self.deadline,
            &mut self.rng,
        );
        self.retrying = Some(r);
        self.pending.push(LeaseAction::Jeopardy { remaining });
    }

    /// The connection is gone: no outstanding heartbeat can be answered any more.
    pub fn on_disconnect(&mut self, now: Instant) {
        self.outstanding.clear();
        self.on_failure(now);
    }

    /// Advances the machine to `now` and returns what to do, in order.
    pub fn poll(&mut self, now: Instant) -> Vec<LeaseAction> {
        let mut out = std::mem::take(&mut self.pending);
        if self.state == LeaseState::Expired {
            return out;
        }
        if now >= self.deadline {
            self.state = LeaseState::Expired;
            self.retrying = None;
            self.outstanding.clear();
            out.push(LeaseAction::Expired);
            return out;
        }
        // A heartbeat unanswered for too long is an abnormal response.
        if self.state == LeaseState::Connected {
            if let Some((_, sent)) = self.outstanding.iter().next() {
                if now >= *sent + self.cfg.heartbeat_timeout {
                    self.on_failure(now);
                    out.append(&mut self.pending);
                }
            }
        }
        match self.state {
            LeaseState::Connected => {
                if now >= self.next_heartbeat && self.outstanding.is_empty() {
                    out.push(self.send(now, false));
                    self.next_heartbeat = now + self.cfg.heartbeat_interval;
                }
            }
            LeaseState::Jeopardy => {
                let r = self.retrying.as_mut().expect("jeopardy has a schedule");
                if let Some(at) = r.next {
                    if now >= at {
                        r.attempt += 1;
                        let ctx = RetryContext {
                            attempt: r.attempt,
                            remaining_at_failure: r.remaining_at_failure,
                            remaining: self.deadline.saturating_duration_since(now),
                        };
                        r.next = self
                            .cfg
                            .retry
                            .schedule(ctx, now, self.deadline, &mut self.rng);
                        out.push(self.send(now, true));
                    }
                }
            }
            LeaseState::Expired => {}
        }
        out
    }

    /// The runtime has a new connection: a heartbeat to send on it now, rather than at the
    /// next scheduled one or retry (which it may already have spent on connecting). Its ack
    /// counts like any other. None once expired.
    pub fn send_now(&mut self, now: Instant) -> Option<LeaseAction> {
        if self.state == LeaseState::Expired || now >= self.deadline {
            return None;
        }
        let retry = self.state == LeaseState::Jeopardy;
        if !retry {
            self.next_heartbeat = now + self.cfg.heartbeat_interval;
        }
        Some(self.send(now, retry))
    }

    fn send(&mut self, now: Instant, retry: bool) -> LeaseAction {
        let id = self.next_id;
        self.next_id += 1;
        self.outstanding.insert(id, now);
        while self.outstanding.len() > MAX_OUTSTANDING {
            self.outstanding.pop_first();
        }
        LeaseAction::SendHeartbeat { id, retry }
    }

    /// When `poll` next has something to do.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.state == LeaseState::Expired {
            return None;
        }
        let mut t = self.deadline;
        match self.state {
            LeaseState::Connected => {
                if let Some((_, sent)) = self.outstanding.iter().next() {
                    t = t.min(*sent + self.cfg.heartbeat_timeout);
                } else {
                    t = t.min(self.next_heartbeat);
                }
            }
            LeaseState::Jeopardy => {
                if let Some(n) = self.retrying.as_ref().and_then(|r| r.next) {
                    t = t.min(n);
                }
            }
            LeaseState::Expired => {}
        }
        if !self.pending.is_empty() {
            // Something is already due: any instant in the past will do.
            return Some(self.acked_sent.min(t));
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn heartbeats_every_third_of_ttl_keep_the_lease() {
        let c = ManualClock::new();
        let mut l = Lease::new(LeaseConfig::new(ms(3000)), c.now(), 1);
        assert_eq!(l.poll(c.now()), vec![]);
        c.advance(ms(1000));
        let a = l.poll(c.now());
        assert!(matches!(
            a[..],
            [LeaseAction::SendHeartbeat {
                id: 1,
                retry: false
            }]
        ));
        c.advance(ms(1));
        l.on_ack(1, c.now());
        // TTL less 1% drift (30 ms) less the default margin (50 ms).
        assert_eq!(l.deadline(), c.start() + ms(1000) + ms(2920));
        for _ in 0..100 {
            c.advance(ms(1000));
            let a = l.poll(c.now());
            let LeaseAction::SendHeartbeat { id, .. } = a[0] else {
                panic!("{a:?}")
            };
            l.on_ack(id, c.now());
            assert_eq!(l.state(), LeaseState::Connected);
        }
    }

    #[test]
    fn silence_leads_to_jeopardy_then_expiry_at_the_deadline() {
        let c = ManualClock::new();
        let mut l = Lease::new(LeaseConfig::new(ms(10_000)), c.now(), 2);
        let deadline = l.deadline();
        assert_eq!(deadline, c.start() + ms(9_850));
        let mut sends = vec![];
        let mut saw_jeopardy = false;
        while let Some(t) = l.next_wakeup() {
            c.set(t - c.start());
            for a in l.poll(c.now()) {
                match a {
                    LeaseAction::SendHeartbeat { retry, .. } => sends.push((c.now(), retry)),
                    LeaseAction::Jeopardy { remaining } => {
                        saw_jeopardy = true;
                        assert_eq!(remaining, deadline - c.now());
                    }
                    LeaseAction::Expired => assert_eq!(c.now(), deadline),
                    LeaseAction::Recovered => panic!(),
                }
            }
        }
        assert!(saw_jeopardy);
        assert_eq!(l.state(), LeaseState::Expired);
        assert!(!l.is_valid(c.now()));
        assert!(sends.iter().all(|(t, _)| *t < deadline));
        let retries: Vec<_> = sends.iter().filter(|s| s.1).map(|s| s.0).collect();
        assert!(retries.len() >= 5, "{retries:?}");
        for w in retries.windows(3) {
            assert!(w[2] - w[1] <= w[1] - w[0] + ms(5), "gaps shrink");
        }
    }

    #[test]
    fn a_retry_acknowledged_before_the_deadline_recovers() {
        let c = ManualClock::new();
        let mut l = Lease::new(LeaseConfig::new(ms(3000)), c.now(), 3);
        c.advance(ms(500));
        l.on_disconnect(c.now());
        let a = l.poll(c.now());
        assert!(matches!(a[0], LeaseAction::Jeopardy { .. }));
        assert_eq!(l.state(), LeaseState::Jeopardy);
        let t = l.next_wakeup().unwrap();
        c.set(t - c.start());
        let a = l.poll(c.now());
        let LeaseAction::SendHeartbeat { id, retry: true } = a[0] else {
            panic!("{a:?}")
        };
        c.advance(ms(2));
        l.on_ack(id, c.now());
        assert_eq!(l.poll(c.now()), vec![LeaseAction::Recovered]);
        assert_eq!(l.state(), LeaseState::Connected);
        assert_eq!(l.deadline(), t + ms(2920));
    }

    #[test]
    fn the_default_margin_is_50ms_at_most_a_tenth_of_the_ttl() {
        assert_eq!(default_safety_margin(ms(10_000)), ms(50));
        assert_eq!(default_safety_margin(ms(500)), ms(50));
        assert_eq!(default_safety_margin(ms(200)), ms(20));
        assert_eq!(LeaseConfig::new(ms(1000)).effective_ttl(), ms(940));
    }

    #[test]
    fn a_heartbeat_sent_on_a_new_connection_is_counted() {
        // The connection broke, a retry dialled, and the new connection carries a fresh
        // heartbeat at once: its ack recovers the session (one asked for before the break
        // would have been forgotten by on_disconnect).
        let c = ManualClock::new();
        let mut l = Lease::new(LeaseConfig::new(ms(3000)), c.now(), 5);
        c.advance(ms(500));
        l.on_disconnect(c.now());
        assert!(matches!(l.poll(c.now())[0], LeaseAction::Jeopardy { .. }));
        c.advance(ms(300));
        let Some(LeaseAction::SendHeartbeat { id, retry: true }) = l.send_now(c.now()) else {
            panic!("a heartbeat to send")
        };
        let sent = c.now();
        c.advance(ms(1));
        l.on_ack(id, c.now());
        assert_eq!(l.poll(c.now()), vec![LeaseAction::Recovered]);
        assert_eq!(l.deadline(), sent + ms(2920));
        // Once expired, nothing is sent.
        c.advance(ms(10_000));
        l.poll(c.now());
        assert_eq!(l.send_now(c.now()), None);
    }

    #[test]
    fn a_late_ack_after_the_deadline_does_not_revive() {
        let c = ManualClock::new();
        let mut l = Lease::new(LeaseConfig::new(ms(1000)), c.now(), 4);
        c.advance(ms(334));
        let a = l.poll(c.now());
        let LeaseAction::SendHeartbeat { id, .. } = a[0] else {
            panic!()
        };
        c.advance(ms(2000));
        l.on_ack(id, c.now());
        assert!(l.poll(c.now()).contains(&LeaseAction::Expired));
        assert!(!l.is_valid(c.now()));
    }

    /// Under any clock-rate difference within the drift bound and any network delay, the
    /// client's deadline (in real time) comes before the server's expiry.
    #[test]
    fn client_deadline_precedes_server_expiry_within_drift_bound() {
        let mut rng = fastrand::Rng::with_seed(99);
        for _ in 0..10_000 {
            let ttl = ms(rng.u64(100..60_000));
            let cfg = LeaseConfig::new(ttl);
            // Client clock runs at rate (1 - rho) of real time, |rho| < drift_ratio.
            let rho = (rng.f64() * 2.0 - 1.0) * 0.0099;
            let delay = Duration::from_micros(rng.u64(0..2_000_000));
            // Heartbeat sent at real time 0, received by the server at `delay`:
            // server expiry in real time = delay + ttl (server clock taken as real).
            let server_expiry = delay + ttl;
            // Client deadline in client time = effective_ttl after the send; in real time:
            let client_deadline = cfg.effective_ttl().as_secs_f64() / (1.0 - rho);
            assert!(
                client_deadline < server_expiry.as_secs_f64(),
                "ttl {ttl:?} rho {rho} delay {delay:?}"
            );
        }
    }
}
