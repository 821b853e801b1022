//! The server's network runtime: one thread around a `mio` poll that reads frames from every
//! connection and hands them to the [`Node`], and performs what the node asks (log a command,
//! send a message, close a connection, check an endpoint). It holds no protocol rules of its
//! own; it does hold the connection budgets ([`READ_PER_TURN`], [`PAUSE_OUTBUF`],
//! [`MAX_OUTBUF`], the connection cap and the idle timeout). One loop turn is one group
//! commit: everything the node asked to persist in the turn is written, one `fdatasync`
//! makes it durable, and only then is the node told ([`Node::persisted`]): the commands
//! commit, are applied, and their replies written.

use super::node::{Node, NodeConfig, NodeIo};
use super::replica::{MemberId, ReplicaConfig};
use super::storage::{Recovered, Storage};
use super::{ServerConfig, CHECK_TIMEOUT, MAX_OUTBUF, MAX_OWED_READS, PAUSE_OUTBUF, READ_PER_TURN};
use crate::proto::{self, ClientMsg, ErrorReply, FrameReader, ServerMsg};
use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
/// The size of the buffer connections are read into.
const READ_BUF: usize = 64 * 1024;
/// The token of the waker that [`super::Server::stop`] and finished checks use.
pub(super) const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Tokens of the connections to the other members: this plus the member's id.
const LINK_BASE: usize = 1 << 40;
/// How long after a failed dial (or a broken connection) another member is dialled again.
pub const LINK_RETRY: Duration = Duration::from_millis(100);
/// The pause between the few dials that follow the break of a connection that had been up:
/// a killed process's listening socket may still take a connection for a moment before it
/// refuses them (see `Runtime::link_broke`).
pub const LINK_QUICK: Duration = Duration::from_millis(2);
/// How many such dials.
pub const LINK_QUICK_DIALS: u8 = 5;
/// Bytes of raft messages waiting for another member at which further ones are dropped
/// (raft sends again what is lost).
pub const LINK_OUTBUF: usize = 64 << 20;

/// This member's connection to another one: its raft messages go out on it, after a hello;
/// nothing comes back but a refusal or the close. Dialled at start and again after every
/// failure, so that hellos flow even when raft has nothing to say (a group looking for its
/// incarnation).
struct Link {
    id: MemberId,
    addr: String,
    stream: Option<TcpStream>,
    /// The connect has completed (the first writable event).
    up: bool,
    /// When it completed.
    up_since: Option<Instant>,
    /// Dials left at [`LINK_QUICK`] after a connection that had been up broke; while some
    /// are left, a refused dial tells the node the member is gone (once).
    quick: u8,
    out: Vec<u8>,
    next_dial: Instant,
}

struct Conn {
    stream: TcpStream,
    reader: FrameReader,
    out: Vec<u8>,
    /// Start of the replies in `out` that wait for the group commit.
    held_from: Option<usize>,
    writable_registered: bool,
    /// Close once `out` is written (the node asked, or a message could not be encoded).
    closing: bool,
    /// The socket may hold unread bytes (the last read stopped at the turn's budget, or a
    /// readable event came): mio is edge-triggered, so this must be remembered.
    more_to_read: bool,
    /// The peer closed its side; the connection closes once what it sent is handled.
    eof: bool,
    /// In [`Runtime::backlog`] already.
    queued: bool,
    /// Another member's connection: its frames are raft messages.
    peer: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            reader: FrameReader::with_limit(proto::MAX_REQUEST_FRAME),
            out: Vec::new(),
            held_from: None,
            writable_registered: false,
            closing: false,
            more_to_read: true,
            eof: false,
            queued: false,
            peer: false,
        }
    }

    /// Too much output waits for the peer: its requests are not read until it reads.
    fn paused(&self) -> bool {
        self.out.len() >= PAUSE_OUTBUF
    }
}

/// The server's I/O loop around its [`Node`]: sockets, the log, the connectivity checks.
pub(super) struct Runtime {
    poll: Poll,
    listener: TcpListener,
    storage: Storage,
    node: Node,
    /// The last persist batch handed to storage and not yet reported durable.
    persist_upto: Option<u64>,
    /// A storage failure met where it cannot be returned at once: it ends the loop.
    failed: Option<io::Error>,
    conns: HashMap<usize, Conn>,
    next_conn: usize,
    /// Connections whose output gained replies in this turn; those replies wait for the
    /// group commit before they are written.
    held: Vec<usize>,
    /// Outcomes of connectivity checks: (election, candidate, reachable).
    checks_tx: Sender<(String, String, bool)>,
    checks_rx: Receiver<(String, String, bool)>,
    waker: Arc<Waker>,
    /// Connections to serve in the next turn, in order: they have more to read or parse
    /// than one turn's budget, or output drained below the pause mark.
    backlog: VecDeque<usize>,
    /// See [`ServerConfig::max_connections`] (already capped by the descriptor limit).
    max_connections: usize,
    /// See [`ServerConfig::idle_timeout`].
    idle_timeout: Duration,
    /// When idle connections are looked for next.
    next_sweep: Instant,
    /// A descriptor held in reserve: when accept fails for want of descriptors, it is let go
    /// to accept and close the waiting connection, so the listener never stalls.
    spare_fd: Option<std::fs::File>,
    /// The buffer connections are read into (one for all: reads happen one at a time). Kept
    /// rather than made per read: zeroing 64 KiB for every connection served was 7 % of the
    /// server's CPU under load (`perf`, 16 clients).
    read_buf: Vec<u8>,
    /// Connections to the other members.
    links: Vec<Link>,
    /// The leader and term last said (see `say_leader`).
    leader_view: (Option<MemberId>, u64),
    /// The token in force, shared with the [`super::Server`] handle.
    incarnation: Arc<parking_lot::Mutex<crate::proto::Incarnation>>,
}

impl Runtime {
    /// A runtime serving `listener`, its node recovered from `rec`, in the group `cfg`
    /// describes (a group of one without a cluster).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        poll: Poll,
        mut listener: TcpListener,
        storage: Storage,
        rec: Recovered,
        waker: Arc<Waker>,
        cfg: &ServerConfig,
        max_connections: usize,
        incarnation: Arc<parking_lot::Mutex<crate::proto::Incarnation>>,
    ) -> io::Result<Runtime> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        let (checks_tx, checks_rx) = crossbeam_channel::unbounded();
        let seed = fastrand::u64(..);
        let node_cfg = if cfg.cluster.is_empty() {
            let mut c = NodeConfig::alone(rec.incarnation.unwrap_or(0), seed);
            c.addresses.insert(1, listener.local_addr()?.to_string());
            c
        } else {
            let voters = cfg.cluster.iter().map(|m| m.0).collect();
            NodeConfig {
                replica: ReplicaConfig::new(cfg.id, voters, seed),
                addresses: cfg.cluster.iter().cloned().collect(),
                incarnation: rec.incarnation,
                bootstrap: cfg.bootstrap,
                new_token: super::storage::random_token()?,
            }
        };
        let links = cfg
            .cluster
            .iter()
            .filter(|m| m.0 != cfg.id)
            .map(|(id, addr)| Link {
                id: *id,
                addr: addr.clone(),
                stream: None,
                up: false,
                up_since: None,
                quick: 0,
                out: Vec::new(),
                next_dial: now,
            })
            .collect();
        let node = Node::new(rec.state, node_cfg, rec.durable, now)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let idle_timeout = cfg.idle_timeout;
        let mut rt = Runtime {
            poll,
            listener,
            storage,
            node,
            persist_upto: None,
            failed: None,
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            held: Vec::new(),
            checks_tx,
            checks_rx,
            waker,
            backlog: VecDeque::new(),
            max_connections,
            idle_timeout,
            next_sweep: now,
            spare_fd: std::fs::File::open("/dev/null").ok(),
            read_buf: vec![0; READ_BUF],
            links,
            leader_view: (None, 0),
            incarnation,
        };
        // The replica's start (a group of one elects itself) asks for its first persist.
        rt.perform()?;
        Ok(rt)
    }

    /// Serves until `stop` is set (and the waker woken) or an I/O error ends the loop.
    pub(super) fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut writable = Vec::new();
        loop {
            let timeout = if self.backlog.is_empty() && self.persist_upto.is_none() {
                let redial = self
                    .links
                    .iter()
                    .filter(|l| l.stream.is_none())
                    .map(|l| l.next_dial);
                let next = self
                    .node
                    .next_wakeup()
                    .into_iter()
                    .chain((!self.conns.is_empty()).then_some(self.next_sweep))
                    .chain(redial)
                    .min();
                next.map(|d| {
                    d.saturating_duration_since(Instant::now())
                        .min(Duration::from_secs(1))
                })
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if stop.load(Ordering::Acquire) {
                self.storage.commit()?;
                return Ok(());
            }
            writable.clear();
            // Connections served this turn: those left over from the last one first, then
            // those that became readable, each once.
            let mut work: Vec<usize> = self.backlog.drain(..).collect();
            for c in &work {
                if let Some(conn) = self.conns.get_mut(c) {
                    conn.queued = false;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept()?,
                    WAKER => {}
                    Token(t) if t >= LINK_BASE => self.link_event(t - LINK_BASE, ev),
                    Token(t) => {
                        if ev.is_writable() {
                            writable.push(t);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            if let Some(conn) = self.conns.get_mut(&t) {
                                conn.more_to_read = true;
                                work.push(t);
                            }
                        }
                    }
                }
            }
            // Each once, in the order they became ready (requests from several connections
            // that arrived in one turn are handled in the order the kernel reported them).
            let mut seen = HashSet::with_capacity(work.len());
            for c in work {
                if seen.insert(c) {
                    self.serve(c);
                }
            }
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            let now = Instant::now();
            while let Ok((election, candidate, ok)) = self.checks_rx.try_recv() {
                self.node.checked(now, election, candidate, true, ok);
                self.perform()?;
            }
            // Dialled before the node's turn: a refused dial may make it campaign.
            self.dial_links(now);
            self.node.tick(now);
            self.perform()?;
            self.say_leader();
            if now >= self.next_sweep {
                self.close_idle(now);
            }
            // Group commit; what it made durable commits and is answered.
            self.storage.commit()?;
            if let Some(n) = self.persist_upto.take() {
                self.node.persisted(Instant::now(), n);
                self.perform()?;
            }
            let mut dirty = std::mem::take(&mut writable);
            for c in self.held.drain(..) {
                if let Some(conn) = self.conns.get_mut(&c) {
                    conn.held_from = None;
                    dirty.push(c);
                }
            }
            dirty.sort_unstable();
            dirty.dedup();
            for &c in &dirty {
                self.flush(c);
            }
            for i in 0..self.links.len() {
                self.flush_link(i);
            }
            writable = dirty;
            if self.storage.wants_snapshot() || self.node.wants_snapshot() {
                let (meta, data, rest, hs) = self.node.snapshot();
                self.storage.compact(&meta, &data, &rest, &hs)?;
                self.node.compacted(meta.index, data);
            }
        }
    }

    /// Performs what the node asked for. Fails only when storage does.
    fn perform(&mut self) -> io::Result<()> {
        while let Some(io) = self.node.poll_io() {
            match io {
                NodeIo::Persist {
                    number,
                    snapshot,
                    entries,
                    hard_state,
                } => {
                    self.storage
                        .persist(snapshot.as_ref(), &entries, hard_state.as_ref())?;
                    self.persist_upto = Some(number);
                }
                NodeIo::Peer { to, msg } => self.send_peer(to, &msg),
                NodeIo::Upgrade { conn } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.peer = true;
                        c.reader.set_limit(proto::MAX_PEER_FRAME);
                    }
                }
                NodeIo::Incarnation { token } => {
                    self.storage.store_token(token)?;
                    *self.incarnation.lock() = token;
                    // Hello again, with the token.
                    let now = Instant::now();
                    for i in 0..self.links.len() {
                        self.reset_link(i, now, false);
                    }
                }
                NodeIo::Send { conn, msg } => self.send_now(conn, &msg),
                NodeIo::Close { conn } => {
                    // Closed once what is queued for it is written after the commit (a
                    // connection is in `held` exactly while its `held_from` is set).
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.closing = true;
                        if c.held_from.is_none() {
                            c.held_from = Some(c.out.len());
                            self.held.push(conn);
                        }
                    }
                }
                NodeIo::Check {
                    election,
                    candidate,
                    endpoint,
                } => self.check(election, candidate, endpoint),
                NodeIo::Member { id, address } => self.member_at(id, address),
            }
        }
        Ok(())
    }

    /// Checks on a thread of its own that `endpoint` accepts a connection.
    fn check(&mut self, election: String, candidate: String, endpoint: String) {
        let tx = self.checks_tx.clone();
        let waker = self.waker.clone();
        let (e2, c2) = (election.clone(), candidate.clone());
        let spawned = std::thread::Builder::new()
            .name("tenure-check".into())
            .spawn(move || {
                let ok = endpoint
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .is_some_and(|a| {
                        std::net::TcpStream::connect_timeout(&a, CHECK_TIMEOUT).is_ok()
                    });
                let _ = tx.send((e2, c2, ok));
                let _ = waker.wake();
            });
        if spawned.is_err() {
            // Out of threads: the node tries this round again later rather than stall.
            self.node
                .checked(Instant::now(), election, candidate, false, false);
        }
    }

    fn accept(&mut self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= self.max_connections && !self.evict_idle() {
                        // Full of connections that carry sessions: say why, and close.
                        let mut b = Vec::new();
                        let reject = ServerMsg::Reject {
                            reason: format!(
                                "the server has reached its limit of {} connections",
                                self.max_connections
                            ),
                        };
                        if proto::encode(&reject, &mut b).is_ok() {
                            let _ = stream.write(&b);
                        }
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let id = self.next_conn;
                    self.next_conn += 1;
                    self.poll
                        .registry()
                        .register(&mut stream, Token(id), Interest::READABLE)?;
                    self.conns.insert(id, Conn::new(stream));
                    self.node.accepted(Instant::now(), id);
                    // Bytes may have arrived before the registration: serve it this turn.
                    self.queue(id);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    // Out of descriptors: make room by closing the oldest connection without
                    // a session, or else refuse the waiting one (with the spare descriptor),
                    // so that the listener does not stall with connections queued.
                    if self.evict_idle() {
                        continue;
                    }
                    match self.spare_fd.take() {
                        Some(f) => {
                            drop(f);
                            if let Ok((s, _)) = self.listener.accept() {
                                drop(s);
                            }
                            self.spare_fd = std::fs::File::open("/dev/null").ok();
                        }
                        None => return Ok(()),
                    }
                }
                // A connection reset before accept, or another passing error: go on later.
                Err(_) => return Ok(()),
            }
        }
    }

    /// Closes the connection that has carried no session for the longest time, if any.
    fn evict_idle(&mut self) -> bool {
        match self.node.oldest_idle() {
            Some(c) => {
                self.close(c);
                true
            }
            None => false,
        }
    }

    /// Closes connections that have carried no session for the idle timeout.
    fn close_idle(&mut self, now: Instant) {
        let limit = self.idle_timeout;
        for c in self.node.idle(now, limit) {
            self.close(c);
        }
        self.next_sweep =
            now + (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    }

    /// Puts a connection in the next turn's backlog.
    fn queue(&mut self, c: usize) {
        if let Some(conn) = self.conns.get_mut(&c) {
            if !conn.queued {
                conn.queued = true;
                self.backlog.push_back(c);
            }
        }
    }

    /// One turn's service of a connection: handles the requests it has buffered, reads at
    /// most [`READ_PER_TURN`] more and handles those, unless its output is paused. What is
    /// left goes to the backlog for the next turn.
    fn serve(&mut self, c: usize) {
        self.parse(c);
        let mut buf = std::mem::take(&mut self.read_buf);
        buf.resize(READ_BUF, 0); // only the first time: it is put back below
        let mut budget = READ_PER_TURN;
        loop {
            let owing = self.node.owed(c) >= MAX_OWED_READS;
            let Some(conn) = self.conns.get_mut(&c) else {
                break;
            };
            if conn.paused()
                || owing
                || conn.closing
                || conn.eof
                || !conn.more_to_read
                || budget == 0
            {
                break;
            }
            let want = budget.min(buf.len());
            match conn.stream.read(&mut buf[..want]) {
                Ok(0) => conn.eof = true,
                Ok(n) => {
                    budget -= n;
                    conn.reader.extend(&buf[..n]);
                    self.parse(c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.more_to_read = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => conn.eof = true,
            }
        }
        self.read_buf = buf;
        let owing = self.node.owed(c) >= MAX_OWED_READS;
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        if owing && !conn.closing {
            // Its reads wait for a confirmation: what it sent after them waits in its buffer
            // (and in the socket), like the requests of a peer that does not read.
            self.queue(c);
            return;
        }
        if conn.eof && !conn.paused() && !conn.closing {
            // Everything the peer sent before closing has been handled (or is a truncated
            // frame, which is dropped with the connection).
            self.close(c);
            return;
        }
        if !conn.paused() && !conn.closing && (conn.more_to_read || conn.reader.has_frame()) {
            self.queue(c);
        }
    }

    /// Hands the complete frames buffered for a connection to the node, while its output is
    /// not paused. A malformed or oversized frame closes this connection only.
    fn parse(&mut self, c: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(&c) else {
                return;
            };
            if conn.closing || conn.paused() {
                return;
            }
            if !conn.peer && self.node.owed(c) >= MAX_OWED_READS {
                return;
            }
            let Some(conn) = self.conns.get_mut(&c) else {
                return;
            };
            if conn.peer {
                match conn.reader.next_frame() {
                    Ok(Some(f)) => {
                        let f = f.to_vec();
                        self.node.peer_frame(Instant::now(), c, &f);
                        if let Err(e) = self.perform() {
                            self.failed.get_or_insert(e);
                        }
                        continue;
                    }
                    Ok(None) => return,
                    Err(_) => {
                        self.close(c);
                        return;
                    }
                }
            }
            let frame = match conn.reader.next_frame() {
                Ok(Some(f)) => proto::decode::<ClientMsg>(f),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            match frame {
                Ok(msg) => {
                    self.node.frame(Instant::now(), c, msg);
                    // What is to be persisted waits in the log's buffer for the turn's
                    // commit. A storage failure is fatal; it surfaces there.
                    if let Err(e) = self.perform() {
                        self.failed.get_or_insert(e);
                    }
                }
                Err(_) => {
                    self.close(c);
                    return;
                }
            }
        }
    }

    /// Queues a message; it is written after this turn's group commit. A reply that cannot
    /// be encoded (a bound was missed) becomes an error reply saying so; any other message
    /// that cannot closes the connection (the client reconnects and catches up).
    fn send_now(&mut self, c: usize, msg: &ServerMsg) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        if conn.held_from.is_none() {
            conn.held_from = Some(conn.out.len());
            self.held.push(c);
        }
        if let Err(e) = proto::encode(msg, &mut conn.out) {
            let fallback = match msg {
                ServerMsg::Reply { session, req, .. } => ServerMsg::Reply {
                    session: *session,
                    req: *req,
                    result: Err(ErrorReply::Limit(format!("the reply is too large: {e}"))),
                },
                _ => {
                    conn.closing = true;
                    return;
                }
            };
            if proto::encode(&fallback, &mut conn.out).is_err() {
                conn.closing = true;
            }
        }
    }

    fn flush(&mut self, c: usize) {
        let Some(conn) = self.conns.get_mut(&c) else {
            return;
        };
        let end = conn.held_from.unwrap_or(conn.out.len());
        let (written, failed) = write_some(&mut conn.stream, &conn.out[..end]);
        conn.out.drain(..written);
        if let Some(h) = conn.held_from.as_mut() {
            *h -= written;
        }
        if failed || conn.out.len() > MAX_OUTBUF || (conn.closing && conn.out.is_empty()) {
            self.close(c);
            return;
        }
        let resume = written > 0 && !conn.paused() && !conn.closing;
        let want_write = !conn.out.is_empty();
        if want_write != conn.writable_registered {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(c), interest);
            conn.writable_registered = want_write;
        }
        if resume {
            // Output drained below the pause mark: its requests are read again.
            self.queue(c);
        }
    }

    /// A member of a group says on stderr when its view of the leader changes (one line per
    /// change: the operator's record of elections).
    fn say_leader(&mut self) {
        if self.links.is_empty() {
            return;
        }
        let view = self.node.leader_view();
        if view != self.leader_view {
            self.leader_view = view;
            let leader = view.0.map_or("none".to_string(), |l| l.to_string());
            eprintln!(
                "tenure: member {}: term {}, leader {leader}",
                self.node.id(),
                view.1
            );
        }
    }

    /// Dials the other members whose connection is down and due.
    fn dial_links(&mut self, now: Instant) {
        for i in 0..self.links.len() {
            let l = &self.links[i];
            if l.stream.is_some() || now < l.next_dial {
                continue;
            }
            let addr = l.addr.to_socket_addrs().ok().and_then(|mut a| a.next());
            let stream = match addr.map(TcpStream::connect) {
                Some(Ok(s)) => Some(s),
                Some(Err(e)) => {
                    // Refused at once (loopback often answers within the call).
                    let refused = e.kind() == io::ErrorKind::ConnectionRefused;
                    self.dial_failed(i, now, refused);
                    continue;
                }
                None => None,
            };
            let Some(mut stream) = stream else {
                self.links[i].next_dial = now + LINK_RETRY;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let token = Token(LINK_BASE + self.links[i].id as usize);
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut stream, token, interest)
                .is_err()
            {
                self.links[i].next_dial = now + LINK_RETRY;
                continue;
            }
            let mut out = Vec::new();
            if proto::encode(&self.node.hello(), &mut out).is_err() {
                continue; // cannot happen: a hello is small
            }
            let l = &mut self.links[i];
            l.out = out;
            l.stream = Some(stream);
            l.up = false;
        }
    }

    /// Drops the connection to another member; it is dialled again at `next_dial`. `failed`:
    /// it broke (the node is told the member is unreachable), rather than being replaced.
    fn reset_link(&mut self, i: usize, next_dial: Instant, failed: bool) {
        let l = &mut self.links[i];
        if let Some(mut s) = l.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
            if failed {
                // A failure (not a fresh hello): the leader probes it when it is back.
                let id = l.id;
                self.node.unreachable(Instant::now(), id);
            }
        }
        let l = &mut self.links[i];
        l.up = false;
        l.up_since = None;
        l.out.clear();
        l.next_dial = next_dial;
    }

    /// A raft message for another member: framed behind what waits for it. Dropped when its
    /// connection is down or too far behind (raft sends again).
    /// Member `id` is at `address`: a link to it from now on (this member's own id aside).
    fn member_at(&mut self, id: MemberId, address: String) {
        if id == self.node.id() {
            return;
        }
        match self.links.iter().position(|l| l.id == id) {
            Some(i) if self.links[i].addr == address => {}
            Some(i) => {
                self.links[i].addr = address;
                self.reset_link(i, Instant::now(), false);
            }
            None => self.links.push(Link {
                id,
                addr: address,
                stream: None,
                up: false,
                up_since: None,
                quick: 0,
                out: Vec::new(),
                next_dial: Instant::now(),
            }),
        }
    }

    fn send_peer(&mut self, to: MemberId, msg: &raft::eraftpb::Message) {
        let Some(l) = self.links.iter_mut().find(|l| l.id == to) else {
            return;
        };
        if l.stream.is_none() || l.out.len() >= LINK_OUTBUF {
            return;
        }
        let bytes = prost::Message::encode_to_vec(msg);
        if bytes.len() > proto::MAX_PEER_FRAME {
            return;
        }
        FrameReader::frame_raw(&bytes, &mut l.out);
    }

    fn link_event(&mut self, id: usize, ev: &mio::event::Event) {
        let Some(i) = self.links.iter().position(|l| l.id as usize == id) else {
            return;
        };
        if ev.is_error() || ev.is_read_closed() || ev.is_write_closed() {
            self.link_broke(i);
            return;
        }
        if ev.is_readable() {
            // Nothing is expected but a refusal (another incarnation, an unknown member):
            // read it away; the close follows.
            let mut buf = [0u8; 4096];
            if let Some(s) = self.links[i].stream.as_mut() {
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            self.link_broke(i);
                            return;
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            self.link_broke(i);
                            return;
                        }
                    }
                }
            }
        }
        if ev.is_writable() {
            let l = &mut self.links[i];
            if !l.up {
                l.up = true;
                l.up_since = Some(Instant::now());
            }
            self.flush_link(i);
        }
    }

    /// Writes what waits for another member, as far as its socket takes it.
    fn flush_link(&mut self, i: usize) {
        let l = &mut self.links[i];
        if !l.up || l.out.is_empty() {
            return;
        }
        let Some(s) = l.stream.as_mut() else {
            return;
        };
        let (written, failed) = write_some(s, &l.out);
        l.out.drain(..written);
        if failed {
            self.link_broke(i);
        }
    }

    /// The connection to another member failed. A connect refused means nothing listens
    /// where that member was: its process is gone, and the node is told (a crashed leader
    /// is replaced at once, see `Node::gone`). A connection that had been up a while is
    /// dialled again at once, and up to [`LINK_QUICK_DIALS`] times more [`LINK_QUICK`]
    /// apart, so that a dead process's refusal comes within milliseconds of its death;
    /// other failures wait [`LINK_RETRY`] (a member that refuses hellos is not dialled in a
    /// loop).
    fn link_broke(&mut self, i: usize) {
        let now = Instant::now();
        let l = &mut self.links[i];
        let refused = !l.up
            && l.stream
                .as_ref()
                .and_then(|s| s.take_error().ok().flatten())
                .is_some_and(|e| e.kind() == io::ErrorKind::ConnectionRefused);
        if matches!(l.up_since, Some(t) if l.up && now.duration_since(t) >= LINK_RETRY) {
            // A connection that had been up a while broke: dial again at once.
            l.quick = LINK_QUICK_DIALS;
            self.reset_link(i, now, true);
            return;
        }
        self.reset_link(i, now, true);
        self.dial_failed(i, now, refused);
    }

    /// A dial of another member failed (`refused`: the connect was refused). Only a refusal
    /// among the quick dials that follow the break of a connection that had been up tells
    /// the node the member is gone (a member that can never dial its leader, through a
    /// firewall or a wrong address, does not force elections); the next dial is
    /// [`LINK_QUICK`] or [`LINK_RETRY`] away.
    fn dial_failed(&mut self, i: usize, now: Instant, refused: bool) {
        let l = &mut self.links[i];
        let id = l.id;
        let gone = refused && l.quick > 0;
        if gone {
            l.quick = 0;
        }
        l.next_dial = if l.quick > 0 {
            l.quick -= 1;
            now + LINK_QUICK
        } else {
            now + LINK_RETRY
        };
        if gone {
            let _ = self.node.gone(now, id);
        }
    }

    fn close(&mut self, c: usize) {
        if let Some(mut conn) = self.conns.remove(&c) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.node.closed(Instant::now(), c);
        }
    }
}

/// Writes as much of `buf` as the socket takes now: the bytes written, and whether the
/// connection failed (a write error, or a write of nothing).
fn write_some(stream: &mut TcpStream, buf: &[u8]) -> (usize, bool) {
    let mut written = 0;
    while written < buf.len() {
        match stream.write(&buf[written..]) {
            Ok(0) => return (written, true),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return (written, true),
        }
    }
    (written, false)
}
