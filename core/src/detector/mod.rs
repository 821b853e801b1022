//! Failure detection by heartbeats over one or several networks (SPEC 3.4, seed 002).
//!
//! Every process sends a heartbeat to each of its peers every `interval`, on every network
//! (one UDP socket per network). [`DetectorCore`] is the sans-IO machine that turns arrival
//! instants into events; [`Detector`] is the thin UDP runtime around it.
//!
//! # Silence of a link
//!
//! Each (peer, network) pair is a *link* with a [`Tracker`]: it records arrivals and gives a
//! *deadline*, the first instant at which the link counts as silent, by one of the
//! [`Estimator`]s: the adaptive timeout of seed 002 (default), phi accrual, or a fixed timeout
//! (see [`estimator`]). At start every link counts as heard at the instant given to
//! [`DetectorCore::new`].
//!
//! # Classification (the rules, all here)
//!
//! Let `D(p, n)` be the deadline of peer `p` on network `n` and `T(p, n)` its current
//! timeout. A silence is only blamed on something when another heartbeat shows what still
//! works. The latest heartbeat of `x` on network `m`, arrived at `t`, *vouches* for the
//! silence of `(p, n)` when `t >= D(p, n)` and `x` had then been heard on `m` without a
//! silence of its own for at least `T(p, n)` (its heartbeats were not just resuming). The
//! second condition is what keeps a network that comes back, or a peer that comes back from
//! a pause on every network, from accusing the others whose heartbeats of the same round
//! are still on their way: they get their full timeout from the moment the witness is
//! heard again.
//!
//! 1. **Local network failure.** Network `n` is *down* when no peer at all was heard on it for
//!    `network_failure_limit` ([`Event::NetworkDown`]); it is *up* again at the next
//!    heartbeat from any peer on it ([`Event::NetworkUp`]). A down network never makes a peer
//!    suspected by itself: when the local network fails, every peer falls silent at once and
//!    nobody on it vouches for anyone's silence.
//! 2. **Process failure.** Peer `p` is suspected as a process ([`Event::PeerSuspected`] with
//!    [`SuspicionKind::Process`], network `None`) when it is silent on *every* network and,
//!    on at least one network `n`, another peer vouches for the silence of `(p, n)`. With one
//!    network this is "silent while the others are heard"; with several, "silent
//!    everywhere". The suspicion is lifted ([`Event::PeerRecovered`] with network `None`)
//!    at `p`'s next heartbeat on any network.
//! 3. **Network path failure.** Peer `p`'s path on network `n` is suspected
//!    ([`SuspicionKind::Network`], network `Some(n)`) when `p` is silent on `n` but not on
//!    every network, `p` itself vouches on another network for its silence on `n` (it is
//!    alive, and has been for a while), and another peer vouches on `n` (network `n` works
//!    here). It is lifted ([`Event::PeerRecovered`] with `Some(n)`) at `p`'s next heartbeat
//!    on `n`.
//! 4. While `p` is silent on every network (suspected as a process or not yet), its path
//!    suspicions are neither raised nor lifted; the ones raised before stay until `p` is
//!    heard on that network again. So a process suspicion never comes with spurious path
//!    recoveries, and the state a subscriber rebuilds from the events is the detector's.
//! 5. Each change of state is reported once. The events of one call come in this order:
//!    networks (in configuration order, down or up), then peers in configuration order, each
//!    with its process change first and then its path changes in network order.
//!
//! Since `D(p, n) = last(p, n) + T(p, n)`, "`q` vouches for `(p, n)`" is the seed's test
//! "the difference between the times since `p` and since `q` were last heard exceeds the
//! threshold": `last(q, n) - last(p, n) >= T(p, n)`.
//!
//! Consequences: a peer silent on one network while heard on another is never a process
//! failure; a local network failure gives one `NetworkDown` and no peer suspicion. With a
//! single peer there is nobody to compare with: its death cannot be told from the loss of
//! the local networks, and it is reported as every network going down. A process suspicion
//! waits for a vouching heartbeat after the deadline (of the last network to fall silent),
//! so with `m` other peers on `k` networks it comes about `interval / (m * k)` after that
//! deadline on average.
//!
//! # Driving the core
//!
//! The runtime calls [`DetectorCore::on_heartbeat`] (or [`DetectorCore::on_heartbeats_at`]
//! for everything it read in one go) at each arrival, and [`DetectorCore::poll`] at
//! [`DetectorCore::next_wakeup`]. Arrivals are applied before deadlines are checked, so a
//! runtime whose own thread was held up does not take its pause for its peers' silence.
//! [`Detector`] does exactly this over UDP with the datagram of [`wire`].
//!
//! [`Event::NetworkDown`]: crate::events::Event::NetworkDown
//! [`Event::NetworkUp`]: crate::events::Event::NetworkUp
//! [`Event::PeerSuspected`]: crate::events::Event::PeerSuspected
//! [`Event::PeerRecovered`]: crate::events::Event::PeerRecovered
//! [`SuspicionKind::Process`]: crate::events::SuspicionKind::Process
//! [`SuspicionKind::Network`]: crate::events::SuspicionKind::Network

pub mod estimator;
mod machine;
mod udp;
pub mod wire;

pub use estimator::{AdaptiveConfig, Estimator, PhiConfig, Tracker};
pub use machine::{DetectorCore, DetectorStatus, LinkStatus, NetworkStatus, PeerStatus};
pub use udp::{Detector, DetectorCounters, NetworkConfig, PeerAddr, UdpConfig};

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::time::Duration;

/// Shortest heartbeat interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Longest heartbeat interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Most peers one detector watches.
pub const MAX_PEERS: usize = 1024;
/// Most networks one detector uses.
pub const MAX_NETWORKS: usize = 8;
/// Longest process or network name, in bytes (it must fit a heartbeat datagram).
pub const MAX_NAME_LEN: usize = 255;

/// Parameters of a failure detector.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Nominal interval between two heartbeats of a peer on a network.
    pub interval: Duration,
    /// How a link's silence is judged (default: adaptive timeout).
    pub estimator: Estimator,
    /// A network on which no peer at all was heard for this long is down (default four
    /// intervals).
    pub network_failure_limit: Duration,
}

impl DetectorConfig {
    /// Defaults for a heartbeat interval: adaptive timeout, network failure limit of four
    /// intervals.
    pub fn new(interval: Duration) -> Self {
        DetectorConfig {
            interval,
            estimator: Estimator::default(),
            network_failure_limit: interval.saturating_mul(4),
        }
    }

    /// Sets the estimator.
    pub fn estimator(mut self, estimator: Estimator) -> Self {
        self.estimator = estimator;
        self
    }

    /// Sets the network failure limit.
    pub fn network_failure_limit(mut self, limit: Duration) -> Self {
        self.network_failure_limit = limit;
        self
    }

    /// Checks every parameter; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<()> {
        if self.interval < MIN_INTERVAL || self.interval > MAX_INTERVAL {
            return Err(Error::InvalidArgument(format!(
                "heartbeat interval {:?} is outside {MIN_INTERVAL:?} ..= {MAX_INTERVAL:?}",
                self.interval
            )));
        }
        let max_limit = MAX_INTERVAL * 10;
        if self.network_failure_limit < self.interval || self.network_failure_limit > max_limit {
            return Err(Error::InvalidArgument(format!(
                "network failure limit {:?} is outside the interval {:?} ..= {max_limit:?}",
                self.network_failure_limit, self.interval
            )));
        }
        self.estimator
            .validate(self.interval)
            .map_err(Error::InvalidArgument)
    }
}

/// Checks a process or network name: not empty, at most [`MAX_NAME_LEN`] bytes, no NUL or
/// other control character. `what` names it in the error ("peer name", ...).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} is empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} {:?}... is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.chars().take(16).collect::<String>(),
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// Checks a list of names: each valid, no duplicates, between 1 and `max` of them.
fn validate_names(what: &str, names: &[String], max: usize) -> Result<()> {
    if names.is_empty() {
        return Err(Error::InvalidArgument(format!("no {what}s given")));
    }
    if names.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{} {what}s given; the limit is {max}",
            names.len()
        )));
    }
    let mut seen = HashSet::new();
    for n in names {
        validate_name(what, n)?;
        if !seen.insert(n.as_str()) {
            return Err(Error::InvalidArgument(format!("duplicate {what} {n:?}")));
        }
    }
    Ok(())
}
