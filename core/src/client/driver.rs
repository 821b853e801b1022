//! The client's runtime: the loop that feeds the session machine ([`super::session`]) what
//! happened and performs what it asks. No rule of the protocol lives here.
//!
//! Threads. The session and the client's connections are one [`Driver`] behind a mutex in
//! [`Core`]. Every input is a [`Cmd`] on one queue: user requests, frames and breaks read by
//! the connection's reader thread, dial outcomes. Whoever queues a command then tries the
//! mutex and, when it is free, runs every queued command itself, in queue order
//! ([`Core::poke`], never blocking); a thread that holds the mutex runs what others queued
//! meanwhile before it lets go. So a request is written to the socket by the caller's own
//! thread and its reply is completed by the reader thread that read it: no hand-off to a
//! driver thread on either way (each cost about 10 µs of scheduling on an idle machine),
//! while the order of everything stays that of the queue. The timer thread wakes at the
//! session's next wake-up (or when nudged because that moved earlier).
//!
//! Nothing that holds the driver waits on the network (see [`super::conn`]): dials run on a
//! thread of their own and report through the queue ([`Cmd::Dialed`]); writes never block.
//! So the timer thread takes the driver at once at the lease deadline, whatever the sockets
//! do, and expiry, `is_held()` turning false and the lost callbacks happen then.

use super::conn::{dial, queue, Connection, Dialed};
use super::pending::{self, Completer};
use super::session::{DialInfo, Io, Session};
use super::ClientConfig;
use super::Shared;
use crate::error::{Error, Result};
use crate::events::Sink;
use crate::lease::LeaseConfig;
use crate::proto::{self, Request, ServerMsg};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) enum Cmd {
    /// A user request; `reply` gets exactly one answer (none for fire-and-forget).
    Call {
        req: u64,
        body: Request,
        reply: Option<Completer>,
        /// When the session withdraws it unanswered, and the error it then ends with.
        deadline: Option<(Instant, Error)>,
    },
    /// The user gave up call `req` (`why` it ends so).
    Cancel {
        req: u64,
        why: crate::error::Error,
    },
    Subscribe(Sink),
    /// An election or group handle was dropped: stop updating it.
    Forget {
        held: super::Held,
    },
    Frame {
        conn: u64,
        msg: ServerMsg,
    },
    Broken {
        conn: u64,
    },
    /// A dial thread's outcome: the connection, or what every endpoint said.
    Dialed {
        attempt: u64,
        result: std::result::Result<Dialed, String>,
    },
    Close {
        done: Completer,
    },
}

/// What a client's threads share: the driver behind its mutex, the command queue, and the
/// timer thread's alarm.
pub(crate) struct Core {
    driver: Mutex<Driver>,
    rx: Receiver<Cmd>,
    alarm: Alarm,
}

/// The timer thread's sleep: until an instant, or until nudged because that instant moved
/// earlier. A parking_lot condvar rather than a channel's timed receive: crossbeam's
/// `recv_deadline` yields the CPU a few times after its deadline before it returns, and on a
/// machine whose cores are busy each yield costs a time slice, which made the timer thread,
/// and so the expiry and the lost callbacks, 10 ms late at the median and 50 ms in the tail
/// (`examples/lost_bench.rs`); a condvar wakes within the scheduler's latency.
#[derive(Default)]
struct Alarm {
    nudged: Mutex<bool>,
    wake: Condvar,
}

impl Alarm {
    fn nudge(&self) {
        *self.nudged.lock() = true;
        self.wake.notify_one();
    }

    /// Sleeps until `until` (for ever when `None`) or a nudge, whichever comes first.
    fn sleep(&self, until: Option<Instant>) {
        let mut n = self.nudged.lock();
        while !*n {
            match until {
                Some(t) => {
                    if Instant::now() >= t || self.wake.wait_until(&mut n, t).timed_out() {
                        break;
                    }
                }
                None => self.wake.wait(&mut n),
            }
        }
        *n = false;
    }
}

impl Core {
    /// Runs the queued commands now unless another thread is running the driver (which then
    /// runs them before letting go). Never blocks; call after queueing a command.
    pub(crate) fn poke(&self) {
        // The hand-off is "queue, then try the mutex" against "unlock, then look at the
        // queue": each side must see the other's first step, which needs full fences.
        fence(Ordering::SeqCst);
        pending::deferring(|| {
            while let Some(d) = self.driver.try_lock() {
                if !self.let_go(d) {
                    return;
                }
            }
        })
    }

    /// Runs `f` on the driver (waiting for the mutex), then the queued commands.
    fn with<T>(&self, f: impl FnOnce(&mut Driver) -> T) -> T {
        pending::deferring(|| {
            let mut d = self.driver.lock();
            let out = f(&mut d);
            d.perform(Instant::now());
            if self.let_go(d) {
                self.poke();
            }
            out
        })
    }

    /// Runs what is queued, lets go of the driver, nudges the timer thread when its wake-up
    /// moved earlier, and says whether commands were queued meanwhile (someone must run them).
    fn let_go(&self, mut d: MutexGuard<'_, Driver>) -> bool {
        d.drain(&self.rx);
        let nudge = d.wants_timer();
        drop(d);
        if nudge {
            self.alarm.nudge();
        }
        fence(Ordering::SeqCst);
        !self.rx.is_empty()
    }
}

/// The session and the I/O it asked for: its connections (the current one, and a new one
/// for the moment it takes over) and dials.
pub(crate) struct Driver {
    session: Session,
    conns: HashMap<u64, Connection>,
    client_name: String,
    /// A connection whose peer takes no bytes for this long is broken.
    write_timeout: Duration,
    tx: Sender<Cmd>,
    /// The core this driver lives in (for the threads it starts).
    core: Weak<Core>,
    /// When the timer thread plans to wake next (set by it before it sleeps).
    planned: Option<Instant>,
}

impl Driver {
    /// Starts the timer thread and the first session's opening (call `first_req`): its
    /// outcome comes to the returned waiter.
    pub(crate) fn start(
        cfg: ClientConfig,
        lease_cfg: LeaseConfig,
        shared: Arc<Shared>,
        tx: Sender<Cmd>,
        rx: Receiver<Cmd>,
        first_sub: Option<Sink>,
        first_req: u64,
    ) -> Result<(Arc<Core>, JoinHandle<()>, pending::Waiter)> {
        let seed = (std::process::id() as u64) << 32 ^ shared.epoch.elapsed().as_nanos() as u64;
        let now = Instant::now();
        let core = Arc::new_cyclic(|weak| Core {
            driver: Mutex::new(Driver {
                client_name: cfg.client_name.clone(),
                write_timeout: lease_cfg.heartbeat_timeout,
                session: Session::new(cfg, lease_cfg, shared, seed, first_sub, now),
                conns: HashMap::new(),
                tx,
                core: weak.clone(),
                planned: None,
            }),
            rx,
            alarm: Alarm::default(),
        });
        // The first session: the session dials and opens; its outcome comes through `first`. The timer thread runs from now on: it keeps that bound, and after a
        // failure it lets a first open still in flight be answered (and closed) by itself.
        let (first_tx, first) = pending::slot();
        core.with(|d| d.session.begin(Instant::now(), first_req, first_tx));
        let c = core.clone();
        let timer = std::thread::Builder::new()
            .name("tenure-client".into())
            .spawn(move || timer_loop(&c));
        let timer = match timer {
            Ok(t) => t,
            Err(e) => {
                core.with(|d| d.session.cancel(Instant::now(), first_req, Error::Closed));
                return Err(e.into());
            }
        };
        Ok((core, timer, first))
    }

    /// Runs every queued command, in order.
    fn drain(&mut self, rx: &Receiver<Cmd>) {
        while let Ok(cmd) = rx.try_recv() {
            let now = Instant::now();
            // A deadline that passed is acted on before anything else.
            self.session.tick(now);
            self.handle(now, cmd);
            self.perform(now);
        }
    }

    /// Whether the timer thread must wake before it planned to.
    fn wants_timer(&self) -> bool {
        if self.session.is_done() {
            return true;
        }
        match (self.session.next_wakeup(), self.planned) {
            (Some(n), Some(p)) => n < p,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Feeds one command to the session.
    fn handle(&mut self, now: Instant, cmd: Cmd) {
        let s = &mut self.session;
        match cmd {
            Cmd::Call {
                req,
                body,
                reply,
                deadline,
            } => s.call(now, req, body, reply, deadline),
            Cmd::Cancel { req, why } => s.cancel(now, req, why),
            Cmd::Subscribe(sink) => s.subscribe(sink),
            Cmd::Forget { held } => s.forget(held),
            Cmd::Frame { conn, msg } => s.frame(now, conn, msg),
            Cmd::Broken { conn } => s.broken(now, conn),
            Cmd::Dialed { attempt, result } => {
                let info = match result {
                    Ok(d) => {
                        let info = DialInfo {
                            incarnation: d.incarnation,
                            endpoint: d.endpoint,
                        };
                        // The connection (and its reader) first, so that the session can send
                        // on it at once; without a reader thread the attempt failed.
                        match Connection::start(
                            d.stream,
                            attempt,
                            self.tx.clone(),
                            self.core.clone(),
                            self.write_timeout,
                        ) {
                            Ok(c) => {
                                self.conns.insert(attempt, c);
                                Ok(info)
                            }
                            Err(e) => Err(format!("cannot start a reader thread: {e}")),
                        }
                    }
                    Err(e) => Err(e),
                };
                self.session.dialed(now, attempt, info);
            }
            Cmd::Close { done } => s.close(now, done),
        }
    }

    /// Performs what the session asked; a write that fails is reported back as a break.
    fn perform(&mut self, now: Instant) {
        loop {
            let mut broken = Vec::new();
            while let Some(io) = self.session.poll_io() {
                match io {
                    Io::Send { conn, msg } => {
                        let mut b = Vec::new();
                        // Arguments are checked before they get here; a message that still
                        // does not fit is not sent, and its caller times out.
                        if proto::encode(&msg, &mut b).is_err() {
                            continue;
                        }
                        if !self.conns.get(&conn).is_some_and(|c| c.send(&b)) {
                            broken.push(conn);
                        }
                    }
                    Io::Drop { conn } => {
                        self.conns.remove(&conn);
                    }
                    Io::Dial {
                        attempt,
                        start,
                        step,
                        endpoints,
                        after,
                    } => self.dial(attempt, start, step, endpoints, after),
                }
            }
            if broken.is_empty() {
                return;
            }
            for conn in broken {
                self.session.broken(now, conn);
            }
        }
    }

    /// Starts a dial thread; its outcome comes back as [`Cmd::Dialed`].
    fn dial(
        &mut self,
        attempt: u64,
        start: usize,
        step: Duration,
        endpoints: Vec<String>,
        after: Duration,
    ) {
        let name = self.client_name.clone();
        let (tx, core) = (self.tx.clone(), self.core.clone());
        let spawned = std::thread::Builder::new()
            .name("tenure-client-dial".into())
            .spawn(move || {
                std::thread::sleep(after);
                let result = dial(&endpoints, start, step, &name);
                let poke = || match core.upgrade() {
                    Some(c) => {
                        c.poke();
                        true
                    }
                    None => false,
                };
                let never = AtomicBool::new(false);
                if queue(&tx, &poke, &never, Cmd::Dialed { attempt, result }) {
                    poke();
                }
            });
        if let Err(e) = spawned {
            // Out of threads: a failed attempt, retried later.
            let why = format!("cannot start a dial thread: {e}");
            self.session.dialed(Instant::now(), attempt, Err(why));
        }
    }
}

/// The timer thread: runs the session at its wake-ups and ends when the client is closed.
fn timer_loop(core: &Core) {
    loop {
        let wake = pending::deferring(|| {
            let mut d = core.driver.lock();
            let now = Instant::now();
            d.session.tick(now);
            d.perform(now);
            d.drain(&core.rx);
            if d.session.is_done() {
                return None;
            }
            let wake = d.session.next_wakeup();
            d.planned = wake;
            if core.let_go(d) {
                core.poke();
            }
            Some(wake)
        });
        let Some(wake) = wake else { return };
        core.alarm.sleep(wake);
    }
}
