//! The UDP runtime of the failure detector: one socket per network, one I/O thread.
//!
//! The thread sends a heartbeat ([`super::wire`]) to every peer on every network each
//! interval, receives the peers' heartbeats, feeds them to a [`DetectorCore`] and queues the
//! events it returns on every subscription ([`crate::events`]); it never runs user code. All
//! rules are in the core; this file only moves datagrams and time.
//!
//! A datagram counts as a heartbeat of peer `p` on network `n` when it arrives on `n`'s
//! socket, decodes ([`super::wire`]), names `p` as its sender, and is newer than the last
//! one accepted from `p` on `n` (same boot id and a higher sequence number, or another boot
//! id: `p` restarted). The source address is not checked. Everything else is counted as
//! rejected ([`DetectorCounters`]) and otherwise ignored. Datagrams read in one go are given
//! to the core as one batch, before its deadlines are checked.

use super::wire::{self, MAX_DATAGRAM};
use super::{validate_name, DetectorConfig, DetectorCore, DetectorStatus, Estimator};
use super::{MAX_NETWORKS, MAX_PEERS};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::events::{Dispatcher, Event, Handler, Sink, Subscription};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A peer and its address on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's process name (the name it puts in its heartbeats).
    pub name: String,
    /// Its socket address on this network (`host:port`).
    pub addr: String,
}

/// One network: a local socket and the peers' addresses on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Network name (used in events).
    pub name: String,
    /// Local address to bind this network's socket to (`host:port`; port 0 picks one).
    pub bind: String,
    /// Every peer with its address on this network. Every network must list the same peers.
    pub peers: Vec<PeerAddr>,
}

/// Configuration of a [`Detector`].
#[derive(Debug, Clone, PartialEq)]
pub struct UdpConfig {
    /// This process's name, sent in its heartbeats.
    pub name: String,
    /// The networks, at least one.
    pub networks: Vec<NetworkConfig>,
    /// Interval, estimator and network failure limit. The interval is also the sending
    /// interval of this process.
    pub detector: DetectorConfig,
}

impl UdpConfig {
    /// A configuration for process `name` heartbeating every `interval`, with the default
    /// estimator and no network yet.
    pub fn new(name: impl Into<String>, interval: Duration) -> Self {
        UdpConfig {
            name: name.into(),
            networks: Vec::new(),
            detector: DetectorConfig::new(interval),
        }
    }

    /// Adds a network: its name, the local address to bind and `(peer name, peer address)`
    /// pairs.
    pub fn network<N: Into<String>, A: Into<String>>(
        mut self,
        name: impl Into<String>,
        bind: impl Into<String>,
        peers: impl IntoIterator<Item = (N, A)>,
    ) -> Self {
        self.networks.push(NetworkConfig {
            name: name.into(),
            bind: bind.into(),
            peers: peers
                .into_iter()
                .map(|(n, a)| PeerAddr {
                    name: n.into(),
                    addr: a.into(),
                })
                .collect(),
        });
        self
    }

    /// Sets the estimator.
    pub fn estimator(mut self, estimator: Estimator) -> Self {
        self.detector.estimator = estimator;
        self
    }

    /// Sets the network failure limit.
    pub fn network_failure_limit(mut self, limit: Duration) -> Self {
        self.detector.network_failure_limit = limit;
        self
    }
}

fn resolve(what: &str, addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| Error::InvalidArgument(format!("{what} {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| Error::InvalidArgument(format!("{what} {addr:?} resolves to nothing")))
}

/// A configuration checked and resolved.
struct Plan {
    networks: Vec<(String, SocketAddr, Vec<SocketAddr>)>,
    peers: Vec<String>,
}

fn plan(cfg: &UdpConfig) -> Result<Plan> {
    validate_name("process name", &cfg.name)?;
    cfg.detector.validate()?;
    if cfg.networks.is_empty() {
        return Err(Error::InvalidArgument("no networks given".into()));
    }
    if cfg.networks.len() > MAX_NETWORKS {
        return Err(Error::InvalidArgument(format!(
            "{} networks given; the limit is {MAX_NETWORKS}",
            cfg.networks.len()
        )));
    }
    let first = &cfg.networks[0];
    let peers: Vec<String> = first.peers.iter().map(|p| p.name.clone()).collect();
    let peer_set: HashSet<&str> = peers.iter().map(String::as_str).collect();
    let mut net_names = HashSet::new();
    let mut networks = Vec::new();
    for net in &cfg.networks {
        validate_name("network name", &net.name)?;
        if !net_names.insert(net.name.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "duplicate network name {:?}",
                net.name
            )));
        }
        let bind = resolve(
            &format!("bind address of network {:?}", net.name),
            &net.bind,
        )?;
        if net.peers.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "network {:?} lists no peers",
                net.name
            )));
        }
        if net.peers.len() > MAX_PEERS {
            return Err(Error::InvalidArgument(format!(
                "network {:?} lists {} peers; the limit is {MAX_PEERS}",
                net.name,
                net.peers.len()
            )));
        }
        let mut addrs = HashMap::new();
        for p in &net.peers {
            validate_name("peer name", &p.name)?;
            if p.name == cfg.name {
                return Err(Error::InvalidArgument(format!(
                    "network {:?} lists this process {:?} as its own peer",
                    net.name, p.name
                )));
            }
            let a = resolve(
                &format!("address of peer {:?} on network {:?}", p.name, net.name),
                &p.addr,
            )?;
            if addrs.insert(p.name.as_str(), a).is_some() {
                return Err(Error::InvalidArgument(format!(
                    "duplicate peer {:?} on network {:?}",
                    p.name, net.name
                )));
            }
        }
        let these: HashSet<&str> = addrs.keys().copied().collect();
        if these != peer_set {
            return Err(Error::InvalidArgument(format!(
                "network {:?} lists other peers than network {:?}; every network must list the same peers",
                net.name, first.name
            )));
        }
        // Send in the order of the core's peers.
        let ordered = peers.iter().map(|p| addrs[p.as_str()]).collect();
        networks.push((net.name.clone(), bind, ordered));
    }
    Ok(Plan { networks, peers })
}

/// Datagram counters of a [`Detector`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectorCounters {
    /// Heartbeats sent (one per peer per network per round).
    pub sent: u64,
    /// Sends the operating system refused (the heartbeat is lost; the next round retries).
    pub send_errors: u64,
    /// Valid heartbeats from known peers fed to the detector.
    pub received: u64,
    /// Datagrams ignored: malformed, oversized, from an unknown sender or a late duplicate.
    pub rejected: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    send_errors: AtomicU64,
    received: AtomicU64,
    rejected: AtomicU64,
}

struct Shared {
    core: Mutex<DetectorCore>,
    sinks: Mutex<Vec<Sink>>,
    stop: AtomicBool,
    /// Per network: false while sending is switched off ([`Detector::set_sending`]).
    sending: Vec<AtomicBool>,
    counters: Counters,
    clock: Arc<dyn Clock>,
}

impl Shared {
    fn dispatch(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut sinks = self.sinks.lock();
        for ev in events {
            sinks.retain(|s| s.send(ev.clone()));
        }
    }
}

const WAKER: Token = Token(usize::MAX);

/// Most datagrams read from one socket per turn of the I/O loop.
const MAX_READS: usize = 4096;

/// A running UDP failure detector. Stops when [`Detector::stop`] is called or it is dropped.
pub struct Detector {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    networks: Vec<(String, SocketAddr)>,
    /// Runs the callbacks of this detector's subscriptions.
    dispatcher: Dispatcher,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("networks", &self.networks)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Checks the configuration, binds one socket per network and starts heartbeating.
    /// Bad input is [`Error::InvalidArgument`]; a socket that cannot be bound is
    /// [`Error::Io`].
    pub fn start(cfg: UdpConfig) -> Result<Detector> {
        let plan = plan(&cfg)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut sockets = Vec::new();
        let mut local = Vec::new();
        for (i, (name, bind, _)) in plan.networks.iter().enumerate() {
            let std_sock = std::net::UdpSocket::bind(bind)
                .map_err(|e| Error::Io(format!("cannot bind network {name:?} to {bind}: {e}")))?;
            std_sock.set_nonblocking(true)?;
            let mut sock = UdpSocket::from_std(std_sock);
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)?;
            local.push((name.clone(), sock.local_addr()?));
            sockets.push(sock);
        }
        let now = clock.now();
        let core = DetectorCore::new(
            cfg.detector.clone(),
            plan.networks.iter().map(|n| n.0.clone()).collect(),
            plan.peers.clone(),
            now,
        )?;
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            sinks: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            sending: plan
                .networks
                .iter()
                .map(|_| AtomicBool::new(true))
                .collect(),
            counters: Counters::default(),
            clock,
        });
        let n_networks = plan.networks.len();
        let mut io = Io {
            shared: shared.clone(),
            poll,
            sockets,
            peer_addrs: plan.networks.into_iter().map(|n| n.2).collect(),
            name: cfg.name.clone(),
            peer_index: plan
                .peers
                .iter()
                .enumerate()
                .map(|(i, p)| (p.clone(), i))
                .collect(),
            pending: vec![false; n_networks],
            interval: cfg.detector.interval,
            boot: fastrand::u64(..),
            seq: 0,
            seen: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("tenure-detector".into())
            .spawn(move || io.run())?;
        Ok(Detector {
            shared,
            waker,
            thread: Some(thread),
            networks: local,
            dispatcher: Dispatcher::new("detector"),
        })
    }

    /// Delivers every later event of this detector to `callback`, on the detector's
    /// dispatcher thread.
    pub fn subscribe(&self, callback: impl Fn(Event) + Send + Sync + 'static) -> Subscription {
        self.subscribe_with(Handler::dispatched(callback))
    }

    /// [`Detector::subscribe`] with a [`Handler`] (an inline one, for language bindings).
    pub fn subscribe_with(&self, handler: Handler) -> Subscription {
        let (sub, sink) = self.dispatcher.subscribe(handler);
        self.shared.sinks.lock().push(sink);
        sub
    }

    /// A snapshot of the detector's state.
    pub fn status(&self) -> DetectorStatus {
        let now = self.shared.clock.now();
        self.shared.core.lock().status(now)
    }

    /// Datagram counters.
    pub fn counters(&self) -> DetectorCounters {
        let c = &self.shared.counters;
        DetectorCounters {
            sent: c.sent.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
        }
    }

    /// The address a network's socket is bound to.
    pub fn local_addr(&self, network: &str) -> Option<SocketAddr> {
        self.networks
            .iter()
            .find(|(n, _)| n == network)
            .map(|(_, a)| *a)
    }

    /// Switches sending on one network off or on again (maintenance, fault drills): the
    /// peers then see this process silent on that network only. Receiving goes on.
    pub fn set_sending(&self, network: &str, on: bool) -> Result<()> {
        let i = self
            .networks
            .iter()
            .position(|(n, _)| n == network)
            .ok_or_else(|| Error::InvalidArgument(format!("no network named {network:?}")))?;
        self.shared.sending[i].store(on, Ordering::Release);
        Ok(())
    }

    /// Stops heartbeating and closes the sockets. Subscriptions stay open but get no more
    /// events.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The I/O thread's state.
struct Io {
    shared: Arc<Shared>,
    poll: Poll,
    sockets: Vec<UdpSocket>,
    /// Per network, the peers' addresses in the core's peer order.
    peer_addrs: Vec<Vec<SocketAddr>>,
    name: String,
    /// Peer name to the core's peer index (this process's own name is not in it).
    peer_index: HashMap<String, usize>,
    /// Per network: data may be waiting (an event came, or the last read stopped early).
    pending: Vec<bool>,
    interval: Duration,
    boot: u64,
    seq: u64,
    /// Latest (boot, seq) accepted per (peer, network).
    seen: HashMap<(usize, usize), (u64, u64)>,
}

impl Io {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut next_send = self.shared.clock.now();
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            let now = self.shared.clock.now();
            if now >= next_send {
                self.send_round();
                next_send += self.interval;
                if next_send <= now {
                    // Fell behind (the thread was paused): do not send a burst.
                    next_send = now + self.interval;
                }
            }
            let (evs, wake) = {
                let mut core = self.shared.core.lock();
                let evs = core.poll(now);
                (evs, core.next_wakeup())
            };
            self.shared.dispatch(evs);
            let until = wake.map_or(next_send, |w| w.min(next_send));
            let timeout = if self.pending.iter().any(|p| *p) {
                Duration::ZERO
            } else {
                until.saturating_duration_since(self.shared.clock.now())
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("tenure: detector poll failed: {e}; detector stopped");
                    return;
                }
            }
            for e in events.iter() {
                if let Some(p) = self.pending.get_mut(e.token().0) {
                    *p = true;
                }
            }
            // Everything that is waiting is one batch at one instant: after a pause of this
            // thread, heartbeats that queued up meanwhile count before any deadline does.
            let mut batch = Vec::new();
            for n in 0..self.sockets.len() {
                if self.pending[n] {
                    self.pending[n] = !self.receive(n, &mut buf, &mut batch);
                }
            }
            if !batch.is_empty() {
                let now = self.shared.clock.now();
                let evs = self.shared.core.lock().on_heartbeats_at(&batch, now);
                self.shared.dispatch(evs);
            }
        }
    }

    fn send_round(&mut self) {
        self.seq += 1;
        let datagram = wire::encode(&self.name, self.boot, self.seq);
        let c = &self.shared.counters;
        for (n, sock) in self.sockets.iter().enumerate() {
            if !self.shared.sending[n].load(Ordering::Acquire) {
                continue;
            }
            for addr in &self.peer_addrs[n] {
                match sock.send_to(&datagram, *addr) {
                    Ok(_) => c.sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => c.send_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    }

    /// Reads network `n`'s socket until it would block (mio is edge-triggered), appending the
    /// valid heartbeats as `(peer, network)` to `batch`. Reads at most [`MAX_READS`]
    /// datagrams; returns false when it stopped for that reason (the rest is read at the next
    /// turn of the loop, so a flood on one socket cannot starve the others or the timers).
    fn receive(&mut self, n: usize, buf: &mut [u8], batch: &mut Vec<(usize, usize)>) -> bool {
        let mut errors = 0;
        for _ in 0..MAX_READS {
            let len = match self.sockets[n].recv_from(buf) {
                Ok((len, _from)) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An error queued on the socket (ICMP port unreachable after a send to a peer
                // that is down) is consumed by reading it. Anything persistent gives up for
                // this turn.
                Err(_) => {
                    errors += 1;
                    if errors > 16 {
                        return true;
                    }
                    continue;
                }
            };
            let c = &self.shared.counters;
            let peer = match wire::decode(&buf[..len]) {
                Ok(hb) => self
                    .peer_index
                    .get(hb.sender)
                    .map(|&p| (p, hb.boot, hb.seq)),
                Err(_) => None,
            };
            let Some((p, boot, seq)) = peer else {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let fresh = match self.seen.get(&(p, n)) {
                Some(&(b, s)) => b != boot || seq > s,
                None => true,
            };
            if !fresh {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.seen.insert((p, n), (boot, seq));
            c.received.fetch_add(1, Ordering::Relaxed);
            batch.push((p, n));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(cfg: UdpConfig) -> String {
        match plan(&cfg) {
            Err(Error::InvalidArgument(m)) => m,
            Err(e) => panic!("wrong error {e:?}"),
            Ok(_) => panic!("accepted a bad configuration"),
        }
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        let ms = Duration::from_millis;
        let ok =
            || UdpConfig::new("a", ms(100)).network("n", "127.0.0.1:0", [("b", "127.0.0.1:9")]);
        assert!(plan(&ok()).is_ok());
        assert!(err(UdpConfig::new("a", ms(100))).contains("no networks"));
        let mut c = ok();
        c.name.clear();
        assert!(err(c).contains("process name is empty"));
        assert!(
            err(ok().network("n", "127.0.0.1:0", [("b", "127.0.0.1:9")]))
                .contains("duplicate network")
        );
        assert!(err(UdpConfig::new("a", ms(100)).network(
            "n",
            "127.0.0.1:0",
            [("b", "127.0.0.1:9"), ("b", "127.0.0.1:8")]
        ))
        .contains("duplicate peer"));
        assert!(err(UdpConfig::new("a", ms(100)).network(
            "n",
            "127.0.0.1:0",
            [("a", "127.0.0.1:9")]
        ))
        .contains("own peer"));
        assert!(
            err(UdpConfig::new("a", ms(100)).network("n", "nonsense", [("b", "127.0.0.1:9")]))
                .contains("bind address")
        );
        assert!(err(UdpConfig::new("a", ms(100)).network(
            "n",
            "127.0.0.1:0",
            [("b", "127.0.0.1")]
        ))
        .contains("address of peer"));
        assert!(err(UdpConfig::new("a", ms(100)).network(
            "n",
            "127.0.0.1:0",
            Vec::<(String, String)>::new()
        ))
        .contains("no peers"));
        assert!(
            err(ok().network("m", "127.0.0.1:0", [("c", "127.0.0.1:9")])).contains("same peers")
        );
        assert!(err(UdpConfig::new("a", Duration::ZERO).network(
            "n",
            "127.0.0.1:0",
            [("b", "127.0.0.1:9")]
        ))
        .contains("interval"));
        assert!(err(UdpConfig::new("a", Duration::from_secs(3600)).network(
            "n",
            "127.0.0.1:0",
            [("b", "127.0.0.1:9")]
        ))
        .contains("interval"));
    }
}
