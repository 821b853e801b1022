//! The native module `tenure._tenure` of the Python package `tenure` (pyo3).
//!
//! The public API is re-exported by the pure-Python package in `python/tenure/`; the stubs
//! of this module are `python/tenure/_tenure.pyi` (a test checks that they match).
//!
//! Threads and the GIL:
//! - blocking calls release the GIL and wake every 50 ms to run signal handlers, so Ctrl-C
//!   interrupts them ([`pending`]);
//! - user callbacks run on dispatcher threads owned by this module, never on the core's
//!   heartbeat or I/O threads; each keeps one Python thread state for its life
//!   ([`dispatch`]);
//! - exceptions in callbacks are logged to `logging.getLogger("tenure")`.
//!
//! Errors map to the exception classes of [`errors`] in one function.

mod bench;
mod client;
mod detector;
mod dispatch;
mod election;
mod errors;
mod group;
mod pending;
mod server;
mod types;
mod util;
mod watch;

use pyo3::prelude::*;

/// Stops every dispatcher thread of the module (the package registers this with `atexit`,
/// so that no callback runs while the interpreter finalises). Later callbacks are dropped.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    dispatch::shutdown(py);
}

#[pymodule]
fn _tenure(m: &Bound<'_, PyModule>) -> PyResult<()> {
    util::FAST_STR.store(
        m.py().version_info() >= (3, 10),
        std::sync::atomic::Ordering::Relaxed,
    );
    errors::register(m)?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Lock>()?;
    m.add_class::<client::Subscription>()?;
    m.add_class::<election::Election>()?;
    m.add_class::<election::Observer>()?;
    m.add_class::<group::Membership>()?;
    m.add_class::<group::GroupWatch>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<detector::Detector>()?;
    m.add_class::<types::Event>()?;
    m.add_class::<types::Master>()?;
    m.add_class::<types::Member>()?;
    m.add_class::<types::View>()?;
    m.add_class::<pending::Pending>()?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    bench::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_TIMEOUT", tenure::client::MAX_TIMEOUT.as_secs_f64())?;
    let limits = pyo3::types::PyDict::new(m.py());
    for l in tenure::limits::LIMITS {
        limits.set_item(l.name, l.value)?;
    }
    m.add("LIMITS", limits)?;
    Ok(())
}
