//! Session keep-alives per second with 10,000 and 100,000 sessions (tenure) or leases (etcd),
//! and the server's memory per session (issue 7).
//!
//! For each count N, one tenure server (durability fsync) and one etcd are started fresh; a
//! load-generator process opens N sessions on the first (over [`CONNS`] connections, raw
//! protocol) and another grants N leases on the second (etcd's LeaseGrant, over [`CONNS`]
//! gRPC channels). The servers' RSS before and after gives the memory per session. Then, in
//! alternating rounds (tenure, etcd, ×3; idle, then with server and generator pinned to
//! different CPUs), each generator keeps [`WINDOW`] keep-alives in flight on each connection,
//! cycling through its sessions, for a warm-up and a measured window: a reply frees the slot
//! for the next keep-alive (closed loop). Keep-alives per second = replies in the window ÷
//! its length. Both generators multiplex many sessions over few connections, the way etcd's
//! own Go client keeps all of a process's leases alive over one `LeaseKeepAlive` stream; the
//! etcd generator speaks that stream directly (through tonic), since the `etcd-client` crate's
//! keeper is tied to one lease.
//!
//! Heartbeats are not written to disk by either server (tenure gives every session a TTL of
//! grace after a restart; etcd checkpoints lease TTLs only occasionally), so durability does
//! not enter this comparison. Sessions and leases have a TTL of [`TTL_S`] so that none expire
//! while the other system is measured; a reply saying a session or lease is unknown is
//! counted and makes the round fail.

use crate::ab::median_f;
use crate::bench::Ctx;
use crate::child::{taskset_pid, Child};
use crate::util::{mono_ns, proc_cpu, proc_rss, say, Args, Scale};
use std::fmt::Write as _;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenure::proto::{self, ErrorReply, FrameReader, Reply, Request, ServerMsg};
use tenure::Durability;

/// Connections (tenure) or gRPC channels, each with one keep-alive stream (etcd).
pub const CONNS: usize = 4;
/// Keep-alives in flight per connection or stream.
pub const WINDOW: usize = 256;
/// TTL of every session and lease, seconds.
pub const TTL_S: u64 = 900;

/// Counters shared by a generator's connections.
#[derive(Default)]
struct Counts {
    /// Keep-alive replies that said the session is alive.
    alive: AtomicU64,
    /// Replies saying the session or lease is unknown (expired).
    unknown: AtomicU64,
    /// Anything else (errors).
    other: AtomicU64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "alive={} unknown={} other={}",
            self.alive.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed)
        )
    }
}

/// Reads the generator's commands from stdin: `run WARM_MS WINDOW_MS` starts the load, runs
/// it for the warm-up, prints `window-start`, runs it for the window, prints `window-end`,
/// stops it, waits (at most 10 s) for the replies in flight and prints `result n=REPLIES
/// ns=WINDOW_NS cpu=GENERATOR_CPU_NS alive=.. unknown=.. other=..`; end of input ends the
/// worker. `start` sets the load running and sends the first window; `drained` says whether
/// every keep-alive sent has been answered.
fn command_loop(
    counts: &Counts,
    running: &AtomicBool,
    start: &dyn Fn(),
    drained: &dyn Fn() -> bool,
) {
    let me = std::process::id();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() != Some(&"run") || w.len() != 3 {
            crate::die(&format!("unknown command {line:?}"));
        }
        let (warm, win): (u64, u64) = (w[1].parse().unwrap_or(500), w[2].parse().unwrap_or(1000));
        running.store(true, Ordering::SeqCst);
        start();
        std::thread::sleep(Duration::from_millis(warm));
        let (n0, c0, t0) = (
            counts.alive.load(Ordering::Relaxed),
            proc_cpu(me),
            mono_ns(),
        );
        say("window-start");
        std::thread::sleep(Duration::from_millis(win));
        let (n1, c1, t1) = (
            counts.alive.load(Ordering::Relaxed),
            proc_cpu(me),
            mono_ns(),
        );
        say("window-end");
        running.store(false, Ordering::SeqCst);
        let end = mono_ns() + 10_000_000_000;
        while !drained() && mono_ns() < end {
            std::thread::sleep(Duration::from_millis(2));
        }
        let cpu = match (c0, c1) {
            (Some(a), Some(b)) => (b - a).as_nanos() as u64,
            _ => 0,
        };
        say(&format!(
            "result n={} ns={} cpu={cpu} {}{}",
            n1 - n0,
            t1 - t0,
            counts.line(),
            if drained() { "" } else { " undrained=1" }
        ));
    }
}

/// Worker `tenure-ka`: `--addr`, `--sessions N`. Opens N sessions of TTL [`TTL_S`] over
/// [`CONNS`] connections, prints `opened N NS`, then obeys [`command_loop`].
pub fn tenure_worker(a: &Args) {
    let addr = a.str("addr");
    let n: usize = a.num("sessions");
    let counts = Arc::new(Counts::default());
    let running = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    // Per connection: its session ids, a writer, and sent/answered keep-alive counts.
    struct Conn {
        ids: std::sync::Mutex<Vec<u64>>,
        out: std::sync::Mutex<(TcpStream, usize)>,
        sent: AtomicU64,
        answered: AtomicU64,
    }
    impl Conn {
        /// Sends `k` keep-alives, continuing the round through this connection's sessions.
        fn send(&self, k: usize) {
            let ids = self.ids.lock().unwrap();
            if ids.is_empty() {
                return;
            }
            let mut out = self.out.lock().unwrap();
            let mut b = Vec::with_capacity(k * 32);
            // Request ids increase, as a client's do (the server does not need it for
            // keep-alives, which are answered without being remembered).
            let first = self.sent.fetch_add(k as u64, Ordering::SeqCst);
            for i in 0..k {
                out.1 = (out.1 + 1) % ids.len();
                crate::raw::push(&mut b, ids[out.1], first + i as u64 + 1, Request::Heartbeat);
            }
            if let Err(e) = out.0.write_all(&b) {
                crate::die(&format!("keep-alive write: {e}"));
            }
        }
    }
    let nconns: usize = a
        .get_or("conns", &CONNS.to_string())
        .parse()
        .unwrap_or(CONNS);
    let per = n.div_ceil(nconns);
    let mut conns: Vec<Arc<Conn>> = vec![];
    for c in 0..nconns {
        let mine = per.min(n.saturating_sub(c * per));
        let s =
            crate::raw::connect(&addr, Duration::from_secs(5)).unwrap_or_else(|e| crate::die(&e));
        let mut rs = s.try_clone().unwrap();
        let conn = Arc::new(Conn {
            ids: std::sync::Mutex::new(Vec::with_capacity(mine)),
            out: std::sync::Mutex::new((s, 0)),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        });
        let (cn, cnt, run, op) = (
            conn.clone(),
            counts.clone(),
            running.clone(),
            opened.clone(),
        );
        std::thread::Builder::new()
            .name("ka-reader".into())
            .spawn(move || {
                let mut r = FrameReader::new();
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let k = match rs.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => k,
                    };
                    r.extend(&buf[..k]);
                    let mut replies = 0;
                    while let Ok(Some(f)) = r.next_frame() {
                        let Ok(ServerMsg::Reply { result, .. }) = proto::decode::<ServerMsg>(f)
                        else {
                            continue;
                        };
                        match result {
                            Ok(Reply::Opened { session, .. }) => {
                                cn.ids.lock().unwrap().push(session);
                                op.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            Ok(Reply::Alive) => cnt.alive.fetch_add(1, Ordering::Relaxed),
                            Err(ErrorReply::UnknownSession) => {
                                cnt.unknown.fetch_add(1, Ordering::Relaxed)
                            }
                            _ => cnt.other.fetch_add(1, Ordering::Relaxed),
                        };
                        replies += 1;
                    }
                    if replies > 0 {
                        cn.answered.fetch_add(replies as u64, Ordering::SeqCst);
                        if run.load(Ordering::SeqCst) {
                            cn.send(replies);
                        }
                    }
                }
            })
            .expect("reader thread");
        // Open this connection's sessions, pipelined.
        let mut b = Vec::new();
        for r in 0..mine {
            crate::raw::push(
                &mut b,
                0,
                r as u64 + 1,
                Request::Open {
                    ttl_ms: TTL_S * 1000,
                },
            );
        }
        let t = conn.out.lock().unwrap().0.write_all(&b);
        t.unwrap_or_else(|e| crate::die(&format!("open: {e}")));
        conns.push(conn);
    }
    let t0 = mono_ns();
    let end = t0 + 120_000_000_000;
    while opened.load(Ordering::SeqCst) < n as u64 {
        if mono_ns() > end {
            crate::die(&format!(
                "only {} of {n} sessions opened within 120 s",
                opened.load(Ordering::SeqCst)
            ));
        }
        if counts.other.load(Ordering::Relaxed) > 0 {
            crate::die("the server refused to open a session");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    say(&format!("opened {n} {}", mono_ns() - t0));
    let start = || {
        for c in &conns {
            c.send(WINDOW);
        }
    };
    let drained = || {
        conns
            .iter()
            .all(|c| c.answered.load(Ordering::SeqCst) >= c.sent.load(Ordering::SeqCst))
    };
    command_loop(&counts, &running, &start, &drained);
}

/// etcd's `LeaseKeepAliveRequest` (etcdserverpb): `int64 ID = 1`.
#[derive(Clone, PartialEq, prost::Message)]
struct KaReq {
    #[prost(int64, tag = "1")]
    id: i64,
}

/// etcd's `LeaseKeepAliveResponse`: `header = 1` (skipped), `int64 ID = 2`, `int64 TTL = 3`
/// (TTL ≤ 0: the lease is not found).
#[derive(Clone, PartialEq, prost::Message)]
struct KaResp {
    #[prost(int64, tag = "2")]
    id: i64,
    #[prost(int64, tag = "3")]
    ttl: i64,
}

/// Worker `etcd-ka`: `--endpoint`, `--sessions N`. Grants N leases of TTL [`TTL_S`] (128
/// grants in flight), prints `opened N NS`, opens [`CONNS`] gRPC channels with one
/// `LeaseKeepAlive` stream each, then obeys [`command_loop`].
pub fn etcd_worker(a: &Args) {
    use tokio::sync::mpsc;
    let ep = a.str("endpoint");
    let n: usize = a.num("sessions");
    let rt = crate::etcd::runtime(2);
    let counts = Arc::new(Counts::default());
    let running = Arc::new(AtomicBool::new(false));
    // Grant the leases.
    let ids: Vec<i64> = rt.block_on(async {
        let c = crate::etcd::connect(&ep).await;
        let t0 = mono_ns();
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = vec![];
        for _ in 0..128 {
            let (mut c, next) = (c.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = vec![];
                while next.fetch_add(1, Ordering::SeqCst) < n as u64 {
                    match c.lease_grant(TTL_S as i64, None).await {
                        Ok(r) => mine.push(r.id()),
                        Err(e) => crate::die(&format!("etcd lease grant: {e}")),
                    }
                }
                mine
            }));
        }
        let mut all = vec![];
        for t in tasks {
            all.extend(t.await.expect("grant task"));
        }
        say(&format!("opened {n} {}", mono_ns() - t0));
        all
    });
    // One stream per channel; each task keeps WINDOW keep-alives in flight while running.
    struct Stream {
        tx: mpsc::Sender<KaReq>,
        ids: Vec<i64>,
        next: std::sync::Mutex<usize>,
        sent: AtomicU64,
        answered: AtomicU64,
    }
    impl Stream {
        fn send(&self, k: usize) {
            let mut i = self.next.lock().unwrap();
            for _ in 0..k {
                *i = (*i + 1) % self.ids.len();
                // The channel holds more than a window: never full while the loop is closed.
                if self.tx.try_send(KaReq { id: self.ids[*i] }).is_err() {
                    crate::die("keep-alive queue full or closed");
                }
            }
            self.sent.fetch_add(k as u64, Ordering::SeqCst);
        }
    }
    let per = ids.len().div_ceil(
        a.get_or("conns", &CONNS.to_string())
            .parse()
            .unwrap_or(CONNS),
    );
    let streams: Vec<Arc<Stream>> = rt.block_on(async {
        let mut v = vec![];
        for chunk in ids.chunks(per.max(1)) {
            let ch = tonic::transport::Channel::from_shared(ep.clone())
                .unwrap_or_else(|e| crate::die(&format!("{ep}: {e}")))
                .connect()
                .await
                .unwrap_or_else(|e| crate::die(&format!("etcd channel: {e}")));
            let mut g = tonic::client::Grpc::new(ch);
            g.ready()
                .await
                .unwrap_or_else(|e| crate::die(&format!("etcd channel: {e}")));
            let (tx, rx) = mpsc::channel::<KaReq>(4 * WINDOW);
            // etcd (grpc-go) sends the response headers with the first message, which
            // `streaming` waits for: send one keep-alive first (counted in `sent`).
            if tx.try_send(KaReq { id: chunk[0] }).is_err() {
                crate::die("keep-alive queue");
            }
            let resp = g
                .streaming(
                    tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                    tonic::codegen::http::uri::PathAndQuery::from_static(
                        "/etcdserverpb.Lease/LeaseKeepAlive",
                    ),
                    tonic::codec::ProstCodec::<KaReq, KaResp>::default(),
                )
                .await
                .unwrap_or_else(|e| crate::die(&format!("LeaseKeepAlive: {e}")));
            let mut inbound = resp.into_inner();
            let s = Arc::new(Stream {
                tx,
                ids: chunk.to_vec(),
                next: std::sync::Mutex::new(0),
                sent: AtomicU64::new(1),
                answered: AtomicU64::new(0),
            });
            let (s2, cnt, run) = (s.clone(), counts.clone(), running.clone());
            tokio::spawn(async move {
                loop {
                    match inbound.message().await {
                        Ok(Some(r)) => {
                            if r.ttl > 0 {
                                cnt.alive.fetch_add(1, Ordering::Relaxed);
                            } else {
                                cnt.unknown.fetch_add(1, Ordering::Relaxed);
                            }
                            s2.answered.fetch_add(1, Ordering::SeqCst);
                            if run.load(Ordering::SeqCst) {
                                s2.send(1);
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            cnt.other.fetch_add(1, Ordering::Relaxed);
                            eprintln!("etcd-ka: LeaseKeepAlive stream ended: {e}");
                            return;
                        }
                    }
                }
            });
            v.push(s);
        }
        v
    });
    let _guard = rt.enter();
    let start = || {
        for s in &streams {
            s.send(WINDOW);
        }
    };
    let drained = || {
        streams
            .iter()
            .all(|s| s.answered.load(Ordering::SeqCst) >= s.sent.load(Ordering::SeqCst))
    };
    command_loop(&counts, &running, &start, &drained);
    drop(rt);
}

/// One measured window.
#[derive(Clone, Debug)]
pub struct Round {
    /// Keep-alive replies per second.
    pub rate: f64,
    /// Server CPU over the window, in cores.
    pub server_cpu: f64,
    /// Load generator CPU over the window, in cores.
    pub gen_cpu: f64,
}

/// One system at one count.
pub struct Side {
    /// Time to open every session / grant every lease.
    pub open: Result<Duration, String>,
    /// Server RSS before and after opening, bytes.
    pub rss: Option<(u64, u64)>,
    /// Rounds, idle then pinned.
    pub rounds: [Vec<Result<Round, String>>; 2],
}

/// Results: per count, tenure and etcd.
pub struct KaOut {
    pub rows: Vec<(usize, [Option<Side>; 2])>,
}

/// Session counts per scale.
fn counts(q: Scale) -> Vec<usize> {
    q.pick(vec![10_000, 100_000], vec![10_000], vec![400])
}

/// A running server with its generator.
pub(crate) struct Live {
    server_pid: u32,
    pub(crate) gen: Child,
    /// Keeps the server process alive (tenure's ServerProc or etcd).
    _keep: Box<dyn std::any::Any>,
}

fn open_side(ctx: &mut Ctx, sys: usize, n: usize, side: &mut Side) -> Result<Live, String> {
    let (keep, pid, worker, flag, end): (Box<dyn std::any::Any>, u32, &str, &str, String) =
        if sys == 0 {
            let s = ctx.start_server(Durability::Fsync)?;
            let (pid, addr) = (s.child.pid(), s.addr.clone());
            (Box::new(s), pid, "tenure-ka", "--addr", addr)
        } else {
            let dir = ctx.dir("ka-etcd");
            let e = crate::etcd::start(&dir)?;
            let (pid, ep) = (e.pid(), e.endpoint.clone());
            (Box::new(e), pid, "etcd-ka", "--endpoint", ep)
        };
    std::thread::sleep(Duration::from_millis(500));
    let rss0 = proc_rss(pid).ok_or("cannot read the server's RSS")?;
    let args: Vec<String> = [worker, flag, &end, "--sessions", &n.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let gen = Child::worker(worker, &args)?;
    let l = gen.line_starting("opened", Duration::from_secs(300))?;
    let ns: u64 = l
        .split_whitespace()
        .nth(2)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| format!("bad line {l:?}"))?;
    side.open = Ok(Duration::from_nanos(ns));
    // Let the server settle (etcd's Go runtime frees garbage lazily) before reading RSS.
    std::thread::sleep(Duration::from_secs(1));
    let rss1 = proc_rss(pid).ok_or("cannot read the server's RSS")?;
    side.rss = Some((rss0, rss1));
    Ok(Live {
        server_pid: pid,
        gen,
        _keep: keep,
    })
}

impl Live {
    /// A generator of the server `server_pid` whose process another owner keeps alive.
    pub(crate) fn new(server_pid: u32, gen: Child) -> Live {
        Live {
            server_pid,
            gen,
            _keep: Box::new(()),
        }
    }
}

/// One closed-loop round: a warm-up, then a window of `win_ms` whose replies are counted.
pub(crate) fn round(l: &mut Live, warm_ms: u64, win_ms: u64) -> Result<Round, String> {
    l.gen.send(&format!("run {warm_ms} {win_ms}"))?;
    let tmo = Duration::from_millis(warm_ms + 10_000);
    l.gen.line_starting("window-start", tmo)?;
    let (c0, t0) = (proc_cpu(l.server_pid), mono_ns());
    l.gen
        .line_starting("window-end", Duration::from_millis(win_ms + 10_000))?;
    let (c1, t1) = (proc_cpu(l.server_pid), mono_ns());
    let r = l.gen.line_starting("result", Duration::from_secs(20))?;
    let kv = |k: &str| -> Option<u64> {
        r.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
    };
    let (n, ns, gcpu) = (
        kv("n").ok_or("no n")?,
        kv("ns").ok_or("no ns")?,
        kv("cpu").unwrap_or(0),
    );
    if kv("unknown").unwrap_or(0) > 0 || kv("other").unwrap_or(0) > 0 {
        return Err(format!("errors in replies: {r}"));
    }
    if kv("undrained").is_some() {
        return Err(format!("replies still missing 10 s after the window: {r}"));
    }
    if n == 0 || ns == 0 {
        return Err(format!("no keep-alive answered: {r}"));
    }
    let server_cpu = match (c0, c1) {
        (Some(a), Some(b)) => (b - a).as_secs_f64() / ((t1 - t0) as f64 / 1e9),
        _ => 0.0,
    };
    Ok(Round {
        rate: n as f64 / (ns as f64 / 1e9),
        server_cpu,
        gen_cpu: gcpu as f64 / ns as f64,
    })
}

/// Runs the phase (etcd only when `with_etcd`).
pub fn run(ctx: &mut Ctx, with_etcd: bool) -> KaOut {
    let q = ctx.opts.quick;
    let (warm, win) = q.pick((1000, 3000), (500, 1500), (200, 400));
    let nrounds = crate::ab::rounds(q);
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = KaOut { rows: vec![] };
    for n in counts(q) {
        let systems = if with_etcd { 2 } else { 1 };
        let mut sides: [Option<Side>; 2] = [None, None];
        let mut lives: [Option<Live>; 2] = [None, None];
        for sys in 0..systems {
            eprintln!(
                "[keep-alives] {n} {}",
                ["sessions: tenure", "leases: etcd"][sys]
            );
            let mut side = Side {
                open: Err("not run".into()),
                rss: None,
                rounds: [vec![], vec![]],
            };
            match open_side(ctx, sys, n, &mut side) {
                Ok(l) => lives[sys] = Some(l),
                Err(e) => side.open = Err(e),
            }
            sides[sys] = Some(side);
        }
        for cond in 0..2 {
            if cond == 1 && ncpu < 2 {
                break;
            }
            for r in 0..nrounds {
                for sys in 0..systems {
                    let (Some(l), Some(side)) = (lives[sys].as_mut(), sides[sys].as_mut()) else {
                        continue;
                    };
                    if side.open.is_err() {
                        continue;
                    }
                    let pin = if cond == 1 {
                        taskset_pid(l.server_pid, "0").and_then(|_| taskset_pid(l.gen.pid(), "1"))
                    } else {
                        let all = format!("0-{}", ncpu - 1);
                        taskset_pid(l.server_pid, &all).and_then(|_| taskset_pid(l.gen.pid(), &all))
                    };
                    eprintln!(
                        "[keep-alives] {n}, {}, round {}/{nrounds}: {}",
                        ["idle", "pinned"][cond],
                        r + 1,
                        ["tenure", "etcd"][sys]
                    );
                    let res = pin.and_then(|_| round(l, warm, win));
                    side.rounds[cond].push(res);
                }
            }
        }
        drop(lives);
        out.rows.push((n, sides));
    }
    out
}

/// Medians over a condition's good rounds: (rate, server cpu, gen cpu, good, total).
fn med(side: &Side, cond: usize) -> Option<(f64, f64, f64, usize, usize)> {
    let ok: Vec<&Round> = side.rounds[cond]
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .collect();
    Some((
        median_f(ok.iter().map(|r| r.rate).collect())?,
        median_f(ok.iter().map(|r| r.server_cpu).collect())?,
        median_f(ok.iter().map(|r| r.gen_cpu).collect())?,
        ok.len(),
        side.rounds[cond].len(),
    ))
}

fn per_session(side: &Side, n: usize) -> Option<f64> {
    let (a, b) = side.rss?;
    Some((b as f64 - a as f64) / n as f64)
}

/// The report section; appends the targets.
pub fn report(k: &KaOut, r: &mut String, targets: &mut Vec<(String, String, bool)>) {
    let _ = writeln!(
        r,
        "\n## Session keep-alives with 10,000 and 100,000 sessions or leases\n"
    );
    let _ = writeln!(
        r,
        "For each count N a fresh tenure server (durability fsync) and a fresh etcd; a \
         load-generator process opens N sessions of TTL {TTL_S} s over {CONNS} connections \
         (tenure) or grants N leases of TTL {TTL_S} s (etcd, 128 grants in flight). Memory per \
         session = (server RSS after opening, 1 s later − RSS before) ÷ N. Then alternating \
         rounds (tenure, etcd, ×{}) idle, then server on CPU 0 and generator on CPU 1 \
         (`taskset`): each generator keeps {WINDOW} keep-alives in flight on each of its \
         {CONNS} connections (tenure) or `LeaseKeepAlive` streams on {CONNS} gRPC channels \
         (etcd, as etcd's Go client multiplexes a process's leases over one stream), cycling \
         through its sessions; rate = replies in the window ÷ window. Medians of the rounds. \
         \"CPU\" is the share of one core the server (and the generator) used during the \
         window: on this 2-CPU machine server and generator compete in the idle condition. \
         Target for tenure: keep-alives/s at least 3 × etcd's, memory per session at most a \
         third of etcd's per lease.\n",
        k.rows
            .first()
            .map_or(0, |(_, s)| s[0].as_ref().map_or(0, |s| s.rounds[0].len()))
    );
    let _ = writeln!(
        r,
        "| N | system | open / grant all | RSS before → after | per session | keep-alives/s idle (server CPU, generator CPU) | keep-alives/s pinned (server CPU, generator CPU) | rounds ok |\n|---|---|---|---|---|---|---|---|"
    );
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    for (n, sides) in &k.rows {
        for (sys, side) in sides.iter().enumerate() {
            let Some(side) = side else { continue };
            let name = ["tenure (fsync)", "etcd"][sys];
            let open = match &side.open {
                Ok(d) => format!(
                    "{:.2} s ({:.0}/s)",
                    d.as_secs_f64(),
                    *n as f64 / d.as_secs_f64()
                ),
                Err(e) => format!("failed: {}", crate::util::trunc(e)),
            };
            let rss = side
                .rss
                .map_or("—".into(), |(a, b)| format!("{} → {}", mib(a), mib(b)));
            let per = per_session(side, *n).map_or("—".into(), |b| format!("{b:.0} B"));
            let cellf = |c: usize| {
                med(side, c).map_or("—".into(), |(rate, s, g, _, _)| {
                    format!("{rate:.0}/s ({s:.2}, {g:.2})")
                })
            };
            let okc: usize = side.rounds.iter().flatten().filter(|x| x.is_ok()).count();
            let tot: usize = side.rounds.iter().map(Vec::len).sum();
            let _ = writeln!(
                r,
                "| {n} | {name} | {open} | {rss} | {per} | {} | {} | {okc} / {tot} |",
                cellf(0),
                cellf(1)
            );
        }
        for (sys, side) in sides.iter().enumerate() {
            let Some(side) = side else { continue };
            for e in side
                .rounds
                .iter()
                .flatten()
                .filter_map(|x| x.as_ref().err())
            {
                let _ = writeln!(
                    r,
                    "\n{}, N = {n}: a round failed: {}\n",
                    ["tenure", "etcd"][sys],
                    crate::util::trunc(e)
                );
            }
        }
        // Targets: rate ratio per condition, memory ratio.
        let (Some(t), Some(e)) = (sides[0].as_ref(), sides[1].as_ref()) else {
            continue;
        };
        for (cond, cname) in ["idle", "pinned"].iter().enumerate() {
            if let (Some(a), Some(b)) = (med(t, cond), med(e, cond)) {
                let ratio = a.0 / b.0;
                targets.push((
                    format!(
                        "keep-alives ({cname}): {n} sessions, keep-alives/s at least 3 × etcd's with as many leases"
                    ),
                    format!("{:.0}/s vs {:.0}/s ({ratio:.1} ×)", a.0, b.0),
                    ratio >= 3.0,
                ));
            }
        }
        if let (Some(a), Some(b)) = (per_session(t, *n), per_session(e, *n)) {
            targets.push((
                format!(
                    "keep-alives: {n} sessions, memory per session at most a third of etcd's per lease"
                ),
                format!("{a:.0} B vs {b:.0} B ({:.1} ×)", b / a.max(1.0)),
                a * 3.0 <= b,
            ));
        }
    }
}

/// Smoke checks: every side opened and every round measured.
pub fn checks(k: &KaOut) -> Vec<(String, Result<(), String>)> {
    let mut v = vec![];
    for (n, sides) in &k.rows {
        for (sys, side) in sides.iter().enumerate() {
            let Some(side) = side else { continue };
            let name = format!("keep-alives, {}, N = {n}", ["tenure", "etcd"][sys]);
            let c = match (&side.open, side.rss) {
                (Err(e), _) => Err(e.clone()),
                (_, None) => Err("no RSS".into()),
                _ => match side.rounds.iter().flatten().find_map(|x| x.as_ref().err()) {
                    Some(e) => Err(e.clone()),
                    None if side.rounds[0].is_empty() => Err("no round".into()),
                    None => Ok(()),
                },
            };
            v.push((name, c));
        }
    }
    if k.rows.is_empty() {
        v.push(("keep-alives".into(), Err("not run".into())));
    }
    v
}
