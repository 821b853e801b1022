//! The client's sockets: dialing a server (connect and handshake) and, for each connection, a
//! reader thread and a writer that never blocks the driver.
//!
//! Nothing here decides anything; the driver ([`super::driver`]) does. What this module
//! guarantees is that no thread holding the driver ever waits on the network:
//! - [`dial`] (name resolution, TCP connect, handshake) runs on a thread of its own, started
//!   by the driver, and reports back through the command queue. Each of its steps has its own
//!   short timeout; none is "the time left until the lease deadline".
//! - [`Connection::send`] hands bytes to the kernel without waiting (`MSG_DONTWAIT`); what the
//!   kernel does not take at once waits in the connection's outbox, which a writer thread of
//!   the connection drains with blocking writes bounded by a timeout. A full outbox (the
//!   server reads nothing) breaks the connection.
//! - The reader thread queues what it reads; when the queue is full it waits in short steps
//!   and ends as soon as its connection is dropped, so dropping a connection never waits for
//!   its reader.

use super::driver::{Cmd, Core};
use crate::proto::{self, ClientMsg, FrameReader, Incarnation, ServerMsg};
use crossbeam_channel::{SendTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Bytes a connection's outbox may hold before the connection counts as broken: the server
/// has not read that much of what we sent.
pub(crate) const MAX_OUTBOX: usize = 4 << 20;
/// How long a reader waits in one step for room in a full command queue.
const QUEUE_STEP: Duration = Duration::from_millis(20);

/// The socket of a connection: TCP to a tenure server, or one end of a socket pair whose
/// other end is an etcd gateway in this process ([`crate::etcd`]). Both speak tenure's
/// protocol; nothing above this type tells them apart.
pub(crate) enum Stream {
    /// A TCP connection to a tenure server.
    Tcp(TcpStream),
    /// A socket pair with an etcd gateway.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }
    fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// A connection whose handshake succeeded.
pub(crate) struct Dialed {
    /// The socket, in blocking mode, without timeouts.
    pub(crate) stream: Stream,
    /// The service's incarnation, from the server's welcome.
    pub(crate) incarnation: Incarnation,
    /// Index of the endpoint that answered.
    pub(crate) endpoint: usize,
}

/// Tries the endpoints in turn, from `start`, until one completes the handshake. Each step
/// (resolving, connecting, the handshake) is bounded by `step`. Blocks: never call it from
/// a thread holding the driver. The error lists what each endpoint said.
pub(crate) fn dial(
    endpoints: &[String],
    start: usize,
    step: Duration,
    client_name: &str,
) -> Result<Dialed, String> {
    let n = endpoints.len().max(1);
    let mut errors = Vec::new();
    for i in 0..endpoints.len() {
        let idx = (start + i) % n;
        let ep = &endpoints[idx];
        match handshake(ep, step, client_name) {
            Ok((stream, incarnation)) => {
                return Ok(Dialed {
                    stream,
                    incarnation,
                    endpoint: idx,
                })
            }
            Err(e) => errors.push(format!("{}: {e}", proto::echo(ep))),
        }
    }
    Err(errors.join("; "))
}

/// Opens the socket to endpoint `ep`: a TCP connection to a tenure server, or for
/// `etcd://host:port` a gateway to that etcd member ([`crate::etcd`]).
fn open(ep: &str, step: Duration) -> Result<Stream, String> {
    if let Some(addr) = crate::etcd::address(ep) {
        return crate::etcd::open(addr, step).map(Stream::Unix);
    }
    let addr = ep
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "address resolves to nothing".to_string())?;
    let s = TcpStream::connect_timeout(&addr, step).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    Ok(Stream::Tcp(s))
}

fn handshake(ep: &str, step: Duration, client_name: &str) -> Result<(Stream, Incarnation), String> {
    let step = step.max(Duration::from_millis(1));
    let mut s = open(ep, step)?;
    s.set_write_timeout(Some(step)).map_err(|e| e.to_string())?;
    let mut b = vec![];
    proto::encode(
        &ClientMsg::Hello {
            magic: proto::MAGIC,
            version: proto::PROTOCOL_VERSION,
            client_name: client_name.to_string(),
        },
        &mut b,
    )
    .map_err(|e| e.to_string())?;
    s.write_all(&b).map_err(|e| format!("handshake: {e}"))?;
    // The whole answer within one step, however the server trickles it.
    let until = Instant::now() + step;
    let mut reader = FrameReader::new();
    let mut buf = [0u8; 4096];
    // Whatever does not parse as a Welcome's frame comes from a peer that speaks another
    // protocol (an HTTP server answers "HTTP/1.1 ...": a 1.2 GB "frame").
    let alien = |e: &dyn std::fmt::Display| format!("{ep} is not a tenure server ({e})");
    let msg = loop {
        if let Some(f) = reader.next_frame().map_err(|e| alien(&e))? {
            break proto::decode::<ServerMsg>(f).map_err(|e| alien(&e))?;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("handshake: no answer within {step:?}"));
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = s.read(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("handshake: no answer within {step:?}")
            }
            _ => format!("handshake: {e}"),
        })?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        reader.extend(&buf[..n]);
    };
    let inc = match msg {
        ServerMsg::Welcome { incarnation, .. } => incarnation,
        ServerMsg::Reject { reason } => return Err(format!("rejected: {reason}")),
        other => return Err(alien(&format!("unexpected handshake reply {other:?}"))),
    };
    s.set_read_timeout(None).map_err(|e| e.to_string())?;
    s.set_write_timeout(None).map_err(|e| e.to_string())?;
    Ok((s, inc))
}

/// Bytes waiting to be written on a connection, and whether its writer is busy.
#[derive(Default)]
struct OutState {
    buf: Vec<u8>,
    /// The writer thread holds bytes taken from `buf` and is writing them.
    writing: bool,
    /// A write failed or the outbox overflowed: nothing more is sent.
    broken: bool,
    /// The connection was dropped: the writer ends.
    closed: bool,
    /// The writer thread runs (started at the first backlog).
    writer: bool,
}

struct Outbox {
    state: Mutex<OutState>,
    wake: Condvar,
}

/// One connection to a server: its socket, outbox and reader. Dropping it shuts the socket
/// down and lets its threads end by themselves (nobody waits for them).
pub(crate) struct Connection {
    /// Numbers the connection among the client's connections (in frames and breaks).
    pub(crate) id: u64,
    stream: Stream,
    out: Arc<Outbox>,
    stop: Arc<AtomicBool>,
    tx: Sender<Cmd>,
    poke: Poke,
    write_timeout: Duration,
    /// The reader thread, never joined (it ends by itself once the connection is dropped);
    /// kept so that tests can see it end.
    #[cfg_attr(not(test), allow(dead_code))]
    reader: std::thread::JoinHandle<()>,
}

impl Connection {
    /// Starts the reader thread of a dialed connection. Frames and the connection's end go
    /// to the command queue `tx`, after which `core` is poked to run it.
    pub(crate) fn start(
        stream: Stream,
        id: u64,
        tx: Sender<Cmd>,
        core: Weak<Core>,
        write_timeout: Duration,
    ) -> std::io::Result<Connection> {
        let poke: Poke = Arc::new(move || match core.upgrade() {
            Some(c) => {
                c.poke();
                true
            }
            None => false,
        });
        Self::start_with(stream, id, tx, poke, write_timeout)
    }

    /// [`Connection::start`] with what runs the queue given as `poke` (false once the client
    /// is gone).
    fn start_with(
        stream: Stream,
        id: u64,
        tx: Sender<Cmd>,
        poke: Poke,
        write_timeout: Duration,
    ) -> std::io::Result<Connection> {
        let stop = Arc::new(AtomicBool::new(false));
        let rs = stream.try_clone()?;
        let (rtx, rpoke, rstop) = (tx.clone(), poke.clone(), stop.clone());
        let reader = std::thread::Builder::new()
            .name("tenure-client-reader".into())
            .spawn(move || read_loop(rs, id, &rtx, &*rpoke, &rstop))?;
        Ok(Connection {
            reader,
            id,
            stream,
            out: Arc::new(Outbox {
                state: Mutex::new(OutState::default()),
                wake: Condvar::new(),
            }),
            stop,
            tx,
            poke,
            write_timeout,
        })
    }

    /// Sends one framed message without ever waiting for the network. False when the
    /// connection is broken (or the message cannot be encoded, which the caller checked).
    pub(crate) fn send(&self, bytes: &[u8]) -> bool {
        let mut st = self.out.state.lock();
        if st.broken || st.closed {
            return false;
        }
        let mut rest = bytes;
        if st.buf.is_empty() && !st.writing {
            // SAFETY: `send` on this connection's open socket with a valid buffer; the flags
            // make it non-blocking for this call only and keep SIGPIPE away.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                rest = &rest[n as usize..];
            } else {
                let e = std::io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) {
                    st.broken = true;
                    return false;
                }
            }
            if rest.is_empty() {
                return true;
            }
        }
        if st.buf.len() + rest.len() > MAX_OUTBOX {
            st.broken = true;
            return false;
        }
        st.buf.extend_from_slice(rest);
        if !st.writer {
            match self.start_writer() {
                Ok(()) => st.writer = true,
                Err(_) => {
                    st.broken = true;
                    return false;
                }
            }
        }
        self.out.wake.notify_one();
        true
    }

    fn start_writer(&self) -> std::io::Result<()> {
        let mut ws = self.stream.try_clone()?;
        ws.set_write_timeout(Some(self.write_timeout.max(Duration::from_millis(1))))?;
        let (out, tx, poke, id) = (
            self.out.clone(),
            self.tx.clone(),
            self.poke.clone(),
            self.id,
        );
        std::thread::Builder::new()
            .name("tenure-client-writer".into())
            .spawn(move || loop {
                let chunk = {
                    let mut st = out.state.lock();
                    st.writing = false;
                    while st.buf.is_empty() && !st.closed && !st.broken {
                        out.wake.wait(&mut st);
                    }
                    if st.closed || st.broken {
                        return;
                    }
                    st.writing = true;
                    std::mem::take(&mut st.buf)
                };
                if ws.write_all(&chunk).is_err() {
                    out.state.lock().broken = true;
                    // The driver learns of it as of a broken read.
                    let stopped = AtomicBool::new(false);
                    if queue(&tx, &*poke, &stopped, Cmd::Broken { conn: id }) {
                        poke();
                    }
                    return;
                }
            })?;
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        {
            let mut st = self.out.state.lock();
            st.closed = true;
        }
        self.out.wake.notify_all();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// What runs the command queue (the driver's `Core::poke`); false once the client is gone.
pub(crate) type Poke = Arc<dyn Fn() -> bool + Send + Sync>;

/// Puts a command on the queue, waiting in short steps while it is full (and making sure
/// someone runs it meanwhile); false when `stop` was set meanwhile or the client is gone.
pub(crate) fn queue(
    tx: &Sender<Cmd>,
    poke: &dyn Fn() -> bool,
    stop: &AtomicBool,
    mut cmd: Cmd,
) -> bool {
    loop {
        match tx.send_timeout(cmd, QUEUE_STEP) {
            Ok(()) => return true,
            Err(SendTimeoutError::Disconnected(_)) => return false,
            Err(SendTimeoutError::Timeout(c)) => {
                // Whoever runs the queue makes room; make sure someone does.
                if stop.load(Ordering::Acquire) || !poke() {
                    return false;
                }
                cmd = c;
            }
        }
    }
}

/// The reader thread: queues every frame of a read, then runs the queue (completing the
/// replies here when no other thread is running the driver).
fn read_loop(
    mut rs: Stream,
    id: u64,
    tx: &Sender<Cmd>,
    poke: &dyn Fn() -> bool,
    stop: &AtomicBool,
) {
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => match proto::decode::<ServerMsg>(f) {
                    Ok(msg) => {
                        if !queue(tx, poke, stop, Cmd::Frame { conn: id, msg }) {
                            return;
                        }
                    }
                    Err(_) => break 'read,
                },
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
        if !poke() || stop.load(Ordering::Acquire) {
            return;
        }
        match rs.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reader.extend(&buf[..n]),
        }
    }
    if queue(tx, poke, stop, Cmd::Broken { conn: id }) {
        poke();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn wait_finished(h: &std::thread::JoinHandle<()>) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !h.is_finished() {
            assert!(Instant::now() < deadline, "the reader did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_reader_blocked_on_a_full_queue_ends_when_its_connection_is_dropped() {
        let (client, mut server) = pair();
        // A queue that is full and that nobody drains (the driver is busy elsewhere).
        let (tx, rx) = crossbeam_channel::bounded(1);
        tx.send(Cmd::Broken { conn: 0 }).unwrap();
        let c = Connection::start_with(
            Stream::Tcp(client),
            1,
            tx,
            Arc::new(|| true),
            Duration::from_secs(1),
        )
        .unwrap();
        let mut b = vec![];
        let notice = ServerMsg::Reject { reason: "x".into() };
        proto::encode(&notice, &mut b).unwrap();
        server.write_all(&b).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !c.reader.is_finished(),
            "the reader waits for room in the queue"
        );
        // Dropping the connection does not wait for the reader (this thread could be the one
        // that would drain the queue), and the reader ends by itself.
        let mut c = c;
        let reader = std::mem::replace(&mut c.reader, std::thread::spawn(|| {}));
        let t = Instant::now();
        drop(c);
        assert!(t.elapsed() < Duration::from_millis(100));
        wait_finished(&reader);
        drop(rx);
    }

    #[test]
    fn sends_never_block_and_a_peer_that_reads_nothing_breaks_the_connection() {
        let (client, _server) = pair();
        let (tx, _rx) = crossbeam_channel::unbounded();
        let c = Connection::start_with(
            Stream::Tcp(client),
            1,
            tx,
            Arc::new(|| true),
            Duration::from_millis(200),
        )
        .unwrap();
        let chunk = vec![0u8; 256 * 1024];
        let t = Instant::now();
        let mut sent = 0usize;
        while c.send(&chunk) {
            sent += chunk.len();
            assert!(sent < 64 * MAX_OUTBOX, "the outbox is unbounded");
        }
        // Kernel buffers, then the outbox, filled: broken, and no send waited for the peer.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(!c.send(b"more"));
    }
}
