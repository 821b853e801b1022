//! A lock client of the run, in a process of its own (so that the nemesis can kill and pause
//! it): it takes one of a few locks, writes to the fenced resource with the lock's token while
//! it holds it, and releases it; every step and every event goes to its history file, one
//! line each, written at once (a `kill -9` loses nothing written before it).
//!
//! History lines: `T PID KIND FIELDS` with T from CLOCK_MONOTONIC in ns. Kinds: `S` started;
//! `G name token` granted; `W name token ok|stale` a write and the resource's answer; `E name
//! token` its belief ends (it is about to release); `L name token reason` told the lock was
//! lost; `D` told the service's data was lost.

use crate::{mono_ns, Args};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenure::{Client, ClientConfig, Event};

/// One history file, shared by the worker's threads.
#[derive(Clone)]
struct History(Arc<Mutex<File>>);

impl History {
    fn line(&self, what: &str) {
        let l = format!("{} {} {what}\n", mono_ns(), std::process::id());
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(l.as_bytes());
        }
    }
}

/// The fenced resource, over one connection (made again when it breaks).
struct Resource {
    addr: String,
    conn: Option<(TcpStream, BufReader<TcpStream>)>,
}

impl Resource {
    /// Writes with `token`; `Some(true)` accepted, `Some(false)` refused as stale, `None`
    /// the resource could not be reached.
    fn write(&mut self, id: u64, name: &str, token: u64) -> Option<bool> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).ok()?;
            let r = BufReader::new(s.try_clone().ok()?);
            self.conn = Some((s, r));
        }
        let (s, r) = self.conn.as_mut()?;
        let mut answer = String::new();
        let ok = writeln!(s, "W {id} {name} {token}").is_ok()
            && r.read_line(&mut answer).is_ok_and(|n| n > 0);
        if !ok {
            self.conn = None;
            return None;
        }
        Some(answer.trim() == "OK")
    }
}

pub fn run(a: &Args) -> ExitCode {
    match work(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenure-faults worker: {e}");
            ExitCode::from(2)
        }
    }
}

fn work(a: &Args) -> Result<(), String> {
    let endpoints: Vec<String> = a
        .get("endpoints")
        .ok_or("--endpoints is needed")?
        .split(',')
        .map(str::to_string)
        .collect();
    let id = a.num("id", 0)?;
    let names = a.num("names", 2)?.max(1);
    let ttl = Duration::from_millis(a.num("ttl-ms", 1000)?);
    let mut rng = fastrand::Rng::with_seed(a.num("seed", 0)? ^ u64::from(std::process::id()));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(a.get("log").ok_or("--log is needed")?)
        .map_err(|e| format!("history file: {e}"))?;
    let h = History(Arc::new(Mutex::new(log)));
    let mut res = Resource {
        addr: a.get("resource").ok_or("--resource is needed")?.to_string(),
        conn: None,
    };
    h.line("S");
    let client = loop {
        match Client::connect(ClientConfig::new(endpoints.clone()).session_ttl(ttl)) {
            Ok(c) => break c,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let h2 = h.clone();
    let _sub = client
        .subscribe(move |ev| match ev {
            Event::LockLost {
                name,
                token,
                reason,
            } => h2.line(&format!("L {name} {token} {}", reason.as_str())),
            Event::DataLost { .. } => h2.line("D"),
            _ => {}
        })
        .map_err(|e| format!("subscribe: {e}"))?;
    loop {
        let name = format!("f{}", rng.u64(0..names));
        let lock = match client.lock(&name, Duration::from_secs(2)) {
            Ok(l) => l,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(rng.u64(1..30)));
                continue;
            }
        };
        let token = lock.fencing_token();
        h.line(&format!("G {name} {token}"));
        // Held for up to about a TTL: long enough for the nemesis to catch holders.
        let pause_ms = (ttl.as_millis() as u64 / 5).max(1);
        // Now and then a long hold (several TTLs of writes): a holder cut off from the group
        // meanwhile must stop before its lock is granted to another.
        let writes = if rng.u8(0..4) == 0 {
            rng.u32(5..16)
        } else {
            rng.u32(1..6)
        };
        for _ in 0..writes {
            if !lock.is_held() {
                break;
            }
            let what = match res.write(id, &name, token) {
                Some(true) => "ok",
                Some(false) => "stale",
                None => "unreachable",
            };
            h.line(&format!("W {name} {token} {what}"));
            std::thread::sleep(Duration::from_millis(rng.u64(0..pause_ms)));
        }
        h.line(&format!("E {name} {token}"));
        let _ = lock.release();
        std::thread::sleep(Duration::from_millis(rng.u64(0..10)));
    }
}
