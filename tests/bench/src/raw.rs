//! A bare connection speaking tenure's wire protocol ([`tenure::proto`]), used where the
//! benchmark needs control the client library does not give: many sessions on one connection,
//! heartbeats at chosen instants, holders that stop heartbeating on purpose.
//!
//! A reader thread decodes every frame, stamps it with [`mono_ns`] at receipt and hands it to
//! a channel; the owner writes requests and picks the replies it waits for.

use crate::util::mono_ns;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tenure::proto::{self, ClientMsg, ErrorReply, FrameReader, Reply, Request, ServerMsg};

/// A received reply with its receipt time.
#[derive(Debug, Clone)]
pub struct Got {
    /// Request id echoed by the server.
    pub req: u64,
    /// The outcome.
    pub result: Result<Reply, ErrorReply>,
    /// `CLOCK_MONOTONIC` ns when the frame was decoded.
    pub at: u64,
}

/// Performs the handshake on a fresh connection to `addr` (blocking, bounded by `timeout`).
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut b = Vec::new();
    proto::encode(
        &ClientMsg::Hello {
            magic: proto::MAGIC,
            version: proto::PROTOCOL_VERSION,
            client_name: format!("bench-{}", std::process::id()),
        },
        &mut b,
    )
    .map_err(|e| e.to_string())?;
    s.write_all(&b).map_err(|e| format!("hello: {e}"))?;
    let mut r = FrameReader::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = r.next_frame().map_err(|e| e.to_string())? {
            return match proto::decode::<ServerMsg>(f).map_err(|e| e.to_string())? {
                ServerMsg::Welcome { .. } => {
                    s.set_read_timeout(None).map_err(|e| e.to_string())?;
                    Ok(s)
                }
                other => Err(format!("handshake refused: {other:?}")),
            };
        }
        let n = s.read(&mut buf).map_err(|e| format!("handshake: {e}"))?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        r.extend(&buf[..n]);
    }
}

/// Appends one request frame to `out` (the benchmark's requests are small: they always fit).
pub fn push(out: &mut Vec<u8>, session: u64, req: u64, body: Request) {
    proto::encode(&ClientMsg::Request { session, req, body }, out)
        .expect("a benchmark request fits in a frame");
}

/// Spawns a thread that decodes replies from `stream` into the returned channel.
pub fn spawn_reader(mut stream: TcpStream) -> Receiver<Got> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("raw-reader".into())
        .spawn(move || {
            let mut r = FrameReader::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let at = mono_ns();
                r.extend(&buf[..n]);
                loop {
                    match r.next_frame() {
                        Ok(Some(f)) => {
                            if let Ok(ServerMsg::Reply { req, result, .. }) =
                                proto::decode::<ServerMsg>(f)
                            {
                                let g = Got { req, result, at };
                                if tx.send(g).is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
            }
        })
        .expect("reader thread");
    rx
}

/// A synchronous raw client: write a request, wait for its reply; replies to other requests
/// that arrive meanwhile are kept until someone waits for them.
pub struct RawConn {
    stream: TcpStream,
    rx: Receiver<Got>,
    next_req: u64,
    others: VecDeque<Got>,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects and performs the handshake.
    pub fn connect(addr: &str) -> Result<RawConn, String> {
        let stream = connect(addr, Duration::from_secs(5))?;
        let rx = spawn_reader(stream.try_clone().map_err(|e| e.to_string())?);
        Ok(RawConn {
            stream,
            rx,
            next_req: 1,
            others: VecDeque::new(),
            buf: Vec::new(),
        })
    }

    /// Sends a request without waiting; returns its request id.
    pub fn send(&mut self, session: u64, body: Request) -> Result<u64, String> {
        let req = self.next_req;
        self.next_req += 1;
        self.buf.clear();
        push(&mut self.buf, session, req, body);
        self.stream
            .write_all(&self.buf)
            .map_err(|e| format!("write: {e}"))?;
        Ok(req)
    }

    /// Waits up to `timeout` for the reply to request `req`.
    pub fn wait(&mut self, req: u64, timeout: Duration) -> Result<Got, String> {
        if let Some(i) = self.others.iter().position(|g| g.req == req) {
            return Ok(self.others.remove(i).unwrap());
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(g) if g.req == req => return Ok(g),
                Ok(g) => self.others.push_back(g),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no reply to request {req} within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the server closed the connection".into())
                }
            }
        }
    }

    /// Sends a request and waits up to `timeout` for its reply.
    pub fn call(&mut self, session: u64, body: Request, timeout: Duration) -> Result<Got, String> {
        let req = self.send(session, body)?;
        self.wait(req, timeout)
    }

    /// Opens a session with `ttl_ms`; returns its id.
    pub fn open(&mut self, ttl_ms: u64, timeout: Duration) -> Result<u64, String> {
        let g = self.call(0, Request::Open { ttl_ms }, timeout)?;
        match g.result {
            Ok(Reply::Opened { session, .. }) => Ok(session),
            other => Err(format!("open: {other:?}")),
        }
    }
}
