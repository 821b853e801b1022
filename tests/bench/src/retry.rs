//! `--retry`: seed 000's claim measured (issue 15). Sessions that differ only by their retry
//! policy go through outages of the path to their server, and for each policy and outage
//! come out: the pressure (dials and requests per second reaching the path during the
//! outage), the herd (the busiest 10 ms after it, per second), the share of sessions that
//! survived, and how long after the outage's end the sessions in jeopardy recovered.
//!
//! Two measurements of the same plan, compared side by side:
//!
//! - **the simulation** (`core/src/sim/retry.rs`): the real client session and server node,
//!   10,000 sessions per policy, exact and deterministic. This program writes the plan
//!   (`--plan-out FILE`); `cargo test` runs the simulation's `bench` test on it; this
//!   program reads its results (`--sim FILE`).
//! - **real processes**: `tenure serve`, one worker process of real `tenure::Client`s per
//!   policy (each client is what users run: its timer, reader and dispatcher threads), and
//!   the fault proxy of [`crate::proxy`] between them, which counts what reaches it. Fewer
//!   sessions per policy (200, `--real-sessions N`): every client runs on this one 2-core
//!   machine, each with three threads and a thread per dial, and with 1,000 per policy
//!   (5,000 clients) the herd after an outage saturated the machine (thread creation), so
//!   the figures measured the machine rather than the policy. The figures are compared per
//!   1,000 sessions.
//!
//! `bash tests/bench/run.sh --retry` runs the three steps.
//!
//! The policies: inverse exponential, exponential and fixed with their defaults, and
//! exponential and fixed tuned to the same mean number of retries as the inverse default
//! ([`tune`]); for the trade-off plot (simulation only), each policy across a range of its
//! parameter.
//!
//! Outages ([`crate::proxy::Mode`]): *refused* (the server is gone: connections reset, dials
//! refused), *blackhole* (the path drops every message; connections stay open), *slow* (the
//! server is overloaded: every reply half a TTL late); each lasting 5 % to 120 % of the TTL.

use crate::bench::Ctx;
use crate::child::Child;
use crate::proxy::{Mode, Proxy};
use crate::util::{mono_ns, say, sleep_until_ns, Args, Scale};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenure::retry::{Exponential, Fixed, InverseExponential, RetryContext, RetryPolicy};
use tenure::server::Durability;
use tenure::{Client, ClientConfig, Event};

const MS: u64 = 1_000_000;

/// A policy under test: a short name and its written form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub policy: String,
    pub sessions: usize,
}

/// An outage of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outage {
    pub kind: String,
    pub fraction: f64,
}

/// Groups that share a world, and the outages it goes through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanRun {
    pub name: String,
    pub groups: Vec<Group>,
    pub outages: Vec<Outage>,
    pub series: bool,
}

/// What both measurements run (read by `core/src/sim/retry.rs` too).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub ttl_ms: u64,
    pub slow_ms: u64,
    pub bucket_ms: u64,
    pub seed: u64,
    pub runs: Vec<PlanRun>,
}

/// One group through one outage (the simulation writes these; the real run computes them).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct GroupResult {
    pub name: String,
    pub policy: String,
    pub sessions: usize,
    pub survived: usize,
    pub jeopardy: usize,
    pub baseline_per_s: f64,
    pub pressure_per_s: f64,
    pub herd_per_s: f64,
    pub recovery_p50_ms: f64,
    pub recovery_p99_ms: f64,
    pub recovery_max_ms: f64,
    pub series_from_ms: u64,
    pub series: Vec<u32>,
}

impl GroupResult {
    fn per_k(&self, x: f64) -> f64 {
        x * 1000.0 / self.sessions.max(1) as f64
    }
    fn survived_pct(&self) -> f64 {
        self.survived as f64 * 100.0 / self.sessions.max(1) as f64
    }
}

/// One outage's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub kind: String,
    pub fraction: f64,
    pub outage_ms: u64,
    pub groups: Vec<GroupResult>,
    #[serde(default)]
    pub events: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunResult {
    name: String,
    cells: Vec<Cell>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimResults {
    runs: Vec<RunResult>,
}

/// The outage kinds, in report order.
pub const KINDS: [&str; 3] = ["refused", "blackhole", "slow"];

/// The lease time a session has left when it enters jeopardy: from a whole lease less a
/// heartbeat interval (a refusing path is noticed at once, somewhere in the interval) down
/// to that less a heartbeat timeout (a black hole is noticed when a heartbeat times out).
fn remaining_range(ttl: Duration) -> (Duration, Duration) {
    let cfg = tenure::lease::LeaseConfig::new(ttl);
    let eff = cfg.effective_ttl();
    let lo = eff.saturating_sub(cfg.heartbeat_interval + cfg.heartbeat_timeout);
    (lo, eff)
}

/// Mean number of retries `p` makes from the start of jeopardy to its deadline when nothing
/// answers, over the [`remaining_range`] (41 points, 8 jitter seeds each).
pub fn mean_retries(p: &dyn RetryPolicy, ttl: Duration) -> f64 {
    let (lo, hi) = remaining_range(ttl);
    let base = std::time::Instant::now();
    let (mut sum, mut n) = (0u64, 0u64);
    for i in 0..=40u32 {
        let r = lo + (hi - lo).mul_f64(i as f64 / 40.0);
        for seed in 0..8 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let deadline = base + r;
            let mut now = base;
            let mut attempt = 0;
            while let Some(at) = p.schedule(
                RetryContext {
                    attempt,
                    remaining_at_failure: r,
                    remaining: deadline - now,
                },
                now,
                deadline,
                &mut rng,
            ) {
                attempt += 1;
                now = at;
                if attempt > 100_000 {
                    break;
                }
            }
            sum += attempt as u64;
            n += 1;
        }
    }
    sum as f64 / n as f64
}

/// The parameter (a gap in µs) at which `make(gap)` makes `target` retries on average:
/// bisection on a log scale (fewer retries the longer the gap).
pub fn tune(
    target: f64,
    ttl: Duration,
    make: impl Fn(Duration) -> Arc<dyn RetryPolicy>,
) -> Duration {
    let (mut lo, mut hi) = (10f64.ln(), 10_000_000f64.ln()); // 10 µs .. 10 s
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        let n = mean_retries(&*make(Duration::from_micros(mid.exp() as u64)), ttl);
        if n > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Duration::from_micros(((lo + hi) / 2.0).exp().round() as u64)
}

/// The plan of a run at `scale`.
pub fn plan(scale: Scale) -> Plan {
    let ttl = Duration::from_millis(scale.pick(10_000, 10_000, 2_000));
    let inverse = InverseExponential::default();
    let target = mean_retries(&inverse, ttl);
    let exp_initial = tune(target, ttl, |d| {
        Arc::new(Exponential {
            initial: d,
            ..Default::default()
        })
    });
    let fixed_gap = tune(target, ttl, |d| {
        Arc::new(Fixed {
            gap: d,
            ..Default::default()
        })
    });
    let sessions = scale.pick(10_000, 2_000, 30);
    let g = |name: &str, policy: String, sessions: usize| Group {
        name: name.into(),
        policy,
        sessions,
    };
    let main = vec![
        g("inverse", inverse.to_string(), sessions),
        g("exponential", Exponential::default().to_string(), sessions),
        g("fixed", Fixed::default().to_string(), sessions),
        g(
            "exponential, tuned",
            Exponential {
                initial: exp_initial,
                ..Default::default()
            }
            .to_string(),
            sessions,
        ),
        g(
            "fixed, tuned",
            Fixed {
                gap: fixed_gap,
                ..Default::default()
            }
            .to_string(),
            sessions,
        ),
    ];
    let fractions: Vec<f64> = match scale {
        Scale::Smoke => vec![0.1, 0.5, 1.2],
        _ => vec![0.05, 0.25, 0.5, 0.75, 0.9, 1.2],
    };
    let outages = |fr: &[f64]| -> Vec<Outage> {
        KINDS
            .iter()
            .flat_map(|k| {
                fr.iter().map(|f| Outage {
                    kind: k.to_string(),
                    fraction: *f,
                })
            })
            .collect()
    };
    let mut runs = vec![PlanRun {
        name: "main".into(),
        groups: main,
        outages: outages(&fractions),
        series: true,
    }];
    if scale != Scale::Smoke {
        // The trade-off: each policy across its parameter, through the outages shorter than
        // the lease (the ones a session can survive).
        let n = scale.pick(1_000, 300, 0);
        let mut groups = Vec::new();
        for ms in [5u64, 20, 50, 100, 250, 500, 1000] {
            let p = InverseExponential {
                floor: Duration::from_millis(ms),
                ..Default::default()
            };
            groups.push(g(&format!("inverse floor={ms}ms"), p.to_string(), n));
        }
        for ms in [5u64, 10, 25, 50, 100, 250, 500, 1000] {
            let p = Exponential {
                initial: Duration::from_millis(ms),
                ..Default::default()
            };
            groups.push(g(&format!("exponential initial={ms}ms"), p.to_string(), n));
        }
        for ms in [50u64, 100, 200, 500, 1000, 2000] {
            let p = Fixed {
                gap: Duration::from_millis(ms),
                ..Default::default()
            };
            groups.push(g(&format!("fixed gap={ms}ms"), p.to_string(), n));
        }
        runs.push(PlanRun {
            name: "frontier".into(),
            groups,
            outages: outages(&[0.25, 0.5, 0.75, 0.9]),
            series: false,
        });
    }
    Plan {
        ttl_ms: ttl.as_millis() as u64,
        slow_ms: ttl.as_millis() as u64 / 2,
        bucket_ms: 10,
        seed: 15,
        runs,
    }
}

// ---- the worker: real clients of one policy ------------------------------------------------

/// `tenure-bench worker retry-clients --endpoint A --policy P --sessions N --ttl-ms T
/// --spread-ms S`: opens N real clients over S ms, records what each session tells (with
/// `CLOCK_MONOTONIC` times), says `open OK FAILED`, and on the line `report` prints every
/// session's events as `tracks kT,kT;...` (k: j jeopardy, r recovered, e expired) and exits.
pub fn clients_worker(a: &Args) {
    let endpoint = a.str("endpoint");
    let policy = tenure::retry::parse(&a.str("policy")).unwrap_or_else(|e| crate::die(&e));
    let n: usize = a.num("sessions");
    let ttl = Duration::from_millis(a.num("ttl-ms"));
    let spread: u64 = a.num::<u64>("spread-ms") * MS;
    type Log = Arc<Mutex<Vec<(char, u64)>>>;
    let logs: Vec<Log> = (0..n).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let keep = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let start = mono_ns();
    let lanes = 16.min(n.max(1));
    std::thread::scope(|s| {
        for lane in 0..lanes {
            let (logs, keep, failed, policy, endpoint) =
                (&logs, &keep, &failed, &policy, &endpoint);
            s.spawn(move || {
                for i in (lane..n).step_by(lanes) {
                    sleep_until_ns(start + spread * i as u64 / n.max(1) as u64);
                    let cfg = ClientConfig::new([endpoint.clone()])
                        .session_ttl(ttl)
                        .retry(policy.clone());
                    match Client::connect(cfg) {
                        Ok(c) => {
                            let log = logs[i].clone();
                            let sub = c.subscribe(move |e| {
                                let k = match e {
                                    Event::SessionJeopardy { .. } => 'j',
                                    Event::SessionRecovered => 'r',
                                    Event::SessionExpired => 'e',
                                    _ => return,
                                };
                                log.lock().unwrap().push((k, mono_ns()));
                            });
                            match sub {
                                Ok(sub) => keep.lock().unwrap().push((c, sub)),
                                Err(e) => failed.lock().unwrap().push(e.to_string()),
                            }
                        }
                        Err(e) => failed.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
    });
    let f = failed.lock().unwrap().clone();
    if let Some(e) = f.first() {
        eprintln!(
            "retry-clients: {} sessions did not open; first: {e}",
            f.len()
        );
    }
    say(&format!("open {} {}", n - f.len(), f.len()));
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|k| k > 0) {
        if line.trim() == "report" {
            break;
        }
        line.clear();
    }
    let mut out = String::from("tracks ");
    for (i, l) in logs.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let v = l.lock().unwrap();
        let items: Vec<String> = v.iter().map(|(k, t)| format!("{k}{t}")).collect();
        out.push_str(&items.join(","));
    }
    say(&out);
    // The clients are not closed: their sessions end with the server the orchestrator stops.
    std::process::exit(0);
}

/// Parses a `tracks` line.
fn parse_tracks(line: &str) -> Result<Vec<Vec<(char, u64)>>, String> {
    let body = line
        .strip_prefix("tracks ")
        .ok_or_else(|| format!("not a tracks line: {}", crate::util::trunc(line)))?;
    body.split(';')
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(|x| {
                    let mut ch = x.chars();
                    let k = ch.next().ok_or("empty event")?;
                    let t = ch
                        .as_str()
                        .parse::<u64>()
                        .map_err(|e| format!("{x:?}: {e}"))?;
                    Ok((k, t))
                })
                .collect()
        })
        .collect()
}

// ---- the real run ----------------------------------------------------------------------------

/// The per-group figures of one outage from counts per bucket and session tracks, computed
/// as the simulation computes them (`core/src/sim/retry.rs`).
#[allow(clippy::too_many_arguments)]
fn figures(
    g: &Group,
    sessions: usize,
    counts: &[u32],
    bucket: u64,
    tracks: &[Vec<(char, u64)>],
    start: u64,
    end: u64,
    ttl: u64,
    finish: u64,
    series: bool,
) -> GroupResult {
    let sum = |from: u64, to: u64| -> u64 {
        let (a, b) = ((from / bucket) as usize, (to / bucket) as usize);
        counts
            .iter()
            .take(b.min(counts.len()))
            .skip(a)
            .map(|x| *x as u64)
            .sum()
    };
    let survived = tracks
        .iter()
        .filter(|t| !t.iter().any(|e| e.0 == 'e'))
        .count();
    let first_j = |t: &Vec<(char, u64)>| t.iter().find(|e| e.0 == 'j' && e.1 >= start).map(|e| e.1);
    let jeopardy = tracks
        .iter()
        .filter(|t| first_j(t).is_some_and(|j| j < end))
        .count();
    let mut rec: Vec<u64> = tracks
        .iter()
        .filter(|t| !t.iter().any(|e| e.0 == 'e'))
        .filter_map(|t| {
            let j = first_j(t).filter(|j| *j < end)?;
            let r = t
                .iter()
                .filter(|e| e.0 == 'r' && e.1 > j)
                .map(|e| e.1)
                .max()?;
            Some(r.saturating_sub(end))
        })
        .collect();
    rec.sort_unstable();
    let pct = |p: f64| -> f64 {
        if rec.is_empty() {
            0.0
        } else {
            rec[((rec.len() as f64 - 1.0) * p).round() as usize] as f64 / MS as f64
        }
    };
    let bfrom = start.saturating_sub(3000 * MS);
    let length = end - start;
    let herd = counts
        .iter()
        .take(((end + ttl) / bucket) as usize)
        .skip((end / bucket) as usize)
        .copied()
        .max()
        .unwrap_or(0) as f64
        * 1e9
        / bucket as f64;
    let sfrom = start.saturating_sub(2000 * MS);
    GroupResult {
        name: g.name.clone(),
        policy: g.policy.clone(),
        sessions,
        survived,
        jeopardy,
        baseline_per_s: sum(bfrom, start) as f64 * 1e9 / (start - bfrom) as f64,
        pressure_per_s: if length == 0 {
            0.0
        } else {
            sum(start, end) as f64 * 1e9 / length as f64
        },
        herd_per_s: herd,
        recovery_p50_ms: pct(0.5),
        recovery_p99_ms: pct(0.99),
        recovery_max_ms: pct(1.0),
        series_from_ms: sfrom / MS,
        series: if series {
            (sfrom / bucket..finish / bucket)
                .map(|i| counts.get(i as usize).copied().unwrap_or(0))
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// One outage on real processes: a fresh `tenure serve`, the proxy, a worker per group.
fn real_cell(ctx: &mut Ctx, plan: &Plan, groups: &[Group], o: &Outage) -> Result<Cell, String> {
    let ttl = plan.ttl_ms * MS;
    let length = (o.fraction * ttl as f64) as u64;
    let mode = match o.kind.as_str() {
        "refused" => Mode::Refused,
        "blackhole" => Mode::BlackHole,
        "slow" => Mode::Slow(plan.slow_ms * MS),
        k => return Err(format!("outage kind {k:?}")),
    };
    // A server per policy, so that one policy's dials never crowd another's out of a
    // server's connections (the simulation's node has no such limit).
    let mut servers = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for _ in groups {
        let srv = ctx.start_server(Durability::Fsync)?;
        addrs.push(srv.addr.parse().map_err(|e| format!("{}: {e}", srv.addr))?);
        servers.push(srv);
    }
    let proxy = Proxy::start(addrs, Duration::from_millis(plan.bucket_ms))?;
    let spread = plan.ttl_ms / 3;
    let mut workers = Vec::new();
    for (g, grp) in groups.iter().enumerate() {
        let args: Vec<String> = [
            "retry-clients",
            "--endpoint",
            &proxy.addrs[g],
            "--policy",
            &grp.policy,
            "--sessions",
            &grp.sessions.to_string(),
            "--ttl-ms",
            &plan.ttl_ms.to_string(),
            "--spread-ms",
            &spread.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        workers.push(Child::worker(
            &format!("retry-clients {}", grp.name),
            &args,
        )?);
    }
    for (w, grp) in workers.iter().zip(groups) {
        let l = w.line_starting(
            "open",
            Duration::from_millis(spread) + Duration::from_secs(60),
        )?;
        let v: Vec<usize> = l
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.get(1).copied().unwrap_or(1) != 0 {
            return Err(format!("{}: {l}: sessions did not open", grp.name));
        }
    }
    // Every session heartbeats before the outage; the last 3 s are the baseline.
    let start_abs = mono_ns() + 3500 * MS;
    let (start, end) = (start_abs - proxy.base, start_abs - proxy.base + length);
    let finish = end + ttl + 1000 * MS;
    sleep_until_ns(proxy.base + start);
    proxy.set(mode);
    sleep_until_ns(proxy.base + end);
    proxy.set(Mode::Pass);
    sleep_until_ns(proxy.base + finish);
    let counts = proxy.counts();
    let mut out = Vec::new();
    for (g, (w, grp)) in workers.iter_mut().zip(groups).enumerate() {
        w.send("report")?;
        let l = w.line_starting("tracks", Duration::from_secs(60))?;
        let mut tracks = parse_tracks(&l)?;
        // Times relative to the proxy's bucket 0, as the counts are.
        for t in &mut tracks {
            for e in t.iter_mut() {
                e.1 = e.1.saturating_sub(proxy.base);
            }
        }
        let empty = Vec::new();
        out.push(figures(
            grp,
            tracks.len(),
            counts.get(g).unwrap_or(&empty),
            plan.bucket_ms * MS,
            &tracks,
            start,
            end,
            ttl,
            finish,
            true,
        ));
    }
    drop(workers);
    drop(proxy);
    drop(servers);
    Ok(Cell {
        kind: o.kind.clone(),
        fraction: o.fraction,
        outage_ms: length / MS,
        groups: out,
        events: 0,
    })
}

/// The whole `--retry` measurement: the simulation's results (`--sim FILE`), the real run of
/// the main plan with `--real-sessions N` per group, the report, the plots and (smoke) the
/// checks.
pub struct Outcome {
    pub plan: Plan,
    sim: Option<SimResults>,
    real: Vec<Cell>,
    pub errors: Vec<String>,
    pub real_sessions: usize,
}

/// Runs the real part and reads the simulation's.
pub fn run(ctx: &mut Ctx, a: &Args, scale: Scale) -> Outcome {
    let plan = match a.has("plan") {
        true => std::fs::read_to_string(a.str("plan"))
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| {
                eprintln!("--plan: {e}; using the built-in plan");
                plan(scale)
            }),
        false => plan(scale),
    };
    let mut errors = Vec::new();
    let sim = if a.has("sim") {
        match std::fs::read_to_string(a.str("sim"))
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<SimResults>(&t).map_err(|e| e.to_string()))
        {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(format!("simulation results {}: {e}", a.str("sim")));
                None
            }
        }
    } else {
        None
    };
    let real_sessions: usize = a
        .get_or("real-sessions", scale.pick("200", "100", "30"))
        .parse()
        .unwrap_or(200);
    let main = &plan.runs[0];
    let groups: Vec<Group> = main
        .groups
        .iter()
        .map(|g| Group {
            sessions: real_sessions,
            ..g.clone()
        })
        .collect();
    let mut real = Vec::new();
    if !a.has("no-real") {
        raise_fd_limit();
        for o in &main.outages {
            eprintln!(
                "[retry] real: {} outage, {:.0} % of the TTL, {} sessions per policy",
                o.kind,
                o.fraction * 100.0,
                real_sessions
            );
            match real_cell(ctx, &plan, &groups, o) {
                Ok(c) => real.push(c),
                Err(e) => errors.push(format!("real {} {}: {e}", o.kind, o.fraction)),
            }
        }
    }
    Outcome {
        plan,
        sim,
        real,
        errors,
        real_sessions,
    }
}

/// Raises this process's open-file limit (inherited by the servers and workers it starts):
/// the proxy holds two sockets per connection, several thousand of them. Root may raise the
/// hard limit too; otherwise the soft one goes up to the hard one.
fn raise_fd_limit() {
    let want: libc::rlim_t = 262_144;
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: want.max(r.rlim_cur),
            rlim_max: want.max(r.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn cells<'a>(o: &'a Outcome, run: &str) -> &'a [Cell] {
    o.sim
        .as_ref()
        .and_then(|s| s.runs.iter().find(|r| r.name == run))
        .map_or(&[], |r| &r.cells[..])
}

fn find<'a>(cs: &'a [Cell], kind: &str, fraction: f64, group: &str) -> Option<&'a GroupResult> {
    cs.iter()
        .find(|c| c.kind == kind && (c.fraction - fraction).abs() < 1e-9)
        .and_then(|c| c.groups.iter().find(|g| g.name == group))
}

fn both(sim: Option<f64>, real: Option<f64>, digits: usize) -> String {
    let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    format!("{} / {}", f(sim), f(real))
}

/// The report: the tables (simulation / real side by side), the agreement, the policies.
pub fn report(o: &Outcome, r: &mut String) {
    let main = &o.plan.runs[0];
    let sim = cells(o, "main");
    let ttl_s = o.plan.ttl_ms as f64 / 1000.0;
    let _ = writeln!(
        r,
        "Sessions with a {ttl_s} s TTL (heartbeat every TTL/3, timeout TTL/4) go through one \
         outage of the path to their server. Each cell is **simulation / real processes**: the \
         simulation runs {} sessions per policy (the real client session and server node, \
         deterministic); the real run {} per policy (`tenure serve`, real `tenure::Client`s, \
         the fault proxy). Rates are per 1,000 sessions. *Pressure*: dials and requests \
         reaching the path per second during the outage. *Herd*: the busiest 10 ms within a TTL \
         after it, per second. *Survived*: sessions that never expired. *Recovered*: from the \
         outage's end to `recovered` of the sessions that had been in jeopardy (median / \
         largest, simulation then real).\n",
        main.groups.first().map_or(0, |g| g.sessions),
        o.real_sessions
    );
    let _ = writeln!(r, "Policies:\n");
    for g in &main.groups {
        let _ = writeln!(r, "- **{}**: `{}`", g.name, g.policy);
    }
    let _ = writeln!(
        r,
        "\nBefore every outage each policy sends the same heartbeats: {} per second per 1,000 \
         sessions (simulation / real).\n",
        both(
            sim.first()
                .and_then(|c| c.groups.first())
                .map(|g| g.per_k(g.baseline_per_s)),
            o.real
                .first()
                .and_then(|c| c.groups.first())
                .map(|g| g.per_k(g.baseline_per_s)),
            0
        )
    );
    for kind in KINDS {
        let title = match kind {
            "refused" => "Server gone (connections refused)",
            "blackhole" => "Path black-holed (every message dropped)",
            _ => "Server overloaded (every reply half a TTL late)",
        };
        let _ = writeln!(r, "\n#### {title}\n");
        let _ = writeln!(
            r,
            "| outage | policy | survived % | pressure /s | herd /s | recovered p50 ms | recovered max ms |"
        );
        let _ = writeln!(r, "|---|---|---|---|---|---|---|");
        for oc in main.outages.iter().filter(|x| x.kind == kind) {
            for g in &main.groups {
                let s = find(sim, kind, oc.fraction, &g.name);
                let re = find(&o.real, kind, oc.fraction, &g.name);
                let _ = writeln!(
                    r,
                    "| {:.0} % | {} | {} | {} | {} | {} | {} |",
                    oc.fraction * 100.0,
                    g.name,
                    both(s.map(|x| x.survived_pct()), re.map(|x| x.survived_pct()), 1),
                    both(
                        s.map(|x| x.per_k(x.pressure_per_s)),
                        re.map(|x| x.per_k(x.pressure_per_s)),
                        0
                    ),
                    both(
                        s.map(|x| x.per_k(x.herd_per_s)),
                        re.map(|x| x.per_k(x.herd_per_s)),
                        0
                    ),
                    both(
                        s.map(|x| x.recovery_p50_ms),
                        re.map(|x| x.recovery_p50_ms),
                        0
                    ),
                    both(
                        s.map(|x| x.recovery_max_ms),
                        re.map(|x| x.recovery_max_ms),
                        0
                    ),
                );
            }
        }
    }
    let (ds, ratios) = agreement(o);
    if !ratios.is_empty() {
        let mut rs = ratios.clone();
        rs.sort_by(f64::total_cmp);
        let _ = writeln!(
            r,
            "\n**Simulation against real processes**, over the {} cells that both ran: survival \
             differs by {:.1} percentage points at most (median {:.1}); real pressure is {:.2}× \
             the simulation's at the median (from {:.2}× to {:.2}×, cells with a pressure of at \
             least 20/s per 1,000 sessions).",
            ds.len(),
            ds.iter().copied().fold(0.0, f64::max),
            median(&ds),
            median(&rs),
            rs.first().copied().unwrap_or(0.0),
            rs.last().copied().unwrap_or(0.0),
        );
    }
    let fr = cells(o, "frontier");
    if !fr.is_empty() {
        let _ = writeln!(
            r,
            "\n#### The trade-off (simulation, {} sessions per point)\n\nEach policy across its \
             parameter, averaged over the outages of 25, 50, 75 and 90 % of the TTL of each kind: \
             mean pressure per 1,000 sessions against the share of sessions that survived.\n",
            fr.first()
                .and_then(|c| c.groups.first())
                .map_or(0, |g| g.sessions)
        );
        let _ = writeln!(
            r,
            "| policy | refused: pressure, survived | blackhole | slow |"
        );
        let _ = writeln!(r, "|---|---|---|---|");
        for g in fr.first().map_or(&[][..], |c| &c.groups[..]) {
            let mut row = format!("| {} ", g.name);
            for kind in KINDS {
                match frontier_point(fr, kind, &g.name) {
                    Some((p, s)) => row.push_str(&format!("| {p:.0}/s, {s:.1} % ")),
                    None => row.push_str("| – "),
                }
            }
            let _ = writeln!(r, "{row}|");
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Survival differences (percentage points) and pressure ratios (real / simulation, where
/// the simulation's is at least 20/s per 1,000 sessions) over the cells both ran.
fn agreement(o: &Outcome) -> (Vec<f64>, Vec<f64>) {
    let sim = cells(o, "main");
    let (mut ds, mut rs) = (Vec::new(), Vec::new());
    for c in &o.real {
        for g in &c.groups {
            if let Some(s) = find(sim, &c.kind, c.fraction, &g.name) {
                ds.push((s.survived_pct() - g.survived_pct()).abs());
                let sp = s.per_k(s.pressure_per_s);
                if sp >= 20.0 {
                    rs.push(g.per_k(g.pressure_per_s) / sp);
                }
            }
        }
    }
    (ds, rs)
}

/// A frontier group's mean pressure per 1,000 sessions and survival % over `kind`'s outages.
fn frontier_point(fr: &[Cell], kind: &str, group: &str) -> Option<(f64, f64)> {
    let v: Vec<&GroupResult> = fr
        .iter()
        .filter(|c| c.kind == kind)
        .filter_map(|c| c.groups.iter().find(|g| g.name == group))
        .collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    Some((
        v.iter().map(|g| g.per_k(g.pressure_per_s)).sum::<f64>() / n,
        v.iter().map(|g| g.survived_pct()).sum::<f64>() / n,
    ))
}

/// The plots: per outage kind, the trade-off (simulation) and the request rate through the
/// 75 % outage (simulation and real). Returns (file name, SVG).
pub fn plots(o: &Outcome) -> Vec<(String, String)> {
    use crate::plots::{lines, Line};
    let mut out = Vec::new();
    let fr = cells(o, "frontier");
    let policies = ["inverse", "exponential", "fixed"];
    if !fr.is_empty() {
        for kind in KINDS {
            let mut series = Vec::new();
            for (i, p) in policies.iter().enumerate() {
                let pts: Vec<(f64, f64)> = fr[0]
                    .groups
                    .iter()
                    .filter(|g| g.name.split(' ').next() == Some(p))
                    .filter_map(|g| frontier_point(fr, kind, &g.name))
                    .collect();
                series.push(Line {
                    name: format!("{p} (across its parameter)"),
                    colour: i,
                    dashed: false,
                    markers: true,
                    points: pts,
                });
            }
            out.push((
                format!("retry-frontier-{kind}.svg"),
                lines(
                    &format!("Retry policies, {kind} outages of 25–90 % of the TTL (simulation)"),
                    "pressure: dials and requests per second per 1,000 sessions (log)",
                    "sessions that survived (%)",
                    (true, false),
                    &series,
                ),
            ));
        }
    }
    let sim = cells(o, "main");
    let bucket = o.plan.bucket_ms as f64 / 1000.0;
    for kind in KINDS {
        let fraction = o.plan.runs[0]
            .outages
            .iter()
            .filter(|x| x.kind == kind)
            .map(|x| x.fraction)
            .find(|f| {
                (*f - 0.75).abs() < 1e-9 || (*f - 0.5).abs() < 1e-9 && o.plan.ttl_ms < 10_000
            });
        let Some(fraction) = fraction else { continue };
        let mut series = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            for (src, dashed, cs) in [("simulation", false, sim), ("real", true, &o.real[..])] {
                let Some(g) = find(cs, kind, fraction, p) else {
                    continue;
                };
                // 100 ms bins, time from the outage's start, per 1,000 sessions per second.
                let per = 10usize;
                let from = -2.0;
                let pts: Vec<(f64, f64)> = g
                    .series
                    .chunks(per)
                    .enumerate()
                    .map(|(k, c)| {
                        let n: u32 = c.iter().sum();
                        let t = from + (k * per) as f64 * bucket;
                        (t, g.per_k(n as f64 / (per as f64 * bucket)).max(1.0))
                    })
                    .collect();
                series.push(Line {
                    name: format!("{p}, {src}"),
                    colour: i,
                    dashed,
                    markers: false,
                    points: pts,
                });
            }
        }
        out.push((
            format!("retry-rate-{kind}.svg"),
            lines(
                &format!(
                    "Requests through a {kind} outage of {:.0} % of the TTL (from 0 s)",
                    fraction * 100.0
                ),
                "time from the outage's start (s)",
                "dials and requests per second per 1,000 sessions (log)",
                (false, true),
                &series,
            ),
        ));
    }
    out
}

/// The smoke run's checks: both measurements ran every cell; every session of every policy
/// survived the short outage and none the one longer than the lease (refused and
/// blackhole); the inverse schedule's pressure in the half-TTL refused outage is below the
/// fixed one's; the two measurements agree on survival.
pub fn checks(o: &Outcome) -> Vec<(String, Result<(), String>)> {
    let mut v = Vec::new();
    let main = &o.plan.runs[0];
    let sim = cells(o, "main");
    v.push((
        "both measurements ran every outage".to_string(),
        if !o.errors.is_empty() {
            Err(o.errors.join("; "))
        } else if sim.len() != main.outages.len() || o.real.len() != main.outages.len() {
            Err(format!(
                "simulation {} cells, real {} cells, plan {}",
                sim.len(),
                o.real.len(),
                main.outages.len()
            ))
        } else {
            Ok(())
        },
    ));
    for (src, cs) in [("simulation", sim), ("real", &o.real[..])] {
        let mut bad = Vec::new();
        for c in cs {
            for g in &c.groups {
                if c.fraction <= 0.1 && g.survived != g.sessions {
                    bad.push(format!(
                        "{} {} {:.0}%: {}/{}",
                        g.name,
                        c.kind,
                        c.fraction * 100.0,
                        g.survived,
                        g.sessions
                    ));
                }
                if c.fraction > 1.0 && c.kind != "slow" && g.survived != 0 {
                    bad.push(format!(
                        "{} {} {:.0}%: {} survived",
                        g.name,
                        c.kind,
                        c.fraction * 100.0,
                        g.survived
                    ));
                }
            }
        }
        v.push((
            format!("{src}: short outages survived, outages past the lease not"),
            if bad.is_empty() {
                Ok(())
            } else {
                Err(bad.join("; "))
            },
        ));
        let inv = find(cs, "refused", 0.5, "inverse");
        let fixed = find(cs, "refused", 0.5, "fixed");
        v.push((
            format!("{src}: inverse exponential presses less than fixed (refused, half a TTL)"),
            match (inv, fixed) {
                (Some(i), Some(f)) if i.pressure_per_s < f.pressure_per_s => Ok(()),
                (Some(i), Some(f)) => Err(format!(
                    "inverse {:.0}/s, fixed {:.0}/s",
                    i.pressure_per_s, f.pressure_per_s
                )),
                _ => Err("missing cell".into()),
            },
        ));
    }
    // Thirty sessions a policy in the smoke run: a share differs by a few sessions by chance.
    let (ds, _) = agreement(o);
    let worst = ds.iter().copied().fold(0.0, f64::max);
    let mid = median(&ds);
    v.push((
        "simulation and real processes agree on survival (median within 10 points, all within 50)"
            .to_string(),
        if !ds.is_empty() && mid <= 10.0 && worst <= 50.0 {
            Ok(())
        } else {
            Err(format!(
                "{} cells compared, median difference {mid:.1} points, worst {worst:.1}",
                ds.len()
            ))
        },
    ));
    v
}
