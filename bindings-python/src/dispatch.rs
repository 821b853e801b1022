//! Delivery of events to Python callbacks on dispatcher threads owned by the package.
//!
//! The handlers this module gives the core are inline ([`tenure::Handler::inline`]): the
//! core's thread that produced an event (heartbeat, I/O, timer) calls them, and they only put
//! the event on the queue of a [`Dispatcher`] and return, without touching Python. So an
//! event crosses one thread hand-off, from the core's thread to the dispatcher, and no
//! subscription costs a thread. A dispatcher is one long-lived thread
//! that attaches to the interpreter once, for its whole life, so its Python thread state is
//! created once and kept; it detaches while it waits for work, and re-attaches (takes the
//! GIL) once per batch of queued events.
//!
//! An exception raised by a callback is logged to `logging.getLogger("tenure")` with its
//! traceback, and the dispatcher goes on with the next event.
//!
//! Each client (and each detector) has its own dispatcher, started at its first callback;
//! one more, process-wide, runs the completion callbacks of pending operations (used by the
//! asyncio layer). A callback that blocks delays the later callbacks of its dispatcher only.
//!
//! Registrations give the guarantee of the core's subscriptions: after
//! [`Registration::deactivate`] returns, the callback does not start again; if it is running
//! on another thread, deactivation waits for it to return, except when called from inside a
//! callback of the same dispatcher, where it returns at once.

use crate::types;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{JoinHandle, ThreadId};

/// Jobs taken out of the queue per attachment to the interpreter.
const BATCH: usize = 256;

/// Work for a dispatcher thread.
pub(crate) enum Job {
    /// Deliver a core event to a registered callback.
    Event {
        reg: Arc<Registration>,
        ev: tenure::Event,
    },
    /// Call a Python callable with no arguments (completion callbacks).
    Call { callback: Py<PyAny> },
    /// Leave the thread.
    Stop,
}

/// A Python callback registered with a dispatcher.
pub(crate) struct Registration {
    callback: Py<PyAny>,
    /// What the callback is for, in log messages ("on_event", "on_lost", ...).
    what: &'static str,
    active: AtomicBool,
    /// Held by the dispatcher while the callback runs.
    running: Mutex<()>,
    dispatcher_thread: ThreadId,
}

impl Registration {
    /// Stops delivery (see the module's guarantees). Never waits with the GIL held.
    pub(crate) fn deactivate(&self, py: Python<'_>) {
        if !self.active.swap(false, Ordering::AcqRel) {
            return;
        }
        if std::thread::current().id() == self.dispatcher_thread {
            return;
        }
        // Wait for a running call to return; the callback needs the GIL to finish.
        py.detach(|| drop(self.running.lock()));
    }

    /// True until deactivated.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}

/// A dispatcher thread and its queue.
pub(crate) struct Dispatcher {
    tx: Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

/// Every dispatcher started, so that interpreter exit can stop them first.
static ALL: Mutex<Vec<Weak<Dispatcher>>> = Mutex::new(Vec::new());
/// Set by [`shutdown`]: no dispatcher starts after it.
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);
/// The process-wide dispatcher of completion callbacks.
static COMPLETIONS: Mutex<Option<Arc<Dispatcher>>> = Mutex::new(None);

impl Dispatcher {
    /// Starts a dispatcher thread named `tenure-py-<name>`.
    pub(crate) fn start(name: &str) -> std::io::Result<Arc<Dispatcher>> {
        if SHUT_DOWN.load(Ordering::Acquire) {
            return Err(std::io::Error::other("the interpreter is shutting down"));
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("tenure-py-{name}"))
            .spawn(move || run(rx))?;
        let d = Arc::new(Dispatcher {
            tx,
            thread_id: thread.thread().id(),
            thread: Mutex::new(Some(thread)),
        });
        let mut all = ALL.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&d));
        Ok(d)
    }

    /// Registers `callback`; returns the registration and the handler to give the core: an
    /// inline one ([`tenure::Handler::inline`]), so the core's thread that produced an event
    /// queues it here directly, with no core dispatcher thread in between.
    pub(crate) fn register(
        self: &Arc<Self>,
        callback: Py<PyAny>,
        what: &'static str,
    ) -> (Arc<Registration>, tenure::Handler) {
        let reg = Arc::new(Registration {
            callback,
            what,
            active: AtomicBool::new(true),
            running: Mutex::new(()),
            dispatcher_thread: self.thread_id,
        });
        let d = self.clone();
        let r = reg.clone();
        let forward = move |ev: tenure::Event| {
            if r.is_active() {
                d.send(Job::Event { reg: r.clone(), ev });
            }
        };
        (reg, tenure::Handler::inline(forward))
    }

    /// Queues a job; never blocks. A stopped dispatcher drops it.
    pub(crate) fn send(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Not joined here: this may run with the GIL held, and the thread may be waiting for
        // it. The thread leaves by itself.
        let _ = self.tx.send(Job::Stop);
    }
}

/// The process-wide dispatcher of completion callbacks (started at first use).
pub(crate) fn completions() -> Option<Arc<Dispatcher>> {
    let mut g = COMPLETIONS.lock();
    if g.is_none() {
        *g = Dispatcher::start("completions").ok();
    }
    g.clone()
}

fn run(rx: Receiver<Job>) {
    Python::attach(move |py| {
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
        loop {
            let disconnected = py.detach(|| {
                match rx.recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => return true,
                }
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                false
            });
            for job in batch.drain(..) {
                match job {
                    Job::Stop => return,
                    Job::Event { reg, ev } => deliver(py, &reg, ev),
                    Job::Call { callback } => {
                        if let Err(e) = callback.call0(py) {
                            log_error(py, "completion", None, e);
                        }
                    }
                }
            }
            if disconnected {
                return;
            }
        }
    });
}

fn deliver(py: Python<'_>, reg: &Registration, ev: tenure::Event) {
    let _running = reg.running.lock();
    if !reg.is_active() {
        return;
    }
    let kind = ev.kind();
    let result =
        types::Event::from_core(py, ev).and_then(|obj| reg.callback.call1(py, (obj,)).map(drop));
    if let Err(e) = result {
        log_error(py, reg.what, Some(kind), e);
    }
}

/// Logs an exception raised by a user callback to the `tenure` logger, with its traceback.
pub(crate) fn log_error(py: Python<'_>, what: &str, kind: Option<&str>, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("tenure",))?;
        let kwargs = PyDict::new(py);
        let info = (err.get_type(py), err.value(py), err.traceback(py));
        kwargs.set_item("exc_info", info)?;
        let msg = match kind {
            Some(k) => format!(
                "exception in a tenure {what} callback (event {k}); later events are still delivered"
            ),
            None => format!("exception in a tenure {what} callback"),
        };
        logger.call_method("error", (msg,), Some(&kwargs))?;
        Ok(())
    })();
    if let Err(e) = logged {
        // Logging itself failed (a broken handler): print both rather than lose them.
        err.print(py);
        e.print(py);
    }
}

/// Stops every dispatcher and waits for them (registered with `atexit` by the package, so
/// that no dispatcher thread touches the interpreter while it finalises). Idempotent.
pub(crate) fn shutdown(py: Python<'_>) {
    SHUT_DOWN.store(true, Ordering::Release);
    COMPLETIONS.lock().take();
    let all: Vec<Arc<Dispatcher>> = ALL.lock().drain(..).filter_map(|w| w.upgrade()).collect();
    let mut threads = Vec::new();
    for d in &all {
        d.send(Job::Stop);
        if let Some(t) = d.thread.lock().take() {
            if t.thread().id() != std::thread::current().id() {
                threads.push(t);
            }
        }
    }
    drop(all);
    // A callback still running (sleeping, blocked) is given two seconds to return.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    py.detach(|| {
        for t in threads {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    });
}

/// The registrations of one handle (a lock, an election, ...), deactivated together when the
/// handle is released or closed.
#[derive(Default)]
pub(crate) struct Regs(Mutex<Vec<Arc<Registration>>>);

impl Regs {
    /// Adds one.
    pub(crate) fn push(&self, r: Arc<Registration>) {
        self.0.lock().push(r);
    }

    /// Deactivates every one (see [`Registration::deactivate`]).
    pub(crate) fn close_all(&self, py: Python<'_>) {
        let all = std::mem::take(&mut *self.0.lock());
        for r in all {
            r.deactivate(py);
        }
    }
}
