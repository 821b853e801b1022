//! Candidacies and observations of elections.

use crate::error::conv;
use crate::events::JsCallback;
use crate::events::{MasterStateValue, Relay};
use crate::pool::{pending_promise, ready_promise};
use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use parking_lot::Mutex;
use tenure::client::{Election, MasterState, Observer};

/// A candidacy (private; wrapped by `Election` in the TypeScript layer).
#[napi]
pub struct NativeElection {
    inner: Mutex<Option<Election>>,
    /// The master cache as it was when the candidacy was given up.
    last: Mutex<MasterState>,
    name: String,
}

impl NativeElection {
    pub(crate) fn new(e: Election) -> Self {
        NativeElection {
            name: e.name().to_string(),
            last: Mutex::new(e.master()),
            inner: Mutex::new(Some(e)),
        }
    }
}

#[napi]
impl NativeElection {
    /// The election's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The master as last told, and its epoch (as of the resignation, once resigned).
    #[napi(getter, ts_return_type = "NativeMasterState")]
    pub fn master(&self) -> MasterStateValue {
        MasterStateValue(match self.inner.lock().as_ref() {
            Some(e) => e.master(),
            None => self.last.lock().clone(),
        })
    }

    /// True while this candidate is the master by the client's own deadline.
    #[napi(getter)]
    pub fn is_master(&self) -> bool {
        self.inner.lock().as_ref().is_some_and(|e| e.is_master())
    }

    /// The epoch at which this candidate became master, while it is master.
    #[napi(getter)]
    pub fn master_epoch(&self) -> Option<u64> {
        self.inner.lock().as_ref().and_then(|e| e.master_epoch())
    }

    /// Delivers every master change to `callback`, first the current master if one is known.
    #[napi]
    pub fn subscribe(&self, callback: JsCallback<'_>) -> napi::Result<()> {
        let relay = Relay::new(callback)?;
        if let Some(e) = self.inner.lock().as_ref() {
            e.on_master_change(relay.callback());
        }
        Ok(())
    }

    /// Withdraws the candidacy. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn resign<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let e = self.inner.lock().take();
        if let Some(e) = &e {
            *self.last.lock() = e.master();
        }
        match e {
            Some(e) => pending_promise(env, e.resign_start(), |r| r.map_err(conv)),
            None => ready_promise(env, Ok(())),
        }
    }
}

/// An observation of an election (private; wrapped by `Observer` in the TypeScript layer).
#[napi]
pub struct NativeObserver {
    inner: Mutex<Option<Observer>>,
    /// The master cache as it was when the observation was closed.
    last: Mutex<MasterState>,
}

impl NativeObserver {
    pub(crate) fn new(o: Observer) -> Self {
        NativeObserver {
            last: Mutex::new(o.master()),
            inner: Mutex::new(Some(o)),
        }
    }
}

#[napi]
impl NativeObserver {
    /// The master as last told, and its epoch (as of the close, once closed).
    #[napi(getter, ts_return_type = "NativeMasterState")]
    pub fn master(&self) -> MasterStateValue {
        MasterStateValue(match self.inner.lock().as_ref() {
            Some(o) => o.master(),
            None => self.last.lock().clone(),
        })
    }

    /// Delivers every master change to `callback`, first the current master if one is known.
    #[napi]
    pub fn subscribe(&self, callback: JsCallback<'_>) -> napi::Result<()> {
        let relay = Relay::new(callback)?;
        if let Some(o) = self.inner.lock().as_ref() {
            o.on_master_change(relay.callback());
        }
        Ok(())
    }

    /// Stops the observation. Idempotent.
    #[napi]
    pub fn close(&self) {
        let o = self.inner.lock().take();
        if let Some(o) = o {
            *self.last.lock() = o.master();
        }
    }
}
