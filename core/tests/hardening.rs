//! The probes of issue 11 as tests: replies larger than a frame, greedy and stalled peers,
//! unfinished frames, connection and descriptor limits, a client behind an endpoint that
//! accepts and never answers, and a first open answered too late. Servers run in this
//! process or as `tenure serve` processes (where memory is measured). Every wait is bounded.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenure::proto::{
    self, ClientMsg, Reply, Request, ServerMsg, StatusCursor, MAX_FRAME, MAX_NAME_LEN,
    MAX_REQUEST_FRAME,
};
use tenure::{Client, ClientConfig, Durability, Error, Event, Server, ServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_tenure");

/// `tenure serve` with extra arguments (through `sh -c` with `prefix`, e.g. a ulimit), and
/// its address.
fn serve_proc(dir: &Path, extra: &[&str], prefix: &str) -> (Proc, String) {
    let mut cmd = format!(
        "{prefix} exec {BIN} serve --listen 127.0.0.1:0 --durability none --data '{}'",
        dir.display()
    );
    for a in extra {
        cmd.push(' ');
        cmd.push_str(a);
    }
    let mut c = Command::new("sh")
        .args(["-c", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let l = first_line(&mut c, Duration::from_secs(20)).expect("tenure serve prints its address");
    (Proc(c), l)
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn frame(m: &ClientMsg) -> Vec<u8> {
    let mut b = vec![];
    proto::encode(m, &mut b).unwrap();
    b
}

fn hello() -> Vec<u8> {
    frame(&ClientMsg::Hello {
        magic: proto::MAGIC,
        version: proto::PROTOCOL_VERSION,
        client_name: "probe".into(),
    })
}

fn opened(m: Option<ServerMsg>) -> u64 {
    match m {
        Some(ServerMsg::Reply {
            result: Ok(Reply::Opened { session, .. }),
            ..
        }) => session,
        other => panic!("expected an open reply, got {other:?}"),
    }
}

/// True when the peer closed the connection within `limit` (reads until EOF).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Busy threads on every core for as long as the returned flag is false.
fn load_cores() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let n = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 0..n {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        });
    }
    stop
}

// ---- Replies larger than a frame --------------------------------------------------------

#[test]
fn a_status_of_100000_sessions_and_1050_long_named_locks_is_served_in_pages() {
    let dir = tmpdir("big-status");
    let srv = Server::start(ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        durability: Durability::None,
        ..Default::default()
    })
    .unwrap();
    let addr = srv.local_addr().to_string();
    // 100,000 sessions, opened over two connections, pipelined.
    let mut conns: Vec<Raw> = (0..2).map(|_| Raw::connect(&addr)).collect();
    for (k, raw) in conns.iter_mut().enumerate() {
        let mut batch = vec![];
        for i in 0..50_000u64 {
            batch.extend(frame(&ClientMsg::Request {
                session: 0,
                req: (k as u64) << 32 | i,
                body: Request::Open { ttl_ms: 600_000 },
            }));
        }
        let mut w = raw.s.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&batch).unwrap());
    }
    let mut first = 0;
    for raw in &mut conns {
        for _ in 0..50_000 {
            first = opened(raw.recv_within(Duration::from_secs(60)));
        }
    }
    // 1,050 locks with names of the longest size, held by the last session.
    let mut raw = conns.pop().unwrap();
    let mut batch = vec![];
    for i in 0..1050u64 {
        let name = format!("{i:04}{}", "n".repeat(MAX_NAME_LEN - 4));
        batch.extend(frame(&ClientMsg::Request {
            session: first,
            req: 1 + i,
            body: Request::Acquire { name, wait: false },
        }));
    }
    raw.s.write_all(&batch).unwrap();
    for _ in 0..1050 {
        match raw.recv_within(Duration::from_secs(30)) {
            Some(ServerMsg::Reply {
                result: Ok(Reply::Granted { .. }),
                ..
            }) => {}
            other => panic!("expected a grant, got {other:?}"),
        }
    }
    // One page: within a frame, with a cursor to the rest.
    raw.req(0, 9_999, Request::Status { from: None });
    let page = match raw.recv_within(Duration::from_secs(30)) {
        Some(ServerMsg::Reply {
            result: Ok(Reply::Status(st)),
            ..
        }) => st,
        other => panic!("expected a status page, got {other:?}"),
    };
    assert!(proto::encoded_len(&page).unwrap() <= MAX_FRAME);
    assert!(
        matches!(page.next, Some(StatusCursor::Sessions(_))),
        "{:?}",
        page.next
    );
    // The whole status, through the client, page by page; the server is still serving.
    let c = client(&addr, 5000);
    let st = c.status().unwrap();
    assert_eq!(st.sessions.len(), 100_001);
    assert_eq!(st.locks.len(), 1050);
    assert!(st.sessions.windows(2).all(|w| w[0].id < w[1].id));
    let l = c.lock("after", Duration::from_secs(5)).unwrap();
    l.release().unwrap();
    c.close();
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Greedy and stalled peers, unfinished frames, limits --------------------------------

#[test]
fn a_greedy_writer_cannot_starve_a_ttl_1s_holder_for_60s_nor_grow_the_server() {
    let dir = tmpdir("greedy");
    let (srv, addr) = serve_proc(&dir, &[], "");
    // State that makes status replies large (about 1 MiB a page).
    let filler = client(&addr, 60_000);
    let mut locks = vec![];
    for i in 0..900 {
        let name = format!("{i:04}{}", "f".repeat(MAX_NAME_LEN - 4));
        locks.push(filler.try_lock(&name).unwrap().unwrap());
    }
    let holder = client(&addr, 1000);
    let lost = Arc::new(Mutex::new(Vec::new()));
    let l2 = lost.clone();
    let _sub = holder
        .subscribe(move |ev| {
            if matches!(ev, Event::LockLost { .. } | Event::SessionExpired) {
                l2.lock().unwrap().push(ev);
            }
        })
        .unwrap();
    let lock = holder.lock("precious", Duration::from_secs(5)).unwrap();
    let base = rss(srv.0.id());
    // Two greedy peers that never read: one asks for big replies, one for many small ones.
    let stop = Arc::new(AtomicBool::new(false));
    let mut greedy = vec![];
    for big in [true, false] {
        let mut raw = Raw::connect(&addr);
        raw.req(0, 1, Request::Open { ttl_ms: 600_000 });
        let session = opened(raw.recv());
        let mut batch = vec![];
        for i in 0..1000u64 {
            let body = if big {
                Request::Status { from: None }
            } else {
                Request::Heartbeat
            };
            batch.extend(frame(&ClientMsg::Request {
                session,
                req: 2 + i,
                body,
            }));
        }
        let mut w = raw.s.try_clone().unwrap();
        greedy.push(raw.s.try_clone().unwrap());
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if w.write_all(&batch).is_err() {
                    return;
                }
            }
        });
    }
    let t0 = Instant::now();
    let mut peak = base;
    while t0.elapsed() < Duration::from_secs(60) {
        assert!(
            lock.is_held(),
            "the holder lost its lock after {:?}: {:?}",
            t0.elapsed(),
            lost.lock().unwrap()
        );
        peak = peak.max(rss(srv.0.id()));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for s in &greedy {
        let _ = s.shutdown(Shutdown::Both);
    }
    assert!(
        lost.lock().unwrap().is_empty(),
        "{:?}",
        lost.lock().unwrap()
    );
    let grew = peak.saturating_sub(base);
    assert!(
        grew < 64 << 20,
        "the server grew by {} MiB next to two greedy peers",
        grew >> 20
    );
    lock.release().unwrap();
    drop(locks);
    holder.close();
    filler.close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_thousand_unfinished_frames_stay_within_the_memory_budget_and_time_out() {
    let dir = tmpdir("partial");
    let (srv, addr) = serve_proc(&dir, &["--idle-timeout", "3"], "");
    let base = rss(srv.0.id());
    // Each: a handshake, then most of the largest request frame the server accepts.
    let len = MAX_REQUEST_FRAME as u32;
    let mut partial = hello();
    partial.extend(len.to_be_bytes());
    partial.extend(vec![7u8; MAX_REQUEST_FRAME - 1]);
    let mut socks = vec![];
    for _ in 0..1000 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(&partial).unwrap();
        socks.push(s);
    }
    // The server holds them all (each about its frame's size).
    std::thread::sleep(Duration::from_millis(500));
    let grew = rss(srv.0.id()).saturating_sub(base);
    let budget = 1000 * (MAX_REQUEST_FRAME as u64 + 8 * 1024);
    assert!(
        grew < budget,
        "1,000 unfinished frames took {} MiB (budget {} MiB)",
        grew >> 20,
        budget >> 20
    );
    // Other clients are served meanwhile.
    let c = client(&addr, 1000);
    let l = c.lock("meanwhile", Duration::from_secs(5)).unwrap();
    assert!(l.is_held());
    // A frame longer than a request may be closes its connection at once.
    let mut big = TcpStream::connect(&addr).unwrap();
    big.write_all(&hello()).unwrap();
    big.write_all(&(MAX_REQUEST_FRAME as u32 + 1).to_be_bytes())
        .unwrap();
    assert!(closed_within(&mut big, Duration::from_secs(5)));
    // Without a session, every one of them is closed after the idle timeout.
    for s in &mut socks {
        assert!(
            closed_within(s, Duration::from_secs(10)),
            "idle connection left open"
        );
    }
    assert!(l.is_held(), "a session's connection is not idle");
    l.release().unwrap();
    c.close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn at_the_connection_cap_idle_connections_make_room_and_sessions_are_refused_with_a_reason() {
    let dir = tmpdir("cap");
    let (_srv, addr) = serve_proc(&dir, &["--max-connections", "20"], "");
    let mut idle: Vec<Raw> = (0..20).map(|_| Raw::connect(&addr)).collect();
    // A client still gets in: the connection idle the longest is closed for it.
    let mut clients = vec![client(&addr, 5000)];
    assert!(closed_within(&mut idle[0].s, Duration::from_secs(5)));
    for _ in 1..20 {
        clients.push(client(&addr, 5000));
    }
    // Now every connection carries a session: the next is refused, saying why.
    let e = Client::connect(ClientConfig::new([addr.clone()])).unwrap_err();
    match e {
        Error::ConnectionFailed(m) => assert!(m.contains("limit of 20 connections"), "{m}"),
        e => panic!("unexpected {e:?}"),
    }
    for c in clients {
        c.close();
    }
    // Closed clients leave room again.
    let c = Client::connect(ClientConfig::new([addr.clone()])).unwrap();
    c.close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn out_of_descriptors_the_server_still_takes_new_clients() {
    let dir = tmpdir("fds");
    // 128 descriptors: room for 64 connections.
    let (_srv, addr) = serve_proc(&dir, &[], "ulimit -n 128 &&");
    let mut idle = vec![];
    for _ in 0..300 {
        if let Ok(s) = TcpStream::connect(&addr) {
            idle.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let c = client(&addr, 2000);
        let l = c.lock("fds", Duration::from_secs(5)).unwrap();
        l.release().unwrap();
        c.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- A client behind an endpoint that accepts and never answers ------------------------

/// A proxy that forwards until frozen; then it forwards nothing, and the connections made
/// to it are accepted and never answered.
struct Stall {
    addr: String,
    frozen: Arc<AtomicBool>,
}

fn stall_proxy(target: String) -> Stall {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let frozen = Arc::new(AtomicBool::new(false));
    let f = frozen.clone();
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in l.incoming().flatten() {
            if f.load(Ordering::Acquire) {
                held.push(s);
                continue;
            }
            let Ok(up) = TcpStream::connect(&target) else {
                continue;
            };
            for (mut a, mut b) in [(s.try_clone().unwrap(), up.try_clone().unwrap()), (up, s)] {
                let f = f.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = a.read(&mut buf) {
                        if n == 0 || f.load(Ordering::Acquire) {
                            break;
                        }
                        if b.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    // Frozen: keep both sockets open, forward nothing.
                    while f.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                });
            }
        }
    });
    Stall { addr, frozen }
}

#[test]
fn holders_behind_a_stalled_endpoint_are_told_before_the_next_grant_on_a_loaded_machine() {
    let dir = tmpdir("stalled");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let busy = load_cores();
    let trials: Vec<_> = (0..8)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let px = stall_proxy(addr.clone());
                let mut cfg =
                    ClientConfig::new([px.addr.clone()]).session_ttl(Duration::from_secs(1));
                cfg.reopen = false;
                let holder = Client::connect(cfg).unwrap();
                let name = format!("stalled/{i}");
                let lock = holder.lock(&name, Duration::from_secs(5)).unwrap();
                let lost = Arc::new(Mutex::new(None));
                let l2 = lost.clone();
                lock.on_lost(move |_| {
                    l2.lock().unwrap().get_or_insert(Instant::now());
                });
                let waiter = client(&addr, 10_000);
                let n2 = name.clone();
                let w = std::thread::spawn(move || {
                    let l = waiter.lock(&n2, Duration::from_secs(10)).unwrap();
                    (Instant::now(), l, waiter)
                });
                std::thread::sleep(Duration::from_millis(100 + 37 * i));
                px.frozen.store(true, Ordering::Release);
                let (granted, l, waiter) = w.join().unwrap();
                wait_for(Duration::from_secs(2), "the lost callback", || {
                    lost.lock().unwrap().is_some()
                });
                let told = lost.lock().unwrap().unwrap();
                assert!(!lock.is_held());
                drop(l);
                waiter.close();
                // Closing while a dial is stalled does not wait for it.
                let t = Instant::now();
                holder.close();
                assert!(
                    t.elapsed() < Duration::from_millis(500),
                    "close took {:?}",
                    t.elapsed()
                );
                (told, granted)
            })
        })
        .collect();
    let results: Vec<_> = trials.into_iter().map(|t| t.join().unwrap()).collect();
    busy.store(true, Ordering::Relaxed);
    for (i, (told, granted)) in results.iter().enumerate() {
        assert!(
            told < granted,
            "trial {i}: told {:?} after the grant",
            told.duration_since(*granted)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_session_stays_responsive_while_its_reconnect_stalls() {
    // TTL 10 s, connect timeout 5 s: a dial to a stalled endpoint takes seconds, during
    // which the client's calls and close must not wait for it.
    let dir = tmpdir("stalled-dial");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    let px = stall_proxy(addr.clone());
    let mut cfg = ClientConfig::new([px.addr.clone()]).session_ttl(Duration::from_secs(10));
    cfg.connect_timeout = Duration::from_secs(5);
    let c = Client::connect(cfg).unwrap();
    let jeopardy = Arc::new(AtomicBool::new(false));
    let j2 = jeopardy.clone();
    let _sub = c
        .subscribe(move |ev| {
            if matches!(ev, Event::SessionJeopardy { .. }) {
                j2.store(true, Ordering::Release);
            }
        })
        .unwrap();
    px.frozen.store(true, Ordering::Release);
    // The heartbeat times out (TTL/4) and the retries start dialling the stalled endpoint.
    wait_for(Duration::from_secs(10), "jeopardy", || {
        jeopardy.load(Ordering::Acquire)
    });
    std::thread::sleep(Duration::from_millis(3500));
    let t = Instant::now();
    c.close();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "close took {:?}",
        t.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- A first open answered too late ----------------------------------------------------

#[test]
fn a_first_open_answered_after_connect_gave_up_is_closed_at_once() {
    let dir = tmpdir("late-open");
    let srv = server(&dir);
    let addr = srv.local_addr().to_string();
    // A proxy that passes the handshake at once and delays everything after it by 1.5 s.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let paddr = l.local_addr().unwrap().to_string();
    let target = addr.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let up = TcpStream::connect(&target).unwrap();
            for (up_dir, (mut a, mut b)) in [
                (true, (s.try_clone().unwrap(), up.try_clone().unwrap())),
                (false, (up, s)),
            ] {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let mut first = true;
                    while let Ok(n) = a.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if !up_dir && !first {
                            std::thread::sleep(Duration::from_millis(1500));
                        }
                        first = false;
                        if b.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
    });
    let mut cfg = ClientConfig::new([paddr]).session_ttl(Duration::from_secs(30));
    cfg.connect_timeout = Duration::from_millis(300);
    let t = Instant::now();
    let e = Client::connect(cfg).unwrap_err();
    assert!(matches!(e, Error::ConnectionFailed(_)), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    // The open was answered later; the session it made is closed long before its TTL.
    let watcher = client(&addr, 5000);
    let own = watcher.session_id();
    wait_for(Duration::from_secs(8), "the late session closed", || {
        let st = watcher.status().unwrap();
        st.sessions.iter().all(|s| s.id == own)
    });
    watcher.close();
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}
