//! The retry benchmark in the simulation (seed 000's claim, SPEC 6): many real client
//! [`Session`](crate::client::session::Session)s, in groups that differ only by their retry
//! policy, heartbeat against one real server node through a calm LAN (0–1 ms a message), and
//! the path between them fails once for a while ([`Outage`]): it refuses (the server is gone),
//! black-holes (every message lost, connections left open) or delays every reply by half a
//! TTL (the server is overloaded). The world counts what each group sends toward the server
//! (dials and requests, [`Tap`]); the scenario records when each session entered jeopardy,
//! recovered or expired.
//!
//! What comes out per outage and group ([`GroupResult`]): the pressure (what reached the
//! path per second during the outage), the herd (the busiest 10 ms after it, per second),
//! the share of sessions that survived, and how long after the outage's end the sessions
//! that had been in jeopardy recovered.
//!
//! The plan (policies, group sizes, outages) is written by the benchmark program
//! (`tenure-bench --retry`, which also runs the same outages against a real `tenure serve`
//! through a fault proxy and compares); [`bench`] reads it from `TENURE_RETRY_PLAN` and
//! writes the results to `TENURE_RETRY_OUT`. `bash tests/bench/run.sh --retry` runs both.

use super::{Event, Faults, Outage, Scenario, World, MS};
use crate::client::ClientConfig;
use crate::server::state::{Command, Output};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Counts what clients send toward the servers (each dial, each request on an open
/// connection) per client group and time bucket.
pub(crate) struct Tap {
    bucket_ns: u64,
    /// The group of each client.
    group: Vec<usize>,
    /// Per group, the count per bucket since time 0.
    counts: Vec<Vec<u32>>,
}

impl Tap {
    /// Counts one dial or request of client `c` at real time `now`.
    pub(crate) fn count(&mut self, now: u64, c: usize) {
        let g = self.group[c];
        let b = (now / self.bucket_ns) as usize;
        let v = &mut self.counts[g];
        if v.len() <= b {
            v.resize(b + 1, 0);
        }
        v[b] += 1;
    }

    /// Group `g`'s count over buckets `[from, to)` of real time (ns).
    fn sum(&self, g: usize, from: u64, to: u64) -> u64 {
        let (a, b) = (
            (from / self.bucket_ns) as usize,
            (to / self.bucket_ns) as usize,
        );
        let v = &self.counts[g];
        v.iter()
            .take(b.min(v.len()))
            .skip(a)
            .map(|x| *x as u64)
            .sum()
    }
}

/// What the benchmark program asks for (read from JSON).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Plan {
    /// Session TTL of every client.
    pub(crate) ttl_ms: u64,
    /// How late every reply is in an overload outage.
    pub(crate) slow_ms: u64,
    /// The counting bucket (the herd is the busiest bucket after an outage).
    pub(crate) bucket_ms: u64,
    /// The world's seed (each outage's world draws from it and from the outage).
    pub(crate) seed: u64,
    pub(crate) runs: Vec<PlanRun>,
}

/// Groups that share worlds, and the outages each world goes through.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlanRun {
    pub(crate) name: String,
    pub(crate) groups: Vec<PlanGroup>,
    pub(crate) outages: Vec<PlanOutage>,
    /// Whether to keep each group's request counts over time (for the plots).
    #[serde(default)]
    pub(crate) series: bool,
}

/// Sessions with one retry policy.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlanGroup {
    pub(crate) name: String,
    /// The policy's written form ([`crate::retry::parse`]).
    pub(crate) policy: String,
    pub(crate) sessions: usize,
}

/// One outage: `refused`, `blackhole` or `slow`, lasting `fraction` of the TTL.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct PlanOutage {
    pub(crate) kind: String,
    pub(crate) fraction: f64,
}

/// One outage's results.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CellResult {
    pub(crate) kind: String,
    pub(crate) fraction: f64,
    pub(crate) outage_ms: u64,
    pub(crate) groups: Vec<GroupResult>,
    /// Simulated events the world took.
    pub(crate) events: u64,
}

/// One group's results through one outage.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct GroupResult {
    pub(crate) name: String,
    pub(crate) policy: String,
    pub(crate) sessions: usize,
    /// Sessions that never expired.
    pub(crate) survived: usize,
    /// Sessions that entered jeopardy during the outage.
    pub(crate) jeopardy: usize,
    /// Dials and requests per second reaching the path before the outage (the last 3 s).
    pub(crate) baseline_per_s: f64,
    /// Dials and requests per second reaching the path during the outage.
    pub(crate) pressure_per_s: f64,
    /// The busiest bucket within a TTL after the outage, per second.
    pub(crate) herd_per_s: f64,
    /// From the outage's end to the recovery of the sessions that had been in jeopardy and
    /// survived (0 for those that recovered before it ended): median, 99th percentile,
    /// largest, in ms.
    pub(crate) recovery_p50_ms: f64,
    pub(crate) recovery_p99_ms: f64,
    pub(crate) recovery_max_ms: f64,
    /// Dials and requests per bucket from `series_from_ms` on (when the run asks for it).
    pub(crate) series_from_ms: u64,
    pub(crate) series: Vec<u32>,
}

/// When each session entered jeopardy, recovered, expired.
#[derive(Default, Clone)]
struct Track {
    jeopardy: Option<u64>,
    recovered: Option<u64>,
    expired: Option<u64>,
}

/// The scenario: no user actions; records what each session tells.
struct Observe {
    start: u64,
    end: u64,
    kind: Outage,
    tracks: Vec<Track>,
}

/// [`Scenario::scenario_event`] ids.
const BEGIN: u64 = 1;
const END: u64 = 2;

impl Scenario for Observe {
    fn user(&mut self, w: &mut World, c: usize) -> Option<Instant> {
        let now = w.now;
        for e in w.events(c) {
            let t = &mut self.tracks[c];
            match e {
                Event::SessionJeopardy { .. } if now >= self.start && t.jeopardy.is_none() => {
                    t.jeopardy = Some(now)
                }
                Event::SessionRecovered if t.jeopardy.is_some() => t.recovered = Some(now),
                Event::SessionExpired if t.expired.is_none() => t.expired = Some(now),
                _ => {}
            }
        }
        None
    }
    fn logged(&mut self, _: &mut World, _: &Command, _: &[Output]) {}
    fn check(&mut self, _: &mut World) {}
    fn session_started(&mut self, _: &mut World, _: usize) {}
    fn scenario_event(&mut self, w: &mut World, id: u64) {
        match id {
            BEGIN => w.begin_outage(self.kind),
            END => w.end_outage(),
            _ => unreachable!("retry scenario event {id}"),
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / MS as f64
}

/// Runs one world through one outage: `run`'s groups, the outage `o`.
pub(crate) fn run_cell(plan: &Plan, run: &PlanRun, o: &PlanOutage) -> Result<CellResult, String> {
    let ttl = plan.ttl_ms * MS;
    let length = (o.fraction * ttl as f64) as u64;
    let kind = match o.kind.as_str() {
        "refused" => Outage::Refused,
        "blackhole" => Outage::BlackHole,
        "slow" => Outage::Slow(plan.slow_ms * MS),
        k => {
            return Err(format!(
                "outage kind {k:?} is not refused, blackhole or slow"
            ))
        }
    };
    // A world of its own per outage, seeded from the plan and the outage.
    let seed = plan.seed ^ (o.fraction.to_bits().rotate_left(7)) ^ o.kind.len() as u64;
    let mut rng = fastrand::Rng::with_seed(seed);
    let faults = Faults {
        p_reset: 0.0,
        p_slow: 0.0,
        p_abandon: 0.0,
        max_delay_ms: 1,
        p_wipe: 0.0,
    };
    let world_rng = fastrand::Rng::with_seed(rng.u64(..));
    let mut w = World::new(seed, world_rng, faults, false, 1);
    w.max_events = u64::MAX;
    w.compare_states = false;
    let mut group = Vec::new();
    for (g, pg) in run.groups.iter().enumerate() {
        let policy = crate::retry::parse(&pg.policy)?;
        for _ in 0..pg.sessions {
            let cfg = ClientConfig::new(w.endpoints())
                .session_ttl(Duration::from_nanos(ttl))
                .retry(policy.clone());
            // Sessions open across a heartbeat interval, so their heartbeats are spread.
            let start = rng.u64(0..ttl / 3);
            let skew = rng.i64(-1000..=1000);
            let offset = rng.u64(0..10_000 * MS);
            w.add_client(cfg, skew, offset, start);
            group.push(g);
        }
    }
    let bucket_ns = plan.bucket_ms.max(1) * MS;
    w.tap = Some(Tap {
        bucket_ns,
        group: group.clone(),
        counts: vec![Vec::new(); run.groups.len()],
    });
    // Every session is open and heartbeating by then, for the whole 3 s baseline before.
    let start = ttl.max(ttl / 3 + 3200 * MS);
    let end = start + length;
    let finish = end + ttl + 1000 * MS;
    w.push(start, super::Ev::Scenario(BEGIN));
    w.push(end, super::Ev::Scenario(END));
    let mut sc = Observe {
        start,
        end,
        kind,
        tracks: vec![Track::default(); group.len()],
    };
    w.run(&mut sc, finish).map_err(|v| v.to_string())?;
    let tap = w.tap.take().expect("the tap");
    let mut groups = Vec::new();
    for (g, pg) in run.groups.iter().enumerate() {
        let mine: Vec<&Track> = (0..group.len())
            .filter(|c| group[*c] == g)
            .map(|c| &sc.tracks[c])
            .collect();
        let survived = mine.iter().filter(|t| t.expired.is_none()).count();
        let jeopardy = mine
            .iter()
            .filter(|t| t.jeopardy.is_some_and(|j| j < sc.end))
            .count();
        let mut rec: Vec<u64> = mine
            .iter()
            .filter(|t| t.expired.is_none() && t.jeopardy.is_some_and(|j| j < sc.end))
            .filter_map(|t| t.recovered.map(|r| r.saturating_sub(sc.end)))
            .collect();
        rec.sort_unstable();
        let baseline_from = start.saturating_sub(3000 * MS);
        let baseline =
            tap.sum(g, baseline_from, start) as f64 * 1e9 / (start - baseline_from) as f64;
        let pressure = if length == 0 {
            0.0
        } else {
            tap.sum(g, start, end) as f64 * 1e9 / length as f64
        };
        let herd_from = (end / bucket_ns) as usize;
        let herd_to = ((end + ttl) / bucket_ns) as usize;
        let herd = tap.counts[g]
            .iter()
            .take(herd_to)
            .skip(herd_from)
            .copied()
            .max()
            .unwrap_or(0) as f64
            * 1e9
            / bucket_ns as f64;
        let series_from = start.saturating_sub(2000 * MS);
        let series = if run.series {
            let v = &tap.counts[g];
            let a = (series_from / bucket_ns) as usize;
            let b = (finish / bucket_ns) as usize;
            (a..b).map(|i| v.get(i).copied().unwrap_or(0)).collect()
        } else {
            Vec::new()
        };
        groups.push(GroupResult {
            name: pg.name.clone(),
            policy: pg.policy.clone(),
            sessions: mine.len(),
            survived,
            jeopardy,
            baseline_per_s: baseline,
            pressure_per_s: pressure,
            herd_per_s: herd,
            recovery_p50_ms: percentile(&rec, 0.5),
            recovery_p99_ms: percentile(&rec, 0.99),
            recovery_max_ms: percentile(&rec, 1.0),
            series_from_ms: series_from / MS,
            series,
        });
    }
    Ok(CellResult {
        kind: o.kind.clone(),
        fraction: o.fraction,
        outage_ms: length / MS,
        groups,
        events: w.stats.events,
    })
}

/// The results of a plan's runs, by run name.
#[derive(Debug, Serialize)]
struct Results {
    runs: Vec<RunResult>,
}

#[derive(Debug, Serialize)]
struct RunResult {
    name: String,
    cells: Vec<CellResult>,
}

/// The benchmark's simulation: reads the plan from `TENURE_RETRY_PLAN`, writes the results
/// as JSON to `TENURE_RETRY_OUT`. Run by `bash tests/bench/run.sh --retry` (and its smoke).
#[test]
#[ignore = "the retry benchmark's simulation: tests/bench/run.sh --retry runs it with a plan"]
fn bench() {
    let plan_path = std::env::var("TENURE_RETRY_PLAN").expect("TENURE_RETRY_PLAN: the plan");
    let out = std::env::var("TENURE_RETRY_OUT").expect("TENURE_RETRY_OUT: where results go");
    let text = std::fs::read_to_string(&plan_path).expect("the plan file");
    let plan: Plan = serde_json::from_str(&text).expect("a plan as tenure-bench writes it");
    let mut runs = Vec::new();
    for run in &plan.runs {
        let mut cells = Vec::new();
        for o in &run.outages {
            let t = std::time::Instant::now();
            let cell = run_cell(&plan, run, o).unwrap_or_else(|e| panic!("{}: {e}", run.name));
            eprintln!(
                "retry sim {}: {} {:.0}% of the TTL: {} events in {:.1} s",
                run.name,
                o.kind,
                o.fraction * 100.0,
                cell.events,
                t.elapsed().as_secs_f64()
            );
            cells.push(cell);
        }
        runs.push(RunResult {
            name: run.name.clone(),
            cells,
        });
    }
    let json = serde_json::to_string(&Results { runs }).expect("results serialize");
    std::fs::write(&out, json).expect("write the results");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(outages: &[(&str, f64)], sessions: usize) -> Plan {
        let g = |name: &str, policy: &str| PlanGroup {
            name: name.into(),
            policy: policy.into(),
            sessions,
        };
        Plan {
            ttl_ms: 2000,
            slow_ms: 1000,
            bucket_ms: 10,
            seed: 15,
            runs: vec![PlanRun {
                name: "test".into(),
                groups: vec![
                    g("inverse", "inverse"),
                    g("exponential", "exponential"),
                    g("fixed", "fixed"),
                ],
                outages: outages
                    .iter()
                    .map(|(k, f)| PlanOutage {
                        kind: k.to_string(),
                        fraction: *f,
                    })
                    .collect(),
                series: true,
            }],
        }
    }

    fn cell(p: &Plan, i: usize) -> CellResult {
        run_cell(p, &p.runs[0], &p.runs[0].outages[i]).unwrap()
    }

    #[test]
    fn short_outages_are_survived_and_outages_past_the_lease_are_not() {
        let p = plan(
            &[
                ("refused", 0.1),
                ("blackhole", 0.1),
                ("refused", 1.2),
                ("blackhole", 1.2),
            ],
            60,
        );
        for i in 0..2 {
            let c = cell(&p, i);
            for g in &c.groups {
                assert_eq!(g.survived, g.sessions, "{} {}: {g:?}", c.kind, g.name);
            }
        }
        // A refusing path is noticed at once by every session.
        let c = cell(&p, 0);
        assert!(c.groups.iter().all(|g| g.jeopardy == g.sessions), "{c:?}");
        for i in 2..4 {
            let c = cell(&p, i);
            for g in &c.groups {
                assert_eq!(g.survived, 0, "{} {}: {g:?}", c.kind, g.name);
                assert!(g.pressure_per_s > 0.0, "{g:?}");
            }
        }
    }

    #[test]
    fn a_refused_outage_costs_the_inverse_schedule_less_than_a_fixed_one_and_runs_repeat() {
        let p = plan(&[("refused", 0.5)], 80);
        let c = cell(&p, 0);
        let by = |n: &str| c.groups.iter().find(|g| g.name == n).unwrap();
        let (inv, fixed) = (by("inverse"), by("fixed"));
        assert!(
            inv.pressure_per_s < fixed.pressure_per_s / 2.0,
            "inverse {} fixed {}",
            inv.pressure_per_s,
            fixed.pressure_per_s
        );
        // Every session heartbeats before the outage: a third of a TTL apart.
        let expect = 80.0 / (2.0 / 3.0);
        for g in &c.groups {
            assert!(
                (g.baseline_per_s - expect).abs() < expect * 0.2,
                "{}: baseline {} against {expect}",
                g.name,
                g.baseline_per_s
            );
            let total: u64 = g.series.iter().map(|x| *x as u64).sum();
            assert!(total > 0);
        }
        // The simulation is a function of its plan.
        assert_eq!(cell(&p, 0).groups, c.groups);
    }
}
