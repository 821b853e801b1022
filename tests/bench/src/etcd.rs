//! The etcd side of the comparison: starting a single-member etcd on loopback with a data
//! directory of its own, and the worker subcommands that measure its lock API (the v3lock
//! service: `Lock(name, lease)` returns a key that exists while the lock is held, `Unlock(key)`
//! deletes it) through the `etcd-client` crate. A lock is tied to a lease, etcd's equivalent
//! of a session; each client grants one lease of [`LEASE_TTL_S`] and keeps it alive every
//! third of its TTL, like tenure's client heartbeats every TTL/3.

use crate::child::Child;
use crate::util::{free_port, mono_ns, print_samples, say, Args};
use crate::workers::{await_start, HoPlan};
use etcd_client::{Client, ConnectOptions, LockOptions};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lease TTL of the etcd clients, the same as tenure's session TTL in these phases.
pub const LEASE_TTL_S: i64 = crate::workers::CLIENT_TTL.as_secs() as i64;

/// A running etcd.
pub struct Etcd {
    /// The process, killed when this is dropped.
    child: Child,
    /// Client endpoint (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    /// Spawn to first successful request.
    pub start_to_first: Duration,
    /// `etcd --version`, first line.
    pub version: String,
}

/// Starts etcd on loopback ports with data in `dir` and waits (at most 30 s) until it answers.
pub fn start(dir: &Path) -> Result<Etcd, String> {
    let version = Command::new("etcd")
        .arg("--version")
        .output()
        .map_err(|e| format!("etcd is not installed ({e})"))?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let (cp, pp) = (free_port().map_err(|e| e.to_string())?, {
        free_port().map_err(|e| e.to_string())?
    });
    let client_url = format!("http://127.0.0.1:{cp}");
    let peer_url = format!("http://127.0.0.1:{pp}");
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("etcd");
    cmd.arg("--name")
        .arg("bench")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen-client-urls")
        .arg(&client_url)
        .arg("--advertise-client-urls")
        .arg(&client_url)
        .arg("--listen-peer-urls")
        .arg(&peer_url)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer_url)
        .arg("--initial-cluster")
        .arg(format!("bench={peer_url}"))
        .arg("--initial-cluster-state")
        .arg("new")
        .arg("--logger")
        .arg("zap")
        .arg("--log-level")
        .arg("warn");
    let t0 = Instant::now();
    let child = Child::spawn("etcd", cmd, Some(&dir.join("etcd.log")))?;
    let rt = runtime(1);
    let ep = client_url.clone();
    let ready = rt.block_on(async move {
        let end = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < end {
            let opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(2));
            match Client::connect([ep.as_str()], Some(opts)).await {
                Ok(mut c) => match c.get("bench/ready", None).await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(format!("etcd did not answer within 30 s: {last}"))
    });
    ready?;
    Ok(Etcd {
        child,
        endpoint: client_url,
        start_to_first: t0.elapsed(),
        version,
    })
}

impl Etcd {
    /// The etcd process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

pub(crate) fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(crate) async fn connect(ep: &str) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(30));
    // One endpoint, or a cluster's, comma-separated.
    match Client::connect(ep.split(',').collect::<Vec<_>>(), Some(opts)).await {
        Ok(c) => c,
        Err(e) => crate::die(&format!("etcd connect {ep}: {e}")),
    }
}

/// Grants a lease and keeps it alive from a background task (every TTL/3). The task ends
/// with the worker's runtime.
async fn lease(c: &mut Client) -> i64 {
    lease_ttl(c, LEASE_TTL_S).await
}

/// Grants a lease of `ttl_s` seconds and keeps it alive every TTL/3 from a background task.
pub(crate) async fn lease_ttl(c: &mut Client, ttl_s: i64) -> i64 {
    let id = match c.lease_grant(ttl_s, None).await {
        Ok(r) => r.id(),
        Err(e) => crate::die(&format!("etcd lease grant: {e}")),
    };
    let mut c2 = c.clone();
    tokio::spawn(async move {
        // Keep the lease alive every TTL/3; if the keep-alive stream breaks, open a new one.
        let every = Duration::from_millis(ttl_s as u64 * 1000 / 3);
        loop {
            if let Ok((mut keeper, mut stream)) = c2.lease_keep_alive(id).await {
                loop {
                    if keeper.keep_alive().await.is_err() {
                        break;
                    }
                    if !matches!(stream.message().await, Ok(Some(_))) {
                        break;
                    }
                    tokio::time::sleep(every).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    id
}

/// One lock+release; returns the time it took in ns.
async fn lock_release(c: &mut Client, name: &str, lease: i64) -> u64 {
    let t0 = mono_ns();
    let key = match c
        .lock(name, Some(LockOptions::new().with_lease(lease)))
        .await
    {
        Ok(r) => r.key().to_vec(),
        Err(e) => crate::die(&format!("etcd lock: {e}")),
    };
    if let Err(e) = c.unlock(key).await {
        crate::die(&format!("etcd unlock: {e}"));
    }
    mono_ns() - t0
}

/// Uncontended lock+release against etcd; same arguments and output as `tenure-lat`.
pub fn lat_worker(a: &Args) {
    let ep = a.str("endpoint");
    let (warm, iters, secs): (usize, usize, f64) = (a.num("warmup"), a.num("iters"), a.num("secs"));
    runtime(1).block_on(async move {
        let mut c = connect(&ep).await;
        let l = lease(&mut c).await;
        let name = format!("lat/{}", std::process::id());
        let end = mono_ns() + (secs * 1e9) as u64;
        let mut out = Vec::with_capacity(iters);
        for i in 0..warm + iters {
            let d = lock_release(&mut c, &name, l).await;
            if i >= warm {
                out.push(d);
                if mono_ns() > end {
                    break;
                }
            }
        }
        print_samples("samples", &out);
    });
}

/// Waits until `CLOCK_MONOTONIC` reaches `t`: a timer sleep to 1.2 ms before (tokio's timers
/// have a 1 ms granularity), then yielding in a loop, so the action starts on time.
async fn sleep_until_ns(t: u64) {
    let now = mono_ns();
    if t > now + 1_200_000 {
        tokio::time::sleep(Duration::from_nanos(t - now - 1_200_000)).await;
    }
    while mono_ns() < t {
        tokio::task::yield_now().await;
    }
}

/// One side of the hand-over measurement against etcd; same plan and output as `tenure-ho`.
pub fn ho_worker(a: &Args) {
    let holder = a.str("role") == "holder";
    let prefix = a.str("prefix");
    let ep = a.str("endpoint");
    let out = Arc::new(Mutex::new(Vec::new()));
    let out2 = out.clone();
    let rt = runtime(1);
    let (c, l) = rt.block_on(async move {
        let mut c = connect(&ep).await;
        let l = lease(&mut c).await;
        (c, l)
    });
    let plan = HoPlan::from_args(a, await_start());
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..plan.count {
            let (mut c, out, name) = (c.clone(), out2.clone(), format!("{prefix}/{i}"));
            tasks.push(tokio::spawn(async move {
                let opts = Some(LockOptions::new().with_lease(l));
                let rec = if holder {
                    sleep_until_ns(plan.lock_at(i)).await;
                    let t0 = mono_ns();
                    match c.lock(name.as_str(), opts).await {
                        Ok(r) => {
                            let t1 = mono_ns();
                            sleep_until_ns(plan.release_at(i)).await;
                            let t2 = mono_ns();
                            match c.unlock(r.key().to_vec()).await {
                                Ok(_) => format!("rec {i} {t0} {t1} {t2}"),
                                Err(e) => format!("rec {i} fail unlock: {e}"),
                            }
                        }
                        Err(e) => format!("rec {i} fail lock: {e}"),
                    }
                } else {
                    sleep_until_ns(plan.wait_at(i)).await;
                    let t0 = mono_ns();
                    let limit = Duration::from_nanos(plan.delay) + Duration::from_secs(5);
                    match tokio::time::timeout(limit, c.lock(name.as_str(), opts)).await {
                        Ok(Ok(r)) => {
                            let t1 = mono_ns();
                            let _ = c.unlock(r.key().to_vec()).await;
                            format!("rec {i} {t0} {t1}")
                        }
                        Ok(Err(e)) => format!("rec {i} fail lock: {e}"),
                        Err(_) => format!("rec {i} fail lock: timed out"),
                    }
                };
                out.lock().unwrap().push(rec);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    for l in out.lock().unwrap().iter() {
        say(l);
    }
    say("done");
}

/// Throughput against etcd with `--clients` clients, each a task with its own connection and
/// its own lease, looping lock+release on a name of its own; same output as `tenure-tput`.
pub fn tput_worker(a: &Args) {
    let ep = a.str("endpoint");
    let k: usize = a.num("clients");
    let (warm, run): (u64, u64) = (a.num("warm-ns"), a.num("run-ns"));
    // `--name N`: every client uses lock N (one contended name) instead of one of its own.
    let shared = a.has("name").then(|| a.str("name"));
    let rt = runtime(2);
    let clients = rt.block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..k {
            let mut c = connect(&ep).await;
            let l = lease(&mut c).await;
            clients.push((c, l));
        }
        clients
    });
    let start = await_start();
    let (from, to) = (start + warm, start + warm + run);
    let all = rt.block_on(async move {
        let mut tasks = Vec::new();
        for (j, (mut c, l)) in clients.into_iter().enumerate() {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let name = shared.unwrap_or_else(|| format!("tp/{}/{j}", std::process::id()));
                let mut lat = Vec::new();
                sleep_until_ns(start).await;
                loop {
                    let t0 = mono_ns();
                    if t0 >= to {
                        break;
                    }
                    let d = lock_release(&mut c, &name, l).await;
                    if t0 >= from && t0 + d <= to {
                        lat.push(d);
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    });
    say(&format!("count {}", all.len()));
    print_samples("samples", &all);
}
