//! tenure: coordination primitives for distributed programs.
//!
//! Sessions kept alive by heartbeats with inverse exponential retries, locks with fencing
//! tokens and lost callbacks, and the coordination server that keeps their state, embedded in
//! your process or run with the `tenure` command.
//!
//! ```no_run
//! use std::time::Duration;
//! let dir = std::env::temp_dir().join("tenure-doc");
//! let server = tenure::Server::start(tenure::ServerConfig {
//!     listen: "127.0.0.1:0".into(),
//!     data_dir: dir,
//!     ..Default::default()
//! })?;
//! let client = tenure::Client::connect(
//!     tenure::ClientConfig::new([server.local_addr().to_string()])
//!         .session_ttl(Duration::from_secs(2)),
//! )?;
//! let lock = client.lock("jobs/reindex", Duration::from_secs(5))?;
//! lock.on_lost(|ev| eprintln!("lost: {ev:?}"));
//! println!("token {}", lock.fencing_token());
//! lock.release()?;
//! # Ok::<(), tenure::Error>(())
//! ```
//!
//! Where each rule lives: [`lease`] (the client's session: heartbeats, deadline, jeopardy),
//! [`retry`] (retry policies), [`lock`] (FIFO waiters, fencing tokens), [`server::state`]
//! (the server's state machine), [`server::liveness`] (server-side expiry),
//! [`server::storage`] (write-ahead log, snapshots, incarnation token), [`proto`] (messages,
//! framing, limits), [`etcd`] (the etcd backend: `etcd://` endpoints), [`events`] (event vocabulary and dispatch), [`client`] and [`server`]
//! (runtimes).

#![warn(missing_docs)]

pub mod client;
pub mod clock;
pub mod detector;
pub mod election;
pub mod error;
pub mod etcd;
pub mod events;
pub mod lease;
pub mod limits;
pub mod lock;
pub mod membership;
pub mod proto;
pub mod retry;
pub mod server;
#[cfg(test)]
mod sim;

pub use client::{Client, ClientConfig, Lock, Pending, SessionState};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Call, Error, ErrorKind, Result};
pub use events::{Event, Handler, LostReason, Master, Member, Subscription, SuspicionKind};
pub use server::{Durability, Server, ServerConfig};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
