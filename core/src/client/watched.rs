//! What an election or group handle keeps of what the service tells it: a value that comes
//! in numbered versions (an election's master cache by epoch, a group's view by view
//! number), the subscriptions to its changes, and whether the handle's own part (a candidacy,
//! a membership) has ended. One record serves both mechanisms; what differs is said by
//! [`Versioned`]: the version number and the events a change means.

use super::driver::Cmd;
use super::{Client, Held, Shared};
use crate::events::{Event, Handler, Sink, Subscription};
use crate::proto::Request;
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What the election and group handles have in common, for code that serves them all
/// alike (the language bindings): a name, the value as last told (an election's
/// [`MasterState`](super::MasterState), a group's [`View`](super::View)), and callbacks on
/// its changes.
pub trait WatchHandle: Send + Sync + 'static {
    /// The value the handle keeps.
    type Value: Clone + Send + Sync + 'static;
    /// The election's or group's name.
    fn name(&self) -> &str;
    /// The value as last told.
    fn value(&self) -> Self::Value;
    /// Calls `handler` with every later change, first the current value when one is known
    /// (`master_changed` events of an election; `view_changed`, `member_promoted` and
    /// `member_removed` of a group).
    fn on_change(&self, handler: Handler);
}

/// A value the service tells in versions.
pub(crate) trait Versioned: Clone + Default + Send + Sync + 'static {
    /// The version number; strictly increases (0: nothing told yet).
    fn version(&self) -> u64;
    /// The events the change from `prev` to `next` means to the subscribers of `name`.
    fn changes(name: &str, prev: &Self, next: &Self) -> Vec<Event>;
    /// The handle record as the session's answer carries it.
    fn held(w: Arc<Watched<Self>>) -> Held;
    /// The value as the public API shows it.
    type Public: Clone + Send + Sync + 'static;
    /// Converts the value for the public API.
    fn public(&self) -> Self::Public;
}

/// Implements [`WatchHandle`] for handle types that hold `h: Handle<V>`, whose public value
/// is `P` (`$t => P`).
macro_rules! watch_handle {
    ($($t:ty => $p:ty),* $(,)?) => {$(
        impl $crate::client::watched::WatchHandle for $t {
            type Value = $p;
            fn name(&self) -> &str {
                &self.h.shared.name
            }
            fn value(&self) -> Self::Value {
                $crate::client::watched::Versioned::public(&self.h.shared.value())
            }
            fn on_change(&self, handler: $crate::events::Handler) {
                self.h.shared.subscribe(&self.h.client, handler)
            }
        }
    )*};
}
pub(crate) use watch_handle;

/// Shared record of one handle (a campaign or an observation, a membership or a watch),
/// between the handle and the session that updates it.
pub(crate) struct Watched<V> {
    /// Election or group name.
    pub(crate) name: String,
    /// Candidate or member id; `None` for an observer or a watcher.
    pub(crate) id: Option<String>,
    /// The session generation the handle belongs to.
    pub(crate) generation: u64,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    value: V,
    /// The candidacy or membership ended (given up, or its session ended).
    ended: bool,
    sinks: Vec<Sink>,
    subs: Vec<Subscription>,
}

impl<V: Versioned> Watched<V> {
    pub(crate) fn new(name: String, id: Option<String>, generation: u64, value: V) -> Arc<Self> {
        Arc::new(Watched {
            name,
            id,
            generation,
            inner: Mutex::new(Inner {
                value,
                ended: false,
                sinks: vec![],
                subs: vec![],
            }),
        })
    }

    /// Takes a newer value and tells the handle's subscribers what changed; an older or
    /// equal version is ignored.
    pub(crate) fn update(&self, next: &V) {
        let mut g = self.inner.lock();
        if next.version() <= g.value.version() {
            return;
        }
        let events = V::changes(&self.name, &g.value, next);
        g.value = next.clone();
        g.sinks.retain(|s| events.iter().all(|e| s.send(e.clone())));
    }

    /// Forgets the value (the service's state was lost; versions start over).
    pub(crate) fn reset(&self) {
        self.inner.lock().value = V::default();
    }

    /// Marks the handle's own part ended.
    pub(crate) fn end(&self) {
        self.inner.lock().ended = true;
    }

    /// Marks the handle's own part ended and returns `give_up` (the request that withdraws
    /// it), or `None` when it had ended already.
    pub(crate) fn end_with(
        &self,
        give_up: impl FnOnce(&str, String) -> Request,
    ) -> Option<Request> {
        let mut g = self.inner.lock();
        if g.ended {
            return None;
        }
        g.ended = true;
        Some(give_up(&self.name, self.id.clone().unwrap_or_default()))
    }

    /// The value as last told.
    pub(crate) fn value(&self) -> V {
        self.inner.lock().value.clone()
    }

    /// The value and whether the handle's part ended.
    #[cfg(test)]
    pub(crate) fn seen(&self) -> (V, bool) {
        let g = self.inner.lock();
        (g.value.clone(), g.ended)
    }

    /// `f` of the value while the handle's part is live at `now`: not ended, of the client's
    /// current session, and that session's lease valid by the client's own deadline.
    pub(crate) fn live<R>(
        &self,
        shared: &Shared,
        now: Instant,
        f: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let g = self.inner.lock();
        let current = shared.generation.load(Ordering::Acquire) == self.generation;
        (!g.ended && current && shared.valid_at(now)).then(|| f(&g.value))
    }

    /// Delivers every later change to `handler` on `client`'s dispatcher; first the current
    /// value, when one was told.
    pub(crate) fn subscribe(&self, client: &Client, handler: Handler) {
        let (sub, sink) = client.inner.dispatcher.subscribe(handler);
        let mut g = self.inner.lock();
        if g.value.version() > 0 {
            for ev in V::changes(&self.name, &V::default(), &g.value) {
                sink.send(ev);
            }
        }
        g.sinks.push(sink);
        g.subs.push(sub);
    }
}

/// What every election and group handle holds: its client and its record. Dropping it stops
/// the handle's callbacks (unless called from inside one) and tells the session to forget
/// the record.
pub(crate) struct Handle<V: Versioned> {
    pub(crate) client: Client,
    pub(crate) shared: Arc<Watched<V>>,
}

impl<V: Versioned> Handle<V> {
    /// Gives up the handle's own part (a candidacy, a membership) with the request
    /// `give_up` makes of its name and id, waiting for the service's confirmation when
    /// `wait`; nothing when it had ended already.
    pub(crate) fn give_up(
        &self,
        wait: bool,
        give_up: impl FnOnce(&str, String) -> Request,
    ) -> crate::error::Result<()> {
        match self.shared.end_with(give_up) {
            Some(body) => self.client.give_up(body, wait),
            None => Ok(()),
        }
    }

    /// [`Handle::give_up`] without blocking: the pending confirmation.
    pub(crate) fn give_up_start(
        &self,
        give_up: impl FnOnce(&str, String) -> Request,
    ) -> crate::error::Result<super::Pending<()>> {
        self.client.give_up_start(self.shared.end_with(give_up))
    }
}

impl<V: Versioned> Drop for Handle<V> {
    fn drop(&mut self) {
        let subs = std::mem::take(&mut self.shared.inner.lock().subs);
        drop(subs);
        let _ = self.client.inner.send(Cmd::Forget {
            held: V::held(self.shared.clone()),
        });
    }
}

/// The handle record of a campaign's, observation's, join's or watch's answer.
pub(crate) fn handle_of<V: Versioned>(
    client: &Client,
    a: super::Answer,
    pick: impl FnOnce(Held) -> Option<Arc<Watched<V>>>,
) -> crate::error::Result<Handle<V>> {
    let (reply, held) = a?;
    match pick(held) {
        Some(shared) => Ok(Handle {
            client: client.clone(),
            shared,
        }),
        None => Err(crate::error::Error::Rejected(format!(
            "unexpected reply {reply:?}"
        ))),
    }
}
