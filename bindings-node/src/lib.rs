//! The native layer of tenure's Node.js package.
//!
//! Private: only the package's TypeScript layer (`lib/*.ts`, compiled to `dist/`) loads the
//! addon built from this crate (`native.node`), and the public API, its argument checks,
//! errors with `.code`, EventEmitters and the rules on what keeps the process alive live
//! there. This crate adapts the core ([`tenure`]) to napi:
//!
//! - every blocking call runs on a thread of [`pool`] and returns a Promise;
//! - events reach JavaScript through [`events::Relay`], a weak, bounded `ThreadsafeFunction`
//!   called in non-blocking mode from the core's dispatcher threads;
//! - errors become napi errors tagged with a stable code ([`error`]).

#![deny(missing_docs)]

pub mod client;
pub mod detector;
pub mod election;
pub mod error;
pub mod events;
pub mod group;
pub mod promises;
pub mod server;
pub mod watch;

use events::JsCallback;
use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tenure::{Client, ClientConfig, Event};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The core's limits table ([`tenure::limits::LIMITS`]), by the core's names; the TypeScript
/// layer checks arguments against it and exports it as `limits` (camelCase names).
#[napi(ts_return_type = "Record<string, number>")]
pub fn limits() -> std::collections::HashMap<String, f64> {
    tenure::limits::LIMITS
        .iter()
        .map(|l| (l.name.to_string(), l.value as f64))
        .collect()
}

/// Benchmark helper: nanoseconds on the monotonic clock the event benchmark stamps its events
/// with.
#[napi(js_name = "_nowNs")]
pub fn bench_now_ns() -> f64 {
    now_ns() as f64
}

/// Benchmark helper: `n` rounds of `try_lock` + `release` on `name` from Rust, through a
/// client of its own connected to `endpoint`. Resolves to each round's latency in ns.
#[napi(js_name = "_benchTryLockRelease", ts_return_type = "Promise<number[]>")]
pub fn bench_try_lock_release<'env>(
    env: &'env Env,
    endpoint: String,
    name: String,
    n: u32,
) -> napi::Result<Object<'env>> {
    promises::promise(env, move || {
        let client = Client::connect(ClientConfig::new([endpoint])).map_err(error::conv)?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let t = Instant::now();
            let lock = client
                .try_lock(&name)
                .map_err(error::conv)?
                .ok_or_else(|| error::coded("ERR_TENURE_LOCK_HELD", "benchmark lock is held"))?;
            lock.release().map_err(error::conv)?;
            out.push(t.elapsed().as_nanos() as f64);
        }
        client.close();
        Ok(out)
    })
}

/// Benchmark helper: queues `n` events, `gap_us` apart, on a core subscription whose callback
/// is `callback` (the same path as every client event). Each is a `lockAcquired` event whose
/// `fencingToken` is the `_nowNs()` time at which it was queued.
#[napi(js_name = "_benchEvents", ts_return_type = "Promise<void>")]
pub fn bench_events<'env>(
    env: &'env Env,
    n: u32,
    gap_us: u32,
    callback: JsCallback<'_>,
) -> napi::Result<Object<'env>> {
    let relay = events::Relay::new(callback)?;
    let (sub, sink) = tenure::events::Dispatcher::new("bench").subscribe(relay.callback());
    promises::promise(env, move || {
        let _relay = relay;
        for _ in 0..n {
            sink.send(Event::LockAcquired {
                name: "bench".into(),
                token: now_ns(),
            });
            std::thread::sleep(Duration::from_micros(gap_us.into()));
        }
        drop(sub);
        Ok(())
    })
}

/// Benchmark helper: a call that does nothing on a pool thread; its promise's latency is the
/// binding's floor (promise, thread hand-off, settling on the JavaScript thread).
#[napi(js_name = "_benchNoop", ts_return_type = "Promise<void>")]
pub fn bench_noop(env: &Env) -> napi::Result<Object<'_>> {
    promises::promise(env, || Ok(()))
}
