//! Multi-process tests: `tenure serve` and `tenure lock` as real processes, killed, paused
//! and restarted. Every wait is bounded.

mod common;
use common::{first_line, tmpdir, wait_exit, wait_file, Proc};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tenure");

fn signal(c: &Child, sig: i32) {
    // SAFETY: signalling a child we own.
    unsafe { libc::kill(c.id() as i32, sig) };
}

/// Starts `tenure serve`; returns the process and its address (its first stdout line).
fn serve(dir: &Path, listen: &str) -> (Proc, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Command::new(BIN)
            .args(["serve", "--listen", listen, "--data"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        match first_line(&mut c, Duration::from_secs(10)) {
            Some(l) => return (Proc(c), l),
            None => {
                // The port may still be held by the previous server: retry.
                let _ = c.kill();
                let _ = c.wait();
                assert!(
                    Instant::now() < deadline,
                    "tenure serve did not start on {listen}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// `tenure lock` started as a background job of a script would be (`tenure lock ... &` in a
/// non-interactive shell: SIGINT ignored), with SIGHUP at its default whatever this test
/// inherited (CI may run under `nohup`): signals sent to it must still reach its command.
fn lock_cmd(addr: &str, extra: &[&str], name: &str, cmd: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(BIN);
    c.arg("lock")
        .args(["--endpoints", addr])
        .args(extra)
        .arg(name)
        .arg("--")
        .args(cmd);
    // SAFETY: only async-signal-safe calls (signal) between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    c
}

fn status(addr: &str) -> String {
    let o = Command::new(BIN)
        .args(["status", "--endpoints", addr])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn serve_stops_cleanly_on_sigterm_and_lock_passes_exit_status_and_env() {
    let dir = tmpdir("cli-basic");
    let (mut srv, addr) = serve(&dir, "127.0.0.1:0");
    let out = dir.join("env.txt");
    let script = format!(
        "echo \"$TENURE_LOCK_NAME $TENURE_FENCING_TOKEN\" > {}; exit 7",
        out.display()
    );
    let mut c = lock_cmd(&addr, &[], "jobs/a", &["sh", "-c", &script])
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut c, Duration::from_secs(10)), 7);
    let env = std::fs::read_to_string(&out).unwrap();
    let mut it = env.split_whitespace();
    assert_eq!(it.next(), Some("jobs/a"));
    assert!(it.next().unwrap().parse::<u64>().unwrap() >= 1);
    // Released after the command: the lock is free.
    assert!(status(&addr).contains("locks       0"), "{}", status(&addr));
    signal(&srv.0, libc::SIGTERM);
    assert_eq!(wait_exit(&mut srv.0, Duration::from_secs(5)), 0);
}

#[test]
fn exit_statuses_for_timeout_unreachable_and_usage() {
    let dir = tmpdir("cli-exit");
    let (_srv, addr) = serve(&dir, "127.0.0.1:0");
    let mut holder = lock_cmd(&addr, &[], "busy", &["sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status(&addr).contains("\"busy\"") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    let mut w = lock_cmd(&addr, &["--timeout", "0.3"], "busy", &["true"])
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut w, Duration::from_secs(10)), 3);
    assert!(t.elapsed() < Duration::from_secs(5));
    let mut u = lock_cmd("127.0.0.1:1", &[], "x", &["true"])
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut u, Duration::from_secs(10)), 69);
    for bad in [
        vec!["lock", "--timeout", "-1", "x", "--", "true"],
        vec!["lock", "--timeout", "NaN", "x", "--", "true"],
        vec!["lock", "--ttl", "0", "x", "--", "true"],
        vec!["lock", "", "--", "true"],
        vec!["lock", "x"],
        vec!["serve", "--durability", "sometimes"],
        vec!["frobnicate"],
    ] {
        let o = Command::new(BIN)
            .args(&bad)
            .env("TENURE_ENDPOINTS", &addr)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(64), "{bad:?}");
        assert!(!o.stderr.is_empty(), "{bad:?} says why");
    }
    signal(&holder, libc::SIGTERM);
    let _ = wait_exit(&mut holder, Duration::from_secs(10));
}

#[test]
fn contending_processes_never_overlap_and_tokens_increase() {
    let dir = tmpdir("cli-contend");
    let (_srv, addr) = serve(&dir, "127.0.0.1:0");
    let log = dir.join("log.txt");
    let script = format!(
        "echo start $TENURE_FENCING_TOKEN >> {0}; sleep 0.05; echo end $TENURE_FENCING_TOKEN >> {0}",
        log.display()
    );
    let mut kids: Vec<Child> = (0..6)
        .map(|_| {
            lock_cmd(&addr, &["--ttl", "2"], "shared", &["sh", "-c", &script])
                .spawn()
                .unwrap()
        })
        .collect();
    for k in &mut kids {
        assert_eq!(wait_exit(k, Duration::from_secs(30)), 0);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12);
    let mut last = 0;
    for pair in lines.chunks(2) {
        let s: Vec<&str> = pair[0].split(' ').collect();
        let e: Vec<&str> = pair[1].split(' ').collect();
        assert_eq!((s[0], e[0]), ("start", "end"), "overlap: {text}");
        assert_eq!(s[1], e[1], "overlap: {text}");
        let t: u64 = s[1].parse().unwrap();
        assert!(t > last, "tokens increase: {text}");
        last = t;
    }
}

#[test]
fn a_holder_paused_past_its_ttl_loses_the_lock_and_its_command_is_stopped() {
    let dir = tmpdir("cli-pause");
    let (_srv, addr) = serve(&dir, "127.0.0.1:0");
    let child_pid = dir.join("holder-child.pid");
    let script = format!("echo $$ > {}; exec sleep 60", child_pid.display());
    let mut holder = lock_cmd(&addr, &["--ttl", "1"], "p", &["sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid: i32 = wait_file(&child_pid, Duration::from_secs(10))
        .trim()
        .parse()
        .unwrap();
    let granted = dir.join("waiter.txt");
    let wscript = format!("echo $TENURE_FENCING_TOKEN > {}", granted.display());
    let mut waiter = lock_cmd(&addr, &["--ttl", "5"], "p", &["sh", "-c", &wscript])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !granted.exists(),
        "waiter must wait while the holder is alive"
    );
    let stopped = Instant::now();
    signal(&holder, libc::SIGSTOP);
    // The server expires the paused holder after its TTL and grants the waiter.
    let tok = wait_file(&granted, Duration::from_secs(10));
    let grant_after = stopped.elapsed();
    // The last heartbeat reached the server at most TTL/3 before the pause, so the server
    // cannot have expired the holder earlier than 2/3 of the TTL after it.
    assert!(
        grant_after >= Duration::from_millis(640),
        "granted {grant_after:?} after the pause"
    );
    assert!(tok.trim().parse::<u64>().unwrap() >= 2);
    assert_eq!(wait_exit(&mut waiter, Duration::from_secs(10)), 0);
    signal(&holder, libc::SIGCONT);
    // On resuming, the holder finds its lease over: it reports the loss, stops CMD, exits 75.
    assert_eq!(wait_exit(&mut holder, Duration::from_secs(10)), 75);
    let mut err = String::new();
    holder
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("session_expired"), "{err}");
    // SAFETY: probing whether a pid exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "the holder's command was stopped");
}

/// A TCP proxy that stops forwarding while `frozen` is set: a stalled network path.
fn freezing_proxy(target: String) -> (String, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let frozen = Arc::new(AtomicBool::new(false));
    let f = frozen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let up = TcpStream::connect(&target).unwrap();
            for (mut a, mut b) in [(s.try_clone().unwrap(), up.try_clone().unwrap()), (up, s)] {
                let f = f.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = a.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        while f.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        if b.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
    });
    (addr, frozen)
}

#[test]
fn a_holder_whose_network_stalls_is_told_before_the_waiter_is_granted() {
    let dir = tmpdir("cli-stall");
    let (_srv, addr) = serve(&dir, "127.0.0.1:0");
    let (paddr, frozen) = freezing_proxy(addr.clone());
    let mut holder = lock_cmd(&paddr, &["--ttl", "1"], "s", &["sleep", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status(&addr).contains("\"s\"") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let granted = dir.join("granted");
    let wscript = format!("date +%s%N > {}", granted.display());
    let mut waiter = lock_cmd(&addr, &["--ttl", "5"], "s", &["sh", "-c", &wscript])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    frozen.store(true, Ordering::Release);
    // The holder's stderr line about the loss arrives when it is told.
    let err = holder.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = BufReader::new(err).read_line(&mut l);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let _ = tx.send((now, l));
    });
    let (told_ns, line) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("holder told");
    assert!(line.contains("lost"), "{line}");
    assert_eq!(wait_exit(&mut holder, Duration::from_secs(10)), 75);
    let granted_ns: u128 = wait_file(&granted, Duration::from_secs(10))
        .trim()
        .parse()
        .unwrap();
    assert!(
        told_ns < granted_ns,
        "told at {told_ns}, waiter granted at {granted_ns}"
    );
    assert_eq!(wait_exit(&mut waiter, Duration::from_secs(10)), 0);
}

#[test]
fn kill_9_and_restart_keeps_the_lock_and_a_wiped_directory_is_data_lost() {
    let dir = tmpdir("cli-kill");
    let (mut srv, addr) = serve(&dir, "127.0.0.1:0");
    let mut holder = lock_cmd(&addr, &["--ttl", "4"], "k", &["sleep", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let s = status(&addr);
        if s.contains("\"k\"") {
            break s;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    };
    let token_line = before
        .lines()
        .find(|l| l.contains("\"k\""))
        .unwrap()
        .to_string();
    srv.0.kill().unwrap(); // SIGKILL
    srv.0.wait().unwrap();
    let (mut srv, addr2) = serve(&dir, &addr);
    assert_eq!(addr, addr2);
    let after = status(&addr);
    let after_line = after
        .lines()
        .find(|l| l.contains("\"k\""))
        .expect("lock survives kill -9")
        .to_string();
    assert_eq!(
        token_line.split("waiters").next(),
        after_line.split("waiters").next(),
        "same holder and token"
    );
    let mut w = lock_cmd(&addr, &["--timeout", "0.3"], "k", &["true"])
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut w, Duration::from_secs(10)), 3, "still held");
    assert!(
        holder.try_wait().unwrap().is_none(),
        "holder kept its lock through the restart"
    );
    // Now lose the data: kill, wipe, restart. The holder is told data_lost and exits 75.
    srv.0.kill().unwrap();
    srv.0.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let (_srv, _) = serve(&dir, &addr);
    assert_eq!(wait_exit(&mut holder, Duration::from_secs(10)), 75);
    let mut err = String::new();
    holder
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("data_lost"), "{err}");
}

#[test]
fn garbage_to_a_server_process_leaves_it_serving() {
    let dir = tmpdir("cli-garbage");
    let (mut srv, addr) = serve(&dir, "127.0.0.1:0");
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).unwrap();
        let junk: Vec<u8> = (0..fastrand::usize(1..4096))
            .map(|_| fastrand::u8(..))
            .collect();
        let _ = s.write_all(&junk);
    }
    let mut c = lock_cmd(&addr, &[], "after-garbage", &["true"])
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut c, Duration::from_secs(10)), 0);
    assert!(srv.0.try_wait().unwrap().is_none());
}

#[test]
fn revoke_stops_the_holders_command_with_reason_released() {
    let dir = tmpdir("cli-revoke");
    let (_srv, addr) = serve(&dir, "127.0.0.1:0");
    let mut holder = lock_cmd(&addr, &[], "rv", &["sleep", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status(&addr).contains("\"rv\"") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = Command::new(BIN)
        .args(["revoke", "--endpoints", &addr, "rv"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(wait_exit(&mut holder, Duration::from_secs(10)), 75);
    let mut err = String::new();
    holder
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("released"), "{err}");
    let o = Command::new(BIN)
        .args(["revoke", "--endpoints", &addr, "rv"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "nothing to revoke");
}

#[test]
fn a_server_paused_for_less_than_the_ttl_costs_no_lock() {
    let dir = tmpdir("cli-hung");
    let (srv, addr) = serve(&dir, "127.0.0.1:0");
    let mut holder = lock_cmd(&addr, &["--ttl", "3"], "h", &["sleep", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let s = status(&addr);
        if s.contains("\"h\"") {
            break s;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    };
    // A hung server: heartbeats go unanswered, the client enters jeopardy and retries
    // (over new connections once the old one stays silent).
    signal(&srv.0, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&srv.0, libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(holder.try_wait().unwrap().is_none(), "holder kept its lock");
    let after = status(&addr);
    let line = |s: &str| {
        s.lines()
            .find(|l| l.contains("\"h\""))
            .map(|l| l.split("waiters").next().unwrap().to_string())
    };
    assert_eq!(line(&before), line(&after), "same holder and token");
    signal(&holder, libc::SIGTERM);
    let _ = wait_exit(&mut holder, Duration::from_secs(10));
}

/// A command for `tenure lock` that traps `sig`'s signals: it writes `up` when started, and on
/// the signal waits 300 ms, writes the time it is done (ns) and exits 0.
fn trapping_script(dir: &Path, tag: &str) -> String {
    let (up, done) = (
        dir.join(format!("{tag}.up")),
        dir.join(format!("{tag}.done")),
    );
    format!(
        "trap 'sleep 0.3; date +%s%N > {done}.tmp; mv {done}.tmp {done}; exit 0' TERM INT HUP; \
         echo up > {up}; while :; do sleep 0.02; done",
        done = done.display(),
        up = up.display()
    )
}

#[test]
fn signals_to_tenure_lock_reach_the_command_and_the_lock_outlives_it() {
    let dir = tmpdir("cli-signals");
    std::fs::create_dir_all(&dir).unwrap();
    let (_srv, addr) = serve(&dir.join("data"), "127.0.0.1:0");
    for (tag, sig) in [
        ("term", libc::SIGTERM),
        ("int", libc::SIGINT),
        ("hup", libc::SIGHUP),
    ] {
        let name = format!("sig/{tag}");
        let script = trapping_script(&dir, tag);
        let mut holder = lock_cmd(&addr, &["--ttl", "5"], &name, &["sh", "-c", &script])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_file(&dir.join(format!("{tag}.up")), Duration::from_secs(10));
        let granted = dir.join(format!("{tag}.granted"));
        let wscript = format!("date +%s%N > {}", granted.display());
        let mut waiter = lock_cmd(&addr, &["--ttl", "5"], &name, &["sh", "-c", &wscript])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        signal(&holder, sig);
        // The command handled the signal and exited 0: so does tenure.
        assert_eq!(wait_exit(&mut holder, Duration::from_secs(10)), 0, "{tag}");
        assert_eq!(wait_exit(&mut waiter, Duration::from_secs(10)), 0, "{tag}");
        let done: u128 = wait_file(&dir.join(format!("{tag}.done")), Duration::from_secs(1))
            .trim()
            .parse()
            .unwrap();
        let at: u128 = wait_file(&granted, Duration::from_secs(1))
            .trim()
            .parse()
            .unwrap();
        assert!(
            done < at,
            "{tag}: the next holder was granted before the command finished"
        );
    }
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace_then_the_lock_released() {
    let dir = tmpdir("cli-grace");
    std::fs::create_dir_all(&dir).unwrap();
    let (_srv, addr) = serve(&dir.join("data"), "127.0.0.1:0");
    let up = dir.join("up");
    // It ignores SIGTERM, and so does the child it starts (the disposition is inherited).
    let script = format!("trap '' TERM; echo $$ > {}; sleep 60 & wait", up.display());
    let mut holder = lock_cmd(&addr, &["--grace", "0.5"], "grace", &["sh", "-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid: i32 = wait_file(&up, Duration::from_secs(10))
        .trim()
        .parse()
        .unwrap();
    let t = Instant::now();
    signal(&holder, libc::SIGTERM);
    // SIGKILL after the grace: 128 + 9.
    assert_eq!(wait_exit(&mut holder, Duration::from_secs(10)), 137);
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t.elapsed()
    );
    // Nothing of the command's process group is left (once its orphans are reaped).
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: probing a process group id.
    while unsafe { libc::kill(-pid, 0) } == 0 {
        assert!(Instant::now() < deadline, "the command's group outlived it");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(status(&addr).contains("locks       0"), "{}", status(&addr));
}

#[test]
fn a_signal_while_waiting_for_the_lock_ends_the_wait_and_leaves_nothing_held() {
    let dir = tmpdir("cli-sigwait");
    std::fs::create_dir_all(&dir).unwrap();
    let (_srv, addr) = serve(&dir.join("data"), "127.0.0.1:0");
    let up = dir.join("up");
    let script = format!("echo up > {}; sleep 60", up.display());
    let mut holder = lock_cmd(&addr, &[], "busy", &["sh", "-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_file(&up, Duration::from_secs(10));
    let mut waiter = lock_cmd(&addr, &[], "busy", &["true"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(&waiter, libc::SIGTERM);
    assert_eq!(wait_exit(&mut waiter, Duration::from_secs(5)), 143);
    let st = status(&addr);
    assert!(st.contains("waiters []"), "the waiter was withdrawn: {st}");
    signal(&holder, libc::SIGKILL);
    let _ = holder.wait();
}
