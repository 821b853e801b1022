//! The embedded server.

use crate::error::{coded, conv};
use crate::promises::promise;
use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use parking_lot::Mutex;
use std::sync::Arc;
use tenure::{Durability, Server, ServerConfig};

/// A running embedded server (private; wrapped by `Server` in the TypeScript layer).
#[napi]
pub struct NativeServer {
    inner: Arc<Mutex<Option<Server>>>,
    address: String,
    incarnation: u128,
}

/// Starts a server listening on `listen` with its state in `data_dir`; `durability` is
/// `"fsync"` or `"none"`. Resolves to a [`NativeServer`].
#[napi(ts_return_type = "Promise<NativeServer>")]
pub fn start_server<'env>(
    env: &'env Env,
    listen: String,
    data_dir: String,
    durability: String,
) -> napi::Result<Object<'env>> {
    let durability: Durability = durability
        .parse()
        .map_err(|e: String| coded(crate::error::INVALID_ARGUMENT, &e))?;
    let cfg = ServerConfig {
        listen,
        data_dir: data_dir.into(),
        durability,
        ..Default::default()
    };
    promise(env, move || {
        let server = Server::start(cfg).map_err(conv)?;
        Ok(NativeServer {
            address: server.local_addr().to_string(),
            incarnation: server.incarnation(),
            inner: Arc::new(Mutex::new(Some(server))),
        })
    })
}

#[napi]
impl NativeServer {
    /// The address the server listens on (`host:port`).
    #[napi(getter)]
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The incarnation token of the service.
    #[napi(getter)]
    pub fn incarnation(&self) -> u128 {
        self.incarnation
    }

    /// Stops serving. Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let server = self.inner.lock().take();
        promise(env, move || {
            if let Some(s) = server {
                s.stop().map_err(conv)?;
            }
            Ok(())
        })
    }
}
