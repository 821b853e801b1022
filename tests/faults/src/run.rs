//! The run: the group, its proxies, the fenced resource, the clients, the nemesis.
//!
//! Every member listens on a port of its own and is reached (by the other members and by
//! clients) through a proxy of the run's: cutting the proxy closes every connection to the
//! member and refuses new ones, so the member is cut off from everyone who would reach it
//! (its own connections out still leave: a one-way partition, which check-quorum must
//! handle). The nemesis acts one fault at a time, on a seeded schedule: `kill -9` of a member
//! and a restart; SIGSTOP of a member, then SIGCONT; a member cut off; a member's data
//! directory wiped (kill, remove, restart without `--bootstrap`: it must take the group's
//! incarnation and catch up); `kill -9` of a client and a new process in its place; SIGSTOP
//! of a client for up to twice its TTL. Then everything heals, the clients go on for a few
//! seconds, and the checker reads the histories.

use crate::check::{self, ClientFaults};
use crate::{mono_ns, Args};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a run reports.
pub struct Report {
    pub text: String,
    pub violations: Vec<String>,
}

/// A proxy in front of a member; while `cut` is set every connection through it is closed
/// and new ones are closed at once. While `down` is set (its member is killed) it does not
/// listen at all, so that a connection to it is refused, as one to a dead process's port on
/// a live machine is (the members' fast failover acts on that refusal).
struct Proxy {
    addr: String,
    cut: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
}

fn proxy(target: String) -> Result<Proxy, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("proxy: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
    let cut = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicBool::new(false));
    let (c, dn, at) = (cut.clone(), down.clone(), addr.clone());
    std::thread::spawn(move || {
        let mut listener = Some(l);
        loop {
            if dn.load(Ordering::Acquire) {
                listener = None; // closed: connections are refused
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let l = match listener.take() {
                Some(l) => l,
                // Listening again on the same port (std sets SO_REUSEADDR).
                None => match TcpListener::bind(&at) {
                    Ok(l) => l,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                },
            };
            let _ = l.set_nonblocking(true);
            let s = match l.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    listener = Some(l);
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            listener = Some(l);
            let _ = s.set_nonblocking(false);
            if c.load(Ordering::Acquire) {
                continue;
            }
            let Ok(up) = TcpStream::connect(&target) else {
                continue;
            };
            let (Ok(s2), Ok(up2)) = (s.try_clone(), up.try_clone()) else {
                continue;
            };
            for (mut a, mut b) in [(s2, up2), (up, s)] {
                let c = c.clone();
                std::thread::spawn(move || {
                    let _ = a.set_read_timeout(Some(Duration::from_millis(20)));
                    let mut buf = [0u8; 16384];
                    while !c.load(Ordering::Acquire) {
                        match a.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if b.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => break,
                        }
                    }
                    let _ = a.shutdown(Shutdown::Both);
                    let _ = b.shutdown(Shutdown::Both);
                });
            }
        }
    });
    Ok(Proxy { addr, cut, down })
}

/// The fenced resource: accepts a write whose token is at least the highest it has seen for
/// that name, refuses older ones.
fn resource() -> Result<String, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("resource: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
    let highest: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let highest = highest.clone();
            std::thread::spawn(move || {
                let Ok(mut w) = s.try_clone() else { return };
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { return };
                    let f: Vec<&str> = line.split(' ').collect();
                    let (Some(name), Some(Ok(token))) =
                        (f.get(2), f.get(3).map(|t| t.parse::<u64>()))
                    else {
                        return;
                    };
                    let ok = {
                        let mut h = highest.lock().expect("not poisoned");
                        let top = h.entry(name.to_string()).or_insert(0);
                        let ok = token >= *top;
                        if ok {
                            *top = token;
                        }
                        ok
                    };
                    if w.write_all(if ok { b"OK\n" } else { b"STALE\n" }).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn free_port() -> Result<u16, String> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port())
}

fn signal(c: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on a child of ours that has not been reaped.
    unsafe { libc::kill(c.id() as libc::pid_t, sig) };
}

struct Member {
    listen: String,
    data: PathBuf,
    proc_: Option<Child>,
    /// Its clock's rate (1.0: real time), kept across its restarts.
    rate: f64,
}

/// libfaketime, for a member whose clock runs at another rate than real time.
fn libfaketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        "/usr/local/lib/faketime/libfaketimeMT.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

struct World {
    bin: String,
    dir: PathBuf,
    cluster: String,
    members: Vec<Member>,
    proxies: Vec<Proxy>,
    endpoints: String,
    /// Each client's own proxies to the members (cutting them cuts that client off from the
    /// whole group while it keeps running).
    client_proxies: Vec<Vec<Proxy>>,
    resource: String,
    clients: Vec<Option<Child>>,
    /// How each client is started: the Rust worker, or a Python or Node one.
    kinds: Vec<Lang>,
    /// The Python interpreter with `tenure` installed, and the Node package's directory.
    python: Option<String>,
    node_module: Option<String>,
    ttl_ms: u64,
    /// How many lock names the clients share.
    names: u64,
    seed: u64,
    faults: ClientFaults,
    log: Vec<String>,
    counts: HashMap<&'static str, u64>,
}

impl World {
    fn start_member(&mut self, i: usize, bootstrap: bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = &self.members[i];
            let mut cmd = Command::new(&self.bin);
            dies_with_us(&mut cmd);
            cmd.args(["serve", "--id", &(i + 1).to_string(), "--listen", &m.listen])
                .arg("--data")
                .arg(&m.data)
                .args(["--cluster", &self.cluster]);
            if bootstrap {
                cmd.arg("--bootstrap");
            }
            if m.rate != 1.0 {
                // Every clock of the process, CLOCK_MONOTONIC included, runs at this rate.
                let lib = libfaketime()
                    .ok_or("--skew-ppm needs libfaketime (apt-get install faketime)")?;
                cmd.env("LD_PRELOAD", lib)
                    .env("FAKETIME", format!("+0 x{:.6}", m.rate));
            }
            let err = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("m{}.log", i + 1)))
                .map_err(|e| e.to_string())?;
            let mut c = cmd
                .stdout(Stdio::piped())
                .stderr(err)
                .spawn()
                .map_err(|e| format!("{}: {e}", self.bin))?;
            let mut first = String::new();
            if let Some(out) = c.stdout.take() {
                let _ = BufReader::new(out).read_line(&mut first);
            }
            if !first.trim().is_empty() {
                self.members[i].proc_ = Some(c);
                self.proxies[i].down.store(false, Ordering::Release);
                return Ok(());
            }
            let _ = c.kill();
            let _ = c.wait();
            if Instant::now() > deadline {
                return Err(format!("member {} did not start", i + 1));
            }
            std::thread::sleep(Duration::from_millis(50)); // its port is still held
        }
    }

    fn kill_member(&mut self, i: usize) {
        // Its port refuses from the moment it dies (the proxy stands for it).
        self.proxies[i].down.store(true, Ordering::Release);
        if let Some(mut c) = self.members[i].proc_.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn start_client(&mut self, k: usize) -> Result<(), String> {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = match (self.kinds[k], &self.python, &self.node_module) {
            (Lang::Python, Some(py), _) => {
                let mut c = Command::new(py);
                c.arg(here.join("worker.py"));
                c
            }
            (Lang::Node, _, Some(module)) => {
                let mut c = Command::new("node");
                c.arg(here.join("worker.js")).args(["--module", module]);
                c
            }
            _ => {
                let mut c = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
                c.arg("worker");
                c
            }
        };
        dies_with_us(&mut cmd);
        let seed = (self.seed ^ k as u64).to_string();
        let client_endpoints = self.client_proxies[k]
            .iter()
            .map(|p| p.addr.clone())
            .collect::<Vec<_>>()
            .join(",");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("clients.err"))
            .map_err(|e| e.to_string())?;
        let c = cmd
            .args([
                "--endpoints",
                &client_endpoints,
                "--resource",
                &self.resource,
            ])
            .args(["--id", &k.to_string(), "--ttl-ms", &self.ttl_ms.to_string()])
            .args(["--seed", &seed, "--names", &self.names.to_string()])
            .arg("--log")
            .arg(self.dir.join(format!("client-{k}.log")))
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("worker ({:?}): {e}", self.kinds[k]))?;
        self.clients[k] = Some(c);
        Ok(())
    }

    fn kill_client(&mut self, k: usize) {
        if let Some(mut c) = self.clients[k].take() {
            let t = mono_ns();
            let _ = c.kill();
            let _ = c.wait();
            self.faults.killed.entry(c.id()).or_default().push(t);
        }
    }

    fn note(&mut self, what: String) {
        self.log.push(format!("{} {what}", mono_ns()));
    }

    /// Waits (bounded) until the group has a leader.
    fn wait_leader(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut cfg = tenure::ClientConfig::new(self.endpoints.split(','));
            cfg.reopen = false;
            if let Ok(c) = tenure::Client::connect(cfg) {
                if c.status().is_ok_and(|s| s.leader.is_some()) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no leader within {limit:?}"))
    }

    /// One fault, from start to end.
    fn fault(&mut self, rng: &mut fastrand::Rng) -> Result<(), String> {
        let n = self.members.len();
        let i = rng.usize(..n);
        let k = rng.usize(..self.clients.len());
        let d = Duration::from_millis(rng.u64(200..2500));
        let kind = [
            "kill",
            "pause",
            "cut",
            "wipe",
            "kill-client",
            "pause-client",
            "cut-client",
        ][rng.usize(..7)];
        *self.counts.entry(kind).or_default() += 1;
        self.note(format!(
            "{kind} {} {d:?}",
            if kind.ends_with("client") { k } else { i + 1 }
        ));
        match kind {
            "kill" => {
                self.kill_member(i);
                std::thread::sleep(d);
                self.start_member(i, false)?;
            }
            "pause" => {
                if let Some(c) = &self.members[i].proc_ {
                    signal(c, libc::SIGSTOP);
                    std::thread::sleep(d);
                    signal(c, libc::SIGCONT);
                }
            }
            "cut" => {
                self.proxies[i].cut.store(true, Ordering::Release);
                std::thread::sleep(d);
                self.proxies[i].cut.store(false, Ordering::Release);
            }
            "wipe" => {
                self.kill_member(i);
                let _ = std::fs::remove_dir_all(&self.members[i].data);
                std::thread::sleep(d);
                self.start_member(i, false)?;
                // It must find the group's incarnation and catch up before the next fault
                // (a second wipe before then could leave no majority with the data): its
                // data directory holds the token and a snapshot again.
                self.wait_leader(Duration::from_secs(20))?;
                let data = self.members[i].data.clone();
                let deadline = Instant::now() + Duration::from_secs(60);
                let has = |f: &str| {
                    std::fs::read_dir(&data).is_ok_and(|d| {
                        d.flatten()
                            .any(|e| e.file_name().to_string_lossy().starts_with(f))
                    })
                };
                while !(has("incarnation") && has("snapshot")) {
                    if Instant::now() > deadline {
                        return Err(format!(
                            "wiped member {} did not catch up within 60 s",
                            i + 1
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            "cut-client" => {
                // Cut off from every member while it runs: its lease runs out, and it must be
                // told before the group grants its lock to another.
                let d = Duration::from_millis(rng.u64(100..3 * self.ttl_ms));
                for p in &self.client_proxies[k] {
                    p.cut.store(true, Ordering::Release);
                }
                std::thread::sleep(d);
                for p in &self.client_proxies[k] {
                    p.cut.store(false, Ordering::Release);
                }
            }
            "kill-client" => {
                self.kill_client(k);
                std::thread::sleep(d / 4);
                self.start_client(k)?;
            }
            _ => {
                if let Some(c) = &self.clients[k] {
                    let pause = Duration::from_millis(rng.u64(50..2 * self.ttl_ms));
                    let t0 = mono_ns();
                    signal(c, libc::SIGSTOP);
                    std::thread::sleep(pause);
                    signal(c, libc::SIGCONT);
                    self.faults
                        .paused
                        .entry(c.id())
                        .or_default()
                        .push((t0, mono_ns()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(100..700)));
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for c in self.clients.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for m in &mut self.members {
            if let Some(c) = m.proc_.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The language of a client process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Node,
}

/// The process `cmd` starts is killed when this program ends, however it ends (a run stopped
/// with a signal leaves no member, client or busy process behind). The fault loop and every
/// start run on the main thread, whose end the kernel watches.
fn dies_with_us(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A process spinning on a core until dropped.
struct Busy(Child);

impl Busy {
    fn start() -> Result<Busy, String> {
        let mut cmd = Command::new("sh");
        dies_with_us(&mut cmd);
        cmd.args(["-c", "while :; do :; done"])
            .spawn()
            .map(Busy)
            .map_err(|e| format!("busy process: {e}"))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(a: &Args) -> Result<Report, String> {
    let n = a.num("members", 3)? as usize;
    if n != 3 && n != 5 {
        return Err("--members is 3 or 5".into());
    }
    let n_clients = a.num("clients", 4)?.clamp(1, 64) as usize;
    let seconds = a.num("seconds", 60)?;
    let seed = a.num("seed", 1)?;
    let ttl_ms = a.num("ttl-ms", 1000)?.max(300);
    let bin = match a.get("tenure") {
        Some(b) => b.to_string(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("tenure")))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .ok_or("no tenure binary beside this program: give --tenure PATH")?,
    };
    let dir = PathBuf::from(a.get("dir").map_or_else(
        || format!("target/tenure-faults/{}", std::process::id()),
        str::to_string,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Members' clock rates: within ±skew_ppm of real time (the lease's drift allowance is 1 %
    // between a client and the service: 10,000 ppm).
    let skew_ppm = a.num("skew-ppm", 0)?.min(9_000) as i64;
    if skew_ppm > 0 && libfaketime().is_none() {
        return Err("--skew-ppm needs libfaketime (apt-get install faketime)".into());
    }
    let mut skew_rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    // The negative control: every member's clock at this rate, far outside the allowance
    // (the checker must then find clients told too late).
    let control_rate: Option<f64> = match a.get("control-rate") {
        Some(v) => Some(v.parse().map_err(|_| format!("--control-rate {v:?}"))?),
        None => None,
    };
    let mut members = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..n {
        let listen = format!("127.0.0.1:{}", free_port()?);
        proxies.push(proxy(listen.clone())?);
        let rate = if let Some(r) = control_rate {
            r
        } else if skew_ppm > 0 {
            1.0 + skew_rng.i64(-skew_ppm..=skew_ppm) as f64 / 1e6
        } else {
            1.0
        };
        members.push(Member {
            listen,
            data: dir.join(format!("m{}", i + 1)),
            proc_: None,
            rate,
        });
    }
    let cluster = (0..n)
        .map(|i| format!("{}={}", i + 1, proxies[i].addr))
        .collect::<Vec<_>>()
        .join(",");
    let endpoints = proxies
        .iter()
        .map(|p| p.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    let client_proxies = (0..n_clients)
        .map(|_| proxies.iter().map(|p| proxy(p.addr.clone())).collect())
        .collect::<Result<Vec<Vec<Proxy>>, String>>()?;
    let mut w = World {
        bin,
        dir: dir.clone(),
        cluster,
        members,
        proxies,
        client_proxies,
        endpoints,
        resource: resource()?,
        clients: (0..n_clients).map(|_| None).collect(),
        // Every third client is Python, every third Node, when they are given.
        kinds: (0..n_clients)
            .map(|k| match k % 3 {
                1 if a.get("python").is_some() => Lang::Python,
                2 if a.get("node-module").is_some() => Lang::Node,
                _ => Lang::Rust,
            })
            .collect(),
        python: a.get("python").map(str::to_string),
        // `require` resolves a relative name as a package, not a path: make it absolute.
        node_module: a.get("node-module").map(|m| {
            std::fs::canonicalize(m).map_or_else(|_| m.to_string(), |p| p.display().to_string())
        }),
        ttl_ms,
        names: a.num("names", 2)?.clamp(1, 1000),
        seed,
        faults: ClientFaults::default(),
        log: Vec::new(),
        counts: HashMap::new(),
    };
    // Busy processes on the cores while it runs (a guarantee must hold on a loaded machine).
    let busy = a.num("busy", 0)?.min(16);
    let _busy: Vec<Busy> = (0..busy).map(|_| Busy::start()).collect::<Result<_, _>>()?;
    for i in 0..n {
        w.start_member(i, true)?;
    }
    w.wait_leader(Duration::from_secs(30))?;
    for k in 0..n_clients {
        w.start_client(k)?;
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let mut faults = 0;
    // A fault whose end the group does not recover from (no leader in time) ends the
    // faults; the histories are still checked, and the failure is reported with them.
    let mut stuck = None;
    while start.elapsed() < Duration::from_secs(seconds) {
        if let Err(e) = w.fault(&mut rng) {
            w.note(format!("stuck: {e}"));
            stuck = Some(e);
            break;
        }
        faults += 1;
    }
    // Heal: every member up and reachable (the loop ends each fault before the next), every
    // client running; then the clients go on for a while with no faults.
    w.note("healed".into());
    let healed = mono_ns();
    if stuck.is_none() {
        if let Err(e) = w.wait_leader(Duration::from_secs(30)) {
            stuck = Some(format!("after healing: {e}"));
        }
    }
    std::thread::sleep(Duration::from_secs(5));
    for k in 0..n_clients {
        w.kill_client(k);
    }
    let mut lines = Vec::new();
    let mut per_client = Vec::new();
    for k in 0..n_clients {
        let text = std::fs::read_to_string(dir.join(format!("client-{k}.log"))).unwrap_or_default();
        let parsed = check::parse(&text);
        per_client.push(parsed.iter().any(|l| l.kind == "G"));
        lines.extend(parsed);
    }
    let _ = std::fs::write(dir.join("nemesis.log"), w.log.join("\n"));
    // What the checker knows of the client faults, for a later look: `K PID T` a kill,
    // `P PID FROM TO` a pause (CLOCK_MONOTONIC ns).
    let mut fl = String::new();
    for (pid, ts) in &w.faults.killed {
        for t in ts {
            fl.push_str(&format!("K {pid} {t}\n"));
        }
    }
    for (pid, ps) in &w.faults.paused {
        for (a, b) in ps {
            fl.push_str(&format!("P {pid} {a} {b}\n"));
        }
    }
    let _ = std::fs::write(dir.join("faults.log"), fl);
    let out = check::check(&lines, &w.faults);
    let after_heal = lines
        .iter()
        .filter(|l| l.kind == "G" && l.t > healed)
        .count();
    let mut violations = out.violations;
    // Every client took part (a worker that cannot run, in any language, is a failure).
    for (k, granted) in per_client.iter().enumerate() {
        if !granted {
            violations.push(format!(
                "client {k} ({:?}) was never granted a lock (its errors are in {})",
                w.kinds[k],
                dir.join("clients.err").display()
            ));
        }
    }
    if let Some(e) = &stuck {
        violations.push(format!(
            "the group did not recover from the fault {} (members' logs in {}): {e}",
            w.log.iter().rev().nth(1).map_or("", String::as_str),
            dir.display()
        ));
    }
    if after_heal == 0 {
        violations.push("no lock was granted in the 5 s after the faults healed".into());
    }
    let mut counts: Vec<_> = w.counts.iter().collect();
    counts.sort();
    let rates = w
        .members
        .iter()
        .map(|m| format!("{:.4}", m.rate))
        .collect::<Vec<_>>()
        .join(" ");
    let langs = |l: Lang| w.kinds.iter().filter(|k| **k == l).count();
    let (rust, python, node) = (langs(Lang::Rust), langs(Lang::Python), langs(Lang::Node));
    let text = format!(
        "tenure-faults: {n} members, {n_clients} clients ({rust} Rust, {python} Python, {node} \
         Node), member clock rates {rates}, TTL {ttl_ms} ms, seed {seed}, {busy} busy \
         processes, {seconds} s of faults ({faults}: {}), then 5 s healed\n  grants {} ({after_heal} after healing), \
         writes accepted {}, stale writes refused {}, locks lost {}, hand-overs exempt (holder \
         paused) {}\n  histories in {}",
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        out.grants,
        out.writes_ok,
        out.writes_stale,
        out.lost,
        out.exempt_paused,
        dir.display()
    );
    Ok(Report { text, violations })
}
