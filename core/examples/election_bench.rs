//! Election benchmarks (issue 3): time from a master's `kill -9` to every remaining
//! candidate's `master_changed`, at session TTLs of 1 s and 10 s; and the hand-over time after
//! `resign` (p50, p99).
//!
//! Run: `cargo run --release --example election_bench` (about a minute). Candidates are
//! separate processes (this program re-executed) so the master can be killed for real; they
//! report when they see a new master with CLOCK_REALTIME nanoseconds, comparable across
//! processes on one machine.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tenure::client::Candidacy;
use tenure::{Client, ClientConfig, Durability, Event, Server, ServerConfig};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Child mode: campaign, print `master ID EPOCH NS` for every master change.
fn candidate(addr: &str, id: &str, prio: i64, ttl_ms: u64) {
    let c = Client::connect(ClientConfig::new([addr]).session_ttl(Duration::from_millis(ttl_ms)))
        .expect("connect");
    let e = c
        .campaign("bench", Candidacy::new(id, prio))
        .expect("campaign");
    e.on_master_change(|ev| {
        if let Event::MasterChanged {
            epoch,
            master: Some(m),
            ..
        } = ev
        {
            println!("master {} {epoch} {}", m.id, now_ns());
        }
    });
    std::thread::sleep(Duration::from_secs(600));
}

struct Cand {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn spawn(addr: &str, id: &str, prio: i64, ttl_ms: u64) -> Cand {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "candidate",
            addr,
            id,
            &prio.to_string(),
            &ttl_ms.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    Cand { child, lines: rx }
}

/// Waits for a `master` line naming `id`; returns its timestamp.
fn seen(c: &Cand, id: &str, limit: Duration) -> Option<u128> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let l = c.lines.recv_timeout(left).ok()?;
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() == 4 && f[0] == "master" && f[1] == id {
            return f[3].parse().ok();
        }
    }
}

fn failover(addr: &str, ttl_ms: u64, trials: usize) -> Vec<Duration> {
    let mut out = vec![];
    for t in 0..trials {
        // Priorities: the master (3) and two others (2, 1); kill the master.
        let ids = [format!("m{t}"), format!("b{t}"), format!("c{t}")];
        // The first candidate is master before the others campaign: without preemption,
        // whoever campaigns first is master, so starting all three at once would race.
        let mut cands = vec![spawn(addr, &ids[0], 3, ttl_ms)];
        seen(&cands[0], &ids[0], Duration::from_secs(10)).expect("master designated");
        cands.push(spawn(addr, &ids[1], 2, ttl_ms));
        cands.push(spawn(addr, &ids[2], 1, ttl_ms));
        for c in &cands[1..] {
            seen(c, &ids[0], Duration::from_secs(10)).expect("master known");
        }
        std::thread::sleep(Duration::from_millis(200));
        let t0 = now_ns();
        cands[0].child.kill().unwrap();
        let mut worst = 0u128;
        for c in &cands[1..] {
            let at = seen(c, &ids[1], Duration::from_millis(ttl_ms * 3 + 5000))
                .expect("new master seen");
            worst = worst.max(at.saturating_sub(t0));
        }
        out.push(Duration::from_nanos(worst as u64));
        for c in &mut cands {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }
    out
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Two clients take turns: the master resigns, the other candidate (waiting) becomes master;
/// the time runs from `resign` to that candidate's client seeing itself master. The one that
/// resigned then campaigns again and waits. (No preemption: a preempting candidate is
/// designated only after the old master's TTL, see `crate::election`.)
fn resign_handover(addr: &str, n: usize) -> Vec<Duration> {
    let connect =
        || Client::connect(ClientConfig::new([addr]).session_ttl(Duration::from_secs(5))).unwrap();
    let clients = [connect(), connect()];
    let (tx, rx) = mpsc::channel::<(usize, String, Instant)>();
    let _subs: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let tx = tx.clone();
            c.subscribe(move |ev| {
                if let Event::MasterChanged {
                    master: Some(m), ..
                } = ev
                {
                    let _ = tx.send((k, m.id, Instant::now()));
                }
            })
            .unwrap()
        })
        .collect();
    // Waits until client `k` sees `id` as master; returns when.
    let until_master = |k: usize, id: &str| loop {
        let (who, m, at) = rx.recv_timeout(Duration::from_secs(5)).expect("a master");
        if who == k && m == id {
            return at;
        }
    };
    let mut master = clients[0]
        .campaign("handover", Candidacy::new("c0-0", 1))
        .unwrap();
    until_master(0, "c0-0");
    let (mut m, mut w) = (0usize, 1usize);
    let mut waiting = clients[w]
        .campaign("handover", Candidacy::new(format!("c{w}-0"), 1))
        .unwrap();
    let mut out = vec![];
    for i in 1..=n {
        let next = format!("c{w}-{}", i - 1);
        let t0 = Instant::now();
        master.resign().unwrap();
        out.push(until_master(w, &next) - t0);
        // The one that resigned waits behind the new master.
        std::mem::swap(&mut m, &mut w);
        master = waiting;
        waiting = clients[w]
            .campaign("handover", Candidacy::new(format!("c{w}-{i}"), 1))
            .unwrap();
    }
    let _ = m;
    drop(waiting);
    drop(master);
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("candidate") {
        candidate(
            &args[2],
            &args[3],
            args[4].parse().unwrap(),
            args[5].parse().unwrap(),
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("tenure-elect-bench-{}", std::process::id()));
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        durability: Durability::Fsync,
        ..Default::default()
    })
    .unwrap();
    let addr = server.local_addr().to_string();
    println!("| measurement | trials | mean | p50 | max |");
    println!("|---|---|---|---|---|");
    for (ttl, trials) in [(1000u64, 10usize), (10_000, 3)] {
        let mut v = failover(&addr, ttl, trials);
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        let p50 = pct(&mut v, 0.5);
        let max = *v.iter().max().unwrap();
        println!(
            "| kill -9 of the master -> every candidate's master_changed, TTL {} s | {trials} | {mean:.1?} | {p50:.1?} | {max:.1?} |",
            ttl / 1000
        );
    }
    let mut h = resign_handover(&addr, 300);
    let p50 = pct(&mut h, 0.5);
    let p99 = pct(&mut h, 0.99);
    let max = *h.iter().max().unwrap();
    println!(
        "| resign -> next candidate's master_changed (in-process, fsync) | {} | {:.1?} | {p50:.1?} | {max:.1?} (p99 {p99:.1?}, target <= 2 ms: {}) |",
        h.len(),
        h.iter().sum::<Duration>() / h.len() as u32,
        if p99 <= Duration::from_millis(2) { "met" } else { "NOT met" }
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
