//! The `tenure` command: run a server, run a command under a lock, show the service's state,
//! and the demo. `tenure --help` lists the commands.

use clap::{Args, CommandFactory, Parser, Subcommand};
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

/// What `tenure` with no command, or `tenure --help`, says after the list of commands.
const AFTER_HELP: &str = "\
Endpoints (--endpoints A,B) default to $TENURE_ENDPOINTS, then 127.0.0.1:7411; endpoints \
written etcd://HOST:PORT,HOST:PORT use the members of an etcd cluster instead of tenure \
servers (the etcd backend).

Exit statuses: 0 done (or the command's own status), 1 refused (revoke of a free lock, a \
member change the group refuses), 3 timeout (lock), 64 usage (a bad flag or value), 69 \
unavailable (no server reachable), 70 internal error (a server that failed), 75 lost (the \
lock or the mastership was lost while the command ran), 128+N ended by signal N.

`tenure COMMAND --help` describes a command.";

/// tenure: leases, fenced locks, elections and the coordination server.
#[derive(Parser)]
#[command(
    name = "tenure",
    version,
    arg_required_else_help = true,
    after_help = AFTER_HELP,
    disable_help_subcommand = false
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Serve(ServeArgs),
    Lock(LockArgs),
    Status(StatusArgs),
    Revoke(RevokeArgs),
    Member(MemberArgs),
    Elect(ElectArgs),
    /// Starts an embedded server and clients and shows the guarantees at work.
    ///
    /// Lock hand-over, a holder whose heartbeats stall past its lease (told before the next
    /// holder is granted), a holder paused with SIGSTOP whose stale writes a fenced resource
    /// refuses, and an election whose master's session ends.
    Demo,
    /// Prints a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    ///
    /// For example `tenure completions bash > ~/.local/share/bash-completion/completions/tenure`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The demo's paused holder (a process of its own).
    #[command(name = "__demo-holder", hide = true)]
    DemoHolder {
        addr: String,
        name: String,
        resource: String,
    },
}

/// Where the service is.
#[derive(Args)]
struct Endpoints {
    /// The service's endpoints, host:port separated by commas (etcd://... for etcd).
    #[arg(
        long,
        value_name = "A,B",
        env = "TENURE_ENDPOINTS",
        default_value = "127.0.0.1:7411",
        value_delimiter = ',',
        value_parser = endpoint
    )]
    endpoints: Vec<String>,
}

/// Runs a server.
///
/// Prints the bound address on the first line of stdout; stops on SIGINT, SIGTERM or
/// SIGHUP. A connection without a session is closed after --idle-timeout. Exits 69 when it
/// cannot listen on its address or open its data directory (nothing is created on disk
/// before it listens), 70 if the server fails later (a supervisor should restart it).
///
/// With --cluster, member --id of a replicated group (client and member traffic on the one
/// --listen address; each member's ADDR is where the others and clients reach it). A member
/// whose data directory has no incarnation token takes its group's; the first start of a
/// group (or after every member lost its data) needs --bootstrap on every member: a new
/// incarnation, and data_lost for old clients.
#[derive(Args)]
struct ServeArgs {
    /// The address to listen on (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7411")]
    listen: String,
    /// The data directory (created when the server starts).
    #[arg(long, value_name = "DIR", default_value = "tenure-data")]
    data: std::path::PathBuf,
    /// fsync: a change is acknowledged once on disk; none: nothing is written.
    #[arg(long, value_name = "MODE", default_value = "fsync", value_parser = ["fsync", "none"])]
    durability: String,
    /// The most connections served at once.
    #[arg(long, value_name = "N", default_value_t = tenure::server::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = positive_count)]
    max_connections: u64,
    /// Seconds a connection without a session stays open.
    #[arg(long, value_name = "SECS", default_value = "10", allow_negative_numbers = true,
          value_parser = positive_secs)]
    idle_timeout: f64,
    /// This member's id in the replicated group (with --cluster).
    #[arg(long, value_name = "N", value_parser = member_id, requires = "cluster")]
    id: Option<u64>,
    /// The replicated group's members, ID=ADDR separated by commas (this one included).
    #[arg(long, value_name = "ID=ADDR,...", value_parser = cluster, requires = "id")]
    cluster: Option<Cluster>,
    /// Starts a new group (every member of its first start).
    #[arg(long, requires = "cluster")]
    bootstrap: bool,
}

/// The members of a replicated group, from --cluster.
#[derive(Clone)]
struct Cluster(Vec<(u64, String)>);

/// Takes a lock and runs a command while it is held.
///
/// Takes the lock NAME, runs CMD with TENURE_LOCK_NAME and TENURE_FENCING_TOKEN set,
/// releases it when CMD exits and exits with CMD's status. If the lock is lost while CMD
/// runs, CMD gets SIGTERM (SIGKILL 2 s later) and tenure exits 75. SIGINT, SIGTERM and
/// SIGHUP are passed on to CMD, which has --grace seconds to exit before SIGKILL; the lock is
/// released once CMD has exited, and tenure exits with CMD's status (128+N for signal N).
/// Before CMD starts, a signal ends the wait for the lock (exit 128+N). Exit 3: --timeout
/// passed without the lock. Exit 69: no server reachable.
#[derive(Args)]
struct LockArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// The session's TTL in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", allow_negative_numbers = true,
          value_parser = ttl_secs)]
    ttl: f64,
    /// Seconds to wait for the lock (default: without limit).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = timeout_secs)]
    timeout: Option<f64>,
    /// Seconds CMD has to exit after a signal before SIGKILL.
    #[arg(long, value_name = "SECS", default_value = "10", allow_negative_numbers = true,
          value_parser = timeout_secs)]
    grace: f64,
    /// The lock's name.
    #[arg(value_name = "NAME", value_parser = lock_name)]
    name: String,
    /// The command and its arguments (after --).
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true,
          allow_hyphen_values = true)]
    cmd: Vec<OsString>,
}

/// Prints the service's state.
///
/// The incarnation, the servers' group (leader, members and roles), sessions and locks with
/// holders and fencing tokens, elections and groups; --json prints one JSON object.
#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Administrative: releases a lock whoever holds it.
///
/// The holder is told (reason `released`) and the next waiter is granted it. Exit 1 when
/// NAME is not held.
#[derive(Args)]
struct RevokeArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// The lock's name.
    #[arg(value_name = "NAME", value_parser = lock_name)]
    name: String,
}

/// Changes the replicated group's own members.
///
/// Exit 1 when the group refuses the change (says why); waits up to 30 s while another is
/// under way.
#[derive(Args)]
struct MemberArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    #[command(subcommand)]
    change: MemberCmd,
}

#[derive(Subcommand)]
enum MemberCmd {
    /// Member ID (started with `tenure serve --id ID --cluster` listing the group and itself)
    /// joins as a learner and is promoted to voter once caught up.
    Add {
        /// The new member, ID=ADDR.
        #[arg(value_name = "ID=ADDR", value_parser = id_addr)]
        member: (u64, String),
    },
    /// Member ID leaves (the leader hands over leadership first).
    Remove {
        /// The member's id.
        #[arg(value_name = "ID", value_parser = member_id)]
        id: u64,
    },
    /// ID joins as a learner and, once caught up, is promoted and OLD removed in one
    /// configuration change.
    Replace {
        /// The member that goes.
        #[arg(value_name = "OLD", value_parser = member_id)]
        old: u64,
        /// The member that comes, ID=ADDR.
        #[arg(value_name = "ID=ADDR", value_parser = id_addr)]
        member: (u64, String),
    },
}

/// Campaigns in an election and runs a command while master.
///
/// Runs CMD while this process is master of NAME, with TENURE_MASTER_EPOCH set (a fencing
/// token for the master's writes). When it stops being master, CMD gets SIGTERM (SIGKILL 2 s
/// later) and tenure exits 75; when CMD exits first, tenure resigns and exits with CMD's
/// status. Signals are passed on as with lock; tenure resigns once CMD has exited. Exit 69:
/// no server. With --observe, prints `EPOCH ID ENDPOINT` (or `EPOCH -` for no master) per
/// change instead.
#[derive(Args)]
struct ElectArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// The session's TTL in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", allow_negative_numbers = true,
          value_parser = ttl_secs)]
    ttl: f64,
    /// This candidate's id.
    #[arg(long, value_name = "ID", required_unless_present = "observe")]
    id: Option<String>,
    /// This candidate's priority (higher wins).
    #[arg(
        long,
        value_name = "P",
        allow_negative_numbers = true,
        required_unless_present = "observe"
    )]
    priority: Option<i64>,
    /// How to reach this candidate (host:port), checked by the service before designation.
    #[arg(long, value_name = "ADDR")]
    endpoint: Option<String>,
    /// Takes over from a live master of lower priority.
    #[arg(long)]
    preempt: bool,
    /// Seconds CMD has to exit after a signal before SIGKILL.
    #[arg(long, value_name = "SECS", default_value = "10", allow_negative_numbers = true,
          value_parser = timeout_secs)]
    grace: f64,
    /// Prints the master changes instead of campaigning.
    #[arg(long, conflicts_with_all = ["id", "priority", "endpoint", "preempt", "cmd"])]
    observe: bool,
    /// The election's name.
    #[arg(value_name = "NAME", value_parser = lock_name)]
    name: String,
    /// The command and its arguments (after --).
    #[arg(value_name = "CMD", required_unless_present = "observe", num_args = 1..,
          trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<OsString>,
}

/// `{v}` for a number of seconds as a person writes it (10, 0.05).
fn secs_text(v: f64) -> String {
    format!("{v}")
}

/// A number of seconds between `min` and `max` (inclusive).
fn secs_within(v: &str, min: f64, max: f64) -> Result<f64, String> {
    let s: f64 = v
        .trim()
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    if !s.is_finite() || s < min || s > max {
        return Err(format!(
            "must be {} to {} seconds",
            secs_text(min),
            secs_text(max)
        ));
    }
    Ok(s)
}

/// The longest wait or grace, in seconds.
fn max_timeout_secs() -> f64 {
    tenure::client::MAX_TIMEOUT.as_secs_f64()
}

/// A session TTL in seconds, within the service's limits.
fn ttl_secs(v: &str) -> Result<f64, String> {
    let ms = |name| tenure::limits::get(name).map_or(0, |l| l.value) as f64 / 1000.0;
    secs_within(v, ms("ttl_min_ms"), ms("ttl_max_ms"))
}

/// A wait in seconds: zero or more, at most a year.
fn timeout_secs(v: &str) -> Result<f64, String> {
    secs_within(v, 0.0, max_timeout_secs())
}

/// A positive number of seconds, at most a year.
fn positive_secs(v: &str) -> Result<f64, String> {
    let s = secs_within(v, 0.0, max_timeout_secs())?;
    if s == 0.0 {
        return Err("must be more than 0 seconds".into());
    }
    Ok(s)
}

/// A lock or election name, checked as the service checks it.
fn lock_name(v: &str) -> Result<String, String> {
    tenure::proto::validate_name(v)?;
    Ok(v.to_string())
}

/// One endpoint of --endpoints.
fn endpoint(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        return Err("an endpoint is empty".into());
    }
    Ok(v.to_string())
}

/// A count of at least 1.
fn positive_count(v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "must be a whole number, 1 or more".to_string())
}

/// A member id: a positive integer.
fn member_id(w: &str) -> Result<u64, String> {
    w.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("member id {w:?} is not a positive integer"))
}

/// ID=ADDR.
fn id_addr(w: &str) -> Result<(u64, String), String> {
    let (i, a) = w
        .split_once('=')
        .ok_or_else(|| format!("{w:?} is not ID=ADDR"))?;
    let a = a.trim();
    if a.is_empty() {
        return Err(format!("member {} has no address", i.trim()));
    }
    Ok((member_id(i)?, a.to_string()))
}

/// --cluster: ID=ADDR pairs separated by commas.
fn cluster(v: &str) -> Result<Cluster, String> {
    let out = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(id_addr)
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err("names no member".into());
    }
    Ok(Cluster(out))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with status 0; anything else (a bad flag or
            // value, no command) to stderr with the usage status.
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => EXIT_USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let r = match cli.cmd {
        Cmd::Serve(a) => serve(a),
        Cmd::Lock(a) => lock(a),
        Cmd::Status(a) => status(a),
        Cmd::Elect(a) => elect(a),
        Cmd::Revoke(a) => revoke(a),
        Cmd::Member(a) => member(a),
        Cmd::Demo => demo::run(),
        Cmd::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "tenure", &mut std::io::stdout());
            Ok(0)
        }
        Cmd::DemoHolder {
            addr,
            name,
            resource,
        } => demo::holder(&addr, &name, &resource),
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

fn connect_error(e: Error) -> (u8, String) {
    match e {
        Error::ConnectionFailed(m) => (EXIT_UNAVAILABLE, format!("no server reachable: {m}")),
        Error::InvalidArgument(m) => (EXIT_USAGE, m),
        e => (EXIT_SOFTWARE, e.to_string()),
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and threads it starts later), so that
/// they can be taken synchronously ([`wait_signal`], [`signal_thread`]). The mask is
/// inherited across exec: commands are started with an empty one ([`spawn_command`]).
///
/// An ignored signal is discarded by the kernel even while blocked, so inherited
/// dispositions matter: SIGINT and SIGTERM are set back to the default first (a
/// non-interactive shell starts `tenure lock ... &` with SIGINT ignored, and a signal sent to
/// tenure must still reach its command, as with GNU `timeout`); an ignored SIGHUP is left
/// ignored, for tenure and its command (`nohup` asked for exactly that).
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on locally owned signal sets and sigaction structs.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            libc::signal(sig, libc::SIG_DFL);
            libc::sigaddset(&mut set, sig);
        }
        let mut hup: libc::sigaction = std::mem::zeroed();
        let ignored = libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut hup) == 0
            && hup.sa_sigaction == libc::SIG_IGN;
        if !ignored {
            libc::sigaddset(&mut set, libc::SIGHUP);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits up to `timeout` for one of the signals of `set`; `None` when none came.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid signal set and `ts` a valid timespec; no siginfo is asked for.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// A thread that turns every signal of `set` (blocked beforehand by [`block_signals`]) into
/// [`Ev::Signal`] on `tx`.
fn signal_thread(set: libc::sigset_t, tx: crossbeam_channel::Sender<Ev>) {
    std::thread::spawn(move || loop {
        if let Some(sig) = wait_signal(&set, Duration::from_secs(3600)) {
            if tx.send(Ev::Signal(sig)).is_err() {
                return;
            }
        }
    });
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// What `lock` and `elect` wait for while their command runs.
enum Ev {
    /// The command exited.
    Exited(std::process::ExitStatus),
    /// What the command runs under (the lock, the mastership) ended, and why.
    Lost(String),
    /// tenure got SIGINT, SIGTERM or SIGHUP.
    Signal(i32),
    /// Something changed that the caller's `held` check should look at.
    Changed,
}

/// How a supervised command ended.
enum Ended {
    /// It exited by itself while what it runs under was still held.
    Exited(std::process::ExitStatus),
    /// What it runs under ended (told through `told`); it was stopped.
    Lost,
    /// tenure was told to stop (the signal); the signal was passed on and the command ended
    /// with this status.
    Signalled(i32, std::process::ExitStatus),
}

/// Waits for the command `pid` while `held()` says what it runs under is held (`None`) or
/// not (`Some(why)`). A lost lock or mastership stops the command: SIGTERM, then SIGKILL 2 s
/// later. A signal to tenure is passed on to the command, which has `grace` to exit before
/// SIGKILL (a second signal sends SIGKILL at once); meanwhile the lock stays held, and it is
/// given up only once the command has exited.
fn supervise(
    pid: i32,
    rx: &crossbeam_channel::Receiver<Ev>,
    held: &dyn Fn() -> Option<String>,
    told: &dyn Fn(&str),
    grace: Duration,
) -> Ended {
    // The command runs in a process group of its own (see `spawn_command`): signals go to the
    // whole group, so that what the command started stops with it.
    let kill = |sig| {
        // SAFETY: signalling our own child's process group; the child (its leader) is not
        // reaped before `Exited` arrives, so the group id cannot be reused meanwhile.
        unsafe { libc::kill(-pid, sig) };
    };
    // Once the command is being stopped: (the signal passed on, or `None` when what it runs
    // under ended; when SIGKILL is due).
    let mut stopping: Option<(Option<i32>, Instant)> = None;
    loop {
        if stopping.is_none() {
            if let Some(why) = held() {
                told(&why);
                kill(libc::SIGTERM);
                stopping = Some((None, Instant::now() + STOP_GRACE));
            }
        }
        let wait = match &stopping {
            Some((_, at)) => at.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(20),
        };
        match rx.recv_timeout(wait) {
            Ok(Ev::Exited(st)) => {
                if stopping.is_some() {
                    // Being stopped: nothing the command started may outlive it.
                    kill(libc::SIGKILL);
                }
                return match stopping {
                    None => Ended::Exited(st),
                    Some((Some(sig), _)) => Ended::Signalled(sig, st),
                    Some((None, _)) => Ended::Lost,
                };
            }
            Ok(Ev::Lost(why)) => {
                if stopping.is_none() {
                    told(&why);
                    kill(libc::SIGTERM);
                    stopping = Some((None, Instant::now() + STOP_GRACE));
                } else if let Some((_, at)) = stopping.as_mut() {
                    // Lost while stopping on a signal: no more than the lost grace.
                    *at = (*at).min(Instant::now() + STOP_GRACE);
                }
            }
            Ok(Ev::Signal(sig)) => match &stopping {
                None => {
                    eprintln!(
                        "tenure: {}; passing it on to the command (pid {pid}), SIGKILL in {grace:?}",
                        signal_name(sig)
                    );
                    kill(sig);
                    stopping = Some((Some(sig), Instant::now() + grace));
                }
                Some(_) => {
                    eprintln!("tenure: {} again; SIGKILL", signal_name(sig));
                    kill(libc::SIGKILL);
                }
            },
            Ok(Ev::Changed) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Some((_, at)) = stopping.as_mut() {
                    if Instant::now() >= *at {
                        kill(libc::SIGKILL);
                        // Wait for the exit (the waiter reports it) without killing again.
                        *at = Instant::now() + Duration::from_secs(3600);
                    }
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                kill(libc::SIGKILL);
                return Ended::Lost;
            }
        }
    }
}

/// The command that `lock` and `elect` run, in a process group of its own (as GNU `timeout`
/// does), so that stopping it stops what it started too. A terminal's Ctrl-C reaches tenure,
/// which passes it on.
fn spawn_command(cmd: &[OsString]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]).process_group(0);
    // The signals tenure blocks for itself (`block_signals`) would stay blocked in the
    // command (a mask survives exec): unblock them between fork and exec.
    // SAFETY: only async-signal-safe calls (sigemptyset, sigprocmask) on a local set.
    unsafe {
        c.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// Time a command has to exit after SIGTERM once its lock or mastership is lost.
const STOP_GRACE: Duration = Duration::from_secs(2);

fn serve(a: ServeArgs) -> CliResult {
    let cfg = ServerConfig {
        listen: a.listen,
        data_dir: a.data,
        durability: a.durability.parse::<Durability>().map_err(usage)?,
        max_connections: usize::try_from(a.max_connections).unwrap_or(usize::MAX),
        idle_timeout: timeout_from_secs(a.idle_timeout).map_err(usage)?,
        id: a.id.unwrap_or(ServerConfig::default().id),
        cluster: a.cluster.map(|c| c.0).unwrap_or_default(),
        bootstrap: a.bootstrap,
    };
    let set = block_signals();
    let started = Instant::now();
    let server = Server::start(cfg.clone()).map_err(|e| match e {
        Error::InvalidArgument(m) => (EXIT_USAGE, m),
        // The address in use or not ours, the data directory unwritable: nothing was
        // created, and a later start may succeed.
        e @ Error::Io(_) => (EXIT_UNAVAILABLE, e.to_string()),
        e => (EXIT_SOFTWARE, e.to_string()),
    })?;
    println!("{}", server.local_addr());
    let _ = std::io::stdout().flush();
    let incarnation = match server.incarnation() {
        0 => "none yet: looking for its group's".to_string(),
        t => format!("{t:032x}"),
    };
    let member = if cfg.cluster.is_empty() {
        String::new()
    } else {
        format!("member {} of {}, ", cfg.id, cfg.cluster.len())
    };
    eprintln!(
        "tenure: serving on {} ({member}incarnation {incarnation}, data {}, durability {:?}, \
         started in {:?})",
        server.local_addr(),
        cfg.data_dir.display(),
        cfg.durability,
        started.elapsed()
    );
    // Until a signal, or the server's end: a server thread that ended by itself (a fatal I/O
    // error, a bug) ends the process, so that a supervisor restarts it.
    loop {
        if let Some(sig) = wait_signal(&set, Duration::from_millis(200)) {
            eprintln!("tenure: {}, stopping", signal_name(sig));
            server.stop().map_err(|e| (EXIT_SOFTWARE, e.to_string()))?;
            return Ok(0);
        }
        if server.is_finished() {
            let why = match server.wait() {
                Ok(()) => "the server stopped".to_string(),
                Err(e) => e.to_string(),
            };
            return Err((EXIT_SOFTWARE, format!("{why}; exiting")));
        }
    }
}

/// `tenure status --json`: one object, the shape the README documents (and scripts rely
/// on): incarnation (hex), revision, leader (`{"id", "address"}` or null), members (`{"id",
/// "address", "role"}`), sessions, locks, elections, groups. `own` (the asking session) is
/// left out of the sessions.
fn status_json(st: &tenure::proto::StatusInfo, own: u64) -> String {
    use serde_json::json;
    let member = |m: &tenure::proto::MemberInfo| json!({"id": m.id, "address": m.address});
    let v = json!({
        "incarnation": format!("{:032x}", st.incarnation),
        "revision": st.revision,
        "leader": st.leader.as_ref().map(member),
        "members": st.members.iter().map(|m| json!({
            "id": m.id, "address": m.address, "role": m.role,
        })).collect::<Vec<_>>(),
        "sessions": st.sessions.iter().filter(|s| s.id != own).map(|s| json!({
            "id": s.id, "ttl_ms": s.ttl_ms,
        })).collect::<Vec<_>>(),
        "locks": st.locks.iter().map(|l| json!({
            "name": l.name, "holder": l.holder, "token": l.token, "waiters": l.waiters,
        })).collect::<Vec<_>>(),
        "elections": st.elections.iter().map(|e| json!({
            "name": e.name,
            "epoch": e.master.epoch,
            "master": e.master.master.as_ref().map(|(id, ep)| json!({"id": id, "endpoint": ep})),
            "candidates": e.candidates.iter().map(|(id, p, s)| json!({
                "id": id, "priority": p, "session": s,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "groups": st.groups.iter().map(|(name, v)| json!({
            "name": name,
            "view": v.view,
            "members": v.members.iter().map(|(id, full)| json!({
                "id": id, "probationary": !full,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    v.to_string()
}

/// `1=host:port,2=host:port,...`
fn status(a: StatusArgs) -> CliResult {
    let (endpoints, json) = (a.endpoints.endpoints, a.json);
    let mut cfg = ClientConfig::new(endpoints);
    cfg.reopen = false;
    let c = Client::connect(cfg).map_err(connect_error)?;
    let st = c.status().map_err(|e| (EXIT_UNAVAILABLE, e.to_string()))?;
    if json {
        println!("{}", status_json(&st, c.session_id()));
        return Ok(0);
    }
    println!("incarnation {:032x}", st.incarnation);
    match &st.leader {
        Some(l) => println!("leader      {} at {}", l.id, l.address),
        None => println!("leader      none (an election is under way)"),
    }
    println!("members     {}", st.members.len());
    for m in &st.members {
        println!("  {} at {} {}", m.id, m.address, m.role);
    }
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

fn revoke(a: RevokeArgs) -> CliResult {
    let (endpoints, name) = (a.endpoints.endpoints, a.name);
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

fn member(a: MemberArgs) -> CliResult {
    use tenure::proto::MemberChange;
    let endpoints = a.endpoints.endpoints;
    let (change, words) = match a.change {
        MemberCmd::Add {
            member: (id, address),
        } => {
            let words = format!("add {id}={address}");
            (MemberChange::Add { id, address }, words)
        }
        MemberCmd::Remove { id } => (MemberChange::Remove { id }, format!("remove {id}")),
        MemberCmd::Replace {
            old,
            member: (id, address),
        } => {
            let words = format!("replace {old} {id}={address}");
            (MemberChange::Replace { old, id, address }, words)
        }
    };
    let mut cfg = ClientConfig::new(endpoints);
    cfg.reopen = false;
    let c = Client::connect(cfg).map_err(connect_error)?;
    // Another change under way (a promotion, leaving a joint configuration) is waited out.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let r = loop {
        match c.change_members(change.clone()) {
            Err(Error::Limit(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            r => break r,
        }
    };
    c.close();
    match r {
        Ok(()) => {
            println!("{words}");
            Ok(0)
        }
        Err(Error::InvalidArgument(m) | Error::Limit(m)) => Err((1, m)),
        Err(e) => Err((EXIT_UNAVAILABLE, e.to_string())),
    }
}

fn lock(a: LockArgs) -> CliResult {
    let (endpoints, name, cmd) = (a.endpoints.endpoints, a.name, a.cmd);
    let ttl = timeout_from_secs(a.ttl).map_err(|e| usage(format!("--ttl: {e}")))?;
    let timeout = match a.timeout {
        Some(t) => timeout_from_secs(t).map_err(|e| usage(format!("--timeout: {e}")))?,
        None => tenure::client::MAX_TIMEOUT,
    };
    let grace = timeout_from_secs(a.grace).map_err(|e| usage(format!("--grace: {e}")))?;
    // Signals are taken by a thread of ours from here on (threads started later inherit the
    // mask; the command does not).
    let set = block_signals();
    let (tx, rx) = crossbeam_channel::unbounded::<Ev>();
    signal_thread(set, tx.clone());
    let mut cfg = ClientConfig::new(endpoints).session_ttl(ttl);
    cfg.reopen = false;
    let client = Client::connect(cfg).map_err(connect_error)?;
    // Acquire on a thread of its own, so that a signal can end the wait.
    let (ltx, lrx) = crossbeam_channel::bounded(1);
    {
        let (client, name) = (client.clone(), name.clone());
        std::thread::spawn(move || {
            let _ = ltx.send(client.lock(&name, timeout));
        });
    }
    let acquired = loop {
        crossbeam_channel::select! {
            recv(lrx) -> r => break r.map_err(|_| (EXIT_SOFTWARE, "internal channel closed".to_string()))?,
            recv(rx) -> ev => {
                if let Ok(Ev::Signal(sig)) = ev {
                    // Closing the client ends the wait and gives back a grant that raced it.
                    client.close();
                    eprintln!("tenure: {} while waiting for lock {name:?}", signal_name(sig));
                    return Ok(128 + sig as u8);
                }
            }
        }
    };
    let lock = match acquired {
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
    let tx_lost = tx.clone();
    lock.on_lost(move |ev| {
        if let Event::LockLost { reason, token, .. } = ev {
            let _ = tx_lost.send(Ev::Lost(format!("{reason} (fencing token {token})")));
        }
    });
    let mut child = spawn_command(&cmd)
        .env("TENURE_LOCK_NAME", &name)
        .env("TENURE_FENCING_TOKEN", lock.fencing_token().to_string())
        .spawn()
        .map_err(|e| (127, format!("cannot run {:?}: {e}", cmd[0])))?;
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || {
        if let Ok(st) = child.wait() {
            let _ = tx.send(Ev::Exited(st));
        }
    });
    // is_held() turns false at the lease deadline, before the expiry is reported.
    let held = || {
        (!lock.is_held()).then(|| {
            let reason = lock
                .lost_reason()
                .unwrap_or(tenure::LostReason::SessionExpired);
            format!("{reason} (fencing token {})", lock.fencing_token())
        })
    };
    let told = |why: &str| {
        eprintln!("tenure: lock {name:?} lost: {why}; stopping the command (pid {pid})");
    };
    let ended = supervise(pid, &rx, &held, &told, grace);
    let _ = waiter.join();
    // The command has exited: only now is the lock given up.
    let code = match ended {
        Ended::Exited(status) => {
            if !lock.is_held() {
                eprintln!("tenure: lock {name:?} was lost just as the command ended");
                EXIT_LOST
            } else {
                exit_code(status)
            }
        }
        Ended::Lost => EXIT_LOST,
        Ended::Signalled(sig, status) => {
            eprintln!(
                "tenure: the command (pid {pid}) ended after {}; releasing {name:?}",
                signal_name(sig)
            );
            exit_code(status)
        }
    };
    let _ = lock.release();
    client.close();
    Ok(code)
}

fn elect(a: ElectArgs) -> CliResult {
    let (endpoints, name, cmd) = (a.endpoints.endpoints, a.name, a.cmd);
    let ttl = timeout_from_secs(a.ttl).map_err(|e| usage(format!("--ttl: {e}")))?;
    if a.observe {
        return elect_observe(endpoints, ttl, &name);
    }
    // clap requires --id, --priority and CMD without --observe.
    let (Some(id), Some(priority)) = (a.id, a.priority) else {
        return Err(usage("--id and --priority are required to campaign"));
    };
    let (endpoint, preempt) = (a.endpoint, a.preempt);
    let grace = timeout_from_secs(a.grace).map_err(|e| usage(format!("--grace: {e}")))?;
    let set = block_signals();
    let (tx, rx) = crossbeam_channel::unbounded::<Ev>();
    signal_thread(set, tx.clone());
    let mut cfg = ClientConfig::new(endpoints).session_ttl(ttl);
    cfg.reopen = false;
    let client = Client::connect(cfg).map_err(connect_error)?;
    let tx2 = tx.clone();
    let _sub = client
        .subscribe(move |ev| match ev {
            Event::SessionExpired => {
                let _ = tx2.send(Ev::Lost("session expired".into()));
            }
            Event::DataLost { .. } => {
                let _ = tx2.send(Ev::Lost("the service lost its state".into()));
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
        let _ = tx3.send(Ev::Changed);
    });
    // Wait as a candidate. The lease deadline is checked on every wake, events or not.
    let epoch = loop {
        if let Some(e) = election.master_epoch() {
            break e;
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ev::Lost(why)) => {
                eprintln!("tenure: {why} while waiting to become master of {name:?}");
                return Ok(EXIT_LOST);
            }
            Ok(Ev::Signal(sig)) => {
                let _ = election.resign();
                client.close();
                eprintln!(
                    "tenure: {} while waiting to become master of {name:?}",
                    signal_name(sig)
                );
                return Ok(128 + sig as u8);
            }
            Ok(_) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(_) => return Err((EXIT_SOFTWARE, "internal channel closed".into())),
        }
    };
    eprintln!("tenure: {id:?} is master of {name:?} at epoch {epoch}");
    let mut child = spawn_command(&cmd)
        .env("TENURE_ELECTION", &name)
        .env("TENURE_CANDIDATE_ID", &id)
        .env("TENURE_MASTER_EPOCH", epoch.to_string())
        .spawn()
        .map_err(|e| (127, format!("cannot run {:?}: {e}", cmd[0])))?;
    let pid = child.id() as i32;
    let tx4 = tx.clone();
    let waiter = std::thread::spawn(move || {
        if let Ok(st) = child.wait() {
            let _ = tx4.send(Ev::Exited(st));
        }
    });
    // First thing on every wake (including after a SIGSTOP): are we still master?
    let held = || {
        if election.master_epoch() == Some(epoch) {
            return None;
        }
        let m = election.master();
        Some(match m.master {
            Some(other) => format!("{:?} is master at epoch {}", other.id, m.epoch),
            None => "the lease ended".to_string(),
        })
    };
    let told = |why: &str| {
        eprintln!("tenure: no longer master of {name:?} ({why}); stopping the command (pid {pid})");
    };
    let ended = supervise(pid, &rx, &held, &told, grace);
    let _ = waiter.join();
    // The command has exited: only now is the mastership given up.
    let code = match ended {
        Ended::Exited(st) => {
            if election.master_epoch() != Some(epoch) {
                eprintln!("tenure: stopped being master of {name:?} as the command ended");
                EXIT_LOST
            } else {
                exit_code(st)
            }
        }
        Ended::Lost => EXIT_LOST,
        Ended::Signalled(sig, st) => {
            eprintln!(
                "tenure: the command (pid {pid}) ended after {}; resigning from {name:?}",
                signal_name(sig)
            );
            exit_code(st)
        }
    };
    let _ = election.resign();
    client.close();
    Ok(code)
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
            // The rest as the core's flat record: its kind and canonical fields.
            other => {
                let rec = other.clone().record();
                let mut out = format!("event {}", rec.kind);
                for (name, f) in rec.fields() {
                    out.push_str(&format!(" {name}={f}"));
                }
                out
            }
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

    /// Removes the demo's data directory on every way out of [`run`] (declared before the
    /// server, so dropped after it).
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The paused holder's process: killed and reaped on every way out of [`run`].
    struct Holder(Child);

    impl Drop for Holder {
        fn drop(&mut self) {
            // SAFETY: signalling our own child (it may be stopped: SIGCONT lets SIGKILL act
            // at once either way).
            unsafe { libc::kill(self.0.id() as i32, libc::SIGCONT) };
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `a` relative to `b`, signed: "12ms BEFORE" or "3ms AFTER".
    fn before_after(a: Instant, b: Instant) -> String {
        if a <= b {
            format!("{:.0?} BEFORE", b - a)
        } else {
            format!("{:.0?} AFTER", a - b)
        }
    }

    pub fn run() -> CliResult {
        t0();
        let tmp = TempDir(std::env::temp_dir().join(format!("tenure-demo-{}", std::process::id())));
        let dir = tmp.0.clone();
        let server = Server::start(ServerConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.clone(),
            durability: Durability::Fsync,
            ..Default::default()
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
                "dave was told {} erin was granted; is_held() = {}",
                before_after(lost_at, erin_at),
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
        let mut frank = Holder(
            Command::new(exe)
                .args(["__demo-holder", &addr, name, &res_addr])
                .env("TENURE_DEMO_T0_NS", t0_ns())
                .spawn()
                .map_err(fail)?,
        );
        let (gina, _sg) = client("gina", &addr, 1500)?;
        let st = Instant::now();
        while gina.status().map_err(fail)?.locks.is_empty() {
            if st.elapsed() > Duration::from_secs(10) {
                return Err(fail("frank did not take the lock"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(frank.0.id() as i32, libc::SIGSTOP) };
        say("demo", "frank is paused with SIGSTOP (a long GC pause)");
        let g = gina.lock(name, Duration::from_secs(10)).map_err(fail)?;
        say(
            "gina",
            format!("granted, fencing token {}", g.fencing_token()),
        );
        resource.write("gina", g.fencing_token());
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: as above.
        unsafe { libc::kill(frank.0.id() as i32, libc::SIGCONT) };
        say("demo", "frank resumes");
        let fst = frank.0.wait().map_err(fail)?;
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
        drop(server);
        failover(&dir)?;
        println!("\nAll five scenarios ran; see the README for what each event means.");
        drop(tmp);
        Ok(0)
    }

    /// A free port on loopback, for a member's address (the group must know it in advance).
    fn free_port() -> Result<u16, (u8, String)> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(fail)?;
        Ok(l.local_addr().map_err(fail)?.port())
    }

    /// Scenario 5: a group of three `tenure serve` processes; the leader is killed.
    fn failover(dir: &std::path::Path) -> Result<(), (u8, String)> {
        println!(
            "\n-- 5. three servers; kai holds a lock and a mastership; the leader is killed (SIGKILL) --"
        );
        let exe = std::env::current_exe().map_err(fail)?;
        let addrs: Vec<String> = (0..3)
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Result<_, _>>()?;
        let cluster = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, a) in addrs.iter().enumerate() {
            let data = dir.join(format!("member{}", i + 1));
            let child = Command::new(&exe)
                .args([
                    "serve",
                    "--id",
                    &(i + 1).to_string(),
                    "--listen",
                    a,
                    "--data",
                ])
                .arg(&data)
                .args(["--cluster", &cluster, "--bootstrap"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(fail)?;
            members.push(Some(Holder(child)));
        }
        say("servers", format!("three members: {cluster}"));
        let connect = |who: &'static str, ttl_ms: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let cfg =
                    ClientConfig::new(addrs.clone()).session_ttl(Duration::from_millis(ttl_ms));
                match Client::connect(cfg) {
                    Ok(c) => {
                        let sub = c
                            .subscribe(move |ev| say(who, describe(&ev)))
                            .map_err(fail)?;
                        return Ok((c, sub));
                    }
                    Err(e) if Instant::now() > deadline => return Err(fail(e)),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        };
        let (kai, _sk) = connect("kai", 3000)?;
        let lock = kai
            .lock("jobs/failover", Duration::from_secs(10))
            .map_err(fail)?;
        let e = kai
            .campaign("failover", tenure::client::Candidacy::new("kai", 1))
            .map_err(fail)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !e.is_master() {
            if Instant::now() > deadline {
                return Err(fail("kai did not become master"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        say(
            "kai",
            format!(
                "holds \"jobs/failover\" with token {} and is master at epoch {:?} (session TTL 3 s)",
                lock.fencing_token(),
                e.master_epoch()
            ),
        );
        let st = kai.status().map_err(fail)?;
        let leader = st.leader.ok_or_else(|| fail("no leader"))?;
        say(
            "servers",
            format!("member {} at {} leads", leader.id, leader.address),
        );
        let (lena, _sl) = connect("lena", 3000)?;
        let killed = Instant::now();
        if let Some(h) = members[leader.id as usize - 1].take() {
            drop(h); // SIGKILL and reaped
        }
        say(
            "demo",
            format!("member {} is killed with SIGKILL", leader.id),
        );
        // lena locks in a loop: her next grant is the failover as a user sees it.
        let next = loop {
            if let Ok(Some(l)) = lena.try_lock("jobs/next") {
                break l;
            }
            if killed.elapsed() > Duration::from_secs(10) {
                return Err(fail("no lock within 10 s of the kill"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = killed.elapsed();
        let st = lena.status().map_err(fail)?;
        let new = st.leader.map(|l| l.id).unwrap_or(0);
        say(
            "lena",
            format!(
                "granted \"jobs/next\" with token {} {took:.0?} after the kill (member {new} leads now)",
                next.fencing_token()
            ),
        );
        say(
            "kai",
            format!(
                "still holds his lock: is_held() = {}, token {}; still master: {} at epoch {:?}",
                lock.is_held(),
                lock.fencing_token(),
                e.is_master(),
                e.master_epoch()
            ),
        );
        if !lock.is_held() || !e.is_master() {
            return Err(fail("kai lost his lock or mastership in the failover"));
        }
        if next.fencing_token() <= lock.fencing_token() {
            return Err(fail("the next grant's token did not grow"));
        }
        say(
            "demo",
            format!(
                "the failover took {took:.0?}; kai's session, lock and mastership were kept, and \
                 tokens kept growing ({} then {})",
                lock.fencing_token(),
                next.fencing_token()
            ),
        );
        drop(next);
        drop(e);
        drop(lock);
        kai.close();
        lena.close();
        drop(members);
        Ok(())
    }

    /// The demo's paused holder: takes the lock and, after being resumed, finds out it lost it.
    pub fn holder(addr: &str, name: &str, res_addr: &str) -> CliResult {
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
