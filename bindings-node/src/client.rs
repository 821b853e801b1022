//! The client, its session events and its locks.

use crate::election::{NativeElection, NativeObserver};
use crate::error::{coded, conv, to_napi, INVALID_ARGUMENT};
use crate::events::JsCallback;
use crate::events::{MasterStateValue, RawArray, Relay, ViewValue};
use crate::group::{NativeGroupWatch, NativeMembership};
use crate::promises::{pending_promise, ready_promise};
use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{sys, Env, JsValue};
use napi_derive::napi;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenure::client::{timeout_from_secs, Candidacy, JoinOptions};
use tenure::events::Subscription;
use tenure::proto::StatusInfo;
use tenure::retry::{Exponential, Fixed, InverseExponential, RetryPolicy};
use tenure::Call;
use tenure::{Client, ClientConfig, Lock, SessionState};

/// Longest wait, at close, for the events of a client or detector to reach JavaScript.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Client settings, as checked by the TypeScript layer; absent fields keep the core's
/// defaults.
#[napi(object)]
pub struct NativeClientOptions {
    /// Session TTL in milliseconds.
    pub session_ttl_ms: Option<f64>,
    /// Clock-drift allowance as a fraction of the TTL.
    pub drift_ratio: Option<f64>,
    /// Safety margin taken off the client's deadline, in milliseconds.
    pub safety_margin_ms: Option<f64>,
    /// Longest wait for one connection attempt, in milliseconds.
    pub connect_timeout_ms: Option<f64>,
    /// Open a new session after the old one expired.
    pub reopen: Option<bool>,
    /// A name shown in logs and `tenure status`.
    pub client_name: Option<String>,
    /// `"inverseExponential"`, `"exponential"` or `"fixed"`.
    pub retry: Option<String>,
}

/// Milliseconds (from JavaScript) to a duration, refusing negative, NaN and absurd values.
pub fn millis(what: &str, ms: f64) -> napi::Result<Duration> {
    timeout_from_secs(ms / 1000.0).map_err(|e| coded(INVALID_ARGUMENT, &format!("{what}: {e}")))
}

fn config(endpoints: Vec<String>, o: NativeClientOptions) -> napi::Result<ClientConfig> {
    let mut c = ClientConfig::new(endpoints);
    if let Some(ms) = o.session_ttl_ms {
        c.session_ttl = millis("sessionTtlMs", ms)?;
    }
    if let Some(r) = o.drift_ratio {
        c.drift_ratio = r;
    }
    if let Some(ms) = o.safety_margin_ms {
        c.safety_margin = Some(millis("safetyMarginMs", ms)?);
    }
    if let Some(ms) = o.connect_timeout_ms {
        c.connect_timeout = millis("connectTimeoutMs", ms)?;
    }
    if let Some(r) = o.reopen {
        c.reopen = r;
    }
    if let Some(n) = o.client_name {
        c.client_name = n;
    }
    if let Some(p) = o.retry {
        let policy: Arc<dyn RetryPolicy> = match p.as_str() {
            "inverseExponential" => Arc::new(InverseExponential::default()),
            "exponential" => Arc::new(Exponential::default()),
            "fixed" => Arc::new(Fixed::default()),
            _ => {
                return Err(coded(
                    INVALID_ARGUMENT,
                    &format!("retry policy {p:?} is not inverseExponential, exponential or fixed"),
                ))
            }
        };
        c.retry = policy;
    }
    Ok(c)
}

/// A connected client (private; wrapped by `Client` in the TypeScript layer).
#[napi]
pub struct NativeClient {
    client: Client,
    /// The subscription feeding the client's events to JavaScript. At `close` it is not
    /// closed but left to end by itself once the closed client's driver is gone, so that the
    /// events of the close (locks lost with reason `client_closed`) are still delivered;
    /// then it is dropped.
    sub: Arc<Mutex<Option<Subscription>>>,
    relay: Arc<Relay>,
    closing: AtomicBool,
}

/// Connects to the first reachable endpoint and opens a session; `on_event` receives every
/// event of the client. Resolves to a [`NativeClient`].
#[napi(ts_return_type = "Promise<NativeClient>")]
pub fn connect_client<'env>(
    env: &'env Env,
    endpoints: Vec<String>,
    options: NativeClientOptions,
    on_event: JsCallback<'_>,
) -> napi::Result<Object<'env>> {
    let cfg = config(endpoints, options)?;
    let relay = Relay::new(on_event)?;
    pending_promise(env, Client::connect_start(cfg), move |r| {
        let client = r.map_err(conv)?;
        let sub = match client.subscribe_with(relay.callback()) {
            Ok(s) => s,
            Err(e) => {
                // Closed, not waited for: this runs on the client's I/O thread.
                drop(client.close_start());
                return Err(conv(e));
            }
        };
        Ok(NativeClient {
            client,
            sub: Arc::new(Mutex::new(Some(sub))),
            relay: Arc::new(relay),
            closing: AtomicBool::new(false),
        })
    })
}

fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Connected => "connected",
        SessionState::Jeopardy => "jeopardy",
        SessionState::Expired => "expired",
        SessionState::Closed => "closed",
    }
}

#[napi]
impl NativeClient {
    /// The current session id (0 while none is open).
    #[napi(getter)]
    pub fn session_id(&self) -> u64 {
        self.client.session_id()
    }

    /// The service's incarnation token as learnt at the last connection.
    #[napi(getter)]
    pub fn incarnation(&self) -> u128 {
        self.client.incarnation()
    }

    /// `"connected"`, `"jeopardy"`, `"expired"` or `"closed"`.
    #[napi(getter)]
    pub fn state(&self) -> &'static str {
        state_name(self.client.state())
    }

    /// True while the session's lease is valid by the client's own deadline.
    #[napi(getter)]
    pub fn connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Events dropped because JavaScript fell too far behind, plus those the core dropped.
    #[napi(getter)]
    pub fn dropped_events(&self) -> f64 {
        let core = self.sub.lock().as_ref().map_or(0, |s| s.dropped());
        (core + self.relay.dropped()) as f64
    }

    /// Waits up to `timeout_ms` for the lock `name`.
    #[napi(ts_return_type = "Promise<NativeLock>")]
    pub fn lock<'env>(
        &self,
        env: &'env Env,
        name: String,
        timeout_ms: f64,
    ) -> napi::Result<Object<'env>> {
        let timeout = millis("timeoutMs", timeout_ms)?;
        // The core keeps the timeout: no thread waits for this lock.
        pending_promise(env, self.client.lock_start(&name, timeout), |r| {
            let lock = r.map_err(|e| to_napi(e, Call::Lock))?;
            Ok(NativeLock::new(lock))
        })
    }

    /// Takes the lock `name` if it is free; resolves to null when another session holds it.
    #[napi(ts_return_type = "Promise<NativeLock | null>")]
    pub fn try_lock<'env>(&self, env: &'env Env, name: String) -> napi::Result<Object<'env>> {
        pending_promise(env, self.client.try_lock_start(&name), |r| {
            let lock = r.map_err(|e| to_napi(e, Call::Lock))?;
            Ok(lock.map(NativeLock::new))
        })
    }

    /// Administrative: releases the lock `name` whoever holds it.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn revoke<'env>(&self, env: &'env Env, name: String) -> napi::Result<Object<'env>> {
        pending_promise(env, self.client.revoke_start(&name), |r| r.map_err(conv))
    }

    /// The service's sessions, locks, elections and groups.
    #[napi(ts_return_type = "Promise<NativeStatus>")]
    pub fn status<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let started = self.client.status_start();
        pending_promise(env, started, |r| r.map(StatusValue).map_err(conv))
    }

    /// Registers this client as a candidate of `election`.
    #[napi(ts_return_type = "Promise<NativeElection>")]
    pub fn campaign<'env>(
        &self,
        env: &'env Env,
        election: String,
        id: String,
        priority: i64,
        endpoint: Option<String>,
        preempt: bool,
    ) -> napi::Result<Object<'env>> {
        let c = Candidacy {
            id,
            priority,
            endpoint,
            preempt,
        };
        pending_promise(env, self.client.campaign_start(&election, c), |r| {
            let e = r.map_err(conv)?;
            Ok(NativeElection::new(e))
        })
    }

    /// Observes `election` without being a candidate.
    #[napi(ts_return_type = "Promise<NativeObserver>")]
    pub fn observe<'env>(&self, env: &'env Env, election: String) -> napi::Result<Object<'env>> {
        pending_promise(env, self.client.observe_start(&election), |r| {
            let o = r.map_err(conv)?;
            Ok(NativeObserver::new(o))
        })
    }

    /// Asks for `election`'s master, waiting up to `timeout_ms`.
    #[napi(ts_return_type = "Promise<NativeMasterState>")]
    pub fn request_election<'env>(
        &self,
        env: &'env Env,
        election: String,
        timeout_ms: f64,
    ) -> napi::Result<Object<'env>> {
        let timeout = millis("timeoutMs", timeout_ms)?;
        let started = self.client.request_election_start(&election, timeout);
        pending_promise(env, started, |r| r.map(MasterStateValue).map_err(conv))
    }

    /// Joins `group` as a probationary member.
    #[napi(ts_return_type = "Promise<NativeMembership>")]
    pub fn join<'env>(
        &self,
        env: &'env Env,
        group: String,
        id: String,
        probation_ms: f64,
        needs_check: bool,
    ) -> napi::Result<Object<'env>> {
        let probation = millis("probationMs", probation_ms)?;
        let mut o = JoinOptions::new(id, probation);
        o.needs_check = needs_check;
        pending_promise(env, self.client.join_start(&group, o), |r| {
            let m = r.map_err(conv)?;
            Ok(NativeMembership::new(m))
        })
    }

    /// Watches `group`'s views.
    #[napi(ts_return_type = "Promise<NativeGroupWatch>")]
    pub fn watch_group<'env>(&self, env: &'env Env, group: String) -> napi::Result<Object<'env>> {
        pending_promise(env, self.client.watch_group_start(&group), |r| {
            let w = r.map_err(conv)?;
            Ok(NativeGroupWatch::new(w))
        })
    }

    /// Replaces the failed member `failed` by the probationary `probationary` in one view
    /// change; resolves to the new view.
    #[napi(ts_return_type = "Promise<NativeView>")]
    pub fn replace<'env>(
        &self,
        env: &'env Env,
        group: String,
        failed: String,
        probationary: String,
    ) -> napi::Result<Object<'env>> {
        let started = self.client.replace_start(&group, &failed, &probationary);
        pending_promise(env, started, |r| r.map(ViewValue).map_err(conv))
    }

    /// Closes the session; held locks are reported lost with reason `client_closed`. Once
    /// every event of the client was handed to JavaScript, a `close` message follows them.
    /// Idempotent (the `close` message comes once).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let relay = self.relay.clone();
        let sub = self.sub.clone();
        let first = !self.closing.swap(true, Ordering::AcqRel);
        pending_promise(env, Ok(self.client.close_start()), move |_| {
            if first {
                // The driver is gone, so the dispatcher ends once it has passed on the events
                // of the close (locks lost with reason `client_closed`).
                relay.finish(DRAIN_LIMIT);
                let s = sub.lock().take();
                drop(s);
            }
            Ok(())
        })
    }
}

/// A held lock (private; wrapped by `Lock` in the TypeScript layer).
#[napi]
pub struct NativeLock {
    lock: Mutex<Option<Lock>>,
    name: String,
    token: u64,
}

impl NativeLock {
    fn new(lock: Lock) -> Self {
        NativeLock {
            name: lock.name().to_string(),
            token: lock.fencing_token(),
            lock: Mutex::new(Some(lock)),
        }
    }
}

#[napi]
impl NativeLock {
    /// The lock's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The fencing token of this grant.
    #[napi(getter)]
    pub fn fencing_token(&self) -> u64 {
        self.token
    }

    /// True while the lock is held (false from the client's deadline on).
    #[napi(getter)]
    pub fn held(&self) -> bool {
        self.lock.lock().as_ref().is_some_and(|l| l.is_held())
    }

    /// Why the lock was lost, once it was: `"session_expired"`, `"released"`, `"data_lost"`
    /// or `"client_closed"`.
    #[napi(getter)]
    pub fn lost_reason(&self) -> Option<&'static str> {
        self.lock
            .lock()
            .as_ref()
            .and_then(|l| l.lost_reason())
            .map(|r| r.as_str())
    }

    /// Releases the lock and waits for the server to confirm. Rejects with
    /// `ERR_TENURE_LOCK_LOST` when it had been lost; resolves at once when already released.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn release<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        match self.lock.lock().take() {
            Some(l) => pending_promise(env, l.release_start(), |r| {
                r.map_err(|e| to_napi(e, Call::Other))
            }),
            None => ready_promise(env, Ok(())),
        }
    }
}

/// The service's state as `client.status()` resolves it.
pub struct StatusValue(pub StatusInfo);

impl ToNapiValue for StatusValue {
    unsafe fn to_napi_value(raw: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(raw);
        let s = val.0;
        let mut o = Object::new(&env)?;
        o.set("incarnation", s.incarnation)?;
        o.set("revision", s.revision)?;
        let mut sessions = Vec::with_capacity(s.sessions.len());
        for x in s.sessions {
            let mut e = Object::new(&env)?;
            e.set("id", x.id)?;
            e.set("ttlMs", x.ttl_ms as f64)?;
            sessions.push(e.raw());
        }
        o.set("sessions", RawArray(sessions))?;
        let mut locks = Vec::with_capacity(s.locks.len());
        for x in s.locks {
            let mut e = Object::new(&env)?;
            e.set("name", x.name)?;
            e.set("holder", x.holder)?;
            e.set("fencingToken", x.token)?;
            e.set("waiters", x.waiters)?;
            locks.push(e.raw());
        }
        o.set("locks", RawArray(locks))?;
        let mut elections = Vec::with_capacity(s.elections.len());
        for x in s.elections {
            let mut e = Object::new(&env)?;
            e.set("name", x.name)?;
            let st = tenure::client::MasterState {
                epoch: x.master.epoch,
                master: x
                    .master
                    .master
                    .map(|(id, endpoint)| tenure::Master { id, endpoint }),
            };
            e.set("epoch", st.epoch)?;
            e.set(
                "master",
                st.master.map(|m| crate::events::MasterValue {
                    id: m.id,
                    endpoint: m.endpoint,
                    epoch: st.epoch,
                }),
            )?;
            let mut cands = Vec::with_capacity(x.candidates.len());
            for (id, priority, session) in x.candidates {
                let mut c = Object::new(&env)?;
                c.set("id", id)?;
                c.set("priority", priority)?;
                c.set("session", session)?;
                cands.push(c.raw());
            }
            e.set("candidates", RawArray(cands))?;
            elections.push(e.raw());
        }
        o.set("elections", RawArray(elections))?;
        let mut groups = Vec::with_capacity(s.groups.len());
        for (name, v) in s.groups {
            let mut e = Object::new(&env)?;
            e.set("name", name)?;
            e.set("view", v.view)?;
            let members: Vec<tenure::Member> = v
                .members
                .into_iter()
                .map(|(id, full)| tenure::Member { id, full })
                .collect();
            e.set("members", crate::events::members_value(members))?;
            groups.push(e.raw());
        }
        o.set("groups", RawArray(groups))?;
        Ok(o.raw())
    }
}
