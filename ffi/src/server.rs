//! The embedded server: `tenure_server_builder` and `tenure_server`.

use crate::handle::{self, CHandle, Kind};
use crate::status::{fail, status, tenure_status, R};
use crate::util::{cstr, out, split_u128, write_str};
use std::ffi::c_char;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Configuration of an embedded server, built before `tenure_server_start`. Opaque.
pub struct tenure_server_builder {
    _private: [u8; 0],
}

impl CHandle for tenure_server_builder {
    type Obj = tenure::ServerConfig;
    const KIND: Kind = Kind::ServerBuilder;
}

/// A running embedded tenure server. Opaque.
pub struct tenure_server {
    _private: [u8; 0],
}

impl CHandle for tenure_server {
    type Obj = ServerObj;
    const KIND: Kind = Kind::Server;
}

/// How durable the server's state is (`tenure_server_builder_set_durability()`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tenure_durability {
    /// A change is acknowledged only after it is on disk (fdatasync). The default.
    Fsync = 0,
    /// Nothing is written to disk; a restart begins a new incarnation (tests, caches).
    None = 1,
}

/// The object behind a `tenure_server`.
pub(crate) struct ServerObj {
    addr: SocketAddr,
    incarnation: u128,
    server: Option<tenure::Server>,
}

fn builder_with<T>(
    b: *mut tenure_server_builder,
    f: impl FnOnce(&mut tenure::ServerConfig) -> R<T>,
) -> R<T> {
    handle::with(b, |c| f(c))?
}

/// Creates a server builder with the defaults: listen on `127.0.0.1:7411`, data directory
/// `./tenure-data`, durability `TENURE_DURABILITY_FSYNC`.
///
/// On success `*builder_out` receives a builder that the caller owns: pass it to
/// `tenure_server_start` (which consumes it) or free it with `tenure_server_builder_free`.
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`. Threads: any.
///
/// # Safety
///
/// `builder_out` must be NULL or point to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_builder_new(
    builder_out: *mut *mut tenure_server_builder,
) -> tenure_status {
    status(|| {
        let o = out(builder_out, "builder_out")?;
        let h = handle::insert::<tenure_server_builder>(tenure::ServerConfig::default(), 0)?;
        // SAFETY: checked non-NULL.
        unsafe { o.write(h) };
        Ok(())
    })
}

/// Sets the address to listen on, `host:port` (port 0 picks a free port; read it back with
/// `tenure_server_address`). The server listens on loopback unless told otherwise.
///
/// The string is copied. Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (empty), `TENURE_STATUS_INVALID_HANDLE` (the builder was
/// freed or consumed). The address is resolved by `tenure_server_start`. Threads: any, one at
/// a time per builder.
///
/// # Safety
///
/// `addr` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_builder_set_listen(
    builder: *mut tenure_server_builder,
    addr: *const c_char,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let a = unsafe { cstr(addr, "addr") }?;
        if a.is_empty() {
            return Err(fail(tenure_status::InvalidArgument, "addr is empty"));
        }
        builder_with(builder, |c| {
            c.listen = a.to_string();
            Ok(())
        })
    })
}

/// Sets the data directory (created if needed) where the server keeps its write-ahead log,
/// snapshots and incarnation token.
///
/// The string is copied. Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (empty), `TENURE_STATUS_INVALID_HANDLE`. Threads: any,
/// one at a time per builder.
///
/// # Safety
///
/// `dir` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_builder_set_data_dir(
    builder: *mut tenure_server_builder,
    dir: *const c_char,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { cstr(dir, "dir") }?;
        if d.is_empty() {
            return Err(fail(tenure_status::InvalidArgument, "dir is empty"));
        }
        builder_with(builder, |c| {
            c.data_dir = PathBuf::from(d);
            Ok(())
        })
    })
}

/// Sets the durability: a `tenure_durability` value (`TENURE_DURABILITY_FSYNC`, the default,
/// or `TENURE_DURABILITY_NONE`).
///
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` for another value, `TENURE_STATUS_INVALID_HANDLE`.
/// Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_builder_set_durability(
    builder: *mut tenure_server_builder,
    durability: u32,
) -> tenure_status {
    status(|| {
        let d = match durability {
            0 => tenure::Durability::Fsync,
            1 => tenure::Durability::None,
            v => {
                return Err(fail(
                    tenure_status::InvalidArgument,
                    format!("durability {v} is not a tenure_durability value"),
                ))
            }
        };
        builder_with(builder, |c| {
            c.durability = d;
            Ok(())
        })
    })
}

/// Frees a server builder that was not passed to `tenure_server_start`. NULL, and a builder
/// freed or consumed already, are ignored (the latter records a last error). Threads: any.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_builder_free(builder: *mut tenure_server_builder) {
    handle::free(builder);
}

/// Starts an embedded server: opens (or creates) the data directory, recovers the state,
/// binds the listen address and serves on a thread of its own until freed.
///
/// `builder` is consumed by this call whatever its result, unless the result is
/// `TENURE_STATUS_NULL_ARGUMENT` or `TENURE_STATUS_INVALID_HANDLE`; using it afterwards gives
/// `TENURE_STATUS_INVALID_HANDLE`. On success `*server_out` receives a server that the caller
/// owns and frees with `tenure_server_free`.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (an address that does not resolve), `TENURE_STATUS_IO`
/// (the address is in use, the data directory cannot be used). Threads: any.
///
/// # Safety
///
/// `server_out` must be NULL or point to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_start(
    builder: *mut tenure_server_builder,
    server_out: *mut *mut tenure_server,
) -> tenure_status {
    status(|| {
        let o = out(server_out, "server_out")?;
        let cfg = handle::take(builder)?;
        let server = tenure::Server::start(cfg)?;
        let obj = ServerObj {
            addr: server.local_addr(),
            incarnation: server.incarnation(),
            server: Some(server),
        };
        let h = handle::insert::<tenure_server>(obj, 0)?;
        // SAFETY: checked non-NULL.
        unsafe { o.write(h) };
        Ok(())
    })
}

fn server_with<T>(s: *const tenure_server, f: impl FnOnce(&mut ServerObj) -> T) -> R<T> {
    handle::with(s, |s| f(s))
}

/// Writes the address the server listens on (`host:port`, with the real port when 0 was
/// asked) into `buf`, NUL-terminated; `*out_n` receives its length without the NUL.
///
/// When `len` is too small, nothing is copied, `*out_n` receives the length needed and
/// `TENURE_STATUS_BUFFER_TOO_SMALL` is returned (`buf` may be NULL with `len` 0 to ask).
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `buf` must be NULL or point to `len` writable bytes; `out_n` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_address(
    server: *const tenure_server,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tenure_status {
    status(|| {
        let a = server_with(server, |s| s.addr.to_string())?;
        // SAFETY: the caller's contract.
        unsafe { write_str(&a, buf, len, out_n) }
    })
}

/// Reads the server's incarnation token (128 bits, as two halves). Clients see the same value
/// in "connected" events; a new value after a restart means the state was lost.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`; outputs written only
/// on success. Threads: any.
///
/// # Safety
///
/// `high_out` and `low_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_incarnation(
    server: *const tenure_server,
    high_out: *mut u64,
    low_out: *mut u64,
) -> tenure_status {
    status(|| {
        let (h, l) = (out(high_out, "high_out")?, out(low_out, "low_out")?);
        let inc = server_with(server, |s| s.incarnation)?;
        let (hi, lo) = split_u128(inc);
        // SAFETY: checked non-NULL.
        unsafe {
            h.write(hi);
            l.write(lo);
        }
        Ok(())
    })
}

/// Stops serving: commits what was applied, closes every connection and waits for the server
/// thread. Clients keep their sessions until they expire; a server restarted on the same
/// data directory gives each of them a grace period of its TTL. The handle stays valid (its
/// address can still be read) and must still be freed. Stopping twice is a no-op.
///
/// Errors: `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_IO` (the last commit failed).
/// Threads: any; do not call it from a tenure callback of a client of this server (it waits
/// for the server thread).
///
/// # Safety
///
/// None beyond passing a server handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_stop(server: *mut tenure_server) -> tenure_status {
    status(|| {
        let s = server_with(server, |s| s.server.take())?;
        match s {
            Some(s) => s.stop().map_err(Into::into),
            None => Ok(()),
        }
    })
}

/// Stops the server (see `tenure_server_stop`) and frees it. NULL, and a server freed
/// already, are ignored (the latter records a last error). Threads: any.
///
/// # Safety
///
/// None beyond passing a server handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_server_free(server: *mut tenure_server) {
    handle::free(server);
}
