//! The replicated group against etcd and ZooKeeper clusters (issue 14):
//! `tenure-bench --group [--quick | --smoke] [--trials N]`.
//!
//! Three clusters of three members each run on this machine, every member a process of its
//! own with its own data directory, all durable (tenure's default fsync, etcd's, ZooKeeper's
//! `forceSync=yes`):
//!
//! - **tenure**: `tenure serve --id N --cluster ...` (raft tick 20 ms, elections after
//!   200–400 ms without a leader: `ReplicaConfig::new`);
//! - **etcd**: three `etcd` members with their defaults (heartbeat 100 ms, election timeout
//!   1 s), and, as a second etcd, the same three with tenure's timing (heartbeat 40 ms,
//!   election timeout 200 ms) so that the failover comparison is not only a comparison of
//!   defaults; the clients are the `etcd-client` crate's, with the concurrency package's lock
//!   (`Lock` on a lease kept alive every TTL/3);
//! - **ZooKeeper**: Debian's `zookeeper` ensemble (see [`crate::zk`] for its settings), the
//!   clients Python's `kazoo` with its `Lock` recipe (`tests/bench/zk_worker.py`), where
//!   ZooKeeper and kazoo install.
//!
//! Measured, with the systems taking turns in every round:
//!
//! - durable lock+release, one client looping on one lock: p50, p99;
//! - throughput at 64 clients, each on a lock of its own;
//! - **failover**: a client locks and releases in a loop; the cluster's leader is sent
//!   `kill -9`; the pause is from the kill to the end of the first lock+release *begun after*
//!   it (so it includes one whole cycle, never a reply already in flight). The killed member
//!   is restarted and the cluster given time to settle before the next trial. The systems
//!   take turns five trials at a time, each with its own loop client running only then. The clients
//!   report every session or lock they were told they lost (tenure `session_expired`,
//!   `lock_lost`, `data_lost`; etcd a lease gone; ZooKeeper a session `LOST`): the target is
//!   none;
//! - keep-alives per second with 100,000 sessions (leases) on the group, and the memory per
//!   session on the leader and on a follower (etcd and tenure; ZooKeeper sessions are not
//!   leases of this kind and are left out).
//!
//! `master_changed` in a member failover: the master of an election is a *client*, and a
//! member's death must not change it. The loop client of the failover trials is also a
//! candidate of an election it wins at once; any `master_changed` it sees after that (or
//! `session_expired`) counts as lost in the failover. How fast a master change reaches every
//! candidate when the master itself dies is the single-server benchmark's
//! "Master killed" section: it does not depend on which member leads.

use crate::bench::{throughput, tput_args, Ctx};
use crate::child::{taskset_pid, Child};
use crate::util::{fmt_ns, mono_ns, parse_samples, proc_rss, say, Args, Scale, Stats};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure::client::Candidacy;
use tenure::{Client, ClientConfig, Event};

/// Session TTL (tenure), lease TTL (etcd) and session timeout (ZooKeeper) of the failover
/// clients: long enough that no failover should cost a session.
pub const FAILOVER_TTL: Duration = Duration::from_secs(10);

/// The systems compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sys {
    /// tenure's replicated group.
    Tenure,
    /// etcd with its default timing.
    Etcd,
    /// etcd with tenure's raft timing (heartbeat 40 ms, election timeout 200 ms).
    EtcdFast,
    /// ZooKeeper with kazoo.
    Zk,
}

impl Sys {
    /// Its name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Sys::Tenure => "tenure",
            Sys::Etcd => "etcd",
            Sys::EtcdFast => "etcd (200 ms election)",
            Sys::Zk => "ZooKeeper + kazoo",
        }
    }
}

/// A member process and how to start it again.
struct Member {
    child: Option<Child>,
    /// Program and arguments of a restart (for tenure: without `--bootstrap`).
    again: Command,
    log: PathBuf,
    /// The client address (`host:port` for tenure, `http://host:port` for etcd).
    endpoint: String,
}

/// A running three-member cluster of one system.
pub struct Cluster {
    sys: Sys,
    members: Vec<Member>,
    zk: Option<crate::zk::Zk>,
}

fn cmd_of(prog: &str, args: &[String]) -> Command {
    let mut c = Command::new(prog);
    c.args(args);
    c
}

fn ports(n: usize) -> Result<Vec<u16>, String> {
    // Bound together so that two calls cannot return the same free port.
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    ls.iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}

impl Cluster {
    /// Starts a three-member cluster of `sys` with data under `dir` and waits (bounded) until
    /// it has a leader.
    pub fn start(sys: Sys, tenure: &Path, dir: &Path) -> Result<Cluster, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let n = 3;
        let mut members = vec![];
        let mut zk = None;
        match sys {
            Sys::Tenure => {
                let p = ports(n)?;
                let cluster = (0..n)
                    .map(|i| format!("{}=127.0.0.1:{}", i + 1, p[i]))
                    .collect::<Vec<_>>()
                    .join(",");
                let prog = tenure.display().to_string();
                for (i, port) in p.iter().enumerate() {
                    let args: Vec<String> = [
                        "serve",
                        "--id",
                        &(i + 1).to_string(),
                        "--listen",
                        &format!("127.0.0.1:{port}"),
                        "--data",
                        &dir.join(format!("m{}", i + 1)).display().to_string(),
                        "--cluster",
                        &cluster,
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                    let mut first = args.clone();
                    first.push("--bootstrap".into());
                    let log = dir.join(format!("m{}.log", i + 1));
                    let child = Child::spawn("tenure member", cmd_of(&prog, &first), Some(&log))?;
                    members.push(Member {
                        child: Some(child),
                        again: cmd_of(&prog, &args),
                        log,
                        endpoint: format!("127.0.0.1:{port}"),
                    });
                }
                for m in &members {
                    if let Some(c) = &m.child {
                        // `tenure serve` prints its address on stdout once it listens.
                        c.line(Duration::from_secs(20))?;
                    }
                }
            }
            Sys::Etcd | Sys::EtcdFast => {
                let p = ports(2 * n)?;
                let peer = |i: usize| format!("http://127.0.0.1:{}", p[2 * i + 1]);
                let cluster = (0..n)
                    .map(|i| format!("m{}={}", i + 1, peer(i)))
                    .collect::<Vec<_>>()
                    .join(",");
                for i in 0..n {
                    let client = format!("http://127.0.0.1:{}", p[2 * i]);
                    let mut args: Vec<String> = [
                        "--name",
                        &format!("m{}", i + 1),
                        "--data-dir",
                        &dir.join(format!("m{}", i + 1)).display().to_string(),
                        "--listen-client-urls",
                        &client,
                        "--advertise-client-urls",
                        &client,
                        "--listen-peer-urls",
                        &peer(i),
                        "--initial-advertise-peer-urls",
                        &peer(i),
                        "--initial-cluster",
                        &cluster,
                        "--initial-cluster-state",
                        "new",
                        "--logger",
                        "zap",
                        "--log-level",
                        "warn",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                    if sys == Sys::EtcdFast {
                        args.extend(
                            ["--heartbeat-interval", "40", "--election-timeout", "200"]
                                .map(String::from),
                        );
                    }
                    let log = dir.join(format!("m{}.log", i + 1));
                    let child = Child::spawn("etcd member", cmd_of("etcd", &args), Some(&log))?;
                    members.push(Member {
                        child: Some(child),
                        again: cmd_of("etcd", &args),
                        log,
                        endpoint: client,
                    });
                }
            }
            Sys::Zk => zk = Some(crate::zk::start(dir, n)?),
        }
        let c = Cluster { sys, members, zk };
        c.wait_leader(Duration::from_secs(60))?;
        Ok(c)
    }

    /// The client endpoints, comma-separated.
    pub fn endpoints(&self) -> String {
        match &self.zk {
            Some(z) => z.hosts.clone(),
            None => self
                .members
                .iter()
                .map(|m| m.endpoint.clone())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Member `i`'s client endpoint.
    pub fn endpoint(&self, i: usize) -> String {
        match &self.zk {
            Some(z) => z.endpoint(i),
            None => self.members[i].endpoint.clone(),
        }
    }

    /// Member `i`'s process id, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        match &self.zk {
            Some(z) => z.pid(i),
            None => self.members[i].child.as_ref().map(Child::pid),
        }
    }

    /// The leader's index as the live members report it, if they agree on one.
    pub fn leader(&self) -> Option<usize> {
        match self.sys {
            Sys::Zk => self.zk.as_ref()?.leader(),
            Sys::Tenure => {
                let live: Vec<String> = (0..self.members.len())
                    .filter(|&i| self.members[i].child.is_some())
                    .map(|i| self.members[i].endpoint.clone())
                    .collect();
                let c =
                    Client::connect(ClientConfig::new(live).session_ttl(Duration::from_secs(2)))
                        .ok()?;
                let s = c.status();
                c.close();
                let id = s.ok()?.leader?.id as usize;
                (id >= 1 && self.members.get(id - 1)?.child.is_some()).then(|| id - 1)
            }
            Sys::Etcd | Sys::EtcdFast => {
                let eps: Vec<(usize, String)> = (0..self.members.len())
                    .filter(|&i| self.members[i].child.is_some())
                    .map(|i| (i, self.members[i].endpoint.clone()))
                    .collect();
                crate::etcd::runtime(1).block_on(async move {
                    for (i, ep) in eps {
                        let opts = etcd_client::ConnectOptions::new()
                            .with_connect_timeout(Duration::from_millis(500))
                            .with_timeout(Duration::from_secs(2));
                        let Ok(mut c) = etcd_client::Client::connect([ep], Some(opts)).await else {
                            continue;
                        };
                        if let Ok(s) = c.status().await {
                            let me = s.header().map(|h| h.member_id());
                            if Some(s.leader()) == me && s.leader() != 0 {
                                return Some(i);
                            }
                        }
                    }
                    None
                })
            }
        }
    }

    /// Waits (at most `limit`) until the cluster has a leader; returns it.
    pub fn wait_leader(&self, limit: Duration) -> Result<usize, String> {
        let end = Instant::now() + limit;
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if Instant::now() > end {
                return Err(format!(
                    "{}: no leader within {} s (member logs beside the data)",
                    self.sys.name(),
                    limit.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` member `i`.
    pub fn kill(&mut self, i: usize) {
        match &mut self.zk {
            Some(z) => z.kill(i),
            None => {
                if let Some(mut c) = self.members[i].child.take() {
                    c.kill9();
                }
            }
        }
    }

    /// Starts member `i` again (same data) and waits (bounded) until it serves.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        if let Some(z) = &mut self.zk {
            return z.restart(i);
        }
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let m = &mut self.members[i];
            let prog = m.again.get_program().to_owned();
            let mut cmd = Command::new(prog);
            cmd.args(m.again.get_args());
            // A log of its own per start (`mN.<ns>.log`), beside the first.
            let log_again = m.log.with_extension(format!("{}.log", mono_ns()));
            let child = Child::spawn("member", cmd, Some(&log_again))?;
            let ok = match self.sys {
                Sys::Tenure => child.line(Duration::from_secs(10)).is_ok(),
                // etcd says nothing on stdout: it serves once it answers a status with a
                // leader (it has rejoined the group).
                _ => etcd_serves(&self.members[i].endpoint, Duration::from_secs(20)),
            };
            if ok {
                self.members[i].child = Some(child);
                return Ok(());
            }
            drop(child);
            if Instant::now() > end {
                return Err(format!(
                    "{} member {} did not restart",
                    self.sys.name(),
                    i + 1
                ));
            }
            std::thread::sleep(Duration::from_millis(100)); // its port may still be held
        }
    }
}

/// Whether the etcd member at `ep` answers a status naming a leader within `limit`.
fn etcd_serves(ep: &str, limit: Duration) -> bool {
    let ep = ep.to_string();
    crate::etcd::runtime(1).block_on(async move {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let opts = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(1));
            if let Ok(mut c) = etcd_client::Client::connect([ep.clone()], Some(opts)).await {
                if c.status().await.is_ok_and(|s| s.leader() != 0) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    })
}

/// Worker `group-loop`: `--sys tenure|etcd --endpoints LIST --name N [--call-ms MS]`
/// (etcd: each call's bound). Locks and releases
/// `N` in a loop on a session (lease) of [`FAILOVER_TTL`]; prints `ready` after the first
/// cycle, then `c START END` per cycle (`CLOCK_MONOTONIC` ns), `err MESSAGE` per failed call
/// (and tries again 5 ms later), `lost WHAT` for every session, lease or lock it is told it
/// lost; ends (printing `done`) on a `stop` line or the end of its input.
pub fn loop_worker(a: &Args) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        for l in std::io::stdin().lock().lines() {
            if l.map_or(true, |l| l.trim() == "stop") {
                break;
            }
        }
        s2.store(true, Ordering::SeqCst);
    });
    let eps: Vec<String> = a.str("endpoints").split(',').map(str::to_string).collect();
    let name = a.str("name");
    match a.str("sys").as_str() {
        "tenure" => tenure_loop(eps, &name, &stop),
        "etcd" => {
            let call = Duration::from_millis(a.num("call-ms"));
            etcd_loop(eps, &name, call, &stop)
        }
        s => crate::die(&format!("unknown --sys {s}")),
    }
    say("done");
}

/// A loop's lock+release begun at `t0` succeeded: `ready` after the first, then `c T0 T1`.
fn cycle_done(first: &mut bool, t0: u64) {
    let t1 = mono_ns();
    if std::mem::take(first) {
        say("ready");
    }
    say(&format!("c {t0} {t1}"));
}

fn tenure_loop(eps: Vec<String>, name: &str, stop: &AtomicBool) {
    let c = Client::connect(ClientConfig::new(eps).session_ttl(FAILOVER_TTL))
        .unwrap_or_else(|e| crate::die(&format!("connect: {e}")));
    let won = Arc::new(AtomicBool::new(false));
    let w2 = won.clone();
    let sub = c
        .subscribe(move |ev| match ev {
            Event::SessionExpired => say("lost session_expired"),
            Event::LockLost { reason, .. } => say(&format!("lost lock_lost {}", reason.as_str())),
            Event::DataLost { .. } => say("lost data_lost"),
            Event::MasterChanged { .. } if w2.load(Ordering::SeqCst) => say("lost master_changed"),
            _ => {}
        })
        .unwrap_or_else(|e| crate::die(&format!("subscribe: {e}")));
    // A candidate of an election it wins at once: a member's death must not change its master.
    let cand = c
        .campaign(&format!("{name}-election"), Candidacy::new("loop", 1))
        .unwrap_or_else(|e| crate::die(&format!("campaign: {e}")));
    let end = Instant::now() + Duration::from_secs(10);
    while !cand.is_master() {
        if Instant::now() > end {
            crate::die("not master of its own election within 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    won.store(true, Ordering::SeqCst);
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        let t0 = mono_ns();
        match c
            .lock(name, Duration::from_secs(10))
            .and_then(|l| l.release())
        {
            Ok(()) => cycle_done(&mut first, t0),
            Err(e) => {
                say(&format!("err {e}"));
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    drop(cand);
    drop(sub);
    c.close();
}

/// The etcd loop: `etcd-client` on one endpoint at a time, moving to the next on a
/// connection error, as Go's clientv3 does with its endpoint list (the crate's own
/// multi-endpoint channel, tonic's balancer, kept sending to the dead member: a leader kill
/// then cost 5–7 s in trial runs, which would measure the crate, not etcd). The lease is kept
/// alive from the loop, every TTL/3, over the current connection. etcd drops a proposal made
/// while it has no leader and answers it only at its request timeout (5 s + 2 × the election
/// timeout: a leader kill then cost 7.0 s, 5.4 s with a 200 ms election, in trial runs), so
/// each lock+release is bounded by `call` (the cluster's election timeout) and tried again,
/// as a careful etcd user bounds each call with a context deadline.
fn etcd_loop(eps: Vec<String>, name: &str, call: Duration, stop: &AtomicBool) {
    use etcd_client::{Client as Etcd, ConnectOptions, LockOptions};
    let ttl_s = FAILOVER_TTL.as_secs() as i64;
    crate::etcd::runtime(1).block_on(async move {
        let opts = || {
            ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(10))
        };
        let mut idx = 0;
        let connect = |i: usize| Etcd::connect([eps[i].clone()], Some(opts()));
        let mut c = loop {
            match connect(idx).await {
                Ok(c) => break c,
                Err(_) => idx = (idx + 1) % eps.len(),
            }
        };
        let grant = |mut c: Etcd| async move {
            c.lease_grant(ttl_s, None)
                .await
                .map(|r| r.id())
                .unwrap_or_else(|e| crate::die(&format!("etcd lease grant: {e}")))
        };
        let mut lease = grant(c.clone()).await;
        let mut kept = Instant::now();
        let mut first = true;
        while !stop.load(Ordering::SeqCst) {
            let mut r: Result<(), String> = Ok(());
            if kept.elapsed() >= FAILOVER_TTL / 3 {
                let ka = async {
                    let (mut k, mut st) = c.lease_keep_alive(lease).await?;
                    k.keep_alive().await?;
                    st.message().await
                };
                r = match tokio::time::timeout(Duration::from_secs(2), ka).await {
                    Ok(Ok(Some(m))) if m.ttl() > 0 => {
                        kept = Instant::now();
                        Ok(())
                    }
                    Ok(Ok(_)) => Err("lease not found (keep-alive answered TTL 0)".into()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("keep-alive timed out".into()),
                };
            }
            let t0 = mono_ns();
            if r.is_ok() {
                let lo = Some(LockOptions::new().with_lease(lease));
                let cycle = async {
                    match c.lock(name, lo).await {
                        Ok(l) => c.unlock(l.key().to_vec()).await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                };
                r = match tokio::time::timeout(call, cycle).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {call:?}")),
                };
            }
            match r {
                Ok(()) => cycle_done(&mut first, t0),
                Err(m) => {
                    say(&format!("err {}", m.replace('\n', " ")));
                    if m.contains("lease not found") {
                        say("lost lease");
                        lease = grant(c.clone()).await;
                        kept = Instant::now();
                    } else {
                        // The member may be gone: the next one.
                        idx = (idx + 1) % eps.len();
                        if let Ok(n) = connect(idx).await {
                            c = n;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }
    });
}

/// Starts the failover loop client of `sys` on `cl`.
fn loop_client(sys: Sys, cl: &Cluster, name: &str) -> Result<Child, String> {
    let eps = cl.endpoints();
    let w = match sys {
        Sys::Zk => {
            let mut cmd = Command::new(crate::zk::python());
            cmd.arg(zk_script()).args([
                "loop",
                "--hosts",
                &eps,
                "--name",
                name,
                "--session-ms",
                &FAILOVER_TTL.as_millis().to_string(),
            ]);
            Child::spawn("zk loop", cmd, None)?
        }
        _ => {
            let s = if sys == Sys::Tenure { "tenure" } else { "etcd" };
            let call_ms = if sys == Sys::EtcdFast { "200" } else { "1000" };
            let args: Vec<String> = [
                "group-loop",
                "--sys",
                s,
                "--endpoints",
                &eps,
                "--name",
                name,
                "--call-ms",
                call_ms,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Child::worker("group-loop", &args)?
        }
    };
    w.line_starting("ready", Duration::from_secs(30))?;
    Ok(w)
}

/// `tests/bench/zk_worker.py`.
fn zk_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zk_worker.py")
}

/// One failover trial: returns the pause (ns) and appends what the client said it lost.
fn failover_trial(cl: &mut Cluster, w: &Child, lost: &mut Vec<String>) -> Result<u64, String> {
    cl.wait_leader(Duration::from_secs(30))?;
    // See the loop make progress, then let it run a while: the kill falls at any point of
    // the leader's heartbeat period, not always the same one.
    let seen = Instant::now() + Duration::from_secs(10);
    loop {
        let l = w.line(Duration::from_secs(10))?;
        note_lost(&l, lost);
        if l.starts_with("c ") {
            break;
        }
        if Instant::now() > seen {
            return Err("the loop client made no progress before the kill".into());
        }
    }
    std::thread::sleep(Duration::from_nanos(200_000_000 + mono_ns() % 100_000_000));
    // The leader as it is now (it may have moved since the last look).
    let leader = cl.wait_leader(Duration::from_secs(10))?;
    let t_kill = mono_ns();
    cl.kill(leader);
    let end = Instant::now() + FAILOVER_TTL + Duration::from_secs(30);
    let pause = loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no lock within {} s of the kill",
                (FAILOVER_TTL + Duration::from_secs(30)).as_secs()
            ));
        }
        let l = w.line(left)?;
        note_lost(&l, lost);
        let mut it = l.split_whitespace();
        if it.next() != Some("c") {
            continue;
        }
        let (Some(s), Some(e)) = (
            it.next().and_then(|x| x.parse::<u64>().ok()),
            it.next().and_then(|x| x.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if s >= t_kill {
            break e - t_kill;
        }
    };
    // Keep listening a while for anything lost, then bring the member back.
    let settle = Instant::now() + Duration::from_secs(1);
    while let Ok(l) = w.line(settle.saturating_duration_since(Instant::now())) {
        note_lost(&l, lost);
    }
    cl.restart(leader)?;
    cl.wait_leader(Duration::from_secs(30))?;
    // Let the restarted member catch up before the next kill.
    std::thread::sleep(Duration::from_secs(2));
    Ok(pause)
}

fn note_lost(l: &str, lost: &mut Vec<String>) {
    if let Some(w) = l.strip_prefix("lost ") {
        lost.push(w.to_string());
    }
}

/// How each system is set up, as the report says it.
const SETUPS: &str = "Setups: tenure, three `tenure serve` members (fsync; raft tick 20 ms, elections after 200–400 ms without a leader). etcd 3.4.23, three members with its defaults (heartbeat 100 ms, election timeout 1 s), and the same with tenure's timing (`--heartbeat-interval 40 --election-timeout 200`); clients are the `etcd-client` crate's lock on a lease kept alive every TTL/3; the failover client moves to the next endpoint on a connection error and bounds each call by the election timeout (etcd answers a proposal dropped during an election only at its request timeout, 5 s + 2 × the election timeout). ZooKeeper 3.8.0 (Debian), three members with tickTime 200, initLimit 10, syncLimit 5, forceSync yes; clients are Python's kazoo 2.11 `Lock` recipe (64 clients: two processes of 32 threads). Session TTL, lease TTL and ZooKeeper session timeout 10 s in the failover trials. Keep-alives: the generator on CPU 1, the leader on CPU 0, as in the single-server phase's pinned condition.";

/// Results of one system.
pub struct SysOut {
    sys: Sys,
    start: Result<(), String>,
    lat: Result<Vec<u64>, String>,
    tput: Result<(f64, Stats), String>,
    fail: Vec<Result<u64, String>>,
    lost: Vec<String>,
    ka: Result<Ka, String>,
}

/// Keep-alive measurement of one system.
struct Ka {
    sessions: usize,
    rates: Vec<f64>,
    /// RSS growth per session (bytes): leader, follower.
    per_session: (f64, f64),
}

/// Everything measured.
pub struct GroupOut {
    systems: Vec<SysOut>,
    trials: usize,
    notes: Vec<String>,
}

fn lat_samples(sys: Sys, cl: &Cluster, secs: f64) -> Result<Vec<u64>, String> {
    let eps = cl.endpoints();
    let secs_s = secs.to_string();
    let w = match sys {
        Sys::Zk => {
            let mut cmd = Command::new(crate::zk::python());
            cmd.arg(zk_script()).args([
                "lat", "--hosts", &eps, "--warmup", "20", "--iters", "1000000", "--secs", &secs_s,
            ]);
            Child::spawn("zk lat", cmd, None)?
        }
        _ => {
            let (worker, flag) = if sys == Sys::Tenure {
                ("tenure-lat", "--addr")
            } else {
                ("etcd-lat", "--endpoint")
            };
            let args: Vec<String> = [
                worker, flag, &eps, "--warmup", "20", "--iters", "1000000", "--secs", &secs_s,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Child::worker(worker, &args)?
        }
    };
    let l = w.line_starting("samples", Duration::from_secs_f64(secs + 60.0))?;
    let s = parse_samples("samples", &l)?;
    w.finish(Duration::from_secs(15))?;
    if s.is_empty() {
        return Err("no samples".into());
    }
    Ok(s)
}

fn tput(sys: Sys, cl: &Cluster, k: usize, secs: (f64, f64)) -> Result<(f64, Stats), String> {
    let leader = cl.wait_leader(Duration::from_secs(30))?;
    let eps = cl.endpoints();
    let spawn = |n: usize| -> Result<Child, String> {
        let targs = tput_args(n, secs);
        match sys {
            Sys::Zk => {
                let mut cmd = Command::new(crate::zk::python());
                cmd.arg(zk_script())
                    .args(["tput", "--hosts", &eps])
                    .args(&targs);
                Child::spawn("zk tput", cmd, None)
            }
            _ => {
                let (worker, flag) = if sys == Sys::Tenure {
                    ("tenure-tput", "--addr")
                } else {
                    ("etcd-tput", "--endpoint")
                };
                let mut args = vec![worker.to_string(), flag.to_string(), eps.clone()];
                args.extend(targs);
                Child::worker(worker, &args)
            }
        }
    };
    let t = throughput(&spawn, k, secs, cl.pid(leader).unwrap_or(0))?;
    Ok((t.ops, t.stats))
}

/// Keep-alives with `n` sessions (leases) on the group, generator pinned to CPU 1 and the
/// leader to CPU 0 as in the single-server phase's pinned condition: a round's rate.
fn keepalives(sys: Sys, cl: &Cluster, n: usize, rounds: usize, q: Scale) -> Result<Ka, String> {
    let leader = cl.wait_leader(Duration::from_secs(30))?;
    let follower = (leader + 1) % 3;
    let (lp, fp) = (
        cl.pid(leader).ok_or("no leader pid")?,
        cl.pid(follower).ok_or("no follower pid")?,
    );
    let (worker, flag) = if sys == Sys::Tenure {
        ("tenure-ka", "--addr")
    } else {
        ("etcd-ka", "--endpoint")
    };
    let (l0, f0) = (proc_rss(lp).ok_or("no RSS")?, proc_rss(fp).ok_or("no RSS")?);
    let args: Vec<String> = [
        worker,
        flag,
        &cl.endpoint(leader),
        "--sessions",
        &n.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let gen = Child::worker(worker, &args)?;
    gen.line_starting("opened", Duration::from_secs(600))?;
    std::thread::sleep(Duration::from_secs(2));
    let (l1, f1) = (proc_rss(lp).ok_or("no RSS")?, proc_rss(fp).ok_or("no RSS")?);
    let per = |a: u64, b: u64| (b as f64 - a as f64) / n as f64;
    let (warm, win) = q.pick((1000, 3000), (500, 1500), (200, 400));
    let mut live = crate::keepalive::Live::new(lp, gen);
    let mut rates = vec![];
    for _ in 0..rounds {
        let pin = taskset_pid(lp, "0").and_then(|_| taskset_pid(live.gen.pid(), "1"));
        pin?;
        rates.push(crate::keepalive::round(&mut live, warm, win)?.rate);
    }
    let _ = taskset_pid(lp, "0-1");
    Ok(Ka {
        sessions: n,
        rates,
        per_session: (per(l0, l1), per(f0, f1)),
    })
}

/// Runs every phase on every system that starts, the systems taking turns.
pub fn run(ctx: &mut Ctx, a: &Args) -> GroupOut {
    let q = ctx.opts.quick;
    let tenure = ctx.opts.tenure.clone();
    let trials: usize = a
        .get_or("trials", q.pick("20", "5", "2"))
        .parse()
        .unwrap_or(20);
    let mut notes = vec![];
    let mut syss = vec![Sys::Tenure];
    if ctx.opts.etcd {
        syss.extend([Sys::Etcd, Sys::EtcdFast]);
    }
    match crate::zk::available() {
        Ok(()) if q != Scale::Smoke || a.has("zk") => syss.push(Sys::Zk),
        Ok(()) => notes.push("ZooKeeper: left out of the smoke run (give --zk)".into()),
        Err(e) => notes.push(format!("ZooKeeper left out: {e}")),
    }
    // `--systems tenure,etcd,etcd-fast,zk`: only these (to look at one closely).
    if a.has("systems") {
        let only = a.get_or("systems", "");
        let key = |s: Sys| match s {
            Sys::Tenure => "tenure",
            Sys::Etcd => "etcd",
            Sys::EtcdFast => "etcd-fast",
            Sys::Zk => "zk",
        };
        syss.retain(|&s| only.split(',').any(|w| w == key(s)));
    }
    let mut outs: Vec<SysOut> = syss
        .iter()
        .map(|&sys| SysOut {
            sys,
            start: Ok(()),
            lat: Err("not run".into()),
            tput: Err("not run".into()),
            fail: vec![],
            lost: vec![],
            ka: Err("not run".into()),
        })
        .collect();
    let mut clusters: Vec<Option<Cluster>> = vec![];
    for o in outs.iter_mut() {
        eprintln!("[group] starting {}", o.sys.name());
        let dir = ctx.dir(&format!("group-{:?}", o.sys).to_lowercase());
        match Cluster::start(o.sys, &tenure, &dir) {
            Ok(c) => clusters.push(Some(c)),
            Err(e) => {
                o.start = Err(e);
                clusters.push(None);
            }
        }
    }
    // Latency: rounds of a few seconds each, systems alternating.
    let (rounds, secs) = q.pick((3, 3.0), (2, 1.0), (1, 0.3));
    for r in 0..rounds {
        for (o, c) in outs.iter_mut().zip(&clusters) {
            let Some(c) = c else { continue };
            eprintln!(
                "[group] lock+release, round {}/{rounds}: {}",
                r + 1,
                o.sys.name()
            );
            let s = lat_samples(o.sys, c, secs);
            match (&mut o.lat, s) {
                (Ok(all), Ok(s)) => all.extend(s),
                (lat @ Err(_), Ok(s)) if r == 0 => *lat = Ok(s),
                (lat, Err(e)) => *lat = Err(e),
                _ => {}
            }
        }
    }
    // Throughput at 64 clients.
    let tsecs = q.pick((1.0, 5.0), (0.5, 2.0), (0.1, 0.3));
    for (o, c) in outs.iter_mut().zip(&clusters) {
        let Some(c) = c else { continue };
        eprintln!("[group] 64 clients: {}", o.sys.name());
        o.tput = tput(o.sys, c, 64, tsecs);
    }
    // Failover: the systems take turns, a few trials at a time; a system's loop client runs
    // only during its own trials (so that no other system's writes share the disk and the
    // cores with them), and stays up through them, so that anything lost shows.
    let per_turn = 5;
    let mut t = 0;
    while t < trials {
        let n = per_turn.min(trials - t);
        for (o, c) in outs.iter_mut().zip(clusters.iter_mut()) {
            let Some(c) = c.as_mut() else { continue };
            let mut w = match loop_client(o.sys, c, "failover") {
                Ok(w) => w,
                Err(e) => {
                    o.fail.push(Err(format!("loop client: {e}")));
                    continue;
                }
            };
            for k in 0..n {
                eprintln!(
                    "[group] leader kill -9, trial {}/{trials}: {}",
                    t + k + 1,
                    o.sys.name()
                );
                let r = failover_trial(c, &w, &mut o.lost);
                if let Err(e) = &r {
                    eprintln!("[group]   failed: {e}");
                }
                o.fail.push(r);
            }
            let _ = w.send("stop");
            let end = Instant::now() + Duration::from_secs(15);
            while let Ok(l) = w.line(end.saturating_duration_since(Instant::now())) {
                note_lost(&l, &mut o.lost);
                if l == "done" {
                    break;
                }
            }
            let _ = w.finish(Duration::from_secs(10));
        }
        t += n;
    }
    // Keep-alives with many sessions: tenure and etcd (defaults), fresh clusters so that
    // the memory measured is the sessions'.
    drop(clusters);
    let n = q.pick(100_000, 20_000, 400);
    for o in outs.iter_mut() {
        if !matches!(o.sys, Sys::Tenure | Sys::Etcd) || o.start.is_err() {
            continue;
        }
        eprintln!("[group] keep-alives, {n} sessions: {}", o.sys.name());
        let dir = ctx.dir(&format!("group-ka-{:?}", o.sys).to_lowercase());
        o.ka = Cluster::start(o.sys, &tenure, &dir)
            .and_then(|c| keepalives(o.sys, &c, n, q.pick(3, 2, 1), q));
    }
    GroupOut {
        systems: outs,
        trials,
        notes,
    }
}

fn med(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

fn fail_samples(o: &SysOut) -> Vec<u64> {
    let mut v: Vec<u64> = o
        .fail
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    v.sort_unstable();
    v
}

/// The report section (Markdown) and the targets met (label, figure, met).
pub fn report(g: &GroupOut, r: &mut String, targets: &mut Vec<(String, String, bool)>) {
    let get = |s: Sys| g.systems.iter().find(|o| o.sys == s);
    let _ = writeln!(r, "\n{SETUPS}");
    let _ = writeln!(r, "\n### Durable lock+release, three members\n");
    let _ = writeln!(
        r,
        "| system | p50 | p99 | samples | 64 clients: ops/s | 64 clients: p99 |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for o in &g.systems {
        let (lat, t) = match (&o.start, &o.lat) {
            (Err(e), _) => (
                format!("did not start: {} | — | —", crate::util::trunc(e)),
                None,
            ),
            (_, Err(e)) => (format!("failed: {} | — | —", crate::util::trunc(e)), None),
            (_, Ok(s)) => {
                let mut s = s.clone();
                let st = Stats::of(&mut s);
                (
                    format!("{} | {} | {}", fmt_ns(st.p50), fmt_ns(st.p99), st.n),
                    Some(st),
                )
            }
        };
        let _ = t;
        let tp = match &o.tput {
            Ok((ops, st)) => format!("{ops:.0} | {}", fmt_ns(st.p99)),
            Err(e) => format!("failed: {} | —", crate::util::trunc(e)),
        };
        let _ = writeln!(r, "| {} | {lat} | {tp} |", o.sys.name());
    }
    let p50 = |s: Sys| -> Option<u64> {
        let mut v = get(s)?.lat.as_ref().ok()?.clone();
        Some(Stats::of(&mut v).p50)
    };
    if let (Some(t), Some(e)) = (p50(Sys::Tenure), p50(Sys::Etcd)) {
        targets.push((
            "durable lock+release p50, three members ≤ ½ etcd's".into(),
            format!("{} vs etcd {}", fmt_ns(t), fmt_ns(e)),
            t * 2 <= e,
        ));
    }
    let _ = writeln!(
        r,
        "\n### Leader `kill -9` → the next lock of a client locking in a loop\n\n\
         {} trials per system, taking turns; the pause is from the kill to the end of the first \
         lock+release begun after it. Lost: what the loop client was told it lost over all \
         trials (session or lease, lock, or, for tenure, a change of the master of an election \
         it had won).\n",
        g.trials
    );
    let _ = writeln!(
        r,
        "| system | trials ok | min | p50 | p90 | p99 | max | lost |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
    for o in &g.systems {
        let v = fail_samples(o);
        let pc = |q: f64| {
            if v.is_empty() {
                "—".to_string()
            } else {
                fmt_ns(crate::util::percentile(&v, q))
            }
        };
        let lost = if o.lost.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", o.lost.len(), o.lost.join(", "))
        };
        let _ = writeln!(
            r,
            "| {} | {}/{} | {} | {} | {} | {} | {} | {lost} |",
            o.sys.name(),
            v.len(),
            o.fail.len(),
            pc(0.0),
            pc(50.0),
            pc(90.0),
            pc(99.0),
            pc(100.0),
        );
    }
    for o in &g.systems {
        for e in o.fail.iter().filter_map(|r| r.as_ref().err()) {
            let _ = writeln!(
                r,
                "\n- {} trial failed: {}",
                o.sys.name(),
                crate::util::trunc(e)
            );
        }
    }
    if let Some(t) = get(Sys::Tenure) {
        let v = fail_samples(t);
        let p99 = (!v.is_empty()).then(|| crate::util::percentile(&v, 99.0));
        let others_p99: Vec<u64> = g
            .systems
            .iter()
            .filter(|o| o.sys != Sys::Tenure)
            .filter_map(|o| {
                let v = fail_samples(o);
                (!v.is_empty()).then(|| crate::util::percentile(&v, 99.0))
            })
            .collect();
        let met = p99.is_some_and(|p| {
            v.len() == t.fail.len() && p <= 200_000_000 && others_p99.iter().all(|o| p < *o)
        });
        targets.push((
            format!(
                "leader kill → next lock p99 ≤ 200 ms and below the others ({} trials)",
                v.len()
            ),
            p99.map_or("failed".into(), fmt_ns),
            met,
        ));
        targets.push((
            "sessions or locks lost in a leader failover: 0".into(),
            t.lost.len().to_string(),
            t.lost.is_empty() && !v.is_empty(),
        ));
    }
    let _ = writeln!(
        r,
        "\n![leader kill -9 → next lock, CDF](tests/bench/plots/group-failover-cdf.svg)\n"
    );
    let _ = writeln!(r, "\n### Keep-alives with many sessions on the group\n");
    let _ = writeln!(
        r,
        "| system | sessions | keep-alives/s (median of rounds) | memory per session, leader | follower |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|");
    for o in &g.systems {
        match &o.ka {
            Ok(k) => {
                let _ = writeln!(
                    r,
                    "| {} | {} | {:.0} | {:.0} B | {:.0} B |",
                    o.sys.name(),
                    k.sessions,
                    med(&k.rates),
                    k.per_session.0,
                    k.per_session.1
                );
            }
            Err(e) if e != "not run" => {
                let _ = writeln!(
                    r,
                    "| {} | — | failed: {} | — | — |",
                    o.sys.name(),
                    crate::util::trunc(e)
                );
            }
            Err(_) => {}
        }
    }
    let ka = |s: Sys| {
        get(s)
            .and_then(|o| o.ka.as_ref().ok())
            .map(|k| med(&k.rates))
    };
    if let (Some(t), Some(e)) = (ka(Sys::Tenure), ka(Sys::Etcd)) {
        targets.push((
            "keep-alives/s with many sessions on a group ≥ 3 × etcd's".into(),
            format!("{t:.0} vs etcd {e:.0} ({:.1}×)", t / e),
            t >= 3.0 * e,
        ));
    }
    for n in &g.notes {
        let _ = writeln!(r, "\n- {n}");
    }
}

/// The failover CDF plot.
pub fn plot(g: &GroupOut) -> String {
    let series: Vec<(String, Vec<u64>)> = g
        .systems
        .iter()
        .map(|o| (o.sys.name().to_string(), fail_samples(o)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let refs: Vec<(String, &[u64])> = series
        .iter()
        .map(|(n, v)| (n.clone(), v.as_slice()))
        .collect();
    crate::plots::cdf(
        "leader kill -9 → next successful lock (three members)",
        &refs,
    )
}

/// The smoke checks: every system that started measured every phase, with no trial failed
/// and nothing lost by tenure's client.
pub fn checks(g: &GroupOut) -> Vec<(String, Result<(), String>)> {
    let mut out = vec![];
    for o in &g.systems {
        let n = o.sys.name();
        out.push((format!("group {n}: started"), o.start.clone()));
        if o.start.is_err() {
            continue;
        }
        out.push((
            format!("group {n}: lock+release"),
            o.lat.as_ref().map(|_| ()).map_err(Clone::clone),
        ));
        out.push((
            format!("group {n}: 64 clients"),
            o.tput.as_ref().map(|_| ()).map_err(Clone::clone),
        ));
        let bad: Vec<&String> = o.fail.iter().filter_map(|r| r.as_ref().err()).collect();
        out.push((
            format!("group {n}: leader kill trials"),
            if o.fail.is_empty() {
                Err("no trial".into())
            } else if let Some(e) = bad.first() {
                Err((*e).clone())
            } else {
                Ok(())
            },
        ));
        if o.sys == Sys::Tenure {
            out.push((
                "group tenure: nothing lost in failovers".into(),
                if o.lost.is_empty() {
                    Ok(())
                } else {
                    Err(o.lost.join(", "))
                },
            ));
        }
        if matches!(o.sys, Sys::Tenure | Sys::Etcd) {
            out.push((
                format!("group {n}: keep-alives"),
                o.ka.as_ref().map(|_| ()).map_err(Clone::clone),
            ));
        }
    }
    out
}
