//! Callbacks from tenure into C, and the events they receive.

use crate::status::{fail, status, tenure_status, value, R};
use crate::util::{out, split_u128, to_cstring};
use std::ffi::{c_char, c_void, CString};
use tenure::events::Record;
use tenure::{Event, LostReason, SuspicionKind};

/// A callback registered with tenure: a function, its finalizer and their context.
///
/// Passed by value. Every function that takes one takes ownership of it, whatever its
/// result: `drop` (when not NULL) runs exactly once, after the last `call`.
///
/// Guarantees, for every registration:
/// - `call(user_data, event)` runs on a library thread: the dispatcher thread of the client
///   (or detector) the registration belongs to, which runs the calls of all that client's
///   registrations; never the thread that keeps the session alive (heartbeats, I/O) and
///   never the caller's thread. The first `call` may come before the registering function
///   has returned (the current master, for example, is delivered at once), so do not expect
///   the handle output to be written yet when it runs.
/// - Calls of one registration run one at a time, in the order the events happened.
/// - `call` is never invoked after `drop` started; `drop` runs exactly once, after the last
///   `call` has returned. When the registering call fails, or `call` is NULL (no callback
///   wanted), `drop` runs before the registering call returns, on the caller's thread.
///   Otherwise it runs when the registration ends: on the thread that frees its handle, or
///   that releases, resigns or leaves a lock, an election or a membership; on the dispatcher
///   thread, after the events already queued, when it ends by itself (a
///   `tenure_client_subscribe` registration when the client is closed).
/// - Freeing the handle of a registration (`tenure_subscription_free`, `tenure_lock_free`,
///   `tenure_lock_release`, `tenure_election_free`, `tenure_election_resign`,
///   `tenure_membership_free`) waits for a running `call` of it to return and for its `drop`
///   to finish, so `user_data` may be released right after. Called from inside that `call`
///   it does not wait (it must not deadlock): `call` is not invoked again and `drop` runs
///   right after the running `call` returns.
/// - A `call` that blocks delays later events of the registrations of its client (they share
///   its dispatcher thread); it never delays heartbeats, so it cannot cost the session, a
///   lock or a mastership. Do not block in a `call` waiting for another event of the same
///   client.
///
/// `event` is valid only until `call` returns; copy what you need. `call` must not unwind
/// (C++ exceptions, `longjmp`) into tenure. `user_data` is used from the dispatcher thread,
/// so what it points to must be safe to use there.
#[repr(C)]
pub struct tenure_callback {
    /// Called with each event; NULL for no callback.
    pub call: Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const tenure_event)>,
    /// Called once when the registration ends; may be NULL.
    pub drop: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
    /// Passed to `call` and `drop` as it is; tenure never reads it.
    pub user_data: *mut c_void,
}

/// A `tenure_callback` owned by Rust: its `drop` runs when this is dropped.
pub(crate) struct OwnedCallback {
    call: Option<unsafe extern "C" fn(*mut c_void, *const tenure_event)>,
    drop: Option<unsafe extern "C" fn(*mut c_void)>,
    user_data: *mut c_void,
}

// SAFETY: the header requires `user_data` to be usable from library threads; tenure never
// dereferences it, it only hands it back to the user's functions, one call at a time.
unsafe impl Send for OwnedCallback {}
// SAFETY: as above; `call` is invoked from one dispatcher thread at a time.
unsafe impl Sync for OwnedCallback {}

impl OwnedCallback {
    /// Takes ownership of a callback passed by C.
    pub(crate) fn new(cb: tenure_callback) -> OwnedCallback {
        OwnedCallback {
            call: cb.call,
            drop: cb.drop,
            user_data: cb.user_data,
        }
    }

    /// True when a `call` function was given.
    pub(crate) fn is_some(&self) -> bool {
        self.call.is_some()
    }

    /// Calls `call` with one event.
    fn deliver(&self, ev: &tenure_event) {
        if let Some(call) = self.call {
            // SAFETY: the user's function with the user's context, as the header documents.
            unsafe { call(self.user_data, ev) }
        }
    }

    /// The Rust callback that converts each event and calls `call`; `None` (and `drop` run
    /// now) when there is no `call`.
    pub(crate) fn into_rust(self) -> Option<impl Fn(Event) + Send + Sync + 'static> {
        if !self.is_some() {
            return None;
        }
        Some(move |ev: Event| {
            let e = tenure_event::from_core(&ev);
            self.deliver(&e);
        })
    }
}

impl Drop for OwnedCallback {
    fn drop(&mut self) {
        if let Some(d) = self.drop.take() {
            // SAFETY: the user's finalizer, run exactly once (take()).
            unsafe { d(self.user_data) }
        }
    }
}

/// For the benchmark: the Rust callback tenure builds for a C callback.
#[doc(hidden)]
pub fn bench_adapter(
    cb: tenure_callback,
) -> Option<impl Fn(tenure::Event) + Send + Sync + 'static> {
    OwnedCallback::new(cb).into_rust()
}

/// The kinds of events (`tenure_event_kind()`). Values are stable; new kinds may be added, so
/// handle unknown values (print them with `tenure_event_name()`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tenure_event_type {
    /// An event this version of the C API does not know (or a NULL event).
    Unknown = 0,
    /// "connected": a session was opened or re-opened. Fields: session id, incarnation.
    Connected = 1,
    /// "jeopardy": a heartbeat failed; retries have started. Field: remaining time.
    Jeopardy = 2,
    /// "recovered": a retry succeeded before the deadline.
    Recovered = 3,
    /// "expired": the client's deadline passed; every lock was reported lost first.
    Expired = 4,
    /// "data_lost": the service lost its state. Fields: old and new incarnation.
    DataLost = 5,
    /// "lock_acquired": a waiting acquire was granted. Fields: lock name, fencing token.
    LockAcquired = 10,
    /// "lock_lost": a held lock is lost. Fields: lock name, fencing token, reason.
    LockLost = 11,
    /// "master_changed": fields election, master id and endpoint (NULL when there is no
    /// master), epoch.
    MasterChanged = 20,
    /// "peer_suspected": fields peer, suspicion kind, network (NULL for the process).
    PeerSuspected = 30,
    /// "peer_recovered": fields peer, network (NULL for the process).
    PeerRecovered = 31,
    /// "network_down": field network.
    NetworkDown = 32,
    /// "network_up": field network.
    NetworkUp = 33,
    /// "view_changed": fields group, view number, members with their status.
    ViewChanged = 40,
    /// "member_promoted": fields group, member.
    MemberPromoted = 41,
    /// "member_removed": fields group, member.
    MemberRemoved = 42,
}

/// Why a lock was lost (`tenure_event_reason()`, `tenure_lock_lost_reason()`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tenure_lost_reason {
    /// Not lost.
    None = 0,
    /// The session's lease ended ("session_expired").
    SessionExpired = 1,
    /// An administrator released it ("released", see `tenure_client_revoke`).
    Released = 2,
    /// The service lost its state ("data_lost").
    DataLost = 3,
    /// The client was closed while holding it ("client_closed").
    ClientClosed = 4,
}

impl From<LostReason> for tenure_lost_reason {
    fn from(r: LostReason) -> Self {
        match r {
            LostReason::SessionExpired => tenure_lost_reason::SessionExpired,
            LostReason::Released => tenure_lost_reason::Released,
            LostReason::DataLost => tenure_lost_reason::DataLost,
            LostReason::ClientClosed => tenure_lost_reason::ClientClosed,
        }
    }
}

fn suspicion(k: Option<SuspicionKind>) -> tenure_suspicion_kind {
    match k {
        Some(SuspicionKind::Network) => tenure_suspicion_kind::Network,
        _ => tenure_suspicion_kind::Process,
    }
}

fn remaining_ms(d: Option<std::time::Duration>) -> u64 {
    d.map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64)
}

/// What a failure detector suspects (`tenure_event_suspicion()`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tenure_suspicion_kind {
    /// The peer's process ("process").
    Process = 1,
    /// A network path to the peer ("network").
    Network = 2,
}

/// An event delivered to a callback. Opaque; read it with the `tenure_event_*` getters. Valid
/// only during the `call` it is passed to.
pub struct tenure_event {
    kind: tenure_event_type,
    /// The core's flat record: which fields an event kind has is decided there.
    rec: Record,
    /// The canonical names of the fields `rec` has ([`Record::fields`]).
    has: Vec<&'static str>,
    /// The record's texts as C strings, by name ("name", "election", "master_id",
    /// "endpoint", "peer", "network", "group", "member").
    texts: Vec<(&'static str, CString)>,
    members: Vec<(CString, bool)>,
}

impl tenure_event {
    /// Converts a core event.
    pub(crate) fn from_core(ev: &Event) -> tenure_event {
        use tenure_event_type as T;
        let kind = match ev {
            Event::SessionConnected { .. } => T::Connected,
            Event::SessionJeopardy { .. } => T::Jeopardy,
            Event::SessionRecovered => T::Recovered,
            Event::SessionExpired => T::Expired,
            Event::LockAcquired { .. } => T::LockAcquired,
            Event::LockLost { .. } => T::LockLost,
            Event::DataLost { .. } => T::DataLost,
            Event::MasterChanged { .. } => T::MasterChanged,
            Event::PeerSuspected { .. } => T::PeerSuspected,
            Event::PeerRecovered { .. } => T::PeerRecovered,
            Event::NetworkDown { .. } => T::NetworkDown,
            Event::NetworkUp { .. } => T::NetworkUp,
            Event::ViewChanged { .. } => T::ViewChanged,
            Event::MemberPromoted { .. } => T::MemberPromoted,
            Event::MemberRemoved { .. } => T::MemberRemoved,
            _ => T::Unknown,
        };
        let rec = ev.clone().record();
        let has = rec.fields().iter().map(|(n, _)| *n).collect();
        let mut texts = Vec::new();
        let mut text = |k: &'static str, v: Option<&str>| {
            if let Some(v) = v {
                texts.push((k, to_cstring(v)));
            }
        };
        text("name", rec.name.as_deref());
        text("election", rec.election.as_deref());
        text("master_id", rec.master.as_ref().map(|m| m.id.as_str()));
        text(
            "endpoint",
            rec.master.as_ref().and_then(|m| m.endpoint.as_deref()),
        );
        text("peer", rec.peer.as_deref());
        text("network", rec.network.as_deref());
        text("group", rec.group.as_deref());
        text("member", rec.member.as_deref());
        let members = rec
            .members
            .iter()
            .flatten()
            .map(|m| (to_cstring(&m.id), m.full))
            .collect();
        tenure_event {
            kind,
            rec,
            has,
            texts,
            members,
        }
    }

    /// The C string of a text field (NULL when absent).
    fn text(&self, name: &str) -> *const c_char {
        self.texts
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(std::ptr::null(), |(_, v)| v.as_ptr())
    }
}

/// Borrows a C event, checking it is not NULL and its kind has one of the record `fields`
/// (canonical names, [`Record::fields`]).
///
/// # Safety
///
/// `ev` is NULL or an event passed to a running `call`.
unsafe fn event<'a>(ev: *const tenure_event, fields: &[&str]) -> R<&'a tenure_event> {
    // SAFETY: the caller's contract.
    let e =
        unsafe { ev.as_ref() }.ok_or_else(|| fail(tenure_status::NullArgument, "event is NULL"))?;
    if !fields.iter().any(|f| e.has.contains(f)) {
        return Err(fail(
            tenure_status::WrongEventType,
            format!(
                "a {} event has no {}",
                e.rec.kind,
                fields[0].replace('_', " ")
            ),
        ));
    }
    Ok(e)
}

/// The body of the one-field getters: checks, reads with `f`, writes the output.
///
/// # Safety
///
/// `ev` is NULL or an event passed to a running `call`; `value_out` is NULL or writable.
unsafe fn get<V>(
    ev: *const tenure_event,
    field: &str,
    value_out: *mut V,
    f: impl FnOnce(&tenure_event) -> V,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let e = unsafe { event(ev, &[field]) }?;
        let o = out(value_out, "value_out")?;
        let v = f(e);
        // SAFETY: checked non-NULL.
        unsafe { o.write(v) };
        Ok(())
    })
}

/// Returns the kind of an event. `TENURE_EVENT_TYPE_UNKNOWN` for a NULL event or a kind this
/// version does not know. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be NULL or an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_kind(event: *const tenure_event) -> tenure_event_type {
    value(tenure_event_type::Unknown, || {
        // SAFETY: the caller's contract.
        Ok(unsafe { event.as_ref() }.map_or(tenure_event_type::Unknown, |e| e.kind))
    })
}

/// Returns the event's stable name in tenure's vocabulary ("lock_lost", "master_changed",
/// ...), the same in every language; also for kinds this version does not know. A static
/// string; "" for a NULL event. Threads: any.
///
/// # Safety
///
/// `event` must be NULL or an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_name(event: *const tenure_event) -> *const c_char {
    value(b"\0".as_ptr().cast(), || {
        // SAFETY: the caller's contract.
        Ok(match unsafe { event.as_ref() } {
            Some(e) => static_name(e.rec.kind),
            None => b"\0".as_ptr().cast(),
        })
    })
}

fn static_name(name: &'static str) -> *const c_char {
    let s: &'static str = match name {
        "connected" => "connected\0",
        "jeopardy" => "jeopardy\0",
        "recovered" => "recovered\0",
        "expired" => "expired\0",
        "lock_acquired" => "lock_acquired\0",
        "lock_lost" => "lock_lost\0",
        "data_lost" => "data_lost\0",
        "master_changed" => "master_changed\0",
        "peer_suspected" => "peer_suspected\0",
        "peer_recovered" => "peer_recovered\0",
        "network_down" => "network_down\0",
        "network_up" => "network_up\0",
        "view_changed" => "view_changed\0",
        "member_promoted" => "member_promoted\0",
        "member_removed" => "member_removed\0",
        _ => "unknown\0",
    };
    s.as_ptr().cast()
}

/// Returns the stable name of an event kind (a `tenure_event_type` value): "lock_lost"...;
/// "unknown" for values this version does not know. A static string. Threads: any.
#[no_mangle]
pub extern "C" fn tenure_event_type_str(kind: u32) -> *const c_char {
    value(static_name("unknown"), || Ok(event_type_name(kind)))
}

fn event_type_name(kind: u32) -> *const c_char {
    let name = match kind {
        1 => "connected",
        2 => "jeopardy",
        3 => "recovered",
        4 => "expired",
        5 => "data_lost",
        10 => "lock_acquired",
        11 => "lock_lost",
        20 => "master_changed",
        30 => "peer_suspected",
        31 => "peer_recovered",
        32 => "network_down",
        33 => "network_up",
        40 => "view_changed",
        41 => "member_promoted",
        42 => "member_removed",
        _ => "unknown",
    };
    static_name(name)
}

/// Returns the stable name of a lost reason (a `tenure_lost_reason` value):
/// "session_expired", "released", "data_lost", "client_closed" (the names every binding
/// uses), "none"; "unknown" for other values.
/// A static string. Threads: any.
#[no_mangle]
pub extern "C" fn tenure_lost_reason_str(reason: u32) -> *const c_char {
    value(b"unknown\0".as_ptr().cast(), || {
        Ok(lost_reason_name(reason))
    })
}

fn lost_reason_name(reason: u32) -> *const c_char {
    let s: &'static str = match reason {
        0 => "none\0",
        1 => "session_expired\0",
        2 => "released\0",
        3 => "data_lost\0",
        4 => "client_closed\0",
        _ => "unknown\0",
    };
    s.as_ptr().cast()
}

/// Reads the name of the lock of a "lock_acquired" or "lock_lost" event. The string
/// belongs to the event (valid until the callback returns).
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_lock_name(
    event: *const tenure_event,
    value_out: *mut *const c_char,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "name", value_out, |e| e.text("name")) }
}
/// Reads the fencing token of a "lock_acquired" or "lock_lost" event.
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_fencing_token(
    event: *const tenure_event,
    value_out: *mut u64,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe {
        get(event, "fencing_token", value_out, |e| {
            e.rec.fencing_token.unwrap_or_default()
        })
    }
}
/// Reads why the lock of a "lock_lost" event was lost.
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_reason(
    event: *const tenure_event,
    value_out: *mut tenure_lost_reason,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe {
        get(event, "reason", value_out, |e| {
            e.rec.reason.map_or(tenure_lost_reason::None, Into::into)
        })
    }
}
/// Reads the election name of a "master_changed" event (valid until the callback returns).
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_election(
    event: *const tenure_event,
    value_out: *mut *const c_char,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "election", value_out, |e| e.text("election")) }
}
/// Reads the new master's candidate id of a "master_changed" event: NULL when the
/// election has no master (valid until the callback returns).
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_master_id(
    event: *const tenure_event,
    value_out: *mut *const c_char,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "master", value_out, |e| e.text("master_id")) }
}
/// Reads the new master's endpoint (`host:port`) of a "master_changed" event: NULL when
/// there is no master or it gave no endpoint (valid until the callback returns).
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_endpoint(
    event: *const tenure_event,
    value_out: *mut *const c_char,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "master", value_out, |e| e.text("endpoint")) }
}
/// Reads the epoch of a "master_changed" event: it strictly increases for an election
/// and serves as the master's fencing token.
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_epoch(
    event: *const tenure_event,
    value_out: *mut u64,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe {
        get(event, "epoch", value_out, |e| {
            e.rec.epoch.unwrap_or_default()
        })
    }
}
/// Reads the peer of a "peer_suspected" or "peer_recovered" event (valid until the
/// callback returns).
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_peer(
    event: *const tenure_event,
    value_out: *mut *const c_char,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "peer", value_out, |e| e.text("peer")) }
}
/// Reads the network of a "network_down", "network_up", "peer_suspected" or
/// "peer_recovered" event. For the peer events it is NULL when the event is about the
/// peer's process rather than one network path (valid until the callback returns).
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_network(
    event: *const tenure_event,
    value_out: *mut *const c_char,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "network", value_out, |e| e.text("network")) }
}
/// Reads what a "peer_suspected" event suspects: the process or a network path.
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_suspicion(
    event: *const tenure_event,
    value_out: *mut tenure_suspicion_kind,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe {
        get(event, "suspicion", value_out, |e| {
            suspicion(e.rec.suspicion)
        })
    }
}
/// Reads the group of a "view_changed", "member_promoted" or "member_removed" event
/// (valid until the callback returns).
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_group(
    event: *const tenure_event,
    value_out: *mut *const c_char,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "group", value_out, |e| e.text("group")) }
}
/// Reads the member of a "member_promoted" or "member_removed" event (valid until the
/// callback returns).
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_member(
    event: *const tenure_event,
    value_out: *mut *const c_char,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "member", value_out, |e| e.text("member")) }
}
/// Reads the view number of a "view_changed" event; it strictly increases for a group.
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_view(
    event: *const tenure_event,
    value_out: *mut u64,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "view", value_out, |e| e.rec.view.unwrap_or_default()) }
}
/// Reads the number of members in the view of a "view_changed" event.
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_member_count(
    event: *const tenure_event,
    value_out: *mut usize,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe { get(event, "members", value_out, |e| e.members.len()) }
}
/// Reads the session id of a "connected" event.
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_session_id(
    event: *const tenure_event,
    value_out: *mut u64,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe {
        get(event, "session", value_out, |e| {
            e.rec.session.unwrap_or_default()
        })
    }
}
/// Reads the time left until the client's deadline, in milliseconds, of a "jeopardy"
/// event.
///
/// Returns `TENURE_STATUS_NULL_ARGUMENT` when `event` or `value_out` is NULL and
/// `TENURE_STATUS_WRONG_EVENT_TYPE` when the event is of another kind; `*value_out` is
/// written only on success. Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_remaining_ms(
    event: *const tenure_event,
    value_out: *mut u64,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe {
        get(event, "remaining", value_out, |e| {
            remaining_ms(e.rec.remaining)
        })
    }
}

/// Reads member `index` (0-based, in id order) of the view of a "view_changed" event: its id
/// (valid until the callback returns) and whether it is a full member (false: probationary).
///
/// Returns `TENURE_STATUS_INVALID_ARGUMENT` when `index` is not below the member count,
/// `TENURE_STATUS_WRONG_EVENT_TYPE` for another kind of event and
/// `TENURE_STATUS_NULL_ARGUMENT` for a NULL pointer; outputs are written only on success.
/// Threads: inside the callback the event was passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_member_at(
    event: *const tenure_event,
    index: usize,
    id_out: *mut *const c_char,
    full_out: *mut bool,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let e = unsafe { self::event(event, &["members"]) }?;
        let id_out = out(id_out, "id_out")?;
        let full_out = out(full_out, "full_out")?;
        let (id, full) = e.members.get(index).ok_or_else(|| {
            fail(
                tenure_status::InvalidArgument,
                format!("member index {index} is not below {}", e.members.len()),
            )
        })?;
        // SAFETY: checked non-NULL.
        unsafe {
            id_out.write(id.as_ptr());
            full_out.write(*full);
        }
        Ok(())
    })
}

/// Reads the incarnation token of a "connected" event (the service's incarnation) or a
/// "data_lost" event (the new one), as two 64-bit halves.
///
/// Errors and outputs as for the other getters. Threads: inside the callback the event was
/// passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_incarnation(
    event: *const tenure_event,
    high_out: *mut u64,
    low_out: *mut u64,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let e = unsafe { self::event(event, &["incarnation", "new_incarnation"]) }?;
        let (h, l) = (out(high_out, "high_out")?, out(low_out, "low_out")?);
        let inc = e
            .rec
            .incarnation
            .or(e.rec.new_incarnation)
            .unwrap_or_default();
        let (hi, lo) = split_u128(inc);
        // SAFETY: checked non-NULL.
        unsafe {
            h.write(hi);
            l.write(lo);
        }
        Ok(())
    })
}

/// Reads the incarnation the client knew before a "data_lost" event, as two 64-bit halves.
///
/// Errors and outputs as for the other getters. Threads: inside the callback the event was
/// passed to.
///
/// # Safety
///
/// `event` must be an event passed to a `call` that is still running.
#[no_mangle]
pub unsafe extern "C" fn tenure_event_old_incarnation(
    event: *const tenure_event,
    high_out: *mut u64,
    low_out: *mut u64,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let e = unsafe { self::event(event, &["old_incarnation"]) }?;
        let (h, l) = (out(high_out, "high_out")?, out(low_out, "low_out")?);
        let (hi, lo) = split_u128(e.rec.old_incarnation.unwrap_or_default());
        // SAFETY: checked non-NULL.
        unsafe {
            h.write(hi);
            l.write(lo);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn text(p: *const c_char) -> &'static str {
        // SAFETY: the functions under test return static NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    }

    #[test]
    fn lost_reason_names_are_the_cores() {
        for r in [
            LostReason::SessionExpired,
            LostReason::Released,
            LostReason::DataLost,
            LostReason::ClientClosed,
        ] {
            let c = tenure_lost_reason::from(r);
            assert_eq!(text(tenure_lost_reason_str(c as u32)), r.as_str());
        }
    }

    #[test]
    fn every_core_event_has_a_kind_and_its_vocabulary_name() {
        let events = [
            Event::SessionConnected {
                session: 1,
                incarnation: 2,
            },
            Event::SessionJeopardy {
                remaining: std::time::Duration::from_millis(5),
            },
            Event::SessionRecovered,
            Event::SessionExpired,
            Event::LockAcquired {
                name: "l".into(),
                token: 3,
            },
            Event::LockLost {
                name: "l".into(),
                token: 3,
                reason: LostReason::Released,
            },
            Event::DataLost { old: 1, new: 2 },
            Event::MasterChanged {
                election: "e".into(),
                epoch: 4,
                master: None,
            },
            Event::PeerSuspected {
                peer: "p".into(),
                kind: SuspicionKind::Network,
                network: Some("n".into()),
            },
            Event::PeerRecovered {
                peer: "p".into(),
                network: None,
            },
            Event::NetworkDown {
                network: "n".into(),
            },
            Event::NetworkUp {
                network: "n".into(),
            },
            Event::ViewChanged {
                group: "g".into(),
                view: 5,
                members: vec![],
            },
            Event::MemberPromoted {
                group: "g".into(),
                member: "m".into(),
            },
            Event::MemberRemoved {
                group: "g".into(),
                member: "m".into(),
            },
        ];
        for ev in &events {
            let e = tenure_event::from_core(ev);
            assert_ne!(e.kind, tenure_event_type::Unknown, "{ev:?}");
            // SAFETY: a live event.
            let name = text(unsafe { tenure_event_name(&e) });
            assert_eq!(name, ev.kind());
            assert_eq!(text(tenure_event_type_str(e.kind as u32)), ev.kind());
        }
    }

    #[test]
    fn getters_check_the_kind_and_write_only_on_success() {
        let e = tenure_event::from_core(&Event::LockLost {
            name: "jobs/x".into(),
            token: 42,
            reason: LostReason::SessionExpired,
        });
        let mut token = 0u64;
        let mut epoch = 7u64;
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: a live event and valid outputs.
        unsafe {
            assert_eq!(
                tenure_event_fencing_token(&e, &mut token),
                tenure_status::Ok
            );
            assert_eq!(tenure_event_lock_name(&e, &mut name), tenure_status::Ok);
            assert_eq!(
                tenure_event_epoch(&e, &mut epoch),
                tenure_status::WrongEventType
            );
            assert_eq!(
                tenure_event_fencing_token(&e, std::ptr::null_mut()),
                tenure_status::NullArgument
            );
        }
        assert_eq!(token, 42);
        assert_eq!(epoch, 7);
        assert_eq!(text(name), "jobs/x");
    }
}
