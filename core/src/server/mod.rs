//! The coordination server: its state machine ([`state`]), expiry decisions ([`liveness`]),
//! durable storage ([`storage`]), the serving node around the state machine (`node`, sans-IO:
//! every rule of serving), and the network runtime that performs the node's I/O (`runtime`, a
//! `mio` loop with the connection budgets). This file holds the configuration, the limits of
//! the runtime and the handle of an embedded server.

mod join;
pub mod liveness;
pub mod members;
pub(crate) mod node;
pub mod replica;
mod runtime;
pub mod state;
pub mod storage;

use crate::error::{Error, Result};
use crate::proto::Incarnation;
use mio::net::TcpListener;
use mio::{Poll, Waker};
pub use node::{DESIGNATION_RETRY, MAX_SESSIONS_PER_CONNECTION};
use runtime::{Runtime, WAKER};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
pub use storage::Durability;
use storage::Storage;

/// Configuration of an embedded server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (`host:port`; port 0 picks a free one). Default `127.0.0.1:7411`.
    pub listen: String,
    /// Data directory. Default `./tenure-data`.
    pub data_dir: PathBuf,
    /// Durability of the state. Default [`Durability::Fsync`].
    pub durability: Durability,
    /// Most connections served at once (default [`DEFAULT_MAX_CONNECTIONS`], and never more
    /// than the process's descriptor limit allows). A connection past it gets a `Reject`
    /// naming the limit and is closed.
    pub max_connections: usize,
    /// A connection that has carried no session for this long is closed (default
    /// [`DEFAULT_IDLE_TIMEOUT`]): one that never finished its handshake or never opened a
    /// session, or whose sessions moved to another connection or ended.
    pub idle_timeout: Duration,
    /// This member's id in its group (default 1; ids are positive).
    pub id: u64,
    /// Every member of the group as `(id, address)`, this one included: the address clients
    /// and the other members reach it at. Empty (the default): a single server.
    pub cluster: Vec<(u64, String)>,
    /// Consent to begin a new incarnation when this member's directory has no token and a
    /// majority of the group has none either (`--bootstrap`; see the README). Needed for
    /// the first start of a group, and after every member lost its data.
    pub bootstrap: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7411".into(),
            data_dir: PathBuf::from("tenure-data"),
            durability: Durability::Fsync,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            id: 1,
            cluster: Vec::new(),
            bootstrap: false,
        }
    }
}

/// Default of [`ServerConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of [`ServerConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of unsent output at which the server stops reading a connection's requests until
/// the peer has read some: a peer that writes without reading is held back by TCP itself.
pub const PAUSE_OUTBUF: usize = 1 << 20;
/// Bytes of unsent output at which a connection is closed: only notices can still grow the
/// output of a paused connection, and a peer that reads none of them is gone.
pub const MAX_OUTBUF: usize = 16 << 20;
/// Reads (heartbeats, status pages, master caches, views) of one connection that may wait for
/// their confirmation at once: past it, the connection's further requests are not read until
/// some are answered. A read's answer waits for a majority's confirmation (and for earlier
/// writes to apply), so without a bound a peer pipelining status requests could make the
/// server build thousands of 1 MiB pages in one turn (16 pages stay near [`MAX_OUTBUF`]).
pub const MAX_OWED_READS: usize = 16;
/// Bytes read from one connection per loop turn. A connection with more to give is served
/// again in the next turn, after every other ready connection: one busy peer cannot delay
/// another's heartbeat by more than a turn.
pub const READ_PER_TURN: usize = 256 << 10;
/// How long a candidate's endpoint has to accept a connection in the check before its
/// designation.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// Descriptors kept for the server's own files (log, snapshots, checks) beside connections.
const RESERVED_FDS: usize = 64;

/// A running server. Stops when [`Server::stop`] is called or it is dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    incarnation: Arc<parking_lot::Mutex<Incarnation>>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Binds the address, opens the data directory, recovers the state and starts serving.
    pub fn start(cfg: ServerConfig) -> Result<Server> {
        let addr = cfg
            .listen
            .to_socket_addrs()
            .map_err(|e| Error::InvalidArgument(format!("listen address {:?}: {e}", cfg.listen)))?
            .next()
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "listen address {:?} resolves to nothing",
                    cfg.listen
                ))
            })?;
        check_cluster(&cfg)?;
        if cfg.max_connections == 0 {
            return Err(Error::InvalidArgument(
                "max_connections must be at least 1".into(),
            ));
        }
        if cfg.idle_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "idle_timeout must be positive".into(),
            ));
        }
        // Bound before the data directory is opened: a server that cannot listen creates
        // nothing on disk. (Connections that arrive during recovery wait in the backlog.)
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::Io(format!("cannot listen on {addr}: {e}")))?;
        let alone = cfg.cluster.is_empty();
        let (storage, rec) = Storage::open(&cfg.data_dir, cfg.durability, alone)
            .map_err(|e| Error::Io(format!("data directory {}: {e}", cfg.data_dir.display())))?;
        let max_connections = cfg.max_connections.min(descriptor_room());
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let incarnation = Arc::new(parking_lot::Mutex::new(rec.incarnation.unwrap_or(0)));
        let mut rt = Runtime::new(
            poll,
            listener,
            storage,
            rec,
            waker.clone(),
            &cfg,
            max_connections,
            incarnation.clone(),
        )?;
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tenure-server".into())
            .spawn(move || {
                // A panic here is a bug; the server must not stay half alive (listening,
                // answering nothing, while every session expires): the thread ends with an
                // error, which `Server::wait` returns and `tenure serve` exits on.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.run(&stop2))) {
                    Ok(r) => r,
                    Err(p) => {
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into());
                        Err(io::Error::other(format!("server thread panicked: {msg}")))
                    }
                }
            })?;
        Ok(Server {
            addr,
            incarnation,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The incarnation token of the service (0 while a member of a group is still looking
    /// for its group's).
    pub fn incarnation(&self) -> Incarnation {
        *self.incarnation.lock()
    }

    /// Stops serving: commits what was applied, closes every connection and returns. Clients
    /// keep their sessions until they expire; a restart on the same data directory gives each
    /// a grace period of its TTL.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    /// True once the server thread has ended (after [`Server::stop`], a fatal I/O error, or
    /// a bug); [`Server::wait`] then says why.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().map_or(true, |t| t.is_finished())
    }

    /// Blocks until the server thread ends (it ends on [`Server::stop`] or a fatal I/O error).
    pub fn wait(mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Io("server thread panicked".into()))?
                .map_err(Error::from),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Io("server thread panicked".into()))?
                .map_err(Error::from),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Checks a group's configuration: positive, distinct ids, this member among them, every
/// address given.
fn check_cluster(cfg: &ServerConfig) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if cfg.id == 0 {
        return bad("member ids are positive; 0 means none".into());
    }
    if cfg.cluster.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<u64> = cfg.cluster.iter().map(|m| m.0).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return bad("a member id appears twice in the cluster".into());
    }
    if ids.first() == Some(&0) {
        return bad("member ids are positive; 0 means none".into());
    }
    if let Some((id, _)) = cfg.cluster.iter().find(|m| m.1.trim().is_empty()) {
        return bad(format!("member {id} has no address"));
    }
    if !ids.contains(&cfg.id) {
        return bad(format!(
            "this member's id {} is not in the cluster ({})",
            cfg.id,
            ids.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// Descriptors this process may still use for connections: the soft limit of open files is
/// first raised to the hard limit (as Go's runtime does; the default soft limit of 1,024
/// would otherwise cap a server far below its memory), less a reserve for the server's own
/// files.
fn descriptor_room() -> usize {
    // SAFETY: getrlimit/setrlimit with a valid, locally owned rlimit struct.
    let soft = unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return DEFAULT_MAX_CONNECTIONS;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        r.rlim_cur
    };
    (soft as usize).saturating_sub(RESERVED_FDS).max(1)
}
