//! The UDP failure detector.

use crate::client::{millis, DRAIN_LIMIT};
use crate::error::{coded, conv, INVALID_ARGUMENT};
use crate::events::JsCallback;
use crate::events::{RawArray, Relay};
use crate::promises::promise;
use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{sys, Env, JsValue};
use napi_derive::napi;
use parking_lot::Mutex;
use std::sync::Arc;
use tenure::detector::{
    AdaptiveConfig, Detector, DetectorStatus, Estimator, NetworkConfig, PeerAddr, PhiConfig,
    UdpConfig,
};
use tenure::events::Subscription;

/// A peer's address on one network.
#[napi(object)]
pub struct NativePeerAddr {
    /// The peer's process name.
    pub name: String,
    /// Its `host:port` on this network.
    pub address: String,
}

/// One network of a detector.
#[napi(object)]
pub struct NativeNetworkConfig {
    /// Network name.
    pub name: String,
    /// Local `host:port` to bind (port 0 picks one).
    pub bind: String,
    /// Every peer with its address on this network.
    pub peers: Vec<NativePeerAddr>,
}

/// A detector's configuration, as checked by the TypeScript layer.
#[napi(object)]
pub struct NativeDetectorConfig {
    /// This process's name.
    pub name: String,
    /// Heartbeat interval in milliseconds.
    pub interval_ms: f64,
    /// The networks.
    pub networks: Vec<NativeNetworkConfig>,
    /// `"adaptive"` (default), `"phi"` or `"fixed"`.
    pub estimator: Option<String>,
    /// Phi threshold for the `"phi"` estimator.
    pub phi_threshold: Option<f64>,
    /// Timeout of the `"fixed"` estimator, in milliseconds.
    pub fixed_timeout_ms: Option<f64>,
    /// A network with no peer heard for this long is down, in milliseconds.
    pub network_failure_limit_ms: Option<f64>,
}

fn udp_config(c: NativeDetectorConfig) -> napi::Result<UdpConfig> {
    let interval = millis("intervalMs", c.interval_ms)?;
    let mut cfg = UdpConfig::new(c.name, interval);
    cfg.networks = c
        .networks
        .into_iter()
        .map(|n| NetworkConfig {
            name: n.name,
            bind: n.bind,
            peers: n
                .peers
                .into_iter()
                .map(|p| PeerAddr {
                    name: p.name,
                    addr: p.address,
                })
                .collect(),
        })
        .collect();
    let estimator = match c.estimator.as_deref().unwrap_or("adaptive") {
        "adaptive" => Estimator::Adaptive(AdaptiveConfig::default()),
        "phi" => {
            let mut p = PhiConfig::default();
            if let Some(t) = c.phi_threshold {
                p.threshold = t;
            }
            Estimator::PhiAccrual(p)
        }
        "fixed" => Estimator::Fixed {
            timeout: millis(
                "fixedTimeoutMs",
                c.fixed_timeout_ms.unwrap_or(c.interval_ms * 3.0),
            )?,
        },
        other => {
            return Err(coded(
                INVALID_ARGUMENT,
                &format!("estimator {other:?} is not adaptive, phi or fixed"),
            ))
        }
    };
    cfg = cfg.estimator(estimator);
    if let Some(ms) = c.network_failure_limit_ms {
        cfg = cfg.network_failure_limit(millis("networkFailureLimitMs", ms)?);
    }
    Ok(cfg)
}

/// A running detector (private; wrapped by `Detector` in the TypeScript layer).
#[napi]
pub struct NativeDetector {
    inner: Mutex<Option<Detector>>,
    /// Left to end by itself at `stop`, like the client's (see `NativeClient`).
    sub: Arc<Mutex<Option<Subscription>>>,
    relay: Arc<Relay>,
}

/// Binds the detector's sockets and starts heartbeating; `on_event` receives every event.
#[napi(ts_return_type = "Promise<NativeDetector>")]
pub fn start_detector<'env>(
    env: &'env Env,
    config: NativeDetectorConfig,
    on_event: JsCallback<'_>,
) -> napi::Result<Object<'env>> {
    let cfg = udp_config(config)?;
    let relay = Relay::new(on_event)?;
    promise(env, move || {
        let d = Detector::start(cfg).map_err(conv)?;
        let sub = d.subscribe_with(relay.callback());
        Ok(NativeDetector {
            inner: Mutex::new(Some(d)),
            sub: Arc::new(Mutex::new(Some(sub))),
            relay: Arc::new(relay),
        })
    })
}

#[napi]
impl NativeDetector {
    /// A snapshot of the detector's state (null once stopped).
    #[napi(ts_return_type = "NativeDetectorStatus | null")]
    pub fn status(&self) -> Option<StatusValue> {
        self.inner.lock().as_ref().map(|d| StatusValue(d.status()))
    }

    /// Datagram counters: `[sent, sendErrors, received, rejected]`.
    #[napi]
    pub fn counters(&self) -> Vec<f64> {
        match self.inner.lock().as_ref() {
            Some(d) => {
                let c = d.counters();
                vec![
                    c.sent as f64,
                    c.send_errors as f64,
                    c.received as f64,
                    c.rejected as f64,
                ]
            }
            None => vec![0.0; 4],
        }
    }

    /// The address a network's socket is bound to.
    #[napi]
    pub fn local_address(&self, network: String) -> Option<String> {
        self.inner
            .lock()
            .as_ref()
            .and_then(|d| d.local_addr(&network))
            .map(|a| a.to_string())
    }

    /// Switches sending on one network off or on again.
    #[napi]
    pub fn set_sending(&self, network: String, on: bool) -> napi::Result<()> {
        match self.inner.lock().as_ref() {
            Some(d) => d.set_sending(&network, on).map_err(conv),
            None => Err(coded("ERR_TENURE_CLOSED", "the detector is stopped")),
        }
    }

    /// Events dropped because JavaScript fell too far behind, plus those the core dropped.
    #[napi(getter)]
    pub fn dropped_events(&self) -> f64 {
        let core = self.sub.lock().as_ref().map_or(0, |s| s.dropped());
        (core + self.relay.dropped()) as f64
    }

    /// Stops heartbeating and closes the sockets; a `close` message follows the last event.
    /// Idempotent (the `close` message comes once).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let d = self.inner.lock().take();
        let relay = self.relay.clone();
        let sub = self.sub.clone();
        promise(env, move || {
            if let Some(d) = d {
                d.stop();
                relay.finish(DRAIN_LIMIT);
                let s = sub.lock().take();
                drop(s);
            }
            Ok(())
        })
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A detector's status as a JavaScript object.
pub struct StatusValue(pub DetectorStatus);

impl ToNapiValue for StatusValue {
    unsafe fn to_napi_value(raw: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = Env::from_raw(raw);
        let s = val.0;
        let mut o = Object::new(&env)?;
        let mut nets = Vec::with_capacity(s.networks.len());
        for n in s.networks {
            let mut e = Object::new(&env)?;
            e.set("name", n.name)?;
            e.set("down", n.down)?;
            e.set("silentForMs", ms(n.silent_for))?;
            nets.push(e.raw());
        }
        o.set("networks", RawArray(nets))?;
        let mut peers = Vec::with_capacity(s.peers.len());
        for p in s.peers {
            let mut e = Object::new(&env)?;
            e.set("name", p.name)?;
            e.set("processSuspected", p.process_suspected)?;
            let mut links = Vec::with_capacity(p.links.len());
            for l in p.links {
                let mut x = Object::new(&env)?;
                x.set("network", l.network)?;
                x.set("heartbeats", l.heartbeats as f64)?;
                x.set("silentForMs", ms(l.silent_for))?;
                x.set("timeoutMs", ms(l.timeout))?;
                x.set("phi", l.phi)?;
                x.set("silent", l.silent)?;
                x.set("pathSuspected", l.path_suspected)?;
                links.push(x.raw());
            }
            e.set("links", RawArray(links))?;
            peers.push(e.raw());
        }
        o.set("peers", RawArray(peers))?;
        Ok(o.raw())
    }
}
