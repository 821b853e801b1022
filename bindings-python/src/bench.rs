//! Hidden functions for `bench/bench.py`: the same work done in Rust, a no-op call, and a
//! synthetic event source for delivery latency. Not part of the public API.

use crate::client::{Client, Subscription};
use crate::dispatch::Dispatcher;
use crate::util;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::time::Duration;

/// Does nothing: the cost of calling into the module.
#[pyfunction]
fn _noop() {}

/// Does nothing with the GIL released: the cost of a call that releases it.
#[pyfunction]
fn _noop_detached(py: Python<'_>) {
    py.detach(|| ());
}

/// Runs `client.try_lock(name)` + `release()` `n` times in Rust (the core's own calls, on
/// this thread, the GIL released); returns the seconds taken.
#[pyfunction]
fn _bench_try_lock_release(
    py: Python<'_>,
    client: PyRef<'_, Client>,
    name: &str,
    n: u64,
) -> PyResult<f64> {
    crate::client::bench_try_lock_release(py, &client, name, n)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; CLOCK_MONOTONIC always exists on the
    // platforms the package supports.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sends `n` synthetic "jeopardy" events, `gap` seconds apart, from a Rust thread through a
/// core subscription (the path every core event takes) to `callback` on a dispatcher of this
/// module. Each event's `remaining` is the CLOCK_MONOTONIC time it was sent at, in seconds
/// (compare with `time.monotonic()`). Returns at once; the returned `Subscription` stops it.
#[pyfunction]
fn _bench_events(
    py: Python<'_>,
    callback: Bound<'_, PyAny>,
    n: u64,
    gap: f64,
) -> PyResult<Subscription> {
    let cb = util::required_callback("callback", callback)?;
    let gap = util::secs(py, "gap", gap)?;
    let d = Dispatcher::start("bench")
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a dispatcher: {e}")))?;
    let (reg, forward) = d.register(cb, "bench");
    let (sub, sink) = tenure::events::Dispatcher::new("bench").subscribe(forward);
    std::thread::Builder::new()
        .name("tenure-bench-source".into())
        .spawn(move || {
            for _ in 0..n {
                let ev = tenure::Event::SessionJeopardy {
                    remaining: Duration::from_nanos(monotonic_ns()),
                };
                if !sink.send(ev) {
                    break;
                }
                std::thread::sleep(gap);
            }
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    Ok(Subscription::owning(reg, sub))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_noop, m)?)?;
    m.add_function(wrap_pyfunction!(_noop_detached, m)?)?;
    m.add_function(wrap_pyfunction!(_bench_try_lock_release, m)?)?;
    m.add_function(wrap_pyfunction!(_bench_events, m)?)?;
    Ok(())
}
