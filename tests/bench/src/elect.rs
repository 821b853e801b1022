//! Master `kill -9` → every candidate told (issue 7): tenure's elections against etcd's
//! election service (v3election: `Campaign`, `Observe`) at the same TTL.
//!
//! A trial starts a first candidate process and waits until it is master, then two more
//! candidate processes and waits until both know the first as master; then it sends SIGKILL
//! to the master and measures, from just before the kill, until both remaining candidates know
//! the new master (`CLOCK_MONOTONIC` in every process). A candidate "knows" the new master when
//! it is told: tenure's `master_changed` event naming it, etcd's `Observe` stream showing its
//! key (or, for the new master itself, its `Campaign` call returning). The target: ≤ TTL +
//! 50 ms.
//!
//! tenure: priorities 3 (first master), 2, 1, sessions of the TTL (heartbeat every TTL/3);
//! the service designates the highest live candidate once the master's session expires.
//! etcd: each candidate grants a lease of the TTL (kept alive every TTL/3 as in
//! [`crate::etcd::lease_ttl`]) and campaigns with it; the next leader is the oldest
//! remaining campaign once the master's lease expires and its key is deleted.

use crate::bench::Ctx;
use crate::child::Child;
use crate::util::{mono_ns, say, Args};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tenure::client::Candidacy;
use tenure::{Client, ClientConfig, Event};

/// Worker `tenure-cand`: `--addr --name --id --prio --ttl-ms`. Campaigns and prints `master
/// ID EPOCH NS` for its view of the master after campaigning and at every change.
pub fn tenure_worker(a: &Args) {
    let ttl = Duration::from_millis(a.num("ttl-ms"));
    let c = Client::connect(ClientConfig::new([a.str("addr")]).session_ttl(ttl))
        .unwrap_or_else(|e| crate::die(&format!("connect: {e}")));
    let e = c
        .campaign(&a.str("name"), Candidacy::new(a.str("id"), a.num("prio")))
        .unwrap_or_else(|e| crate::die(&format!("campaign: {e}")));
    e.on_master_change(|ev| {
        if let Event::MasterChanged {
            epoch,
            master: Some(m),
            ..
        } = ev
        {
            say(&format!("master {} {epoch} {}", m.id, mono_ns()));
        }
    });
    // The change that made the current master may have come before the subscription.
    let now = e.master();
    if let Some(m) = now.master {
        say(&format!("master {} {} {}", m.id, now.epoch, mono_ns()));
    }
    std::thread::sleep(Duration::from_secs(600));
    drop(e);
}

/// Worker `etcd-cand`: `--endpoint --name --id --ttl-ms`. Grants a lease of the TTL (whole
/// seconds) kept alive every TTL/3, observes the election (printing `master VALUE REV NS` for
/// every leader the stream shows) and campaigns; when the campaign returns it prints `master
/// ID REV NS` itself.
pub fn etcd_worker(a: &Args) {
    let ttl_s = (a.num::<u64>("ttl-ms") / 1000).max(1) as i64;
    let (ep, name, id) = (a.str("endpoint"), a.str("name"), a.str("id"));
    crate::etcd::runtime(1).block_on(async move {
        // A waiting campaign is one long call: no request timeout.
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(600));
        let mut c = etcd_client::Client::connect([ep.as_str()], Some(opts))
            .await
            .unwrap_or_else(|e| crate::die(&format!("etcd connect: {e}")));
        let lease = crate::etcd::lease_ttl(&mut c, ttl_s).await;
        // Opening the stream waits for its first message (etcd sends the response headers
        // with it), that is for a leader: open it in the task, beside the campaign.
        let (mut c2, name2) = (c.clone(), name.clone());
        tokio::spawn(async move {
            let mut obs = c2
                .observe(name2.as_str())
                .await
                .unwrap_or_else(|e| crate::die(&format!("etcd observe: {e}")));
            while let Ok(Some(r)) = obs.message().await {
                if let Some(kv) = r.kv() {
                    say(&format!(
                        "master {} {} {}",
                        kv.value_str().unwrap_or("?"),
                        kv.create_revision(),
                        mono_ns()
                    ));
                }
            }
            say("observe-ended");
        });
        match c.campaign(name.as_str(), id.as_str(), lease).await {
            Ok(r) => {
                let rev = r.leader().map_or(0, |l| l.rev());
                say(&format!("master {id} {rev} {}", mono_ns()));
            }
            Err(e) => crate::die(&format!("etcd campaign: {e}")),
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

/// Waits until `c` prints `master WHO ...` (any other line is skipped); returns the NS field.
fn await_master(c: &Child, who: &dyn Fn(&str) -> bool, until: Instant) -> Result<u64, String> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out waiting for a master line".into());
        }
        let l = c.line_starting("master ", left)?;
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() == 4 && who(w[1]) {
            return w[3].parse().map_err(|e| format!("{l:?}: {e}"));
        }
    }
}

/// One trial result: ns from the kill until the last remaining candidate knew the new master,
/// and the new master's id.
pub type Trial = Result<(u64, String), String>;

fn trial(sys: usize, end: &str, ttl_ms: u64, name: &str) -> Trial {
    let (w, flag) = if sys == 0 {
        ("tenure-cand", "--addr")
    } else {
        ("etcd-cand", "--endpoint")
    };
    let spawn = |id: &str, prio: i64| -> Result<Child, String> {
        let args: Vec<String> = [
            w,
            flag,
            end,
            "--name",
            name,
            "--id",
            id,
            "--prio",
            &prio.to_string(),
            "--ttl-ms",
            &ttl_ms.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Child::worker(w, &args)
    };
    let setup = Instant::now() + Duration::from_secs(30);
    let mut first = spawn("c1", 3)?;
    await_master(&first, &|m| m == "c1", setup)?;
    let others = [spawn("c2", 2)?, spawn("c3", 1)?];
    for o in &others {
        await_master(o, &|m| m == "c1", setup)?;
    }
    // Spread the kill over one keep-alive period (TTL/3) so that it falls anywhere between two
    // keep-alives of the master.
    let spread = mono_ns() % (ttl_ms * 1_000_000 / 3);
    std::thread::sleep(Duration::from_millis(300) + Duration::from_nanos(spread));
    let t_kill = mono_ns();
    first.kill9();
    let until = Instant::now() + Duration::from_millis(ttl_ms) + Duration::from_secs(30);
    let mut last = 0;
    let mut new_master = String::new();
    for o in &others {
        // The first line naming someone other than the dead master.
        let l = loop {
            let left = until.saturating_duration_since(Instant::now());
            let l = o.line_starting("master ", left)?;
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.len() == 4 && fields[1] != "c1" {
                break fields.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            }
        };
        let at: u64 = l[3].parse().map_err(|e| format!("{l:?}: {e}"))?;
        if !new_master.is_empty() && new_master != l[1] {
            return Err(format!(
                "candidates disagree on the new master: {new_master} and {}",
                l[1]
            ));
        }
        new_master = l[1].clone();
        last = last.max(at);
    }
    let took = last
        .checked_sub(t_kill)
        .ok_or("told before the master was killed")?;
    Ok((took, new_master))
}

/// Results: per system (0 = tenure, 1 = etcd) and TTL (ms), the trials.
pub struct ElectOut {
    pub rows: crate::failover::Rows<(u64, String)>,
    pub etcd_error: Option<String>,
}

/// Runs the trials: tenure (durability fsync) and etcd, alternately, at every TTL.
pub fn run(ctx: &mut Ctx, with_etcd: bool) -> ElectOut {
    let (rows, etcd_error) =
        crate::failover::alternate(ctx, with_etcd, "elections", |sys, end, ttl, i| {
            trial(sys, end, ttl, &format!("el-{ttl}-{i}"))
        });
    ElectOut { rows, etcd_error }
}

/// The report section; appends the targets.
pub fn report(f: &ElectOut, r: &mut String, targets: &mut Vec<(String, String, bool)>) {
    let _ = writeln!(r, "\n## Master `kill -9` → every candidate told\n");
    let _ = writeln!(
        r,
        "Three candidate processes per trial (tenure: `tenure::Client::campaign`, what \
         `tenure elect` runs; etcd: the v3election API): the first becomes master, the other two \
         (tenure: priorities 2 and 1; etcd: later campaigns) wait and watch (tenure: the \
         `master_changed` event; etcd: an `Observe` stream, and the new leader's `Campaign` \
         returning). Each holds a session (tenure, server durability fsync) or a lease (etcd) \
         of the TTL shown, kept alive every TTL/3 by its client library. 300 ms plus a time \
         spread over one keep-alive period after both know the master, the master gets \
         SIGKILL. Time = the instant the last of the two remaining candidates knew the new \
         master − the instant just before the kill. Trials alternate tenure, etcd. Target \
         for tenure: ≤ TTL + 50 ms.\n"
    );
    let _ = writeln!(
        r,
        "| system | TTL | trials ok | min | median | max | max − TTL | new master | target | |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for (sys, ttl, res) in &f.rows {
        let mut v: Vec<u64> = res
            .iter()
            .filter_map(|x| x.as_ref().ok().map(|t| t.0))
            .collect();
        v.sort_unstable();
        let masters: Vec<&str> = res
            .iter()
            .filter_map(|x| x.as_ref().ok().map(|t| t.1.as_str()))
            .collect();
        let mut uniq = masters.clone();
        uniq.sort_unstable();
        uniq.dedup();
        let name = ["tenure (fsync)", "etcd"][*sys];
        let label = format!(
            "kill -9: master → every candidate told ≤ TTL + 50 ms, TTL {} s",
            ttl / 1000
        );
        let (cells, tgt, verdict) =
            crate::failover::ttl_cells(*sys, *ttl, &v, res.len(), label, targets);
        let _ = writeln!(
            r,
            "| {name} | {} s | {} / {} | {cells} | {} | {tgt} | {verdict} |",
            ttl / 1000,
            v.len(),
            res.len(),
            uniq.join(", ")
        );
        for e in res.iter().filter_map(|x| x.as_ref().err()) {
            let _ = writeln!(
                r,
                "\n{name}, TTL {} s: a trial failed: {}\n",
                ttl / 1000,
                crate::util::trunc(e)
            );
        }
    }
    if let Some(e) = &f.etcd_error {
        let _ = writeln!(r, "\netcd was not measured here: {}", crate::util::trunc(e));
    }
}

/// Smoke checks: every row has every trial measured, and tenure designated the candidate of
/// highest priority.
pub fn checks(f: &ElectOut) -> Vec<(String, Result<(), String>)> {
    let mut v = vec![];
    for (sys, ttl, res) in &f.rows {
        let name = format!(
            "kill -9 master, {}, TTL {} s",
            ["tenure", "etcd"][*sys],
            ttl / 1000
        );
        let c = match res.iter().find_map(|x| x.as_ref().err()) {
            Some(e) => Err(e.clone()),
            None if res.is_empty() => Err("no trial".into()),
            None => match res
                .iter()
                .find_map(|x| x.as_ref().ok().filter(|t| *sys == 0 && t.1 != "c2"))
            {
                Some(t) => Err(format!(
                    "tenure designated {} instead of c2 (priority 2)",
                    t.1
                )),
                None => Ok(()),
            },
        };
        v.push((name, c));
    }
    if let Some(e) = &f.etcd_error {
        v.push(("kill -9 master, etcd".into(), Err(e.clone())));
    }
    v
}
