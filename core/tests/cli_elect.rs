//! Multi-process tests of `tenure elect`: real server, real candidate processes, killed and
//! paused. Every wait is bounded.

mod common;
use common::{tmpdir, wait_exit, Proc};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tenure");

fn signal(pid: i32, sig: i32) {
    // SAFETY: signalling a process we started.
    unsafe { libc::kill(pid, sig) };
}

fn alive(pid: i32) -> bool {
    // SAFETY: probing a pid; reap zombies of our own children is not needed for grandchildren.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn serve(dir: &Path) -> (Proc, String) {
    let mut c = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--durability",
            "none",
            "--data",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.trim().is_empty(), "server did not print its address");
    (Proc(c), line.trim().to_string())
}

/// A candidate whose command writes its pid and epoch to `dir/<id>` and then sleeps.
fn candidate(addr: &str, dir: &Path, id: &str, prio: &str, extra: &[&str]) -> Proc {
    let out = dir.join(id);
    let script = format!(
        "echo $$ $TENURE_MASTER_EPOCH $(date +%s%N) > {}.tmp && mv {0}.tmp {0}; exec sleep 60",
        out.display()
    );
    Proc(
        Command::new(BIN)
            .args([
                "elect",
                "--endpoints",
                addr,
                "--ttl",
                "1",
                "--id",
                id,
                "--priority",
                prio,
            ])
            .args(extra)
            .args(["jobs", "--", "sh", "-c", &script])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// (pid of the candidate's command, epoch) once it became master.
fn became_master(dir: &Path, id: &str, limit: Duration) -> Option<(i32, u64)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = std::fs::read_to_string(dir.join(id)) {
            let mut it = s.split_whitespace();
            return Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn observer(addr: &str) -> (Proc, Receiver<String>) {
    let mut c = Command::new(BIN)
        .args(["elect", "--endpoints", addr, "--observe", "jobs"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = c.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (Proc(c), rx)
}

fn observed_until(rx: &Receiver<String>, seen: &mut Vec<String>, id: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !seen.last().is_some_and(|l| l.split(' ').nth(1) == Some(id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("observer did not report {id} within {limit:?}: {seen:?}"),
        }
    }
}

#[test]
fn priorities_kill_9_failover_sigstop_and_observer_epochs() {
    let dir = tmpdir("elect-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let (_srv, addr) = serve(&dir.join("data"));
    let (_obs, obs_rx) = observer(&addr);
    let mut seen = vec![];

    let mut one = candidate(&addr, &dir, "one", "1", &[]);
    let (one_cmd, e1) =
        became_master(&dir, "one", Duration::from_secs(10)).expect("lone candidate is master");
    observed_until(&obs_rx, &mut seen, "one", Duration::from_secs(5));

    let mut two = candidate(&addr, &dir, "two", "2", &[]);
    let mut three = candidate(&addr, &dir, "three", "3", &[]);
    assert!(
        became_master(&dir, "three", Duration::from_millis(500)).is_none(),
        "no takeover without preempt"
    );
    assert!(became_master(&dir, "two", Duration::from_millis(10)).is_none());

    // kill -9 the master: the highest live priority takes over within TTL plus a small bound.
    let killed = Instant::now();
    one.0.kill().unwrap();
    one.0.wait().unwrap();
    signal(one_cmd, libc::SIGKILL); // its orphaned command
    let (three_cmd, e3) =
        became_master(&dir, "three", Duration::from_secs(5)).expect("three takes over");
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(1600),
        "failover took {took:?} at TTL 1 s"
    );
    assert!(e3 > e1);
    observed_until(&obs_rx, &mut seen, "three", Duration::from_secs(5));

    // SIGSTOP the master past its TTL: two takes over; three, resumed, stops its command
    // and exits 75.
    signal(three.0.id() as i32, libc::SIGSTOP);
    let (two_cmd, e2) = became_master(&dir, "two", Duration::from_secs(5)).expect("two takes over");
    assert!(e2 > e3);
    signal(three.0.id() as i32, libc::SIGCONT);
    assert_eq!(wait_exit(&mut three.0, Duration::from_secs(5)), 75);
    let mut err = String::new();
    three
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("no longer master"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(three_cmd) {
        assert!(Instant::now() < deadline, "three's command still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    observed_until(&obs_rx, &mut seen, "two", Duration::from_secs(5));

    // The observer printed increasing epochs.
    let epochs: Vec<u64> = seen
        .iter()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    // A higher priority with --preempt takes over; the old master exits 75.
    let _nine = candidate(&addr, &dir, "nine", "9", &["--preempt"]);
    became_master(&dir, "nine", Duration::from_secs(5)).expect("preempt takes over");
    assert_eq!(wait_exit(&mut two.0, Duration::from_secs(5)), 75);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(two_cmd) {
        assert!(Instant::now() < deadline, "two's command still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn command_exit_resigns_and_passes_the_status() {
    let dir = tmpdir("elect-exit");
    std::fs::create_dir_all(&dir).unwrap();
    let (_srv, addr) = serve(&dir.join("data"));
    let st = Command::new(BIN)
        .args([
            "elect",
            "--endpoints",
            &addr,
            "--id",
            "a",
            "--priority",
            "1",
            "e",
            "--",
            "sh",
            "-c",
        ])
        .arg("test -n \"$TENURE_MASTER_EPOCH\" && exit 5")
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(5));
    let st = Command::new(BIN)
        .args([
            "elect",
            "--endpoints",
            "127.0.0.1:1",
            "--id",
            "a",
            "--priority",
            "1",
            "e",
            "--",
            "true",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(69));
    for bad in [
        vec!["elect", "--id", "a", "e", "--", "true"],
        vec!["elect", "--priority", "x", "--id", "a", "e", "--", "true"],
        vec!["elect", "--priority", "1", "e", "--", "true"],
        vec!["elect", "--id", "a", "--priority", "1", "e"],
    ] {
        let o = Command::new(BIN)
            .args(&bad)
            .env("TENURE_ENDPOINTS", &addr)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(64), "{bad:?}");
    }
}

#[test]
fn sigterm_to_the_master_reaches_its_command_and_it_resigns_only_after() {
    let dir = tmpdir("elect-sig");
    std::fs::create_dir_all(&dir).unwrap();
    let (_srv, addr) = serve(&dir.join("data"));
    let done = dir.join("done");
    // The master's command: on SIGTERM it takes 300 ms, then writes when it is done.
    let script = format!(
        "echo $$ $TENURE_MASTER_EPOCH > {m}.tmp && mv {m}.tmp {m}; \
         trap 'sleep 0.3; date +%s%N > {d}.tmp; mv {d}.tmp {d}; exit 0' TERM; \
         while :; do sleep 0.02; done",
        m = dir.join("one").display(),
        d = done.display()
    );
    let mut one = Proc(
        Command::new(BIN)
            .args(["elect", "--endpoints", &addr, "--ttl", "5", "--id", "one"])
            .args(["--priority", "2", "jobs", "--", "sh", "-c", &script])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    became_master(&dir, "one", Duration::from_secs(10)).expect("one is master");
    let _two = candidate(&addr, &dir, "two", "1", &[]);
    std::thread::sleep(Duration::from_millis(300));
    signal(one.0.id() as i32, libc::SIGTERM);
    assert_eq!(wait_exit(&mut one.0, Duration::from_secs(10)), 0);
    let done_ns: u128 = std::fs::read_to_string(&done)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // two is designated after one resigned, which is after one's command was done.
    became_master(&dir, "two", Duration::from_secs(5)).expect("two takes over");
    // When two's command started, by the same clock as `done` (a file's modification time
    // is kept by a coarser clock, a few milliseconds behind: the comparison flapped).
    let two_at: u128 = std::fs::read_to_string(dir.join("two"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .and_then(|t| t.parse().ok())
        .expect("two's command wrote when it started");
    assert!(
        done_ns < two_at,
        "two became master before one's command was done ({} ns)",
        done_ns as i128 - two_at as i128
    );
}
