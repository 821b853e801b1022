//! `Detector`: the UDP heartbeat failure detector of SPEC 3.4.

use crate::client::Subscription;
use crate::dispatch::Dispatcher;
use crate::errors::{self, IntoPy};
use crate::util;
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping, PyString};
use std::sync::Arc;
use tenure::detector::{Detector as CoreDetector, Estimator, PhiConfig, UdpConfig};

/// A failure detector: this process (`name`) sends a heartbeat to each peer every
/// `interval` seconds on every network, and reports peer_suspected, peer_recovered,
/// network_down and network_up events to `on_event` callbacks.
///
/// `networks` is a list of `(network_name, bind, peers)`: the local "host:port" to bind
/// (port 0 picks one) and the peers with their address on that network, as a dict
/// `{peer_name: "host:port"}` or a list of `(peer_name, "host:port")`. Every network lists the
/// same peers. `estimator` is "adaptive" (default), "phi" (with `phi_threshold`) or "fixed"
/// (with `fixed_timeout` seconds). `network_failure_limit` defaults to four intervals.
#[pyclass(frozen, module = "tenure._tenure", name = "Detector")]
pub(crate) struct Detector {
    inner: Mutex<Option<CoreDetector>>,
    name: String,
    dispatcher: Mutex<Option<Arc<Dispatcher>>>,
    subs: Mutex<Vec<Py<Subscription>>>,
}

fn peers(v: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    if let Ok(m) = v.cast::<PyMapping>() {
        let mut out = Vec::new();
        for item in m.items()?.iter() {
            out.push(item.extract::<(String, String)>()?);
        }
        return Ok(out);
    }
    if v.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "peers must be a dict {name: address} or a list of (name, address)",
        ));
    }
    let mut out = Vec::new();
    for item in v.try_iter()? {
        out.push(item?.extract::<(String, String)>().map_err(|_| {
            PyTypeError::new_err("each peer must be a (name, address) pair of str")
        })?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn config(
    py: Python<'_>,
    name: String,
    interval: f64,
    networks: &Bound<'_, PyAny>,
    estimator: &str,
    phi_threshold: f64,
    fixed_timeout: Option<f64>,
    network_failure_limit: Option<f64>,
) -> PyResult<UdpConfig> {
    let interval = util::secs(py, "interval", interval)?;
    let mut cfg = UdpConfig::new(name, interval);
    if networks.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "networks must be a list of (name, bind, peers)",
        ));
    }
    for item in networks.try_iter()? {
        let item = item?;
        let (net, bind, ps): (String, String, Bound<'_, PyAny>) = item.extract().map_err(|_| {
            PyTypeError::new_err("each network must be a (name, bind, peers) tuple")
        })?;
        cfg = cfg.network(net, bind, peers(&ps)?);
    }
    cfg = cfg.estimator(match estimator {
        "adaptive" => Estimator::default(),
        "phi" => Estimator::PhiAccrual(PhiConfig {
            threshold: phi_threshold,
            ..PhiConfig::default()
        }),
        "fixed" => match fixed_timeout {
            Some(t) => Estimator::Fixed {
                timeout: util::secs(py, "fixed_timeout", t)?,
            },
            None => {
                return Err(errors::invalid(
                    py,
                    "estimator 'fixed' needs fixed_timeout (seconds)",
                ))
            }
        },
        other => {
            return Err(errors::invalid(
                py,
                format!("estimator must be 'adaptive', 'phi' or 'fixed', not {other:?}"),
            ))
        }
    });
    if let Some(l) = network_failure_limit {
        cfg = cfg.network_failure_limit(util::secs(py, "network_failure_limit", l)?);
    }
    Ok(cfg)
}

impl Detector {
    fn with<R>(&self, py: Python<'_>, f: impl FnOnce(&CoreDetector) -> R) -> PyResult<R> {
        match &*self.inner.lock() {
            Some(d) => Ok(f(d)),
            None => Err(errors::closed(py, "detector")),
        }
    }
}

#[pymethods]
impl Detector {
    #[new]
    #[pyo3(signature = (name, interval, networks, *, estimator="adaptive", phi_threshold=8.0,
                        fixed_timeout=None, network_failure_limit=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        interval: f64,
        networks: &Bound<'_, PyAny>,
        estimator: &str,
        phi_threshold: f64,
        fixed_timeout: Option<f64>,
        network_failure_limit: Option<f64>,
    ) -> PyResult<Self> {
        let cfg = config(
            py,
            name.clone(),
            interval,
            networks,
            estimator,
            phi_threshold,
            fixed_timeout,
            network_failure_limit,
        )?;
        let d = py.detach(move || CoreDetector::start(cfg)).py_err(py)?;
        Ok(Detector {
            inner: Mutex::new(Some(d)),
            name,
            dispatcher: Mutex::new(None),
            subs: Mutex::new(Vec::new()),
        })
    }

    /// This process's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// True until stopped.
    #[getter]
    fn running(&self) -> bool {
        self.inner.lock().is_some()
    }

    /// Calls `callback(event)` with every later event of this detector, on the detector's
    /// dispatcher thread. Returns the `Subscription`.
    fn on_event(&self, py: Python<'_>, callback: Bound<'_, PyAny>) -> PyResult<Py<Subscription>> {
        let cb = util::required_callback("callback", callback)?;
        let d = {
            let mut g = self.dispatcher.lock();
            match &*g {
                Some(d) => d.clone(),
                None => {
                    let d = Dispatcher::start("detector").map_err(|e| {
                        PyRuntimeError::new_err(format!("cannot start a dispatcher: {e}"))
                    })?;
                    *g = Some(d.clone());
                    d
                }
            }
        };
        let (reg, forward) = d.register(cb, "on_event");
        let core = self.with(py, |det| det.subscribe_with(forward))?;
        let sub = Py::new(py, Subscription::owning(reg, core))?;
        self.subs.lock().push(sub.clone_ref(py));
        Ok(sub)
    }

    /// The address a network's socket is bound to ("host:port"), or None for an unknown
    /// network.
    fn local_address(&self, py: Python<'_>, network: &str) -> PyResult<Option<String>> {
        self.with(py, |d| d.local_addr(network).map(|a| a.to_string()))
    }

    /// Switches sending on one network off or on (fault drills): peers then see this
    /// process silent on that network only. Receiving goes on.
    fn set_sending(&self, py: Python<'_>, network: &str, on: bool) -> PyResult<()> {
        self.with(py, |d| d.set_sending(network, on))?.py_err(py)
    }

    /// A snapshot of the detector's state: `{"networks": [...], "peers": [...]}` with, per
    /// network, `name`, `down`, `silent_for` (seconds); per peer, `name`,
    /// `process_suspected` and `links` (per network: `network`, `heartbeats`, `silent_for`,
    /// `timeout`, `phi`, `silent`, `path_suspected`).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = self.with(py, |d| d.status())?;
        let out = PyDict::new(py);
        let nets = PyList::empty(py);
        for n in &st.networks {
            let d = PyDict::new(py);
            d.set_item("name", &n.name)?;
            d.set_item("down", n.down)?;
            d.set_item("silent_for", n.silent_for.as_secs_f64())?;
            nets.append(d)?;
        }
        let peers = PyList::empty(py);
        for p in &st.peers {
            let d = PyDict::new(py);
            d.set_item("name", &p.name)?;
            d.set_item("process_suspected", p.process_suspected)?;
            let links = PyList::empty(py);
            for l in &p.links {
                let ld = PyDict::new(py);
                ld.set_item("network", &l.network)?;
                ld.set_item("heartbeats", l.heartbeats)?;
                ld.set_item("silent_for", l.silent_for.as_secs_f64())?;
                ld.set_item("timeout", l.timeout.as_secs_f64())?;
                ld.set_item("phi", l.phi)?;
                ld.set_item("silent", l.silent)?;
                ld.set_item("path_suspected", l.path_suspected)?;
                links.append(ld)?;
            }
            d.set_item("links", links)?;
            peers.append(d)?;
        }
        out.set_item("networks", nets)?;
        out.set_item("peers", peers)?;
        Ok(out)
    }

    /// Datagram counters: `{"sent", "send_errors", "received", "rejected"}`.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.with(py, |d| d.counters())?;
        let out = PyDict::new(py);
        out.set_item("sent", c.sent)?;
        out.set_item("send_errors", c.send_errors)?;
        out.set_item("received", c.received)?;
        out.set_item("rejected", c.rejected)?;
        Ok(out)
    }

    /// Stops heartbeating, closes the sockets and ends the callbacks. Idempotent.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let subs = std::mem::take(&mut *self.subs.lock());
        for s in subs {
            s.get().close_now(py);
        }
        let d = self.inner.lock().take();
        if let Some(d) = d {
            py.detach(move || d.stop());
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure Detector {:?} {}>",
            self.name,
            if self.running() { "running" } else { "stopped" }
        )
    }
}
