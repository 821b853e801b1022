//! The promises of tenure's calls, with no thread of tenure's own waiting for any of them.
//!
//! A client's calls (connecting, locks, releases, elections, groups, revokes, status, closing)
//! are the core's pending calls ([`pending_promise`]): the core keeps their timeouts and
//! settles the promise from the client's I/O thread, so nothing waits for them.
//!
//! Starting and stopping an in-process server or detector is not a call to the service: it
//! binds sockets, reads a data directory or joins threads, and is bounded. It runs as libuv
//! async work ([`promise`]) on Node's shared thread pool, as file-system work does; no thread
//! is made for it. (A lock's wait never runs there: four waiting locks would starve it.)
//!
//! A promise keeps the event loop alive until it is settled, and it is settled exactly once,
//! also when the work panics.

use napi::bindgen_prelude::{FromNapiValue, Object, ToNapiValue, TypeName};
use napi::{Env, JsDeferred, JsValue, Task};
use std::panic::{catch_unwind, AssertUnwindSafe};

type Resolver<T> = Box<dyn FnOnce(Env) -> napi::Result<T>>;

/// Bounded work (a server's or detector's start or stop) as libuv async work.
struct Work<T> {
    work: Option<Box<dyn FnOnce() -> napi::Result<T> + Send>>,
}

impl<T: ToNapiValue + TypeName + Send + 'static> Task for Work<T> {
    type Output = T;
    type JsValue = T;

    fn compute(&mut self) -> napi::Result<T> {
        let Some(work) = self.work.take() else {
            return Err(crate::error::coded("ERR_TENURE_PANIC", "work run twice"));
        };
        match catch_unwind(AssertUnwindSafe(work)) {
            Ok(r) => r,
            Err(_) => Err(crate::error::coded(
                "ERR_TENURE_PANIC",
                "a tenure call panicked; this is a bug",
            )),
        }
    }

    fn resolve(&mut self, _env: Env, output: T) -> napi::Result<T> {
        Ok(output)
    }
}

/// Runs `work` (bounded: a server's or detector's start or stop) on Node's thread pool and
/// returns a promise of its result.
///
/// `work` returns its error already converted ([`crate::error`]). A panic in `work` rejects
/// the promise with the `ERR_TENURE_PANIC` code.
pub fn promise<'env, T, F>(env: &'env Env, work: F) -> napi::Result<Object<'env>>
where
    T: ToNapiValue + TypeName + Send + 'static,
    F: FnOnce() -> napi::Result<T> + Send + 'static,
{
    let spawned = env.spawn(Work {
        work: Some(Box::new(work)),
    })?;
    let raw = spawned.promise_object().raw();
    // SAFETY: `raw` is the promise napi just made in this environment.
    unsafe { Object::from_napi_value(env.raw(), raw) }
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
