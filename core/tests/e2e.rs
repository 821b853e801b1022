//! End to end, in one process: a real server on loopback and real clients.

mod common;
use common::*;
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure::{Error, Event, LostReason};

#[test]
fn lock_release_and_fifo_hand_over_with_increasing_tokens() {
    let dir = tmpdir("fifo");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 2000);
    let first = a.lock("jobs/x", Duration::from_secs(5)).unwrap();
    assert!(first.is_held());
    assert!(
        matches!(a.try_lock("jobs/x"), Err(Error::AlreadyHeld(n)) if n == "jobs/x"),
        "same session cannot take it twice"
    );
    assert!(matches!(
        a.lock("jobs/x", Duration::from_millis(100)),
        Err(Error::AlreadyHeld(_))
    ));
    let b = client(&addr, 2000);
    assert!(b.try_lock("jobs/x").unwrap().is_none());
    // Three waiters queue in order.
    let order = Arc::new(Mutex::new(vec![]));
    let mut handles = vec![];
    for i in 0..3 {
        let c = client(&addr, 2000);
        let order = order.clone();
        handles.push(std::thread::spawn(move || {
            let l = c.lock("jobs/x", Duration::from_secs(10)).unwrap();
            order.lock().push((i, l.fencing_token()));
            std::thread::sleep(Duration::from_millis(20));
            l.release().unwrap();
            c.close();
        }));
        // Make the arrival order certain.
        wait_for(Duration::from_secs(5), "waiter queued", || {
            a.status()
                .unwrap()
                .locks
                .iter()
                .any(|l| l.waiters.len() == i + 1)
        });
    }
    let t0 = first.fencing_token();
    first.release().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    let order = order.lock().clone();
    assert_eq!(order.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    let mut last = t0;
    for (_, t) in order {
        assert!(t > last);
        last = t;
    }
    srv.stop().unwrap();
}

#[test]
fn lock_timeout_leaves_nothing_held() {
    let dir = tmpdir("timeout");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 2000);
    let b = client(&addr, 2000);
    let _held = a.lock("l", Duration::from_secs(1)).unwrap();
    let t = Instant::now();
    assert_eq!(
        b.lock("l", Duration::from_millis(100)).unwrap_err(),
        Error::Timeout
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    let st = a.status().unwrap();
    assert!(
        st.locks[0].waiters.is_empty(),
        "cancelled waiter removed: {st:?}"
    );
}

#[test]
fn server_gone_means_lost_callback_before_deadline_and_is_held_false() {
    let dir = tmpdir("gone");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 600);
    let events = Arc::new(Mutex::new(vec![]));
    let e2 = events.clone();
    let _sub = a
        .subscribe(move |ev| e2.lock().push((Instant::now(), ev)))
        .unwrap();
    let lock = a.lock("x", Duration::from_secs(1)).unwrap();
    let lost = Arc::new(Mutex::new(None));
    let l2 = lost.clone();
    lock.on_lost(move |ev| *l2.lock() = Some((Instant::now(), ev)));
    let stopped = Instant::now();
    srv.stop().unwrap();
    wait_for(Duration::from_secs(3), "lock lost", || {
        lost.lock().is_some()
    });
    let (at, ev) = lost.lock().clone().unwrap();
    assert!(matches!(
        ev,
        Event::LockLost {
            reason: LostReason::SessionExpired,
            ..
        }
    ));
    assert!(
        at - stopped < Duration::from_millis(1000),
        "lost after {:?}",
        at - stopped
    );
    assert!(!lock.is_held());
    let kinds: Vec<&str> = events.lock().iter().map(|e| e.1.kind()).collect();
    assert!(kinds.contains(&"jeopardy"), "{kinds:?}");
    let lost_i = kinds.iter().position(|k| *k == "lock_lost").unwrap();
    let exp_i = kinds.iter().position(|k| *k == "expired").unwrap();
    assert!(
        lost_i < exp_i,
        "locks reported lost before the session expiry: {kinds:?}"
    );
}

#[test]
fn restart_keeps_locks_and_sessions_and_wiped_dir_raises_data_lost() {
    let dir = tmpdir("restart");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 3000);
    let events = Arc::new(Mutex::new(vec![]));
    let e2 = events.clone();
    let _sub = a.subscribe(move |ev| e2.lock().push(ev)).unwrap();
    let lock = a.lock("keep", Duration::from_secs(1)).unwrap();
    let token = lock.fencing_token();
    srv.stop().unwrap();
    let srv = server_at(&dir, &addr);
    wait_for(Duration::from_secs(5), "recovered", || {
        events.lock().iter().any(|e| e.kind() == "recovered")
    });
    assert!(lock.is_held());
    let b = client(&addr, 3000);
    let st = b.status().unwrap();
    assert_eq!(st.locks[0].token, token);
    assert!(b.try_lock("keep").unwrap().is_none());
    // Wipe the data directory: a new incarnation.
    srv.stop().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let _srv = server_at(&dir, &addr);
    wait_for(Duration::from_secs(5), "data lost", || {
        events.lock().iter().any(|e| e.kind() == "data_lost")
    });
    assert_eq!(lock.lost_reason(), Some(LostReason::DataLost));
    assert!(!lock.is_held());
    wait_for(Duration::from_secs(5), "new session", || a.is_connected());
    // The lock is free in the new incarnation, with a fresh token space.
    let l2 = a.try_lock("keep").unwrap().expect("free after data loss");
    assert!(l2.is_held());
}

#[test]
fn garbage_on_the_port_closes_that_connection_only() {
    let dir = tmpdir("garbage");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 2000);
    let _l = a.lock("g", Duration::from_secs(1)).unwrap();
    for junk in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff; 64],
        vec![0, 0, 0, 5, 1, 2],
        vec![0, 0, 0, 2, 9, 9],
    ] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&junk).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut buf = vec![];
        // The server closes: read ends (EOF or reset) within the bound.
        let _ = s.read_to_end(&mut buf);
    }
    assert!(a.status().unwrap().locks.len() == 1);
    let b = client(&addr, 2000);
    assert!(b.try_lock("g").unwrap().is_none());
    assert!(b.try_lock("h").unwrap().is_some());
}

#[test]
fn bad_input_gets_typed_errors() {
    let dir = tmpdir("bad");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 2000);
    for name in ["", "a\0b", &"n".repeat(1025)] {
        assert!(matches!(
            a.lock(name, Duration::from_secs(1)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(a.try_lock(name), Err(Error::InvalidArgument(_))));
    }
    assert!(matches!(
        a.lock("x", Duration::from_secs(u64::MAX / 4)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(tenure::client::timeout_from_secs(-1.0).is_err());
    assert!(tenure::client::timeout_from_secs(f64::NAN).is_err());
    assert!(tenure::client::timeout_from_secs(f64::INFINITY).is_err());
    for ttl in [Duration::ZERO, Duration::from_secs(10 * 86_400)] {
        let r = tenure::Client::connect(tenure::ClientConfig::new([addr.clone()]).session_ttl(ttl));
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
    let r = tenure::Client::connect(tenure::ClientConfig::new(["127.0.0.1:1"]));
    assert!(matches!(r, Err(Error::ConnectionFailed(_))), "{r:?}");
    a.close();
    assert_eq!(a.try_lock("x").unwrap_err(), Error::Closed);
    assert_eq!(
        a.lock("x", Duration::from_secs(1)).unwrap_err(),
        Error::Closed
    );
    assert!(a.status().is_err());
    a.close();
}

#[test]
fn closing_the_client_reports_locks_lost_and_frees_them_at_once() {
    let dir = tmpdir("close");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 5000);
    let b = client(&addr, 5000);
    let l = a.lock("c", Duration::from_secs(1)).unwrap();
    let lost = Arc::new(Mutex::new(None));
    let l2 = lost.clone();
    l.on_lost(move |ev| *l2.lock() = Some(ev));
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let got = b.lock("c", Duration::from_secs(4)).unwrap();
        (t.elapsed(), got.fencing_token())
    });
    wait_for(Duration::from_secs(2), "waiter", || {
        a.status().unwrap().locks[0].waiters.len() == 1
    });
    a.close();
    let (waited, token) = waiter.join().unwrap();
    assert!(
        waited < Duration::from_secs(2),
        "handed over on close, not at expiry"
    );
    assert!(token > l.fencing_token());
    wait_for(Duration::from_secs(2), "lost", || lost.lock().is_some());
    assert!(matches!(
        lost.lock().clone().unwrap(),
        Event::LockLost {
            reason: LostReason::ClientClosed,
            ..
        }
    ));
}

#[test]
fn a_callback_blocking_for_seconds_costs_no_heartbeat() {
    let dir = tmpdir("slowcb");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 1000);
    // Blocks for 2.5 TTLs: a heartbeat that waited for it would cost the session.
    let _sub = a
        .subscribe(|_ev| std::thread::sleep(Duration::from_millis(2500)))
        .unwrap();
    let l = a.lock("slow", Duration::from_secs(1)).unwrap(); // emits lock_acquired: callback blocks
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2400) {
        assert!(l.is_held(), "lease lost while a callback blocked");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(a.state(), tenure::SessionState::Connected);
}

#[test]
fn a_grant_reaches_only_its_own_session_and_a_resent_acquire_gets_it_once() {
    use tenure::proto::{Reply, Request, ServerMsg};
    let dir = tmpdir("route");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let open = |raw: &mut Raw| -> u64 {
        raw.req(0, 1, Request::Open { ttl_ms: 5000 });
        match raw.recv() {
            Some(ServerMsg::Reply {
                result: Ok(Reply::Opened { session, .. }),
                ..
            }) => session,
            m => panic!("{m:?}"),
        }
    };
    let mut a = Raw::connect(&addr);
    let sa = open(&mut a);
    a.req(
        sa,
        2,
        Request::Acquire {
            name: "r".into(),
            wait: true,
        },
    );
    let Some(ServerMsg::Reply {
        result: Ok(Reply::Granted { token: ta, .. }),
        ..
    }) = a.recv()
    else {
        panic!()
    };
    let mut b = Raw::connect(&addr);
    let sb = open(&mut b);
    b.req(
        sb,
        2,
        Request::Acquire {
            name: "r".into(),
            wait: true,
        },
    );
    assert!(
        b.recv_within(Duration::from_millis(100)).is_none(),
        "b waits"
    );
    drop(b); // b's connection breaks while it waits
    std::thread::sleep(Duration::from_millis(50));
    // a releases with a request id that b also used: a must get its own reply only.
    a.req(
        sa,
        3,
        Request::Release {
            name: "r".into(),
            token: ta,
        },
    );
    match a.recv() {
        Some(ServerMsg::Reply {
            session,
            req: 3,
            result: Ok(Reply::Done),
        }) => assert_eq!(session, sa),
        m => panic!("{m:?}"),
    }
    assert!(
        a.recv_within(Duration::from_millis(200)).is_none(),
        "no grant for b on a's connection"
    );
    // b reconnects and resends its acquire: it gets the grant made while it was away, once.
    let mut b = Raw::connect(&addr);
    b.req(
        sb,
        2,
        Request::Acquire {
            name: "r".into(),
            wait: true,
        },
    );
    let tb = match b.recv() {
        Some(ServerMsg::Reply {
            session,
            req: 2,
            result: Ok(Reply::Granted { token, .. }),
        }) => {
            assert_eq!(session, sb);
            token
        }
        m => panic!("{m:?}"),
    };
    assert!(tb > ta);
    b.req(
        sb,
        2,
        Request::Acquire {
            name: "r".into(),
            wait: true,
        },
    );
    assert!(
        matches!(b.recv(), Some(ServerMsg::Reply { result: Ok(Reply::Granted { token, .. }), .. }) if token == tb)
    );
    b.req(0, 9, Request::Status { from: None });
    let Some(ServerMsg::Reply {
        result: Ok(Reply::Status(st)),
        ..
    }) = b.recv()
    else {
        panic!()
    };
    assert_eq!(st.revision, tb, "no further grant was made");
}

#[test]
fn an_administrator_revokes_a_lock_the_holder_is_told_and_the_waiter_granted() {
    let dir = tmpdir("revoke");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 5000);
    let b = client(&addr, 5000);
    let admin = client(&addr, 5000);
    let l = a.lock("r", Duration::from_secs(1)).unwrap();
    let lost = Arc::new(Mutex::new(None));
    let l2 = lost.clone();
    l.on_lost(move |ev| *l2.lock() = Some(ev));
    let waiter = std::thread::spawn(move || {
        b.lock("r", Duration::from_secs(5))
            .map(|l| l.fencing_token())
    });
    wait_for(Duration::from_secs(2), "waiter", || {
        admin.status().unwrap().locks[0].waiters.len() == 1
    });
    admin.revoke("r").unwrap();
    let tb = waiter.join().unwrap().unwrap();
    assert!(tb > l.fencing_token());
    wait_for(Duration::from_secs(2), "holder told", || {
        lost.lock().is_some()
    });
    assert!(matches!(
        lost.lock().clone().unwrap(),
        Event::LockLost {
            reason: LostReason::Released,
            ..
        }
    ));
    assert!(!l.is_held());
    assert_eq!(l.release().unwrap_err(), Error::NotHeld);
    assert!(matches!(
        admin.revoke("nothing"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn an_on_event_callback_in_the_config_sees_the_first_connected() {
    let dir = tmpdir("on-event");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let seen = Arc::new(Mutex::new(vec![]));
    let s2 = seen.clone();
    let c = tenure::Client::connect(
        tenure::ClientConfig::new([addr.clone()])
            .session_ttl(Duration::from_secs(2))
            .on_event(move |ev| s2.lock().push(ev)),
    )
    .unwrap();
    wait_for(Duration::from_secs(5), "first connected", || {
        !seen.lock().is_empty()
    });
    let first = seen.lock()[0].clone();
    assert_eq!(
        first,
        Event::SessionConnected {
            session: c.session_id(),
            incarnation: c.incarnation()
        }
    );
    let _l = c.lock("x", Duration::from_secs(1)).unwrap();
    wait_for(Duration::from_secs(5), "lock_acquired", || {
        seen.lock().iter().any(|e| e.kind() == "lock_acquired")
    });
}

/// One client shared by many threads: each request is written from its caller's thread and
/// completed by whichever thread runs the driver (see client/driver.rs). Every call must be
/// answered, every grant reported once, in order per lock, and a contended lock between two
/// other clients must never have two holders.
#[test]
fn many_threads_share_one_client_and_every_request_is_answered() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tmpdir("threads");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let shared = client(&addr, 2000);
    let acquired = Arc::new(AtomicUsize::new(0));
    let acq = acquired.clone();
    let _sub = shared
        .subscribe(move |ev| {
            if let Event::LockAcquired { .. } = ev {
                acq.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    const THREADS: usize = 8;
    const ROUNDS: usize = 150;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut hs = vec![];
    for t in 0..THREADS {
        let c = shared.clone();
        hs.push(std::thread::spawn(move || {
            let mut last = 0;
            for i in 0..ROUNDS {
                let name = format!("threads/{t}");
                let l = if i % 2 == 0 {
                    c.lock(&name, Duration::from_secs(5)).unwrap()
                } else {
                    c.try_lock(&name).unwrap().expect("uncontended")
                };
                assert!(l.is_held());
                assert!(l.fencing_token() > last, "tokens increase");
                last = l.fencing_token();
                l.release().unwrap();
            }
        }));
    }
    // Meanwhile two other clients contend for one name.
    let inside = Arc::new(AtomicBool::new(false));
    let mut contenders = vec![];
    for _ in 0..2 {
        let c = client(&addr, 2000);
        let inside = inside.clone();
        contenders.push(std::thread::spawn(move || {
            for _ in 0..60 {
                let l = c
                    .lock("threads/contended", Duration::from_secs(10))
                    .unwrap();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                std::thread::sleep(Duration::from_micros(200));
                inside.store(false, Ordering::SeqCst);
                l.release().unwrap();
            }
            c.close();
        }));
    }
    for h in hs.into_iter().chain(contenders) {
        while !h.is_finished() {
            assert!(
                Instant::now() < deadline,
                "threads did not finish within 60 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        h.join().unwrap();
    }
    wait_for(Duration::from_secs(5), "every grant reported", || {
        acquired.load(Ordering::SeqCst) == THREADS * ROUNDS
    });
    assert!(shared.is_connected());
    shared.close();
    srv.stop().unwrap();
}

/// Closing while other threads keep the client busy is prompt: the close is often run by the
/// reader thread that just completed their replies, which must not wait for the close's own
/// reply (it is the thread that would read it).
#[test]
fn close_is_prompt_while_other_threads_use_the_client() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tmpdir("close-busy");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let mut slowest = Duration::ZERO;
    for round in 0..30 {
        let c = client(&addr, 2000);
        let stop = Arc::new(AtomicBool::new(false));
        let mut hs = vec![];
        for t in 0..8 {
            let (c, stop) = (c.clone(), stop.clone());
            hs.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(Some(l)) = c.try_lock(&format!("busy/{round}/{t}")) {
                        let _ = l.release();
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(5));
        let t0 = Instant::now();
        c.close();
        slowest = slowest.max(t0.elapsed());
        stop.store(true, Ordering::SeqCst);
        for h in hs {
            h.join().unwrap();
        }
    }
    assert!(
        slowest < Duration::from_millis(900),
        "a close took {slowest:?} (waiting for its reply on the thread that reads it?)"
    );
    srv.stop().unwrap();
}

/// `lock_start`: a pending lock needs no waiting thread. It tells `on_complete` when granted,
/// cancels with `Cancelled`, gives back what it is dropped with, and times out by itself.
#[test]
fn pending_locks_complete_cancel_drop_and_time_out_without_a_thread() {
    let dir = tmpdir("pending");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let a = client(&addr, 2000);
    let b = client(&addr, 2000);
    let held = a.lock("p", Duration::from_secs(5)).unwrap();

    // Granted on release: `on_complete` is told, `take` has the lock.
    let p = b.lock_start("p", Duration::from_secs(10)).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    p.on_complete(move || {
        let _ = tx.send(Instant::now());
    });
    assert!(!p.is_done() && p.take().is_none());
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err(), "told before the grant");
    let token = held.fencing_token();
    held.release().unwrap();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("on_complete told");
    let l = p.take().expect("done").expect("granted");
    assert!(l.is_held() && l.fencing_token() > token);
    assert!(p.take().is_none(), "taken once");

    // Cancelled while waiting: `Cancelled`, and the lock's queue forgets it.
    let p = a.lock_start("p", Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    p.cancel();
    let r = p.wait_timeout(Duration::from_secs(5)).expect("answered");
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    // A pending dropped while waiting is withdrawn too.
    drop(a.lock_start("p", Duration::from_secs(10)).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    let t = l.fencing_token();
    l.release().unwrap();
    let c = client(&addr, 2000);
    let l = c.lock("p", Duration::from_secs(5)).unwrap();
    assert!(l.fencing_token() > t, "nobody cancelled held it meanwhile");

    // Times out by itself, with nobody waiting on it, within its bound.
    let p = a.lock_start("p", Duration::from_millis(200)).unwrap();
    let t0 = Instant::now();
    let r = p.wait_timeout(Duration::from_secs(5)).expect("answered");
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // A grant nobody took is released when its `Pending` is dropped.
    let p = a.lock_start("p", Duration::from_secs(10)).unwrap();
    l.release().unwrap();
    wait_for(Duration::from_secs(5), "the grant", || p.is_done());
    drop(p);
    let l = c.lock("p", Duration::from_secs(5)).expect("given back");
    l.release().unwrap();
}

/// A completion callback runs once the client has let go of its session: it may call the
/// client, release what it got, and even drop the client's last handle, without a deadlock.
#[test]
fn a_completion_may_release_and_drop_the_last_client_handle() {
    let dir = tmpdir("pending-cb");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let other = client(&addr, 2000);
    let held = other.lock("cb", Duration::from_secs(5)).unwrap();
    let c = client(&addr, 2000);
    let p = Arc::new(c.lock_start("cb", Duration::from_secs(10)).unwrap());
    drop(c);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let p2 = p.clone();
    p.on_complete(move || {
        // The lock, then its client's last handle, go here.
        let l = p2.take().expect("done").expect("granted");
        let released = l.release_start().is_ok();
        drop(p2);
        let _ = tx.send(released);
    });
    drop(p);
    held.release().unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).expect("told"));
    // Released, and that client closed: the lock is free again.
    let l = other
        .lock("cb", Duration::from_secs(5))
        .expect("free again");
    l.release().unwrap();
}

/// Connecting, the paged status and closing are pending calls too: started without blocking,
/// told on completion, and a connect that is cancelled or dropped leaves no session behind.
#[test]
fn connect_status_and_close_are_pending_calls_without_a_thread() {
    let dir = tmpdir("pending-session");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let cfg = || tenure::ClientConfig::new([addr.clone()]).session_ttl(Duration::from_secs(2));
    let sessions = |c: &tenure::Client| c.status().unwrap().sessions.len();

    // Connect: told on completion, and the client is usable.
    let p = tenure::Client::connect_start(cfg()).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    p.on_complete(move || {
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("told");
    let a = p.take().expect("done").expect("connected");
    assert!(a.is_connected());

    // Status (its pages are asked for one after the other; one here).
    let _others: Vec<_> = (0..3).map(|_| client(&addr, 2000)).collect();
    let s = a
        .status_start()
        .unwrap()
        .wait_timeout(Duration::from_secs(5))
        .expect("answered")
        .unwrap();
    assert_eq!(s.sessions.len(), 4);
    let p = a.status_start().unwrap();
    p.cancel();
    assert!(matches!(p.take(), Some(Err(Error::Cancelled))));

    // A connect cancelled at once, or dropped: no session stays on the server.
    let p = tenure::Client::connect_start(cfg()).unwrap();
    p.cancel();
    assert!(matches!(
        p.wait_timeout(Duration::from_secs(5)),
        Some(Err(Error::Cancelled))
    ));
    drop(p);
    drop(tenure::Client::connect_start(cfg()).unwrap());
    wait_for(Duration::from_secs(5), "no session left behind", || {
        sessions(&a) == 4
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sessions(&a), 4);

    // A connect to nothing fails within its bound.
    let mut nowhere = tenure::ClientConfig::new(["127.0.0.1:1"]);
    nowhere.connect_timeout = Duration::from_millis(200);
    let t0 = Instant::now();
    let r = tenure::Client::connect_start(nowhere).unwrap().wait();
    assert!(matches!(r, Err(Error::ConnectionFailed(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    // Close: a lock is reported lost, then the close is done; a second close is done at once.
    let l = a.lock("pc", Duration::from_secs(5)).unwrap();
    let p = a.close_start();
    p.wait_timeout(Duration::from_secs(5))
        .expect("closed")
        .unwrap();
    assert!(!l.is_held());
    assert!(a.close_start().is_done());
    assert!(matches!(a.status_start(), Err(Error::Closed)));
}
