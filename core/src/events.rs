//! The event vocabulary (SPEC 4) and its delivery to user callbacks (SPEC 2.3).
//!
//! Library threads (heartbeats, I/O) never call user code. They put events on the bounded
//! queue of each subscription; each subscription has a dispatcher thread that runs its
//! callback. A callback that blocks delays later events of its own subscription and nothing
//! else. A callback that panics is reported on stderr and the dispatcher goes on.
//!
//! Queues hold at most [`QUEUE_CAPACITY`] events. When a subscriber falls that far behind, new
//! events for it are dropped and counted ([`Subscription::dropped`]); the state they describe
//! stays readable (`Lock::is_held`, `Client::state`).

use crate::proto::{Incarnation, SessionId, Token};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
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

/// A callback receiving events.
pub type Callback = Arc<dyn Fn(Event) + Send + Sync>;

/// The sending side of a subscription, held by library threads (see [`Subscription::start`]).
#[derive(Clone)]
pub struct Sink {
    tx: Sender<Event>,
    closed: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl Sink {
    /// A sink whose events wait in the returned receiver, with no dispatcher thread: for the
    /// tests of the sans-IO machines and the simulation.
    #[cfg(test)]
    pub(crate) fn channel() -> (Sink, Receiver<Event>) {
        // Unbounded: a bounded channel allocates all its slots at once, which for thousands
        // of simulated sessions costs more than the simulation.
        let (tx, rx) = crossbeam_channel::unbounded();
        let sink = Sink {
            tx,
            closed: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (sink, rx)
    }

    /// Queues an event without blocking. False when the subscription is closed, so the owner
    /// can forget the sink.
    pub fn send(&self, ev: Event) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        // The queue grows as events wait (nothing is set aside for it up front: a preallocated
        // queue of this capacity cost every subscription 5.5 MiB), up to the capacity.
        if self.tx.len() >= QUEUE_CAPACITY {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// A live subscription: its dispatcher thread runs the callback until the subscription is
/// closed or dropped.
///
/// Guarantees: the callback runs on the subscription's own thread, one event at a time, in
/// the order the events happened. After [`Subscription::close`] (or drop) returns, the
/// callback does not run again; if a call is running, close waits for it to return, except
/// when close is called from inside that callback, where it returns at once.
pub struct Subscription {
    stop: Option<Sender<()>>,
    closed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
    dropped: Arc<AtomicU64>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// Starts a dispatcher thread for `callback`; returns the subscription and its sink.
    pub fn start(name: &str, callback: Callback) -> (Subscription, Sink) {
        let (tx, rx): (Sender<Event>, Receiver<Event>) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let closed2 = closed.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tenure-dispatch-{name}"))
            .spawn(move || loop {
                crossbeam_channel::select! {
                    recv(stop_rx) -> _ => break,
                    recv(rx) -> ev => {
                        let Ok(ev) = ev else { break };
                        if closed2.load(Ordering::Acquire) {
                            break;
                        }
                        let kind = ev.kind();
                        let cb = &callback;
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(ev))).is_err() {
                            eprintln!("tenure: an event callback panicked on a {kind} event; later events are still delivered");
                        }
                    }
                }
            })
            .expect("spawn dispatcher thread");
        let thread_id = thread.thread().id();
        (
            Subscription {
                stop: Some(stop_tx),
                closed: closed.clone(),
                thread: Some(thread),
                thread_id,
                dropped: dropped.clone(),
            },
            Sink {
                tx,
                closed,
                dropped,
            },
        )
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops delivery (see the type's guarantees).
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.closed.store(true, Ordering::Release);
        if let Some(s) = self.stop.take() {
            let _ = s.try_send(());
        }
        if let Some(t) = self.thread.take() {
            if std::thread::current().id() != self.thread_id {
                let _ = t.join();
            }
        }
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
        let (sub, sink) = Subscription::start("t", Arc::new(move |e: Event| s2.lock().push(e)));
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
        let (sub, sink) = Subscription::start(
            "p",
            Arc::new(move |_e: Event| {
                if n2.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first");
                }
            }),
        );
        sink.send(Event::SessionRecovered);
        sink.send(Event::SessionRecovered);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while n.load(Ordering::SeqCst) < 2 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(sub);
    }
}
