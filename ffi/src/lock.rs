//! Locks: `tenure_client_lock`, `tenure_client_try_lock` and `tenure_lock`.

use crate::client::{client_of, publish, tenure_client};
use crate::event::{tenure_callback, tenure_lost_reason, OwnedCallback};
use crate::handle::{self, CHandle, Kind};
use crate::status::{fail, status, tenure_status, value, R};
use crate::util::{cstr, millis, out, write_str};
use std::ffi::c_char;

/// A lock granted to a client, with its fencing token. Opaque.
pub struct tenure_lock {
    _private: [u8; 0],
}

impl CHandle for tenure_lock {
    type Obj = LockObj;
    const KIND: Kind = Kind::Lock;
}

/// The object behind a `tenure_lock`, kept in its handle's slot: calls that do not block
/// (`is_held`, the name) run with the slot locked; `release` takes the core lock out first.
pub(crate) struct LockObj {
    name: String,
    /// The core lock until it is released or the handle freed.
    lock: Option<tenure::Lock>,
}

fn with_lock<T>(l: *const tenure_lock, f: impl FnOnce(&mut LockObj) -> T) -> R<T> {
    handle::with(l, |l| f(l))
}

/// Wraps a granted core lock into a handle, registering `cb` for its loss.
fn publish_lock(lock: tenure::Lock, cb: OwnedCallback, o: *mut *mut tenure_lock) -> R<()> {
    if let Some(f) = cb.into_rust() {
        lock.on_lost(f);
    }
    let token = lock.fencing_token();
    let obj = LockObj {
        name: lock.name().to_string(),
        lock: Some(lock),
    };
    publish(obj, token, o)
}

/// Waits up to `timeout_ms` milliseconds for the lock `name`; waiters are served in arrival
/// order. On success `*lock_out` receives the held lock, which the caller frees with
/// `tenure_lock_free` (freeing releases it).
///
/// `on_lost` is taken over whatever the result (see `tenure_callback`); its `call` may be
/// NULL for no callback. When the lock is lost (the session expired, an administrator
/// revoked it, the service lost its state, the client was closed), `call` receives one
/// "lock_lost" event; it fires no later than the client's lease deadline, so before the
/// service can grant the lock to anyone else. Releasing the lock is not a loss. The
/// registration ends when the lock is released or freed.
///
/// Errors: `TENURE_STATUS_TIMEOUT` when the time passes (nothing is then held),
/// `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (empty or longer than 1024 bytes, a timeout longer than a
/// year), `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`,
/// `TENURE_STATUS_SESSION_EXPIRED`, `TENURE_STATUS_DATA_LOST`, `TENURE_STATUS_LIMIT`.
/// Threads: any; blocks the calling thread.
///
/// # Safety
///
/// `name` must be NULL or a NUL-terminated string; `lock_out` NULL or writable; `on_lost`
/// must follow `tenure_callback`'s rules.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_lock(
    client: *mut tenure_client,
    name: *const c_char,
    timeout_ms: u64,
    on_lost: tenure_callback,
    lock_out: *mut *mut tenure_lock,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(on_lost);
        let o = out(lock_out, "lock_out")?;
        // SAFETY: the caller's contract.
        let n = unsafe { cstr(name, "name") }?;
        let c = client_of(client)?;
        let lock = c.lock(n, millis(timeout_ms))?;
        publish_lock(lock, cb, o)
    })
}

/// Takes the lock `name` if no other session holds it, without waiting for it (it waits for
/// the service's answer). Returns `TENURE_STATUS_LOCK_HELD` when another session holds it.
/// Otherwise as `tenure_client_lock`.
///
/// # Safety
///
/// As `tenure_client_lock`.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_try_lock(
    client: *mut tenure_client,
    name: *const c_char,
    on_lost: tenure_callback,
    lock_out: *mut *mut tenure_lock,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(on_lost);
        let o = out(lock_out, "lock_out")?;
        // SAFETY: the caller's contract.
        let n = unsafe { cstr(name, "name") }?;
        let c = client_of(client)?;
        match c.try_lock(n)? {
            Some(lock) => publish_lock(lock, cb, o),
            None => Err(fail(
                tenure_status::LockHeld,
                format!("lock {n:?} is held by another session"),
            )),
        }
    })
}

/// Returns the fencing token of the grant: larger than every token granted before it, for
/// any lock of the service. Pass it to the resources you write and have them refuse tokens
/// older than the newest they have seen. It stays readable after the lock is lost or
/// released. Returns 0 (never a valid token) for a NULL or invalid handle, and records a last
/// error. Threads: any. Lock-free.
#[no_mangle]
pub extern "C" fn tenure_lock_fencing_token(lock: *const tenure_lock) -> u64 {
    value(0, || {
        handle::fast(lock).ok_or_else(|| handle::not_live(lock))
    })
}

/// True while the lock is held: not released, not lost, and the session's lease valid by the
/// client's own deadline. It turns false at the deadline with no message needed, before the
/// service could grant the lock to anyone else. False for a NULL or invalid handle (which
/// records a last error). Threads: any.
#[no_mangle]
pub extern "C" fn tenure_lock_is_held(lock: *const tenure_lock) -> bool {
    value(false, || {
        with_lock(lock, |l| l.lock.as_ref().is_some_and(|l| l.is_held()))
    })
}

/// Writes the lock's name into `buf`, NUL-terminated; `*out_n` receives its length without
/// the NUL. When `len` is too small nothing is copied, `*out_n` receives the length needed
/// and `TENURE_STATUS_BUFFER_TOO_SMALL` is returned.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `buf` must be NULL or point to `len` writable bytes; `out_n` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_lock_name(
    lock: *const tenure_lock,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tenure_status {
    status(|| {
        let name = with_lock(lock, |l| l.name.clone())?;
        // SAFETY: the caller's contract.
        unsafe { write_str(&name, buf, len, out_n) }
    })
}

/// Reads why the lock was lost: `TENURE_LOST_REASON_NONE` while it was not lost (also after
/// a release).
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`; `*reason_out`
/// written only on success. Threads: any.
///
/// # Safety
///
/// `reason_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_lock_lost_reason(
    lock: *const tenure_lock,
    reason_out: *mut tenure_lost_reason,
) -> tenure_status {
    status(|| {
        let o = out(reason_out, "reason_out")?;
        let r = with_lock(lock, |l| {
            l.lock
                .as_ref()
                .and_then(|l| l.lost_reason())
                .map_or(tenure_lost_reason::None, Into::into)
        })?;
        // SAFETY: checked non-NULL.
        unsafe { o.write(r) };
        Ok(())
    })
}

/// Releases the lock and waits for the service to confirm (at most the session TTL). The
/// lost callback's registration ends (see `tenure_callback`: this waits for a running `call`
/// and for `drop`, except from inside that `call`). The handle stays valid, with
/// `tenure_lock_is_held` false, and must still be freed.
///
/// Errors: `TENURE_STATUS_NOT_HELD` when the lock was lost before, or released already;
/// `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any, including a
/// tenure callback.
///
/// # Safety
///
/// None beyond passing a lock handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_lock_release(lock: *mut tenure_lock) -> tenure_status {
    status(|| {
        let (taken, name) = with_lock(lock, |l| (l.lock.take(), l.name.clone()))?;
        match taken {
            Some(core) => core.release().map_err(Into::into),
            None => Err(fail(
                tenure_status::NotHeld,
                format!("lock {name:?} was released already"),
            )),
        }
    })
}

/// Releases the lock if it is still held (without waiting for the service's answer), ends
/// its lost callback's registration (waiting for a running `call` and for `drop`, except
/// from inside that `call`) and frees the handle. NULL, and a lock freed already, are ignored
/// (the latter records a last error). Threads: any, including a tenure callback.
///
/// # Safety
///
/// None beyond passing a lock handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_lock_free(lock: *mut tenure_lock) {
    handle::free(lock);
}

/// Administrative: releases the lock `name` whoever holds it. The holder is told (its lock is
/// lost with reason `TENURE_LOST_REASON_RELEASED`) and the next waiter is granted it. Needs no
/// session of its own.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`,
/// `TENURE_STATUS_REJECTED`, `TENURE_STATUS_CONNECTION_FAILED`. Threads: any; blocks for the
/// service's answer.
///
/// # Safety
///
/// `name` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_revoke(
    client: *mut tenure_client,
    name: *const c_char,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { cstr(name, "name") }?;
        client_of(client)?.revoke(n).map_err(Into::into)
    })
}
