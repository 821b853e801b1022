//! Candidacies and observations of elections.

use crate::events::{JsCallback, MasterStateValue};
use crate::watch::Watch;
use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use tenure::client::{Election, Observer, WatchHandle};

/// A candidacy (private; wrapped by `Election` in the TypeScript layer).
#[napi]
pub struct NativeElection {
    w: Watch<Election>,
    name: String,
}

impl NativeElection {
    pub(crate) fn new(e: Election) -> Self {
        NativeElection {
            name: WatchHandle::name(&e).to_string(),
            w: Watch::new(e),
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
        MasterStateValue(self.w.value())
    }

    /// True while this candidate is the master by the client's own deadline.
    #[napi(getter)]
    pub fn is_master(&self) -> bool {
        self.w.with(|e| e.is_master()).unwrap_or(false)
    }

    /// The epoch at which this candidate became master, while it is master.
    #[napi(getter)]
    pub fn master_epoch(&self) -> Option<u64> {
        self.w.with(|e| e.master_epoch()).flatten()
    }

    /// Delivers every master change to `callback`, first the current master if one is known.
    #[napi]
    pub fn subscribe(&self, callback: JsCallback<'_>) -> napi::Result<()> {
        self.w.subscribe(callback)
    }

    /// Withdraws the candidacy. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn resign<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        self.w.give_up(env, |e| e.resign_start())
    }
}

crate::watch::native_watch!(
    /// An observation of an election (private; wrapped by `Observer` in the TypeScript layer).
    NativeObserver,
    Observer,
    master,
    MasterStateValue,
    "NativeMasterState"
);
