//! Failure detector benchmark (SPEC 3.4, issue 3): the adaptive timeout, phi accrual and
//! fixed timeouts on the same generated heartbeat traces.
//!
//! `cargo run --release --example detector_bench [-- --hours H --trials N --seed S --verbose]`
//! (`--verbose` prints the events around every misclassified trial on stderr).
//!
//! Setting: one observer watches three peers that heartbeat every 100 ms on two networks
//! (one network for the "process, 1 network" trials). Traces are generated from a seed:
//! - sending: every 100 ms from a random phase, plus 0..2 ms of scheduling jitter;
//! - each network alternates calm periods (mean 60 s; delay 0.1 ms + exponential of mean
//!   0.3 ms; loss 0.2%) and congested periods (mean 4 s; exponential delay of mean 10..50 ms
//!   drawn per period; loss 2..5%), shared by all peers on that network;
//! - each peer pauses (a stalled process: no heartbeat, then one at the end) about once per
//!   ten minutes for 50..400 ms.
//!
//! Measured, all through `DetectorCore` (so detection includes the classification rules):
//! - false suspicions per hour: `peer suspected` and `network down` events on fault-free
//!   traces (pauses included: a pause longer than the timeout is counted as false);
//! - detection time: from the instant a peer stops sending on every network to the
//!   `peer suspected (process)` event about it;
//! - classification: for each kind of fault, a trial is right when the suspicion events in the
//!   3 s after the fault are exactly the expected ones.

use std::time::{Duration, Instant};
use tenure::detector::{AdaptiveConfig, DetectorConfig, DetectorCore, Estimator, PhiConfig};
use tenure::{Event, SuspicionKind};

const INTERVAL_MS: f64 = 100.0;
const PEERS: usize = 3;
const WINDOW_AFTER_FAULT_MS: f64 = 3000.0;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Peer 0 stops sending on every network.
    Process,
    /// The observer's network 1 stops delivering anything.
    LocalNetwork,
    /// Peer 0's path on network 1 stops delivering.
    Path,
}

struct Trace {
    nets: usize,
    /// (arrival ms, peer, network), sorted by time.
    arrivals: Vec<(f64, usize, usize)>,
    end_ms: f64,
}

fn exp(rng: &mut fastrand::Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.f64()).ln()
}

/// Congestion periods of one network: (start, end, mean delay ms, loss).
fn congestion(rng: &mut fastrand::Rng, end_ms: f64) -> Vec<(f64, f64, f64, f64)> {
    let mut out = Vec::new();
    let mut t = exp(rng, 60_000.0);
    while t < end_ms {
        let d = exp(rng, 4_000.0);
        out.push((t, t + d, 10.0 + 40.0 * rng.f64(), 0.02 + 0.03 * rng.f64()));
        t += d + exp(rng, 60_000.0);
    }
    out
}

fn generate(seed: u64, nets: usize, end_ms: f64, fault: Option<(Fault, f64)>) -> Trace {
    let mut rng = fastrand::Rng::with_seed(seed);
    let cong: Vec<_> = (0..nets).map(|_| congestion(&mut rng, end_ms)).collect();
    let mut arrivals = Vec::new();
    for p in 0..PEERS {
        let mut pauses = Vec::new();
        let mut t = exp(&mut rng, 600_000.0);
        while t < end_ms {
            let d = 50.0 + 350.0 * rng.f64();
            pauses.push((t, t + d));
            t += d + exp(&mut rng, 600_000.0);
        }
        let phase = rng.f64() * INTERVAL_MS;
        let mut pause_i = 0;
        let mut in_pause_sent = false;
        let mut k = 0u64;
        loop {
            let mut t = phase + k as f64 * INTERVAL_MS + rng.f64() * 2.0;
            k += 1;
            if t >= end_ms {
                break;
            }
            while pause_i < pauses.len() && pauses[pause_i].1 <= t {
                pause_i += 1;
                in_pause_sent = false;
            }
            if pause_i < pauses.len() && pauses[pause_i].0 <= t {
                if in_pause_sent {
                    continue;
                }
                in_pause_sent = true;
                t = pauses[pause_i].1;
            }
            if let Some((Fault::Process, at)) = fault {
                if p == 0 && t >= at {
                    break;
                }
            }
            for (n, periods) in cong.iter().enumerate() {
                if let Some((Fault::Path, at)) = fault {
                    if p == 0 && n == 1 && t >= at {
                        continue;
                    }
                }
                let period = periods.iter().find(|c| c.0 <= t && t < c.1);
                let (loss, delay) = match period {
                    Some(&(_, _, mean, loss)) => (loss, exp(&mut rng, mean)),
                    None => (0.002, 0.1 + exp(&mut rng, 0.3)),
                };
                if rng.f64() < loss {
                    continue;
                }
                let at = t + delay;
                if let Some((Fault::LocalNetwork, f)) = fault {
                    if n == 1 && at >= f {
                        continue;
                    }
                }
                arrivals.push((at, p, n));
            }
        }
    }
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    Trace {
        nets,
        arrivals,
        end_ms,
    }
}

/// Feeds a trace to a detector, polling exactly at its wake-ups; returns (ms, event).
fn run(est: Estimator, trace: &Trace) -> Vec<(f64, Event)> {
    let base = Instant::now();
    let at = |ms: f64| base + Duration::from_nanos((ms * 1e6) as u64);
    let ms = |i: Instant| (i - base).as_secs_f64() * 1000.0;
    let cfg = DetectorConfig::new(Duration::from_millis(INTERVAL_MS as u64)).estimator(est);
    let nets = ["a", "b"][..trace.nets]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let peers = (0..PEERS).map(|p| format!("p{p}")).collect();
    let mut core = DetectorCore::new(cfg, nets, peers, base).expect("valid configuration");
    let mut out = Vec::new();
    let poll_until = |core: &mut DetectorCore, until: Instant, out: &mut Vec<(f64, Event)>| {
        while let Some(w) = core.next_wakeup() {
            if w > until {
                break;
            }
            out.extend(core.poll(w).into_iter().map(|e| (ms(w), e)));
        }
    };
    for &(t, p, n) in &trace.arrivals {
        let when = at(t);
        poll_until(&mut core, when, &mut out);
        out.extend(core.on_heartbeat_at(p, n, when).into_iter().map(|e| (t, e)));
    }
    poll_until(&mut core, at(trace.end_ms), &mut out);
    out
}

fn is_suspicion(e: &Event) -> bool {
    matches!(e, Event::PeerSuspected { .. } | Event::NetworkDown { .. })
}

struct Candidate {
    label: String,
    est: Estimator,
}

#[derive(Default, Clone)]
struct Row {
    false_total: u64,
    false_process: u64,
    hours: f64,
    detections: Vec<f64>,
    missed: u64,
    /// Per fault kind (process 1 net, process 2 nets, local network, path): right, trials.
    class: [(u64, u64); 4],
}

fn expected(kind: Fault) -> Vec<Event> {
    match kind {
        Fault::Process => vec![Event::PeerSuspected {
            peer: "p0".into(),
            kind: SuspicionKind::Process,
            network: None,
        }],
        Fault::LocalNetwork => vec![Event::NetworkDown {
            network: "b".into(),
        }],
        Fault::Path => vec![Event::PeerSuspected {
            peer: "p0".into(),
            kind: SuspicionKind::Network,
            network: Some("b".into()),
        }],
    }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let hours = arg(&args, "--hours", 10);
    let trials = arg(&args, "--trials", 100);
    let seed = arg(&args, "--seed", 1);
    let verbose = args.iter().any(|a| a == "--verbose");
    let ms = Duration::from_millis;

    let mut cands = vec![
        Candidate {
            label: "adaptive (default)".into(),
            est: Estimator::Adaptive(AdaptiveConfig::default()),
        },
        Candidate {
            label: "adaptive, unbounded step".into(),
            est: Estimator::Adaptive(AdaptiveConfig {
                max_increase: 1000.0,
                max_decrease: 1000.0,
                ..AdaptiveConfig::default()
            }),
        },
        Candidate {
            label: "phi accrual, threshold 8 (default)".into(),
            est: Estimator::PhiAccrual(PhiConfig::default()),
        },
        Candidate {
            label: "phi accrual, threshold 8, pause 1 interval".into(),
            est: Estimator::PhiAccrual(PhiConfig {
                acceptable_pause_factor: 1.0,
                ..PhiConfig::default()
            }),
        },
    ];
    for t in [150u64, 200, 250, 300, 350, 400] {
        cands.push(Candidate {
            label: format!("fixed {t} ms"),
            est: Estimator::Fixed { timeout: ms(t) },
        });
    }
    let mut rows = vec![Row::default(); cands.len()];

    // False suspicions on fault-free traces.
    for h in 0..hours {
        let trace = generate(seed * 1_000_003 + h, 2, 3_600_000.0, None);
        for (c, row) in cands.iter().zip(rows.iter_mut()) {
            let evs = run(c.est, &trace);
            row.hours += 1.0;
            for (_, e) in &evs {
                if is_suspicion(e) {
                    row.false_total += 1;
                }
                if matches!(
                    e,
                    Event::PeerSuspected {
                        kind: SuspicionKind::Process,
                        ..
                    }
                ) {
                    row.false_process += 1;
                }
            }
        }
    }

    // Fault trials: the same trace for every candidate.
    let kinds = [
        (Fault::Process, 1usize),
        (Fault::Process, 2),
        (Fault::LocalNetwork, 2),
        (Fault::Path, 2),
    ];
    for (ki, &(kind, nets)) in kinds.iter().enumerate() {
        for t in 0..trials {
            let s = seed * 7_919 + (ki as u64) * 1_000_000 + t;
            let fault_at = 20_000.0 + 20_000.0 * fastrand::Rng::with_seed(s).f64();
            let trace = generate(
                s,
                nets,
                fault_at + WINDOW_AFTER_FAULT_MS + 2_000.0,
                Some((kind, fault_at)),
            );
            let want = expected(kind);
            let window_end = fault_at + WINDOW_AFTER_FAULT_MS;
            for (c, row) in cands.iter().zip(rows.iter_mut()) {
                let evs = run(c.est, &trace);
                let after: Vec<&Event> = evs
                    .iter()
                    .filter(|(t, e)| *t >= fault_at && *t < window_end && is_suspicion(e))
                    .map(|(_, e)| e)
                    .collect();
                let right =
                    after.len() == want.len() && after.iter().zip(&want).all(|(a, b)| *a == b);
                row.class[ki].1 += 1;
                if right {
                    row.class[ki].0 += 1;
                } else if verbose {
                    eprintln!(
                        "{} {kind:?} on {nets} network(s), seed {s}, fault at {fault_at:.0} ms:",
                        c.label
                    );
                    for (t, e) in evs
                        .iter()
                        .filter(|(t, _)| *t >= fault_at - 1000.0 && *t < window_end)
                    {
                        eprintln!("  {:+.0} ms {e:?}", t - fault_at);
                    }
                }
                if kind == Fault::Process && nets == 2 {
                    let det = evs
                        .iter()
                        .find(|(t, e)| *t >= fault_at && *t < window_end && *e == want[0]);
                    match det {
                        Some((t, _)) => row.detections.push(t - fault_at),
                        None => row.missed += 1,
                    }
                }
            }
        }
    }

    // Fixed-timeout curve: false suspicions per hour against mean detection.
    let fixed: Vec<(f64, f64)> = cands
        .iter()
        .zip(&rows)
        .filter(|(c, _)| matches!(c.est, Estimator::Fixed { .. }))
        .map(|(_, r)| (mean(&r.detections), r.false_total as f64 / r.hours))
        .collect();
    let interpolate = |d: f64| -> Option<f64> {
        fixed.windows(2).find_map(|w| {
            let ((d0, f0), (d1, f1)) = (w[0], w[1]);
            (d0 <= d && d <= d1 && d1 > d0).then(|| f0 + (f1 - f0) * (d - d0) / (d1 - d0))
        })
    };

    println!(
        "Heartbeat every 100 ms; 1 observer, {PEERS} peers, 2 networks; {hours} h of fault-free traces; \
         {trials} trials per fault kind; seed {seed}.\n"
    );
    println!(
        "| detector | mean detection (ms) | p99 detection (ms) | missed | false suspicions / h | of which process | fixed timeout at the same mean detection: false / h |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (c, r) in cands.iter().zip(&rows) {
        let m = mean(&r.detections);
        let p99 = percentile(&mut r.detections.clone(), 0.99);
        let cmp = match c.est {
            Estimator::Fixed { .. } => "-".to_string(),
            _ => interpolate(m).map_or("out of range".into(), |f| format!("{f:.1}")),
        };
        println!(
            "| {} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {} |",
            c.label,
            m,
            p99,
            r.missed,
            r.false_total as f64 / r.hours,
            r.false_process as f64 / r.hours,
            cmp
        );
    }
    println!("\nClassification accuracy (suspicion events in the 3 s after the fault exactly as expected):\n");
    println!("| detector | process stop, 1 network | process stop, 2 networks | local network down | one peer's path down |");
    println!("|---|---:|---:|---:|---:|");
    for (c, r) in cands.iter().zip(&rows) {
        let cell =
            |(ok, n): (u64, u64)| format!("{ok}/{n} ({:.0}%)", 100.0 * ok as f64 / n.max(1) as f64);
        println!(
            "| {} | {} | {} | {} | {} |",
            c.label,
            cell(r.class[0]),
            cell(r.class[1]),
            cell(r.class[2]),
            cell(r.class[3])
        );
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}
