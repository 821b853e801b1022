//! Failure detectors: `tenure_detector_builder` and `tenure_detector` (UDP heartbeats over one
//! or several networks, adaptive timeouts, process-versus-network classification).

use crate::client::{publish, tenure_subscription, SubObj};
use crate::event::{tenure_callback, OwnedCallback};
use crate::handle::{self, CHandle, Kind};
use crate::status::{fail, status, tenure_status, R};
use crate::util::{cstr, millis, out, write_str};
use std::ffi::c_char;
use tenure::detector::{Detector, Estimator, NetworkConfig, PeerAddr, PhiConfig, UdpConfig};

/// Configuration of a failure detector, built before `tenure_detector_start`. Opaque.
pub struct tenure_detector_builder {
    _private: [u8; 0],
}

impl CHandle for tenure_detector_builder {
    type Obj = tenure::detector::UdpConfig;
    const KIND: Kind = Kind::DetectorBuilder;
}

/// A running failure detector: heartbeats sent to and received from its peers on every
/// network, on a library thread. Opaque.
pub struct tenure_detector {
    _private: [u8; 0],
}

impl CHandle for tenure_detector {
    type Obj = tenure::detector::Detector;
    const KIND: Kind = Kind::Detector;
}

fn builder_with<T>(
    b: *mut tenure_detector_builder,
    f: impl FnOnce(&mut UdpConfig) -> R<T>,
) -> R<T> {
    handle::with(b, |c| f(c))?
}

fn detector_with<T>(d: *const tenure_detector, f: impl FnOnce(&Detector) -> R<T>) -> R<T> {
    handle::with(d, |d| f(d))?
}

/// Creates a detector builder for this process, named `name` (the name its heartbeats carry,
/// 1 to 255 bytes), heartbeating every `interval_ms` milliseconds (1 ..= 60000), with the
/// adaptive timeout, a network failure limit of four intervals and no network yet.
///
/// On success `*builder_out` receives a builder the caller owns: pass it to
/// `tenure_detector_start` (which consumes it) or free it with `tenure_detector_builder_free`.
/// Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (interval out of range). Threads: any.
///
/// # Safety
///
/// `name` must be NULL or a NUL-terminated string; `builder_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_builder_new(
    name: *const c_char,
    interval_ms: u64,
    builder_out: *mut *mut tenure_detector_builder,
) -> tenure_status {
    status(|| {
        let o = out(builder_out, "builder_out")?;
        // SAFETY: the caller's contract.
        let n = unsafe { cstr(name, "name") }?;
        let interval = millis(interval_ms);
        if interval < tenure::detector::MIN_INTERVAL || interval > tenure::detector::MAX_INTERVAL {
            return Err(fail(
                tenure_status::InvalidArgument,
                format!("heartbeat interval {interval_ms} ms is outside 1 ..= 60000 ms"),
            ));
        }
        let cfg = UdpConfig::new(n, interval);
        publish(cfg, 0, o)
    })
}

/// Adds a network: its name (used in events) and the local address its socket binds to
/// (`host:port`; port 0 picks one, read it back with `tenure_detector_local_address`). Add its
/// peers with `tenure_detector_builder_add_peer`; every network must list the same peers.
///
/// Strings are copied. Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (a network of that name exists),
/// `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// Strings must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_builder_add_network(
    builder: *mut tenure_detector_builder,
    network: *const c_char,
    bind: *const c_char,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let (n, b) = unsafe { (cstr(network, "network")?, cstr(bind, "bind")?) };
        builder_with(builder, |c| {
            if c.networks.iter().any(|x| x.name == n) {
                return Err(fail(
                    tenure_status::InvalidArgument,
                    format!("network {n:?} was added already"),
                ));
            }
            c.networks.push(NetworkConfig {
                name: n.to_string(),
                bind: b.to_string(),
                peers: Vec::new(),
            });
            Ok(())
        })
    })
}

/// Adds peer `peer` (its process name) reachable at `addr` (`host:port`) on network
/// `network`, which must have been added.
///
/// Strings are copied. Errors: `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_UTF8`,
/// `TENURE_STATUS_INVALID_ARGUMENT` (no such network), `TENURE_STATUS_INVALID_HANDLE`. Names
/// and addresses are checked by `tenure_detector_start`. Threads: any, one at a time per
/// builder.
///
/// # Safety
///
/// Strings must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_builder_add_peer(
    builder: *mut tenure_detector_builder,
    network: *const c_char,
    peer: *const c_char,
    addr: *const c_char,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let (n, p, a) = unsafe {
            (
                cstr(network, "network")?,
                cstr(peer, "peer")?,
                cstr(addr, "addr")?,
            )
        };
        builder_with(builder, |c| {
            let net = c.networks.iter_mut().find(|x| x.name == n).ok_or_else(|| {
                fail(
                    tenure_status::InvalidArgument,
                    format!("no network named {n:?}; add it first"),
                )
            })?;
            net.peers.push(PeerAddr {
                name: p.to_string(),
                addr: a.to_string(),
            });
            Ok(())
        })
    })
}

/// Sets the network failure limit in milliseconds: a network on which no peer at all was
/// heard for this long is reported down (default four intervals; checked by
/// `tenure_detector_start`). Errors: `TENURE_STATUS_INVALID_HANDLE`. Threads: any, one at a
/// time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_builder_set_network_failure_limit_ms(
    builder: *mut tenure_detector_builder,
    limit_ms: u64,
) -> tenure_status {
    status(|| {
        builder_with(builder, |c| {
            c.detector.network_failure_limit = millis(limit_ms.min(u32::MAX as u64));
            Ok(())
        })
    })
}

/// Judges silence with a fixed timeout of `timeout_ms` after each heartbeat instead of the
/// adaptive timeout. Errors: `TENURE_STATUS_INVALID_HANDLE`; the value is checked by
/// `tenure_detector_start`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_builder_use_fixed_timeout(
    builder: *mut tenure_detector_builder,
    timeout_ms: u64,
) -> tenure_status {
    status(|| {
        builder_with(builder, |c| {
            c.detector.estimator = Estimator::Fixed {
                timeout: millis(timeout_ms.min(u32::MAX as u64)),
            };
            Ok(())
        })
    })
}

/// Judges silence with the phi accrual detector at `threshold` (8 is a common choice) instead
/// of the adaptive timeout. Errors: `TENURE_STATUS_INVALID_HANDLE`; the value is checked by
/// `tenure_detector_start`. Threads: any, one at a time per builder.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_builder_use_phi_accrual(
    builder: *mut tenure_detector_builder,
    threshold: f64,
) -> tenure_status {
    status(|| {
        builder_with(builder, |c| {
            c.detector.estimator = Estimator::PhiAccrual(PhiConfig {
                threshold,
                ..PhiConfig::default()
            });
            Ok(())
        })
    })
}

/// Frees a detector builder that was not passed to `tenure_detector_start`. NULL, and a
/// builder freed or consumed already, are ignored (the latter records a last error).
/// Threads: any.
///
/// # Safety
///
/// None beyond passing a builder handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_builder_free(builder: *mut tenure_detector_builder) {
    handle::free(builder);
}

/// Checks the configuration, binds one UDP socket per network and starts heartbeating.
///
/// `builder` is consumed whatever the result, unless the result is
/// `TENURE_STATUS_NULL_ARGUMENT` or `TENURE_STATUS_INVALID_HANDLE`. On success `*detector_out`
/// receives the detector, which the caller frees with `tenure_detector_free`.
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` (bad names, addresses or parameters, networks
/// listing different peers), `TENURE_STATUS_IO` (a socket cannot be bound). Threads: any.
///
/// # Safety
///
/// `detector_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_start(
    builder: *mut tenure_detector_builder,
    detector_out: *mut *mut tenure_detector,
) -> tenure_status {
    status(|| {
        let o = out(detector_out, "detector_out")?;
        let cfg = handle::take(builder)?;
        let d = Detector::start(cfg)?;
        publish(d, 0, o)
    })
}

/// Delivers the detector's later events ("peer_suspected", "peer_recovered",
/// "network_down", "network_up") to `on_event` on the detector's dispatcher thread (see
/// `tenure_callback`).
///
/// `on_event` is taken over whatever the result; its `call` must not be NULL. On success
/// `*sub_out` receives the subscription, freed with `tenure_subscription_free`. Errors:
/// `TENURE_STATUS_NULL_ARGUMENT`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `sub_out` must be NULL or writable; `on_event` must follow `tenure_callback`'s rules.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_subscribe(
    detector: *mut tenure_detector,
    on_event: tenure_callback,
    sub_out: *mut *mut tenure_subscription,
) -> tenure_status {
    status(|| {
        let cb = OwnedCallback::new(on_event);
        let o = out(sub_out, "sub_out")?;
        let f = cb
            .into_rust()
            .ok_or_else(|| fail(tenure_status::NullArgument, "on_event.call is NULL"))?;
        let sub = detector_with(detector, |d| Ok(d.subscribe(f)))?;
        publish(SubObj::Client(sub), 0, o)
    })
}

/// Writes the local address (`host:port`) the socket of network `network` is bound to into
/// `buf`, NUL-terminated; `*out_n` receives its length without the NUL. When `len` is too
/// small nothing is copied, `*out_n` receives the length needed and
/// `TENURE_STATUS_BUFFER_TOO_SMALL` is returned.
///
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` (no such network), `TENURE_STATUS_NULL_ARGUMENT`,
/// `TENURE_STATUS_INVALID_UTF8`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `network` must be NULL or NUL-terminated; `buf` NULL or `len` writable bytes; `out_n` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_local_address(
    detector: *const tenure_detector,
    network: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { cstr(network, "network") }?;
        let a = detector_with(detector, |d| {
            d.local_addr(n).ok_or_else(|| {
                fail(
                    tenure_status::InvalidArgument,
                    format!("no network named {n:?}"),
                )
            })
        })?;
        // SAFETY: the caller's contract.
        unsafe { write_str(&a.to_string(), buf, len, out_n) }
    })
}

/// Switches sending on network `network` off (`on` false) or on again: the peers then see
/// this process silent on that network only (maintenance, fault drills). Receiving goes on.
///
/// Errors: `TENURE_STATUS_INVALID_ARGUMENT` (no such network), `TENURE_STATUS_NULL_ARGUMENT`,
/// `TENURE_STATUS_INVALID_UTF8`, `TENURE_STATUS_INVALID_HANDLE`. Threads: any.
///
/// # Safety
///
/// `network` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_set_sending(
    detector: *mut tenure_detector,
    network: *const c_char,
    on: bool,
) -> tenure_status {
    status(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { cstr(network, "network") }?;
        detector_with(detector, |d| d.set_sending(n, on).map_err(Into::into))
    })
}

/// Stops heartbeating, closes the sockets and frees the detector. Its subscriptions stay
/// valid (they get no more events) until freed. NULL, and a detector freed already, are
/// ignored (the latter records a last error). Threads: any, including a tenure callback.
///
/// # Safety
///
/// None beyond passing a detector handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn tenure_detector_free(detector: *mut tenure_detector) {
    handle::free(detector);
}
