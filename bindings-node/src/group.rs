//! Group memberships and watches.

use crate::error::conv;
use crate::events::{JsCallback, ViewValue};
use crate::promises::{pending_promise, ready_promise};
use crate::watch::Watch;
use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use tenure::client::{GroupWatch, Membership, WatchHandle};

/// Membership in a group (private; wrapped by `Membership` in the TypeScript layer).
#[napi]
pub struct NativeMembership {
    w: Watch<Membership>,
    group: String,
}

impl NativeMembership {
    pub(crate) fn new(m: Membership) -> Self {
        NativeMembership {
            group: WatchHandle::name(&m).to_string(),
            w: Watch::new(m),
        }
    }
}

#[napi]
impl NativeMembership {
    /// The group's name.
    #[napi(getter)]
    pub fn group(&self) -> String {
        self.group.clone()
    }

    /// The view as last told (as of leaving, once left).
    #[napi(getter, ts_return_type = "NativeView")]
    pub fn view(&self) -> ViewValue {
        ViewValue(self.w.value())
    }

    /// True while this process is a member in the last view it was told of.
    #[napi(getter)]
    pub fn is_member(&self) -> bool {
        self.w.with(|m| m.is_member()).unwrap_or(false)
    }

    /// True while this process is a full member.
    #[napi(getter)]
    pub fn is_full(&self) -> bool {
        self.w.with(|m| m.is_full()).unwrap_or(false)
    }

    /// Delivers view changes, promotions and removals, first the current view.
    #[napi]
    pub fn subscribe(&self, callback: JsCallback<'_>) -> napi::Result<()> {
        self.w.subscribe(callback)
    }

    /// Reports the application's evaluation of this member.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn report_check<'env>(&self, env: &'env Env, ok: bool) -> napi::Result<Object<'env>> {
        // The core's pending report is started while the membership lasts, then waited
        // for without it.
        match self.w.with(|m| m.report_check_start(ok)) {
            Some(started) => pending_promise(env, started, |r| r.map_err(conv)),
            None => ready_promise::<()>(
                env,
                Err(crate::error::coded(
                    "ERR_TENURE_CLOSED",
                    "the membership has ended",
                )),
            ),
        }
    }

    /// Leaves the group. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn leave<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        self.w.give_up(env, |m| m.leave_start())
    }
}

crate::watch::native_watch!(
    /// A watch on a group (private; wrapped by `GroupWatch` in the TypeScript layer).
    NativeGroupWatch,
    GroupWatch,
    view,
    ViewValue,
    "NativeView"
);
