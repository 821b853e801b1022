//! Multi-process tests of a replicated group: three `tenure serve` processes, killed with
//! SIGKILL, wiped, cut off from each other by proxies, restarted; real clients. Every wait
//! is bounded.

mod common;
use common::{first_line, tmpdir, wait_for, Proc};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenure::client::Candidacy;
use tenure::{Client, ClientConfig, Event};

const BIN: &str = env!("CARGO_BIN_EXE_tenure");

/// A free port on loopback (bound, then let go: the member binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A proxy in front of a member: while `cut` is set, every connection through it is closed
/// and new ones are accepted and closed at once (the member is unreachable that way).
struct Cut {
    addr: String,
    cut: Arc<AtomicBool>,
}

fn cut_proxy(target: String) -> Cut {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let cut = Arc::new(AtomicBool::new(false));
    let c = cut.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            if c.load(Ordering::Acquire) {
                continue; // dropped: closed at once
            }
            let Ok(up) = TcpStream::connect(&target) else {
                continue;
            };
            for (mut a, mut b) in [(s.try_clone().unwrap(), up.try_clone().unwrap()), (up, s)] {
                let c = c.clone();
                std::thread::spawn(move || {
                    let _ = a.set_read_timeout(Some(Duration::from_millis(20)));
                    let mut buf = [0u8; 16384];
                    loop {
                        if c.load(Ordering::Acquire) {
                            break;
                        }
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
    Cut { addr, cut }
}

/// A group of three members on loopback. Member `i` listens on `listen[i]`; the group knows
/// it at `advertised[i]` (its own proxy when the group is built with proxies).
struct Group {
    dir: PathBuf,
    listen: Vec<String>,
    advertised: Vec<String>,
    procs: Vec<Option<Proc>>,
    proxies: Vec<Cut>,
}

impl Group {
    fn new(tag: &str, with_proxies: bool) -> Group {
        let dir = tmpdir(tag);
        std::fs::create_dir_all(&dir).unwrap();
        let listen: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let proxies: Vec<Cut> = if with_proxies {
            listen.iter().map(|l| cut_proxy(l.clone())).collect()
        } else {
            vec![]
        };
        let advertised = if with_proxies {
            proxies.iter().map(|p| p.addr.clone()).collect()
        } else {
            listen.clone()
        };
        let mut g = Group {
            dir,
            listen,
            advertised,
            procs: vec![None, None, None],
            proxies,
        };
        for i in 0..3 {
            g.start(i, true);
        }
        g
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.join(format!("m{}", i + 1))
    }

    fn cluster(&self) -> String {
        (0..3)
            .map(|i| format!("{}={}", i + 1, self.advertised[i]))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` (again), with `--bootstrap` or not.
    fn start(&mut self, i: usize, bootstrap: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut cmd = Command::new(BIN);
            cmd.args(["serve", "--id", &(i + 1).to_string(), "--listen"])
                .arg(&self.listen[i])
                .arg("--data")
                .arg(self.data(i))
                .args(["--cluster", &self.cluster()]);
            if bootstrap {
                cmd.arg("--bootstrap");
            }
            let log = std::fs::File::create(self.dir.join(format!("m{}.log", i + 1))).unwrap();
            let mut c = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
            if first_line(&mut c, Duration::from_secs(10)).is_some() {
                self.procs[i] = Some(Proc(c));
                return;
            }
            // The port may still be held by the previous process: retry.
            let _ = c.kill();
            let _ = c.wait();
            assert!(Instant::now() < deadline, "member {} did not start", i + 1);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL of member `i`.
    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.listen.clone()
    }

    /// The status as the group's leader gives it, within `limit`.
    fn status(&self, limit: Duration) -> tenure::proto::StatusInfo {
        let deadline = Instant::now() + limit;
        loop {
            let mut cfg = ClientConfig::new(self.endpoints());
            cfg.reopen = false;
            if let Ok(c) = Client::connect(cfg) {
                if let Ok(st) = c.status() {
                    if st.leader.is_some() {
                        return st;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The index (0..3) of the leader.
    fn leader(&self) -> usize {
        let st = self.status(Duration::from_secs(10));
        let l = st.leader.expect("a leader");
        self.advertised
            .iter()
            .position(|a| *a == l.address)
            .expect("the leader is a member")
    }

    fn token_file(&self, i: usize) -> String {
        std::fs::read_to_string(self.data(i).join("incarnation")).unwrap_or_default()
    }
}

fn client(g: &Group, ttl: Duration) -> (Client, Arc<Mutex<Vec<Event>>>) {
    let c = Client::connect(ClientConfig::new(g.endpoints()).session_ttl(ttl)).unwrap();
    let events = Arc::new(Mutex::new(vec![]));
    let e = events.clone();
    std::mem::forget(c.subscribe(move |ev| e.lock().unwrap().push(ev)).unwrap());
    (c, events)
}

fn lost_anything(events: &Mutex<Vec<Event>>) -> Vec<Event> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::LockLost { .. } | Event::SessionExpired | Event::DataLost { .. }
            )
        })
        .cloned()
        .collect()
}

#[test]
fn a_leader_killed_loses_no_session_lock_or_mastership() {
    let mut g = Group::new("cluster-kill", false);
    let (c, events) = client(&g, Duration::from_secs(3));
    let lock = c.lock("held", Duration::from_secs(5)).unwrap();
    let token = lock.fencing_token();
    let e = c.campaign("sched", Candidacy::new("me", 1)).unwrap();
    wait_for(Duration::from_secs(5), "mastership", || e.is_master());
    let epoch = e.master_epoch();
    let leader = g.leader();
    let killed = Instant::now();
    g.kill(leader);
    // The next lock of a client locking in a loop: the failover as users see it.
    let next = loop {
        if let Ok(Some(l)) = c.try_lock("next") {
            break l;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no lock within 10 s of the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let failover = killed.elapsed();
    eprintln!("failover: the next lock {failover:?} after the leader's SIGKILL");
    assert!(
        next.fencing_token() > token,
        "tokens only grow across leaders"
    );
    assert!(lock.is_held(), "the lock is kept");
    assert!(e.is_master(), "the mastership is kept");
    assert_eq!(e.master_epoch(), epoch);
    // Past a TTL, nothing was lost either.
    std::thread::sleep(Duration::from_secs(3));
    assert!(lock.is_held() && e.is_master());
    assert_eq!(lost_anything(&events), vec![], "nothing reported lost");
    let st = g.status(Duration::from_secs(5));
    let held = st.locks.iter().find(|l| l.name == "held").unwrap();
    assert_eq!(held.token, token);
    // The killed member comes back and catches up.
    g.start(leader, false);
    drop(next);
    wait_for(Duration::from_secs(10), "three members again", || {
        let st = g.status(Duration::from_secs(5));
        st.members
            .iter()
            .filter(|m| m.role != "unreachable")
            .count()
            == 3
    });
}

#[test]
fn a_grant_acknowledged_before_the_leader_is_killed_survives() {
    let mut g = Group::new("cluster-ack", false);
    let (c, _events) = client(&g, Duration::from_secs(3));
    for round in 0..3 {
        let name = format!("ack{round}");
        let l = c.lock(&name, Duration::from_secs(5)).unwrap();
        // Killed right after the grant reached the client.
        let leader = g.leader();
        g.kill(leader);
        let st = g.status(Duration::from_secs(10));
        let rec = st.locks.iter().find(|x| x.name == name);
        assert_eq!(
            rec.map(|x| x.token),
            Some(l.fencing_token()),
            "round {round}: the acknowledged grant survived the kill"
        );
        assert!(l.is_held());
        g.start(leader, false);
    }
}

#[test]
fn an_isolated_leader_steps_down_and_the_others_elect() {
    let g = Group::new("cluster-isolate", true);
    let (c, events) = client(&g, Duration::from_secs(4));
    let lock = c.lock("kept", Duration::from_secs(5)).unwrap();
    let leader = g.leader();
    // Nothing reaches the leader any more through the group's addresses.
    g.proxies[leader].cut.store(true, Ordering::Release);
    let cut = Instant::now();
    // The others elect a leader among themselves.
    let new = loop {
        let others: Vec<String> = (0..3)
            .filter(|i| *i != leader)
            .map(|i| g.listen[i].clone())
            .collect();
        let mut cfg = ClientConfig::new(others);
        cfg.reopen = false;
        if let Ok(x) = Client::connect(cfg) {
            if let Ok(st) = x.status() {
                if let Some(l) = st.leader {
                    if l.address != g.advertised[leader] {
                        break l;
                    }
                }
            }
        }
        assert!(cut.elapsed() < Duration::from_secs(10), "no new leader");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "a new leader ({}) {:?} after the cut",
        new.id,
        cut.elapsed()
    );
    // The isolated one no longer acts as leader: asked directly, it sends clients away.
    let mut raw = common::Raw::connect(&g.listen[leader]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        raw.req(0, 1, tenure::proto::Request::Open { ttl_ms: 1000 });
        match raw.recv() {
            Some(tenure::proto::ServerMsg::Reply {
                result: Err(tenure::proto::ErrorReply::NotLeader { .. }),
                ..
            }) => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "still answers as leader: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    // The client, which could reach every member directly, kept its lock.
    assert!(lock.is_held());
    assert_eq!(lost_anything(&events), vec![]);
    g.proxies[leader].cut.store(false, Ordering::Release);
}

#[test]
fn a_wiped_member_rejoins_with_the_same_incarnation_and_all_wiped_is_data_lost() {
    let mut g = Group::new("cluster-wipe", false);
    let (c, events) = client(&g, Duration::from_secs(3));
    let lock = c.lock("w", Duration::from_secs(5)).unwrap();
    let token = g.token_file(0);
    assert!(!token.is_empty());
    // One member (not the leader) loses its disk and comes back without --bootstrap.
    let leader = g.leader();
    let wiped = (leader + 1) % 3;
    g.kill(wiped);
    std::fs::remove_dir_all(g.data(wiped)).unwrap();
    g.start(wiped, false);
    wait_for(Duration::from_secs(10), "the wiped member's token", || {
        g.token_file(wiped) == token
    });
    // It caught up: with the old leader gone, the group (it and the third) still has the lock.
    wait_for(Duration::from_secs(10), "caught up", || {
        let st = g.status(Duration::from_secs(5));
        st.members.iter().all(|m| m.role != "unreachable")
    });
    std::thread::sleep(Duration::from_millis(500));
    g.kill(leader);
    let st = g.status(Duration::from_secs(10));
    assert_eq!(st.locks.len(), 1, "the lock survived in the rejoined group");
    assert!(lock.is_held());
    g.start(leader, false);
    // Every member loses its disk: without --bootstrap nobody serves, and says why.
    for i in 0..3 {
        g.kill(i);
        std::fs::remove_dir_all(g.data(i)).unwrap();
    }
    for i in 0..3 {
        g.start(i, false);
    }
    match common::Raw::hello(&g.listen[0]) {
        Some(tenure::proto::ServerMsg::Reject { reason }) => {
            assert!(reason.contains("--bootstrap"), "{reason}")
        }
        other => panic!("a member without a token served: {other:?}"),
    }
    // The operator begins a new incarnation: the client is told its data is lost.
    for i in 0..3 {
        g.kill(i);
        g.start(i, true);
    }
    wait_for(Duration::from_secs(15), "data_lost", || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::DataLost { .. }))
    });
    assert!(!lock.is_held());
    let st = g.status(Duration::from_secs(10));
    assert_ne!(format!("{:032x}\n", st.incarnation), token);
    let _ = Path::new(&g.dir);
}

/// `tenure member ...` with the group's endpoints; its exit code and stderr.
fn member_cmd(endpoints: &[String], args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["member", "--endpoints", &endpoints.join(",")])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_new_member_replaces_a_failed_one_in_one_change_and_the_group_goes_on() {
    let mut g = Group::new("cluster-replace", false);
    let (c, events) = client(&g, Duration::from_secs(3));
    let lock = c.lock("r", Duration::from_secs(5)).unwrap();
    let leader = g.leader();
    let failed = (leader + 1) % 3;
    g.kill(failed);
    // A new server, member 4, with an empty directory; --cluster names the group and it.
    let l4 = format!("127.0.0.1:{}", free_port());
    let cluster = format!("{},4={l4}", g.cluster());
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--id", "4", "--listen", &l4, "--data"])
        .arg(g.dir.join("m4"))
        .args(["--cluster", &cluster]);
    let log = std::fs::File::create(g.dir.join("m4.log")).unwrap();
    let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
    assert!(first_line(&mut child, Duration::from_secs(10)).is_some());
    let _m4 = common::Proc(child);
    let mut endpoints = g.endpoints();
    endpoints.push(l4.clone());
    // Refused changes say why.
    let (code, err) = member_cmd(&endpoints, &["add", "2=127.0.0.1:1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already"), "{err}");
    let (code, err) = member_cmd(&endpoints, &["remove", "9"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not in the group"), "{err}");
    // The replacement: 4 joins as a learner, catches up, and takes the failed member's place
    // in one configuration change.
    let old = (failed + 1).to_string();
    let (code, err) = member_cmd(&endpoints, &["replace", &old, &format!("4={l4}")]);
    assert_eq!(code, 0, "{err}");
    wait_for(
        Duration::from_secs(20),
        "member 4 a voter, the failed one gone",
        || {
            let st = g.status(Duration::from_secs(10));
            let ids: Vec<u64> = st.members.iter().map(|m| m.id).collect();
            let four = st.members.iter().find(|m| m.id == 4);
            !ids.contains(&(failed as u64 + 1))
                && four.is_some_and(|m| m.role == "follower" || m.role == "leader")
                && four.is_some_and(|m| m.address == l4)
        },
    );
    assert_eq!(
        std::fs::read_to_string(g.dir.join("m4").join("incarnation")).unwrap(),
        g.token_file(leader),
        "it took the group's incarnation"
    );
    // 4 counts toward the majority: with the old leader killed too, the other survivor and
    // 4 elect a leader that still has the lock.
    g.kill(leader);
    let st = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut cfg = ClientConfig::new(endpoints.clone());
            cfg.reopen = false;
            if let Some(st) = Client::connect(cfg)
                .ok()
                .and_then(|c| c.status().ok())
                .filter(|st| st.leader.is_some())
            {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "no leader among the survivor and 4"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(st.locks.len(), 1, "the lock survived");
    assert!(lock.is_held(), "and its holder kept it");
    assert!(
        lost_anything(&events).is_empty(),
        "{:?}",
        lost_anything(&events)
    );
}
