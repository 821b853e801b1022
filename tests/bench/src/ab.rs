//! A/B rounds: every tenure-vs-etcd comparison run alternately (tenure, etcd, tenure, etcd,
//! ...) for several rounds against one tenure server (durability fsync) and one etcd, both
//! running the whole time, under two conditions: idle (nothing pinned), and pinned (both
//! servers restricted to CPU 1 with `taskset -a -p -c 1`, every client process started with
//! `taskset -c 0`). Each round gives one median per system; the report takes the median of
//! those round medians, so a burst of load on the shared machine during one round moves the
//! result by at most one rank.

use crate::bench::{handover, ho_plan, throughput, tput_args, Ctx};
use crate::child::{self, Child};
use crate::etcd;
use crate::util::{fmt_ns, parse_samples, Scale};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;
use tenure::Durability;

/// One comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Uncontended lock+release, one client.
    Lat,
    /// Hand-over to a waiter queued this many ms before the release.
    Ho(u64),
    /// Throughput with `k` clients, on distinct names or on one contended name.
    Tput { k: usize, contended: bool },
}

impl Kind {
    pub fn label(self) -> String {
        match self {
            Kind::Lat => "lock+release, 1 client".into(),
            Kind::Ho(d) if d >= 1000 => format!("hand-over, waiter queued {} s", d / 1000),
            Kind::Ho(d) => format!("hand-over, waiter queued {d} ms"),
            Kind::Tput { k, contended } => format!(
                "throughput, {k} client{}, {}",
                if k == 1 { "" } else { "s" },
                if contended {
                    "one contended name"
                } else {
                    "distinct names"
                }
            ),
        }
    }
}

/// Every comparison, in the order they run within a round.
pub fn kinds() -> Vec<Kind> {
    let mut v = vec![Kind::Lat, Kind::Ho(1), Kind::Ho(1000)];
    for contended in [false, true] {
        for k in [1, 16, 64] {
            v.push(Kind::Tput { k, contended });
        }
    }
    v
}

/// One measurement of one system in one round.
#[derive(Clone, Debug, Default)]
pub struct Meas {
    /// Latency samples (lock+release, or hand-over) in ns, sorted.
    pub samples: Vec<u64>,
    /// Operations per second (throughput only).
    pub ops: Option<f64>,
}

impl Meas {
    fn pct(&self, q: f64) -> u64 {
        crate::util::percentile(&self.samples, q)
    }
}

/// The rounds of one comparison under one condition.
pub struct CaseOut {
    pub kind: Kind,
    /// Round by round (index 0 = tenure, 1 = etcd).
    pub rounds: [Vec<Result<Meas, String>>; 2],
}

/// One condition (idle or pinned).
pub struct CondOut {
    pub name: &'static str,
    pub cases: Result<Vec<CaseOut>, String>,
}

pub struct AbOut {
    pub rounds: usize,
    pub conds: Vec<CondOut>,
}

const SYS: [&str; 2] = ["tenure (fsync)", "etcd"];

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Number of rounds of each comparison.
pub fn rounds(q: Scale) -> usize {
    q.pick(3, 3, 2)
}

/// Runs every comparison for both systems, alternately, under both conditions.
pub fn run(ctx: &mut Ctx) -> AbOut {
    let q = ctx.opts.quick;
    let n_rounds = rounds(q);
    let mut out = AbOut {
        rounds: n_rounds,
        conds: vec![],
    };
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let srv = match ctx.start_server(Durability::Fsync) {
        Ok(s) => s,
        Err(e) => {
            for name in ["idle", "pinned"] {
                out.conds.push(CondOut {
                    name,
                    cases: Err(format!("tenure server did not start: {e}")),
                });
            }
            return out;
        }
    };
    let dir = ctx.dir("ab-etcd");
    let et = match etcd::start(&dir) {
        Ok(e) => e,
        Err(e) => {
            for name in ["idle", "pinned"] {
                out.conds.push(CondOut {
                    name,
                    cases: Err(format!("etcd did not start: {e}")),
                });
            }
            return out;
        }
    };
    let pids = [srv.child.pid(), et.pid()];
    let ends = [srv.addr.clone(), et.endpoint.clone()];
    for (name, client_cpu) in [("idle", None), ("pinned", Some(0usize))] {
        if client_cpu.is_some() {
            if ncpu < 2 {
                out.conds.push(CondOut {
                    name,
                    cases: Err("one CPU only: cannot pin client and server apart".into()),
                });
                continue;
            }
            let pinned = pids.iter().try_for_each(|p| child::taskset_pid(*p, "1"));
            if let Err(e) = pinned {
                out.conds.push(CondOut {
                    name,
                    cases: Err(e),
                });
                continue;
            }
        }
        let mut cases: Vec<CaseOut> = kinds()
            .into_iter()
            .map(|kind| CaseOut {
                kind,
                rounds: [vec![], vec![]],
            })
            .collect();
        for round in 0..n_rounds {
            for c in cases.iter_mut() {
                for sys in 0..2 {
                    eprintln!(
                        "[A/B {name}] round {}/{n_rounds}: {} — {}",
                        round + 1,
                        c.kind.label(),
                        SYS[sys]
                    );
                    let tag = format!("ab/{name}/{round}");
                    let m = measure(
                        q, sys, &ends[sys], pids[sys], c.kind, client_cpu, &tag, None,
                    );
                    c.rounds[sys].push(m);
                }
            }
        }
        out.conds.push(CondOut {
            name,
            cases: Ok(cases),
        });
    }
    drop(et);
    drop(srv);
    out
}

/// One measurement of system `sys` (0 = tenure, 1 = etcd) at `end` (address or endpoint), its
/// clients run by `exe` (another build's `tenure-bench`) when given, else by this program.
#[allow(clippy::too_many_arguments)]
fn measure(
    q: Scale,
    sys: usize,
    end: &str,
    server_pid: u32,
    kind: Kind,
    cpu: Option<usize>,
    tag: &str,
    exe: Option<&Path>,
) -> Result<Meas, String> {
    let owned = exe.map(Path::to_path_buf);
    let (pre, flag) = if sys == 0 {
        ("tenure", "--addr")
    } else {
        ("etcd", "--endpoint")
    };
    match kind {
        Kind::Lat => {
            let w = format!("{pre}-lat");
            let secs = q.pick(1.0, 0.3, 0.05).to_string();
            let warm = q.pick("300", "100", "20");
            let args = strs(&[
                &w, flag, end, "--warmup", warm, "--iters", "100000", "--secs", &secs,
            ]);
            let c = Child::worker_of(exe, &w, &args, cpu)?;
            let l = c.line_starting("samples", Duration::from_secs(60))?;
            let mut s = parse_samples("samples", &l)?;
            c.finish(Duration::from_secs(10))?;
            if s.is_empty() {
                return Err("no samples".into());
            }
            s.sort_unstable();
            Ok(Meas {
                samples: s,
                ops: None,
            })
        }
        Kind::Ho(delay) => {
            let mut plan = ho_plan(delay, q);
            plan.count = if delay < 100 {
                q.pick(100, 30, 4)
            } else {
                q.pick(60, 20, 3)
            };
            let w = format!("{pre}-ho");
            let prefix = format!("{tag}/ho/{delay}");
            let (end, flag) = (end.to_string(), flag.to_string());
            let spawn = move |role: &str| {
                let mut args = strs(&[&w, "--role", role, &flag, &end, "--prefix", &prefix]);
                args.extend(plan.to_args());
                Child::worker_of(owned.as_deref(), &format!("{w}-{role}"), &args, cpu)
            };
            let h = handover(&spawn, plan)?;
            if h.violations > 0 {
                return Err(format!("{} grants before the release", h.violations));
            }
            if h.valid == 0 {
                return Err(format!(
                    "no valid iteration ({} excluded, {} failed{})",
                    h.excluded,
                    h.failed,
                    h.first_failure
                        .map(|f| format!(": {}", crate::util::trunc(&f)))
                        .unwrap_or_default()
                ));
            }
            Ok(Meas {
                samples: h.samples,
                ops: None,
            })
        }
        Kind::Tput { k, contended } => {
            // Smoke runs are short; 64 clients contending for one etcd lock (a few hundred
            // grants a second when alone on the machine) need more than 0.2 s to be sure
            // of completing one on a busy CI machine.
            let smoke = if contended { (0.1, 0.6) } else { (0.05, 0.2) };
            let secs = q.pick((0.5, 2.0), (0.2, 0.6), smoke);
            let w = format!("{pre}-tput");
            let (end, flag) = (end.to_string(), flag.to_string());
            let name = format!("{tag}/tp/{k}");
            let spawn = move |n: usize| {
                let mut args = strs(&[&w, &flag, &end]);
                args.extend(tput_args(n, secs));
                if contended {
                    args.extend(strs(&["--name", &name]));
                }
                Child::worker_of(owned.as_deref(), &w, &args, cpu)
            };
            let t = throughput(&spawn, k, secs, server_pid)?;
            if t.ops <= 0.0 {
                return Err("no operation completed".into());
            }
            Ok(Meas {
                samples: vec![t.stats.p50, t.stats.p99],
                ops: Some(t.ops),
            })
        }
    }
}

/// The median of `v` (the lower of the two middle values), `None` when empty.
pub(crate) fn median_f(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[(v.len() - 1) / 2])
}

/// Median over the successful rounds of `f(round)`, and how many rounds succeeded.
fn med_of(rounds: &[Result<Meas, String>], f: impl Fn(&Meas) -> f64) -> (Option<f64>, usize) {
    let v: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(f)
        .collect();
    let n = v.len();
    (median_f(v), n)
}

/// Pooled latency samples of one comparison under the idle condition, per system (for plots).
pub fn pooled(ab: &AbOut, kind: Kind) -> [Vec<u64>; 2] {
    let mut out = [vec![], vec![]];
    for c in &ab.conds {
        if c.name != "idle" {
            continue;
        }
        if let Ok(cases) = &c.cases {
            for case in cases.iter().filter(|x| x.kind == kind) {
                for (sys, o) in out.iter_mut().enumerate() {
                    for m in case.rounds[sys].iter().flatten() {
                        o.extend_from_slice(&m.samples);
                    }
                }
            }
        }
    }
    for o in out.iter_mut() {
        o.sort_unstable();
    }
    out
}

/// Every measurement that failed, as "condition / comparison / system / round: why".
pub fn failures(ab: &AbOut) -> Vec<String> {
    let mut v = vec![];
    for c in &ab.conds {
        match &c.cases {
            Err(e) => v.push(format!("{}: {e}", c.name)),
            Ok(cases) => {
                for case in cases {
                    for (sys, rs) in case.rounds.iter().enumerate() {
                        for (i, r) in rs.iter().enumerate() {
                            if let Err(e) = r {
                                v.push(format!(
                                    "{} / {} / {} / round {}: {e}",
                                    c.name,
                                    case.kind.label(),
                                    SYS[sys],
                                    i + 1
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    v
}

fn opt_ns(x: Option<f64>) -> String {
    x.map_or("failed".into(), |v| fmt_ns(v as u64))
}

/// Writes the A/B section of the report and appends its targets.
pub fn report(ab: &AbOut, r: &mut String, targets: &mut Vec<(String, String, bool)>) {
    let _ = writeln!(r, "\n## A/B rounds: tenure (fsync) and etcd alternately\n");
    let _ = writeln!(
        r,
        "One tenure server (`--durability fsync`) and one etcd run side by side for this whole \
         part. Each comparison is measured for tenure, then etcd, then tenure, then etcd … \
         ({} rounds; every measurement is a fresh client process), and the table gives the \
         **median of the round medians** (of the round p99s for p99; of the round rates for \
         throughput). Conditions: **idle** — nothing pinned; **pinned** — both servers \
         restricted to CPU 1 (`taskset -a -p -c 1 PID`), every client process started with \
         `taskset -c 0`. Throughput: clients as in the throughput section above (16 and 64 \
         split over 2 processes), per-round warm-up and window shorter than there; \"one \
         contended name\" = every client locks the same name. Hand-over: as in the hand-over \
         section, fewer iterations per round. Ratio = etcd ÷ tenure for times, tenure ÷ etcd \
         for rates (above 1 = tenure better).\n",
        ab.rounds
    );
    for c in &ab.conds {
        let _ = writeln!(r, "### Condition: {}\n", c.name);
        let cases = match &c.cases {
            Ok(x) => x,
            Err(e) => {
                let _ = writeln!(r, "Not measured: {e}\n");
                continue;
            }
        };
        let _ = writeln!(
            r,
            "| comparison | measure | tenure (fsync) | etcd | ratio | rounds ok (tenure / etcd) | target | |\n|---|---|---|---|---|---|---|---|"
        );
        for case in cases {
            let ok = format!(
                "{} / {}",
                case.rounds[0].iter().filter(|x| x.is_ok()).count(),
                case.rounds[1].iter().filter(|x| x.is_ok()).count()
            );
            let label = case.kind.label();
            match case.kind {
                Kind::Lat | Kind::Ho(_) => {
                    let (t50, _) = med_of(&case.rounds[0], |m| m.pct(50.0) as f64);
                    let (e50, _) = med_of(&case.rounds[1], |m| m.pct(50.0) as f64);
                    let (t99, _) = med_of(&case.rounds[0], |m| m.pct(99.0) as f64);
                    let (e99, _) = med_of(&case.rounds[1], |m| m.pct(99.0) as f64);
                    let ratio = |t: Option<f64>, e: Option<f64>| match (t, e) {
                        (Some(t), Some(e)) if t > 0.0 => format!("{:.1}", e / t),
                        _ => "?".into(),
                    };
                    let (tgt50, tgt99, met50, met99) = match case.kind {
                        Kind::Lat => {
                            let met = matches!((t50, e50), (Some(t), Some(e)) if t * 4.0 <= e);
                            ("p50 ≤ etcd's ÷ 4", "", Some(met), None)
                        }
                        _ => {
                            let met = matches!(t99, Some(t) if t <= 2e6);
                            ("", "p99 ≤ 2 ms", None, Some(met))
                        }
                    };
                    let v = |m: Option<bool>| m.map_or("", crate::bench::yes);
                    let _ = writeln!(
                        r,
                        "| {label} | p50 | {} | {} | {} | {ok} | {tgt50} | {} |",
                        opt_ns(t50),
                        opt_ns(e50),
                        ratio(t50, e50),
                        v(met50)
                    );
                    let _ = writeln!(
                        r,
                        "| {label} | p99 | {} | {} | {} | {ok} | {tgt99} | {} |",
                        opt_ns(t99),
                        opt_ns(e99),
                        ratio(t99, e99),
                        v(met99)
                    );
                    if let Some(m) = met50 {
                        targets.push((
                            format!(
                                "A/B ({}): {label}, p50 at least 4 × lower than etcd's",
                                c.name
                            ),
                            format!("{} vs {}", opt_ns(t50), opt_ns(e50)),
                            m,
                        ));
                    }
                    if let Some(m) = met99 {
                        targets.push((
                            format!("A/B ({}): {label}, p99 ≤ 2 ms", c.name),
                            opt_ns(t99),
                            m,
                        ));
                    }
                }
                Kind::Tput { k, .. } => {
                    let (t, _) = med_of(&case.rounds[0], |m| m.ops.unwrap_or(0.0));
                    let (e, _) = med_of(&case.rounds[1], |m| m.ops.unwrap_or(0.0));
                    let f = |x: Option<f64>| x.map_or("failed".into(), |v| format!("{v:.0}/s"));
                    let ratio = match (t, e) {
                        (Some(t), Some(e)) if e > 0.0 => format!("{:.1}", t / e),
                        _ => "?".into(),
                    };
                    let (tgt, verdict) = if k == 64 {
                        let met = matches!((t, e), (Some(t), Some(e)) if t >= 3.0 * e);
                        targets.push((
                            format!("A/B ({}): {label}, at least 3 × etcd's", c.name),
                            format!("{} vs {}", f(t), f(e)),
                            met,
                        ));
                        ("≥ 3 × etcd", crate::bench::yes(met))
                    } else {
                        ("", "")
                    };
                    let _ = writeln!(
                        r,
                        "| {label} | lock+release/s | {} | {} | {ratio} | {ok} | {tgt} | {verdict} |",
                        f(t),
                        f(e)
                    );
                }
            }
        }
        let _ = writeln!(r);
    }
    let f = failures(ab);
    if !f.is_empty() {
        let _ = writeln!(r, "Failed measurements:\n");
        for x in f {
            let _ = writeln!(r, "- {}", crate::util::trunc(&x));
        }
        let _ = writeln!(r);
    }
}

/// `--compare DIR`: this build against another build of tenure (DIR holds its `tenure` and
/// `tenure-bench`, for example `target/release` of a checkout of an older commit), each with
/// its own `tenure serve --durability fsync` and its own clients, alternately (this, other,
/// other, this, ...) for several rounds on the idle machine. For "no regression" claims: the
/// report gives, per comparison, the median of the round medians and of the round p99s, and
/// the spread of the round values so that a difference can be told from noise.
pub fn compare(ctx: &mut Ctx, other: &Path, rounds: Option<usize>) -> String {
    let q = ctx.opts.quick;
    let n_rounds = rounds.unwrap_or(q.pick(6, 4, 1)).max(1);
    let kinds = [
        Kind::Lat,
        Kind::Ho(1),
        Kind::Ho(1000),
        Kind::Tput {
            k: 16,
            contended: false,
        },
        Kind::Tput {
            k: 16,
            contended: true,
        },
    ];
    let mut r = String::new();
    let this = match ctx.start_server(Durability::Fsync) {
        Ok(s) => s,
        Err(e) => return format!("this build's server did not start: {e}\n"),
    };
    let that = match ctx.start_server_of(&other.join("tenure"), Durability::Fsync) {
        Ok(s) => s,
        Err(e) => return format!("the other build's server did not start: {e}\n"),
    };
    let exe = other.join("tenure-bench");
    let sides: [(&str, Option<&Path>); 2] = [(&this.addr, None), (&that.addr, Some(&exe))];
    let pids = [this.child.pid(), that.child.pid()];
    let mut res: Vec<[Vec<Result<Meas, String>>; 2]> =
        kinds.iter().map(|_| [vec![], vec![]]).collect();
    for round in 0..n_rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for (i, kind) in kinds.iter().enumerate() {
            for side in order {
                eprintln!(
                    "[compare] round {}/{n_rounds}: {} — {}",
                    round + 1,
                    kind.label(),
                    ["this build", "other build"][side]
                );
                let tag = format!("cmp/{round}/{side}");
                let (end, exe) = sides[side];
                let m = measure(q, 0, end, pids[side], *kind, None, &tag, exe);
                if let Err(e) = &m {
                    eprintln!("  failed: {e}");
                }
                res[i][side].push(m);
            }
        }
    }
    let _ = writeln!(
        r,
        "| comparison | measure | this build | other build | other ÷ this | rounds ok | this build, rounds (min–max) | other build, rounds (min–max) |\n|---|---|---|---|---|---|---|---|"
    );
    let spread =
        |rs: &[Result<Meas, String>], f: &dyn Fn(&Meas) -> f64, fmt: &dyn Fn(f64) -> String| {
            let v: Vec<f64> = rs.iter().flatten().map(f).collect();
            let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if v.is_empty() {
                "–".to_string()
            } else {
                format!("{}–{}", fmt(lo), fmt(hi))
            }
        };
    for (i, kind) in kinds.iter().enumerate() {
        let [a, b] = &res[i];
        let ok = format!(
            "{} / {}",
            a.iter().filter(|x| x.is_ok()).count(),
            b.iter().filter(|x| x.is_ok()).count()
        );
        let stats: &[&str] = match kind {
            Kind::Tput { .. } => &["ops/s"],
            _ => &["p50", "p99"],
        };
        for &name in stats {
            let f = |m: &Meas| match name {
                "p50" => m.pct(50.0) as f64,
                "p99" => m.pct(99.0) as f64,
                _ => m.ops.unwrap_or(0.0),
            };
            let fmt = |v: f64| match name {
                "ops/s" => format!("{v:.0}"),
                _ => fmt_ns(v as u64),
            };
            let (x, _) = med_of(a, f);
            let (y, _) = med_of(b, f);
            let ratio = match (x, y) {
                (Some(x), Some(y)) if x > 0.0 => format!("{:.2}", y / x),
                _ => "?".into(),
            };
            let show = |v: Option<f64>| v.map_or("failed".to_string(), &fmt);
            let _ = writeln!(
                r,
                "| {} | {name} | {} | {} | {ratio} | {ok} | {} | {} |",
                kind.label(),
                show(x),
                show(y),
                spread(a, &f, &fmt),
                spread(b, &f, &fmt)
            );
        }
    }
    drop(that);
    drop(this);
    r
}
