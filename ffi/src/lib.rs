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

pub use event::bench_adapter;
