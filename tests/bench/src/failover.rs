//! Holder `kill -9` → next holder granted. A holder process takes a lock with a session (tenure)
//! or a lease (etcd) of TTL 2 s or 10 s, kept alive by its client; a waiter process queues on
//! the same lock; the orchestrator sends SIGKILL to the holder and measures, from just before
//! the kill to the waiter's grant (`CLOCK_MONOTONIC` in both processes), how long the lock
//! stayed with a dead holder. The target (issue 7): ≤ TTL + 50 ms on every trial.

use crate::bench::{yes, Ctx};
use crate::child::Child;
use crate::util::{fmt_ns, mono_ns, say, Args, Scale};
use std::fmt::Write as _;
use std::time::Duration;
use tenure::{Client, ClientConfig, Durability};

/// Worker `kill-holder` / `kill-waiter` against tenure: `--addr`, `--name`, `--ttl-ms`. The
/// holder locks and prints `held`, then sleeps until it is killed (at most 10 minutes); the
/// waiter prints `asking`, calls `lock` (time limit TTL + 30 s) and prints `granted NS`.
pub fn tenure_worker(a: &Args, holder: bool) {
    let ttl = Duration::from_millis(a.num("ttl-ms"));
    let name = a.str("name");
    let c = Client::connect(ClientConfig::new([a.str("addr")]).session_ttl(ttl))
        .unwrap_or_else(|e| crate::die(&format!("connect: {e}")));
    if holder {
        let l = c
            .lock(&name, Duration::from_secs(10))
            .unwrap_or_else(|e| crate::die(&format!("lock: {e}")));
        say("held");
        std::thread::sleep(Duration::from_secs(600));
        drop(l);
    } else {
        say("asking");
        match c.lock(&name, ttl + Duration::from_secs(30)) {
            Ok(l) => {
                say(&format!("granted {}", mono_ns()));
                let _ = l.release();
            }
            Err(e) => say(&format!("failed {e}")),
        }
        c.close();
    }
}

/// Same as [`tenure_worker`] against etcd (`--endpoint`): a lease of `--ttl-ms` (whole
/// seconds) kept alive every TTL/3, and etcd's `Lock(name, lease)`.
pub fn etcd_worker(a: &Args, holder: bool) {
    let ttl_s = (a.num::<u64>("ttl-ms") / 1000).max(1) as i64;
    let name = a.str("name");
    let ep = a.str("endpoint");
    crate::etcd::runtime(1).block_on(async move {
        let mut c = crate::etcd::connect(&ep).await;
        let lease = crate::etcd::lease_ttl(&mut c, ttl_s).await;
        let opts = Some(etcd_client::LockOptions::new().with_lease(lease));
        if holder {
            if let Err(e) = c.lock(name.as_str(), opts).await {
                crate::die(&format!("etcd lock: {e}"));
            }
            say("held");
            tokio::time::sleep(Duration::from_secs(600)).await;
        } else {
            say("asking");
            let limit = Duration::from_secs(ttl_s as u64 + 30);
            match tokio::time::timeout(limit, c.lock(name.as_str(), opts)).await {
                Ok(Ok(r)) => {
                    say(&format!("granted {}", mono_ns()));
                    let _ = c.unlock(r.key().to_vec()).await;
                }
                Ok(Err(e)) => say(&format!("failed {e}")),
                Err(_) => say("failed timed out"),
            }
        }
    });
}

/// Results: per system (0 = tenure, 1 = etcd) and TTL (ms), the trials (ns from the kill to
/// the grant).
pub struct FailOut {
    pub rows: Rows<u64>,
    pub etcd_error: Option<String>,
}

/// Trials per TTL for a scale (the smoke run only does TTL 2 s, once).
pub(crate) fn plan(q: Scale) -> Vec<(u64, usize)> {
    match q {
        Scale::Full => vec![(2000, 5), (10_000, 3)],
        Scale::Quick => vec![(2000, 3), (10_000, 1)],
        Scale::Smoke => vec![(2000, 1)],
    }
}

fn trial(sys: usize, end: &str, ttl_ms: u64, name: &str) -> Result<u64, String> {
    let (pre, flag) = if sys == 0 {
        ("tenure", "--addr")
    } else {
        ("etcd", "--endpoint")
    };
    let args = |role: &str| -> Vec<String> {
        [
            &format!("{pre}-kill-{role}"),
            flag,
            end,
            "--name",
            name,
            "--ttl-ms",
            &ttl_ms.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut holder = Child::worker(&format!("{pre}-kill-holder"), &args("holder"))?;
    holder.line_starting("held", Duration::from_secs(20))?;
    let waiter = Child::worker(&format!("{pre}-kill-waiter"), &args("waiter"))?;
    waiter.line_starting("asking", Duration::from_secs(20))?;
    // Let the waiter's request reach the server and queue, then wait a further time spread
    // over one keep-alive period (TTL/3, both clients): the kill then falls at any point
    // between two keep-alives, not always at the same one (the worst case is just after one).
    let spread = mono_ns() % (ttl_ms * 1_000_000 / 3);
    std::thread::sleep(Duration::from_millis(300) + Duration::from_nanos(spread));
    let t_kill = mono_ns();
    holder.kill9();
    let l = waiter.line_starting("", Duration::from_millis(ttl_ms) + Duration::from_secs(40))?;
    let granted: u64 = match l.strip_prefix("granted ") {
        Some(t) => t.trim().parse().map_err(|e| format!("{l:?}: {e}"))?,
        None => return Err(format!("waiter: {}", crate::util::trunc(&l))),
    };
    waiter.finish(Duration::from_secs(10))?;
    granted
        .checked_sub(t_kill)
        .ok_or_else(|| "granted before the holder was killed".to_string())
}

/// Rows of `kill -9` trials: per system (0 = tenure, 1 = etcd) and TTL (ms), the trials.
pub(crate) type Rows<T> = Vec<(usize, u64, Vec<Result<T, String>>)>;

/// Runs `trial(system, endpoint, ttl_ms, i)` against a tenure server (durability fsync) and
/// etcd (when `with_etcd`), alternately, for every TTL of [`plan`]. Returns the rows and why
/// etcd did not start, if it did not. `tag` names the phase in progress lines.
pub(crate) fn alternate<T>(
    ctx: &mut Ctx,
    with_etcd: bool,
    tag: &str,
    trial: impl Fn(usize, &str, u64, usize) -> Result<T, String>,
) -> (Rows<T>, Option<String>) {
    let mut rows = vec![];
    let mut etcd_error = None;
    let srv = ctx.start_server(Durability::Fsync);
    let dir = ctx.dir(&format!("{tag}-etcd"));
    let et = if with_etcd {
        crate::etcd::start(&dir)
            .map_err(|e| etcd_error = Some(e))
            .ok()
    } else {
        None
    };
    for (ttl, n) in plan(ctx.opts.quick) {
        let mut res: [Vec<Result<T, String>>; 2] = [vec![], vec![]];
        for i in 0..n {
            for (sys, r) in res.iter_mut().enumerate() {
                let end = match (sys, &srv, &et) {
                    (0, Ok(s), _) => s.addr.clone(),
                    (0, Err(e), _) => {
                        r.push(Err(format!("server did not start: {e}")));
                        continue;
                    }
                    (_, _, Some(e)) => e.endpoint.clone(),
                    _ => continue,
                };
                eprintln!(
                    "[{tag}] TTL {} s, trial {}/{n}: {}",
                    ttl / 1000,
                    i + 1,
                    ["tenure", "etcd"][sys]
                );
                r.push(trial(sys, &end, ttl, i));
            }
        }
        let [t, e] = res;
        rows.push((0, ttl, t));
        if !e.is_empty() {
            rows.push((1, ttl, e));
        }
    }
    (rows, etcd_error)
}

/// Runs the trials: tenure (durability fsync) and etcd, alternately, every TTL.
pub fn run(ctx: &mut Ctx, with_etcd: bool) -> FailOut {
    let (rows, etcd_error) = alternate(ctx, with_etcd, "failover", |sys, end, ttl, i| {
        trial(sys, end, ttl, &format!("ko/{ttl}/{i}"))
    });
    FailOut { rows, etcd_error }
}

/// The cells `min | median | max | max − TTL` of a row of trial times (`v` sorted, in ns),
/// and for tenure (`sys` 0) its target cell and verdict, the target ≤ TTL + 50 ms on every
/// one of `trials` trials being pushed to `targets` as `label`.
pub(crate) fn ttl_cells(
    sys: usize,
    ttl_ms: u64,
    v: &[u64],
    trials: usize,
    label: String,
    targets: &mut Vec<(String, String, bool)>,
) -> (String, String, &'static str) {
    let ttl_ns = ttl_ms * 1_000_000;
    let cells = match v.last() {
        None => "— | — | — | —".to_string(),
        Some(&max) => format!(
            "{} | {} | {} | {}",
            fmt_ns(v[0]),
            fmt_ns(v[(v.len() - 1) / 2]),
            fmt_ns(max),
            crate::util::fmt_ns_signed(max as i64 - ttl_ns as i64)
        ),
    };
    if sys != 0 {
        return (cells, "—".into(), "");
    }
    let all_ok = trials > 0 && v.len() == trials;
    let met = all_ok && v.iter().all(|x| *x <= ttl_ns + 50_000_000);
    targets.push((label, v.last().map_or("failed".into(), |m| fmt_ns(*m)), met));
    (
        cells,
        format!("≤ {}", fmt_ns(ttl_ns + 50_000_000)),
        yes(met),
    )
}

/// The report section; appends the targets.
pub fn report(f: &FailOut, r: &mut String, targets: &mut Vec<(String, String, bool)>) {
    let _ = writeln!(r, "\n## Holder `kill -9` → next holder granted\n");
    let _ = writeln!(
        r,
        "A holder process takes a lock with a session (tenure, server durability fsync) or a \
         lease (etcd) of the TTL shown, kept alive by its client library; a waiter process \
         queues on the same lock; 300 ms plus a time spread over one keep-alive period (TTL/3) \
         later, so that the kill falls anywhere between two keep-alives, the holder gets SIGKILL. Time = \
         waiter's grant − the instant just before the kill. Trials alternate tenure, etcd. \
         Target for tenure: ≤ TTL + 50 ms on every trial.\n"
    );
    let _ = writeln!(
        r,
        "| system | TTL | trials ok | min | median | max | max − TTL | target | |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (sys, ttl, res) in &f.rows {
        let mut v: Vec<u64> = res
            .iter()
            .filter_map(|x| x.as_ref().ok().copied())
            .collect();
        v.sort_unstable();
        let name = ["tenure (fsync)", "etcd"][*sys];
        let label = format!(
            "kill -9: holder → next holder ≤ TTL + 50 ms, every trial, TTL {} s",
            ttl / 1000
        );
        let (cells, tgt, verdict) = ttl_cells(*sys, *ttl, &v, res.len(), label, targets);
        let _ = writeln!(
            r,
            "| {name} | {} s | {} / {} | {cells} | {tgt} | {verdict} |",
            ttl / 1000,
            v.len(),
            res.len()
        );
        for e in res.iter().filter_map(|x| x.as_ref().err()) {
            let _ = writeln!(
                r,
                "\n{name}, TTL {} s: a trial failed: {}",
                ttl / 1000,
                crate::util::trunc(e)
            );
        }
    }
    if let Some(e) = &f.etcd_error {
        let _ = writeln!(r, "\netcd was not measured here: {}", crate::util::trunc(e));
    }
}

/// Smoke checks: every row has every trial measured.
pub fn checks(f: &FailOut) -> Vec<(String, Result<(), String>)> {
    let mut v = vec![];
    for (sys, ttl, res) in &f.rows {
        let name = format!(
            "kill -9 failover, {}, TTL {} s",
            ["tenure", "etcd"][*sys],
            ttl / 1000
        );
        let c = match res.iter().find_map(|x| x.as_ref().err()) {
            Some(e) => Err(e.clone()),
            None if res.is_empty() => Err("no trial".into()),
            None => Ok(()),
        };
        v.push((name, c));
    }
    if let Some(e) = &f.etcd_error {
        v.push(("kill -9 failover, etcd".into(), Err(e.clone())));
    }
    v
}
