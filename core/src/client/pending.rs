//! Calls in flight. A call's answer travels from the session to its caller through a slot:
//! the session's end ([`Completer`]) answers it once; the caller's end ([`Waiter`]) waits for
//! it with a bound, is told when it comes, or gives the call up. [`Pending`] is the public
//! handle over a waiter: what the bindings use so that no thread waits per call.
//!
//! Giving up and answering race, and the slot decides: the answer of a call whose caller has
//! given up is handed back to the session ([`Completer::send`] fails), which gives back what
//! it would have granted (releases the lock, withdraws the candidacy, leaves the group); an
//! answer that came first belongs to the caller, and dropping it releases what it holds.

use super::{Answer, Client, Cmd};
use crate::error::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Notify = Box<dyn FnOnce() + Send>;

thread_local! {
    /// Completions told while this thread runs the session (holding the driver's mutex):
    /// run once it has let go ([`deferring`]).
    static DEFERRED: RefCell<Option<Vec<Notify>>> = const { RefCell::new(None) };
}

/// Runs `f` (which holds the driver's mutex) with completion callbacks deferred until it
/// returns, so that a callback that calls the client, or drops its last handle, never runs
/// under that mutex.
pub(crate) fn deferring<R>(f: impl FnOnce() -> R) -> R {
    let outer = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        d.is_none().then(|| *d = Some(Vec::new())).is_some()
    });
    let r = f();
    if outer {
        let told = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
        for n in told {
            n();
        }
    }
    r
}

/// Calls `n` now, or once the driver is let go when this thread runs it.
fn tell(n: Notify) {
    let now = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(v) => {
            v.push(n);
            None
        }
        None => Some(n),
    });
    if let Some(n) = now {
        n();
    }
}

enum State {
    /// Not answered yet; who to tell when it is.
    Running(Vec<Notify>),
    Done(Box<Answer>),
    Taken,
    /// The caller gave up before the answer came.
    Abandoned,
}

struct Slot {
    state: Mutex<State>,
    cv: Condvar,
}

/// The session's end of a call's slot.
pub(crate) struct Completer(Arc<Slot>);

/// The caller's end of a call's slot. Dropping it before the answer gives the call up.
pub(crate) struct Waiter(Arc<Slot>);

/// A new slot's two ends.
pub(crate) fn slot() -> (Completer, Waiter) {
    let s = Arc::new(Slot {
        state: Mutex::new(State::Running(Vec::new())),
        cv: Condvar::new(),
    });
    (Completer(s.clone()), Waiter(s))
}

impl Completer {
    /// Answers the call and tells whoever asked to be told (on this thread, once it has let
    /// go of the session: see [`deferring`]). `Err` hands the answer back when the caller
    /// has given up.
    pub(crate) fn send(self, a: Answer) -> std::result::Result<(), Box<Answer>> {
        let mut g = self.0.state.lock();
        match std::mem::replace(&mut *g, State::Taken) {
            State::Running(notify) => {
                *g = State::Done(Box::new(a));
                drop(g);
                // Woken once the session's I/O of this step is done (a timed-out lock's
                // cancel is on its way to the server before its caller goes on).
                let slot = self.0.clone();
                tell(Box::new(move || {
                    slot.cv.notify_all();
                }));
                for n in notify {
                    tell(n);
                }
                Ok(())
            }
            other => {
                *g = other;
                Err(Box::new(a))
            }
        }
    }
}

impl Completer {
    /// True while the caller still waits for the answer (not given up, not answered).
    pub(crate) fn is_wanted(&self) -> bool {
        matches!(*self.0.state.lock(), State::Running(_))
    }
}

impl Drop for Completer {
    /// A call the session never answered (it was dropped with the client) ends `Closed`, so
    /// no caller waits for ever.
    fn drop(&mut self) {
        let running = matches!(*self.0.state.lock(), State::Running(_));
        if running && Arc::strong_count(&self.0) > 1 {
            let _ = Completer(self.0.clone()).send(Err(Error::Closed));
        }
    }
}

impl Waiter {
    /// The answer, if it has come (taken: a second call gets `None`).
    pub(crate) fn try_recv(&self) -> Option<Answer> {
        let mut g = self.0.state.lock();
        match std::mem::replace(&mut *g, State::Taken) {
            State::Done(a) => Some(*a),
            other => {
                *g = other;
                None
            }
        }
    }

    /// Waits until the answer comes or `until` passes (`None`: no bound), then takes it.
    pub(crate) fn recv_until(&self, until: Option<Instant>) -> Option<Answer> {
        let mut g = self.0.state.lock();
        while matches!(*g, State::Running(_)) {
            match until {
                Some(t) => {
                    if self.0.cv.wait_until(&mut g, t).timed_out() {
                        break;
                    }
                }
                None => self.0.cv.wait(&mut g),
            }
        }
        drop(g);
        self.try_recv()
    }

    /// Waits up to `timeout` for the answer, then takes it.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Option<Answer> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    fn is_running(&self) -> bool {
        matches!(*self.0.state.lock(), State::Running(_))
    }

    /// Answers the call from the caller's side (a cancel), telling whoever asked to be told;
    /// false when it was answered already. The session's answer then goes back to it.
    fn answer_here(&self, a: Answer) -> bool {
        Completer(self.0.clone()).send(a).is_ok()
    }

    fn is_taken(&self) -> bool {
        matches!(*self.0.state.lock(), State::Taken)
    }

    /// Gives the call up: the answer, if it came and was not taken; otherwise, from now on,
    /// the session's answer is handed back to it.
    pub(crate) fn abandon(&self) -> Option<Answer> {
        let mut g = self.0.state.lock();
        match std::mem::replace(&mut *g, State::Abandoned) {
            State::Done(a) => Some(*a),
            State::Taken => {
                *g = State::Taken;
                None
            }
            State::Running(_) | State::Abandoned => None,
        }
    }

    /// Calls `f` once the answer is there: now, on this thread, if it is already.
    fn notify(&self, f: Notify) {
        let mut g = self.0.state.lock();
        if let State::Running(v) = &mut *g {
            v.push(f);
            return;
        }
        drop(g);
        f();
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut g = self.0.state.lock();
        if matches!(*g, State::Running(_)) {
            *g = State::Abandoned;
        }
    }
}

/// A call in flight: wait for its result with a bound, be told when it has one, or cancel it.
///
/// Returned by the `*_start` methods of [`Client`] (for example [`Client::lock_start`]); the
/// blocking methods are "start, then wait". A pending call never needs a thread of its own:
/// the client's session answers it, keeps its timeout and withdraws it when that passes.
///
/// Dropping a `Pending` whose result has not come cancels the call; dropping one whose result
/// came but was not taken drops that result, which releases what it holds (a lock is
/// released). Either way nothing stays held for a caller that is gone.
pub struct Pending<T> {
    client: Client,
    req: u64,
    waiter: Waiter,
    /// Makes the caller's value of an answer (a [`super::Lock`] of a grant).
    make: fn(&Client, Answer) -> Result<T>,
    what: &'static str,
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("call", &self.what)
            .field("done", &!self.waiter.is_running())
            .finish()
    }
}

impl<T> Pending<T> {
    pub(crate) fn new(
        client: Client,
        req: u64,
        waiter: Waiter,
        make: fn(&Client, Answer) -> Result<T>,
        what: &'static str,
    ) -> Self {
        Pending {
            client,
            req,
            waiter,
            make,
            what,
        }
    }

    /// True once the call has its result (which [`Pending::take`] then gives).
    pub fn is_done(&self) -> bool {
        !self.waiter.is_running()
    }

    /// The result, if it has come; `None` while the call goes on, and after the result was
    /// taken ([`Error::Closed`] is not invented for a second take: the first one had it).
    pub fn take(&self) -> Option<Result<T>> {
        self.waiter.try_recv().map(|a| (self.make)(&self.client, a))
    }

    /// Waits up to `timeout` for the result and takes it; `None` when the time passed first
    /// (the call goes on: wait again, or cancel it).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T>> {
        self.waiter
            .recv_timeout(timeout)
            .map(|a| (self.make)(&self.client, a))
    }

    /// Waits for the result. Every call ends by itself (a lock at its timeout, other calls
    /// when the session answers or ends), so this returns.
    pub fn wait(self) -> Result<T> {
        match self.waiter.recv_until(None) {
            Some(a) => (self.make)(&self.client, a),
            None => Err(Error::Rejected(format!(
                "the result of the {} call was already taken",
                self.what
            ))),
        }
    }

    /// Calls `f` once the result is there (then [`Pending::take`] has it): at once, on this
    /// thread, when it already is; otherwise on the thread that delivers it (one of the
    /// client's, once it has let go of the session). `f` should return quickly, as it holds
    /// up that thread: it is meant to hand over to the caller's own loop (a binding's
    /// dispatcher, an async waker).
    pub fn on_complete(&self, f: impl FnOnce() + Send + 'static) {
        self.waiter.notify(Box::new(f));
    }

    /// Gives the call up. It ends with [`Error::Cancelled`] at once, unless its result came
    /// first (then [`Pending::take`] has that result). The session withdraws the call; a
    /// lock granted as the cancel travelled is given back, and a session opened for a
    /// cancelled connect is closed, so nothing stays held.
    pub fn cancel(&self) {
        if self.waiter.answer_here(Err(Error::Cancelled)) && self.req != 0 {
            let _ = self.client.send(Cmd::Cancel {
                req: self.req,
                why: Error::Cancelled,
            });
        }
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        match self.waiter.abandon() {
            // Came, never taken: dropping the value releases what it holds.
            Some(a) => drop((self.make)(&self.client, a)),
            // Not come: the session withdraws the call, and hands back a result that races
            // this (the slot is abandoned already, so `Completer::send` fails).
            None => {
                if !self.waiter.is_taken() && self.req != 0 {
                    let _ = self.client.send(Cmd::Cancel {
                        req: self.req,
                        why: Error::Cancelled,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Held;
    use crate::proto::Reply;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn done() -> Answer {
        Ok((Reply::Done, Held::None))
    }

    #[test]
    fn an_answer_is_taken_once_and_tells_everyone_who_asked() {
        let (tx, rx) = slot();
        let told = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let t = told.clone();
            rx.notify(Box::new(move || {
                t.fetch_add(1, Ordering::SeqCst);
            }));
        }
        assert!(rx.try_recv().is_none() && rx.is_running());
        assert!(tx.send(done()).is_ok());
        assert_eq!(told.load(Ordering::SeqCst), 2);
        // Asked after the answer came: told at once.
        let t = told.clone();
        rx.notify(Box::new(move || {
            t.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(told.load(Ordering::SeqCst), 3);
        assert!(matches!(rx.try_recv(), Some(Ok(_))));
        assert!(rx.try_recv().is_none() && rx.is_taken());
    }

    #[test]
    fn an_answer_to_a_caller_that_gave_up_goes_back_to_the_session() {
        let (tx, rx) = slot();
        assert!(rx.abandon().is_none());
        assert!(tx.send(done()).is_err());
        // Dropped unanswered: the caller would not wait for ever.
        let (tx, rx) = slot();
        drop(tx);
        assert!(matches!(rx.try_recv(), Some(Err(Error::Closed))));
        // A caller that is gone makes the answer come back too.
        let (tx, rx) = slot();
        drop(rx);
        assert!(tx.send(done()).is_err());
    }

    #[test]
    fn waits_are_bounded_and_end_when_the_answer_comes() {
        let (tx, rx) = slot();
        let t0 = Instant::now();
        assert!(rx.recv_timeout(Duration::from_millis(30)).is_none());
        assert!(t0.elapsed() >= Duration::from_millis(30));
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(done()).is_ok()
        });
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Some(Ok(_))
        ));
        assert!(h.join().unwrap());
    }
}
