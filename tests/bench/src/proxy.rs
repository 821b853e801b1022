//! The retry benchmark's fault proxy: one thread, one listener per client group, every
//! connection of a group forwarded to its server, the path failing on command ([`Mode`]), and what
//! each group sends toward the server counted per time bucket (each connection accepted,
//! and each request frame after a connection's hello).
//!
//! It reads tenure's framing (a 4-byte big-endian length, then the payload) in both
//! directions, so it can lose or delay whole messages and keep every stream well formed:
//!
//! - [`Mode::Refused`]: every connection is closed; each new one is reset as soon as it is
//!   accepted (the client's dial fails at once, as against a closed port, and is counted).
//! - [`Mode::BlackHole`]: every message either way is read and dropped; connections stay
//!   open; a new connection reaches nothing (it is not forwarded: a black-holed connect
//!   never reaches the server) and stays so, so its handshake times out.
//! - [`Mode::Slow`]: every message to a client is held for the given time, in order (an
//!   overloaded server); requests pass.
//!
//! The same outages as the simulation's (`core/src/sim/retry.rs`), measured at the same
//! place: what reaches the path.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::mono_ns;

/// How the path behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything passes.
    Pass,
    /// Nothing listens: connections closed, new ones reset.
    Refused,
    /// Every message lost; connections stay open.
    BlackHole,
    /// Every message to a client is this many nanoseconds late.
    Slow(u64),
}

/// Largest frame the proxy forwards (tenure's largest is 1 MiB); a longer length prefix
/// closes the connection.
const MAX_FRAME: usize = 2 << 20;

struct Shared {
    mode: Mode,
    stop: bool,
    /// Per group, dials and requests per bucket since `base`.
    counts: Vec<Vec<u32>>,
}

/// A running proxy. Dropping it stops its thread.
pub struct Proxy {
    shared: Arc<Mutex<Shared>>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    /// The listening address of each group.
    pub addrs: Vec<String>,
    /// `CLOCK_MONOTONIC` time of bucket 0.
    pub base: u64,
}

/// One forwarded connection.
struct Pair {
    group: usize,
    client: TcpStream,
    /// `None` for a connection made during a black hole: it leads nowhere.
    server: Option<TcpStream>,
    /// Bytes read from the client not yet a whole frame.
    from_client: Vec<u8>,
    from_server: Vec<u8>,
    /// The client's hello has gone by (later frames are requests).
    hello_seen: bool,
    to_server: Vec<u8>,
    /// Frames for the client, with the instant they may go.
    to_client: VecDeque<(u64, Vec<u8>)>,
    /// Bytes of the front frame already written to the client.
    client_written: usize,
}

impl Proxy {
    /// Starts a proxy with a listener on loopback per server of `servers`, forwarding to it.
    pub fn start(servers: Vec<SocketAddr>, bucket: Duration) -> Result<Proxy, String> {
        let groups = servers.len();
        let poll = Poll::new().map_err(|e| format!("proxy: {e}"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), Token(usize::MAX)).map_err(|e| format!("proxy: {e}"))?,
        );
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for g in 0..groups {
            let mut l = TcpListener::bind("127.0.0.1:0".parse().expect("an address"))
                .map_err(|e| format!("proxy: bind: {e}"))?;
            // A thousand clients may dial at once (after a refused outage, say): a queue of
            // pending connections as long as the system allows (net.core.somaxconn), not the
            // 1,024 of `bind`, so that none waits for a SYN retransmission.
            // SAFETY: listen on the listener's own open socket.
            unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 65_535) };
            poll.registry()
                .register(&mut l, Token(g), Interest::READABLE)
                .map_err(|e| format!("proxy: {e}"))?;
            addrs.push(l.local_addr().map_err(|e| e.to_string())?.to_string());
            listeners.push(l);
        }
        let shared = Arc::new(Mutex::new(Shared {
            mode: Mode::Pass,
            stop: false,
            counts: vec![Vec::new(); groups],
        }));
        let base = mono_ns();
        let bucket = bucket.as_nanos() as u64;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("retry-proxy".into())
            .spawn(move || run(poll, listeners, servers, sh, base, bucket))
            .map_err(|e| format!("proxy: {e}"))?;
        Ok(Proxy {
            shared,
            waker,
            thread: Some(thread),
            addrs,
            base,
        })
    }

    /// Changes how the path behaves, now.
    pub fn set(&self, mode: Mode) {
        self.shared.lock().unwrap().mode = mode;
        let _ = self.waker.wake();
    }

    /// Each group's counts per bucket so far.
    pub fn counts(&self) -> Vec<Vec<u32>> {
        self.shared.lock().unwrap().counts.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.lock().unwrap().stop = true;
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn count(sh: &Mutex<Shared>, base: u64, bucket: u64, group: usize, n: u32) {
    if n == 0 {
        return;
    }
    let b = (mono_ns().saturating_sub(base) / bucket) as usize;
    let mut s = sh.lock().unwrap();
    let v = &mut s.counts[group];
    if v.len() <= b {
        v.resize(b + 1, 0);
    }
    v[b] += n;
}

/// Splits whole frames off the front of `buf`; `None` on a length no tenure frame has.
fn frames(buf: &mut Vec<u8>) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 4 {
        let len = u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return None;
        }
        if buf.len() - at < 4 + len {
            break;
        }
        out.push(buf[at..at + 4 + len].to_vec());
        at += 4 + len;
    }
    buf.drain(..at);
    Some(out)
}

/// Reads what is there; false when the stream ended or failed.
fn drain(s: &mut TcpStream, into: &mut Vec<u8>) -> bool {
    let mut b = [0u8; 16 * 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return false,
            Ok(n) => into.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Writes as much of `buf` as the socket takes; false on a failure.
fn flush(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return false,
            Ok(n) => {
                buf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

impl Pair {
    /// Moves what can move; false when the pair is over.
    fn pump(&mut self, mode: Mode, now: u64) -> (bool, u32) {
        let mut requests = 0;
        let client_open = drain(&mut self.client, &mut self.from_client);
        let Some(fs) = frames(&mut self.from_client) else {
            return (false, requests);
        };
        for f in fs {
            if self.hello_seen {
                requests += 1;
            }
            self.hello_seen = true;
            if mode != Mode::BlackHole {
                self.to_server.extend_from_slice(&f);
            }
        }
        let Some(server) = self.server.as_mut() else {
            return (client_open, requests); // what it sends is lost
        };
        let server_open = drain(server, &mut self.from_server);
        let Some(fs) = frames(&mut self.from_server) else {
            return (false, requests);
        };
        for f in fs {
            match mode {
                Mode::BlackHole => {}
                Mode::Slow(late) => self.to_client.push_back((now + late, f)),
                _ => {
                    let at = self.to_client.back().map_or(now, |b| b.0.max(now));
                    self.to_client.push_back((at, f));
                }
            }
        }
        if !flush(server, &mut self.to_server) {
            return (false, requests);
        }
        while let Some((at, f)) = self.to_client.front() {
            if *at > now {
                break;
            }
            match self.client.write(&f[self.client_written..]) {
                Ok(n) if n > 0 => {
                    self.client_written += n;
                    if self.client_written == f.len() {
                        self.to_client.pop_front();
                        self.client_written = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => return (false, requests),
            }
        }
        (client_open && server_open, requests)
    }
}

fn run(
    mut poll: Poll,
    listeners: Vec<TcpListener>,
    servers: Vec<SocketAddr>,
    sh: Arc<Mutex<Shared>>,
    base: u64,
    bucket: u64,
) {
    let groups = listeners.len();
    let mut pairs: HashMap<usize, Pair> = HashMap::new();
    let mut next = groups; // tokens: listeners, then two per pair (client, server)
    let mut events = Events::with_capacity(1024);
    let mut last_mode = Mode::Pass;
    loop {
        let (mode, stop) = {
            let s = sh.lock().unwrap();
            (s.mode, s.stop)
        };
        if stop {
            return;
        }
        if mode != last_mode {
            if mode == Mode::Refused {
                for (_, mut p) in pairs.drain() {
                    let _ = poll.registry().deregister(&mut p.client);
                    if let Some(srv) = p.server.as_mut() {
                        let _ = poll.registry().deregister(srv);
                    }
                }
            }
            last_mode = mode;
        }
        // Held replies wake the loop when they are due.
        let held = pairs.values().any(|p| !p.to_client.is_empty());
        let timeout = if held {
            Some(Duration::from_millis(1))
        } else {
            None
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("retry proxy: poll: {e}");
            return;
        }
        let mut touched: Vec<usize> = Vec::new();
        for ev in events.iter() {
            let t = ev.token().0;
            if t == usize::MAX {
                continue; // the waker: the mode is read at the top
            }
            if t < groups {
                loop {
                    match listeners[t].accept() {
                        Ok((client, _)) => {
                            count(&sh, base, bucket, t, 1);
                            if mode == Mode::Refused {
                                // Reset at once: linger 0, then close.
                                let _ = socket_linger0(&client);
                                drop(client);
                                continue;
                            }
                            let mut srv = if mode == Mode::BlackHole {
                                None
                            } else {
                                match TcpStream::connect(servers[t]) {
                                    Ok(s) => Some(s),
                                    Err(_) => continue,
                                }
                            };
                            let mut client = client;
                            let _ = client.set_nodelay(true);
                            if let Some(s) = &srv {
                                let _ = s.set_nodelay(true);
                            }
                            let id = next;
                            next += 2;
                            let r = poll.registry();
                            if r.register(
                                &mut client,
                                Token(id),
                                Interest::READABLE | Interest::WRITABLE,
                            )
                            .is_err()
                                || srv.as_mut().is_some_and(|s| {
                                    r.register(
                                        s,
                                        Token(id + 1),
                                        Interest::READABLE | Interest::WRITABLE,
                                    )
                                    .is_err()
                                })
                            {
                                continue;
                            }
                            pairs.insert(
                                id,
                                Pair {
                                    group: t,
                                    client,
                                    server: srv,
                                    from_client: Vec::new(),
                                    from_server: Vec::new(),
                                    hello_seen: false,
                                    to_server: Vec::new(),
                                    to_client: VecDeque::new(),
                                    client_written: 0,
                                },
                            );
                            touched.push(id);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            } else {
                touched.push(t - (t - groups) % 2);
            }
        }
        if held {
            touched.extend(
                pairs
                    .iter()
                    .filter(|(_, p)| !p.to_client.is_empty())
                    .map(|(k, _)| *k),
            );
        }
        touched.sort_unstable();
        touched.dedup();
        let now = mono_ns();
        for id in touched {
            let Some(p) = pairs.get_mut(&id) else {
                continue;
            };
            let (alive, requests) = p.pump(mode, now);
            count(&sh, base, bucket, p.group, requests);
            if !alive {
                if let Some(mut p) = pairs.remove(&id) {
                    let _ = poll.registry().deregister(&mut p.client);
                    if let Some(srv) = p.server.as_mut() {
                        let _ = poll.registry().deregister(srv);
                    }
                }
            }
        }
    }
}

/// Sets SO_LINGER to zero, so that closing the socket resets the connection.
fn socket_linger0(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid pointer and length.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
