//! The stable C ABI of tenure: `libtenure.so` / `libtenure.a` and `include/tenure.h`.
//!
//! Every exported function follows the conventions written at the top of the header: a
//! `tenure_` prefix, opaque handles checked on every use ([`handle`]), a
//! [`tenure_status`](status::tenure_status) result with a thread-local message, outputs
//! written only on success, a panic boundary around every body ([`status`]), and callbacks
//! as `{call, drop, user_data}` with written guarantees ([`event`]).
//!
//! The header is generated from these sources by cbindgen (`ffi/cbindgen.toml`); the doc
//! comments here are the reference documentation of the C API. `tests/header.rs` fails when
//! the committed header differs from what cbindgen makes; run it with `TENURE_BLESS=1` to
//! rewrite the header.

#![allow(non_camel_case_types)]
// Every `unsafe extern "C"` function documents its pointer requirements in a `# Safety`
// section, which the header reproduces.
#![deny(clippy::missing_safety_doc)]
#![warn(missing_docs)]

pub mod client;
pub mod detector;
pub mod election;
pub mod event;
pub mod group;
mod handle;
pub mod lock;
pub mod server;
pub mod status;
mod util;

use std::ffi::c_char;

/// Returns the version of the library, "MAJOR.MINOR.PATCH", as a static NUL-terminated
/// string. Compare with `TENURE_VERSION_STRING` to detect a header/library mismatch. Threads:
/// any.
#[no_mangle]
pub extern "C" fn tenure_version() -> *const c_char {
    let v: *const c_char = concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast();
    status::value(v, || Ok(v))
}

/// Returns the version of the library packed as `(MAJOR << 16) | (MINOR << 8) | PATCH`, the
/// same packing as `TENURE_VERSION`. Threads: any.
#[no_mangle]
pub extern "C" fn tenure_version_number() -> u32 {
    status::value(0, || Ok(version_number()))
}

fn version_number() -> u32 {
    let p = |s: &str| s.parse::<u32>().unwrap_or(0);
    (p(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
        | (p(env!("CARGO_PKG_VERSION_MINOR")) << 8)
        | p(env!("CARGO_PKG_VERSION_PATCH"))
}

/// Returns the number of tenure handles alive in this process: created and not yet freed
/// (or consumed, for builders). Leak checks in tests compare it with 0 once everything was
/// freed. Threads: any (a snapshot; other threads may change it at once).
#[no_mangle]
pub extern "C" fn tenure_handles_alive() -> usize {
    status::value(0, || Ok(handle::alive()))
}

/// Reads the core's limit named `name` (the table `tenure::limits::LIMITS`, the same in
/// every language): "name_bytes", "id_bytes", "endpoint_bytes", "client_name_bytes",
/// "detector_name_bytes", "request_bytes", "reply_bytes", "ttl_min_ms", "ttl_max_ms",
/// "timeout_max_ms", "waiters_per_lock", "locks_per_session", "candidates_per_election",
/// "members_per_group", "sessions_per_server", "queued_events". On success `*value_out`
/// receives the value (bytes, milliseconds or a count, as the name says).
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (no limit has that name). Threads: any.
///
/// # Safety
///
/// `name` must be NULL or NUL-terminated; `value_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_limit(
    name: *const c_char,
    value_out: *mut u64,
) -> status::tenure_status {
    status::status(|| {
        let o = util::out(value_out, "value_out")?;
        // SAFETY: the caller's contract.
        let name = unsafe { util::cstr(name, "name") }?;
        let l = tenure::limits::get(name).ok_or_else(|| {
            status::fail(
                status::tenure_status::InvalidArgument,
                format!("no limit is named {name:?}"),
            )
        })?;
        // SAFETY: checked non-NULL.
        unsafe { o.write(l.value) };
        Ok(())
    })
}

pub use event::bench_adapter;
