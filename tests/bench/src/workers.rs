//! Worker subcommands run by the orchestrator in separate processes (`tenure-bench worker
//! NAME --key value ...`). Each prints its results on stdout as lines and exits; every wait in
//! a worker is bounded, so a worker never outlives its phase by much even on its own.

use crate::raw::{self, RawConn};
use crate::util::{mono_ns, print_samples, say, sleep_until_ns, Args, Stats};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenure::proto::{self, ErrorReply, FrameReader, Reply, Request, ServerMsg};
use tenure::{Client, ClientConfig, Durability, Server, ServerConfig};

/// Session TTL used by the library clients of the latency, hand-over and throughput phases
/// (tenure's default TTL; the etcd side uses leases of the same length).
pub const CLIENT_TTL: Duration = Duration::from_secs(10);

/// Runs the worker named `name`.
pub fn run(name: &str, a: &Args) {
    match name {
        "echo" => echo(a),
        "serve" => serve(a),
        "tenure-lat" => tenure_lat(a),
        "raw-lat" => raw_lat(a),
        "tenure-ho" => tenure_ho(a),
        "tenure-tput" => tenure_tput(a),
        "sessions" => sessions(a),
        "expiry" => expiry(a),
        "etcd-lat" => crate::etcd::lat_worker(a),
        "etcd-ho" => crate::etcd::ho_worker(a),
        "etcd-tput" => crate::etcd::tput_worker(a),
        "tenure-kill-holder" => crate::failover::tenure_worker(a, true),
        "tenure-kill-waiter" => crate::failover::tenure_worker(a, false),
        "etcd-kill-holder" => crate::failover::etcd_worker(a, true),
        "etcd-kill-waiter" => crate::failover::etcd_worker(a, false),
        "tenure-ka" => crate::keepalive::tenure_worker(a),
        "etcd-ka" => crate::keepalive::etcd_worker(a),
        "tenure-cand" => crate::elect::tenure_worker(a),
        "group-loop" => crate::group::loop_worker(a),
        "etcd-cand" => crate::elect::etcd_worker(a),
        "retry-clients" => crate::retry::clients_worker(a),
        other => crate::die(&format!("unknown worker {other:?}")),
    }
}

/// Size of the ping-pong message of the RTT measurement.
pub const PING_LEN: usize = 16;

/// Echoes fixed-size messages on one loopback connection until it closes (on CPU `--cpu`
/// when given).
fn echo(a: &Args) {
    if a.has("cpu") && !crate::util::pin_thread(Some(a.num("cpu"))) {
        crate::die("cannot pin to the CPU");
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| crate::die(&e.to_string()));
    say(&format!("{}", l.local_addr().unwrap()));
    let (mut s, _) = l.accept().unwrap_or_else(|e| crate::die(&e.to_string()));
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let mut b = [0u8; PING_LEN];
    while s.read_exact(&mut b).is_ok() {
        if s.write_all(&b).is_err() {
            break;
        }
    }
}

/// An embedded [`tenure::Server`] in this process, used when `tenure serve` is not available.
/// Prints the bound address as its first line and serves until stdin closes.
fn serve(a: &Args) {
    let durability: Durability = a
        .str("durability")
        .parse()
        .unwrap_or_else(|e: String| crate::die(&e));
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: a.str("data").into(),
        durability,
        ..Default::default()
    })
    .unwrap_or_else(|e| crate::die(&e.to_string()));
    say(&server.local_addr().to_string());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let _ = server.stop();
}

/// Says `ready`, then waits for the orchestrator's `start NS` line on stdin and returns NS
/// (a `CLOCK_MONOTONIC` instant shared by every worker of the phase). Exits when stdin closes.
pub fn await_start() -> u64 {
    say("ready");
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        crate::die("no start time");
    }
    match line.trim().strip_prefix("start ").map(str::parse::<u64>) {
        Some(Ok(t)) => t,
        _ => crate::die(&format!("expected 'start NS', got {line:?}")),
    }
}

/// A client of `addr`: one endpoint, or a group's, comma-separated.
fn client(addr: &str) -> Client {
    let eps: Vec<String> = addr.split(',').map(str::to_string).collect();
    Client::connect(ClientConfig::new(eps).session_ttl(CLIENT_TTL))
        .unwrap_or_else(|e| crate::die(&format!("connect {addr}: {e}")))
}

/// Uncontended lock+release with `tenure::Client`: `--warmup` untimed rounds, then up to
/// `--iters` timed rounds or `--secs` seconds. Prints `samples` (ns per lock+release).
fn tenure_lat(a: &Args) {
    let c = client(&a.str("addr"));
    let name = format!("lat/{}", std::process::id());
    let (warm, iters, secs): (usize, usize, f64) = (a.num("warmup"), a.num("iters"), a.num("secs"));
    let mut out = Vec::with_capacity(iters);
    let end = mono_ns() + (secs * 1e9) as u64;
    for i in 0..warm + iters {
        let t0 = mono_ns();
        let l = c
            .lock(&name, Duration::from_secs(5))
            .unwrap_or_else(|e| crate::die(&format!("lock: {e}")));
        l.release()
            .unwrap_or_else(|e| crate::die(&format!("release: {e}")));
        let t1 = mono_ns();
        if i >= warm {
            out.push(t1 - t0);
            if t1 > end {
                break;
            }
        }
    }
    print_samples("samples", &out);
    c.close();
}

/// Uncontended lock+release over the raw protocol (one session, requests written directly):
/// the server's part of the latency without the client library's threads. Same output as
/// `tenure-lat`.
fn raw_lat(a: &Args) {
    let mut c = RawConn::connect(&a.str("addr")).unwrap_or_else(|e| crate::die(&e));
    let t = Duration::from_secs(5);
    let s = c
        .open(CLIENT_TTL.as_millis() as u64, t)
        .unwrap_or_else(|e| crate::die(&e));
    let name = format!("raw/{}", std::process::id());
    let (warm, iters, secs): (usize, usize, f64) = (a.num("warmup"), a.num("iters"), a.num("secs"));
    let mut out = Vec::with_capacity(iters);
    let end = mono_ns() + (secs * 1e9) as u64;
    for i in 0..warm + iters {
        let t0 = mono_ns();
        let body = Request::Acquire {
            name: name.clone(),
            wait: false,
        };
        let g = c.call(s, body, t).unwrap_or_else(|e| crate::die(&e));
        let token = match g.result {
            Ok(Reply::Granted { token, .. }) => token,
            other => crate::die(&format!("acquire: {other:?}")),
        };
        let body = Request::Release {
            name: name.clone(),
            token,
        };
        let g = c.call(s, body, t).unwrap_or_else(|e| crate::die(&e));
        if g.result.is_err() {
            crate::die(&format!("release: {:?}", g.result));
        }
        let t1 = mono_ns();
        if i >= warm {
            out.push(t1 - t0);
            if t1 > end {
                break;
            }
        }
    }
    print_samples("samples", &out);
}

/// The schedule of the hand-over measurement, shared by holder and waiter (all in ns of
/// `CLOCK_MONOTONIC`): iteration `i` uses lock `PREFIX/i`; the holder locks it at
/// `start + i*period`, the waiter asks for it `margin` later, and the holder releases it
/// `delay` after that.
#[derive(Debug, Clone, Copy)]
pub struct HoPlan {
    /// First iteration's holder lock time.
    pub start: u64,
    /// Gap between iterations.
    pub period: u64,
    /// Holder's lock to waiter's lock call.
    pub margin: u64,
    /// Waiter's lock call to holder's release call (how long the waiter is queued).
    pub delay: u64,
    /// Iterations.
    pub count: usize,
}

impl HoPlan {
    /// Reads the plan from worker arguments.
    pub fn from_args(a: &Args, start: u64) -> HoPlan {
        HoPlan {
            start,
            period: a.num("period-ns"),
            margin: a.num("margin-ns"),
            delay: a.num("delay-ns"),
            count: a.num("count"),
        }
    }

    /// Worker arguments for this plan (all but the start, which comes with `start`).
    pub fn to_args(self) -> Vec<String> {
        [
            ("--period-ns", self.period.to_string()),
            ("--margin-ns", self.margin.to_string()),
            ("--delay-ns", self.delay.to_string()),
            ("--count", self.count.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }

    /// Threads (or tasks) needed so that each one's iterations never overlap.
    pub fn lanes(&self) -> usize {
        ((self.margin + self.delay).div_ceil(self.period) as usize + 2).min(self.count.max(1))
    }

    /// When the holder locks iteration `i`.
    pub fn lock_at(&self, i: usize) -> u64 {
        self.start + i as u64 * self.period
    }

    /// When the waiter asks for iteration `i`.
    pub fn wait_at(&self, i: usize) -> u64 {
        self.lock_at(i) + self.margin
    }

    /// When the holder releases iteration `i`.
    pub fn release_at(&self, i: usize) -> u64 {
        self.wait_at(i) + self.delay
    }
}

/// One side of the hand-over measurement with `tenure::Client` (`--role holder|waiter`). The
/// holder prints `rec i lock_call granted release_call`, the waiter `rec i lock_call granted`
/// (ns), or `rec i fail why`; then `done`.
fn tenure_ho(a: &Args) {
    let holder = a.str("role") == "holder";
    let prefix = a.str("prefix");
    let c = client(&a.str("addr"));
    let plan = HoPlan::from_args(a, await_start());
    let lanes = plan.lanes();
    let out = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|sc| {
        for k in 0..lanes {
            let (c, out, prefix) = (c.clone(), out.clone(), prefix.clone());
            sc.spawn(move || {
                for i in (k..plan.count).step_by(lanes) {
                    let name = format!("{prefix}/{i}");
                    let rec = if holder {
                        sleep_until_ns(plan.lock_at(i));
                        let t0 = mono_ns();
                        match c.lock(&name, Duration::from_secs(5)) {
                            Ok(l) => {
                                let t1 = mono_ns();
                                sleep_until_ns(plan.release_at(i));
                                let t2 = mono_ns();
                                match l.release() {
                                    Ok(()) => format!("rec {i} {t0} {t1} {t2}"),
                                    Err(e) => format!("rec {i} fail release: {e}"),
                                }
                            }
                            Err(e) => format!("rec {i} fail lock: {e}"),
                        }
                    } else {
                        sleep_until_ns(plan.wait_at(i));
                        let t0 = mono_ns();
                        let wait = Duration::from_nanos(plan.delay) + Duration::from_secs(5);
                        match c.lock(&name, wait) {
                            Ok(l) => {
                                let t1 = mono_ns();
                                let _ = l.release();
                                format!("rec {i} {t0} {t1}")
                            }
                            Err(e) => format!("rec {i} fail lock: {e}"),
                        }
                    };
                    out.lock().unwrap().push(rec);
                }
            });
        }
    });
    for l in out.lock().unwrap().iter() {
        say(l);
    }
    say("done");
    c.close();
}

/// Throughput with `--clients` library clients (threads, one `tenure::Client` each, so one
/// session and one connection each), each looping lock+release on a name of its own (or, with
/// `--name N`, all on lock N). All
/// connect first, then run from the start time the orchestrator sends for `--warm-ns` (not
/// counted) plus `--run-ns`.
/// Prints `count N` (operations completed in the counted window) and `samples` (their
/// latencies).
fn tenure_tput(a: &Args) {
    let addr = a.str("addr");
    let k: usize = a.num("clients");
    let (warm, run): (u64, u64) = (a.num("warm-ns"), a.num("run-ns"));
    // `--name N`: every client uses lock N (one contended name) instead of one of its own.
    let shared = a.has("name").then(|| a.str("name"));
    let clients: Vec<Client> = (0..k).map(|_| client(&addr)).collect();
    let start = await_start();
    let (from, to) = (start + warm, start + warm + run);
    let results: Vec<Vec<u64>> = std::thread::scope(|sc| {
        let hs: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let shared = shared.clone();
                sc.spawn(move || {
                    let name = shared.unwrap_or_else(|| format!("tp/{}/{j}", std::process::id()));
                    let mut lat = Vec::new();
                    sleep_until_ns(start);
                    loop {
                        let t0 = mono_ns();
                        if t0 >= to {
                            break;
                        }
                        let l = c
                            .lock(&name, Duration::from_secs(5))
                            .unwrap_or_else(|e| crate::die(&format!("lock: {e}")));
                        l.release()
                            .unwrap_or_else(|e| crate::die(&format!("release: {e}")));
                        let t1 = mono_ns();
                        if t0 >= from && t1 <= to {
                            lat.push(t1 - t0);
                        }
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<u64> = results.into_iter().flatten().collect();
    say(&format!("count {}", all.len()));
    print_samples("samples", &all);
    for c in clients {
        c.close();
    }
}

#[derive(Default)]
struct SessCounters {
    opened: AtomicU64,
    alive: AtomicU64,
    unknown: AtomicU64,
    other: AtomicU64,
}

/// Load generator for the sessions phase: `--conns` raw connections, each carrying
/// `--per-conn` sessions of TTL `--ttl-ms`, every session heartbeating once per
/// `--interval-ms`, the heartbeats of a connection spread evenly over the interval. Prints
/// `opened N NS` when all sessions are open, `window-start` after `--warm-s` seconds of
/// heartbeats, `window-end` after `--window-s` more, then `result k=v ...` with the reply
/// counts (over the whole run, warm-up included), heartbeat reply latency percentiles over the
/// window, the generator's own CPU and its largest scheduling lag.
fn sessions(a: &Args) {
    let addr = a.str("addr");
    let (nc, per): (usize, usize) = (a.num("conns"), a.num("per-conn"));
    let (ttl_ms, interval_ms): (u64, u64) = (a.num("ttl-ms"), a.num("interval-ms"));
    let (warm_s, window_s): (f64, f64) = (a.num("warm-s"), a.num("window-s"));
    let counters = Arc::new(SessCounters::default());
    let recording = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    let mut ids: Vec<Arc<Mutex<Vec<u64>>>> = Vec::new();
    let mut lats: Vec<Arc<Mutex<Vec<u32>>>> = Vec::new();
    for _ in 0..nc {
        let s = raw::connect(&addr, Duration::from_secs(5)).unwrap_or_else(|e| crate::die(&e));
        let mut rs = s.try_clone().unwrap();
        let my_ids = Arc::new(Mutex::new(Vec::with_capacity(per)));
        let my_lat = Arc::new(Mutex::new(Vec::new()));
        let (cnt, rec, idv, lv) = (
            counters.clone(),
            recording.clone(),
            my_ids.clone(),
            my_lat.clone(),
        );
        std::thread::Builder::new()
            .name("sess-reader".into())
            .stack_size(512 * 1024)
            .spawn(move || {
                let mut r = FrameReader::new();
                let mut buf = vec![0u8; 128 * 1024];
                loop {
                    let n = match rs.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let now = mono_ns();
                    r.extend(&buf[..n]);
                    while let Ok(Some(f)) = r.next_frame() {
                        let Ok(ServerMsg::Reply { req, result, .. }) =
                            proto::decode::<ServerMsg>(f)
                        else {
                            continue;
                        };
                        match result {
                            Ok(Reply::Opened { session, .. }) => {
                                idv.lock().unwrap().push(session);
                                cnt.opened.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Reply::Alive) => {
                                cnt.alive.fetch_add(1, Ordering::Relaxed);
                                if rec.load(Ordering::Relaxed) {
                                    let us = (now.saturating_sub(req) / 1000) as u32;
                                    lv.lock().unwrap().push(us);
                                }
                            }
                            Err(ErrorReply::UnknownSession) => {
                                cnt.unknown.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                cnt.other.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            })
            .expect("reader thread");
        streams.push(s);
        ids.push(my_ids);
        lats.push(my_lat);
    }
    // Open every session, pipelined per connection.
    let t_open = mono_ns();
    for s in streams.iter_mut() {
        let mut b = Vec::new();
        for r in 0..per {
            raw::push(&mut b, 0, r as u64 + 1, Request::Open { ttl_ms });
        }
        s.write_all(&b)
            .unwrap_or_else(|e| crate::die(&format!("open: {e}")));
    }
    let total = (nc * per) as u64;
    let open_deadline = mono_ns() + 60_000_000_000;
    while counters.opened.load(Ordering::Relaxed) < total {
        if mono_ns() > open_deadline {
            crate::die(&format!(
                "only {} of {total} sessions opened within 60 s",
                counters.opened.load(Ordering::Relaxed)
            ));
        }
        if counters.other.load(Ordering::Relaxed) > 0 {
            crate::die("the server refused to open a session");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    say(&format!("opened {total} {}", mono_ns() - t_open));
    let sess: Vec<Vec<u64>> = ids.iter().map(|m| m.lock().unwrap().clone()).collect();
    // Heartbeat schedule: session j of connection c at
    // base + cycle*interval + (j*nc + c) * interval / (per*nc).
    let interval = interval_ms * 1_000_000;
    let slot = interval as f64 / (per * nc) as f64;
    let base = mono_ns();
    let win_start = base + (warm_s * 1e9) as u64;
    let win_end = win_start + (window_s * 1e9) as u64;
    let mut next_idx = vec![0usize; nc];
    let mut cycle = vec![0u64; nc];
    let due = |c: usize, j: usize, cyc: u64| -> u64 {
        base + cyc * interval + ((j * nc + c) as f64 * slot) as u64
    };
    let mut max_lag = 0u64;
    let mut sent = 0u64;
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); nc];
    let (mut in_window, mut cpu0) = (false, None);
    let me = std::process::id();
    loop {
        let now = mono_ns();
        if !in_window && now >= win_start {
            in_window = true;
            recording.store(true, Ordering::Relaxed);
            cpu0 = crate::util::proc_cpu(me);
            say("window-start");
        }
        if now >= win_end {
            recording.store(false, Ordering::Relaxed);
            say("window-end");
            break;
        }
        for c in 0..nc {
            bufs[c].clear();
            loop {
                let j = next_idx[c];
                let d = due(c, j, cycle[c]);
                if d > now {
                    break;
                }
                max_lag = max_lag.max(now - d);
                // The request id carries the send time, for the reply latency.
                raw::push(&mut bufs[c], sess[c][j], mono_ns(), Request::Heartbeat);
                sent += 1;
                next_idx[c] += 1;
                if next_idx[c] == per {
                    next_idx[c] = 0;
                    cycle[c] += 1;
                }
            }
            if !bufs[c].is_empty() {
                streams[c]
                    .write_all(&bufs[c])
                    .unwrap_or_else(|e| crate::die(&format!("heartbeat write: {e}")));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let cpu1 = crate::util::proc_cpu(me);
    // Let the last replies arrive.
    std::thread::sleep(Duration::from_millis(200));
    let mut all: Vec<u64> = Vec::new();
    for l in &lats {
        all.extend(l.lock().unwrap().iter().map(|&u| u as u64 * 1000));
    }
    let st = Stats::of(&mut all);
    let gen_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b - a).as_nanos() as u64,
        _ => 0,
    };
    say(&format!(
        "result sent={sent} alive={} unknown={} other={} hb_n={} hb_p50={} hb_p99={} hb_max={} max_lag={max_lag} gen_cpu={gen_cpu}",
        counters.alive.load(Ordering::Relaxed),
        counters.unknown.load(Ordering::Relaxed),
        counters.other.load(Ordering::Relaxed),
        st.n,
        st.p50,
        st.p99,
        st.max,
    ));
}

/// Server-side expiry lateness: `--count` holders, one every `--period-ms`, each opens a
/// session of TTL `--ttl-ms`, takes a lock, gets a waiter (another session) queued behind it,
/// sends one last heartbeat and falls silent. The waiter's grant marks when the server freed
/// the lock. Prints `lateness v ...`: grant receipt − (last heartbeat send + TTL), in ns
/// (signed).
fn expiry(a: &Args) {
    let mut c = RawConn::connect(&a.str("addr")).unwrap_or_else(|e| crate::die(&e));
    let (ttl_ms, count, period_ms): (u64, usize, u64) =
        (a.num("ttl-ms"), a.num("count"), a.num("period-ms"));
    let t = Duration::from_secs(5);
    let start = mono_ns() + 50_000_000;
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        sleep_until_ns(start + i as u64 * period_ms * 1_000_000);
        let name = format!("exp/{}/{i}", std::process::id());
        let h = c.open(ttl_ms, t).unwrap_or_else(|e| crate::die(&e));
        let body = Request::Acquire {
            name: name.clone(),
            wait: false,
        };
        match c.call(h, body, t).unwrap_or_else(|e| crate::die(&e)).result {
            Ok(Reply::Granted { .. }) => {}
            other => crate::die(&format!("holder acquire: {other:?}")),
        }
        // The waiter's session outlives the phase (60 s) and is never heartbeated.
        let w = c.open(60_000, t).unwrap_or_else(|e| crate::die(&e));
        let wreq = c
            .send(w, Request::Acquire { name, wait: true })
            .unwrap_or_else(|e| crate::die(&e));
        let hb_sent = mono_ns();
        match c
            .call(h, Request::Heartbeat, t)
            .unwrap_or_else(|e| crate::die(&e))
            .result
        {
            Ok(Reply::Alive) => {}
            other => crate::die(&format!("holder heartbeat: {other:?}")),
        }
        pending.push((wreq, hb_sent));
    }
    let ttl_ns = ttl_ms * 1_000_000;
    let mut out = Vec::with_capacity(count);
    for (wreq, hb) in pending {
        let left = (hb + ttl_ns + 5_000_000_000).saturating_sub(mono_ns());
        let g = c
            .wait(wreq, Duration::from_nanos(left))
            .unwrap_or_else(|e| crate::die(&format!("waiter grant: {e}")));
        if !matches!(g.result, Ok(Reply::Granted { .. })) {
            crate::die(&format!("waiter: {:?}", g.result));
        }
        out.push(g.at as i64 - (hb + ttl_ns) as i64);
    }
    let s: Vec<String> = out.iter().map(|v| v.to_string()).collect();
    say(&format!("lateness {}", s.join(" ")));
}

/// Connects to `addr`, opens a session and returns when the reply arrives (used to time a
/// server's start to its first served request).
pub fn first_request(addr: &str, timeout: Duration) -> Result<(), String> {
    let mut c = RawConn::connect(addr)?;
    c.open(CLIENT_TTL.as_millis() as u64, timeout).map(|_| ())
}
