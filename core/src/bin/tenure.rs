//! The `tenure` command: run a server, run a command under a lock, show the service's state,
//! and the demo. `tenure --help` lists the commands.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure::client::timeout_from_secs;
use tenure::{Client, ClientConfig, Durability, Error, Event, Server, ServerConfig};

/// Exit statuses (sysexits.h where one fits).
const EXIT_TIMEOUT: u8 = 3;
const EXIT_USAGE: u8 = 64;
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_SOFTWARE: u8 = 70;
const EXIT_LOST: u8 = 75;

const HELP: &str = "\
tenure: leases, fenced locks and the coordination server

USAGE:
  tenure serve  [--listen ADDR] [--data DIR] [--durability fsync|none]
  tenure lock   [--endpoints A,B] [--ttl SECS] [--timeout SECS] NAME -- CMD [ARGS...]
  tenure status [--endpoints A,B]
  tenure revoke [--endpoints A,B] NAME
  tenure elect  [--endpoints A,B] [--ttl SECS] --id ID --priority P [--endpoint ADDR]
                [--preempt] NAME -- CMD [ARGS...]
  tenure elect  [--endpoints A,B] --observe NAME
  tenure demo

serve   Runs a server (default 127.0.0.1:7411, data in ./tenure-data, durability fsync).
        Prints the bound address on the first line of stdout; stops on SIGINT or SIGTERM.
lock    Takes the lock NAME, runs CMD with TENURE_LOCK_NAME and TENURE_FENCING_TOKEN set,
        releases it when CMD exits and exits with CMD's status. If the lock is lost while
        CMD runs, CMD gets SIGTERM (SIGKILL 2 s later) and tenure exits 75.
        Exit 3: --timeout passed without the lock. Exit 69: no server reachable.
        --endpoints defaults to $TENURE_ENDPOINTS, then 127.0.0.1:7411; --ttl to 10 s;
        --timeout to waiting without limit.
status  Prints the incarnation, sessions and locks with holders and fencing tokens.
revoke  Administrative: releases lock NAME whoever holds it; the holder is told (reason
        `released`) and the next waiter is granted it. Exit 1 when NAME is not held.
elect   Campaigns in election NAME and runs CMD while this process is master, with
        TENURE_MASTER_EPOCH set (a fencing token for the master's writes). When it stops
        being master, CMD gets SIGTERM (SIGKILL 2 s later) and tenure exits 75; when CMD
        exits first, tenure resigns and exits with CMD's status. Exit 69: no server.
        --observe prints `EPOCH ID ENDPOINT` (or `EPOCH -` for no master) per change.
demo    Starts an embedded server and clients: lock hand-over, a holder whose heartbeats
        stall past its lease (told before the next holder is granted), a holder paused
        with SIGSTOP whose stale writes a fenced resource refuses, and an election whose
        master's session ends.
";

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        eprint!("{HELP}");
        return ExitCode::from(EXIT_USAGE);
    }
    let cmd = args.remove(0);
    let r = match cmd.to_str() {
        Some("serve") => serve(args),
        Some("lock") => lock(args),
        Some("status") => status(args),
        Some("elect") => elect(args),
        Some("revoke") => revoke(args),
        Some("demo") => demo::run(),
        Some("__demo-holder") => demo::holder(args),
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            Ok(0)
        }
        _ => Err((
            EXIT_USAGE,
            format!("unknown command {cmd:?}; see tenure --help"),
        )),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err((code, msg)) => {
            eprintln!("tenure: {msg}");
            ExitCode::from(code)
        }
    }
}

type CliResult = Result<u8, (u8, String)>;

fn usage(e: impl std::fmt::Display) -> (u8, String) {
    (EXIT_USAGE, e.to_string())
}

fn value(p: &mut lexopt::Parser) -> Result<String, (u8, String)> {
    p.value()
        .map_err(usage)?
        .into_string()
        .map_err(|v| usage(format!("argument {v:?} is not valid UTF-8")))
}

fn secs(p: &mut lexopt::Parser, what: &str) -> Result<f64, (u8, String)> {
    let v = value(p)?;
    v.parse::<f64>()
        .map_err(|_| usage(format!("{what} must be a number of seconds, not {v:?}")))
}

fn default_endpoints() -> Vec<String> {
    match std::env::var("TENURE_ENDPOINTS") {
        Ok(v) if !v.trim().is_empty() => split_endpoints(&v),
        _ => vec!["127.0.0.1:7411".into()],
    }
}

fn split_endpoints(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn connect_error(e: Error) -> (u8, String) {
    match e {
        Error::ConnectionFailed(m) => (EXIT_UNAVAILABLE, format!("no server reachable: {m}")),
        Error::InvalidArgument(m) => (EXIT_USAGE, m),
        e => (EXIT_SOFTWARE, e.to_string()),
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and threads it starts later), so that they can
/// be taken synchronously with [`wait_signal`].
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a locally owned signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is a valid signal set; sigwait writes the signal number into `sig`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn serve(args: Vec<OsString>) -> CliResult {
    let mut cfg = ServerConfig::default();
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(usage)? {
        use lexopt::prelude::*;
        match arg {
            Long("listen") => cfg.listen = value(&mut p)?,
            Long("data") => cfg.data_dir = value(&mut p)?.into(),
            Long("durability") => {
                cfg.durability = value(&mut p)?.parse::<Durability>().map_err(usage)?
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    let set = block_signals();
    let started = Instant::now();
    let server = Server::start(cfg.clone()).map_err(|e| (EXIT_SOFTWARE, e.to_string()))?;
    println!("{}", server.local_addr());
    let _ = std::io::stdout().flush();
    eprintln!(
        "tenure: serving on {} (incarnation {:032x}, data {}, durability {:?}, started in {:?})",
        server.local_addr(),
        server.incarnation(),
        cfg.data_dir.display(),
        cfg.durability,
        started.elapsed()
    );
    let sig = wait_signal(&set);
    eprintln!("tenure: signal {sig}, stopping");
    server.stop().map_err(|e| (EXIT_SOFTWARE, e.to_string()))?;
    Ok(0)
}

fn status(args: Vec<OsString>) -> CliResult {
    let mut endpoints = default_endpoints();
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(usage)? {
        use lexopt::prelude::*;
        match arg {
            Long("endpoints") => endpoints = split_endpoints(&value(&mut p)?),
            other => return Err(usage(other.unexpected())),
        }
    }
    let mut cfg = ClientConfig::new(endpoints);
    cfg.reopen = false;
    let c = Client::connect(cfg).map_err(connect_error)?;
    let st = c.status().map_err(|e| (EXIT_UNAVAILABLE, e.to_string()))?;
    println!("incarnation {:032x}", st.incarnation);
    println!("revision    {}", st.revision);
    // Our own session is not worth listing.
    let own = c.session_id();
    let sessions: Vec<_> = st.sessions.iter().filter(|s| s.id != own).collect();
    println!("sessions    {}", sessions.len());
    for s in sessions {
        println!("  session {} ttl {} ms", s.id, s.ttl_ms);
    }
    println!("locks       {}", st.locks.len());
    for l in &st.locks {
        let w: Vec<String> = l.waiters.iter().map(|w| w.to_string()).collect();
        println!(
            "  {:?} holder session {} token {} waiters [{}]",
            l.name,
            l.holder,
            l.token,
            w.join(", ")
        );
    }
    println!("elections   {}", st.elections.len());
    for e in &st.elections {
        let master = match &e.master.master {
            Some((id, ep)) => format!("{id:?} at {}", ep.as_deref().unwrap_or("-")),
            None => "none".to_string(),
        };
        let c: Vec<String> = e
            .candidates
            .iter()
            .map(|(id, p, s)| format!("{id:?} priority {p} session {s}"))
            .collect();
        println!(
            "  {:?} master {master} epoch {} candidates [{}]",
            e.name,
            e.master.epoch,
            c.join(", ")
        );
    }
    println!("groups      {}", st.groups.len());
    for (name, v) in &st.groups {
        let m: Vec<String> = v
            .members
            .iter()
            .map(|(id, full)| format!("{id:?}{}", if *full { "" } else { " (probationary)" }))
            .collect();
        println!("  {name:?} view {} members [{}]", v.view, m.join(", "));
    }
    c.close();
    Ok(0)
}

fn revoke(args: Vec<OsString>) -> CliResult {
    let mut endpoints = default_endpoints();
    let mut name = None;
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(usage)? {
        use lexopt::prelude::*;
        match arg {
            Long("endpoints") => endpoints = split_endpoints(&value(&mut p)?),
            Value(v) if name.is_none() => {
                name = Some(
                    v.into_string()
                        .map_err(|v| usage(format!("lock name {v:?} is not valid UTF-8")))?,
                )
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    let name: String = name.ok_or_else(|| usage("missing lock NAME; see tenure --help"))?;
    tenure::proto::validate_name(&name).map_err(usage)?;
    let mut cfg = ClientConfig::new(endpoints);
    cfg.reopen = false;
    let c = Client::connect(cfg).map_err(connect_error)?;
    let r = c.revoke(&name);
    c.close();
    match r {
        Ok(()) => {
            println!("revoked {name:?}");
            Ok(0)
        }
        Err(Error::InvalidArgument(m)) => Err((1, m)),
        Err(e) => Err((EXIT_UNAVAILABLE, e.to_string())),
    }
}

fn lock(args: Vec<OsString>) -> CliResult {
    let mut endpoints = default_endpoints();
    let mut ttl = 10.0;
    let mut timeout: Option<f64> = None;
    let mut name: Option<String> = None;
    let mut cmd: Vec<OsString> = vec![];
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(usage)? {
        use lexopt::prelude::*;
        match arg {
            Long("endpoints") => endpoints = split_endpoints(&value(&mut p)?),
            Long("ttl") => ttl = secs(&mut p, "--ttl")?,
            Long("timeout") => timeout = Some(secs(&mut p, "--timeout")?),
            Value(v) if name.is_none() => {
                name = Some(
                    v.into_string()
                        .map_err(|v| usage(format!("lock name {v:?} is not valid UTF-8")))?,
                )
            }
            Value(v) => {
                cmd.push(v);
                cmd.extend(p.raw_args().map_err(usage)?);
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    let name = name.ok_or_else(|| usage("missing lock NAME; see tenure --help"))?;
    if cmd.is_empty() {
        return Err(usage("missing command after --; see tenure --help"));
    }
    tenure::proto::validate_name(&name).map_err(usage)?;
    let ttl = timeout_from_secs(ttl).map_err(|e| usage(format!("--ttl: {e}")))?;
    let timeout = match timeout {
        Some(t) => timeout_from_secs(t).map_err(|e| usage(format!("--timeout: {e}")))?,
        None => tenure::client::MAX_TIMEOUT,
    };
    let mut cfg = ClientConfig::new(endpoints).session_ttl(ttl);
    cfg.reopen = false;
    let client = Client::connect(cfg).map_err(connect_error)?;
    let lock = match client.lock(&name, timeout) {
        Ok(l) => l,
        Err(Error::Timeout) => {
            return Err((
                EXIT_TIMEOUT,
                format!("lock {name:?} not acquired within {timeout:?}"),
            ))
        }
        Err(e @ (Error::InvalidArgument(_) | Error::Limit(_))) => return Err(usage(e)),
        Err(e) => return Err((EXIT_UNAVAILABLE, format!("lock {name:?}: {e}"))),
    };
    let (tx, rx) =
        crossbeam_channel::bounded::<Option<(String, Option<std::process::ExitStatus>)>>(4);
    let tx_lost = tx.clone();
    lock.on_lost(move |ev| {
        if let Event::LockLost { reason, token, .. } = ev {
            let _ = tx_lost.send(Some((format!("{reason} (fencing token {token})"), None)));
        }
    });
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("TENURE_LOCK_NAME", &name)
        .env("TENURE_FENCING_TOKEN", lock.fencing_token().to_string())
        .spawn()
        .map_err(|e| (127, format!("cannot run {:?}: {e}", cmd[0])))?;
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || {
        let st = child.wait();
        let _ = tx.send(Some((String::new(), st.ok())));
    });
    let first = rx.recv().ok().flatten();
    match first {
        Some((_, Some(status))) => {
            // CMD finished while we held the lock.
            let _ = waiter.join();
            let still = lock.is_held();
            let _ = lock.release();
            client.close();
            if !still {
                eprintln!("tenure: lock {name:?} was lost just as the command ended");
                return Ok(EXIT_LOST);
            }
            Ok(exit_code(status))
        }
        Some((why, None)) => {
            eprintln!("tenure: lock {name:?} lost: {why}; stopping the command (pid {pid})");
            stop_child(pid, &rx);
            let _ = waiter.join();
            client.close();
            Ok(EXIT_LOST)
        }
        None => Err((EXIT_SOFTWARE, "internal channel closed".into())),
    }
}

/// What the `elect` command waits for.
enum ElectMsg {
    Changed,
    SessionOver(String),
    Exited(std::process::ExitStatus),
}

fn elect(args: Vec<OsString>) -> CliResult {
    let mut endpoints = default_endpoints();
    let mut ttl = 10.0;
    let mut id: Option<String> = None;
    let mut priority: Option<i64> = None;
    let mut endpoint: Option<String> = None;
    let mut preempt = false;
    let mut observe = false;
    let mut name: Option<String> = None;
    let mut cmd: Vec<OsString> = vec![];
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(usage)? {
        use lexopt::prelude::*;
        match arg {
            Long("endpoints") => endpoints = split_endpoints(&value(&mut p)?),
            Long("ttl") => ttl = secs(&mut p, "--ttl")?,
            Long("id") => id = Some(value(&mut p)?),
            Long("priority") => {
                let v = value(&mut p)?;
                priority = Some(
                    v.parse()
                        .map_err(|_| usage(format!("--priority must be an integer, not {v:?}")))?,
                )
            }
            Long("endpoint") => endpoint = Some(value(&mut p)?),
            Long("preempt") => preempt = true,
            Long("observe") => observe = true,
            Value(v) if name.is_none() => {
                name = Some(
                    v.into_string()
                        .map_err(|v| usage(format!("election name {v:?} is not valid UTF-8")))?,
                )
            }
            Value(v) => {
                cmd.push(v);
                cmd.extend(p.raw_args().map_err(usage)?);
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    let name = name.ok_or_else(|| usage("missing election NAME; see tenure --help"))?;
    tenure::proto::validate_name(&name).map_err(usage)?;
    let ttl = timeout_from_secs(ttl).map_err(|e| usage(format!("--ttl: {e}")))?;
    if observe {
        if !cmd.is_empty() || id.is_some() {
            return Err(usage("--observe takes only the election NAME"));
        }
        return elect_observe(endpoints, ttl, &name);
    }
    let id = id.ok_or_else(|| usage("missing --id; see tenure --help"))?;
    let priority = priority.ok_or_else(|| usage("missing --priority; see tenure --help"))?;
    if cmd.is_empty() {
        return Err(usage("missing command after --; see tenure --help"));
    }
    let mut cfg = ClientConfig::new(endpoints).session_ttl(ttl);
    cfg.reopen = false;
    let client = Client::connect(cfg).map_err(connect_error)?;
    let (tx, rx) = crossbeam_channel::unbounded::<ElectMsg>();
    let tx2 = tx.clone();
    let _sub = client
        .subscribe(move |ev| match ev {
            Event::SessionExpired => {
                let _ = tx2.send(ElectMsg::SessionOver("session expired".into()));
            }
            Event::DataLost { .. } => {
                let _ = tx2.send(ElectMsg::SessionOver("the service lost its state".into()));
            }
            _ => {}
        })
        .map_err(|e| (EXIT_SOFTWARE, e.to_string()))?;
    let candidacy = tenure::client::Candidacy {
        id: id.clone(),
        priority,
        endpoint,
        preempt,
    };
    let election = match client.campaign(&name, candidacy) {
        Ok(e) => e,
        Err(e @ (Error::InvalidArgument(_) | Error::Limit(_))) => return Err(usage(e)),
        Err(e) => return Err((EXIT_UNAVAILABLE, format!("campaign in {name:?}: {e}"))),
    };
    let tx3 = tx.clone();
    election.on_master_change(move |_| {
        let _ = tx3.send(ElectMsg::Changed);
    });
    // Wait as a candidate. The lease deadline is checked on every wake, events or not.
    let epoch = loop {
        if let Some(e) = election.master_epoch() {
            break e;
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(ElectMsg::SessionOver(why)) => {
                eprintln!("tenure: {why} while waiting to become master of {name:?}");
                return Ok(EXIT_LOST);
            }
            Ok(_) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(_) => return Err((EXIT_SOFTWARE, "internal channel closed".into())),
        }
    };
    eprintln!("tenure: {id:?} is master of {name:?} at epoch {epoch}");
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("TENURE_ELECTION", &name)
        .env("TENURE_CANDIDATE_ID", &id)
        .env("TENURE_MASTER_EPOCH", epoch.to_string())
        .spawn()
        .map_err(|e| (127, format!("cannot run {:?}: {e}", cmd[0])))?;
    let pid = child.id() as i32;
    let tx4 = tx.clone();
    let waiter = std::thread::spawn(move || {
        if let Ok(st) = child.wait() {
            let _ = tx4.send(ElectMsg::Exited(st));
        }
    });
    let why = loop {
        // First thing on every wake (including after a SIGSTOP): are we still master?
        if election.master_epoch() != Some(epoch) {
            let m = election.master();
            break match m.master {
                Some(other) => format!("{:?} is master at epoch {}", other.id, m.epoch),
                None => "the lease ended".to_string(),
            };
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(ElectMsg::Exited(st)) => {
                let _ = waiter.join();
                let still = election.master_epoch() == Some(epoch);
                let _ = election.resign();
                client.close();
                if !still {
                    eprintln!("tenure: stopped being master of {name:?} as the command ended");
                    return Ok(EXIT_LOST);
                }
                return Ok(exit_code(st));
            }
            Ok(ElectMsg::SessionOver(why)) => break why,
            Ok(ElectMsg::Changed) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(_) => return Err((EXIT_SOFTWARE, "internal channel closed".into())),
        }
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    eprintln!("tenure: no longer master of {name:?} ({why}); stopping the command (pid {pid})");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut exited = false;
    while let Ok(m) = rx.recv_deadline(deadline) {
        if matches!(m, ElectMsg::Exited(_)) {
            exited = true;
            break;
        }
    }
    if !exited {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = waiter.join();
    client.close();
    Ok(EXIT_LOST)
}

fn elect_observe(endpoints: Vec<String>, ttl: Duration, name: &str) -> CliResult {
    let cfg = ClientConfig::new(endpoints).session_ttl(ttl);
    let client = Client::connect(cfg).map_err(connect_error)?;
    let obs = client
        .observe(name)
        .map_err(|e| (EXIT_UNAVAILABLE, e.to_string()))?;
    let (tx, rx) = crossbeam_channel::unbounded();
    obs.on_master_change(move |ev| {
        let _ = tx.send(ev);
    });
    for ev in rx.iter() {
        if let Event::MasterChanged { epoch, master, .. } = ev {
            let line = match master {
                Some(m) => format!(
                    "{epoch} {} {}",
                    m.id,
                    m.endpoint.unwrap_or_else(|| "-".into())
                ),
                None => format!("{epoch} -"),
            };
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
    }
    Ok(0)
}

fn exit_code(st: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128 + s as u8,
        _ => EXIT_SOFTWARE,
    }
}

type Exit = crossbeam_channel::Receiver<Option<(String, Option<std::process::ExitStatus>)>>;

/// SIGTERM, then SIGKILL after a grace period of 2 s, waiting for the child's exit.
fn stop_child(pid: i32, rx: &Exit) {
    // SAFETY: signalling our own child process by pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match rx.recv_deadline(deadline) {
            Ok(Some((_, Some(_)))) => return,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = rx.recv_timeout(Duration::from_secs(5));
}

mod demo {
    //! `tenure demo`: the README's main job, narrated.
    use super::*;
    use parking_lot::Mutex;

    /// Wall-clock start of the demo, shared with the child process through the environment so
    /// every line has the same time base.
    fn t0() -> std::time::SystemTime {
        static T0: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();
        *T0.get_or_init(|| {
            let from_env = std::env::var("TENURE_DEMO_T0_NS")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(|ns| std::time::UNIX_EPOCH + Duration::from_nanos(ns));
            from_env.unwrap_or_else(std::time::SystemTime::now)
        })
    }

    fn t0_ns() -> String {
        t0().duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos().to_string())
            .unwrap_or_default()
    }

    fn say(who: &str, what: impl std::fmt::Display) {
        let t = t0().elapsed().unwrap_or_default().as_secs_f64();
        println!("{t:>8.3}s  {who:<10} {what}");
    }

    fn describe(ev: &Event) -> String {
        match ev {
            Event::SessionConnected { session, .. } => {
                format!("event connected (session {session})")
            }
            Event::SessionJeopardy { remaining } => {
                format!("event jeopardy: heartbeat failed, retrying, {remaining:.0?} of lease left")
            }
            Event::SessionRecovered => "event recovered".into(),
            Event::SessionExpired => "event expired: lease deadline passed".into(),
            Event::LockAcquired { name, token } => {
                format!("event lock_acquired {name:?} token {token}")
            }
            Event::LockLost {
                name,
                token,
                reason,
            } => {
                format!("event lock_lost {name:?} token {token} reason {reason}")
            }
            Event::DataLost { .. } => "event data_lost".into(),
            Event::MasterChanged {
                election,
                epoch,
                master,
            } => match master {
                Some(m) => format!(
                    "event master_changed {election:?}: {} at epoch {epoch}",
                    m.id
                ),
                None => format!("event master_changed {election:?}: no master, epoch {epoch}"),
            },
            other => format!("event {}", other.kind()),
        }
    }

    /// A fenced resource: refuses writes with a token older than the newest it has seen.
    #[derive(Default)]
    struct Resource {
        newest: AtomicU64,
    }

    impl Resource {
        fn write(&self, who: &str, token: u64) -> bool {
            let prev = self.newest.fetch_max(token, Ordering::SeqCst);
            if token < prev {
                say(
                    "resource",
                    format!("REFUSED write from {who} with stale token {token} (newest {prev})"),
                );
                false
            } else {
                say(
                    "resource",
                    format!("accepted write from {who} with token {token}"),
                );
                true
            }
        }
    }

    /// Serves the resource to other processes: each line `WHO TOKEN` is a write; the reply
    /// is `ok` or `refused`.
    fn serve_resource(res: Arc<Resource>) -> std::io::Result<String> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?.to_string();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let res = res.clone();
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    let mut w = s.try_clone().unwrap();
                    for line in std::io::BufReader::new(s).lines().map_while(Result::ok) {
                        let mut it = line.split_whitespace();
                        let (Some(who), Some(tok)) =
                            (it.next(), it.next().and_then(|t| t.parse().ok()))
                        else {
                            break;
                        };
                        let ok = res.write(who, tok);
                        if writeln!(w, "{}", if ok { "ok" } else { "refused" }).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    /// A TCP proxy that can be frozen: while frozen it forwards nothing, like a stalled network.
    struct Proxy {
        addr: String,
        frozen: Arc<AtomicBool>,
    }

    fn proxy(target: String) -> std::io::Result<Proxy> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?.to_string();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let Ok(up) = TcpStream::connect(&target) else {
                    continue;
                };
                for (mut a, mut b) in [(s.try_clone().unwrap(), up.try_clone().unwrap()), (up, s)] {
                    let f = f.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = a.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            while f.load(Ordering::Acquire) {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            if b.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Ok(Proxy { addr, frozen })
    }

    fn client(
        who: &'static str,
        addr: &str,
        ttl_ms: u64,
    ) -> Result<(Client, tenure::Subscription), (u8, String)> {
        let c =
            Client::connect(ClientConfig::new([addr]).session_ttl(Duration::from_millis(ttl_ms)))
                .map_err(connect_error)?;
        let sub = c
            .subscribe(move |ev| say(who, describe(&ev)))
            .map_err(|e| (EXIT_SOFTWARE, e.to_string()))?;
        Ok((c, sub))
    }

    fn fail(e: impl std::fmt::Display) -> (u8, String) {
        (EXIT_SOFTWARE, e.to_string())
    }

    pub fn run() -> CliResult {
        t0();
        let dir = std::env::temp_dir().join(format!("tenure-demo-{}", std::process::id()));
        let server = Server::start(ServerConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.clone(),
            durability: Durability::Fsync,
        })
        .map_err(fail)?;
        let addr = server.local_addr().to_string();
        say(
            "server",
            format!("embedded server on {addr}, data in {}", dir.display()),
        );
        let resource = Arc::new(Resource::default());
        let name = "jobs/report";

        println!("\n-- 1. hand-over: alice holds {name:?}, bob and carol wait in line --");
        let (alice, _sa) = client("alice", &addr, 2000)?;
        let (bob, _sb) = client("bob", &addr, 2000)?;
        let (carol, _sc) = client("carol", &addr, 2000)?;
        let a = alice.lock(name, Duration::from_secs(5)).map_err(fail)?;
        say(
            "alice",
            format!("holds {name:?} with fencing token {}", a.fencing_token()),
        );
        resource.write("alice", a.fencing_token());
        let mut waiters = vec![];
        for (who, c) in [("bob", bob.clone()), ("carol", carol.clone())] {
            let res = resource.clone();
            waiters.push(std::thread::spawn(move || {
                say(who, "waits for the lock");
                let l = c.lock(name, Duration::from_secs(10)).map_err(fail)?;
                say(who, format!("granted, fencing token {}", l.fencing_token()));
                res.write(who, l.fencing_token());
                std::thread::sleep(Duration::from_millis(100));
                say(who, "releases");
                l.release().map_err(fail)
            }));
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        say("alice", "releases");
        a.release().map_err(fail)?;
        for w in waiters {
            w.join().map_err(|_| fail("waiter panicked"))??;
        }

        println!("\n-- 2. dave's heartbeats stall (frozen network); he is told before erin is granted --");
        let px = proxy(addr.clone()).map_err(fail)?;
        let (dave, _sd) = client("dave", &px.addr, 1500)?;
        let d = dave.lock(name, Duration::from_secs(5)).map_err(fail)?;
        let dave_lost = Arc::new(Mutex::new(None::<Instant>));
        let dl = dave_lost.clone();
        d.on_lost(move |ev| {
            *dl.lock() = Some(Instant::now());
            say("dave", format!("on_lost callback: {}", describe(&ev)));
        });
        say(
            "dave",
            format!(
                "holds {name:?} with token {}; session TTL 1.5 s",
                d.fencing_token()
            ),
        );
        let (erin, _se) = client("erin", &addr, 1500)?;
        let res = resource.clone();
        let erin_t = std::thread::spawn(move || {
            say("erin", "waits for the lock");
            let l = erin.lock(name, Duration::from_secs(10)).map_err(fail)?;
            let at = Instant::now();
            say(
                "erin",
                format!("granted, fencing token {}", l.fencing_token()),
            );
            res.write("erin", l.fencing_token());
            l.release().map_err(fail)?;
            Ok::<Instant, (u8, String)>(at)
        });
        std::thread::sleep(Duration::from_millis(300));
        say("network", "dave's link freezes: nothing gets through");
        px.frozen.store(true, Ordering::Release);
        let erin_at = erin_t.join().map_err(|_| fail("erin panicked"))??;
        let lost_at = dave_lost.lock().ok_or_else(|| fail("dave was not told"))?;
        say(
            "demo",
            format!(
                "dave was told {:.0?} BEFORE erin was granted; is_held() = {}",
                erin_at - lost_at,
                d.is_held()
            ),
        );
        if lost_at >= erin_at {
            return Err(fail("dave was told after erin was granted"));
        }
        resource.write("dave (late)", d.fencing_token());
        px.frozen.store(false, Ordering::Release);
        drop(d);
        dave.close();

        println!("\n-- 3. frank's process is paused (SIGSTOP) past its lease: his stale writes are refused --");
        let exe = std::env::current_exe().map_err(fail)?;
        let res_addr = serve_resource(resource.clone()).map_err(fail)?;
        let mut frank: Child = Command::new(exe)
            .args(["__demo-holder", &addr, name, &res_addr])
            .env("TENURE_DEMO_T0_NS", t0_ns())
            .spawn()
            .map_err(fail)?;
        let (gina, _sg) = client("gina", &addr, 1500)?;
        let st = Instant::now();
        while gina.status().map_err(fail)?.locks.is_empty() {
            if st.elapsed() > Duration::from_secs(10) {
                let _ = frank.kill();
                return Err(fail("frank did not take the lock"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(frank.id() as i32, libc::SIGSTOP) };
        say("demo", "frank is paused with SIGSTOP (a long GC pause)");
        let g = gina.lock(name, Duration::from_secs(10)).map_err(fail)?;
        say(
            "gina",
            format!("granted, fencing token {}", g.fencing_token()),
        );
        resource.write("gina", g.fencing_token());
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: as above.
        unsafe { libc::kill(frank.id() as i32, libc::SIGCONT) };
        say("demo", "frank resumes");
        let fst = frank.wait().map_err(fail)?;
        say("demo", format!("frank exited with {fst}"));
        let _ = g.release();

        println!("\n-- 4. election: priorities 1, 2, 3; the master's process ends; every member is told --");
        let (obs_client, _so) = client("observer", &addr, 1500)?;
        // The observer's client subscription prints its master_changed events.
        let _obs = obs_client.observe("scheduler").map_err(fail)?;
        let mut cands = vec![];
        for (who, prio) in [("hana", 1), ("ivan", 2), ("jules", 3)] {
            let (c, s) = client(who, &addr, 1000)?;
            let e = c
                .campaign("scheduler", tenure::client::Candidacy::new(who, prio))
                .map_err(fail)?;
            say(
                who,
                format!(
                    "campaigns with priority {prio}; master is {:?}",
                    e.master().master.map(|m| m.id)
                ),
            );
            cands.push((c, s, e));
            std::thread::sleep(Duration::from_millis(100));
        }
        say(
            "demo",
            "hana stays master: a live master is kept when higher priorities join",
        );
        let (hc, hs, he) = cands.remove(0);
        say(
            "hana",
            format!(
                "is master at epoch {:?}; her session now ends",
                he.master_epoch()
            ),
        );
        drop(he);
        drop(hs);
        hc.close();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cands[1].2.is_master() {
            if Instant::now() > deadline {
                return Err(fail("jules did not become master"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        say(
            "jules",
            format!(
                "is master (highest live priority) at epoch {:?}",
                cands[1].2.master_epoch()
            ),
        );
        obs_client.close();
        for (c, s, e) in cands {
            drop(s);
            drop(e);
            c.close();
        }
        for c in [alice, bob, carol, gina] {
            c.close();
        }
        println!("\nAll four scenarios ran; see the README for what each event means.");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(0)
    }

    /// The demo's paused holder: takes the lock and, after being resumed, finds out it lost it.
    pub fn holder(args: Vec<OsString>) -> CliResult {
        let args: Vec<String> = args
            .into_iter()
            .filter_map(|a| a.into_string().ok())
            .collect();
        let [addr, name, res_addr] = &args[..] else {
            return Err(usage("__demo-holder ADDR NAME RESOURCE"));
        };
        let mut res = TcpStream::connect(res_addr).map_err(fail)?;
        let mut res_in = std::io::BufReader::new(res.try_clone().map_err(fail)?);
        let (c, _s) = client("frank", addr, 1000)?;
        let l = c.lock(name, Duration::from_secs(10)).map_err(fail)?;
        say(
            "frank",
            format!(
                "holds {name:?} with token {} (TTL 1 s), working...",
                l.fencing_token()
            ),
        );
        let lost = Arc::new(AtomicBool::new(false));
        let l2 = lost.clone();
        l.on_lost(move |ev| {
            l2.store(true, Ordering::SeqCst);
            say("frank", format!("on_lost callback: {}", describe(&ev)));
        });
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if !l.is_held() {
                say("frank", "is_held() is false: stops writing");
                break;
            }
            // Checked, then preparing the write: a pause here is the classic GC-pause hazard,
            // which only the fencing token can catch.
            std::thread::sleep(Duration::from_millis(150));
            writeln!(res, "frank {}", l.fencing_token()).map_err(fail)?;
            let mut answer = String::new();
            use std::io::BufRead;
            res_in.read_line(&mut answer).map_err(fail)?;
            if answer.trim() == "refused" {
                say("frank", "the resource refused my write: my token is stale");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !lost.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(if lost.load(Ordering::SeqCst) {
            EXIT_LOST
        } else {
            EXIT_SOFTWARE
        })
    }
}
