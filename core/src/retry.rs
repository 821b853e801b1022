//! Retry policies for heartbeats whose response was abnormal (SPEC 3.1, seed 000).
//!
//! When a heartbeat times out, fails or its connection breaks, the session enters jeopardy and
//! retries until a response is normal or the client's lease deadline passes. The policy says
//! how long to wait before each retry. All three policies obey one rule, enforced here and
//! nowhere else: **no retry is scheduled at or past the deadline** ([`RetryPolicy::schedule`]).
//!
//! - [`InverseExponential`] (the default, from seed 000): the first gap is a fraction of the
//!   lease remaining when jeopardy began (default one half), and each later gap is half the one
//!   before, down to a floor. Early retries are far apart, so an outage costs the network and
//!   the server little; late retries are close together, so the session has many chances to
//!   recover just before it would expire.
//! - [`Exponential`]: ordinary exponential backoff (gaps double), for comparison.
//! - [`Fixed`]: a constant gap, for comparison.
//!
//! Each gap gets a multiplicative jitter of a few percent, drawn from a seeded generator that
//! the caller owns, so schedules are reproducible in tests and in the simulation.

use std::fmt;
use std::time::{Duration, Instant};

/// What a policy knows when it is asked for the next gap.
#[derive(Debug, Clone, Copy)]
pub struct RetryContext {
    /// 0 for the first retry after the failure, 1 for the second, and so on.
    pub attempt: u32,
    /// Lease time that remained when jeopardy began (deadline minus the time of the failure).
    pub remaining_at_failure: Duration,
    /// Lease time that remains now.
    pub remaining: Duration,
}

/// A schedule of retry gaps. Implementations decide the raw gap; [`RetryPolicy::schedule`]
/// applies jitter and the deadline rule.
pub trait RetryPolicy: Send + Sync + fmt::Debug {
    /// The gap to wait before retry number `ctx.attempt`, before jitter.
    fn gap(&self, ctx: RetryContext) -> Duration;

    /// Relative jitter applied to every gap (0.05 means each gap is multiplied by a factor
    /// drawn uniformly from [0.95, 1.05]).
    fn jitter(&self) -> f64 {
        0.05
    }

    /// The instant of the next retry, or `None` when it would fall at or past `deadline`.
    fn schedule(
        &self,
        ctx: RetryContext,
        now: Instant,
        deadline: Instant,
        rng: &mut fastrand::Rng,
    ) -> Option<Instant> {
        let raw = self.gap(ctx);
        let j = self.jitter().clamp(0.0, 0.5);
        let factor = 1.0 + j * (rng.f64() * 2.0 - 1.0);
        let gap = raw.mul_f64(factor);
        let at = now.checked_add(gap)?;
        (at < deadline).then_some(at)
    }
}

/// Inverse exponential backoff:
/// `d_k = max(floor, min(first_fraction * remaining_at_failure / 2^k, remaining_now / 2))`.
///
/// The second term keeps the halving aimed at the deadline even when jitter has made earlier
/// gaps a little longer than planned, so the last retries always land in the final moments
/// of the lease instead of stopping early.
#[derive(Debug, Clone)]
pub struct InverseExponential {
    /// Share of the remaining lease waited before the first retry (default 0.5).
    pub first_fraction: f64,
    /// Smallest gap (default 20 ms).
    pub floor: Duration,
    /// Relative jitter (default 0.05).
    pub jitter: f64,
}

impl Default for InverseExponential {
    fn default() -> Self {
        InverseExponential {
            first_fraction: 0.5,
            floor: Duration::from_millis(20),
            jitter: 0.05,
        }
    }
}

impl RetryPolicy for InverseExponential {
    fn gap(&self, ctx: RetryContext) -> Duration {
        let first = ctx
            .remaining_at_failure
            .mul_f64(self.first_fraction.clamp(0.0, 1.0));
        let shift = ctx.attempt.min(63);
        let g = Duration::from_nanos((first.as_nanos() >> shift).min(u64::MAX as u128) as u64);
        g.min(ctx.remaining / 2).max(self.floor)
    }
    fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// Ordinary exponential backoff: `d_k = min(cap, initial * 2^k)`.
#[derive(Debug, Clone)]
pub struct Exponential {
    /// First gap (default 100 ms).
    pub initial: Duration,
    /// Largest gap (default 5 s).
    pub cap: Duration,
    /// Relative jitter (default 0.05).
    pub jitter: f64,
}

impl Default for Exponential {
    fn default() -> Self {
        Exponential {
            initial: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            jitter: 0.05,
        }
    }
}

impl RetryPolicy for Exponential {
    fn gap(&self, ctx: RetryContext) -> Duration {
        let mul = 1u32.checked_shl(ctx.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(mul).min(self.cap)
    }
    fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// A fixed gap between retries.
#[derive(Debug, Clone)]
pub struct Fixed {
    /// The gap (default 200 ms).
    pub gap: Duration,
    /// Relative jitter (default 0.05).
    pub jitter: f64,
}

impl Default for Fixed {
    fn default() -> Self {
        Fixed {
            gap: Duration::from_millis(200),
            jitter: 0.05,
        }
    }
}

impl RetryPolicy for Fixed {
    fn gap(&self, _ctx: RetryContext) -> Duration {
        self.gap
    }
    fn jitter(&self) -> f64 {
        self.jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(policy: &dyn RetryPolicy, remaining: Duration, seed: u64) -> Vec<Duration> {
        let start = Instant::now();
        let deadline = start + remaining;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut now = start;
        let mut gaps = vec![];
        for attempt in 0.. {
            let ctx = RetryContext {
                attempt,
                remaining_at_failure: remaining,
                remaining: deadline - now,
            };
            match policy.schedule(ctx, now, deadline, &mut rng) {
                Some(at) => {
                    assert!(at < deadline, "retry scheduled past the deadline");
                    gaps.push(at - now);
                    now = at;
                }
                None => break,
            }
        }
        gaps
    }

    #[test]
    fn inverse_exponential_gaps_strictly_decrease_until_the_floor_and_stop_before_deadline() {
        let p = InverseExponential::default();
        for seed in 0..500 {
            let remaining = Duration::from_millis(1000 + seed * 37);
            let gaps = run(&p, remaining, seed);
            assert!(gaps.len() >= 4, "seed {seed}: too few retries {gaps:?}");
            // Above the floor (with jitter room), each gap is strictly smaller than the last.
            for w in gaps.windows(2) {
                if w[1] > p.floor.mul_f64(1.0 + p.jitter) {
                    assert!(w[1] < w[0], "seed {seed}: gaps not decreasing: {gaps:?}");
                }
            }
            let first = gaps[0].as_secs_f64() / remaining.as_secs_f64();
            assert!((0.47..=0.53).contains(&first), "first gap {first}");
            let total: Duration = gaps.iter().sum();
            assert!(total < remaining);
        }
    }

    #[test]
    fn inverse_exponential_retries_densely_near_the_deadline() {
        // 10 s lease: the last second before the deadline holds many retries.
        let gaps = run(&InverseExponential::default(), Duration::from_secs(10), 7);
        let mut t = Duration::ZERO;
        let mut in_last_second = 0;
        for g in &gaps {
            t += *g;
            if t > Duration::from_secs(9) {
                in_last_second += 1;
            }
        }
        // 5 s, 2.5 s, 1.25 s, ... : nothing in the first half, most retries in the last second.
        assert!(
            in_last_second >= 6,
            "{in_last_second} retries in the last second: {gaps:?}"
        );
        // The last retry lands in the final moments of the lease.
        assert!(t > Duration::from_millis(9_950), "last retry at {t:?}");
        assert!(in_last_second * 2 > gaps.len(), "{gaps:?}");
        assert!(gaps[0] > Duration::from_secs(4));
    }

    #[test]
    fn exponential_and_fixed_never_pass_the_deadline() {
        for seed in 0..200 {
            let r = Duration::from_millis(500 + seed * 13);
            for g in [
                run(&Exponential::default(), r, seed),
                run(&Fixed::default(), r, seed),
            ] {
                let total: Duration = g.iter().sum();
                assert!(total < r);
            }
        }
        let e = run(&Exponential::default(), Duration::from_secs(10), 1);
        for w in e.windows(2) {
            if w[0] < Duration::from_secs(4) {
                assert!(w[1] > w[0], "exponential gaps grow: {e:?}");
            }
        }
    }

    #[test]
    fn no_retry_when_nothing_remains() {
        let now = Instant::now();
        let mut rng = fastrand::Rng::with_seed(1);
        let ctx = RetryContext {
            attempt: 0,
            remaining_at_failure: Duration::ZERO,
            remaining: Duration::ZERO,
        };
        assert!(InverseExponential::default()
            .schedule(ctx, now, now, &mut rng)
            .is_none());
    }
}
