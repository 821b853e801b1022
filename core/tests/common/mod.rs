//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
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
