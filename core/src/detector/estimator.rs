//! When is a link's silence long enough to count? One [`Tracker`] per (peer, network) link
//! records heartbeat arrivals and answers with a deadline, by one of three [`Estimator`]s:
//!
//! - [`Estimator::Adaptive`] (seed 002, "adaptive heartbeats"): after each heartbeat a *target*
//!   timeout is computed from the inter-arrival times of the last `window` heartbeats,
//!   `mean + margin + k * stddev`, kept between `floor_factor * interval` and
//!   `ceiling_factor * interval`. The *current* timeout then moves toward the target by at most
//!   `max_increase * interval` (upward) or `max_decrease * interval` (downward) per heartbeat.
//!   One late heartbeat therefore raises the timeout a little, not all the way (a stop right
//!   after it is still caught quickly), and a burst of jitter raises it over a few heartbeats
//!   and keeps it raised for a while after the burst (the next burst does not cause a
//!   suspicion).
//! - [`Estimator::PhiAccrual`] (Hayashibara et al., 2004): inter-arrival times are taken as
//!   normally distributed with the window's mean and standard deviation (the latter at least
//!   `min_std_dev_factor * interval`). After `t` of silence the suspicion level is
//!   `phi(t) = -log10(P(X > t))`; the link is silent once `phi > threshold`. Since `phi`
//!   grows with `t`, this is the deadline `last + mean + z * stddev` where `z` solves
//!   `phi = threshold` for a standard normal; `z` is computed once per tracker.
//! - [`Estimator::Fixed`]: a constant timeout, for comparison.
//!
//! All three are fed the same arrival instants, so they can be compared on the same traces.
//! The first heartbeat of a link gives no inter-arrival sample (the time since the tracker
//! was created is not one); until two samples exist the window's mean is taken to be the
//! nominal interval and its standard deviation a quarter of it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Largest window (inter-arrival samples kept per link) accepted by the estimators.
pub const MAX_WINDOW: usize = 10_000;

/// Largest phi threshold accepted (the probability of a false suspicion per check is
/// `10^-threshold`; beyond this the deadline no longer changes in practice).
pub const MAX_PHI_THRESHOLD: f64 = 100.0;

/// Parameters of the adaptive timeout (seed 002). Durations are given as multiples of the
/// nominal heartbeat interval, so the defaults fit any interval.
///
/// The target after each heartbeat is `mean + margin_factor * interval + k * stddev` of the
/// window's inter-arrival times, kept within `floor_factor ..= ceiling_factor` intervals; the
/// current timeout moves toward it by at most `max_increase` (up) or `max_decrease` (down)
/// intervals per heartbeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// Inter-arrival samples kept (default 100).
    pub window: usize,
    /// Standard deviations in the target (default 4).
    pub k: f64,
    /// Silence always allowed on top of the mean, as a multiple of the interval (default 1:
    /// one lost heartbeat).
    pub margin_factor: f64,
    /// The timeout never goes below `floor_factor * interval` (default 2.2: a lost heartbeat
    /// with ordinary jitter is no suspicion). Also the starting timeout.
    pub floor_factor: f64,
    /// The timeout never goes above `ceiling_factor * interval` (default 10).
    pub ceiling_factor: f64,
    /// Largest increase per heartbeat, as a multiple of the interval (default 0.25).
    pub max_increase: f64,
    /// Largest decrease per heartbeat, as a multiple of the interval (default 0.02: after a
    /// burst of jitter the timeout comes back down by one interval over fifty heartbeats).
    pub max_decrease: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            window: 100,
            k: 4.0,
            margin_factor: 1.0,
            floor_factor: 2.2,
            ceiling_factor: 10.0,
            max_increase: 0.25,
            max_decrease: 0.02,
        }
    }
}

/// Parameters of the phi accrual detector. Durations are multiples of the nominal interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiConfig {
    /// The link is silent once `phi` exceeds this (default 8: a false suspicion per check has
    /// probability `1e-8` if arrivals really were normal).
    pub threshold: f64,
    /// Inter-arrival samples kept (default 100).
    pub window: usize,
    /// Smallest standard deviation used, as a multiple of the interval (default 0.1), so a
    /// very regular link does not get a deadline right after the mean.
    pub min_std_dev_factor: f64,
    /// Silence always tolerated on top of the distribution, as a multiple of the interval
    /// (default 0): Akka's "acceptable heartbeat pause".
    pub acceptable_pause_factor: f64,
}

impl Default for PhiConfig {
    fn default() -> Self {
        PhiConfig {
            threshold: 8.0,
            window: 100,
            min_std_dev_factor: 0.1,
            acceptable_pause_factor: 0.0,
        }
    }
}

/// How a link's deadline is computed from its arrivals. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimator {
    /// The adaptive timeout of seed 002 (the default).
    Adaptive(AdaptiveConfig),
    /// The phi accrual detector.
    PhiAccrual(PhiConfig),
    /// A constant timeout after the last heartbeat.
    Fixed {
        /// Silence allowed after a heartbeat.
        timeout: Duration,
    },
}

impl Default for Estimator {
    fn default() -> Self {
        Estimator::Adaptive(AdaptiveConfig::default())
    }
}

impl Estimator {
    /// Checks the parameters against a nominal interval; the error says which is wrong.
    pub fn validate(&self, interval: Duration) -> Result<(), String> {
        let finite = |name: &str, v: f64, lo: f64, hi: f64| -> Result<(), String> {
            if !v.is_finite() || v < lo || v > hi {
                return Err(format!("{name} is {v}; it must be within {lo} ..= {hi}"));
            }
            Ok(())
        };
        let window = |w: usize| -> Result<(), String> {
            if !(2..=MAX_WINDOW).contains(&w) {
                return Err(format!(
                    "estimator window is {w}; it must be within 2 ..= {MAX_WINDOW}"
                ));
            }
            Ok(())
        };
        match self {
            Estimator::Adaptive(c) => {
                window(c.window)?;
                finite("adaptive k", c.k, 0.0, 1000.0)?;
                finite("adaptive margin factor", c.margin_factor, 0.0, 1000.0)?;
                finite("adaptive floor factor", c.floor_factor, 1.0, 1000.0)?;
                finite(
                    "adaptive ceiling factor",
                    c.ceiling_factor,
                    c.floor_factor,
                    10_000.0,
                )?;
                finite("adaptive max increase", c.max_increase, 1e-6, 1000.0)?;
                finite("adaptive max decrease", c.max_decrease, 1e-6, 1000.0)?;
            }
            Estimator::PhiAccrual(c) => {
                window(c.window)?;
                finite("phi threshold", c.threshold, 0.01, MAX_PHI_THRESHOLD)?;
                finite("phi min std dev factor", c.min_std_dev_factor, 1e-3, 100.0)?;
                finite(
                    "phi acceptable pause factor",
                    c.acceptable_pause_factor,
                    0.0,
                    1000.0,
                )?;
            }
            Estimator::Fixed { timeout } => {
                if *timeout < interval {
                    return Err(format!(
                        "fixed timeout {timeout:?} is shorter than the heartbeat interval {interval:?}"
                    ));
                }
                if *timeout > super::MAX_INTERVAL * 10 {
                    return Err(format!(
                        "fixed timeout {timeout:?} is longer than {:?}",
                        super::MAX_INTERVAL * 10
                    ));
                }
            }
        }
        Ok(())
    }

    /// The stable lowercase name of the estimator ("adaptive", "phi", "fixed").
    pub fn name(&self) -> &'static str {
        match self {
            Estimator::Adaptive(_) => "adaptive",
            Estimator::PhiAccrual(_) => "phi",
            Estimator::Fixed { .. } => "fixed",
        }
    }
}

/// A sliding window of inter-arrival samples (milliseconds) with running sums.
#[derive(Debug, Clone)]
struct Window {
    cap: usize,
    samples: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    /// Pushes since the sums were last recomputed exactly (bounds rounding drift).
    since_exact: usize,
}

impl Window {
    fn new(cap: usize) -> Self {
        Window {
            cap,
            samples: VecDeque::with_capacity(cap.min(1024)),
            sum: 0.0,
            sum_sq: 0.0,
            since_exact: 0,
        }
    }

    fn push(&mut self, x: f64) {
        if self.samples.len() == self.cap {
            if let Some(old) = self.samples.pop_front() {
                self.sum -= old;
                self.sum_sq -= old * old;
            }
        }
        self.samples.push_back(x);
        self.sum += x;
        self.sum_sq += x * x;
        self.since_exact += 1;
        if self.since_exact >= self.cap {
            self.sum = self.samples.iter().sum();
            self.sum_sq = self.samples.iter().map(|v| v * v).sum();
            self.since_exact = 0;
        }
    }

    /// Mean and (population) standard deviation, or the prior when under two samples.
    fn stats(&self, interval_ms: f64) -> (f64, f64) {
        let n = self.samples.len();
        if n < 2 {
            return (interval_ms, interval_ms / 4.0);
        }
        let n = n as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(0.0);
        (mean, var.sqrt())
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Adaptive {
        cfg: AdaptiveConfig,
        current_ms: f64,
    },
    Phi {
        cfg: PhiConfig,
        z: f64,
    },
    Fixed {
        timeout: Duration,
    },
}

/// The arrival history and deadline of one (peer, network) link.
#[derive(Debug, Clone)]
pub struct Tracker {
    kind: Kind,
    interval_ms: f64,
    window: Window,
    last: Instant,
    /// First arrival since the link was last silent (the start before any silence).
    streak_start: Instant,
    heartbeats: u64,
    timeout: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Milliseconds to a duration, rounded to the nanosecond (so that 2.2 intervals of 100 ms
/// are 220 ms exactly).
fn from_ms(v: f64) -> Duration {
    // Callers keep v finite and bounded (clamped by the configuration's limits).
    Duration::from_nanos((v * 1e6).round().clamp(0.0, 1e18) as u64)
}

impl Tracker {
    /// A link counted as heard at `start`. `estimator` must have passed
    /// [`Estimator::validate`] for `interval`.
    pub fn new(estimator: &Estimator, interval: Duration, start: Instant) -> Self {
        let interval_ms = ms(interval);
        let (kind, window) = match *estimator {
            Estimator::Adaptive(cfg) => (
                Kind::Adaptive {
                    cfg,
                    current_ms: cfg.floor_factor * interval_ms,
                },
                cfg.window,
            ),
            Estimator::PhiAccrual(cfg) => (
                Kind::Phi {
                    cfg,
                    z: z_for_phi(cfg.threshold),
                },
                cfg.window,
            ),
            Estimator::Fixed { timeout } => (Kind::Fixed { timeout }, 2),
        };
        let mut t = Tracker {
            kind,
            interval_ms,
            window: Window::new(window),
            last: start,
            streak_start: start,
            heartbeats: 0,
            timeout: Duration::ZERO,
        };
        t.timeout = t.compute_timeout();
        t
    }

    /// A heartbeat arrived at `now`. An instant earlier than the last arrival counts as the
    /// last arrival (time never goes backwards).
    pub fn on_arrival(&mut self, now: Instant) {
        let now = now.max(self.last);
        if self.heartbeats > 0 {
            self.window.push(ms(now - self.last));
        }
        if now >= self.deadline() {
            self.streak_start = now;
        }
        self.heartbeats += 1;
        self.last = now;
        if let Kind::Adaptive { cfg, current_ms } = &mut self.kind {
            let (mean, sd) = self.window.stats(self.interval_ms);
            let target = (mean + cfg.margin_factor * self.interval_ms + cfg.k * sd).clamp(
                cfg.floor_factor * self.interval_ms,
                cfg.ceiling_factor * self.interval_ms,
            );
            let up = cfg.max_increase * self.interval_ms;
            let down = cfg.max_decrease * self.interval_ms;
            *current_ms = (*current_ms + (target - *current_ms).clamp(-down, up)).clamp(
                cfg.floor_factor * self.interval_ms,
                cfg.ceiling_factor * self.interval_ms,
            );
        }
        self.timeout = self.compute_timeout();
    }

    fn compute_timeout(&self) -> Duration {
        match &self.kind {
            Kind::Adaptive { current_ms, .. } => from_ms(*current_ms),
            Kind::Phi { cfg, z } => {
                let (mean, sd) = self.window.stats(self.interval_ms);
                let sd = sd.max(cfg.min_std_dev_factor * self.interval_ms);
                let pause = cfg.acceptable_pause_factor * self.interval_ms;
                // A deadline before the last arrival would make every link silent at once.
                from_ms((mean + pause + z * sd).max(0.0))
            }
            Kind::Fixed { timeout } => *timeout,
        }
    }

    /// The instant of the last heartbeat (the creation instant before the first one).
    pub fn last(&self) -> Instant {
        self.last
    }

    /// The arrival that ended the link's latest silence: since then every heartbeat came
    /// before its deadline. The creation instant if the link was never silent at an arrival.
    pub fn streak_start(&self) -> Instant {
        self.streak_start
    }

    /// Heartbeats received.
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats
    }

    /// The silence currently allowed after the last heartbeat.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The first instant at which the link counts as silent: `last() + timeout()`.
    pub fn deadline(&self) -> Instant {
        self.last + self.timeout
    }

    /// True when the link is silent at `now` (`now >= deadline()`).
    pub fn is_silent(&self, now: Instant) -> bool {
        now >= self.deadline()
    }

    /// Mean inter-arrival time of the window (the nominal interval under two samples).
    pub fn mean(&self) -> Duration {
        from_ms(self.window.stats(self.interval_ms).0)
    }

    /// Standard deviation of the window's inter-arrival times (a quarter of the interval
    /// under two samples).
    pub fn std_dev(&self) -> Duration {
        from_ms(self.window.stats(self.interval_ms).1)
    }

    /// The phi suspicion level at `now`: `-log10` of the probability that a heartbeat comes
    /// even later than `now`, under the normal approximation of the window (with the phi
    /// configuration's minimum standard deviation and pause for a phi tracker, the defaults of
    /// [`PhiConfig`] otherwise). Informative for every estimator; decisive only for
    /// [`Estimator::PhiAccrual`].
    pub fn phi(&self, now: Instant) -> f64 {
        let cfg = match &self.kind {
            Kind::Phi { cfg, .. } => *cfg,
            _ => PhiConfig::default(),
        };
        let (mean, sd) = self.window.stats(self.interval_ms);
        let sd = sd.max(cfg.min_std_dev_factor * self.interval_ms);
        let mean = mean + cfg.acceptable_pause_factor * self.interval_ms;
        let t = ms(now.saturating_duration_since(self.last));
        phi_of_z((t - mean) / sd)
    }
}

/// `ln(erfc(x))` for `x >= 0`, from the Chebyshev-fitted rational approximation of erfc
/// (relative error under 1.2e-7 everywhere), evaluated in the log domain so that it never
/// underflows.
fn ln_erfc_pos(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t.ln() + poly
}

/// `phi` for a standardized silence `z = (t - mean) / stddev`: `-log10(P(Z > z))`.
pub fn phi_of_z(z: f64) -> f64 {
    // P(Z > z) = erfc(z / sqrt 2) / 2.
    let x = z / std::f64::consts::SQRT_2;
    let ln_tail = if x >= 0.0 {
        ln_erfc_pos(x) - std::f64::consts::LN_2
    } else {
        // erfc(x) = 2 - erfc(-x), so P = 1 - erfc(-x) / 2.
        (1.0 - 0.5 * ln_erfc_pos(-x).exp())
            .max(f64::MIN_POSITIVE)
            .ln()
    };
    (-ln_tail / std::f64::consts::LN_10).max(0.0)
}

/// The standardized silence at which `phi` reaches `threshold` (bisection; `phi_of_z` is
/// increasing).
pub fn z_for_phi(threshold: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0_f64, 40.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if phi_of_z(mid) < threshold {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_matches_the_normal_tail() {
        // P(Z > 0) = 0.5, P(Z > 1.6449) = 0.05, P(Z > 3.0902) = 0.001, P(Z > 5.612) = 1e-8.
        assert!((phi_of_z(0.0) - std::f64::consts::LOG10_2).abs() < 1e-4);
        assert!((phi_of_z(1.644_854) - 1.301_03).abs() < 1e-4);
        assert!((phi_of_z(3.090_232) - 3.0).abs() < 1e-4);
        assert!((phi_of_z(5.612) - 8.0).abs() < 1e-2);
        assert!(phi_of_z(-5.0) < 1e-6);
        assert!(phi_of_z(60.0).is_finite() && phi_of_z(60.0) > 700.0);
        let mut prev = -1.0;
        for i in -100..400 {
            let p = phi_of_z(i as f64 / 10.0);
            assert!(p >= prev, "phi must not decrease at z={}", i as f64 / 10.0);
            prev = p;
        }
        assert!((z_for_phi(3.0) - 3.090_232).abs() < 1e-4);
        assert!((phi_of_z(z_for_phi(8.0)) - 8.0).abs() < 1e-9);
    }

    #[test]
    fn window_statistics_are_exact_after_many_samples() {
        let mut w = Window::new(10);
        for i in 0..10_005 {
            w.push(100.0 + (i % 2) as f64 * 10.0);
        }
        let (m, sd) = w.stats(100.0);
        assert!((m - 105.0).abs() < 1e-9, "{m}");
        assert!((sd - 5.0).abs() < 1e-6, "{sd}");
    }
}
