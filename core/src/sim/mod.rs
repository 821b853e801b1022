//! Deterministic simulation of the real client session ([`Session`]) and server node
//! ([`Node`]): the same types `Client` and `Server` run, driven here by a seeded world instead
//! of threads, sockets and clocks. No sleeps, no real time: every run is a pure function of
//! its seed (SPEC 2.1, 7).
//!
//! # The world
//!
//! - **Time.** One simulated real time in nanoseconds; the server reads it through a
//!   [`ManualClock`]. Every client has a clock of its own, `local = offset + real × (1 +
//!   skew)`, with the skew within ±0.9 % (the lease allows 1 %); the wake-ups a session asks
//!   for are converted back to real time exactly.
//! - **Network.** Connections are ordered streams: each message gets a random delay (0–50 ms,
//!   sometimes 0.1–1 s) and never overtakes an earlier one on its connection. A message may
//!   be lost by resetting its connection (it and everything after it are gone; the server
//!   forgets the connection at once, the client notices a little later). A client's session
//!   may drop a connection while the server still reads what was sent on it. Dials take a
//!   delay; they fail at once when the server is down, and after the dial's step timeout
//!   when the client is cut off (an endpoint that accepts and never answers).
//! - **Servers.** A single server or a group of three or five members, each the real
//!   [`Node`] with its own clock (skewed within ±0.09 %, the rest of the 1 % allowance is
//!   the clients'). What a node asks to persist is durable after an fsync of 0.1–1 ms; a
//!   crash loses what was not, drops the member's connections, and breaks the others' links
//!   to it; after a random downtime a new node starts from its disk, or (in a group, while
//!   every other member is settled) from a wiped one, which must find its incarnation and
//!   catch up. Members exchange raft messages with delays of 0.1–2 ms (sometimes 10–100
//!   ms), lose some, are cut off from each other for up to 1.5 s, and compact their logs
//!   (a member far behind then gets a snapshot). Every command any member applies is
//!   checked against one history (the same command at the same index everywhere), which
//!   feeds the replica the scenarios read; a member that applied all of it has its state.
//! - **Clients.** The real [`Session`], with a [`Shared`] record and an event sink. Clients
//!   get paused (GC pause, SIGSTOP): a paused client handles nothing, timers included;
//!   messages wait for it. Partitions cut a client off for a while.
//! - **Faults** differ per seed, from calm to stormy.
//!
//! The scenarios are in [`locks`] (fenced locks), [`elections`] and [`retry`] (the retry
//! policies through outages of the path to the server: the retry benchmark).

mod elections;
mod locks;
mod retry;

use crate::client::session::{DialInfo, Io, Session};
use crate::client::{ClientConfig, Shared};
use crate::clock::ManualClock;
use crate::events::{Event, Sink};
use crate::proto::{ClientMsg, Incarnation, MemberChange, ServerMsg};
use crate::retry::{Exponential, Fixed, InverseExponential, RetryPolicy};
use crate::server::node::{Node, NodeConfig, NodeIo, Seen};
use crate::server::replica::{founding_snapshot, Durable, ReplicaConfig};
use crate::server::state::{Command, State};
use crossbeam_channel::Receiver;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nanoseconds in a millisecond.
pub(crate) const MS: u64 = 1_000_000;
/// The service's first incarnation in every run (the log survives restarts; a total loss
/// begins the next, [`Service::incarnation`]).
const INC: Incarnation = 0x51;

/// The seeds a scenario's test runs: `SIM_SEED=n` alone (traced when `SIM_TRACE` is set),
/// else `0..SIM_SEEDS`, else `0..default`. Returns the seeds and whether to trace.
pub(crate) fn seeds_from_env(default: u64) -> (Vec<u64>, bool) {
    let num = |name: &str| -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
    };
    match num("SIM_SEED") {
        Some(s) => (vec![s], std::env::var_os("SIM_TRACE").is_some()),
        None => ((0..num("SIM_SEEDS").unwrap_or(default)).collect(), false),
    }
}

/// A random duration in `lo..=hi` milliseconds, in nanoseconds.
pub(crate) fn ms_range(rng: &mut fastrand::Rng, lo: u64, hi: u64) -> u64 {
    rng.u64(lo * MS..=hi * MS)
}

/// Fault rates of one run.
pub(crate) struct Faults {
    /// Per message: the connection resets and the message is lost.
    pub(crate) p_reset: f64,
    /// Per message: a large delay.
    pub(crate) p_slow: f64,
    /// Per message from a client: its connection fails on the client's side after it (a
    /// writer that timed out), while the server goes on reading what was sent on it.
    pub(crate) p_abandon: f64,
    /// Longest ordinary delay of a message, in milliseconds (50 while faults run; a healed
    /// network is a LAN's, 5).
    pub(crate) max_delay_ms: u64,
    /// Per restart of a member of a group: its disk was wiped.
    pub(crate) p_wipe: f64,
}

impl Faults {
    /// Message faults for a run, scaled by `storm` (0.1 calm … 2 stormy).
    pub(crate) fn draw(rng: &mut fastrand::Rng, storm: f64) -> Faults {
        Faults {
            p_reset: rng.f64() * 0.01 * storm,
            p_slow: rng.f64() * 0.03 * storm,
            p_abandon: rng.f64() * 0.005 * storm,
            max_delay_ms: 50,
            p_wipe: rng.f64() * 0.5,
        }
    }
}

/// Something that happens at a simulated instant.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A client's timers (and its user's) are due.
    ClientWake(usize),
    /// A client process (re)connects: a new session.
    Connect(usize),
    /// Member `.0`'s timers are due.
    ServerWake(usize),
    /// A message reaches the server on a connection.
    ToServer {
        conn: usize,
        msg: ClientMsg,
    },
    /// A message reaches a client on a connection.
    ToClient {
        conn: usize,
        msg: ServerMsg,
    },
    /// The client learns that a connection broke.
    Broken {
        conn: usize,
    },
    /// A dial's connection reaches the server (it accepts and reads the hello).
    Accept {
        conn: usize,
    },
    /// A dial gives up (its step timeout passed without a welcome).
    DialTimeout {
        conn: usize,
    },
    /// A dial fails at once (the server is down).
    DialRefused {
        client: usize,
        session: u64,
        attempt: u64,
    },
    /// The server reads the end of a connection its client dropped.
    ServerClose {
        conn: usize,
    },
    /// A connectivity check a member's node asked for ends (for the node of generation
    /// `gen`).
    CheckDone {
        member: usize,
        gen: u64,
        election: String,
        candidate: String,
        ok: bool,
    },
    PauseStart(usize),
    PauseEnd(usize),
    PartitionStart(usize),
    PartitionEnd(usize),
    /// A member crashes (`kill -9`): a random one.
    Crash,
    /// Member `.0` starts again (from its disk, or wiped).
    Restart(usize),
    /// The operator changes the group's members (`tenure member`): adds the spare server,
    /// replaces a voter with it, or removes a voter.
    MemberChange,
    /// Every member crashes and loses its disk; the operator starts them all again with
    /// `--bootstrap` (a new incarnation) after a downtime longer than any client's TTL.
    TotalLoss,
    /// Member `to`'s connection to member `id` is refused: `id`'s process died on a machine
    /// that is up (nothing listens at its address).
    Gone {
        to: usize,
        id: usize,
    },
    /// A raft message reaches member `to`.
    Peer {
        to: usize,
        msg: raft::eraftpb::Message,
    },
    /// Member `member`'s fsync of a persist batch completes (unless it crashed since:
    /// `gen`).
    Synced {
        member: usize,
        gen: u64,
        number: u64,
        snapshot: Option<raft::eraftpb::Snapshot>,
        entries: Vec<raft::eraftpb::Entry>,
        hard_state: Option<raft::eraftpb::HardState>,
    },
    /// Member `.0` snapshots its state and compacts its log.
    Compact(usize),
    /// Member `.0` is cut off from the other members (not from clients), until `PeerHeal`.
    PeerCut(usize),
    PeerHeal(usize),
    /// Something of the scenario's own.
    Scenario(u64),
}

struct Item {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    /// Reversed, so that the max-heap pops the earliest event first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One connection of the simulated network.
pub(crate) struct Conn {
    pub(crate) client: usize,
    /// The member it reaches.
    pub(crate) member: usize,
    /// The session (by its number in the client) and dial attempt that made it.
    session: u64,
    attempt: u64,
    /// False once reset or closed (the server has forgotten it; messages on it are lost).
    pub(crate) alive: bool,
    /// The server has accepted it (the node knows it).
    accepted: bool,
    /// The client has its welcome (the dial succeeded).
    welcomed: bool,
    /// The client dropped it; the server still reads what was sent before.
    dropped: bool,
    last_to_server: u64,
    last_to_client: u64,
}

/// A simulated client process: its session, and what the world knows of it.
pub(crate) struct Client {
    pub(crate) skew_ppm: i64,
    pub(crate) offset_ns: u64,
    pub(crate) cfg: ClientConfig,
    /// The client's session machine; `None` between a close and the next connect.
    pub(crate) session: Option<Session>,
    /// Numbers the client's sessions (a new `Session` after each close or failed connect).
    pub(crate) generation: u64,
    pub(crate) shared: Arc<Shared>,
    events: Receiver<Event>,
    /// Events taken from `events` by the world's own checks, not yet read by the scenario.
    told: Vec<Event>,
    sink: Option<Sink>,
    /// Where the first open's outcome goes.
    pub(crate) first: Option<crate::client::pending::Waiter>,
    /// Dial attempt -> network connection, for the current session.
    conns: BTreeMap<u64, usize>,
    /// Dial attempt -> the index of the endpoint it reached.
    dial_endpoint: BTreeMap<u64, usize>,
    pub(crate) paused: bool,
    pub(crate) partitioned: bool,
    /// Inputs that arrived while paused, in order.
    inbox: VecDeque<Ev>,
    wake_at: Option<u64>,
    lease_seed: u64,
    /// A [`Ev::Connect`] is on its way.
    connect_pending: bool,
    /// The process runs (false once killed, until it is started again).
    pub(crate) alive: bool,
}

impl Client {
    /// The client's clock reading, in ns since the base instant, at real time `real`.
    pub(crate) fn local_ns(&self, real: u64) -> u64 {
        let k = (1_000_000 + self.skew_ppm) as i128;
        self.offset_ns + (real as i128 * k / 1_000_000) as u64
    }

    /// The first real instant at which the client's clock reads `local` or later.
    pub(crate) fn real_ns(&self, local: u64) -> u64 {
        if local <= self.offset_ns {
            return 0;
        }
        let k = (1_000_000 + self.skew_ppm) as i128;
        let d = (local - self.offset_ns) as i128 * 1_000_000;
        ((d + k - 1) / k) as u64
    }
}

/// One member of the simulated servers' group: the real [`Node`], what it made durable,
/// its clock.
pub(crate) struct Member {
    pub(crate) node: Option<Node>,
    /// What the node persisted and saw fsynced (a crash loses what was not).
    durable: Durable,
    /// When its last fsync completes (they complete in order).
    last_sync: u64,
    wake_at: Option<u64>,
    /// Numbers the nodes (a crash ends one): results of checks and syncs a dead node asked
    /// for are dropped.
    gen: u64,
    /// Its clock runs at `1 + skew_ppm / 10^6` of real time (within ±0.09 %: the lease's
    /// allowance is for client and server together).
    skew_ppm: i64,
    /// Cut off from the other members.
    cut: bool,
    /// Its directory was wiped at its last restart, and it has not settled yet.
    wiped: bool,
    /// The incarnation token in its directory (`None` once wiped, until it takes one).
    token: Option<Incarnation>,
    /// Started by the operator with `--bootstrap` (after a total loss), until it has a token.
    bootstrap: bool,
    /// A spare server, not started: outside the group until the operator adds it.
    spare: bool,
    /// Its node asked for a compaction ([`Node::wants_snapshot`]); one is on its way.
    compact_asked: bool,
    /// Its node led at the last look (for the trace).
    led: bool,
    /// The last command index it applied (0: none yet).
    applied: u64,
}

/// The simulated servers' group and the one history they must agree on.
pub(crate) struct Service {
    pub(crate) members: Vec<Member>,
    /// The committed commands, in log order, as first applied by any member.
    pub(crate) log: Vec<Command>,
    /// Index -> what every member must apply there: (term, command), or `None` for an
    /// entry without a command. A member that applies something else forks the history.
    history: BTreeMap<u64, Option<(u64, Command)>>,
    /// The highest index applied anywhere.
    top: u64,
    /// The state the history applies to (what the scenarios read).
    pub(crate) replica: State,
    /// The incarnation in force: [`INC`], then a new one after each total loss.
    pub(crate) incarnation: Incarnation,
    /// How many total losses happened (the history, log and replica are of the current
    /// incarnation only).
    pub(crate) epoch: u64,
    /// The voters the operator saw at its last member change.
    last_voters: Vec<u64>,
}

/// What a scenario adds to the world: its users, its checks.
pub(crate) trait Scenario {
    /// A client's user acts if due (called after every input of the client); returns when
    /// it next wants to act, in the client's local time.
    fn user(&mut self, w: &mut World, c: usize) -> Option<Instant>;
    /// A command was logged: `outputs` are what the replica's state made of it.
    fn logged(&mut self, w: &mut World, cmd: &Command, outputs: &[crate::server::state::Output]);
    /// Checks the invariants after every event.
    fn check(&mut self, w: &mut World);
    /// Client `c` starts a new session object (a process connecting anew): whatever its
    /// user held belongs to the old one.
    fn session_started(&mut self, w: &mut World, c: usize);
    /// An event of the scenario's own.
    fn scenario_event(&mut self, w: &mut World, id: u64);
    /// Every member lost its data (a new incarnation begins, [`Service::epoch`] counts it):
    /// what the scenario recorded of the service's state is gone. Only scenarios that
    /// schedule [`Ev::TotalLoss`] implement it.
    fn total_loss(&mut self, w: &mut World) {
        let _ = w;
        unreachable!("this scenario schedules no total loss");
    }
    /// Whether a connectivity check of `endpoint` succeeds: `Some(true)` it accepts,
    /// `Some(false)` it refuses at once (nobody listens), `None` it times out (cut off).
    fn reachable(&self, w: &World, endpoint: &str) -> Option<bool> {
        let _ = (w, endpoint);
        Some(true)
    }
}

/// A violated invariant.
#[derive(Debug, Clone)]
pub(crate) struct Violation {
    pub(crate) kind: &'static str,
    pub(crate) at_ns: u64,
    pub(crate) msg: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {:.3} ms: {}",
            self.kind,
            self.at_ns as f64 / MS as f64,
            self.msg
        )
    }
}

/// Counts of what a run exercised.
#[derive(Debug, Default, Clone)]
pub(crate) struct WorldStats {
    pub(crate) events: u64,
    pub(crate) resets: u64,
    pub(crate) dropped: u64,
    pub(crate) partitions: u64,
    pub(crate) pauses: u64,
    pub(crate) long_pauses: u64,
    pub(crate) restarts: u64,
    pub(crate) dials: u64,
    pub(crate) dials_failed: u64,
    pub(crate) kills: u64,
    pub(crate) checks_ok: u64,
    pub(crate) checks_failed: u64,
    pub(crate) compactions: u64,
    pub(crate) restores: u64,
    pub(crate) member_cuts: u64,
    pub(crate) wipes: u64,
    pub(crate) total_losses: u64,
    /// Changes of the group's members asked by the operator, and changes of the voters seen
    /// on the leader between two such requests.
    pub(crate) member_changes: u64,
    pub(crate) voters_changed: u64,
    /// Members that campaigned at once because their crashed leader's port refused them.
    pub(crate) quick_campaigns: u64,
    /// Clients that reached a new incarnation after having known an old one (each was
    /// told `data_lost`, or the run failed).
    pub(crate) told_data_lost: u64,
}

/// Runs every seed, summing each run's scenario statistics (`add`) and world statistics. A
/// failing seed panics with what was violated and the command that replays it with a trace
/// (`module`: the scenario's test path, for example `sim::locks`).
pub(crate) fn run_seeds<S: Default>(
    seeds: &[u64],
    module: &str,
    run: impl Fn(u64) -> Result<(S, WorldStats), Violation>,
    add: impl Fn(&mut S, &S),
) -> (S, WorldStats) {
    let mut total = S::default();
    let mut ws = WorldStats::default();
    for &seed in seeds {
        let replay = format!(
            "replay: SIM_SEED={seed} SIM_TRACE=1 cargo test -p tenure --lib {module} -- \
             --nocapture"
        );
        // A panic in the code under test (raft-rs asserts, ours) names its seed too.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed)))
            .unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("seed {seed} panicked: {why}\n{replay}")
            });
        match outcome {
            Ok((s, w)) => {
                add(&mut total, &s);
                ws.add(&w);
            }
            Err(v) => panic!("seed {seed}: {v}\n{replay}"),
        }
    }
    (total, ws)
}

impl WorldStats {
    /// What the servers went through, for a scenario's summary.
    pub(crate) fn members_line(&self) -> String {
        format!(
            "member restarts {}, of them with a wiped disk {}, members cut off {}, log \
             compactions {}, snapshots received {}\n  member changes asked {}, voters seen \
             changed {}, campaigns at once after a crashed leader {}",
            self.restarts,
            self.wipes,
            self.member_cuts,
            self.compactions,
            self.restores,
            self.member_changes,
            self.voters_changed,
            self.quick_campaigns
        )
    }

    /// With many seeds, every fault of the servers happened at least once (so the
    /// invariants were not checked in vain).
    pub(crate) fn assert_members_exercised(&self) {
        assert!(self.restarts > 0, "no member ever restarted");
        assert!(self.wipes > 0, "no member ever lost its disk");
        assert!(self.member_cuts > 0, "no member was ever cut off");
        assert!(self.compactions > 0, "no log was ever compacted");
        assert!(self.restores > 0, "no member ever received a snapshot");
        assert!(
            self.member_changes > 0,
            "the operator never changed the members"
        );
        assert!(self.voters_changed > 0, "no member change ever took effect");
        assert!(
            self.quick_campaigns > 0,
            "no member ever campaigned at once after its leader crashed"
        );
    }

    pub(crate) fn add(&mut self, o: &WorldStats) {
        self.events += o.events;
        self.resets += o.resets;
        self.dropped += o.dropped;
        self.partitions += o.partitions;
        self.pauses += o.pauses;
        self.long_pauses += o.long_pauses;
        self.restarts += o.restarts;
        self.dials += o.dials;
        self.dials_failed += o.dials_failed;
        self.kills += o.kills;
        self.checks_ok += o.checks_ok;
        self.checks_failed += o.checks_failed;
        self.compactions += o.compactions;
        self.restores += o.restores;
        self.member_cuts += o.member_cuts;
        self.wipes += o.wipes;
        self.total_losses += o.total_losses;
        self.member_changes += o.member_changes;
        self.voters_changed += o.voters_changed;
        self.quick_campaigns += o.quick_campaigns;
        self.told_data_lost += o.told_data_lost;
    }
}

/// The simulated world: time, network, server, clients.
pub(crate) struct World {
    /// The run's seed (the replica's elections are seeded from it).
    seed: u64,
    pub(crate) rng: fastrand::Rng,
    clock: ManualClock,
    pub(crate) base: Instant,
    /// Simulated real time, ns since `base`.
    pub(crate) now: u64,
    seq: u64,
    queue: BinaryHeap<Item>,
    pub(crate) faults: Faults,
    pub(crate) clients: Vec<Client>,
    pub(crate) conns: Vec<Conn>,
    pub(crate) server: Service,
    pub(crate) stats: WorldStats,
    pub(crate) violation: Option<Violation>,
    pub(crate) trace: bool,
    /// Faults have stopped: no more pauses, partitions or crashes start.
    pub(crate) healed: bool,
    /// A fault of the path between every client and the servers, while it lasts
    /// ([`World::begin_outage`]).
    pub(crate) outage: Option<Outage>,
    /// Counts what clients send toward the servers, when a scenario wants it.
    pub(crate) tap: Option<retry::Tap>,
    /// A run that takes more events than this is stuck (default [`MAX_EVENTS`]).
    pub(crate) max_events: u64,
    /// Compare a member's whole state with the history's after every command it applies
    /// (default); the retry benchmark, which checks no state and opens tens of thousands of
    /// sessions, turns it off (each comparison reads every session).
    pub(crate) compare_states: bool,
}

/// A fault of the path between every client and the servers (the retry benchmark's
/// outages; the servers themselves run on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outage {
    /// Nothing listens (the server is gone): connections are reset, dials refused at once.
    Refused,
    /// Every message either way is lost; connections stay open; dials are never answered.
    BlackHole,
    /// The servers answer late (overloaded): every message to a client takes this many
    /// nanoseconds more, in order.
    Slow(u64),
}

/// A run that takes more events than this is stuck.
const MAX_EVENTS: u64 = 2_000_000;

impl World {
    /// A world with a fresh group of `members` servers (1, 3 or 5) and no clients; a group
    /// has one spare server more, not started, for the operator's member changes (every
    /// server's `--cluster` lists them all).
    pub(crate) fn new(
        seed: u64,
        mut rng: fastrand::Rng,
        faults: Faults,
        trace: bool,
        members: usize,
    ) -> World {
        let clock = ManualClock::new();
        let base = clock.start();
        // A group was founded (`--bootstrap`): every member starts from the founding snapshot.
        let founded = if members > 1 {
            let ids = (1..=members as u64).collect(); // the spare is not a founder
            let data = bincode::serialize(&State::new()).expect("state serializes");
            Durable {
                snapshot: Some(founding_snapshot(ids, data)),
                ..Durable::default()
            }
        } else {
            Durable::default()
        };
        let group = members;
        let slots = if members > 1 { members + 1 } else { 1 };
        let members = (0..slots)
            .map(|i| Member {
                node: None,
                durable: if i < group {
                    founded.clone()
                } else {
                    Durable::default()
                },
                last_sync: 0,
                wake_at: None,
                gen: 0,
                skew_ppm: if members > 1 { rng.i64(-900..=900) } else { 0 },
                cut: false,
                wiped: false,
                token: (i < group).then_some(INC),
                bootstrap: false,
                spare: i >= group,
                compact_asked: false,
                led: false,
                applied: if group > 1 && i < group { 1 } else { 0 },
            })
            .collect();
        let mut w = World {
            seed,
            rng,
            clock,
            base,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            faults,
            clients: Vec::new(),
            conns: Vec::new(),
            server: Service {
                members,
                log: Vec::new(),
                history: BTreeMap::new(),
                top: 0,
                replica: State::new(),
                incarnation: INC,
                epoch: 0,
                last_voters: (1..=group as u64).collect(),
            },
            stats: WorldStats::default(),
            violation: None,
            trace,
            healed: false,
            outage: None,
            tap: None,
            max_events: MAX_EVENTS,
            compare_states: true,
        };
        for m in 0..group {
            let node = w.start_node(m);
            w.server.members[m].node = Some(node);
        }
        w
    }

    /// The address of member `m` (what clients are given, and what members tell them).
    pub(crate) fn address(m: usize) -> String {
        format!("m{m}:7411")
    }

    /// Every member's address, in order.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        (0..self.server.members.len()).map(World::address).collect()
    }

    /// Member `m`'s clock now.
    fn member_now(&self, m: usize) -> Instant {
        let k = (1_000_000 + self.server.members[m].skew_ppm) as i128;
        self.base + Duration::from_nanos((self.now as i128 * k / 1_000_000) as u64)
    }

    /// The first real instant at which member `m`'s clock reads `t` or later.
    fn member_real(&self, m: usize, t: Instant) -> u64 {
        let local = t.saturating_duration_since(self.base).as_nanos() as i128;
        let k = (1_000_000 + self.server.members[m].skew_ppm) as i128;
        ((local * 1_000_000 + k - 1) / k) as u64
    }

    /// The real node of member `m`, from what it made durable (a wiped one has no token and
    /// looks for its group's; a single server without one begins a new incarnation).
    fn start_node(&mut self, m: usize) -> Node {
        let n = self.server.members.len();
        let ids: Vec<u64> = (1..=n as u64).collect();
        let mut replica = ReplicaConfig::new(m as u64 + 1, ids, self.seed ^ self.rng.u64(..));
        replica.seed = self.rng.u64(..);
        let cfg = if n == 1 {
            // As `Storage::open` does: a directory without a token draws a new one.
            let token = *self.server.members[m]
                .token
                .get_or_insert(self.server.incarnation);
            NodeConfig::alone(token, replica.seed)
        } else {
            let mb = &self.server.members[m];
            NodeConfig {
                replica,
                addresses: (0..n).map(|i| (i as u64 + 1, World::address(i))).collect(),
                incarnation: mb.token,
                bootstrap: mb.bootstrap,
                // What member 1 draws with `--bootstrap`: the incarnation in force.
                new_token: self.server.incarnation,
            }
        };
        let durable = self.server.members[m].durable.clone();
        let state = durable
            .snapshot
            .as_ref()
            .map(|s| bincode::deserialize(&s.data).expect("a snapshot of the state"))
            .unwrap_or_default();
        let now = self.member_now(m);
        Node::new(state, cfg, durable, now).expect("a valid node")
    }

    pub(crate) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Item {
            at,
            seq: self.seq,
            ev,
        });
    }

    pub(crate) fn trace(&self, f: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>10.3} ms  {}", self.now as f64 / MS as f64, f());
        }
    }

    pub(crate) fn fail(&mut self, kind: &'static str, msg: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                kind,
                at_ns: self.now,
                msg,
            });
        }
    }

    /// Adds a client whose process starts (connects) at real time `start`.
    pub(crate) fn add_client(
        &mut self,
        cfg: ClientConfig,
        skew_ppm: i64,
        offset_ns: u64,
        start: u64,
    ) -> usize {
        let (sink, events) = Sink::channel();
        let lease_seed = self.rng.u64(..);
        self.clients.push(Client {
            skew_ppm,
            offset_ns,
            cfg,
            session: None,
            generation: 0,
            shared: Arc::new(Shared::new(self.base)),
            events,
            told: Vec::new(),
            sink: Some(sink),
            first: None,
            conns: BTreeMap::new(),
            dial_endpoint: BTreeMap::new(),
            paused: false,
            partitioned: false,
            inbox: VecDeque::new(),
            wake_at: None,
            lease_seed,
            connect_pending: false,
            alive: true,
        });
        let c = self.clients.len() - 1;
        self.connect_at(c, start);
        c
    }

    /// Adds a client as the scenarios draw them: TTL `ttl_ms`, the drift allowance given and no
    /// safety margin (no scheduling delays here: the drift allowance alone must hold), a
    /// connect timeout of 0.1–1 s, mostly the inverse exponential retry policy (sometimes
    /// exponential or fixed), a clock skewed by `skew_ppm` (drawn within ±0.9 % when `None`),
    /// starting within the first 100 ms.
    pub(crate) fn draw_client(
        &mut self,
        ttl_ms: u64,
        drift_ratio: f64,
        skew_ppm: Option<i64>,
    ) -> usize {
        let mut cfg =
            ClientConfig::new(self.endpoints()).session_ttl(Duration::from_millis(ttl_ms));
        cfg.drift_ratio = drift_ratio;
        cfg.safety_margin = Some(Duration::ZERO);
        cfg.connect_timeout = Duration::from_millis(self.rng.u64(100..=1000));
        cfg.retry = match self.rng.u8(0..10) {
            0 => Arc::new(Exponential {
                initial: Duration::from_millis(self.rng.u64(10..=100)),
                ..Default::default()
            }) as Arc<dyn RetryPolicy>,
            1 => Arc::new(Fixed {
                gap: Duration::from_millis(self.rng.u64(10..=100)),
                ..Default::default()
            }),
            _ => Arc::new(InverseExponential::default()),
        };
        let skew = skew_ppm.unwrap_or_else(|| self.rng.i64(-9000..=9000));
        let offset = self.rng.u64(0..10_000 * MS);
        let start = self.rng.u64(0..100 * MS);
        self.add_client(cfg, skew, offset, start)
    }

    /// Schedules client `c`'s partitions and pauses (a quarter of them long, up to twice its
    /// TTL) until real time `end`, more often the stormier the run.
    pub(crate) fn schedule_faults(&mut self, c: usize, end: u64, storm: f64) {
        let ttl_ms = self.clients[c].cfg.session_ttl.as_millis() as u64;
        let gap = (self.rng.u64(800..4000) as f64 / storm) as u64;
        let mut t = ms_range(&mut self.rng, 0, gap);
        while t < end {
            let d = ms_range(&mut self.rng, 20, 2 * ttl_ms);
            self.push(t, Ev::PartitionStart(c));
            self.push(t + d, Ev::PartitionEnd(c));
            t += d + ms_range(&mut self.rng, gap / 2, gap * 2);
        }
        let gap = (self.rng.u64(500..3000) as f64 / storm) as u64;
        let mut t = ms_range(&mut self.rng, 0, gap);
        while t < end {
            let d = if self.rng.u8(0..4) == 0 {
                self.stats.long_pauses += 1;
                ms_range(&mut self.rng, ttl_ms * 3 / 10, 2 * ttl_ms)
            } else {
                ms_range(&mut self.rng, 1, 80)
            };
            self.push(t, Ev::PauseStart(c));
            self.push(t + d, Ev::PauseEnd(c));
            t += d + ms_range(&mut self.rng, gap / 2, gap * 2);
        }
    }

    /// Schedules the faults of a group's members until real time `end`: members cut off from
    /// the others for a while, compactions of their logs (a member far behind then gets a
    /// snapshot), and the operator's member changes. Nothing for a single server.
    pub(crate) fn schedule_member_faults(&mut self, end: u64, storm: f64) {
        let n = self.server.members.len();
        if n == 1 {
            return;
        }
        let gap = (self.rng.u64(1500..6000) as f64 / storm) as u64;
        let mut t = ms_range(&mut self.rng, 200, gap.max(201));
        while t < end {
            let m = self.rng.usize(..n);
            let d = ms_range(&mut self.rng, 50, 1500);
            self.push(t, Ev::PeerCut(m));
            self.push(t + d, Ev::PeerHeal(m));
            t += d + ms_range(&mut self.rng, gap / 2, gap * 2);
        }
        let mut t = ms_range(&mut self.rng, 300, 3000);
        while t < end {
            let m = self.rng.usize(..n);
            self.push(t, Ev::Compact(m));
            t += ms_range(&mut self.rng, 300, 3000);
        }
        // The operator changes the members a few times (the spare in, a voter out).
        for _ in 0..self.rng.usize(0..=4) {
            let t = ms_range(&mut self.rng, 500, end / MS);
            self.push(t, Ev::MemberChange);
        }
    }

    /// Client `c` (re)connects at real time `at`, unless a connect is on its way already.
    pub(crate) fn connect_at(&mut self, c: usize, at: u64) {
        if !self.clients[c].connect_pending {
            self.clients[c].connect_pending = true;
            self.push(at, Ev::Connect(c));
        }
    }

    /// Closes client `c` (`Client::close`): its session closes (the close request goes out on
    /// its connection if it has one) and the process lets go of it; it connects again at real
    /// time `again`.
    pub(crate) fn close_client(&mut self, c: usize, again: u64) {
        let (done, _) = crate::client::pending::slot();
        self.with_session(c, |s, now| s.close(now, done));
        self.clients[c].first = None;
        self.end_session(c);
        self.connect_at(c, again);
    }

    /// What client `c`'s session told its application since the last call, in order.
    pub(crate) fn events(&mut self, c: usize) -> Vec<Event> {
        let cl = &mut self.clients[c];
        let mut evs = std::mem::take(&mut cl.told);
        evs.extend(cl.events.try_iter());
        evs
    }

    /// The client's clock reading now.
    pub(crate) fn local_now(&self, c: usize) -> Instant {
        self.base + Duration::from_nanos(self.clients[c].local_ns(self.now))
    }

    // ---- the run -------------------------------------------------------------------------

    /// Runs events until `end_ns` of real time, checking after each.
    pub(crate) fn run(&mut self, sc: &mut dyn Scenario, end_ns: u64) -> Result<(), Violation> {
        while let Some(item) = self.queue.pop() {
            if item.at > end_ns {
                break;
            }
            assert!(item.at >= self.now, "time goes forward");
            self.now = item.at;
            self.clock.set(Duration::from_nanos(self.now));
            self.stats.events += 1;
            if self.stats.events > self.max_events {
                let max = self.max_events;
                self.fail("stuck", format!("more than {max} events"));
            } else {
                self.handle(sc, item.ev);
                sc.check(self);
            }
            if let Some(v) = self.violation.take() {
                return Err(v);
            }
        }
        self.check_replay("the end of the run");
        match self.violation.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    fn handle(&mut self, sc: &mut dyn Scenario, ev: Ev) {
        match ev {
            Ev::ClientWake(c) => {
                if self.clients[c].wake_at == Some(self.now) {
                    self.clients[c].wake_at = None;
                    if !self.clients[c].paused && self.clients[c].alive {
                        self.client_run(sc, c);
                    }
                }
            }
            Ev::ServerWake(m) => {
                if self.server.members[m].wake_at == Some(self.now) {
                    self.server.members[m].wake_at = None;
                    let now = self.member_now(m);
                    if let Some(n) = self.server.members[m].node.as_mut() {
                        n.tick(now);
                    }
                    self.server_io(sc, m);
                }
            }
            Ev::Connect(c) => {
                self.clients[c].alive = true;
                self.client_input(sc, c, ev)
            }
            Ev::CheckDone {
                member: m,
                gen,
                election,
                candidate,
                ok,
            } => {
                let now = self.member_now(m);
                if gen == self.server.members[m].gen {
                    if let Some(n) = self.server.members[m].node.as_mut() {
                        if ok {
                            self.stats.checks_ok += 1;
                        } else {
                            self.stats.checks_failed += 1;
                        }
                        n.checked(now, election, candidate, true, ok);
                        self.server_io(sc, m);
                    }
                }
            }
            Ev::Accept { conn } => {
                let m = self.conns[conn].member;
                let now = self.member_now(m);
                if self.conns[conn].alive {
                    match self.server.members[m].node.as_mut() {
                        Some(n) => {
                            self.conns[conn].accepted = true;
                            n.accepted(now, conn);
                            let hello = ClientMsg::Hello {
                                magic: crate::proto::MAGIC,
                                version: crate::proto::PROTOCOL_VERSION,
                                client_name: format!("sim-{}", self.conns[conn].client),
                            };
                            n.frame(now, conn, hello);
                            self.server_io(sc, m);
                        }
                        None => self.reset(conn),
                    }
                }
            }
            Ev::ToServer { conn, msg } => {
                let m = self.conns[conn].member;
                let now = self.member_now(m);
                if self.conns[conn].alive && self.conns[conn].accepted {
                    if let Some(n) = self.server.members[m].node.as_mut() {
                        n.frame(now, conn, msg);
                        self.server_io(sc, m);
                    }
                }
            }
            Ev::ServerClose { conn } => {
                let m = self.conns[conn].member;
                self.server_close(conn);
                self.server_io(sc, m);
            }
            Ev::ToClient { conn, .. } | Ev::Broken { conn } | Ev::DialTimeout { conn } => {
                let c = self.conns[conn].client;
                self.client_input(sc, c, ev);
            }
            Ev::DialRefused { client, .. } => self.client_input(sc, client, ev),
            Ev::PauseStart(_)
            | Ev::PartitionStart(_)
            | Ev::Crash
            | Ev::TotalLoss
            | Ev::MemberChange
            | Ev::PeerCut(_)
                if self.healed => {}
            // (A compaction a node asked for still happens.)
            Ev::Compact(m) if self.healed && !self.server.members[m].compact_asked => {}
            Ev::PauseStart(c) => {
                self.trace(|| format!("client {c} paused"));
                self.stats.pauses += 1;
                self.clients[c].paused = true;
            }
            Ev::PauseEnd(c) => {
                self.trace(|| format!("client {c} resumes"));
                self.clients[c].paused = false;
                while let Some(ev) = self.clients[c].inbox.pop_front() {
                    self.client_apply(sc, c, ev);
                }
                self.client_run(sc, c);
            }
            Ev::PartitionStart(c) => {
                self.trace(|| format!("client {c} partitioned"));
                self.stats.partitions += 1;
                self.clients[c].partitioned = true;
                let mine: Vec<usize> = self.clients[c].conns.values().copied().collect();
                for conn in mine {
                    self.reset(conn);
                }
            }
            Ev::PartitionEnd(c) => {
                self.trace(|| format!("client {c} partition heals"));
                self.clients[c].partitioned = false;
            }
            Ev::Crash => {
                let m = self.rng.usize(..self.server.members.len());
                if self.server.members[m].node.is_none() {
                    return;
                }
                self.trace(|| format!("member {m} crashes"));
                self.crash(m);
                let down = if self.rng.bool() {
                    ms_range(&mut self.rng, 10, 200)
                } else {
                    ms_range(&mut self.rng, 200, 1500)
                };
                self.push(self.now + down, Ev::Restart(m));
            }
            Ev::Restart(m) => self.restart(sc, m),
            Ev::TotalLoss => self.total_loss(sc),
            Ev::MemberChange => self.member_change(sc),
            Ev::Gone { to, id } => {
                let still_down = self.server.members[id].node.is_none();
                if !still_down || self.server.members[to].cut {
                    return; // restarted meanwhile, or the refusal cannot reach it
                }
                let now = self.member_now(to);
                let Some(n) = self.server.members[to].node.as_mut() else {
                    return;
                };
                if n.gone(now, id as u64 + 1) {
                    self.stats.quick_campaigns += 1;
                    self.trace(|| format!("member {to} campaigns: its leader {id} is gone"));
                }
                self.server_io(sc, to);
            }
            Ev::Peer { to, msg } => {
                let from = msg.from as usize - 1;
                if self.server.members[to].cut || self.server.members[from].cut {
                    return;
                }
                if let Some(n) = self.server.members[to].node.as_mut() {
                    n.peer(msg);
                    self.server_io(sc, to);
                }
            }
            Ev::Synced {
                member: m,
                gen,
                number,
                snapshot,
                entries,
                hard_state,
            } => {
                if gen != self.server.members[m].gen {
                    return; // lost in a crash
                }
                self.trace(|| {
                    format!(
                        "member {m} synced batch {number}: entries {:?}..{:?}, {:?}",
                        entries.first().map(|e| (e.index, e.term)),
                        entries.last().map(|e| (e.index, e.term)),
                        hard_state
                    )
                });
                self.server.members[m]
                    .durable
                    .add(snapshot, entries, hard_state);
                let now = self.member_now(m);
                if let Some(n) = self.server.members[m].node.as_mut() {
                    n.persisted(now, number);
                }
                self.server_io(sc, m);
            }
            Ev::Compact(m) => {
                self.server.members[m].compact_asked = false;
                let Some(n) = self.server.members[m].node.as_mut() else {
                    return;
                };
                let (meta, data, rest, hs) = n.snapshot();
                if meta.index == 0 || meta.term == 0 {
                    return;
                }
                let index = meta.index;
                n.compacted(index, data.clone());
                // Durable at once, as the runtime writes it before it compacts.
                let d = &mut self.server.members[m].durable;
                d.snapshot = Some(raft::eraftpb::Snapshot {
                    data,
                    metadata: Some(meta),
                });
                let synced: Vec<_> = d
                    .entries
                    .iter()
                    .filter(|e| e.index > index)
                    .cloned()
                    .collect();
                // What the log file holds after the compaction: the entries after the
                // snapshot that were durable (those still in flight come with their sync).
                d.entries = synced;
                let _ = (rest, hs);
                self.stats.compactions += 1;
                self.trace(|| format!("member {m} compacts its log at {index}"));
            }
            Ev::PeerCut(m) => {
                self.trace(|| format!("member {m} cut off from the others"));
                self.stats.member_cuts += 1;
                self.server.members[m].cut = true;
                self.links_broke(sc, m);
            }
            Ev::PeerHeal(m) => {
                self.trace(|| format!("member {m} reconnects to the others"));
                self.server.members[m].cut = false;
                self.reconnect(sc, m);
            }
            Ev::Scenario(id) => sc.scenario_event(self, id),
        }
    }

    // ---- the network ---------------------------------------------------------------------

    /// The path between the clients and the servers fails as `o` says until
    /// [`World::end_outage`]. A refusing path resets every connection (the clients notice
    /// within a millisecond, as a closed socket tells them).
    pub(crate) fn begin_outage(&mut self, o: Outage) {
        self.trace(|| format!("outage begins: {o:?}"));
        self.outage = Some(o);
        if o == Outage::Refused {
            for conn in 0..self.conns.len() {
                if self.conns[conn].alive {
                    self.server_close(conn);
                    if !self.conns[conn].dropped {
                        let d = self.rng.u64(0..=MS);
                        self.push(self.now + d, Ev::Broken { conn });
                    }
                }
            }
        }
    }

    /// The path works again (what was lost stays lost; what is late arrives).
    pub(crate) fn end_outage(&mut self) {
        self.trace(|| "outage ends".into());
        self.outage = None;
    }

    fn delay(&mut self) -> u64 {
        if self.rng.f64() < self.faults.p_slow {
            ms_range(&mut self.rng, 100, 1000)
        } else {
            self.rng.u64(0..=self.faults.max_delay_ms * MS)
        }
    }

    fn notice_delay(&mut self) -> u64 {
        if self.rng.u8(0..10) == 0 {
            ms_range(&mut self.rng, 20, 300)
        } else {
            self.rng.u64(0..=20 * MS)
        }
    }

    /// The connection resets: the server forgets it now, the client notices a little later.
    fn reset(&mut self, conn: usize) {
        if !self.conns[conn].alive {
            return;
        }
        self.stats.resets += 1;
        self.server_close(conn);
        if !self.conns[conn].dropped {
            let d = self.notice_delay();
            self.push(self.now + d, Ev::Broken { conn });
        }
    }

    /// The server closes a connection: the node forgets it.
    fn server_close(&mut self, conn: usize) {
        if self.conns[conn].alive {
            self.conns[conn].alive = false;
            if self.conns[conn].accepted {
                let m = self.conns[conn].member;
                let now = self.member_now(m);
                if let Some(n) = self.server.members[m].node.as_mut() {
                    n.closed(now, conn);
                }
            }
        }
    }

    /// Puts a message on a connection, behind the earlier ones of its direction (`ev` is its
    /// arrival); a reset loses it and everything after it. False when it did not go out.
    fn transmit(&mut self, conn: usize, to_server: bool, ev: Ev) -> bool {
        if !self.conns[conn].alive {
            return false;
        }
        if self.rng.f64() < self.faults.p_reset {
            self.trace(|| format!("conn {conn} resets, losing {ev:?}"));
            self.reset(conn);
            return false;
        }
        let mut d = self.delay();
        match self.outage {
            Some(Outage::BlackHole) => return true, // sent, and lost on the way
            Some(Outage::Slow(late)) if !to_server => d += late,
            _ => {}
        }
        let k = &mut self.conns[conn];
        let last = if to_server {
            &mut k.last_to_server
        } else {
            &mut k.last_to_client
        };
        let at = (self.now + d).max(*last);
        *last = at;
        self.push(at, ev);
        true
    }

    fn send_to_server(&mut self, conn: usize, msg: ClientMsg) {
        if self.transmit(conn, true, Ev::ToServer { conn, msg })
            && self.rng.f64() < self.faults.p_abandon
        {
            self.abandon(conn);
        }
    }

    /// The client's side of a connection fails (its writer timed out, say) while the server
    /// goes on reading what was sent on it, then reads its end.
    fn abandon(&mut self, conn: usize) {
        if !self.conns[conn].alive || self.conns[conn].dropped {
            return;
        }
        self.stats.dropped += 1;
        self.conns[conn].dropped = true;
        let d = self.notice_delay();
        self.push(self.now + d, Ev::Broken { conn });
        let end = self.conns[conn].last_to_server.max(self.now + d) + self.rng.u64(0..=50 * MS);
        self.push(end, Ev::ServerClose { conn });
    }

    fn send_to_client(&mut self, conn: usize, msg: ServerMsg) {
        self.transmit(conn, false, Ev::ToClient { conn, msg });
    }

    // ---- the server ----------------------------------------------------------------------

    /// Performs what member `m`'s node asked for, and checks what it applied.
    fn server_io(&mut self, sc: &mut dyn Scenario, m: usize) {
        while let Some(io) = self.server.members[m]
            .node
            .as_mut()
            .and_then(|n| n.poll_io())
        {
            match io {
                NodeIo::Persist {
                    number,
                    snapshot,
                    entries,
                    hard_state,
                } => {
                    // An fsync of 0.1–1 ms, after the member's earlier ones.
                    let mb = &mut self.server.members[m];
                    let at = (self.now + self.rng.u64(MS / 10..=MS)).max(mb.last_sync);
                    mb.last_sync = at;
                    let gen = mb.gen;
                    let ev = Ev::Synced {
                        member: m,
                        gen,
                        number,
                        snapshot,
                        entries,
                        hard_state,
                    };
                    self.push(at, ev);
                }
                NodeIo::Peer { to, msg } => {
                    let to = to as usize - 1;
                    let lost = self.rng.f64() < self.faults.p_reset;
                    if !lost && !self.server.members[m].cut && !self.server.members[to].cut {
                        let d = if self.rng.f64() < self.faults.p_slow {
                            ms_range(&mut self.rng, 10, 100)
                        } else {
                            self.rng.u64(MS / 10..=2 * MS)
                        };
                        self.push(self.now + d, Ev::Peer { to, msg });
                    }
                }
                // Addresses are fixed here (`World::address`), and every member is linked.
                NodeIo::Upgrade { .. } | NodeIo::Member { .. } => {}
                NodeIo::Incarnation { token } => {
                    self.trace(|| format!("member {m} takes incarnation {token:x}"));
                    let inc = self.server.incarnation;
                    if token != inc {
                        let msg = format!("member {m} took incarnation {token:x}, not {inc:x}");
                        self.fail("incarnation", msg);
                    }
                    let mb = &mut self.server.members[m];
                    mb.token = Some(token);
                    mb.bootstrap = false;
                    // Its peers hear its new hello: nothing to model (they never refused it).
                }
                NodeIo::Send { conn, msg } => {
                    self.trace(|| format!("member {m} -> conn {conn}: {msg:?}"));
                    self.send_to_client(conn, msg);
                }
                NodeIo::Close { conn } => self.reset(conn),
                NodeIo::Check {
                    election,
                    candidate,
                    endpoint,
                } => {
                    // A connect to the endpoint: accepted, refused at once, or timed out
                    // (the runtime's CHECK_TIMEOUT).
                    let (ok, d) = match sc.reachable(self, &endpoint) {
                        Some(true) => (true, self.rng.u64(0..=5 * MS)),
                        Some(false) => (false, self.rng.u64(0..=2 * MS)),
                        None => (false, crate::server::CHECK_TIMEOUT.as_nanos() as u64),
                    };
                    let gen = self.server.members[m].gen;
                    let ev = Ev::CheckDone {
                        member: m,
                        gen,
                        election,
                        candidate,
                        ok,
                    };
                    self.push(self.now + d, ev);
                }
            }
        }
        self.observe(sc, m);
        self.schedule_server(m);
        let leads = self.server.members[m]
            .node
            .as_ref()
            .is_some_and(|x| x.is_leader());
        if leads != self.server.members[m].led {
            self.server.members[m].led = leads;
            self.trace(|| {
                let conf = self.server.members[m].node.as_ref().map(|x| x.conf_state());
                let what = if leads { "leads" } else { "no longer leads" };
                format!("member {m} {what}; configuration {conf:?}")
            });
        }
        // As the runtime does after its loop's turn: a compaction the node asks for.
        let mb = &mut self.server.members[m];
        if !mb.compact_asked && mb.node.as_ref().is_some_and(|x| x.wants_snapshot()) {
            mb.compact_asked = true;
            self.push(self.now, Ev::Compact(m));
        }
    }

    /// What member `m` applied: one history (a command at an index is the same wherever it
    /// is applied), fed in order to the replica the scenarios read; a member that applied
    /// every command of the history has the replica's state.
    fn observe(&mut self, sc: &mut dyn Scenario, m: usize) {
        let Some(n) = self.server.members[m].node.as_mut() else {
            return;
        };
        let seen = n.take_seen();
        let settled = n.settled();
        if self.server.members[m].wiped && settled {
            self.server.members[m].wiped = false;
        }
        if seen.is_empty() {
            return;
        }
        for s in seen {
            match s {
                Seen::Restored { index } => {
                    self.trace(|| format!("member {m} restores a snapshot at {index}"));
                    self.server.members[m].applied = index;
                    self.stats.restores += 1;
                }
                Seen::AppliedTo { index } => {
                    // The indexes passed over since its last command carried none here.
                    let from = self.server.members[m].applied + 1;
                    for i in from..=index {
                        self.one_entry(sc, m, i, None);
                    }
                    self.server.members[m].applied = index;
                }
                Seen::Applied { index, term, cmd } => {
                    self.trace(|| format!("member {m} applies {index} (term {term}): {cmd:?}"));
                    let from = self.server.members[m].applied + 1;
                    for i in from..index {
                        self.one_entry(sc, m, i, None);
                    }
                    self.one_entry(sc, m, index, Some((term, cmd)));
                    self.server.members[m].applied = index;
                }
            }
        }
        let mb = &self.server.members[m];
        if self.compare_states && mb.applied == self.server.top {
            let live = mb.node.as_ref().map(|n| n.state().status(0));
            let want = self.server.replica.status(0);
            if let Some(l) = live.filter(|l| *l != want) {
                let msg = format!(
                    "member {m}'s state at {} differs from the history's:\n  {l:?}\n  {want:?}",
                    self.server.top
                );
                self.fail("replay", msg);
            }
        }
    }

    /// Member `m` applied entry `index`: a command, or none (a new leader's entry). The same
    /// everywhere, or the history forked; the first time, it goes to the replica.
    fn one_entry(
        &mut self,
        sc: &mut dyn Scenario,
        m: usize,
        index: u64,
        entry: Option<(u64, Command)>,
    ) {
        if let Some(before) = self.server.history.get(&index) {
            let same = match (before, &entry) {
                (None, None) => true,
                (Some((t, c)), Some((t2, c2))) => t == t2 && c == c2,
                _ => false,
            };
            if !same {
                let msg = format!(
                    "member {m} applied {entry:?} at {index}, where another applied {before:?}"
                );
                self.fail("fork", msg);
            }
            return;
        }
        self.server.history.insert(index, entry.clone());
        self.server.top = self.server.top.max(index);
        if let Some((_, cmd)) = entry {
            // What the log applies to: a repeat or a refusal changes nothing.
            if let Ok(a) = self.server.replica.execute(&cmd) {
                if !a.repeat {
                    sc.logged(self, &cmd, &a.outputs);
                }
            }
            self.server.log.push(cmd);
        }
    }

    fn schedule_server(&mut self, m: usize) {
        let Some(d) = self.server.members[m]
            .node
            .as_ref()
            .and_then(|n| n.next_wakeup())
        else {
            return;
        };
        let real = self.member_real(m, d).max(self.now);
        if self.server.members[m].wake_at != Some(real) {
            self.server.members[m].wake_at = Some(real);
            self.push(real, Ev::ServerWake(m));
        }
    }

    /// `kill -9` of member `m`: its connections reset, what it had not fsynced is lost, the
    /// others' links to it break.
    fn crash(&mut self, m: usize) {
        let mb = &mut self.server.members[m];
        mb.node = None;
        mb.gen += 1;
        mb.wake_at = None;
        mb.last_sync = 0;
        for conn in 0..self.conns.len() {
            if self.conns[conn].member == m {
                self.reset(conn);
            }
        }
        // Half the crashes are a process dying on a machine that stays up: the others'
        // next connection to it is refused (a round trip later), which they are told.
        let refused = self.rng.bool() && !self.server.members[m].cut;
        for o in 0..self.server.members.len() {
            if o != m {
                let now = self.member_now(o);
                let Some(n) = self.server.members[o].node.as_mut() else {
                    continue;
                };
                n.unreachable(now, m as u64 + 1);
                if refused {
                    let d = self.rng.u64(MS / 10..=2 * MS);
                    self.push(self.now + d, Ev::Gone { to: o, id: m });
                }
            }
        }
    }

    /// The operator changes the group's members, as `tenure member` does: a request on a
    /// connection to the leader. A server outside the group (the spare, or one removed
    /// earlier: stopped and wiped first, as an operator reuses a machine) is started empty
    /// and added, or replaces a voter; when every server is in the group, a voter is
    /// removed.
    fn member_change(&mut self, sc: &mut dyn Scenario) {
        let n = self.server.members.len();
        let Some(l) = (0..n).find(|m| {
            let mb = &self.server.members[*m];
            !mb.cut && mb.node.as_ref().is_some_and(|x| x.is_leader())
        }) else {
            return;
        };
        let conf = self.server.members[l]
            .node
            .as_ref()
            .expect("leads")
            .conf_state();
        if conf.voters != self.server.last_voters {
            self.stats.voters_changed += 1;
            self.server.last_voters = conf.voters.clone();
        }
        let id = |m: usize| m as u64 + 1;
        let inside = |m: usize| conf.voters.contains(&id(m)) || conf.learners.contains(&id(m));
        let outside: Vec<usize> = (0..n).filter(|m| !inside(*m)).collect();
        let voters: Vec<u64> = conf.voters.clone();
        let change = if let Some(&m) = outside.first() {
            if self.server.members[m].node.is_some() {
                self.crash(m);
            }
            self.trace(|| format!("the operator starts member {m} empty, to add it"));
            let mb = &mut self.server.members[m];
            mb.spare = false;
            mb.durable = Durable::default();
            mb.token = None;
            mb.wiped = true;
            mb.applied = 0;
            let node = self.start_node(m);
            self.server.members[m].node = Some(node);
            self.reconnect(sc, m);
            let address = World::address(m);
            if self.rng.bool() {
                let old = voters[self.rng.usize(..voters.len())];
                MemberChange::Replace {
                    old,
                    id: id(m),
                    address,
                }
            } else {
                MemberChange::Add { id: id(m), address }
            }
        } else if voters.len() == n && conf.learners.is_empty() {
            // Only down to the group's size (three or five voters): an operator who removes
            // a voter from three leaves a group that a lost disk stops for good.
            MemberChange::Remove {
                id: voters[self.rng.usize(..voters.len())],
            }
        } else {
            return;
        };
        self.trace(|| format!("the operator asks member {l}: {change:?}"));
        self.stats.member_changes += 1;
        // A connection of its own; the answer is not read (the operator looks again later).
        self.conns.push(Conn {
            client: usize::MAX,
            member: l,
            session: 0,
            attempt: 0,
            alive: false,
            accepted: true,
            welcomed: true,
            dropped: true,
            last_to_server: 0,
            last_to_client: 0,
        });
        let conn = self.conns.len() - 1;
        let now = self.member_now(l);
        if let Some(node) = self.server.members[l].node.as_mut() {
            node.accepted(now, conn);
            let hello = ClientMsg::Hello {
                magic: crate::proto::MAGIC,
                version: crate::proto::PROTOCOL_VERSION,
                client_name: "operator".into(),
            };
            node.frame(now, conn, hello);
            let body = crate::proto::Request::ChangeMembers { change };
            let req = ClientMsg::Request {
                session: 0,
                req: 1,
                body,
            };
            node.frame(now, conn, req);
        }
        self.server_io(sc, l);
    }

    /// Every member crashes and loses its disk (a fire, a bad rollout): the group's state is
    /// gone. The operator starts every member again with `--bootstrap` after a downtime
    /// longer than any client's TTL (so every lease of the old incarnation has run out: the
    /// old state, and with it the TTLs, are lost, so nothing could wait for them), and a
    /// new incarnation begins; every client that reaches it is told `data_lost`.
    fn total_loss(&mut self, sc: &mut dyn Scenario) {
        self.trace(|| "every member crashes and loses its disk".to_string());
        self.stats.total_losses += 1;
        for m in 0..self.server.members.len() {
            if self.server.members[m].node.is_some() {
                self.crash(m);
            }
            let mb = &mut self.server.members[m];
            mb.durable = Durable::default();
            mb.token = None;
            mb.wiped = true;
            mb.bootstrap = true;
            mb.spare = false;
            mb.applied = 0;
        }
        let sv = &mut self.server;
        sv.epoch += 1;
        sv.incarnation = INC ^ (u128::from(sv.epoch) << 16);
        sv.log.clear();
        sv.history.clear();
        sv.top = 0;
        sv.replica = State::new();
        sc.total_loss(self);
        let longest_ttl = self
            .clients
            .iter()
            .map(|c| c.cfg.session_ttl.as_nanos() as u64)
            .max()
            .unwrap_or(0);
        let down = longest_ttl * 3 / 2 + ms_range(&mut self.rng, 0, 1000);
        for m in 0..self.server.members.len() {
            let at = self.now + down + ms_range(&mut self.rng, 0, 300);
            self.push(at, Ev::Restart(m));
        }
    }

    /// The other members' links to `m` broke (it was cut off): they say so to their nodes.
    fn links_broke(&mut self, sc: &mut dyn Scenario, m: usize) {
        for o in 0..self.server.members.len() {
            if o == m {
                continue;
            }
            let now = self.member_now(o);
            if let Some(n) = self.server.members[o].node.as_mut() {
                n.unreachable(now, m as u64 + 1);
            }
            self.server_io(sc, o);
            let now = self.member_now(m);
            if let Some(n) = self.server.members[m].node.as_mut() {
                n.unreachable(now, o as u64 + 1);
            }
        }
        self.server_io(sc, m);
    }

    /// Member `m` starts again: from its disk, or, sometimes in a group (when every other
    /// member is settled), from a wiped one.
    fn restart(&mut self, sc: &mut dyn Scenario, m: usize) {
        if self.server.members[m].node.is_some() {
            return;
        }
        if self.server.members[m].spare {
            return; // not started until the operator adds it
        }
        self.stats.restarts += 1;
        let n = self.server.members.len();
        let others_settled = (0..n).filter(|o| *o != m).all(|o| {
            let mb = &self.server.members[o];
            mb.spare || (!mb.wiped && mb.node.as_ref().is_some_and(|x| x.settled()))
        });
        let wipe = n > 1 && !self.healed && others_settled && self.rng.f64() < self.faults.p_wipe;
        if wipe {
            self.trace(|| format!("member {m} restarts with a wiped disk"));
            self.stats.wipes += 1;
            let mb = &mut self.server.members[m];
            mb.durable = Durable::default();
            mb.wiped = true;
            mb.token = None;
            mb.applied = 0;
        }
        // It applies its log again from its snapshot.
        let mb = &mut self.server.members[m];
        mb.applied = mb
            .durable
            .snapshot
            .as_ref()
            .and_then(|s| s.metadata.as_ref())
            .map_or(0, |x| x.index);
        let node = self.start_node(m);
        self.server.members[m].node = Some(node);
        self.trace(|| {
            let d = &self.server.members[m].durable;
            format!(
                "member {m} restarted: snapshot at {:?}, entries {:?}..{:?}, {:?}",
                d.snapshot
                    .as_ref()
                    .and_then(|s| s.metadata.as_ref())
                    .map(|x| x.index),
                d.entries.first().map(|e| e.index),
                d.entries.last().map(|e| (e.index, e.term)),
                d.hard_state
            )
        });
        self.reconnect(sc, m);
    }

    /// Member `m`'s links with the others come up (it started, or was cut off): each side
    /// reads the other's hello.
    fn reconnect(&mut self, sc: &mut dyn Scenario, m: usize) {
        let n = self.server.members.len();
        if self.server.members[m].node.is_none() {
            return;
        }
        for o in 0..n {
            if o == m || self.server.members[o].node.is_none() {
                continue;
            }
            if self.server.members[o].cut || self.server.members[m].cut {
                continue;
            }
            let hello_o = self.server.members[o].node.as_ref().map(|x| x.hello());
            let hello_m = self.server.members[m].node.as_ref().map(|x| x.hello());
            self.greet(sc, m, o, hello_o);
            self.greet(sc, o, m, hello_m);
        }
        self.server_io(sc, m);
    }

    /// Member `to` reads member `from`'s hello on a new connection.
    fn greet(&mut self, sc: &mut dyn Scenario, to: usize, from: usize, hello: Option<ClientMsg>) {
        let Some(hello) = hello else {
            return;
        };
        // A connection of its own in the network's numbering, never used for clients.
        self.conns.push(Conn {
            client: usize::MAX,
            member: to,
            session: 0,
            attempt: 0,
            alive: true,
            accepted: true,
            welcomed: true,
            dropped: true,
            last_to_server: 0,
            last_to_client: 0,
        });
        let conn = self.conns.len() - 1;
        let now = self.member_now(to);
        if let Some(n) = self.server.members[to].node.as_mut() {
            n.accepted(now, conn);
            n.frame(now, conn, hello);
        }
        self.trace(|| format!("member {to} reads member {from}'s hello"));
        self.server_io(sc, to);
    }

    fn replay(&self) -> State {
        let mut fresh = State::new();
        for cmd in &self.server.log {
            fresh.apply(cmd);
        }
        fresh
    }

    /// Replaying the whole history gives the state every member that applied all of it has.
    pub(crate) fn check_replay(&mut self, when: &str) {
        let fresh = self.replay();
        if fresh.status(0) != self.server.replica.status(0) {
            let msg = format!(
                "at {when}, replaying {} logged commands does not give the replica's state",
                self.server.log.len()
            );
            self.fail("replay", msg);
        }
    }

    // ---- the clients ---------------------------------------------------------------------

    /// `kill -9` of client `c`'s process: it stops at once; the kernel closes its
    /// connections (the server reads what was already sent, or the connection resets). It
    /// starts again (a new process, a new session) at real time `again`, if given.
    pub(crate) fn kill(&mut self, c: usize, again: Option<u64>) {
        if !self.clients[c].alive {
            return;
        }
        self.trace(|| format!("client {c} killed"));
        self.stats.kills += 1;
        let cl = &mut self.clients[c];
        cl.alive = false;
        cl.paused = false;
        cl.inbox.clear();
        cl.wake_at = None;
        cl.first = None;
        cl.session = None;
        let conns: Vec<usize> = std::mem::take(&mut cl.conns).into_values().collect();
        for conn in conns {
            if self.rng.bool() {
                self.reset(conn);
            } else {
                self.drop_conn(conn);
            }
        }
        if let Some(t) = again {
            self.connect_at(c, t);
        }
    }

    /// Faults stop: every member is up and reaches the others, partitions and pauses end, no
    /// more message faults.
    pub(crate) fn heal(&mut self, sc: &mut dyn Scenario) {
        self.trace(|| "faults heal".into());
        self.healed = true;
        self.faults.p_reset = 0.0;
        self.faults.p_slow = 0.0;
        self.faults.p_abandon = 0.0;
        self.faults.max_delay_ms = 5;
        for m in 0..self.server.members.len() {
            self.server.members[m].cut = false;
        }
        for m in 0..self.server.members.len() {
            self.restart(sc, m);
        }
        for c in 0..self.clients.len() {
            self.clients[c].partitioned = false;
            if self.clients[c].paused {
                self.handle(sc, Ev::PauseEnd(c));
            }
        }
    }

    /// An input for client `c`: applied now, or kept until it resumes when paused.
    fn client_input(&mut self, sc: &mut dyn Scenario, c: usize, ev: Ev) {
        if !self.clients[c].alive {
            return;
        }
        if self.clients[c].paused {
            self.clients[c].inbox.push_back(ev);
            return;
        }
        self.client_apply(sc, c, ev);
        self.client_run(sc, c);
    }

    /// Applies one input to the client's session, after a tick (as the driver does).
    fn client_apply(&mut self, sc: &mut dyn Scenario, c: usize, ev: Ev) {
        let now = self.local_now(c);
        if let Ev::Connect(_) = ev {
            self.clients[c].connect_pending = false;
            self.start_session(c);
            sc.session_started(self, c);
            return;
        }
        let generation = self.clients[c].generation;
        // Which dial attempt of the current session a connection is, if it is one.
        let attempt_of = |w: &World, conn: usize| -> Option<u64> {
            let k = &w.conns[conn];
            (k.client == c && k.session == generation).then_some(k.attempt)
        };
        let Some(mut s) = self.clients[c].session.take() else {
            return;
        };
        s.tick(now);
        match ev {
            Ev::ToClient { conn, msg } => {
                if let Some(attempt) = attempt_of(self, conn) {
                    match msg {
                        ServerMsg::Welcome { incarnation, .. } => {
                            if !self.conns[conn].welcomed {
                                self.conns[conn].welcomed = true;
                                let before = self.clients[c].shared.incarnation();
                                let endpoint = self.clients[c]
                                    .dial_endpoint
                                    .get(&attempt)
                                    .copied()
                                    .unwrap_or(0);
                                let info = DialInfo {
                                    incarnation,
                                    endpoint,
                                };
                                s.dialed(now, attempt, Ok(info));
                                if before != 0 && before != incarnation {
                                    self.told_data_lost(c, before, incarnation);
                                }
                            }
                        }
                        ServerMsg::Reject { reason } if !self.conns[conn].welcomed => {
                            // A member that does not serve yet refuses the handshake.
                            self.conns[conn].welcomed = true;
                            self.stats.dials_failed += 1;
                            s.dialed(now, attempt, Err(reason));
                        }
                        msg => s.frame(now, attempt, msg),
                    }
                }
            }
            Ev::Broken { conn } => {
                if let Some(attempt) = attempt_of(self, conn) {
                    if self.conns[conn].welcomed {
                        s.broken(now, attempt);
                    } else {
                        self.conns[conn].welcomed = true; // settled: failed
                        self.stats.dials_failed += 1;
                        s.dialed(now, attempt, Err("reset during the handshake".into()));
                    }
                }
            }
            Ev::DialTimeout { conn } => {
                if let Some(attempt) = attempt_of(self, conn) {
                    if !self.conns[conn].welcomed {
                        self.conns[conn].welcomed = true;
                        self.stats.dials_failed += 1;
                        self.conns[conn].dropped = true;
                        self.server_close(conn);
                        s.dialed(now, attempt, Err("handshake timed out".into()));
                    }
                }
            }
            Ev::DialRefused {
                session, attempt, ..
            } if session == generation => {
                self.stats.dials_failed += 1;
                s.dialed(now, attempt, Err("connection refused".into()));
            }
            _ => {}
        }
        self.clients[c].session = Some(s);
        self.client_io(c);
    }

    /// Client `c`, which knew incarnation `old`, reached `new`: its session must have told
    /// it `data_lost` (with every lock it held lost for that reason) before anything else.
    fn told_data_lost(&mut self, c: usize, old: Incarnation, new: Incarnation) {
        self.stats.told_data_lost += 1;
        let evs: Vec<Event> = self.clients[c].events.try_iter().collect();
        let at = evs.iter().position(|e| *e == Event::DataLost { old, new });
        let told = at.is_some();
        // The locks it held are reported lost just before, for that reason.
        let wrong_lock = at.and_then(|i| {
            evs[..i]
                .iter()
                .rev()
                .take_while(|e| matches!(e, Event::LockLost { .. }))
                .find(|e| {
                    !matches!(
                        e,
                        Event::LockLost {
                            reason: crate::events::LostReason::DataLost,
                            ..
                        }
                    )
                })
        });
        self.clients[c].told.extend(evs.iter().cloned());
        if !told {
            let msg = format!(
                "client {c} reached incarnation {new:x} after {old:x} and was not told data_lost \
                 (told {evs:?})"
            );
            self.fail("data lost", msg);
        } else if let Some(e) = wrong_lock {
            let msg = format!("client {c}'s session lost a lock to a new incarnation as {e:?}");
            self.fail("data lost", msg);
        } else {
            self.trace(|| format!("client {c} told data_lost ({old:x} -> {new:x})"));
        }
    }

    /// Runs the client: its session's due timers, then its user, then plans its next wake.
    fn client_run(&mut self, sc: &mut dyn Scenario, c: usize) {
        let now = self.local_now(c);
        if let Some(mut s) = self.clients[c].session.take() {
            s.tick(now);
            self.clients[c].session = Some(s);
            self.client_io(c);
        }
        self.check_first(c);
        let user_next = sc.user(self, c);
        self.schedule_client(c, user_next);
    }

    /// A failed connect (the first open's outcome) makes the client start over later.
    fn check_first(&mut self, c: usize) {
        let outcome = self.clients[c].first.as_ref().and_then(|r| r.try_recv());
        match outcome {
            Some(Ok(_)) => self.clients[c].first = None,
            Some(Err(e)) => {
                self.trace(|| format!("client {c} failed to connect: {e}"));
                self.clients[c].first = None;
                self.end_session(c);
                let d = ms_range(&mut self.rng, 20, 300);
                self.connect_at(c, self.now + d);
            }
            None => {}
        }
    }

    /// Lets go of the client's session (after a close or a failed connect): its connections
    /// are dropped.
    pub(crate) fn end_session(&mut self, c: usize) {
        self.clients[c].session = None;
        let conns: Vec<usize> = std::mem::take(&mut self.clients[c].conns)
            .into_values()
            .collect();
        for conn in conns {
            self.drop_conn(conn);
        }
    }

    /// Starts a new session (a process connecting): the previous one, if any, is gone.
    fn start_session(&mut self, c: usize) {
        self.end_session(c);
        let now = self.local_now(c);
        let cl = &mut self.clients[c];
        cl.generation += 1;
        cl.shared = Arc::new(Shared::new(self.base));
        let (sink, events) = Sink::channel();
        cl.events = events;
        cl.told.clear();
        cl.sink = Some(sink.clone());
        cl.lease_seed = cl.lease_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let lease_cfg = cl.cfg.lease_config();
        let mut s = Session::new(
            cl.cfg.clone(),
            lease_cfg,
            cl.shared.clone(),
            cl.lease_seed,
            Some(sink),
            now,
        );
        let (tx, rx) = crate::client::pending::slot();
        let req = cl.shared.req();
        s.begin(now, req, tx);
        cl.first = Some(rx);
        cl.session = Some(s);
        self.trace(|| {
            format!(
                "client {c} connects (session object {})",
                self.clients[c].generation
            )
        });
        self.client_io(c);
    }

    /// Runs `f` on the client's session at its local time, then performs its I/O.
    pub(crate) fn with_session<T>(
        &mut self,
        c: usize,
        f: impl FnOnce(&mut Session, Instant) -> T,
    ) -> Option<T> {
        let now = self.local_now(c);
        let mut s = self.clients[c].session.take()?;
        let out = f(&mut s, now);
        self.clients[c].session = Some(s);
        self.client_io(c);
        Some(out)
    }

    /// Performs what the client's session asked for.
    fn client_io(&mut self, c: usize) {
        loop {
            let Some(io) = self.clients[c].session.as_mut().and_then(|s| s.poll_io()) else {
                return;
            };
            let generation = self.clients[c].generation;
            match io {
                Io::Dial {
                    attempt,
                    step,
                    start,
                    endpoints,
                    after,
                } => {
                    self.stats.dials += 1;
                    if let Some(t) = self.tap.as_mut() {
                        t.count(self.now, c);
                    }
                    self.trace(|| format!("client {c} dials (attempt {attempt}, from {start})"));
                    let refused = self.outage == Some(Outage::Refused);
                    // The endpoints in turn from `start`: a member that is down refuses at
                    // once (a millisecond or two each), the first one up is connected to.
                    let n = endpoints.len().max(1);
                    let mut at = self.now + after.as_nanos() as u64;
                    let mut member = None;
                    for i in 0..endpoints.len() {
                        let idx = (start + i) % n;
                        let m = endpoints[idx]
                            .strip_prefix('m')
                            .and_then(|r| r.split(':').next())
                            .and_then(|x| x.parse::<usize>().ok())
                            .filter(|m| *m < self.server.members.len());
                        // A member down refuses the connection; one that does not serve yet
                        // refuses the handshake: either way the dial goes on to the next.
                        let welcomes = |m: usize| {
                            !refused
                                && self.server.members[m]
                                    .node
                                    .as_ref()
                                    .is_some_and(|n| n.welcomes())
                        };
                        match m {
                            Some(m) if welcomes(m) => {
                                member = Some((m, idx));
                                break;
                            }
                            _ => at += self.rng.u64(0..=2 * MS),
                        }
                    }
                    let Some((member, endpoint)) = member else {
                        let ev = Ev::DialRefused {
                            client: c,
                            session: generation,
                            attempt,
                        };
                        self.push(at, ev);
                        continue;
                    };
                    self.clients[c].dial_endpoint.insert(attempt, endpoint);
                    self.conns.push(Conn {
                        client: c,
                        member,
                        session: generation,
                        attempt,
                        alive: true,
                        accepted: false,
                        welcomed: false,
                        dropped: false,
                        last_to_server: 0,
                        last_to_client: 0,
                    });
                    let conn = self.conns.len() - 1;
                    self.clients[c].conns.insert(attempt, conn);
                    // A step of the client's time, in real time (the skew is tiny).
                    let timeout = at + step.as_nanos() as u64;
                    self.push(timeout, Ev::DialTimeout { conn });
                    let black_hole = self.outage == Some(Outage::BlackHole);
                    if !self.clients[c].partitioned && !black_hole {
                        let d = self.delay();
                        self.push(at + d, Ev::Accept { conn });
                    }
                }
                Io::Send { conn, msg } => match self.clients[c].conns.get(&conn) {
                    Some(&k) => {
                        self.trace(|| format!("client {c} -> conn {k}: {msg:?}"));
                        if self.conns[k].alive {
                            if let Some(t) = self.tap.as_mut() {
                                t.count(self.now, c);
                            }
                        }
                        self.send_to_server(k, msg);
                    }
                    None => self.trace(|| format!("client {c} -> gone attempt {conn}: {msg:?}")),
                },
                Io::Drop { conn } => {
                    self.trace(|| format!("client {c} drops attempt {conn}"));
                    if let Some(k) = self.clients[c].conns.remove(&conn) {
                        self.drop_conn(k);
                    }
                }
            }
        }
    }

    /// The client drops a connection; the server reads what was sent on it, then closes it.
    fn drop_conn(&mut self, conn: usize) {
        if !self.conns[conn].alive || self.conns[conn].dropped {
            return;
        }
        self.stats.dropped += 1;
        self.conns[conn].dropped = true;
        let end = self.conns[conn].last_to_server.max(self.now) + self.rng.u64(0..=50 * MS);
        self.push(end, Ev::ServerClose { conn });
    }

    /// Plans the client's next wake: its session's, or its user's, whichever comes first.
    fn schedule_client(&mut self, c: usize, user_next: Option<Instant>) {
        let cl = &self.clients[c];
        if cl.paused {
            return;
        }
        let session = cl.session.as_ref().and_then(|s| s.next_wakeup());
        let next = match (session, user_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(next) = next else { return };
        let local = next.saturating_duration_since(self.base).as_nanos() as u64;
        let real = cl.real_ns(local).max(self.now);
        if cl.wake_at.map_or(true, |w| real < w || w < self.now) {
            self.clients[c].wake_at = Some(real);
            self.push(real, Ev::ClientWake(c));
        }
    }
}
