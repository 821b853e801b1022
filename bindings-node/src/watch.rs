//! What the native election and group handles share: the core handle kept until it is given
//! up, the value it was last told (still readable after that), and the subscription of its
//! changes to a JavaScript listener. Each class adds only what is its own.

use crate::error::conv;
use crate::events::{JsCallback, Relay};
use crate::promises::{pending_promise, ready_promise};
use napi::bindgen_prelude::Object;
use napi::Env;
use parking_lot::Mutex;
use tenure::client::WatchHandle;

/// A core handle as a native object holds it.
pub struct Watch<H: WatchHandle> {
    inner: Mutex<Option<H>>,
    /// The value when the handle was given up.
    last: Mutex<H::Value>,
}

impl<H: WatchHandle> Watch<H> {
    /// Holds `h`.
    pub fn new(h: H) -> Watch<H> {
        Watch {
            last: Mutex::new(h.value()),
            inner: Mutex::new(Some(h)),
        }
    }

    /// The value as last told.
    pub fn value(&self) -> H::Value {
        match &*self.inner.lock() {
            Some(h) => h.value(),
            None => self.last.lock().clone(),
        }
    }

    /// `f` of the handle while it is not given up.
    pub fn with<R>(&self, f: impl FnOnce(&H) -> R) -> Option<R> {
        self.inner.lock().as_ref().map(f)
    }

    /// Delivers every change to `callback`, first the current value when one is known.
    pub fn subscribe(&self, callback: JsCallback<'_>) -> napi::Result<()> {
        let relay = Relay::new(callback)?;
        if let Some(h) = &*self.inner.lock() {
            h.on_change(relay.callback());
        }
        Ok(())
    }

    /// Takes the handle out, keeping its value.
    pub fn take(&self) -> Option<H> {
        let h = self.inner.lock().take()?;
        *self.last.lock() = h.value();
        Some(h)
    }

    /// Gives the handle up with the core's pending call `start` (resign, leave); a promise
    /// of its confirmation. Idempotent: later calls resolve at once.
    pub fn give_up<'env>(
        &self,
        env: &'env Env,
        start: impl FnOnce(H) -> tenure::Result<tenure::Pending<()>>,
    ) -> napi::Result<Object<'env>> {
        match self.take() {
            Some(h) => pending_promise(env, start(h), |r| r.map_err(conv)),
            None => ready_promise(env, Ok(())),
        }
    }
}

/// Defines a native watch class (`NativeObserver`, `NativeGroupWatch`): the handle, its value
/// getter `$getter` (converted with `$conv`, typed `$ts` in TypeScript), `subscribe` and
/// `close`. The two classes differ in nothing else.
macro_rules! native_watch {
    ($(#[$doc:meta])* $name:ident, $core:ty, $getter:ident, $conv:ident, $ts:tt) => {
        $(#[$doc])*
        #[napi_derive::napi]
        pub struct $name {
            w: $crate::watch::Watch<$core>,
        }

        impl $name {
            pub(crate) fn new(h: $core) -> Self {
                $name {
                    w: $crate::watch::Watch::new(h),
                }
            }
        }

        #[napi_derive::napi]
        impl $name {
            /// The value as last told (as of the close, once closed).
            #[napi(getter, ts_return_type = $ts)]
            pub fn $getter(&self) -> $conv {
                $conv(self.w.value())
            }

            /// Delivers every change to `callback`, first the current value when one is
            /// known.
            #[napi]
            pub fn subscribe(
                &self,
                callback: $crate::events::JsCallback<'_>,
            ) -> napi::Result<()> {
                self.w.subscribe(callback)
            }

            /// Stops the events. Idempotent.
            #[napi]
            pub fn close(&self) {
                drop(self.w.take());
            }
        }
    };
}
pub(crate) use native_watch;
