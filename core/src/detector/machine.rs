//! The sans-IO failure detector: arrivals and time in, events out. The rules are in the
//! [module documentation of `detector`](super).

use super::estimator::Tracker;
use super::{validate_names, DetectorConfig, MAX_NETWORKS, MAX_PEERS};
use crate::error::Result;
use crate::events::{Event, SuspicionKind};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The state of one network as the detector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkStatus {
    /// Network name.
    pub name: String,
    /// True when no peer was heard on it within the network failure limit.
    pub down: bool,
    /// Time since any peer was last heard on it (since the start if never).
    pub silent_for: Duration,
}

/// The state of one (peer, network) link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStatus {
    /// Network name.
    pub network: String,
    /// Heartbeats received on this link.
    pub heartbeats: u64,
    /// Time since the last heartbeat (since the start if never).
    pub silent_for: Duration,
    /// Silence currently allowed by the estimator after a heartbeat.
    pub timeout: Duration,
    /// The phi suspicion level now (see [`Tracker::phi`]).
    pub phi: f64,
    /// True when the estimator's deadline has passed.
    pub silent: bool,
    /// True when the peer's path on this network is suspected.
    pub path_suspected: bool,
}

/// The state of one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// Peer name.
    pub name: String,
    /// True when the peer's process is suspected.
    pub process_suspected: bool,
    /// One entry per network, in configuration order.
    pub links: Vec<LinkStatus>,
}

/// A snapshot of the detector's state.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorStatus {
    /// Networks in configuration order.
    pub networks: Vec<NetworkStatus>,
    /// Peers in configuration order.
    pub peers: Vec<PeerStatus>,
}

impl DetectorStatus {
    /// The status of a peer by name.
    pub fn peer(&self, name: &str) -> Option<&PeerStatus> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The status of a network by name.
    pub fn network(&self, name: &str) -> Option<&NetworkStatus> {
        self.networks.iter().find(|n| n.name == name)
    }
}

/// The failure detector's state machine. It is driven by [`DetectorCore::on_heartbeat`] and
/// [`DetectorCore::poll`], both with the current instant, and says when it next needs a poll
/// ([`DetectorCore::next_wakeup`]). It never reads a clock, sleeps or touches a socket.
///
/// Cost: each call examines every link once (peers times networks).
#[derive(Debug)]
pub struct DetectorCore {
    cfg: DetectorConfig,
    networks: Vec<String>,
    peers: Vec<String>,
    net_index: HashMap<String, usize>,
    peer_index: HashMap<String, usize>,
    /// Link (p, n) at `p * networks.len() + n`.
    links: Vec<Tracker>,
    /// Last heartbeat from any peer per network (the start before any).
    net_last: Vec<Instant>,
    start: Instant,
    /// Latest instant seen; earlier ones are taken as this one.
    now: Instant,
    // The state reported so far through events.
    net_down: Vec<bool>,
    process_suspected: Vec<bool>,
    path_suspected: Vec<bool>,
}

impl DetectorCore {
    /// A detector watching `peers` on `networks`, every link counted as heard at `now`.
    /// Names must be valid (see [`super::validate_name`]) and unique; at most
    /// [`MAX_PEERS`] peers and [`MAX_NETWORKS`] networks.
    pub fn new(
        cfg: DetectorConfig,
        networks: Vec<String>,
        peers: Vec<String>,
        now: Instant,
    ) -> Result<Self> {
        cfg.validate()?;
        validate_names("network name", &networks, MAX_NETWORKS)?;
        validate_names("peer name", &peers, MAX_PEERS)?;
        let links = (0..peers.len() * networks.len())
            .map(|_| Tracker::new(&cfg.estimator, cfg.interval, now))
            .collect();
        Ok(DetectorCore {
            net_index: networks
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
            peer_index: peers
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
            links,
            net_last: vec![now; networks.len()],
            start: now,
            now,
            net_down: vec![false; networks.len()],
            process_suspected: vec![false; peers.len()],
            path_suspected: vec![false; peers.len() * networks.len()],
            cfg,
            networks,
            peers,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Network names in configuration order.
    pub fn networks(&self) -> &[String] {
        &self.networks
    }

    /// Peer names in configuration order.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// The index of a peer in [`DetectorCore::peers`].
    pub fn peer_index(&self, peer: &str) -> Option<usize> {
        self.peer_index.get(peer).copied()
    }

    /// The index of a network in [`DetectorCore::networks`].
    pub fn network_index(&self, network: &str) -> Option<usize> {
        self.net_index.get(network).copied()
    }

    /// The tracker of a link, by names.
    pub fn tracker(&self, peer: &str, network: &str) -> Option<&Tracker> {
        let (p, n) = (self.peer_index(peer)?, self.network_index(network)?);
        Some(&self.links[self.link(p, n)])
    }

    fn link(&self, p: usize, n: usize) -> usize {
        p * self.networks.len() + n
    }

    /// A heartbeat of `peer` arrived on `network` at `now`. Returns the events of the state
    /// changes at `now`, the arrival included. Deadlines are checked only when the detector is
    /// called: a runtime that wants suspicions on time polls at
    /// [`DetectorCore::next_wakeup`], and one that was held up (its thread paused) reports
    /// the heartbeats that waited for it before polling, so its own pause is not taken for
    /// its peers' silence. Unknown names are ignored (the other changes due are still
    /// returned).
    pub fn on_heartbeat(&mut self, peer: &str, network: &str, now: Instant) -> Vec<Event> {
        match (self.peer_index(peer), self.network_index(network)) {
            (Some(p), Some(n)) => self.on_heartbeats_at(&[(p, n)], now),
            _ => self.poll(now),
        }
    }

    /// [`DetectorCore::on_heartbeat`] by indices (see [`DetectorCore::peer_index`] and
    /// [`DetectorCore::network_index`]).
    pub fn on_heartbeat_at(&mut self, peer: usize, network: usize, now: Instant) -> Vec<Event> {
        self.on_heartbeats_at(&[(peer, network)], now)
    }

    /// Several heartbeats, given as `(peer index, network index)`, all arrived at `now` (a
    /// runtime that read them in one go). Each link counts one arrival however often it
    /// appears. Then the rules are applied once. Indices out of range are ignored.
    pub fn on_heartbeats_at(&mut self, arrivals: &[(usize, usize)], now: Instant) -> Vec<Event> {
        self.now = self.now.max(now);
        let now = self.now;
        let (np, nn) = (self.peers.len(), self.networks.len());
        let mut links: Vec<(usize, usize)> = arrivals
            .iter()
            .copied()
            .filter(|&(p, n)| p < np && n < nn)
            .collect();
        links.sort_unstable();
        links.dedup();
        for (p, n) in links {
            let l = self.link(p, n);
            self.links[l].on_arrival(now);
            self.net_last[n] = self.net_last[n].max(now);
        }
        let mut out = Vec::new();
        self.evaluate(now, &mut out);
        out
    }

    /// The events of the state changes due by `now` (deadlines that passed).
    pub fn poll(&mut self, now: Instant) -> Vec<Event> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        self.evaluate(self.now, &mut out);
        out
    }

    /// The earliest instant after the last call at which [`DetectorCore::poll`] may return
    /// something; `None` when nothing can change before the next heartbeat.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let limit = self.cfg.network_failure_limit;
        self.links
            .iter()
            .map(Tracker::deadline)
            .chain(self.net_last.iter().map(|l| *l + limit))
            .filter(|t| *t > self.now)
            .min()
    }

    /// A snapshot of the state at `now` (which only affects the silence durations and phi;
    /// the suspicions are those reported so far).
    pub fn status(&self, now: Instant) -> DetectorStatus {
        let now = now.max(self.now);
        let nn = self.networks.len();
        DetectorStatus {
            networks: self
                .networks
                .iter()
                .enumerate()
                .map(|(n, name)| NetworkStatus {
                    name: name.clone(),
                    down: self.net_down[n],
                    silent_for: now - self.net_last[n],
                })
                .collect(),
            peers: self
                .peers
                .iter()
                .enumerate()
                .map(|(p, name)| PeerStatus {
                    name: name.clone(),
                    process_suspected: self.process_suspected[p],
                    links: (0..nn)
                        .map(|n| {
                            let t = &self.links[p * nn + n];
                            LinkStatus {
                                network: self.networks[n].clone(),
                                heartbeats: t.heartbeats(),
                                silent_for: now - t.last(),
                                timeout: t.timeout(),
                                phi: t.phi(now),
                                silent: t.is_silent(now),
                                path_suspected: self.path_suspected[p * nn + n],
                            }
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The instant the detector started at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// True when the latest heartbeat of `witness` on network `m` vouches that the silence of
    /// link `(p, n)` is real (see the module documentation): it came at or after the link's
    /// deadline, and after the witness had been heard without a silence on `m` for at least
    /// the link's timeout.
    fn vouches(&self, witness: usize, m: usize, p: usize, n: usize) -> bool {
        let nn = self.networks.len();
        let silent = &self.links[p * nn + n];
        let w = &self.links[witness * nn + m];
        w.last() >= silent.deadline() && w.last() >= w.streak_start() + silent.timeout()
    }

    /// Applies the rules at `now` and appends the events of every change.
    fn evaluate(&mut self, now: Instant, out: &mut Vec<Event>) {
        let nn = self.networks.len();
        let np = self.peers.len();

        // Rule 1: networks.
        for n in 0..nn {
            let down = now >= self.net_last[n] + self.cfg.network_failure_limit;
            if down != self.net_down[n] {
                self.net_down[n] = down;
                let network = self.networks[n].clone();
                out.push(if down {
                    Event::NetworkDown { network }
                } else {
                    Event::NetworkUp { network }
                });
            }
        }

        let mut silent = vec![false; nn];
        for p in 0..np {
            for (n, s) in silent.iter_mut().enumerate() {
                *s = self.links[p * nn + n].is_silent(now);
            }
            let all_silent = silent.iter().all(|s| *s);
            // Whether another peer vouches for p's silence on each network where p is silent.
            let others: Vec<bool> = (0..nn)
                .map(|n| silent[n] && (0..np).any(|q| q != p && self.vouches(q, n, p, n)))
                .collect();

            // Rule 2: the process.
            let want_process =
                all_silent && (self.process_suspected[p] || others.iter().any(|o| *o));
            if want_process != self.process_suspected[p] {
                self.process_suspected[p] = want_process;
                let peer = self.peers[p].clone();
                out.push(if want_process {
                    Event::PeerSuspected {
                        peer,
                        kind: SuspicionKind::Process,
                        network: None,
                    }
                } else {
                    Event::PeerRecovered {
                        peer,
                        network: None,
                    }
                });
            }

            // Rules 3 and 4: the paths (frozen while the peer is silent everywhere).
            if all_silent {
                continue;
            }
            for n in 0..nn {
                let l = p * nn + n;
                let want_path = silent[n]
                    && (self.path_suspected[l]
                        || ((0..nn).any(|m| m != n && !silent[m] && self.vouches(p, m, p, n))
                            && others[n]));
                if want_path != self.path_suspected[l] {
                    self.path_suspected[l] = want_path;
                    let peer = self.peers[p].clone();
                    let network = Some(self.networks[n].clone());
                    out.push(if want_path {
                        Event::PeerSuspected {
                            peer,
                            kind: SuspicionKind::Network,
                            network,
                        }
                    } else {
                        Event::PeerRecovered { peer, network }
                    });
                }
            }
        }
    }
}
