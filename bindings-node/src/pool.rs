//! The promises of tenure's calls, and where the calls that still block run.
//!
//! Locks, releases, elections, groups and revokes are the core's pending calls
//! ([`pending_promise`]): the core keeps their timeouts and settles the promise from the
//! client's I/O thread, so no thread waits for them. What is left (connecting, closing,
//! status, detectors, servers) blocks, as follows.
//!
//! tenure's blocking calls block (a lock waits up to its timeout, a release up to a TTL). They must
//! not run on the JavaScript thread, and not on libuv's small shared thread pool either: four
//! waiting `lock()` calls would starve file-system work and every other tenure call, including
//! the `release()` those waiters wait for. So each call runs on a thread of this pool, which
//! starts a new thread whenever no idle one is free (up to [`MAX_THREADS`]) and lets idle
//! threads end after [`IDLE_TIMEOUT`].
//!
//! A call's promise is a napi deferred: it keeps the event loop alive until it is settled, and
//! it is settled exactly once, also when the work panics.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{Env, JsDeferred};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Most threads the pool runs at once; later calls wait in the queue for a free thread.
pub const MAX_THREADS: usize = 1024;
/// Calls queued beyond the running threads before new calls are refused.
pub const MAX_QUEUED: usize = 65_536;
/// An idle thread ends after this long without work.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    /// Threads waiting for a job and not yet claimed by a submitter.
    idle: AtomicUsize,
    /// Threads alive.
    threads: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded(MAX_QUEUED);
        Pool {
            tx,
            rx,
            idle: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
        }
    })
}

/// Claims one idle thread: true when one was idle (it will take the next job).
fn claim(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

fn worker(first: Option<Job>) {
    let p = pool();
    if let Some(job) = first {
        job();
    }
    loop {
        p.idle.fetch_add(1, Ordering::AcqRel);
        loop {
            match p.rx.recv_timeout(IDLE_TIMEOUT) {
                // A submitter claimed an idle thread (this one or another) for this job.
                Ok(job) => {
                    job();
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    // Leave only if no submitter counts on this thread; otherwise a job is on
                    // its way and some idle thread must take it.
                    if claim(&p.idle) {
                        p.threads.fetch_sub(1, Ordering::AcqRel);
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Runs `job` on a pool thread. Fails only when the queue is full or no thread can start.
fn submit(job: Job) -> Result<(), String> {
    let p = pool();
    if claim(&p.idle) {
        return p
            .tx
            .try_send(job)
            .map_err(|_| format!("more than {MAX_QUEUED} tenure calls are waiting"));
    }
    if p.threads.fetch_add(1, Ordering::AcqRel) >= MAX_THREADS {
        p.threads.fetch_sub(1, Ordering::AcqRel);
        return p
            .tx
            .try_send(job)
            .map_err(|_| format!("more than {MAX_QUEUED} tenure calls are waiting"));
    }
    // The job goes straight to the new thread, so no other job can overtake it there.
    let slot = std::sync::Arc::new(parking_lot::Mutex::new(Some(job)));
    let slot2 = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("tenure-node-call".into())
        .spawn(move || {
            let job = slot2.lock().take();
            worker(job)
        });
    if let Err(e) = spawned {
        p.threads.fetch_sub(1, Ordering::AcqRel);
        // The closure never ran; the job is still in the slot.
        let job = slot.lock().take();
        if let Some(job) = job {
            return p
                .tx
                .try_send(job)
                .map_err(|_| format!("cannot start a thread: {e}"));
        }
    }
    Ok(())
}

type Resolver<T> = Box<dyn FnOnce(Env) -> napi::Result<T>>;

/// Starts `work` on a pool thread and returns a promise of its result.
///
/// `work` returns its error already converted ([`crate::error`]). A panic in `work` rejects
/// the promise with the `ERR_TENURE_PANIC` code.
pub fn promise<'env, T, F>(env: &'env Env, work: F) -> napi::Result<Object<'env>>
where
    T: ToNapiValue + Send + 'static,
    F: FnOnce() -> napi::Result<T> + Send + 'static,
{
    let (deferred, promise): (JsDeferred<T, Resolver<T>>, Object<'env>) = env.create_deferred()?;
    // The deferred sits in a slot so that it can still be rejected when the job cannot start.
    let slot = std::sync::Arc::new(parking_lot::Mutex::new(Some(deferred)));
    let slot2 = slot.clone();
    let job: Job = Box::new(move || {
        let Some(deferred) = slot2.lock().take() else {
            return;
        };
        match catch_unwind(AssertUnwindSafe(work)) {
            Ok(Ok(v)) => deferred.resolve(Box::new(move |_env| Ok(v))),
            Ok(Err(e)) => deferred.reject(e),
            Err(_) => deferred.reject(crate::error::coded(
                "ERR_TENURE_PANIC",
                "a tenure call panicked; this is a bug",
            )),
        }
    });
    if let Err(msg) = submit(job) {
        if let Some(deferred) = slot.lock().take() {
            deferred.reject(crate::error::coded("ERR_TENURE_LIMIT", &msg));
        }
    }
    Ok(promise)
}

/// A promise of a core pending call's result, with no thread: the core settles it when the
/// result is there (`map`, which converts it, runs on the client's I/O thread and must not
/// block). The core keeps the call's timeout, so the promise is always settled. A call that
/// could not start rejects the promise, as a failed call does.
pub fn pending_promise<'env, U, T, F>(
    env: &'env Env,
    started: tenure::Result<tenure::Pending<U>>,
    map: F,
) -> napi::Result<Object<'env>>
where
    U: Send + 'static,
    T: ToNapiValue + Send + 'static,
    F: FnOnce(tenure::Result<U>) -> napi::Result<T> + Send + 'static,
{
    let (deferred, promise): (JsDeferred<T, Resolver<T>>, Object<'env>) = env.create_deferred()?;
    let p = match started {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            // Settled here: a deferred dropped unsettled would keep the event loop alive.
            match map(Err(e)) {
                Ok(v) => deferred.resolve(Box::new(move |_env| Ok(v))),
                Err(e) => deferred.reject(e),
            }
            return Ok(promise);
        }
    };
    let taker = p.clone();
    p.on_complete(move || {
        let Some(r) = taker.take() else {
            return;
        };
        match catch_unwind(AssertUnwindSafe(move || map(r))) {
            Ok(Ok(v)) => deferred.resolve(Box::new(move |_env| Ok(v))),
            Ok(Err(e)) => deferred.reject(e),
            Err(_) => deferred.reject(crate::error::coded(
                "ERR_TENURE_PANIC",
                "a tenure call panicked; this is a bug",
            )),
        }
    });
    Ok(promise)
}

/// A promise settled already with `r` (a call with nothing to wait for).
pub fn ready_promise<'env, T>(env: &'env Env, r: napi::Result<T>) -> napi::Result<Object<'env>>
where
    T: ToNapiValue + Send + 'static,
{
    let (deferred, promise): (JsDeferred<T, Resolver<T>>, Object<'env>) = env.create_deferred()?;
    match r {
        Ok(v) => deferred.resolve(Box::new(move |_env| Ok(v))),
        Err(e) => deferred.reject(e),
    }
    Ok(promise)
}
