//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod etcd;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};
use tenure::{Client, ClientConfig, Durability, Server, ServerConfig};

pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tenure-test-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn server(dir: &Path) -> Server {
    Server::start(ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        durability: Durability::Fsync,
        ..Default::default()
    })
    .expect("server starts")
}

pub fn server_at(dir: &Path, addr: &str) -> Server {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Server::start(ServerConfig {
            listen: addr.into(),
            data_dir: dir.to_path_buf(),
            durability: Durability::Fsync,
            ..Default::default()
        }) {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot restart server at {addr}: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

pub fn client(addr: &str, ttl_ms: u64) -> Client {
    Client::connect(ClientConfig::new([addr]).session_ttl(Duration::from_millis(ttl_ms)))
        .expect("client connects")
}

/// Waits until `f` holds, failing the test after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A raw protocol connection, for tests that need control over every frame.
pub struct Raw {
    pub s: std::net::TcpStream,
    pub r: tenure::proto::FrameReader,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        use tenure::proto::*;
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut raw = Raw {
            s,
            r: FrameReader::new(),
        };
        raw.send(&ClientMsg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_name: "raw".into(),
        });
        assert!(matches!(raw.recv(), Some(ServerMsg::Welcome { .. })));
        raw
    }
    /// Says hello and returns the server's first answer (a welcome or a rejection).
    pub fn hello(addr: &str) -> Option<tenure::proto::ServerMsg> {
        use tenure::proto::*;
        let s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut raw = Raw {
            s,
            r: FrameReader::new(),
        };
        raw.send(&ClientMsg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_name: "raw".into(),
        });
        raw.recv()
    }

    pub fn send(&mut self, m: &tenure::proto::ClientMsg) {
        let mut b = vec![];
        tenure::proto::encode(m, &mut b).unwrap();
        self.s.write_all(&b).unwrap();
    }
    pub fn req(&mut self, session: u64, req: u64, body: tenure::proto::Request) {
        self.send(&tenure::proto::ClientMsg::Request { session, req, body });
    }
    /// The next message, or None after `timeout` without one.
    pub fn recv_within(&mut self, timeout: Duration) -> Option<tenure::proto::ServerMsg> {
        self.s.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(f) = self.r.next_frame().unwrap() {
                return Some(tenure::proto::decode(f).unwrap());
            }
            match self.s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.r.extend(&buf[..n]),
                Err(_) => return None,
            }
        }
    }
    pub fn recv(&mut self) -> Option<tenure::proto::ServerMsg> {
        self.recv_within(Duration::from_secs(5))
    }
}

/// A child process that is killed and reaped when dropped (a test that fails leaves none).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Busy processes, one per core (the machine has two), that spin until dropped: a guarantee
/// is tested on a loaded machine too.
#[allow(dead_code)]
pub fn load() -> Vec<Proc> {
    (0..2)
        .map(|_| {
            Proc(
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("sh runs"),
            )
        })
        .collect()
}

/// The first line a child prints on its stdout (taken from it), trimmed; `None` when none
/// comes within `limit`.
pub fn first_line(c: &mut Child, limit: Duration) -> Option<String> {
    let out = c.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = BufReader::new(out).read_line(&mut l);
        let _ = tx.send(l);
    });
    rx.recv_timeout(limit)
        .ok()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// Waits for a child's exit status, killing it and failing after `limit`.
pub fn wait_exit(c: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until file `p` holds a whole line (ends with a newline) and returns it, failing
/// after `limit`.
pub fn wait_file(p: &Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if s.ends_with('\n') {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} not written within {limit:?}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
