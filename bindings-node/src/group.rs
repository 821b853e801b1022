//! Group memberships and watches.

use crate::error::conv;
use crate::events::JsCallback;
use crate::events::{Relay, ViewValue};
use crate::pool::{pending_promise, ready_promise};
use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use parking_lot::Mutex;
use std::sync::Arc;
use tenure::client::{GroupWatch, Membership, View};

/// Membership in a group (private; wrapped by `Membership` in the TypeScript layer).
#[napi]
pub struct NativeMembership {
    /// Shared with a `report_check` in flight, so that the getters never wait for one.
    inner: Mutex<Option<Arc<Membership>>>,
    /// The view as it was when the membership was left.
    last: Mutex<View>,
    group: String,
}

impl NativeMembership {
    pub(crate) fn new(m: Membership) -> Self {
        NativeMembership {
            group: m.group().to_string(),
            last: Mutex::new(m.view()),
            inner: Mutex::new(Some(Arc::new(m))),
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
        ViewValue(match self.inner.lock().as_ref() {
            Some(m) => m.view(),
            None => self.last.lock().clone(),
        })
    }

    /// True while this process is a member in the last view it was told of.
    #[napi(getter)]
    pub fn is_member(&self) -> bool {
        self.inner.lock().as_ref().is_some_and(|m| m.is_member())
    }

    /// True while this process is a full member.
    #[napi(getter)]
    pub fn is_full(&self) -> bool {
        self.inner.lock().as_ref().is_some_and(|m| m.is_full())
    }

    /// Delivers view changes, promotions and removals, first the current view.
    #[napi]
    pub fn subscribe(&self, callback: JsCallback<'_>) -> napi::Result<()> {
        let relay = Relay::new(callback)?;
        if let Some(m) = self.inner.lock().as_ref() {
            m.on_view_change(relay.callback());
        }
        Ok(())
    }

    /// Reports the application's evaluation of this member.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn report_check<'env>(&self, env: &'env Env, ok: bool) -> napi::Result<Object<'env>> {
        let m = self.inner.lock().clone();
        match m {
            Some(m) => pending_promise(env, m.report_check_start(ok), |r| r.map_err(conv)),
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
        let m = self.inner.lock().take();
        if let Some(m) = &m {
            *self.last.lock() = m.view();
        }
        match m.map(Arc::try_unwrap) {
            Some(Ok(m)) => pending_promise(env, m.leave_start(), |r| r.map_err(conv)),
            // A report_check is being started: the membership is left (without waiting for
            // the confirmation) when it drops the last reference.
            Some(Err(_shared)) => ready_promise(env, Ok(())),
            None => ready_promise(env, Ok(())),
        }
    }
}

/// A watch on a group (private; wrapped by `GroupWatch` in the TypeScript layer).
#[napi]
pub struct NativeGroupWatch {
    inner: Mutex<Option<GroupWatch>>,
    /// The view as it was when the watch was closed.
    last: Mutex<View>,
}

impl NativeGroupWatch {
    pub(crate) fn new(w: GroupWatch) -> Self {
        NativeGroupWatch {
            last: Mutex::new(w.view()),
            inner: Mutex::new(Some(w)),
        }
    }
}

#[napi]
impl NativeGroupWatch {
    /// The view as last told (as of the close, once closed).
    #[napi(getter, ts_return_type = "NativeView")]
    pub fn view(&self) -> ViewValue {
        ViewValue(match self.inner.lock().as_ref() {
            Some(w) => w.view(),
            None => self.last.lock().clone(),
        })
    }

    /// Delivers view changes, promotions and removals, first the current view.
    #[napi]
    pub fn subscribe(&self, callback: JsCallback<'_>) -> napi::Result<()> {
        let relay = Relay::new(callback)?;
        if let Some(w) = self.inner.lock().as_ref() {
            w.on_view_change(relay.callback());
        }
        Ok(())
    }

    /// Stops watching. Idempotent.
    #[napi]
    pub fn close(&self) {
        let w = self.inner.lock().take();
        if let Some(w) = w {
            *self.last.lock() = w.view();
        }
    }
}
