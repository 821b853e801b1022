//! What `Election`, `Observer`, `Membership` and `GroupWatch` share: a core handle kept
//! until it is given up, the value it was last told (still readable after that), and the
//! callbacks registered on it. Each class adds only what is its own (its getters, and the
//! call that gives it up: resign, leave or close).

use crate::client::{ClientShared, Subscription};
use crate::dispatch::Regs;
use crate::errors::IntoPy;
use crate::pending;
use crate::util;
use parking_lot::Mutex;
use pyo3::prelude::*;
use std::sync::Arc;
use tenure::client::WatchHandle as CoreHandle;

/// A core handle as a Python object holds it.
pub(crate) struct Watch<H: CoreHandle> {
    /// The Python method that registers callbacks, for log messages.
    on_change: &'static str,
    inner: Mutex<Option<H>>,
    /// The value when the handle was given up.
    last: Mutex<H::Value>,
    regs: Regs,
    client: Arc<ClientShared>,
}

impl<H: CoreHandle> Watch<H> {
    /// `on_change` names the Python method that registers callbacks, for log messages.
    pub(crate) fn new(client: Arc<ClientShared>, h: H, on_change: &'static str) -> Watch<H> {
        Watch {
            on_change,
            last: Mutex::new(h.value()),
            inner: Mutex::new(Some(h)),
            regs: Regs::default(),
            client,
        }
    }

    /// Registers `cb` on the client's dispatcher for this handle's changes.
    pub(crate) fn add_callback(&self, cb: Py<PyAny>) -> PyResult<Subscription> {
        let (reg, handler) = self.client.register(cb, self.on_change)?;
        if let Some(h) = &*self.inner.lock() {
            h.on_change(handler);
        }
        self.regs.push(reg.clone());
        Ok(Subscription::attached(reg))
    }

    /// The Python `on_*_change(callback)` method.
    pub(crate) fn on_change(&self, callback: Bound<'_, PyAny>) -> PyResult<Subscription> {
        let cb = util::required_callback("callback", callback)?;
        self.add_callback(cb)
    }

    /// The value as last told.
    pub(crate) fn value(&self) -> H::Value {
        match &*self.inner.lock() {
            Some(h) => h.value(),
            None => self.last.lock().clone(),
        }
    }

    /// `f` of the handle while it is not given up.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&H) -> R) -> Option<R> {
        self.inner.lock().as_ref().map(f)
    }

    /// Stops the callbacks and takes the handle out, keeping its value.
    fn take(&self, py: Python<'_>) -> Option<H> {
        self.regs.close_all(py);
        let h = self.inner.lock().take()?;
        *self.last.lock() = h.value();
        Some(h)
    }

    /// Gives the handle up with the core's pending call `start` (resign, leave), or at once
    /// with `end` (`None`: an observation or watch, which only stops). Its callbacks stop
    /// now. Idempotent: later calls are done at once.
    pub(crate) fn give_up_start(
        &self,
        py: Python<'_>,
        what: &'static str,
        start: impl FnOnce(H) -> Option<tenure::Result<tenure::Pending<()>>>,
    ) -> pending::Pending {
        let finish = |py: Python<'_>, r: tenure::Result<()>| r.py_err(py).map(|()| py.None());
        match self.take(py).and_then(start) {
            Some(started) => pending::start(what, started, finish),
            None => pending::ready(what, Ok(()), finish),
        }
    }
}
