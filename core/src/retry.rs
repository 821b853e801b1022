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
use std::sync::Arc;
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

/// A policy from its written form, as the benchmarks and the plans they share write it:
/// `inverse`, `exponential` or `fixed`, optionally followed by `:` and comma-separated
/// `name=value` parameters (durations with a unit: `ns`, `us`, `ms` or `s`):
/// `inverse:first=0.5,floor=20ms,jitter=0.05`, `exponential:initial=100ms,cap=5s`,
/// `fixed:gap=200ms`. Parameters left out keep their defaults. The [`fmt::Display`] of each
/// policy writes this form with every parameter.
pub fn parse(spec: &str) -> Result<Arc<dyn RetryPolicy>, String> {
    let (kind, params) = spec.split_once(':').unwrap_or((spec, ""));
    let mut pairs = Vec::new();
    for p in params.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("retry policy {spec:?}: parameter {p:?} is not name=value"))?;
        pairs.push((k.trim(), v.trim()));
    }
    let bad = |k: &str| format!("retry policy {spec:?}: unknown parameter {k:?}");
    let ratio = |k: &str, v: &str| -> Result<f64, String> {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && (0.0..=1.0).contains(x))
            .ok_or_else(|| format!("retry policy {spec:?}: {k}={v:?} is not a number in [0, 1]"))
    };
    let dur = |k: &str, v: &str| -> Result<Duration, String> {
        parse_duration(v).ok_or_else(|| {
            format!("retry policy {spec:?}: {k}={v:?} is not a duration such as 20ms")
        })
    };
    match kind.trim() {
        "inverse" => {
            let mut p = InverseExponential::default();
            for (k, v) in pairs {
                match k {
                    "first" => p.first_fraction = ratio(k, v)?,
                    "floor" => p.floor = dur(k, v)?,
                    "jitter" => p.jitter = ratio(k, v)?,
                    _ => return Err(bad(k)),
                }
            }
            Ok(Arc::new(p))
        }
        "exponential" => {
            let mut p = Exponential::default();
            for (k, v) in pairs {
                match k {
                    "initial" => p.initial = dur(k, v)?,
                    "cap" => p.cap = dur(k, v)?,
                    "jitter" => p.jitter = ratio(k, v)?,
                    _ => return Err(bad(k)),
                }
            }
            Ok(Arc::new(p))
        }
        "fixed" => {
            let mut p = Fixed::default();
            for (k, v) in pairs {
                match k {
                    "gap" => p.gap = dur(k, v)?,
                    "jitter" => p.jitter = ratio(k, v)?,
                    _ => return Err(bad(k)),
                }
            }
            Ok(Arc::new(p))
        }
        other => Err(format!(
            "retry policy {spec:?}: {other:?} is not inverse, exponential or fixed"
        )),
    }
}

/// `20ms`, `1.5s`, `250us`, `100ns`: a duration of at most a day; `None` otherwise.
fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let x: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|x: &f64| x.is_finite() && *x >= 0.0)?;
    let secs = match unit {
        "ns" => x / 1e9,
        "us" => x / 1e6,
        "ms" => x / 1e3,
        "s" => x,
        _ => return None,
    };
    (secs <= 86_400.0).then(|| Duration::from_secs_f64(secs))
}

/// A duration written as [`parse`] reads it, exactly (in nanoseconds when needed).
fn write_duration(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    let ns = d.as_nanos();
    if ns % 1_000_000 == 0 {
        write!(f, "{}ms", ns / 1_000_000)
    } else if ns % 1_000 == 0 {
        write!(f, "{}us", ns / 1_000)
    } else {
        write!(f, "{ns}ns")
    }
}

impl fmt::Display for InverseExponential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inverse:first={},floor=", self.first_fraction)?;
        write_duration(f, self.floor)?;
        write!(f, ",jitter={}", self.jitter)
    }
}

impl fmt::Display for Exponential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("exponential:initial=")?;
        write_duration(f, self.initial)?;
        f.write_str(",cap=")?;
        write_duration(f, self.cap)?;
        write!(f, ",jitter={}", self.jitter)
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fixed:gap=")?;
        write_duration(f, self.gap)?;
        write!(f, ",jitter={}", self.jitter)
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

    #[test]
    fn written_forms_round_trip_and_bad_ones_say_what_is_wrong() {
        let e = Exponential {
            initial: Duration::from_micros(7_812),
            ..Default::default()
        };
        let inv = InverseExponential {
            first_fraction: 0.35,
            floor: Duration::from_nanos(1_500),
            jitter: 0.0,
        };
        let fixed = Fixed::default();
        for (written, debug) in [
            (inv.to_string(), format!("{inv:?}")),
            (e.to_string(), format!("{e:?}")),
            (fixed.to_string(), format!("{fixed:?}")),
        ] {
            // What is read back from the written form is the same policy.
            assert_eq!(
                format!("{:?}", parse(&written).unwrap()),
                debug,
                "{written}"
            );
        }
        assert_eq!(inv.to_string(), "inverse:first=0.35,floor=1500ns,jitter=0");
        assert_eq!(
            e.to_string(),
            "exponential:initial=7812us,cap=5000ms,jitter=0.05"
        );
        let f = parse("fixed:gap=1.5s,jitter=0").unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let now = Instant::now();
        let ctx = RetryContext {
            attempt: 3,
            remaining_at_failure: Duration::from_secs(10),
            remaining: Duration::from_secs(10),
        };
        let at = f.schedule(ctx, now, now + Duration::from_secs(10), &mut rng);
        assert_eq!(at, Some(now + Duration::from_millis(1500)));
        assert_eq!(
            format!("{:?}", parse("inverse").unwrap()),
            format!("{:?}", InverseExponential::default())
        );
        for (bad, says) in [
            ("linear", "is not inverse, exponential or fixed"),
            ("fixed:gap", "is not name=value"),
            ("fixed:gap=20", "is not a duration"),
            ("fixed:gap=-1ms", "is not a duration"),
            ("fixed:gap=2days", "is not a duration"),
            ("inverse:first=2", "is not a number in [0, 1]"),
            ("inverse:first=NaN", "is not a number in [0, 1]"),
            ("exponential:step=1ms", "unknown parameter"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
