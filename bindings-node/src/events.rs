//! Events from the core's threads to JavaScript, and the JavaScript shape of what the core
//! returns.
//!
//! The handler installed in the core is inline ([`tenure::Handler::inline`]): the core's thread
//! that produced an event calls it, and it only hands the event to a napi
//! `ThreadsafeFunction` in non-blocking mode and returns, so no core thread ever waits for
//! JavaScript and no subscription costs a thread. The function
//! is *weak*: it does not keep the event loop alive (the TypeScript layer decides what keeps
//! the process alive), and its queue is bounded ([`QUEUE_CAPACITY`]); when JavaScript falls
//! that far behind, further events are dropped and counted. The JavaScript function is the
//! package's own dispatcher, which catches whatever a user listener throws.
//!
//! Event objects are built from the core's flat record ([`tenure::events::Record`]): `type` is
//! the camelCase event name and every field is the record's canonical name in camelCase
//! (`fencing_token` → `fencingToken`); durations are milliseconds with an `Ms` suffix
//! (`remainingMs`); tokens, epochs, view numbers, session ids and incarnations are `bigint`.
//! Two fields keep the names this package gave them first ([`RENAMED`]): `sessionId` and
//! `kind` (of `peerSuspected`).

use napi::bindgen_prelude::{Function, Object, ToNapiValue, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Env, JsValue, Status};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure::client::{MasterState, View};
use tenure::events::{Field, Member};
use tenure::Event;

/// Events waiting for the JavaScript thread, per subscription, before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 65_536;

/// A JavaScript function given to the native layer as an event listener.
pub type JsCallback<'a> = Function<'a, Unknown<'static>, Unknown<'static>>;

/// The threadsafe function that carries the messages of one subscription.
type EventFn =
    ThreadsafeFunction<Msg, Unknown<'static>, EventValue, Status, false, true, QUEUE_CAPACITY>;

/// What travels to JavaScript.
pub enum Msg {
    /// A core event.
    Event(Event),
    /// The source is closed and every event it produced was handed over before this one
    /// (`{ type: 'close' }`).
    Closed,
}

/// A JavaScript listener reachable from any thread.
pub struct Relay {
    /// Taken out by [`Relay::finish`]: dropping the last reference releases the threadsafe
    /// function, and with it the JavaScript function (and what it keeps reachable).
    tsfn: Mutex<Option<Arc<EventFn>>>,
    dropped: Arc<AtomicU64>,
    /// One strong reference per callback handed to the core, plus this one.
    callbacks: Arc<()>,
}

impl Relay {
    /// Wraps `callback` (called with one event object) for use from core threads. Must run on
    /// the JavaScript thread.
    pub fn new(callback: JsCallback<'_>) -> napi::Result<Relay> {
        let tsfn = callback
            .build_threadsafe_function::<Msg>()
            .weak::<true>()
            .callee_handled::<false>()
            .max_queue_size::<QUEUE_CAPACITY>()
            .build_callback(|ctx| Ok(EventValue(ctx.value)))?;
        Ok(Relay {
            tsfn: Mutex::new(Some(Arc::new(tsfn))),
            dropped: Arc::new(AtomicU64::new(0)),
            callbacks: Arc::new(()),
        })
    }

    fn send_to(tsfn: &EventFn, dropped: &AtomicU64, msg: Msg) {
        match tsfn.call(msg, ThreadsafeFunctionCallMode::NonBlocking) {
            Status::Ok | Status::Closing => {}
            _ => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A handler for the core's `subscribe`/`on_*` methods: inline
    /// ([`tenure::Handler::inline`]), so the core's thread that produced an event queues it
    /// for the JavaScript thread directly, without waiting and with no core dispatcher thread
    /// in between.
    pub fn callback(&self) -> tenure::Handler {
        let tsfn = self.tsfn.lock().clone();
        let dropped = self.dropped.clone();
        let alive = self.callbacks.clone();
        tenure::Handler::inline(move |ev| {
            let _ = &alive;
            if let Some(tsfn) = &tsfn {
                Relay::send_to(tsfn, &dropped, Msg::Event(ev));
            }
        })
    }

    /// Waits up to `limit` for every handler handed out to be dropped (its subscription is
    /// closed), sends the `close` message after them, and lets
    /// the threadsafe function go (it is destroyed once its queue is delivered). Later
    /// callbacks do nothing.
    pub fn finish(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Arc::strong_count(&self.callbacks) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(tsfn) = self.tsfn.lock().take() {
            Relay::send_to(&tsfn, &self.dropped, Msg::Closed);
        }
    }

    /// Events dropped because JavaScript fell [`QUEUE_CAPACITY`] events behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A new plain object.
fn object(env: &Env) -> napi::Result<Object<'_>> {
    Object::new(env)
}

/// Record fields whose JavaScript name is not the camelCase of the canonical one: this
/// package's first names, kept so that code written against them goes on working.
const RENAMED: &[(&str, &str)] = &[("session", "sessionId"), ("suspicion", "kind")];

/// A message as a JavaScript object.
pub struct EventValue(pub Msg);

fn camel(kind: &str) -> String {
    let mut out = String::with_capacity(kind.len());
    let mut up = false;
    for c in kind.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl ToNapiValue for EventValue {
    unsafe fn to_napi_value(raw: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(raw);
        let mut o = object(&env)?;
        let ev = match val.0 {
            Msg::Event(ev) => ev,
            Msg::Closed => {
                o.set("type", "close")?;
                return Ok(o.raw());
            }
        };
        let rec = ev.record();
        o.set("type", camel(rec.kind))?;
        for (name, f) in rec.fields() {
            let key = match RENAMED.iter().find(|(from, _)| *from == name) {
                Some((_, to)) => (*to).to_string(),
                None => camel(name),
            };
            match f {
                Field::U64(v) => o.set(&key, v)?,
                Field::U128(v) => o.set(&key, v)?,
                // Durations are milliseconds in JavaScript, named so.
                Field::Duration(d) => o.set(format!("{key}Ms"), d.as_secs_f64() * 1000.0)?,
                Field::Text(t) => o.set(&key, t)?,
                Field::OptText(t) => o.set(&key, t)?,
                Field::Master(m) => o.set(
                    &key,
                    m.map(|m| MasterValue {
                        id: m.id.clone(),
                        endpoint: m.endpoint.clone(),
                        epoch: rec.epoch.unwrap_or_default(),
                    }),
                )?,
                Field::Members(ms) => o.set(&key, members_value(ms.to_vec()))?,
            }
        }
        Ok(o.raw())
    }
}

/// An election's master: `{ id, endpoint, epoch }`.
pub struct MasterValue {
    /// Candidate id.
    pub id: String,
    /// Its endpoint, or null.
    pub endpoint: Option<String>,
    /// The epoch it was designated at.
    pub epoch: u64,
}

impl ToNapiValue for MasterValue {
    unsafe fn to_napi_value(raw: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(raw);
        let mut o = object(&env)?;
        o.set("id", val.id)?;
        o.set("endpoint", val.endpoint)?;
        o.set("epoch", val.epoch)?;
        Ok(o.raw())
    }
}

/// A master cache: `{ master: { id, endpoint, epoch } | null, epoch }`.
pub struct MasterStateValue(pub MasterState);

impl ToNapiValue for MasterStateValue {
    unsafe fn to_napi_value(raw: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(raw);
        let mut o = object(&env)?;
        let st = val.0;
        o.set("epoch", st.epoch)?;
        o.set(
            "master",
            st.master.map(|m| MasterValue {
                id: m.id,
                endpoint: m.endpoint,
                epoch: st.epoch,
            }),
        )?;
        Ok(o.raw())
    }
}

/// A group member: `{ id, full }`.
pub struct MemberValue(pub Member);

impl ToNapiValue for MemberValue {
    unsafe fn to_napi_value(raw: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(raw);
        let mut o = object(&env)?;
        o.set("id", val.0.id)?;
        o.set("full", val.0.full)?;
        Ok(o.raw())
    }
}

/// Members as an array of `{ id, full }`.
pub fn members_value(members: Vec<Member>) -> Vec<MemberValue> {
    members.into_iter().map(MemberValue).collect()
}

/// A group view: `{ number, members }`.
pub struct ViewValue(pub View);

impl ToNapiValue for ViewValue {
    unsafe fn to_napi_value(raw: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(raw);
        let mut o = object(&env)?;
        o.set("number", val.0.number)?;
        o.set("members", members_value(val.0.members))?;
        Ok(o.raw())
    }
}

/// JavaScript values already made, as an array.
pub struct RawArray(pub Vec<sys::napi_value>);

impl ToNapiValue for RawArray {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let mut arr = std::ptr::null_mut();
        napi::check_status!(sys::napi_create_array_with_length(
            env,
            val.0.len(),
            &mut arr
        ))?;
        for (i, v) in val.0.into_iter().enumerate() {
            napi::check_status!(sys::napi_set_element(env, arr, i as u32, v))?;
        }
        Ok(arr)
    }
}
