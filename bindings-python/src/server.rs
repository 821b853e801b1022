//! `Server`: the coordination server embedded in this process.

use crate::errors::{self, IntoPy};
use parking_lot::Mutex;
use pyo3::prelude::*;
use std::path::PathBuf;

/// The tenure server, embedded in this process: `Server(listen="127.0.0.1:0",
/// data_dir=path)` recovers the state from `data_dir`, binds `listen` and serves on a thread
/// of its own (the constructor returns once it listens). `durability` is "fsync" (the
/// default: a change is acknowledged once on disk) or "none" (nothing written; `data_dir` is
/// then optional). Use it as a context manager, or call `stop()`.
#[pyclass(frozen, module = "tenure._tenure", name = "Server")]
pub(crate) struct Server {
    inner: Mutex<Option<tenure::Server>>,
    address: String,
    incarnation: u128,
}

fn config(
    py: Python<'_>,
    listen: String,
    data_dir: Option<PathBuf>,
    durability: &str,
) -> PyResult<tenure::ServerConfig> {
    let durability = match durability {
        "fsync" => tenure::Durability::Fsync,
        "none" => tenure::Durability::None,
        other => {
            return Err(errors::invalid(
                py,
                format!("durability must be 'fsync' or 'none', not {other:?}"),
            ))
        }
    };
    if listen.contains('\0') {
        return Err(errors::invalid(py, "listen contains a NUL character"));
    }
    let data_dir = match data_dir {
        Some(d) => {
            if d.as_os_str().is_empty() {
                return Err(errors::invalid(py, "data_dir is empty"));
            }
            d
        }
        None if durability == tenure::Durability::None => PathBuf::from("tenure-data"),
        None => {
            return Err(errors::invalid(
                py,
                "data_dir is required unless durability='none'",
            ))
        }
    };
    Ok(tenure::ServerConfig {
        listen,
        data_dir,
        durability,
        ..Default::default()
    })
}

impl Server {
    fn wrap(s: tenure::Server) -> Server {
        Server {
            address: s.local_addr().to_string(),
            incarnation: s.incarnation(),
            inner: Mutex::new(Some(s)),
        }
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (listen="127.0.0.1:7411".to_string(), data_dir=None, durability="fsync"))]
    fn new(
        py: Python<'_>,
        listen: String,
        data_dir: Option<PathBuf>,
        durability: &str,
    ) -> PyResult<Self> {
        let cfg = config(py, listen, data_dir, durability)?;
        let s = py.detach(move || tenure::Server::start(cfg)).py_err(py)?;
        Ok(Server::wrap(s))
    }

    /// The address the server listens on, "host:port" (the port chosen when 0 was asked).
    #[getter]
    fn address(&self) -> &str {
        &self.address
    }

    /// The incarnation token of the service's state.
    #[getter]
    fn incarnation(&self) -> u128 {
        self.incarnation
    }

    /// True until stopped.
    #[getter]
    fn running(&self) -> bool {
        self.inner.lock().is_some()
    }

    /// Stops serving: commits what was applied, closes every connection and returns.
    /// Clients keep their sessions until they expire; a restart on the same data directory
    /// gives each a grace period of its TTL. Idempotent.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.inner.lock().take();
        match s {
            Some(s) => py.detach(move || s.stop()).py_err(py),
            None => Ok(()),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<tenure Server {} {}>",
            self.address,
            if self.running() { "running" } else { "stopped" }
        )
    }
}
