//! The event vocabulary (SPEC 4) and its delivery to user callbacks (SPEC 2.3).
//!
//! Library threads (heartbeats, I/O) never call user code. They hand each event to the
//! subscription's [`Sink`], which does one of two things, chosen by the subscriber's
//! [`Handler`]:
//!
//! - **dispatched** (the default): the event goes on the queue of a [`Dispatcher`], one thread
//!   that runs the callbacks of all the subscriptions it serves, one event at a time, in the
//!   order they happened. Each client has one dispatcher (started at its first subscription)
//!   shared by the client's own, its locks', elections' and groups' subscriptions; each
//!   failure detector has its own. A callback that blocks delays the later events of its
//!   dispatcher and nothing else: never a heartbeat, a lease or a detection. (So a callback
//!   must not wait for another event of the same client: that event waits behind it.) A
//!   callback that panics is reported on stderr and the dispatcher goes on. One thread per
//!   client rather than per subscription is a decision of issue 17: a process with many
//!   locks, elections and watches costs one thread per client, not one per callback.
//! - **inline** ([`Handler::inline`], for language bindings that own a dispatcher of their
//!   own): the function runs on the library thread that produced the event, so the event
//!   reaches the binding with no thread of the core in between. It must only hand the event
//!   on (queue it, wake a loop) and return: never block, never call into tenure.
//!
//! A subscription's queue holds at most [`QUEUE_CAPACITY`] events. When a subscriber falls
//! that far behind, new events for it are dropped and counted ([`Subscription::dropped`]); the
//! state they describe stays readable (`Lock::is_held`, `Client::state`).

use crate::proto::{Incarnation, SessionId, Token};
#[cfg(test)]
use crossbeam_channel::Receiver;
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Events queued per subscription before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Why a lock was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostReason {
    /// The session's lease ended (the client's deadline passed, or the server no longer knows
    /// the session).
    SessionExpired,
    /// An administrator released it.
    Released,
    /// The service lost its state (its incarnation changed).
    DataLost,
    /// The client was closed while holding it.
    ClientClosed,
}

impl LostReason {
    /// The stable lowercase name used in every language.
    pub fn as_str(&self) -> &'static str {
        match self {
            LostReason::SessionExpired => "session_expired",
            LostReason::Released => "released",
            LostReason::DataLost => "data_lost",
            LostReason::ClientClosed => "client_closed",
        }
    }
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to a client, its session or its locks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A session was opened or re-opened.
    SessionConnected {
        /// The session id.
        session: SessionId,
        /// The service's incarnation token.
        incarnation: Incarnation,
    },
    /// A heartbeat failed; retries have started.
    SessionJeopardy {
        /// Time left until the client's deadline.
        remaining: Duration,
    },
    /// A retry succeeded before the deadline.
    SessionRecovered,
    /// The client's deadline passed; every lock of the session was reported lost first.
    SessionExpired,
    /// A waiting acquire was granted.
    LockAcquired {
        /// Lock name.
        name: String,
        /// Fencing token of the grant.
        token: Token,
    },
    /// A held lock is lost.
    LockLost {
        /// Lock name.
        name: String,
        /// Fencing token of the lost grant.
        token: Token,
        /// Why.
        reason: LostReason,
    },
    /// The service's state was lost: its incarnation changed.
    DataLost {
        /// The incarnation the client knew.
        old: Incarnation,
        /// The new one.
        new: Incarnation,
    },
    /// The master of an election changed (SPEC 3.3).
    MasterChanged {
        /// Election name.
        election: String,
        /// Epoch of this change; strictly increases for an election.
        epoch: u64,
        /// The new master, or `None` when the election has no master.
        master: Option<Master>,
    },
    /// A failure detector suspects a peer (SPEC 3.4).
    PeerSuspected {
        /// Peer name.
        peer: String,
        /// Whether the peer's process or a network path is suspected.
        kind: SuspicionKind,
        /// The network concerned (`None` when the suspicion is about the process on every
        /// network).
        network: Option<String>,
    },
    /// A suspected peer (or its path on a network) is heard from again.
    PeerRecovered {
        /// Peer name.
        peer: String,
        /// The network it was heard on again (`None`: the process suspicion is lifted).
        network: Option<String>,
    },
    /// No peer was heard on this local network within the network-failure limit.
    NetworkDown {
        /// Network name.
        network: String,
    },
    /// A network that was down carries heartbeats again.
    NetworkUp {
        /// Network name.
        network: String,
    },
    /// A group's view changed (SPEC 3.5).
    ViewChanged {
        /// Group name.
        group: String,
        /// View number; strictly increases for a group.
        view: u64,
        /// Members of the new view with their status.
        members: Vec<Member>,
    },
    /// A probationary member was promoted to full member.
    MemberPromoted {
        /// Group name.
        group: String,
        /// Member id.
        member: String,
    },
    /// A member left the group (removed, failed its evaluation, or its session ended).
    MemberRemoved {
        /// Group name.
        group: String,
        /// Member id.
        member: String,
    },
}

/// The master of an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Candidate id.
    pub id: String,
    /// How to reach it (`host:port`), if it gave one.
    pub endpoint: Option<String>,
}

/// What a failure detector suspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuspicionKind {
    /// The peer's process (silent while others are heard, or silent on every network).
    Process,
    /// A network path to the peer (heard on another network, silent on this one).
    Network,
}

impl SuspicionKind {
    /// The stable lowercase name used in every language.
    pub fn as_str(&self) -> &'static str {
        match self {
            SuspicionKind::Process => "process",
            SuspicionKind::Network => "network",
        }
    }
}

/// A group member and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// True for a full member, false for a probationary one.
    pub full: bool,
}

impl Event {
    /// The event as a flat [`Record`].
    pub fn record(self) -> Record {
        self.into()
    }

    /// The stable event name used in every language.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionConnected { .. } => "connected",
            Event::SessionJeopardy { .. } => "jeopardy",
            Event::SessionRecovered => "recovered",
            Event::SessionExpired => "expired",
            Event::LockAcquired { .. } => "lock_acquired",
            Event::LockLost { .. } => "lock_lost",
            Event::DataLost { .. } => "data_lost",
            Event::MasterChanged { .. } => "master_changed",
            Event::PeerSuspected { .. } => "peer_suspected",
            Event::PeerRecovered { .. } => "peer_recovered",
            Event::NetworkDown { .. } => "network_down",
            Event::NetworkUp { .. } => "network_up",
            Event::ViewChanged { .. } => "view_changed",
            Event::MemberPromoted { .. } => "member_promoted",
            Event::MemberRemoved { .. } => "member_removed",
        }
    }
}

/// An event as one flat record: every field of every event kind under its canonical name
/// (SPEC 4), `None` where the kind has no such field. The bindings build their event objects
/// from it (Python attributes with these names, Node properties in camelCase, the C
/// accessors), so a field is named and converted in this one place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The event's kind ([`Event::kind`]).
    pub kind: &'static str,
    /// Session id (`connected`).
    pub session: Option<SessionId>,
    /// The service's incarnation (`connected`).
    pub incarnation: Option<Incarnation>,
    /// Time left until the client's deadline (`jeopardy`).
    pub remaining: Option<Duration>,
    /// Lock name (`lock_acquired`, `lock_lost`).
    pub name: Option<String>,
    /// Fencing token of the grant (`lock_acquired`, `lock_lost`).
    pub fencing_token: Option<Token>,
    /// Why the lock was lost (`lock_lost`).
    pub reason: Option<LostReason>,
    /// The incarnation the client knew (`data_lost`).
    pub old_incarnation: Option<Incarnation>,
    /// The new incarnation (`data_lost`).
    pub new_incarnation: Option<Incarnation>,
    /// Election name (`master_changed`).
    pub election: Option<String>,
    /// The new master (`master_changed`; `None` also when the election has no master).
    pub master: Option<Master>,
    /// Epoch of the change (`master_changed`).
    pub epoch: Option<u64>,
    /// Peer name (`peer_suspected`, `peer_recovered`).
    pub peer: Option<String>,
    /// What is suspected (`peer_suspected`).
    pub suspicion: Option<SuspicionKind>,
    /// Network name (`network_down`, `network_up`; for `peer_suspected` and
    /// `peer_recovered`, `None` when the process, not a network path, is concerned).
    pub network: Option<String>,
    /// Group name (`view_changed`, `member_promoted`, `member_removed`).
    pub group: Option<String>,
    /// View number (`view_changed`).
    pub view: Option<u64>,
    /// Members of the new view (`view_changed`).
    pub members: Option<Vec<Member>>,
    /// Member id (`member_promoted`, `member_removed`).
    pub member: Option<String>,
}

/// A field of a [`Record`], for bindings that build event objects generically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// A 64-bit counter or id (session, fencing token, epoch, view).
    U64(u64),
    /// An incarnation token.
    U128(u128),
    /// A duration (`remaining`).
    Duration(Duration),
    /// A name.
    Text(&'a str),
    /// A name that may be absent (`network` of peer events).
    OptText(Option<&'a str>),
    /// A master, or none.
    Master(Option<&'a Master>),
    /// A view's members.
    Members(&'a [Member]),
}

impl fmt::Display for Field<'_> {
    /// The value as text (durations in milliseconds, members as `id` or `id(probation)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::U64(v) => write!(f, "{v}"),
            Field::U128(v) => write!(f, "{v}"),
            Field::Duration(d) => write!(f, "{}ms", d.as_millis()),
            Field::Text(t) => write!(f, "{t:?}"),
            Field::OptText(Some(t)) => write!(f, "{t:?}"),
            Field::OptText(None) | Field::Master(None) => f.write_str("none"),
            Field::Master(Some(m)) => write!(f, "{:?}", m.id),
            Field::Members(ms) => {
                let v: Vec<String> = ms
                    .iter()
                    .map(|m| {
                        if m.full {
                            m.id.clone()
                        } else {
                            format!("{}(probation)", m.id)
                        }
                    })
                    .collect();
                write!(f, "[{}]", v.join(", "))
            }
        }
    }
}

impl Record {
    /// The fields this record's kind has, by canonical name, in a fixed order (`kind`
    /// excluded). A field that a kind has but may leave empty (`master`, and `network` of
    /// peer events) is listed with its `None`.
    pub fn fields(&self) -> Vec<(&'static str, Field<'_>)> {
        fn text(s: &Option<String>) -> Option<Field<'_>> {
            s.as_deref().map(Field::Text)
        }
        let mut v: Vec<(&'static str, Field<'_>)> = Vec::with_capacity(4);
        let mut put = |name: &'static str, f: Option<_>| {
            if let Some(f) = f {
                v.push((name, f));
            }
        };
        put("session", self.session.map(Field::U64));
        put("incarnation", self.incarnation.map(Field::U128));
        put("remaining", self.remaining.map(Field::Duration));
        put("name", text(&self.name));
        put("fencing_token", self.fencing_token.map(Field::U64));
        put("reason", self.reason.map(|r| Field::Text(r.as_str())));
        put("old_incarnation", self.old_incarnation.map(Field::U128));
        put("new_incarnation", self.new_incarnation.map(Field::U128));
        put("election", text(&self.election));
        let has_master = self.kind == "master_changed";
        put(
            "master",
            has_master.then_some(Field::Master(self.master.as_ref())),
        );
        put("epoch", self.epoch.map(Field::U64));
        put("peer", text(&self.peer));
        put("suspicion", self.suspicion.map(|k| Field::Text(k.as_str())));
        let network = match self.kind {
            "peer_suspected" | "peer_recovered" => Some(Field::OptText(self.network.as_deref())),
            _ => text(&self.network),
        };
        put("network", network);
        put("group", text(&self.group));
        put("view", self.view.map(Field::U64));
        put("members", self.members.as_deref().map(Field::Members));
        put("member", text(&self.member));
        v
    }
}

impl From<Event> for Record {
    fn from(ev: Event) -> Record {
        let mut r = Record {
            kind: ev.kind(),
            ..Record::default()
        };
        match ev {
            Event::SessionConnected {
                session,
                incarnation,
            } => {
                r.session = Some(session);
                r.incarnation = Some(incarnation);
            }
            Event::SessionJeopardy { remaining } => r.remaining = Some(remaining),
            Event::SessionRecovered | Event::SessionExpired => {}
            Event::LockAcquired { name, token } => {
                r.name = Some(name);
                r.fencing_token = Some(token);
            }
            Event::LockLost {
                name,
                token,
                reason,
            } => {
                r.name = Some(name);
                r.fencing_token = Some(token);
                r.reason = Some(reason);
            }
            Event::DataLost { old, new } => {
                r.old_incarnation = Some(old);
                r.new_incarnation = Some(new);
            }
            Event::MasterChanged {
                election,
                epoch,
                master,
            } => {
                r.election = Some(election);
                r.epoch = Some(epoch);
                r.master = master;
            }
            Event::PeerSuspected {
                peer,
                kind,
                network,
            } => {
                r.peer = Some(peer);
                r.suspicion = Some(kind);
                r.network = network;
            }
            Event::PeerRecovered { peer, network } => {
                r.peer = Some(peer);
                r.network = network;
            }
            Event::NetworkDown { network } | Event::NetworkUp { network } => {
                r.network = Some(network)
            }
            Event::ViewChanged {
                group,
                view,
                members,
            } => {
                r.group = Some(group);
                r.view = Some(view);
                r.members = Some(members);
            }
            Event::MemberPromoted { group, member } | Event::MemberRemoved { group, member } => {
                r.group = Some(group);
                r.member = Some(member);
            }
        }
        r
    }
}

/// A callback receiving events.
pub type Callback = Arc<dyn Fn(Event) + Send + Sync>;

/// How a subscription's events reach its callback (see the module documentation). The
/// subscribing methods take closures (dispatched); their `*_with` forms
/// ([`crate::Client::subscribe_with`], [`crate::Lock::on_lost_with`],
/// [`crate::client::WatchHandle::on_change`], ...) take a handler.
#[derive(Clone)]
pub struct Handler {
    callback: Callback,
    inline: bool,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("inline", &self.inline)
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// Runs `callback` on the dispatcher thread of the client (or detector).
    pub fn dispatched(callback: impl Fn(Event) + Send + Sync + 'static) -> Handler {
        Handler {
            callback: Arc::new(callback),
            inline: false,
        }
    }

    /// Runs `hook` on the library thread that produced the event, for a language binding
    /// that delivers events on a dispatcher of its own: `hook` must only queue the event and
    /// return, without blocking and without calling into tenure (the library may hold the
    /// client's state locked while it runs). Calls of one subscription never overlap.
    pub fn inline(hook: impl Fn(Event) + Send + Sync + 'static) -> Handler {
        Handler {
            callback: Arc::new(hook),
            inline: true,
        }
    }
}

impl<F: Fn(Event) + Send + Sync + 'static> From<F> for Handler {
    fn from(f: F) -> Handler {
        Handler::dispatched(f)
    }
}

/// One subscription's state, shared by its [`Subscription`], its [`Sink`] and the queued jobs.
struct Slot {
    /// False once the subscription is closed.
    active: AtomicBool,
    /// The callback, held locked while it runs; emptied at close.
    callback: Mutex<Option<Callback>>,
    /// Events queued and not yet delivered (dispatched subscriptions).
    queued: AtomicUsize,
    dropped: AtomicU64,
}

thread_local! {
    /// The slot whose callback this dispatcher thread is running (null outside callbacks).
    static RUNNING: Cell<*const Slot> = const { Cell::new(std::ptr::null()) };
}

impl Slot {
    /// Runs the callback with `ev` unless the subscription is closed.
    fn run(self: &Arc<Slot>, ev: Event) {
        let g = self.callback.lock();
        let Some(cb) = g.as_ref().filter(|_| self.active.load(Ordering::Acquire)) else {
            return;
        };
        let kind = ev.kind();
        let prev = RUNNING.with(|r| r.replace(Arc::as_ptr(self)));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(ev)));
        RUNNING.with(|r| r.set(prev));
        if r.is_err() {
            eprintln!("tenure: an event callback panicked on a {kind} event; later events are still delivered");
        }
        if !self.active.load(Ordering::Acquire) {
            // Closed from inside its own callback: let the callback go now that it returned.
            let mut g = g;
            *g = None;
        }
    }
}

impl Slot {
    /// Ends the subscription from the sending side: no more calls, and the callback goes
    /// (after a running call returns; at once when this runs inside that call, which can
    /// only be an inline handler's own thread and never happens: hooks do not drop sinks).
    fn end(self: &Arc<Slot>) {
        self.active.store(false, Ordering::Release);
        if RUNNING.with(|r| r.get()) == Arc::as_ptr(self) {
            return;
        }
        let cb = self.callback.lock().take();
        drop(cb);
    }
}

/// A job for a dispatcher thread: an event to deliver, or (`None`) the end of the
/// subscription's sinks, after which its callback is dropped.
type Job = (Arc<Slot>, Option<Event>);

/// A thread that runs the callbacks of the subscriptions it serves (see the module
/// documentation). Cheap to clone; the thread starts with the first subscription and ends
/// once every clone and every sink of its subscriptions is dropped.
#[derive(Clone)]
pub struct Dispatcher {
    name: &'static str,
    tx: Arc<OnceLock<Sender<Job>>>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("name", &self.name)
            .field("started", &self.tx.get().is_some())
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher whose thread (started at the first dispatched subscription) is named
    /// `tenure-dispatch-{name}`.
    pub fn new(name: &'static str) -> Dispatcher {
        Dispatcher {
            name,
            tx: Arc::new(OnceLock::new()),
        }
    }

    fn sender(&self) -> Sender<Job> {
        self.tx
            .get_or_init(|| {
                let (tx, rx) = crossbeam_channel::unbounded::<Job>();
                std::thread::Builder::new()
                    .name(format!("tenure-dispatch-{}", self.name))
                    .spawn(move || {
                        while let Ok((slot, ev)) = rx.recv() {
                            match ev {
                                Some(ev) => {
                                    slot.queued.fetch_sub(1, Ordering::AcqRel);
                                    slot.run(ev);
                                }
                                None => slot.end(),
                            }
                        }
                    })
                    .expect("spawn dispatcher thread");
                tx
            })
            .clone()
    }

    /// Starts a subscription delivering to `handler`; returns it and the sink library
    /// threads send its events to.
    pub fn subscribe(&self, handler: impl Into<Handler>) -> (Subscription, Sink) {
        let h = handler.into();
        let tx = (!h.inline).then(|| self.sender());
        let sink = Sink::new(h.callback, tx);
        (
            Subscription {
                slot: sink.slot.clone(),
            },
            sink,
        )
    }
}

/// The sending side of a subscription, held by library threads. When the last clone is
/// dropped (its source is gone: the client closed, the lock released), the subscription ends:
/// the events already queued are delivered, then the callback is dropped.
#[derive(Clone)]
pub struct Sink {
    slot: Arc<Slot>,
    /// The dispatcher's queue; `None` for an inline subscription.
    tx: Option<Sender<Job>>,
    _end: Arc<SinkEnd>,
}

/// Shared by the clones of a sink; ends the subscription when the last one goes.
struct SinkEnd {
    slot: Arc<Slot>,
    tx: Option<Sender<Job>>,
}

impl Drop for SinkEnd {
    fn drop(&mut self) {
        match &self.tx {
            Some(tx) => {
                if tx.send((self.slot.clone(), None)).is_err() {
                    self.slot.end();
                }
            }
            None => self.slot.end(),
        }
    }
}

impl Sink {
    /// A sink of a new subscription slot running `callback` (inline when `tx` is `None`).
    fn new(callback: Callback, tx: Option<Sender<Job>>) -> Sink {
        let slot = Arc::new(Slot {
            active: AtomicBool::new(true),
            callback: Mutex::new(Some(callback)),
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        });
        let end = Arc::new(SinkEnd {
            slot: slot.clone(),
            tx: tx.clone(),
        });
        Sink {
            slot,
            tx,
            _end: end,
        }
    }

    /// A sink whose events wait in the returned receiver, with no dispatcher thread and no
    /// subscription to close it: for the tests of the sans-IO machines and the simulation.
    #[cfg(test)]
    pub(crate) fn channel() -> (Sink, Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sink = Sink::new(
            Arc::new(move |e| {
                let _ = tx.send(e);
            }),
            None,
        );
        (sink, rx)
    }

    /// Delivers or queues an event without blocking. False when the subscription is closed,
    /// so the owner can forget the sink.
    pub fn send(&self, ev: Event) -> bool {
        let slot = &self.slot;
        if !slot.active.load(Ordering::Acquire) {
            return false;
        }
        let Some(tx) = &self.tx else {
            slot.run(ev);
            return true;
        };
        if slot.queued.load(Ordering::Acquire) >= QUEUE_CAPACITY {
            slot.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        slot.queued.fetch_add(1, Ordering::AcqRel);
        if tx.send((slot.clone(), Some(ev))).is_err() {
            slot.queued.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// A live subscription: its callback runs until the subscription is closed or dropped.
///
/// Guarantees: calls of one subscription's callback never overlap and come in the order the
/// events happened. After [`Subscription::close`] (or drop) returns, the callback does not
/// run again and has been dropped; if a call is running, close waits for it to return,
/// except when close is called from inside that callback, where it returns at once (the
/// callback is dropped when it returns).
pub struct Subscription {
    slot: Arc<Slot>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.slot.dropped.load(Ordering::Relaxed)
    }

    /// Stops delivery (see the type's guarantees).
    pub fn close(self) {}

    fn shutdown(&mut self) {
        if !self.slot.active.swap(false, Ordering::AcqRel) {
            return;
        }
        if RUNNING.with(|r| r.get()) == Arc::as_ptr(&self.slot) {
            return;
        }
        let cb = self.slot.callback.lock().take();
        drop(cb);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[test]
    fn events_arrive_in_order_and_close_stops_them() {
        let seen = Arc::new(Mutex::new(vec![]));
        let s2 = seen.clone();
        let (sub, sink) = Dispatcher::new("t").subscribe(move |e: Event| s2.lock().push(e));
        for _ in 0..100 {
            assert!(sink.send(Event::SessionRecovered));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.lock().len() < 100 {
            assert!(std::time::Instant::now() < deadline, "events not delivered");
            std::thread::sleep(Duration::from_millis(1));
        }
        sub.close();
        assert!(!sink.send(Event::SessionExpired));
        assert_eq!(seen.lock().len(), 100);
    }

    #[test]
    fn a_panicking_callback_does_not_stop_delivery() {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let (sub, sink) = Dispatcher::new("p").subscribe(move |_e: Event| {
            if n2.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("first");
            }
        });
        sink.send(Event::SessionRecovered);
        sink.send(Event::SessionRecovered);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while n.load(Ordering::SeqCst) < 2 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(sub);
    }

    #[test]
    fn one_dispatcher_serves_many_subscriptions_and_close_inside_a_callback_returns() {
        let d = Dispatcher::new("shared");
        let seen = Arc::new(Mutex::new(vec![]));
        let mine: Arc<Mutex<Option<Subscription>>> = Arc::new(Mutex::new(None));
        let (s2, m2) = (seen.clone(), mine.clone());
        // The first subscription closes itself from inside its callback at its first event.
        let (sub_a, sink_a) = d.subscribe(move |e: Event| {
            s2.lock().push(("a", e));
            let me = m2.lock().take();
            drop(me);
        });
        *mine.lock() = Some(sub_a);
        let s3 = seen.clone();
        let (sub_b, sink_b) = d.subscribe(move |e: Event| s3.lock().push(("b", e)));
        assert!(sink_a.send(Event::SessionRecovered));
        assert!(sink_b.send(Event::SessionRecovered));
        assert!(sink_b.send(Event::SessionExpired));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.lock().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "events not delivered");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!sink_a.send(Event::SessionExpired), "a closed itself");
        let names: Vec<_> = seen.lock().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["a", "b", "b"]);
        drop(sub_b);
        assert!(!sink_b.send(Event::SessionExpired));
    }

    #[test]
    fn an_inline_handler_runs_on_the_sending_thread_until_closed() {
        let seen = Arc::new(Mutex::new(vec![]));
        let s2 = seen.clone();
        let (sub, sink) = Dispatcher::new("never").subscribe(Handler::inline(move |e: Event| {
            s2.lock().push((std::thread::current().id(), e))
        }));
        assert!(sink.send(Event::SessionRecovered));
        assert_eq!(
            seen.lock().as_slice(),
            [(std::thread::current().id(), Event::SessionRecovered)]
        );
        sub.close();
        assert!(!sink.send(Event::SessionExpired));
        assert_eq!(seen.lock().len(), 1);
    }

    #[test]
    fn close_drops_the_callback_before_it_returns() {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let (sub, _sink) = Dispatcher::new("d").subscribe(move |_e: Event| {
            let _ = &flag;
        });
        assert!(!dropped.load(Ordering::SeqCst));
        sub.close();
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn every_event_becomes_a_record_with_its_canonical_fields() {
        let m = Master {
            id: "a".into(),
            endpoint: None,
        };
        let cases: Vec<(Event, &[&str])> = vec![
            (
                Event::SessionConnected {
                    session: 1,
                    incarnation: 2,
                },
                &["session", "incarnation"],
            ),
            (
                Event::SessionJeopardy {
                    remaining: Duration::from_millis(5),
                },
                &["remaining"],
            ),
            (Event::SessionRecovered, &[]),
            (Event::SessionExpired, &[]),
            (
                Event::LockAcquired {
                    name: "l".into(),
                    token: 3,
                },
                &["name", "fencing_token"],
            ),
            (
                Event::LockLost {
                    name: "l".into(),
                    token: 3,
                    reason: LostReason::Released,
                },
                &["name", "fencing_token", "reason"],
            ),
            (
                Event::DataLost { old: 1, new: 2 },
                &["old_incarnation", "new_incarnation"],
            ),
            (
                Event::MasterChanged {
                    election: "e".into(),
                    epoch: 4,
                    master: None,
                },
                &["election", "master", "epoch"],
            ),
            (
                Event::MasterChanged {
                    election: "e".into(),
                    epoch: 5,
                    master: Some(m.clone()),
                },
                &["election", "master", "epoch"],
            ),
            (
                Event::PeerSuspected {
                    peer: "p".into(),
                    kind: SuspicionKind::Process,
                    network: None,
                },
                &["peer", "suspicion", "network"],
            ),
            (
                Event::PeerRecovered {
                    peer: "p".into(),
                    network: Some("n".into()),
                },
                &["peer", "network"],
            ),
            (
                Event::NetworkDown {
                    network: "n".into(),
                },
                &["network"],
            ),
            (
                Event::NetworkUp {
                    network: "n".into(),
                },
                &["network"],
            ),
            (
                Event::ViewChanged {
                    group: "g".into(),
                    view: 1,
                    members: vec![],
                },
                &["group", "view", "members"],
            ),
            (
                Event::MemberPromoted {
                    group: "g".into(),
                    member: "m".into(),
                },
                &["group", "member"],
            ),
            (
                Event::MemberRemoved {
                    group: "g".into(),
                    member: "m".into(),
                },
                &["group", "member"],
            ),
        ];
        for (ev, names) in cases {
            let kind = ev.kind();
            let r = ev.record();
            assert_eq!(r.kind, kind);
            let got: Vec<_> = r.fields().iter().map(|(n, _)| *n).collect();
            assert_eq!(got, names, "{kind}");
        }
        let r = Event::MasterChanged {
            election: "e".into(),
            epoch: 5,
            master: Some(m.clone()),
        }
        .record();
        assert_eq!(r.fields()[1], ("master", Field::Master(Some(&m))));
    }

    #[test]
    fn when_the_last_sink_goes_queued_events_are_delivered_then_the_callback_dropped() {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let (sub, sink) = Dispatcher::new("end").subscribe(move |_e: Event| {
            let _ = &flag;
            std::thread::sleep(Duration::from_millis(1));
            n2.fetch_add(1, Ordering::SeqCst);
        });
        let sink2 = sink.clone();
        for _ in 0..10 {
            sink.send(Event::SessionRecovered);
        }
        drop(sink);
        assert!(!dropped.load(Ordering::SeqCst), "a clone still lives");
        drop(sink2);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !dropped.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "callback not dropped");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(n.load(Ordering::SeqCst), 10, "queued events came first");
        drop(sub);
    }
}
