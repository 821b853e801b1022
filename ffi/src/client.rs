//! Clients: `tenure_client_builder`, `tenure_client`, `tenure_subscription` and
//! `tenure_service_status`.

use crate::event::{tenure_callback, OwnedCallback};
use crate::handle::{self, CHandle, Kind};
use crate::status::{fail, status, tenure_status, unit, value, R};
use crate::util::{cstr, millis, out, split_u128, write_str};
use std::ffi::c_char;
use tenure::client::MAX_TIMEOUT;
use tenure::server::state::{MAX_TTL_MS, MIN_TTL_MS};

/// Configuration of a client, built before `tenure_client_connect`. Opaque.
pub struct tenure_client_builder {
    _private: [u8; 0],
}

impl CHandle for tenure_client_builder {
    type Obj = tenure::ClientConfig;
    const KIND: Kind = Kind::ClientBuilder;
}

/// A connection to the tenure service with one session, kept alive by heartbeats on a
/// library thread. Opaque.
pub struct tenure_client {
    _private: [u8; 0],
}

impl CHandle for tenure_client {
    type Obj = tenure::Client;
    const KIND: Kind = Kind::Client;
}

/// A registration of a callback: every event of a client (`tenure_client_subscribe`) or of a
/// failure detector (`tenure_detector_subscribe`), the master changes of an election
/// (`tenure_client_observe`) or the views of a group (`tenure_client_watch_group`). Opaque.
pub struct tenure_subscription {
    _private: [u8; 0],
}

impl CHandle for tenure_subscription {
    type Obj = SubObj;
    const KIND: Kind = Kind::Subscription;
}

/// A snapshot of the service's state (`tenure_client_status`). Opaque.
pub struct tenure_service_status {
    _private: [u8; 0],
}

impl CHandle for tenure_service_status {
    type Obj = tenure::proto::StatusInfo;
    const KIND: Kind = Kind::ServiceStatus;
}

/// The session state as the client sees it (`tenure_client_state()`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tenure_session_state {
    /// Heartbeats are answered.
    Connected = 1,
    /// A heartbeat failed; retrying until the deadline.
    Jeopardy = 2,
    /// The session expired; a new one is being opened (unless reopening is off).
    Expired = 3,
    /// The client is closed.
    Closed = 4,
}

/// The retry schedule of a session in jeopardy (`tenure_client_builder_set_retry_policy()`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tenure_retry_policy {
    /// Inverse exponential backoff (the default): early retries far apart, later ones closer
    /// together as the lease nears its end.
    InverseExponential = 0,
    /// Ordinary exponential backoff.
    Exponential = 1,
    /// A fixed interval between retries.
    Fixed = 2,
}

/// The object behind a `tenure_subscription`. Dropping it ends the registration (and waits
/// for a running callback, except from inside it).
pub(crate) enum SubObj {
    /// A client's or a detector's subscription; only dropped.
    Client(#[allow(dead_code)] tenure::Subscription),
    Observer(tenure::client::Observer),
    Watch(tenure::client::GroupWatch),
}

/// The body of the functions that open a subscription by name on a client
/// (`tenure_client_observe`, `tenure_client_watch_group`): takes `cb` over whatever the
/// result, checks the arguments, `open`s the handle, gives it the callback and publishes
/// the subscription as `wrap` makes it.
///
/// # Safety
///
/// `name` must be NULL or NUL-terminated; `sub_out` NULL or writable; `cb` must follow
/// `tenure_callback`'s rules.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn subscribe_named<H: tenure::client::WatchHandle>(
    client: *mut tenure_client,
    name: *const c_char,
    name_what: &str,
    cb: tenure_callback,
    cb_what: &str,
    sub_out: *mut *mut tenure_subscription,
    open: impl FnOnce(&tenure::Client, &str) -> tenure::Result<H>,
    wrap: impl FnOnce(H) -> SubObj,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(cb);
        let o = out(sub_out, "sub_out")?;
        // SAFETY: the caller's contract.
        let name = unsafe { cstr(name, name_what) }?;
        let c = client_of(client)?;
        let f = cb.into_rust().ok_or_else(|| {
            fail(
                tenure_status::NullArgument,
                format!("{cb_what}.call is NULL"),
            )
        })?;
        let h = open(&c, name)?;
        h.on_change(tenure::Handler::dispatched(f));
        publish(wrap(h), 0, o)
    })
}

fn builder_with<T>(
    b: *mut tenure_client_builder,
    f: impl FnOnce(&mut tenure::ClientConfig) -> R<T>,
) -> R<T> {
    handle::with(b, |c| f(c))?
}

/// The core client of a handle (a clone sharing the session).
pub(crate) fn client_of(c: *const tenure_client) -> R<tenure::Client> {
    handle::with(c, |c| c.clone())
}

/// Runs a non-blocking `f` on the core client of a handle, with its slot locked (no clone).
fn with_client<T>(c: *const tenure_client, f: impl FnOnce(&tenure::Client) -> T) -> R<T> {
    handle::with(c, |c| f(c))
}

/// Stores a new handle and writes it to `o`.
pub(crate) fn publish<H: CHandle>(obj: H::Obj, fast: u64, o: *mut *mut H) -> R<()> {
    let h = handle::insert::<H>(obj, fast)?;
    // SAFETY: every caller checked `o` non-NULL with `util::out`.
    unsafe { o.write(h) };
    Ok(())
}

/// Creates a client builder with no endpoint and the defaults: session TTL 10 s, connect
/// timeout 1 s, a new session opened automatically after one expired, client name
/// `pid-<pid>`.
///
/// On success `*builder_out` receives a builder that the caller owns: pass it to
/// `tenure_client_connect` (which consumes it) or free it with `tenure_client_builder_free`.
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`. Threads: any.
///
/// # Safety
///
/// `builder_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_new(
    builder_out: *mut *mut tenure_client_builder,
) -> tenure_status {
    status(|| {
        let o = out(builder_out, "builder_out")?;
        let cfg = tenure::ClientConfig::new(Vec::<String>::new());
        publish(cfg, 0, o)
    })
}

/// Adds a server endpoint (`host:port`); endpoints are tried in the order added. At least
/// one is needed. `etcd://host:port` (or several, comma-separated) names members of an etcd
/// cluster instead: the etcd backend (see the README); the first endpoint's scheme applies to
/// all.
///
/// The string is copied. Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (empty), `TENURE_STATUS_LIMIT` (more than 64 endpoints),
/// `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// `endpoint` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_add_endpoint(
    builder: *mut tenure_client_builder,
    endpoint: *const c_char,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let e = unsafe { cstr(endpoint, "endpoint") }?;
        if e.is_empty() {
            return Err(fail(tenure_status::InvalidArgument, "endpoint is empty"));
        }
        builder_with(builder, |c| {
            if c.endpoints.len() >= 64 {
                return Err(fail(tenure_status::Limit, "more than 64 endpoints"));
            }
            c.endpoints.push(e.to_string());
            Ok(())
        })
    })
}

/// Sets the session TTL in milliseconds (default 10000). The server expires the session when
/// no heartbeat arrived for this long; the client sends one every TTL/3.
///
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` outside 50 ..= 86400000 ms,
/// `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_set_session_ttl_ms(
    builder: *mut tenure_client_builder,
    ttl_ms: u64,
) -> tenure_status {
    status(|| {
        if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
            return Err(fail(
                tenure_status::InvalidArgument,
                format!("session TTL {ttl_ms} ms is outside {MIN_TTL_MS} ..= {MAX_TTL_MS} ms"),
            ));
        }
        builder_with(builder, |c| {
            c.session_ttl = millis(ttl_ms);
            Ok(())
        })
    })
}

/// Sets the longest wait for one connection attempt, in milliseconds (default 1000).
///
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` for 0 or more than a year,
/// `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_set_connect_timeout_ms(
    builder: *mut tenure_client_builder,
    timeout_ms: u64,
) -> tenure_status {
    status(|| {
        if timeout_ms == 0 || millis(timeout_ms) > MAX_TIMEOUT {
            return Err(fail(
                tenure_status::InvalidArgument,
                format!("connect timeout {timeout_ms} ms must be between 1 ms and a year"),
            ));
        }
        builder_with(builder, |c| {
            c.connect_timeout = millis(timeout_ms);
            Ok(())
        })
    })
}

/// Sets the safety margin taken off the client's lease deadline besides the drift allowance,
/// in milliseconds (default: 50 ms, at most a tenth of the TTL): locks are reported lost that
/// much earlier, which leaves the lost callback time to run before the server can grant the
/// lock to another client on a loaded machine. It must stay under half the TTL (checked by
/// `tenure_client_connect`).
///
/// Errors: `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_set_safety_margin_ms(
    builder: *mut tenure_client_builder,
    margin_ms: u64,
) -> tenure_status {
    status(|| {
        builder_with(builder, |c| {
            c.safety_margin = Some(millis(margin_ms.min(MAX_TTL_MS)));
            Ok(())
        })
    })
}

/// Chooses the retry schedule used after a heartbeat failed: a `tenure_retry_policy` value
/// (`TENURE_RETRY_POLICY_INVERSE_EXPONENTIAL`, the default, `TENURE_RETRY_POLICY_EXPONENTIAL`
/// or `TENURE_RETRY_POLICY_FIXED`), each with its default parameters.
///
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` for another value, `TENURE_STATUS_INVALID_HANDLE`.
/// Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_set_retry_policy(
    builder: *mut tenure_client_builder,
    policy: u32,
) -> tenure_status {
    status(|| {
        use std::sync::Arc;
        use tenure::retry::{Exponential, Fixed, InverseExponential, RetryPolicy};
        let p: Arc<dyn RetryPolicy> = match policy {
            0 => Arc::new(InverseExponential::default()),
            1 => Arc::new(Exponential::default()),
            2 => Arc::new(Fixed::default()),
            v => {
                return Err(fail(
                    tenure_status::InvalidArgument,
                    format!("retry policy {v} is not a tenure_retry_policy value"),
                ))
            }
        };
        builder_with(builder, |c| {
            c.retry = p;
            Ok(())
        })
    })
}

/// Chooses whether a new session is opened automatically after the old one expired (default
/// true). Locks are never re-taken.
///
/// Errors: `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_set_reopen(
    builder: *mut tenure_client_builder,
    reopen: bool,
) -> tenure_status {
    status(|| {
        builder_with(builder, |c| {
            c.reopen = reopen;
            Ok(())
        })
    })
}

/// Sets the name shown for this client in logs and `tenure status` (default `pid-<pid>`).
///
/// The string is copied. Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (longer than 256 bytes), `TENURE_STATUS_INVALID_HANDLE`.
/// Threads: any, one at a time per builder.
///
/// # Safety
///
/// `name` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_set_client_name(
    builder: *mut tenure_client_builder,
    name: *const c_char,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { cstr(name, "name") }?;
        tenure::proto::Text::ClientName
            .check(n)
            .map_err(|m| fail(tenure_status::InvalidArgument, m))?;
        builder_with(builder, |c| {
            c.client_name = n.to_string();
            Ok(())
        })
    })
}

/// Delivers every event of the client to `on_event`, from the first `TENURE_EVENT_TYPE_CONNECTED`
/// on (a subscription made with `tenure_client_subscribe` after `tenure_client_connect`
/// returns cannot see that first event). Same events, order and thread rules as
/// `tenure_client_subscribe`. The builder owns the callback; the client takes it over on
/// connect, and its `drop` runs once: when the builder is freed unconsumed, when a later call
/// replaces it, when `tenure_client_connect` fails, or after the client is closed.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT` (`on_event.call` is NULL; its `drop` has run),
/// `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// `on_event` must follow the rules of `tenure_callback` in this header.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_set_on_event(
    builder: *mut tenure_client_builder,
    on_event: tenure_callback,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(on_event);
        // Take the configuration out, so that a callback it held is dropped (running the
        // user's `drop`) outside the handle's lock.
        let cfg = builder_with(builder, |c| {
            Ok(std::mem::replace(
                c,
                tenure::ClientConfig::new(Vec::<String>::new()),
            ))
        })?;
        let (cfg, result) = match cb.into_rust() {
            Some(f) => (cfg.on_event(f), Ok(())),
            None => (
                cfg,
                Err(fail(tenure_status::NullArgument, "on_event.call is NULL")),
            ),
        };
        builder_with(builder, |c| {
            *c = cfg;
            Ok(())
        })?;
        result
    })
}

/// Frees a client builder that was not passed to `tenure_client_connect`. NULL, and a builder
/// freed or consumed already, are ignored (the latter records a last error). Threads: any.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_builder_free(builder: *mut tenure_client_builder) {
    handle::free(builder);
}

/// Connects to the first endpoint that answers, opens a session and starts keeping it alive
/// on a library thread. Blocks until the session is open or every endpoint failed.
///
/// `builder` is consumed by this call whatever its result, unless the result is
/// `TENURE_STATUS_NULL_ARGUMENT` or `TENURE_STATUS_INVALID_HANDLE`. On success `*client_out`
/// receives a client that the caller owns and frees with `tenure_client_free`.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (no endpoint, inconsistent settings),
/// `TENURE_STATUS_CONNECTION_FAILED`. Threads: any.
///
/// # Safety
///
/// `client_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_connect(
    builder: *mut tenure_client_builder,
    client_out: *mut *mut tenure_client,
) -> tenure_status {
    status(|| {
        let o = out(client_out, "client_out")?;
        let cfg = handle::take(builder)?;
        let client = tenure::Client::connect(cfg)?;
        publish(client, 0, o)
    })
}

/// Closes the session: every held lock is reported lost with reason "client_closed" and released at
/// once, candidacies and memberships end, and later calls on the client (and on its locks,
/// elections and memberships) fail with `TENURE_STATUS_CLOSED`. The handle stays valid and
/// must still be freed. Idempotent.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any,
/// including a tenure callback.
///
/// # Safety
///
/// None beyond passing a client handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_close(client: *mut tenure_client) -> tenure_status {
    status(|| {
        client_of(client)?.close();
        Ok(())
    })
}

/// Closes the client (see `tenure_client_close`) and frees the handle. Handles obtained from
/// it (locks, elections, memberships, subscriptions) stay valid until they are freed; they
/// report the client closed. NULL, and a client freed already, are ignored (the latter
/// records a last error). Threads: any, including a tenure callback.
///
/// # Safety
///
/// None beyond passing a client handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_free(client: *mut tenure_client) {
    unit(|| {
        if !client.is_null() {
            handle::take(client)?.close();
        }
        Ok(())
    })
}

/// Reads the current session id (0 while no session is open).
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`; `*session_out`
/// written only on success. Threads: any.
///
/// # Safety
///
/// `session_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_session_id(
    client: *const tenure_client,
    session_out: *mut u64,
) -> tenure_status {
    status(|| {
        let o = out(session_out, "session_out")?;
        let id = with_client(client, |c| c.session_id())?;
        // SAFETY: checked non-NULL.
        unsafe { o.write(id) };
        Ok(())
    })
}

/// Reads the session state.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`; `*state_out`
/// written only on success. Threads: any.
///
/// # Safety
///
/// `state_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_state(
    client: *const tenure_client,
    state_out: *mut tenure_session_state,
) -> tenure_status {
    status(|| {
        let o = out(state_out, "state_out")?;
        let s = match with_client(client, |c| c.state())? {
            tenure::SessionState::Connected => tenure_session_state::Connected,
            tenure::SessionState::Jeopardy => tenure_session_state::Jeopardy,
            tenure::SessionState::Expired => tenure_session_state::Expired,
            tenure::SessionState::Closed => tenure_session_state::Closed,
        };
        // SAFETY: checked non-NULL.
        unsafe { o.write(s) };
        Ok(())
    })
}

/// True while the session's lease is valid by the client's own deadline (false for a NULL or
/// invalid handle, which records a last error). Threads: any.
///
/// # Safety
///
/// None beyond passing a client handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_is_connected(client: *const tenure_client) -> bool {
    value(false, || with_client(client, |c| c.is_connected()))
}

/// Reads the service's incarnation token as learnt at the last connection (two 64-bit
/// halves).
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`; outputs written only
/// on success. Threads: any.
///
/// # Safety
///
/// `high_out` and `low_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_incarnation(
    client: *const tenure_client,
    high_out: *mut u64,
    low_out: *mut u64,
) -> tenure_status {
    status(|| {
        let (h, l) = (out(high_out, "high_out")?, out(low_out, "low_out")?);
        let (hi, lo) = split_u128(with_client(client, |c| c.incarnation())?);
        // SAFETY: checked non-NULL.
        unsafe {
            h.write(hi);
            l.write(lo);
        }
        Ok(())
    })
}

/// Delivers every event of this client (session, locks, data loss) to `on_event`, from the
/// moment of the call, on the client's dispatcher thread (see
/// `tenure_callback` for the guarantees).
///
/// `on_event` is taken over whatever the result; its `call` must not be NULL. On success
/// `*sub_out` receives the subscription, which the caller frees with
/// `tenure_subscription_free`. Errors: `TENURE_STATUS_NULL_ARGUMENT` (also for a NULL
/// `on_event.call`), `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`. Threads: any.
///
/// # Safety
///
/// `sub_out` must be NULL or writable; `on_event` must follow `tenure_callback`'s rules.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_subscribe(
    client: *mut tenure_client,
    on_event: tenure_callback,
    sub_out: *mut *mut tenure_subscription,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(on_event);
        let o = out(sub_out, "sub_out")?;
        let c = client_of(client)?;
        let f = cb
            .into_rust()
            .ok_or_else(|| fail(tenure_status::NullArgument, "on_event.call is NULL"))?;
        let sub = c.subscribe(f)?;
        publish(SubObj::Client(sub), 0, o)
    })
}

/// Ends a subscription (from `tenure_client_subscribe`, `tenure_detector_subscribe`,
/// `tenure_client_observe` or `tenure_client_watch_group`) and frees it. Its `call` is not invoked again. Outside the
/// callback, this waits for a running `call` to return and for `drop` to finish; from inside
/// its own `call` it returns at once and `drop` runs right after that `call` returns.
/// NULL, and a subscription freed already, are ignored (the latter records a last error).
/// Threads: any, including its own callback.
///
/// # Safety
///
/// None beyond passing a subscription handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_subscription_free(sub: *mut tenure_subscription) {
    handle::free(sub);
}

/// Reads the master of the election a subscription from `tenure_client_observe` observes, as
/// last told: its candidate id into `buf` (NUL-terminated, length without the NUL in
/// `*out_n`) and the epoch of that designation into `*epoch_out`.
///
/// Returns `TENURE_STATUS_NO_MASTER` when the election has no master (nothing written),
/// `TENURE_STATUS_BUFFER_TOO_SMALL` with the length needed in `*out_n` when `len` is too
/// small, `TENURE_STATUS_INVALID_ARGUMENT` for a subscription that is not an observation,
/// `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `buf` must be NULL or point to `len` writable bytes; `out_n`, `epoch_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_subscription_master(
    sub: *const tenure_subscription,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
    epoch_out: *mut u64,
) -> tenure_status {
    status(|| {
        let e = out(epoch_out, "epoch_out")?;
        let st = handle::with(sub, |o| match o {
            SubObj::Observer(obs) => Some(obs.master()),
            _ => None,
        })?
        .ok_or_else(|| {
            fail(
                tenure_status::InvalidArgument,
                "the subscription is not an observation of an election",
            )
        })?;
        // SAFETY: the caller's contract.
        unsafe { crate::election::write_master(&st, buf, len, out_n, e) }
    })
}

/// Reads the view number of the group a subscription from `tenure_client_watch_group`
/// watches, as last told (0 before the first view).
///
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` for a subscription that is not a group watch,
/// `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `view_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_subscription_view(
    sub: *const tenure_subscription,
    view_out: *mut u64,
) -> tenure_status {
    status(|| {
        let o = out(view_out, "view_out")?;
        let v = handle::with(sub, |o| match o {
            SubObj::Watch(w) => Some(w.view().number),
            _ => None,
        })?
        .ok_or_else(|| {
            fail(
                tenure_status::InvalidArgument,
                "the subscription is not a group watch",
            )
        })?;
        // SAFETY: checked non-NULL.
        unsafe { o.write(v) };
        Ok(())
    })
}

/// Asks the service for a snapshot of its state (sessions, locks, elections, groups).
///
/// On success `*status_out` receives a snapshot the caller frees with
/// `tenure_service_status_free`. Errors: `TENURE_STATUS_NULL_ARGUMENT`,
/// `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`, `TENURE_STATUS_CONNECTION_FAILED`
/// (no answer within the TTL, at least 5 s). Threads: any.
///
/// # Safety
///
/// `status_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_status(
    client: *mut tenure_client,
    status_out: *mut *mut tenure_service_status,
) -> tenure_status {
    status(|| {
        let o = out(status_out, "status_out")?;
        let s = client_of(client)?.status()?;
        publish(s, 0, o)
    })
}

fn status_with<T>(
    s: *const tenure_service_status,
    f: impl FnOnce(&tenure::proto::StatusInfo) -> R<T>,
) -> R<T> {
    handle::with(s, |s| f(s))?
}

/// Reads the counts of a service status snapshot: the service's revision (the last fencing
/// token handed out or later), open sessions, held locks, elections and groups. Any output
/// may be NULL when not wanted.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT` (NULL snapshot), `TENURE_STATUS_INVALID_HANDLE`.
/// Threads: any.
///
/// # Safety
///
/// Each output must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_service_status_counts(
    snapshot: *const tenure_service_status,
    revision_out: *mut u64,
    sessions_out: *mut usize,
    locks_out: *mut usize,
    elections_out: *mut usize,
    groups_out: *mut usize,
) -> tenure_status {
    status(|| {
        let v = status_with(snapshot, |s| {
            Ok((
                s.revision,
                s.sessions.len(),
                s.locks.len(),
                s.elections.len(),
                s.groups.len(),
            ))
        })?;
        // SAFETY: each output is NULL or writable (the caller's contract).
        unsafe {
            if !revision_out.is_null() {
                revision_out.write(v.0);
            }
            if !sessions_out.is_null() {
                sessions_out.write(v.1);
            }
            if !locks_out.is_null() {
                locks_out.write(v.2);
            }
            if !elections_out.is_null() {
                elections_out.write(v.3);
            }
            if !groups_out.is_null() {
                groups_out.write(v.4);
            }
        }
        Ok(())
    })
}

/// Reads held lock `index` (0-based) of a service status snapshot: its name into `buf`
/// (NUL-terminated, length without the NUL in `*out_n`), its fencing token and its holder's
/// session id.
///
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` when `index` is not below the lock count,
/// `TENURE_STATUS_BUFFER_TOO_SMALL` (length needed in `*out_n`),
/// `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `buf` must be NULL or point to `len` writable bytes; the other outputs NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_service_status_lock(
    snapshot: *const tenure_service_status,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
    token_out: *mut u64,
    holder_out: *mut u64,
) -> tenure_status {
    status(|| {
        let t = out(token_out, "token_out")?;
        let h = out(holder_out, "holder_out")?;
        let (name, token, holder) = status_with(snapshot, |s| {
            let l = s.locks.get(index).ok_or_else(|| {
                fail(
                    tenure_status::InvalidArgument,
                    format!("lock index {index} is not below {}", s.locks.len()),
                )
            })?;
            Ok((l.name.clone(), l.token, l.holder))
        })?;
        // SAFETY: the caller's contract.
        unsafe { write_str(&name, buf, len, out_n)? };
        // SAFETY: checked non-NULL.
        unsafe {
            t.write(token);
            h.write(holder);
        }
        Ok(())
    })
}

/// Frees a service status snapshot. NULL, and a snapshot freed already, are ignored (the
/// latter records a last error). Threads: any.
///
/// # Safety
///
/// None beyond passing a snapshot handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_service_status_free(snapshot: *mut tenure_service_status) {
    handle::free(snapshot);
}
