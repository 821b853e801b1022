//! Lost-before-grant on a loaded machine (issue 11): a lock holder whose link stalls must be
//! told (`on_lost`) before the next holder is granted the lock, with both cores saturated by
//! busy processes.
//!
//! Run: `cargo run --release --example lost_bench` (about three minutes; `-- --help` for the
//! options). The server is a separate process (this program re-executed, an embedded server
//! with durability fsync). Each trial has a holder that reaches the server through a proxy of
//! its own and a waiter connected directly. At a random moment within a heartbeat interval
//! the proxy freezes: it forwards nothing more either way, and the connections the holder
//! then makes are accepted and never answered (an accepting-but-stalled endpoint). The
//! server expires the holder's session a TTL after it last heard from it and grants the lock
//! to the waiter. The margin is the waiter's grant (its `lock()` returning) less the holder's
//! `on_lost` callback, both read from the same monotonic clock: positive is right, zero or
//! negative (or no callback at all) is a violation. Trials run concurrently, so the holders,
//! waiters and proxies load the machine too, on top of the busy processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tenure::{Client, ClientConfig, Durability, Server, ServerConfig};

const HELP: &str = "\
lost_bench: holder behind a stalling link told before the next grant, on a loaded machine

  cargo run --release --example lost_bench -- [--trials N] [--ttls MS,MS] [--concurrency K]
                                              [--load P]

--trials       trials per TTL (default 200)
--ttls         session TTLs in milliseconds (default 1000,10000)
--concurrency  trials run at once (default 50)
--load         busy-looping processes started for the run (default 2 per core; 0 for none)
--margin       the holders' safety margin in ms (default: the client's default, 50 ms at
               most a tenth of the TTL)
";

/// A TCP proxy that can be frozen: from then on it forwards nothing, and connections made to
/// it are accepted and never answered.
struct Proxy {
    addr: String,
    frozen: Arc<(Mutex<bool>, Condvar)>,
    dead: Arc<AtomicBool>,
    socks: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = l.local_addr().unwrap().to_string();
        let frozen = Arc::new((Mutex::new(false), Condvar::new()));
        let dead = Arc::new(AtomicBool::new(false));
        let socks: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (f, d, sk) = (frozen.clone(), dead.clone(), socks.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                if d.load(Ordering::Acquire) {
                    return;
                }
                let Ok(s) = s else { continue };
                sk.lock().unwrap().push(s.try_clone().unwrap());
                if *f.0.lock().unwrap() {
                    continue; // accepted, never answered
                }
                let Ok(up) = TcpStream::connect(&target) else {
                    continue;
                };
                sk.lock().unwrap().push(up.try_clone().unwrap());
                for (a, b) in [(s.try_clone().unwrap(), up.try_clone().unwrap()), (up, s)] {
                    let f = f.clone();
                    std::thread::spawn(move || pump(a, b, &f));
                }
            }
        });
        Proxy {
            addr,
            frozen,
            dead,
            socks,
        }
    }

    fn freeze(&self) {
        *self.frozen.0.lock().unwrap() = true;
    }

    fn stop(&self) {
        self.dead.store(true, Ordering::Release);
        {
            *self.frozen.0.lock().unwrap() = false;
            self.frozen.1.notify_all();
        }
        for s in self.socks.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(&self.addr); // wakes the accept loop
    }
}

fn pump(mut a: TcpStream, mut b: TcpStream, frozen: &(Mutex<bool>, Condvar)) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = a.read(&mut buf) {
        if n == 0 {
            break;
        }
        {
            let mut g = frozen.0.lock().unwrap();
            if *g {
                // Frozen for good (until the trial ends): hold what was read.
                while *g {
                    g = frozen.1.wait(g).unwrap();
                }
                break;
            }
        }
        if b.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = b.shutdown(Shutdown::Both);
}

/// One trial's outcome: the margin in nanoseconds (grant − lost), or why there is none.
type Outcome = Result<i128, String>;

fn trial(server: &str, ttl: Duration, margin: Option<Duration>, name: &str, seed: u64) -> Outcome {
    let proxy = Proxy::start(server.to_string());
    let r = trial_through(&proxy, server, ttl, margin, name, seed);
    proxy.stop();
    r
}

fn trial_through(
    proxy: &Proxy,
    server: &str,
    ttl: Duration,
    margin: Option<Duration>,
    name: &str,
    seed: u64,
) -> Outcome {
    let mut cfg = ClientConfig::new([proxy.addr.clone()]).session_ttl(ttl);
    cfg.reopen = false;
    cfg.safety_margin = margin;
    let holder = Client::connect(cfg).map_err(|e| format!("holder connects: {e}"))?;
    let lock = holder
        .lock(name, Duration::from_secs(30))
        .map_err(|e| format!("holder locks: {e}"))?;
    let lost: Arc<Mutex<Option<Instant>>> = Arc::default();
    let l2 = lost.clone();
    lock.on_lost(move |_| {
        let at = Instant::now();
        l2.lock().unwrap().get_or_insert(at);
    });
    let mut wcfg = ClientConfig::new([server.to_string()]).session_ttl(Duration::from_secs(30));
    wcfg.reopen = false;
    let waiter = Client::connect(wcfg).map_err(|e| format!("waiter connects: {e}"))?;
    let wname = name.to_string();
    let wait = ttl * 3 + Duration::from_secs(10);
    let w = std::thread::spawn(move || {
        let r = waiter.lock(&wname, wait).map(|l| (Instant::now(), l));
        (r, waiter)
    });
    // Let the waiter queue, then freeze at a random phase of the heartbeat interval.
    let mut rng = fastrand::Rng::with_seed(seed);
    std::thread::sleep(Duration::from_millis(200) + (ttl / 3).mul_f64(rng.f64()));
    proxy.freeze();
    let (r, waiter) = w.join().map_err(|_| "waiter panicked".to_string())?;
    let (granted, wl) = r.map_err(|e| format!("waiter's lock: {e}"))?;
    // The callback may still be on its way (that would be a violation): give it a moment.
    let until = Instant::now() + Duration::from_millis(500);
    while lost.lock().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let lost_at = *lost.lock().unwrap();
    let _ = wl.release();
    waiter.close();
    drop(lock);
    holder.close();
    match lost_at {
        Some(t) => Ok(if granted >= t {
            (granted - t).as_nanos() as i128
        } else {
            -((t - granted).as_nanos() as i128)
        }),
        None => Err("the holder was not told within 500 ms of the grant".into()),
    }
}

fn pct(sorted: &[i128], p: f64) -> i128 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(ns: i128) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn spin() {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Child mode: an embedded server; prints its address, stops when stdin closes.
fn serve(dir: &str) {
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.into(),
        durability: Durability::Fsync,
        ..Default::default()
    })
    .expect("server starts");
    println!("{}", server.local_addr());
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__serve") => return serve(&args[1]),
        Some("__spin") => spin(),
        Some("-h" | "--help") => {
            print!("{HELP}");
            return;
        }
        _ => {}
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (mut trials, mut ttls, mut conc, mut load) =
        (200usize, vec![1000u64, 10_000], 50, 2 * cores);
    let mut margin: Option<Duration> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| panic!("{a} needs a value\n{HELP}"));
        match a.as_str() {
            "--trials" => trials = v.parse().expect("--trials N"),
            "--ttls" => {
                ttls = v
                    .split(',')
                    .map(|x| x.parse().expect("--ttls MS,MS"))
                    .collect()
            }
            "--concurrency" => conc = v.parse().expect("--concurrency K"),
            "--load" => load = v.parse().expect("--load P"),
            "--margin" => margin = Some(Duration::from_millis(v.parse().expect("--margin MS"))),
            _ => panic!("unknown option {a}\n{HELP}"),
        }
    }
    let exe = std::env::current_exe().unwrap();
    let dir = std::env::temp_dir().join(format!("tenure-lost-bench-{}", std::process::id()));
    let mut kids = Kids(Vec::new());
    let mut server = Command::new(&exe)
        .args(["__serve", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server process");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_string();
    kids.0.push(server);
    for _ in 0..load {
        kids.0.push(
            Command::new(&exe)
                .arg("__spin")
                .spawn()
                .expect("busy process"),
        );
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let margin_text = match margin {
        Some(m) => format!("safety margin {m:?}"),
        None => "default safety margin".to_string(),
    };
    println!(
        "lost_bench: {trials} trials per TTL, {conc} at once, {load} busy processes on {cores} cores, {margin_text}, commit {commit}"
    );
    println!();
    println!("| TTL | trials | told before the grant | margin p0 | p1 | p50 | max |");
    println!("|---|---|---|---|---|---|---|");
    let mut failures = 0;
    for ttl_ms in ttls {
        let ttl = Duration::from_millis(ttl_ms);
        let mut margins = Vec::new();
        let mut errors = Vec::new();
        let mut done = 0;
        while done < trials {
            let n = conc.min(trials - done);
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let addr = addr.clone();
                    let k = done + i;
                    std::thread::spawn(move || {
                        trial(
                            &addr,
                            ttl,
                            margin,
                            &format!("bench/{ttl_ms}/{k}"),
                            k as u64 + ttl_ms,
                        )
                    })
                })
                .collect();
            for h in hs {
                match h.join() {
                    Ok(Ok(m)) => margins.push(m),
                    Ok(Err(e)) => errors.push(e),
                    Err(_) => errors.push("trial panicked".into()),
                }
            }
            done += n;
        }
        margins.sort_unstable();
        let told = margins.iter().filter(|m| **m > 0).count();
        failures += trials - told;
        if margins.is_empty() {
            println!("| {ttl_ms} ms | {trials} | 0 | - | - | - | - |");
        } else {
            println!(
                "| {} | {trials} | {told} | {} | {} | {} | {} |",
                if ttl_ms % 1000 == 0 {
                    format!("{} s", ttl_ms / 1000)
                } else {
                    format!("{ttl_ms} ms")
                },
                ms(margins[0]),
                ms(pct(&margins, 0.01)),
                ms(pct(&margins, 0.5)),
                ms(*margins.last().unwrap())
            );
        }
        for e in errors.iter().take(5) {
            eprintln!("  TTL {ttl_ms} ms: {e}");
        }
    }
    drop(kids);
    let _ = std::fs::remove_dir_all(&dir);
    if failures > 0 {
        eprintln!("lost_bench: {failures} trial(s) without the holder told before the grant");
        std::process::exit(1);
    }
}
