//! The etcd backend against real etcd processes (Debian's etcd-server 3.4): one member and a
//! three-member cluster, real clients in this process and `tenure lock` processes killed and
//! paused, etcdctl acting from outside. Every wait is bounded.
#![cfg(feature = "etcd")]

mod common;
use common::etcd::Etcd;
use common::{tmpdir, wait_exit, wait_file, wait_for, Proc};

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenure::{Client, ClientConfig, Event, LostReason};

const BIN: &str = env!("CARGO_BIN_EXE_tenure");

fn client(endpoints: Vec<String>, ttl: Duration) -> (Client, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let c = Client::connect(
        ClientConfig::new(endpoints)
            .session_ttl(ttl)
            .on_event(move |ev| e.lock().unwrap().push(ev)),
    )
    .expect("client connects to etcd");
    (c, events)
}

fn lost(events: &Mutex<Vec<Event>>) -> Vec<(String, LostReason)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::LockLost { name, reason, .. } => Some((name.clone(), *reason)),
            _ => None,
        })
        .collect()
}

/// Clients in threads take one lock in turn: never two holders at once, every token larger
/// than the one before, every waiter served.
fn exclusive_with_growing_tokens(endpoints: Vec<String>, name: &str) {
    let held = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let grants = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (held, last, grants) = (held.clone(), last.clone(), grants.clone());
            let (eps, name) = (endpoints.clone(), name.to_string());
            std::thread::spawn(move || {
                let (c, _) = client(eps, Duration::from_secs(5));
                for _ in 0..15 {
                    let l = c.lock(&name, Duration::from_secs(30)).expect("granted");
                    assert!(!held.swap(true, Ordering::SeqCst), "two holders at once");
                    let t = l.fencing_token();
                    let before = last.swap(t, Ordering::SeqCst);
                    assert!(t > before, "token {t} after {before}");
                    std::thread::sleep(Duration::from_millis(1));
                    held.store(false, Ordering::SeqCst);
                    l.release().unwrap();
                    grants.fetch_add(1, Ordering::SeqCst);
                }
                c.close();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(grants.load(Ordering::SeqCst), 60);
}

#[test]
fn one_member_exclusion_tokens_hand_over_try_and_status() {
    let etcd = Etcd::start(1);
    exclusive_with_growing_tokens(etcd.endpoints(), "jobs/x");

    let (a, _) = client(etcd.endpoints(), Duration::from_secs(5));
    let (b, _) = client(etcd.endpoints(), Duration::from_secs(5));
    let la = a.lock("h", Duration::from_secs(5)).unwrap();
    assert!(la.is_held());
    assert!(b.try_lock("h").unwrap().is_none(), "busy while held");
    let st = b.status().unwrap();
    let info = st.locks.iter().find(|l| l.name == "h").expect("listed");
    assert_eq!(
        (info.holder, info.token),
        (a.session_id(), la.fencing_token())
    );
    assert!(st.sessions.iter().any(|s| s.id == b.session_id()));
    // Hand-over: a waiter queued just before the release gets the lock at once.
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || {
        let l = b2.lock("h", Duration::from_secs(10)).unwrap();
        (Instant::now(), l)
    });
    std::thread::sleep(Duration::from_millis(100));
    let t_a = la.fencing_token();
    let released = Instant::now();
    la.release().unwrap();
    let (granted, lb) = waiter.join().unwrap();
    assert!(lb.fencing_token() > t_a);
    let gap = granted.duration_since(released);
    assert!(gap < Duration::from_secs(1), "hand-over took {gap:?}");
    // A second acquire of a held lock by the same session is refused.
    let again = b.lock("h", Duration::from_millis(200));
    assert!(
        matches!(again, Err(tenure::Error::AlreadyHeld(_))),
        "{again:?}"
    );
    assert!(lb.is_held());
    // Names that would share a prefix without escaping are separate locks.
    let l1 = a.lock("p", Duration::from_secs(5)).unwrap();
    let l2 = a.lock("p/q", Duration::from_secs(5)).unwrap();
    assert!(l1.is_held() && l2.is_held());
    // A timed-out wait leaves nothing behind: the lock is free once its holder releases.
    let (c, _) = client(etcd.endpoints(), Duration::from_secs(5));
    assert!(matches!(
        c.lock("p", Duration::from_millis(100)),
        Err(tenure::Error::Timeout)
    ));
    l1.release().unwrap();
    let l3 = c.try_lock("p").unwrap().expect("free after the release");
    l3.release().unwrap();
}

#[test]
fn revocations_from_outside_lose_the_lock_with_their_reasons() {
    let etcd = Etcd::start(1);
    let (a, events) = client(etcd.endpoints(), Duration::from_secs(5));
    let (admin, _) = client(etcd.endpoints(), Duration::from_secs(5));

    // `tenure revoke`: reason released, the next waiter is granted.
    let l = a.lock("r", Duration::from_secs(5)).unwrap();
    let admin2 = admin.clone();
    let waiter = std::thread::spawn(move || admin2.lock("r", Duration::from_secs(10)).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    admin.revoke("r").unwrap();
    wait_for(Duration::from_secs(5), "lock_lost after revoke", || {
        lost(&events).contains(&("r".into(), LostReason::Released))
    });
    assert!(!l.is_held());
    let lw = waiter.join().unwrap();
    assert!(lw.fencing_token() > l.fencing_token());
    drop(lw);

    // The key deleted with etcdctl: reason released.
    let l = a.lock("d", Duration::from_secs(5)).unwrap();
    let key = format!("tenure/locks/d/{:016x}", a.session_id());
    etcd.ctl(&["del", &key]);
    wait_for(
        Duration::from_secs(5),
        "lock_lost after etcdctl del",
        || lost(&events).contains(&("d".into(), LostReason::Released)),
    );
    assert!(!l.is_held());

    // The session's lease revoked with etcdctl: the session is over, its locks are lost as
    // expired, and a new session opens.
    let l = a.lock("e", Duration::from_secs(5)).unwrap();
    let old = a.session_id();
    etcd.ctl(&["lease", "revoke", &format!("{old:x}")]);
    wait_for(
        Duration::from_secs(5),
        "lock_lost after lease revoke",
        || lost(&events).contains(&("e".into(), LostReason::SessionExpired)),
    );
    assert!(!l.is_held());
    wait_for(Duration::from_secs(10), "a new session", || {
        a.is_connected() && a.session_id() != old
    });
    let l = a.lock("e", Duration::from_secs(5)).unwrap();
    assert!(l.is_held());
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(pid, sig) };
}

/// `tenure lock --endpoints etcd://... --ttl TTL NAME -- sh -c SCRIPT`.
fn lock_cmd(etcd: &Etcd, ttl: &str, name: &str, script: &str) -> Command {
    let mut c = Command::new(BIN);
    c.arg("lock")
        .args(["--endpoints", &etcd.endpoints().join(",")])
        .args(["--ttl", ttl])
        .arg(name)
        .args(["--", "sh", "-c", script]);
    c
}

#[test]
fn a_paused_holder_is_told_it_lost_the_lock_and_is_fenced() {
    let etcd = Etcd::start(1);
    let dir = tmpdir("etcd-pause");
    std::fs::create_dir_all(&dir).unwrap();
    let (t1, pid1) = (dir.join("t1"), dir.join("pid1"));
    let script = format!(
        "echo $TENURE_FENCING_TOKEN > {}; echo $$ > {}; exec sleep 60",
        t1.display(),
        pid1.display()
    );
    let mut holder = Proc(
        lock_cmd(&etcd, "2", "p", &script)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let tok1: u64 = wait_file(&t1, Duration::from_secs(10))
        .trim()
        .parse()
        .unwrap();
    let cmd_pid: i32 = wait_file(&pid1, Duration::from_secs(10))
        .trim()
        .parse()
        .unwrap();
    let t2 = dir.join("t2");
    let mut waiter = Proc(
        lock_cmd(
            &etcd,
            "5",
            "p",
            &format!("echo $TENURE_FENCING_TOKEN > {}", t2.display()),
        )
        .spawn()
        .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!t2.exists(), "the waiter waits while the holder lives");
    signal(holder.0.id() as i32, libc::SIGSTOP);
    let tok2: u64 = wait_file(&t2, Duration::from_secs(10))
        .trim()
        .parse()
        .unwrap();
    assert!(tok2 > tok1, "the next holder's token {tok2} fences {tok1}");
    assert_eq!(wait_exit(&mut waiter.0, Duration::from_secs(10)), 0);
    signal(holder.0.id() as i32, libc::SIGCONT);
    // On resuming, the holder finds its lease over: the loss is reported, CMD stopped, 75.
    assert_eq!(wait_exit(&mut holder.0, Duration::from_secs(10)), 75);
    let mut err = String::new();
    use std::io::Read;
    holder
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("session_expired"), "{err}");
    // SAFETY: probing whether a pid exists.
    assert!(
        unsafe { libc::kill(cmd_pid, 0) } != 0,
        "the command was stopped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_holder_s_lock_goes_to_the_waiter_after_its_ttl() {
    let etcd = Etcd::start(1);
    let dir = tmpdir("etcd-kill");
    std::fs::create_dir_all(&dir).unwrap();
    let (w, _) = client(etcd.endpoints(), Duration::from_secs(5));
    let ttl = Duration::from_secs(2);
    let mut delays = vec![];
    for round in 0..3 {
        let t = dir.join(format!("t{round}"));
        let script = format!(
            "echo $TENURE_FENCING_TOKEN > {}; exec sleep 60",
            t.display()
        );
        let mut holder = Proc(lock_cmd(&etcd, "2", "k", &script).spawn().unwrap());
        let tok: u64 = wait_file(&t, Duration::from_secs(10))
            .trim()
            .parse()
            .unwrap();
        let w2 = w.clone();
        let waiter = std::thread::spawn(move || {
            let l = w2.lock("k", Duration::from_secs(20)).unwrap();
            (Instant::now(), l)
        });
        // Kill at a random point of the holder's heartbeat cycle.
        std::thread::sleep(Duration::from_millis(200 + fastrand::u64(0..700)));
        let killed = Instant::now();
        holder.0.kill().unwrap();
        let _ = holder.0.wait();
        let (granted, l) = waiter.join().unwrap();
        assert!(l.fencing_token() > tok);
        let delay = granted.duration_since(killed);
        delays.push(delay);
        l.release().unwrap();
    }
    eprintln!("kill -9 to the next grant, TTL {ttl:?}: {delays:?}");
    for d in &delays {
        // The waiter next in line ends the silent holder's session TTL after the last
        // heartbeat it saw, as a tenure server does, not at etcd's next 500 ms lessor tick.
        assert!(
            *d <= ttl + Duration::from_millis(50),
            "grant {d:?} after the kill"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A holder that keeps heartbeating is never ended by the waiter behind it, however long it
/// holds, on an idle and on a loaded machine: the waiter gets the lock when it is released.
#[test]
fn a_live_holder_is_never_ended_by_its_waiter() {
    let etcd = Etcd::start(1);
    let ttl = Duration::from_secs(1);
    for loaded in [false, true] {
        let _busy = if loaded { common::load() } else { vec![] };
        let (h, h_events) = client(etcd.endpoints(), ttl);
        let (w, w_events) = client(etcd.endpoints(), ttl);
        let name = format!("live-{loaded}");
        let held = h.lock(&name, Duration::from_secs(5)).unwrap();
        let released = Arc::new(Mutex::new(None::<Instant>));
        let r = released.clone();
        let n = name.clone();
        let waiter = std::thread::spawn(move || {
            let l = w.lock(&n, Duration::from_secs(30)).unwrap();
            let at = Instant::now();
            let token = l.fencing_token();
            l.release().unwrap();
            (at, token, w)
        });
        // Four TTLs with the waiter queued behind.
        std::thread::sleep(4 * ttl);
        assert!(lost(&h_events).is_empty(), "loaded {loaded}: holder lost");
        let token = held.fencing_token();
        *r.lock().unwrap() = Some(Instant::now());
        held.release().unwrap();
        let (granted, next, _w) = waiter.join().unwrap();
        let released = released.lock().unwrap().unwrap();
        assert!(
            granted >= released,
            "loaded {loaded}: the waiter was granted before the holder released"
        );
        assert!(next > token);
        assert!(lost(&w_events).is_empty());
        assert!(!h_events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::SessionExpired)));
    }
}

#[test]
fn three_members_exclusion_and_a_killed_leader_costs_no_session_or_lock() {
    let mut etcd = Etcd::start(3);
    exclusive_with_growing_tokens(etcd.endpoints(), "three");
    let leader = etcd.leader().expect("a leader");
    // Every client dials the leader first, so every connection breaks with it.
    let clients: Vec<_> = (0..3)
        .map(|_| client(etcd.endpoints_from(leader), Duration::from_secs(5)))
        .collect();
    let locks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, (c, _))| c.lock(&format!("l{i}"), Duration::from_secs(5)).unwrap())
        .collect();
    let sessions: Vec<u64> = clients.iter().map(|(c, _)| c.session_id()).collect();
    let e = clients[1]
        .0
        .campaign("sched", tenure::client::Candidacy::new("me", 1))
        .unwrap();
    wait_for(Duration::from_secs(5), "mastership", || e.is_master());
    let epoch = e.master_epoch();
    etcd.kill(leader);
    // Through the election and well past a TTL: nothing is lost.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        for l in &locks {
            assert!(l.is_held(), "{} lost during the failover", l.name());
        }
        assert!(e.is_master(), "the mastership is kept");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, (c, events)) in clients.iter().enumerate() {
        assert_eq!(c.session_id(), sessions[i], "the session survived");
        assert!(lost(events).is_empty(), "{:?}", lost(events));
        assert!(c.is_connected());
    }
    assert_eq!(e.master_epoch(), epoch);
    // The cluster still grants, and the killed member rejoins.
    let next = clients[0].0.lock("after", Duration::from_secs(5)).unwrap();
    assert!(next.fencing_token() > locks.iter().map(|l| l.fencing_token()).max().unwrap());
    etcd.spawn(leader);
    etcd.wait_healthy(Duration::from_secs(30));
}

fn masters(events: &Mutex<Vec<Event>>, election: &str) -> Vec<(u64, Option<String>)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::MasterChanged {
                election: n,
                epoch,
                master,
            } if n == election => Some((*epoch, master.as_ref().map(|m| m.id.clone()))),
            _ => None,
        })
        .collect()
}

#[test]
fn elections_designate_by_priority_tell_observers_fail_over_and_preempt() {
    use tenure::client::Candidacy;
    let etcd = Etcd::start(1);
    let ttl = Duration::from_secs(2);
    let (a, _) = client(etcd.endpoints(), ttl);
    let (b, _) = client(etcd.endpoints(), ttl);
    let (o, seen) = client(etcd.endpoints(), ttl);
    let obs = o.observe("sched").unwrap();
    let ea = a.campaign("sched", Candidacy::new("a", 1)).unwrap();
    wait_for(Duration::from_secs(5), "a is master", || ea.is_master());
    // A higher priority without preemption does not take over a live master.
    let eb = b.campaign("sched", Candidacy::new("b", 5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(ea.is_master() && !eb.is_master());
    let e1 = ea.master_epoch().unwrap();
    assert_eq!(
        o.request_election("sched", Duration::from_secs(5))
            .unwrap()
            .master
            .unwrap()
            .id,
        "a"
    );
    // The master's client closes: b is designated, with a larger epoch, and everyone is told.
    a.close();
    wait_for(Duration::from_secs(5), "b is master", || eb.is_master());
    let e2 = eb.master_epoch().unwrap();
    assert!(e2 > e1);
    wait_for(Duration::from_secs(5), "the observer sees b", || {
        obs.master().master.is_some_and(|m| m.id == "b")
    });
    // Preemption: b steps down (no master, a new epoch), and c is designated only after b's
    // TTL, so the two never overlap.
    let (c, _) = client(etcd.endpoints(), ttl);
    let mut cand = Candidacy::new("c", 9);
    cand.preempt = true;
    let asked = Instant::now();
    let ec = c.campaign("sched", cand).unwrap();
    wait_for(Duration::from_secs(10), "c is master", || ec.is_master());
    let took = asked.elapsed();
    assert!(!eb.is_master());
    assert!(
        took >= ttl,
        "c designated {took:?} after asking, before b's TTL passed"
    );
    wait_for(Duration::from_secs(5), "the observer is told of c", || {
        masters(&seen, "sched")
            .last()
            .is_some_and(|m| m.1.as_deref() == Some("c"))
    });
    let order = masters(&seen, "sched");
    let ids: Vec<Option<String>> = order.iter().map(|(_, m)| m.clone()).collect();
    let tail = &ids[ids.len() - 2..];
    assert_eq!(tail, &[None, Some("c".to_string())], "{order:?}");
    assert!(
        order.windows(2).all(|w| w[0].0 < w[1].0),
        "epochs grow: {order:?}"
    );
    // A candidate whose endpoint refuses connections is skipped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let (d, _) = client(etcd.endpoints(), ttl);
    let mut cd = Candidacy::new("d", 20);
    cd.endpoint = Some(dead_addr);
    cd.preempt = true;
    let ed = d.campaign("sched", cd).unwrap();
    std::thread::sleep(ttl + Duration::from_millis(500));
    assert!(
        ec.is_master() && !ed.is_master(),
        "an unreachable candidate is skipped"
    );
    let st = o.status().unwrap();
    let info = st
        .elections
        .iter()
        .find(|e| e.name == "sched")
        .expect("listed");
    let ids: Vec<&str> = info.candidates.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(ids, ["d", "c", "b"]);
    assert_eq!(info.master.master.as_ref().unwrap().0, "c");
}

#[test]
fn groups_promote_after_probation_gate_on_checks_replace_in_one_view_and_drop_ended_sessions() {
    use tenure::client::JoinOptions;
    let etcd = Etcd::start(1);
    let ttl = Duration::from_secs(2);
    let (w, _) = client(etcd.endpoints(), ttl);
    let watch = w.watch_group("g").unwrap();
    let views = Arc::new(Mutex::new(Vec::new()));
    let v2 = views.clone();
    watch.on_view_change(move |ev| v2.lock().unwrap().push(ev));

    // Probation: full after 1 s of heartbeats, not before.
    let (a, _) = client(etcd.endpoints(), ttl);
    let joined = Instant::now();
    let ma = a
        .join("g", JoinOptions::new("a", Duration::from_secs(1)))
        .unwrap();
    assert!(ma.is_member() && !ma.is_full());
    wait_for(Duration::from_secs(10), "a promoted", || ma.is_full());
    assert!(joined.elapsed() >= Duration::from_secs(1));

    // A check gates promotion; a failed check removes.
    let (b, _) = client(etcd.endpoints(), ttl);
    let mut o = JoinOptions::new("b", Duration::ZERO);
    o.needs_check = true;
    let mb = b.join("g", o).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(!mb.is_full(), "waits for its check");
    mb.report_check(true).unwrap();
    wait_for(
        Duration::from_secs(10),
        "b promoted after its check",
        || mb.is_full(),
    );
    let (c, _) = client(etcd.endpoints(), ttl);
    let mut o = JoinOptions::new("c", Duration::ZERO);
    o.needs_check = true;
    let mc = c.join("g", o).unwrap();
    mc.report_check(false).unwrap();
    wait_for(Duration::from_secs(10), "c removed", || !mc.is_member());

    // Replacement: one view removes a and promotes d.
    let (d, _) = client(etcd.endpoints(), ttl);
    let md = d
        .join("g", JoinOptions::new("d", Duration::from_secs(3600)))
        .unwrap();
    wait_for(Duration::from_secs(10), "the watcher sees d", || {
        watch.view().members.iter().any(|m| m.id == "d")
    });
    assert!(matches!(
        w.replace("g", "d", "a"),
        Err(tenure::Error::InvalidArgument(_))
    ));
    let before = watch.view().number;
    let v = w.replace("g", "a", "d").unwrap();
    assert_eq!(v.number, before + 1, "one view change");
    let ids: Vec<(&str, bool)> = v.members.iter().map(|m| (m.id.as_str(), m.full)).collect();
    assert_eq!(ids, [("b", true), ("d", true)]);
    wait_for(Duration::from_secs(10), "a told", || !ma.is_member());
    wait_for(Duration::from_secs(10), "d full", || md.is_full());

    // A session that ends (its client closed) loses its membership in a new view.
    d.close();
    wait_for(Duration::from_secs(10), "d removed", || {
        watch.view().members.iter().all(|m| m.id != "d")
    });
    let st = w.status().unwrap();
    let g = st.groups.iter().find(|(n, _)| n == "g").expect("listed");
    assert_eq!(g.1.members, vec![("b".to_string(), true)]);
    let numbers: Vec<u64> = views
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ViewChanged { view, .. } => Some(*view),
            _ => None,
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert!(!numbers.is_empty());
}

#[test]
fn a_thousand_uncontended_lock_release_rounds_all_succeed() {
    let etcd = Etcd::start(1);
    let (c, events) = client(etcd.endpoints(), Duration::from_secs(5));
    let mut last = 0;
    for i in 0..1000 {
        let l = c.lock("loop", Duration::from_secs(5)).unwrap();
        assert!(l.fencing_token() > last);
        last = l.fencing_token();
        if let Err(e) = l.release() {
            panic!(
                "round {i}: release: {e}; events {:?}",
                events.lock().unwrap()
            );
        }
    }
}

#[test]
fn timed_out_waits_leave_no_key_behind() {
    let etcd = Etcd::start(1);
    let (a, _) = client(etcd.endpoints(), Duration::from_secs(5));
    let (b, _) = client(etcd.endpoints(), Duration::from_secs(5));
    let (c, _) = client(etcd.endpoints(), Duration::from_secs(5));
    let held = a.lock("t", Duration::from_secs(5)).unwrap();
    // Waits given up at every point of the acquire: before, during and after queueing.
    for i in 0..30 {
        let r = b.lock("t", Duration::from_millis(i % 10));
        assert!(matches!(r, Err(tenure::Error::Timeout)), "{r:?}");
    }
    held.release().unwrap();
    // Nothing of b's is left in the queue: the lock is free (b's last cancel may still be on
    // its way, hence a bounded retry).
    let mut got = None;
    wait_for(Duration::from_secs(5), "the lock free", || {
        got = c.try_lock("t").unwrap();
        got.is_some()
    });
    // A cancelled acquire whose transaction was already on its way to etcd queues, then
    // leaves: wait for the queue to be only c.
    wait_for(Duration::from_secs(5), "no waiter left", || {
        let st = c.status().unwrap();
        let info = st.locks.iter().find(|l| l.name == "t").expect("held by c");
        assert_eq!(info.holder, c.session_id());
        info.waiters.is_empty()
    });
    drop(got);
}

#[test]
fn a_wiped_etcd_is_data_lost_and_a_new_session_opens() {
    let mut etcd = Etcd::start(1);
    // A TTL longer than etcd's restart, so that the loss is the data's, not the lease's.
    let (a, events) = client(etcd.endpoints(), Duration::from_secs(15));
    let l = a.lock("w", Duration::from_secs(5)).unwrap();
    let (old_session, old_inc) = (a.session_id(), a.incarnation());
    etcd.wipe(0);
    etcd.spawn(0);
    etcd.wait_healthy(Duration::from_secs(30));
    wait_for(Duration::from_secs(15), "data_lost", || {
        lost(&events).contains(&("w".into(), LostReason::DataLost))
    });
    assert!(!l.is_held());
    // The session's event follows its locks' on the dispatcher thread.
    wait_for(Duration::from_secs(5), "the data_lost event", || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::DataLost { .. }))
    });
    wait_for(Duration::from_secs(15), "a new session", || {
        a.is_connected() && a.session_id() != old_session
    });
    assert_ne!(a.incarnation(), old_inc);
    let l = a.lock("w", Duration::from_secs(5)).unwrap();
    assert!(l.is_held());
}
