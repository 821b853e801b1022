//! Calls in flight, so that the calling Python thread can wait in slices, let Ctrl-C through,
//! or be awaited from asyncio.
//!
//! An [`Op`] is one of the client's calls (connecting, locks, elections, groups, revokes,
//! status, closing): a core pending call ([`Op::adopt`]), which needs no thread: the core keeps
//! its timeout and tells the op when its result is there. The synchronous API is "start, then
//! wait": it waits with the GIL released, waking every [`SLICE`] to run Python's signal
//! handlers (`KeyboardInterrupt`); the asyncio layer (`tenure._aio`) gets a [`Pending`],
//! registers a completion callback and awaits a future.
//!
//! Abandoning a call (Ctrl-C in the waiting thread, `cancel()`, an asyncio task cancelled, or
//! the `Pending` object garbage-collected) never leaves anything held: the core call is
//! cancelled, and a result that raced the cancel is dropped, which releases what it holds (a
//! granted lock is released, a connected client closed).
//!
//! Each call has one native method, `*_start`, returning its [`Pending`]; the Python layer
//! (`python/tenure/`) makes the blocking method ("start, then wait") and the `*_async` one
//! (`tenure._aio.Op`, awaiting the same object) of it.
//!
//! Starting and stopping an in-process server or detector is not a call to the service: it
//! runs on the calling thread with the GIL released, and its `*_async` form in asyncio's
//! default executor (`tenure._aio.Blocking`); no thread is made for it.

use crate::dispatch::{self, Job};
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Longest time a waiting Python thread goes without checking for signals.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

enum State<T> {
    /// Running; the completion callbacks to call when it ends.
    Running(Vec<Py<PyAny>>),
    Done(T),
    Taken,
    Abandoned,
}

/// One call: a core pending call ([`Op::adopt`]), or one whose result is known already.
pub(crate) struct Op<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
    what: &'static str,
    /// Cancels the core call of an adopted op.
    cancel: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl<T: Send + 'static> Op<T> {
    fn running(what: &'static str) -> Arc<Op<T>> {
        Arc::new(Op {
            state: Mutex::new(State::Running(Vec::new())),
            cv: Condvar::new(),
            what,
            cancel: Mutex::new(None),
        })
    }

    /// An op over a core pending call, with no thread: the core tells it when the result is
    /// there (on the client's I/O thread, where `map` runs: it must not block), and
    /// abandoning it cancels the core call.
    pub(crate) fn adopt<U: Send + 'static>(
        what: &'static str,
        p: tenure::Pending<U>,
        map: impl FnOnce(tenure::Result<U>) -> T + Send + 'static,
    ) -> Arc<Op<T>> {
        let op = Op::running(what);
        let p = Arc::new(p);
        let canceller = p.clone();
        *op.cancel.lock() = Some(Box::new(move || canceller.cancel()));
        let weak = Arc::downgrade(&op);
        let taker = p.clone();
        p.on_complete(move || {
            if let Some(r) = taker.take() {
                let value = map(r);
                match weak.upgrade() {
                    Some(op) => op.finish(value),
                    // Nobody holds the op: dropping the value releases what it holds.
                    None => drop(value),
                }
            }
        });
        op
    }

    /// The call's value: kept for the caller, or dropped (releasing what it holds) when the
    /// caller gave up.
    fn finish(&self, value: T) {
        let mut g = self.state.lock();
        match std::mem::replace(&mut *g, State::Taken) {
            State::Running(callbacks) => {
                *g = State::Done(value);
                drop(g);
                self.cv.notify_all();
                notify(callbacks);
            }
            other => {
                *g = other;
                drop(g);
                drop(value);
            }
        }
    }

    /// Waits for the value with the GIL released, checking for signals every [`SLICE`]. A
    /// signal handler's exception (KeyboardInterrupt) abandons the call and is raised.
    pub(crate) fn wait(&self, py: Python<'_>) -> PyResult<T> {
        loop {
            let done = py.detach(|| {
                let mut g = self.state.lock();
                if matches!(*g, State::Running(_)) {
                    self.cv.wait_for(&mut g, SLICE);
                }
                !matches!(*g, State::Running(_))
            });
            if done {
                return self.take();
            }
            if let Err(e) = py.check_signals() {
                self.abandon();
                return Err(e);
            }
        }
    }

    /// The value of a finished call.
    fn take(&self) -> PyResult<T> {
        let mut g = self.state.lock();
        match std::mem::replace(&mut *g, State::Taken) {
            State::Done(v) => Ok(v),
            State::Running(cbs) => {
                *g = State::Running(cbs);
                Err(PyRuntimeError::new_err(format!(
                    "the {} call has not finished",
                    self.what
                )))
            }
            State::Taken => Err(PyRuntimeError::new_err(format!(
                "the result of the {} call was already taken",
                self.what
            ))),
            State::Abandoned => {
                *g = State::Abandoned;
                Err(PyRuntimeError::new_err(format!(
                    "the {} call was cancelled",
                    self.what
                )))
            }
        }
    }

    /// Gives the call up: its value, now or when it comes, is dropped.
    pub(crate) fn abandon(&self) {
        let mut g = self.state.lock();
        match std::mem::replace(&mut *g, State::Abandoned) {
            State::Done(v) => {
                drop(g);
                // Dropping a value does not block: a lock's release and a client's close
                // are sent, not waited for (see `client::Unclaimed`).
                drop(v);
            }
            State::Taken => *g = State::Taken,
            State::Running(_) => {
                drop(g);
                // An adopted core call is cancelled: it ends at once, and a grant that
                // raced the cancel comes to `finish`, which drops it.
                if let Some(cancel) = self.cancel.lock().take() {
                    cancel();
                }
            }
            State::Abandoned => {}
        }
    }

    fn is_running(&self) -> bool {
        matches!(*self.state.lock(), State::Running(_))
    }

    fn add_callback(&self, callback: Py<PyAny>) {
        let mut g = self.state.lock();
        if let State::Running(cbs) = &mut *g {
            cbs.push(callback);
            return;
        }
        drop(g);
        notify(vec![callback]);
    }

    fn state_name(&self) -> &'static str {
        match *self.state.lock() {
            State::Running(_) => "running",
            State::Done(_) => "done",
            State::Taken => "taken",
            State::Abandoned => "cancelled",
        }
    }
}

fn notify(callbacks: Vec<Py<PyAny>>) {
    if callbacks.is_empty() {
        return;
    }
    if let Some(d) = dispatch::completions() {
        for callback in callbacks {
            d.send(Job::Call { callback });
        }
    }
}

/// Turns a finished call's value into its Python result, on the taking thread. Dropping it
/// unused drops the value, which releases what it holds.
type Produce = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// A call in flight, as the asyncio layer sees it. Returned inside the awaitables of the
/// `*_async` methods; not created directly.
#[pyclass(frozen, module = "tenure._tenure", name = "Pending")]
pub(crate) struct Pending {
    op: Arc<Op<Produce>>,
}

/// The pending object over a core pending call ([`Op::adopt`]); `finish` turns its result
/// into the Python result, on the taking thread.
pub(crate) fn adopt<U, F>(what: &'static str, p: tenure::Pending<U>, finish: F) -> Pending
where
    U: Send + 'static,
    F: FnOnce(Python<'_>, tenure::Result<U>) -> PyResult<Py<PyAny>> + Send + 'static,
{
    start_as(what, Ok(p), |r| r, finish)
}

/// [`adopt`] over a call that may have failed to start: one that could not start gives its
/// error as its result.
pub(crate) fn start<U, F>(
    what: &'static str,
    started: tenure::Result<tenure::Pending<U>>,
    finish: F,
) -> Pending
where
    U: Send + 'static,
    F: FnOnce(Python<'_>, tenure::Result<U>) -> PyResult<Py<PyAny>> + Send + 'static,
{
    start_as(what, started, |r| r, finish)
}

/// [`start`] for a result that is made into `V` where it arrives, on the client's I/O thread
/// (a value that must not be dropped as it is: see `client::Unclaimed`); `finish` makes the
/// Python result of `V` on the taking thread.
pub(crate) fn start_as<U, V, M, F>(
    what: &'static str,
    started: tenure::Result<tenure::Pending<U>>,
    map: M,
    finish: F,
) -> Pending
where
    U: Send + 'static,
    V: Send + 'static,
    M: FnOnce(tenure::Result<U>) -> V + Send + 'static,
    F: FnOnce(Python<'_>, V) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let produce = move |v: V| -> Produce { Box::new(move |py| finish(py, v)) };
    let op = match started {
        Ok(p) => Op::adopt(what, p, move |r| produce(map(r))),
        Err(e) => {
            let op = Op::running(what);
            op.finish(produce(map(Err(e))));
            op
        }
    };
    Pending { op }
}

/// A pending object done already with `r` (a call with nothing left to do).
pub(crate) fn ready<U, F>(what: &'static str, r: tenure::Result<U>, finish: F) -> Pending
where
    U: Send + 'static,
    F: FnOnce(Python<'_>, tenure::Result<U>) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let op = Op::running(what);
    op.finish(Box::new(move |py: Python<'_>| finish(py, r)) as Produce);
    Pending { op }
}

#[pymethods]
impl Pending {
    /// True once the call has finished (or was cancelled).
    fn done(&self) -> bool {
        !self.op.is_running()
    }

    /// Waits for the call and returns its result (or raises its exception). Releases the GIL
    /// while waiting and lets Ctrl-C through (which cancels the call).
    fn wait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let produce = self.op.wait(py)?;
        produce(py)
    }

    /// The result of a finished call, or its exception. RuntimeError while it runs, after
    /// `cancel()`, or when the result was already taken.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let produce = self.op.take()?;
        produce(py)
    }

    /// Gives the call up. Whatever it produces is released (a granted lock is released, a
    /// connected client closed).
    fn cancel(&self) {
        self.op.abandon();
    }

    /// Calls `callback()` (no arguments) on tenure's completion thread when the call has
    /// finished; at once (on that thread) if it has finished already.
    fn add_done_callback(&self, callback: Bound<'_, PyAny>) -> PyResult<()> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err("callback must be callable"));
        }
        self.op.add_callback(callback.unbind());
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure Pending {} ({})>",
            self.op.what,
            self.op.state_name()
        )
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let unfinished = matches!(*self.op.state.lock(), State::Running(_) | State::Done(_));
        if unfinished {
            self.op.abandon();
        }
    }
}
