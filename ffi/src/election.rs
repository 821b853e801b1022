//! Elections: candidacies (`tenure_election`), observations and election requests.

use crate::client::{
    client_of, publish, subscribe_named, tenure_client, tenure_subscription, SubObj,
};
use crate::event::{tenure_callback, OwnedCallback};
use crate::handle::{self, CHandle, Kind};
use crate::status::{fail, status, tenure_status, value, R};
use crate::util::{cstr, millis, opt_cstr, out, write_str};
use std::ffi::c_char;
use tenure::client::{Candidacy, MasterState};

/// A candidacy in an election (`tenure_client_campaign`). Opaque.
pub struct tenure_election {
    _private: [u8; 0],
}

impl CHandle for tenure_election {
    type Obj = ElectionObj;
    const KIND: Kind = Kind::Election;
}

/// What a candidate registers, for `tenure_client_campaign_with`: id, priority, endpoint and
/// preemption. Opaque.
pub struct tenure_candidacy_builder {
    _private: [u8; 0],
}

impl CHandle for tenure_candidacy_builder {
    type Obj = tenure::client::Candidacy;
    const KIND: Kind = Kind::CandidacyBuilder;
}

/// The object behind a `tenure_election`, kept in its handle's slot: calls that do not block
/// run with the slot locked; `resign` takes the core candidacy out first.
pub(crate) struct ElectionObj {
    election: Option<tenure::client::Election>,
}

fn with_election<T>(
    e: *const tenure_election,
    f: impl FnOnce(Option<&tenure::client::Election>) -> T,
) -> R<T> {
    handle::with(e, |e| f(e.election.as_ref()))
}

/// Writes a master state to C outputs: `NoMaster` when there is none.
///
/// # Safety
///
/// `buf` is NULL or has `len` writable bytes; `out_n` NULL or writable; `epoch_out` non-NULL
/// and writable.
pub(crate) unsafe fn write_master(
    st: &MasterState,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
    epoch_out: *mut u64,
) -> R<()> {
    // SAFETY: the caller's contract.
    unsafe { crate::util::check_buf(buf, len, out_n)? };
    let m = st.master.as_ref().ok_or_else(|| {
        fail(
            tenure_status::NoMaster,
            format!("the election has no master (epoch {})", st.epoch),
        )
    })?;
    // SAFETY: the caller's contract.
    unsafe {
        write_str(&m.id, buf, len, out_n)?;
        epoch_out.write(st.epoch);
    }
    Ok(())
}

/// Creates a candidacy builder for candidate `id` (unique in the election, 1 to 256 bytes),
/// with priority 0, no endpoint and no preemption.
///
/// On success `*builder_out` receives a builder the caller owns: pass it to
/// `tenure_client_campaign_with` (which consumes it) or free it with
/// `tenure_candidacy_builder_free`. Errors: `TENURE_STATUS_NULL_ARGUMENT`,
/// `TENURE_STATUS_INVALID_UTF8`. Threads: any.
///
/// # Safety
///
/// `id` must be NULL or a NUL-terminated string; `builder_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_candidacy_builder_new(
    id: *const c_char,
    builder_out: *mut *mut tenure_candidacy_builder,
) -> tenure_status {
    status(|| {
        let o = out(builder_out, "builder_out")?;
        // SAFETY: the caller's contract.
        let id = unsafe { cstr(id, "id") }?;
        publish(Candidacy::new(id, 0), 0, o)
    })
}

fn candidacy_with(
    b: *mut tenure_candidacy_builder,
    f: impl FnOnce(&mut Candidacy) -> R<()>,
) -> R<()> {
    handle::with(b, |c| f(c))?
}

/// Sets the priority: the highest priority that answers its connectivity check is designated
/// (ties by id). Errors: `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per
/// builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_candidacy_builder_set_priority(
    builder: *mut tenure_candidacy_builder,
    priority: i64,
) -> tenure_status {
    status(|| {
        candidacy_with(builder, |c| {
            c.priority = priority;
            Ok(())
        })
    })
}

/// Sets how other processes reach this candidate (`host:port`); the service checks that it
/// accepts connections before designating it. NULL removes it (then the live session is the
/// check). The string is copied. Errors: `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// `endpoint` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tenure_candidacy_builder_set_endpoint(
    builder: *mut tenure_candidacy_builder,
    endpoint: *const c_char,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let e = unsafe { opt_cstr(endpoint, "endpoint") }?;
        candidacy_with(builder, |c| {
            c.endpoint = e.map(str::to_string);
            Ok(())
        })
    })
}

/// Chooses whether this candidate takes over from a live master of lower priority (default
/// false: a master is kept until it fails or resigns). Errors: `TENURE_STATUS_INVALID_HANDLE`.
/// Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_candidacy_builder_set_preempt(
    builder: *mut tenure_candidacy_builder,
    preempt: bool,
) -> tenure_status {
    status(|| {
        candidacy_with(builder, |c| {
            c.preempt = preempt;
            Ok(())
        })
    })
}

/// Frees a candidacy builder that was not passed to `tenure_client_campaign_with`. NULL, and
/// a builder freed or consumed already, are ignored (the latter records a last error).
/// Threads: any.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_candidacy_builder_free(builder: *mut tenure_candidacy_builder) {
    handle::free(builder);
}

fn campaign(
    client: *mut tenure_client,
    election: &str,
    cand: Candidacy,
    cb: OwnedCallback,
    o: *mut *mut tenure_election,
) -> R<()> {
    let c = client_of(client)?;
    let e = c.campaign(election, cand)?;
    if let Some(f) = cb.into_rust() {
        e.on_master_change(f);
    }
    let obj = ElectionObj { election: Some(e) };
    publish(obj, 0, o)
}

/// Registers this client as candidate `candidate_id` of `election` with `priority` (higher
/// wins) and an optional `endpoint` (`host:port`, NULL for none: then the live session is the
/// connectivity check). When the election has no master, the service designates one at once.
/// For a 64-bit priority or preemption, use `tenure_client_campaign_with`.
///
/// `on_master_change` is taken over whatever the result (see `tenure_callback`); its `call`
/// may be NULL. It receives every "master_changed" event of the election, in epoch order,
/// first the current master if one is known. On success `*election_out` receives the
/// candidacy, which the caller frees with `tenure_election_free` (freeing resigns).
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (bad names or endpoint), `TENURE_STATUS_INVALID_HANDLE`,
/// `TENURE_STATUS_CLOSED`, `TENURE_STATUS_REJECTED` (the id is taken by another session),
/// `TENURE_STATUS_CONNECTION_FAILED` (no answer). Threads: any; blocks for the service's
/// answer.
///
/// # Safety
///
/// Strings must be NULL or NUL-terminated; `election_out` NULL or writable;
/// `on_master_change` must follow `tenure_callback`'s rules.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_campaign(
    client: *mut tenure_client,
    election: *const c_char,
    candidate_id: *const c_char,
    priority: i32,
    endpoint: *const c_char,
    on_master_change: tenure_callback,
    election_out: *mut *mut tenure_election,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(on_master_change);
        let o = out(election_out, "election_out")?;
        // SAFETY: the caller's contract.
        let (name, id, ep) = unsafe {
            (
                cstr(election, "election")?,
                cstr(candidate_id, "candidate_id")?,
                opt_cstr(endpoint, "endpoint")?,
            )
        };
        let mut cand = Candidacy::new(id, i64::from(priority));
        cand.endpoint = ep.map(str::to_string);
        campaign(client, name, cand, cb, o)
    })
}

/// Like `tenure_client_campaign`, with the candidacy given by a builder. `candidacy` is
/// consumed whatever the result, unless the result is `TENURE_STATUS_NULL_ARGUMENT` or
/// `TENURE_STATUS_INVALID_HANDLE`.
///
/// # Safety
///
/// As `tenure_client_campaign`.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_campaign_with(
    client: *mut tenure_client,
    election: *const c_char,
    candidacy: *mut tenure_candidacy_builder,
    on_master_change: tenure_callback,
    election_out: *mut *mut tenure_election,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(on_master_change);
        let o = out(election_out, "election_out")?;
        // SAFETY: the caller's contract.
        let name = unsafe { cstr(election, "election") }?;
        client_of(client)?;
        let cand = handle::take(candidacy)?;
        campaign(client, name, cand, cb, o)
    })
}

/// True while this candidate is the master: designated, not resigned, and the session's lease
/// valid by the client's own deadline (false from the deadline on, before the service could
/// designate another master). False for a NULL or invalid handle (which records a last
/// error). Threads: any.
#[no_mangle]
pub extern "C" fn tenure_election_is_master(election: *const tenure_election) -> bool {
    value(false, || {
        with_election(election, |e| e.is_some_and(|e| e.is_master()))
    })
}

/// Reads the epoch at which this candidate became master, while it is master: use it as a
/// fencing token for the master's writes. Returns `TENURE_STATUS_NOT_MASTER` when it is not
/// the master (nothing written).
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `epoch_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_election_master_epoch(
    election: *const tenure_election,
    epoch_out: *mut u64,
) -> tenure_status {
    status(|| {
        let o = out(epoch_out, "epoch_out")?;
        let epoch = with_election(election, |e| e.and_then(|e| e.master_epoch()))?;
        let epoch = epoch.ok_or_else(|| fail(tenure_status::NotMaster, "not the master"))?;
        // SAFETY: checked non-NULL.
        unsafe { o.write(epoch) };
        Ok(())
    })
}

/// Reads the election's master as last told: its candidate id into `buf` (NUL-terminated,
/// length without the NUL in `*out_n`) and the epoch of its designation into `*epoch_out`.
///
/// Returns `TENURE_STATUS_NO_MASTER` when the election has no master (or the candidacy
/// resigned), `TENURE_STATUS_BUFFER_TOO_SMALL` with the length needed in `*out_n` when `len`
/// is too small; `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Other outputs
/// are written only on success. Threads: any.
///
/// # Safety
///
/// `buf` must be NULL or point to `len` writable bytes; `out_n` and `epoch_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_election_master(
    election: *const tenure_election,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
    epoch_out: *mut u64,
) -> tenure_status {
    status(|| {
        let eo = out(epoch_out, "epoch_out")?;
        let st = with_election(election, |e| {
            e.map(|e| e.master()).unwrap_or(MasterState {
                master: None,
                epoch: 0,
            })
        })?;
        // SAFETY: the caller's contract.
        unsafe { write_master(&st, buf, len, out_n, eo) }
    })
}

/// Withdraws the candidacy and waits for the service to confirm (at most the session TTL). A
/// master that resigns hands over to the next candidate at once. The master-change callback's
/// registration ends (waiting for a running `call` and for `drop`, except from inside that
/// `call`). The handle stays valid and must still be freed; resigning twice is a no-op.
///
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any,
/// including a tenure callback.
///
/// # Safety
///
/// None beyond passing an election handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_election_resign(election: *mut tenure_election) -> tenure_status {
    status(|| {
        let taken = handle::with(election, |e| e.election.take())?;
        match taken {
            Some(core) => core.resign().map_err(Into::into),
            None => Ok(()),
        }
    })
}

/// Resigns (without waiting for the service's answer), ends the master-change callback's
/// registration (waiting for a running `call` and for `drop`, except from inside that `call`)
/// and frees the handle. NULL, and an election freed already, are ignored (the latter records
/// a last error). Threads: any, including a tenure callback.
///
/// # Safety
///
/// None beyond passing an election handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_election_free(election: *mut tenure_election) {
    handle::free(election);
}

/// Observes `election` without being a candidate: `on_master_change` receives every
/// "master_changed" event, in epoch order, first the current master if one is known.
///
/// `on_master_change` is taken over whatever the result; its `call` must not be NULL. On
/// success `*sub_out` receives the subscription, which the caller frees with
/// `tenure_subscription_free`; `tenure_subscription_master` reads the master it last heard
/// of. Errors: `TENURE_STATUS_NULL_ARGUMENT` (also for a NULL `on_master_change.call`),
/// `TENURE_STATUS_INVALID_UTF8`, `TENURE_STATUS_INVALID_ARGUMENT`,
/// `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`, `TENURE_STATUS_CONNECTION_FAILED`.
/// Threads: any; blocks for the service's answer.
///
/// # Safety
///
/// `election` must be NULL or NUL-terminated; `sub_out` NULL or writable;
/// `on_master_change` must follow `tenure_callback`'s rules.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_observe(
    client: *mut tenure_client,
    election: *const c_char,
    on_master_change: tenure_callback,
    sub_out: *mut *mut tenure_subscription,
) -> tenure_status {
    // SAFETY: the caller's contract.
    unsafe {
        subscribe_named(
            client,
            election,
            "election",
            on_master_change,
            "on_master_change",
            sub_out,
            |c, name| c.observe(name),
            SubObj::Observer,
        )
    }
}

/// Asks for `election`'s master, as any client may: the cached master when it is live, else
/// the one the service designates now among the registered candidates (highest priority
/// first, after a connectivity check). Waits up to `timeout_ms` milliseconds. On success the
/// master's candidate id is written into `buf` (NUL-terminated, length without the NUL in
/// `*out_n`) and its epoch into `*epoch_out`; connect to it with its endpoint (see the
/// "master_changed" events).
///
/// Returns `TENURE_STATUS_NO_MASTER` when no candidate answers, `TENURE_STATUS_TIMEOUT` when
/// the time passes, `TENURE_STATUS_BUFFER_TOO_SMALL` with the length needed in `*out_n`;
/// `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`, `TENURE_STATUS_CLOSED`.
/// Threads: any; blocks.
///
/// # Safety
///
/// `election` must be NULL or NUL-terminated; `buf` NULL or `len` writable bytes; `out_n` and
/// `epoch_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_client_request_election(
    client: *mut tenure_client,
    election: *const c_char,
    timeout_ms: u64,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
    epoch_out: *mut u64,
) -> tenure_status {
    status(|| {
        let eo = out(epoch_out, "epoch_out")?;
        // SAFETY: the caller's contract.
        unsafe { crate::util::check_buf(buf, len, out_n)? };
        // SAFETY: the caller's contract.
        let name = unsafe { cstr(election, "election") }?;
        let st = client_of(client)?.request_election(name, millis(timeout_ms))?;
        // SAFETY: the caller's contract.
        unsafe { write_master(&st, buf, len, out_n, eo) }
    })
}
