//! Group membership: `tenure_membership`, group watches and replacement.

use crate::client::{
    client_of, publish, subscribe_named, tenure_client, tenure_subscription, SubObj,
};
use crate::event::{tenure_callback, OwnedCallback};
use crate::handle::{self, CHandle, Kind};
use crate::status::{fail, status, tenure_status, unit, value, R};
use crate::util::{cstr, millis, out};
use parking_lot::Mutex;
use std::ffi::c_char;
use std::sync::Arc;
use tenure::client::{JoinOptions, Membership};

/// Membership of this client in a group (`tenure_client_join`). Opaque.
pub struct tenure_membership {
    _private: [u8; 0],
}

impl CHandle for tenure_membership {
    type Obj = std::sync::Arc<MembershipObj>;
    const KIND: Kind = Kind::Membership;
}

/// The object behind a `tenure_membership`.
pub(crate) struct MembershipObj {
    membership: Mutex<Option<Membership>>,
}

fn membership_of(m: *const tenure_membership) -> R<Arc<MembershipObj>> {
    handle::with(m, |m| m.clone())
}

/// Joins `group` as probationary member `member_id` (unique in the group, 1 to 256 bytes).
/// The service promotes it to full member once it has had a live session with no missed
/// heartbeat for `probation_ms` milliseconds (at most a day) and, when `needs_check` is
/// true, `tenure_membership_report_check` passed; it is removed when its session ends.
///
/// `on_view_change` is taken over whatever the result (see `tenure_callback`); its `call` may
/// be NULL. It receives "view_changed", "member_promoted" and "member_removed" events of the
/// group, in view order, first the current view. On success `*membership_out` receives the
/// membership, which the caller frees with `tenure_membership_free` (freeing leaves).
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`,
/// `TENURE_STATUS_REJECTED` (the id is taken), `TENURE_STATUS_CONNECTION_FAILED`. Threads:
/// any; blocks for the service's answer.
///
/// # Safety
///
/// Strings must be NULL or NUL-terminated; `membership_out` NULL or writable;
/// `on_view_change` must follow `tenure_callback`'s rules.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_join(
    client: *mut tenure_client,
    group: *const c_char,
    member_id: *const c_char,
    probation_ms: u64,
    needs_check: bool,
    on_view_change: tenure_callback,
    membership_out: *mut *mut tenure_membership,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(on_view_change);
        let o = out(membership_out, "membership_out")?;
        // SAFETY: the caller's contract.
        let (g, id) = unsafe { (cstr(group, "group")?, cstr(member_id, "member_id")?) };
        let c = client_of(client)?;
        let mut opts = JoinOptions::new(id, millis(probation_ms));
        opts.needs_check = needs_check;
        let m = c.join(g, opts)?;
        if let Some(f) = cb.into_rust() {
            m.on_view_change(f);
        }
        let obj = MembershipObj {
            membership: Mutex::new(Some(m)),
        };
        publish(Arc::new(obj), 0, o)
    })
}

/// Reports the application's evaluation of this (probationary) member: `ok` true lets the
/// service promote it once its probation has passed; false removes it.
///
/// Errors: `TENURE_STATUS_CLOSED` (left already, or the client is closed),
/// `TENURE_STATUS_REJECTED`, `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`,
/// `TENURE_STATUS_CONNECTION_FAILED`. Threads: any; blocks for the service's answer.
///
/// # Safety
///
/// None beyond passing a membership handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_membership_report_check(
    membership: *mut tenure_membership,
    ok: bool,
) -> tenure_status {
    status(|| {
        let m = membership_of(membership)?;
        let g = m.membership.lock();
        let core = g
            .as_ref()
            .ok_or_else(|| fail(tenure_status::Closed, "the membership was left"))?;
        // The membership's own mutex is held while waiting: it serialises calls on this one
        // handle only (the handle table's slot is not locked).
        core.report_check(ok).map_err(Into::into)
    })
}

/// Leaves the group and waits for the service to confirm (at most the session TTL). The
/// view-change callback's registration ends (waiting for a running `call` and for `drop`,
/// except from inside that `call`). The handle stays valid and must still be freed; leaving
/// twice is a no-op.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any,
/// including a tenure callback.
///
/// # Safety
///
/// None beyond passing a membership handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_membership_leave(
    membership: *mut tenure_membership,
) -> tenure_status {
    status(|| {
        let m = membership_of(membership)?;
        let taken = m.membership.lock().take();
        match taken {
            Some(core) => core.leave().map_err(Into::into),
            None => Ok(()),
        }
    })
}

/// True while this process is a member of the group (probationary or full) in the last view
/// it was told of, and its session's lease is valid. False for a NULL or invalid handle
/// (which records a last error). Threads: any.
#[no_mangle]
pub extern "C" fn tenure_membership_is_member(membership: *const tenure_membership) -> bool {
    value(false, || {
        let m = membership_of(membership)?;
        let v = m.membership.lock().as_ref().is_some_and(|m| m.is_member());
        Ok(v)
    })
}

/// True while this process is a full member (see `tenure_membership_is_member`). Threads: any.
#[no_mangle]
pub extern "C" fn tenure_membership_is_full(membership: *const tenure_membership) -> bool {
    value(false, || {
        let m = membership_of(membership)?;
        let v = m.membership.lock().as_ref().is_some_and(|m| m.is_full());
        Ok(v)
    })
}

/// Reads the number of the group's view as last told (0 before the first view, or after
/// leaving).
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`; `*view_out`
/// written only on success. Threads: any.
///
/// # Safety
///
/// `view_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_membership_view(
    membership: *const tenure_membership,
    view_out: *mut u64,
) -> tenure_status {
    status(|| {
        let o = out(view_out, "view_out")?;
        let m = membership_of(membership)?;
        let v = m.membership.lock().as_ref().map_or(0, |m| m.view().number);
        // SAFETY: checked non-NULL.
        unsafe { o.write(v) };
        Ok(())
    })
}

/// Leaves the group (without waiting for the service's answer), ends the view-change
/// callback's registration (waiting for a running `call` and for `drop`, except from inside
/// that `call`) and frees the handle. NULL, and a membership freed already, are ignored (the
/// latter records a last error). Threads: any, including a tenure callback.
///
/// # Safety
///
/// None beyond passing a membership handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_membership_free(membership: *mut tenure_membership) {
    unit(|| {
        if !membership.is_null() {
            let m = handle::take(membership)?;
            let core = m.membership.lock().take();
            drop(core);
        }
        Ok(())
    })
}

/// Watches `group`'s views without being a member: `on_view_change` receives
/// "view_changed", "member_promoted" and "member_removed" events, in view order, first the
/// current view.
///
/// `on_view_change` is taken over whatever the result; its `call` must not be NULL. On success
/// `*sub_out` receives the subscription, which the caller frees with
/// `tenure_subscription_free`. Errors: `TENURE_STATUS_NULL_ARGUMENT` (also for a NULL
/// `on_view_change.call`), `TENURE_STATUS_INVALID_UTF8`, `TENURE_STATUS_INVALID_ARGUMENT`,
/// `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`, `TENURE_STATUS_CONNECTION_FAILED`.
/// Threads: any; blocks for the service's answer.
///
/// # Safety
///
/// `group` must be NULL or NUL-terminated; `sub_out` NULL or writable; `on_view_change` must
/// follow `tenure_callback`'s rules.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_watch_group(
    client: *mut tenure_client,
    group: *const c_char,
    on_view_change: tenure_callback,
    sub_out: *mut *mut tenure_subscription,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe {
        subscribe_named(
            client,
            group,
            "group",
            on_view_change,
            "on_view_change",
            sub_out,
            |c, name| c.watch_group(name),
            SubObj::Watch,
        )
    }
}

/// Removes the failed full member `failed` from `group` and promotes the probationary member
/// `probationary` in a single view change, so the group never runs with fewer full members.
/// On success `*view_out` receives the number of the new view.
///
/// Errors: `TENURE_STATUS_REJECTED` (not a full member, not probationary...),
/// `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`,
/// `TENURE_STATUS_CONNECTION_FAILED`. Threads: any; blocks for the service's answer.
///
/// # Safety
///
/// Strings must be NULL or NUL-terminated; `view_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_replace(
    client: *mut tenure_client,
    group: *const c_char,
    failed: *const c_char,
    probationary: *const c_char,
    view_out: *mut u64,
) -> tenure_status {
    status(|| {
        let o = out(view_out, "view_out")?;
        // SAFETY: the caller's contract.
        let (g, f, p) = unsafe {
            (
                cstr(group, "group")?,
                cstr(failed, "failed")?,
                cstr(probationary, "probationary")?,
            )
        };
        let v = client_of(client)?.replace(g, f, p)?;
        // SAFETY: checked non-NULL.
        unsafe { o.write(v.number) };
        Ok(())
    })
}
