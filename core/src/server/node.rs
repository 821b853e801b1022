//! The server node: everything a serving tenure member decides around its state machine,
//! with no sockets, threads, disk or clock reads (SPEC 2.1). The runtime ([`super`]) feeds it
//! what happened, with the time, and performs what it asks ([`NodeIo`]): persist what the
//! replica asks (then report it durable), send a message to another member or on a client
//! connection, close a connection, check a candidate's endpoint. Timers are its
//! [`Node::next_wakeup`].
//!
//! Every change goes through the log ([`Replica`], raft-rs): the leader turns requests into
//! commands and proposes them; every member applies what commits, in order, through one
//! function ([`State::execute`]: a command's checks run at application, so a refused or
//! repeated request changes nothing, deterministically everywhere). Outputs are routed where
//! their sessions are bound (on the leader, in practice); the proposer remembers which
//! connection asked (by term and index). Reads are confirmed by a majority after they arrive
//! and answered once everything proposed before them is applied ([`ReadBatch`]). A member
//! that does not lead answers [`ErrorReply::NotLeader`] with the leader's address.
//!
//! What lives here besides: the handshake; binding each session to the connection it was
//! last heard on, and routing replies and notices there; catching a session up on master
//! caches when it moves to another connection; expiry ([`Liveness`], decided by the leader
//! and logged as [`Command::Expire`]); designations (connectivity checks, retries, the
//! hold-off after a step-down or a change of leader); promotions of probationary members;
//! which connections carry no session. The leader's timers start only once it has applied
//! every entry committed before its term, with a grace of a full TTL for every session.

use super::join::{Decision, Heard, Join};
use super::liveness::Liveness;
use super::members::{self, ChangeContext, Progress};
use super::replica::{
    founding_snapshot, Durable, MemberId, NotLeader, Replica, ReplicaConfig, ReplicaIo,
    FOUNDING_INDEX,
};
use super::state::{Command, Output, State};
use crate::election::Step;
use crate::membership::Evaluator;
use crate::proto::{
    self, ClientMsg, ErrorReply, Incarnation, MemberInfo, Notice, Reply, Request, ServerMsg,
    SessionId, StatusCursor, Text,
};
use raft::eraftpb::{
    ConfState, Entry, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Most sessions bound to one connection.
pub const MAX_SESSIONS_PER_CONNECTION: usize = 100_000;
/// When no candidate of an election answered its check, the next round starts this much later.
pub const DESIGNATION_RETRY: Duration = Duration::from_millis(500);

/// What the node asks of the runtime, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum NodeIo {
    /// Make these durable (see [`ReplicaIo::Persist`]), then call [`Node::persisted`] with
    /// `number`. Batches may be combined: one fsync, then `persisted` with the last number.
    Persist {
        number: u64,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
    },
    /// Send a message to another member of the group.
    Peer { to: MemberId, msg: Message },
    /// Send `msg` on connection `conn`.
    Send { conn: usize, msg: ServerMsg },
    /// Close connection `conn` once what was queued for it is written. The node has
    /// forgotten it already.
    Close { conn: usize },
    /// Check that `endpoint` accepts a TCP connection; report with [`Node::checked`].
    Check {
        election: String,
        candidate: String,
        endpoint: String,
    },
    /// Connection `conn` is another member's: its frames from now on are raft messages (up
    /// to [`proto::MAX_PEER_FRAME`] bytes), for [`Node::peer_frame`]; it is never idle.
    Upgrade { conn: usize },
    /// This member found its incarnation: store the token (durably) before anything else,
    /// and say hello to the other members again with it ([`Node::hello`]).
    Incarnation { token: Incarnation },
    /// Member `id` of the group is at `address` (a configuration change added it, or the
    /// state recovered says so): keep a link to it.
    Member { id: MemberId, address: String },
}

/// What the node knows of a connection.
struct ConnState {
    greeted: bool,
    /// Another member's connection (after its hello).
    peer: Option<MemberId>,
    sessions: BTreeSet<SessionId>,
    /// Since when the connection carries no session (`None` while it carries one).
    sessionless_since: Option<Instant>,
    /// It was told this member does not lead: every later request on it is told so too,
    /// even after this member is elected. The client resends what it had in flight, in
    /// order, on its next connection; serving a later request here would apply it before an
    /// earlier one refused here (a campaign before the resign sent ahead of it).
    redirected: bool,
}

/// Who is answered when a proposed command is applied.
struct Origin {
    conn: usize,
    /// The request that asked for it (for commands that do not carry their asker).
    session: SessionId,
    req: u64,
}

/// A request answered from the state without a log entry: only once a majority has
/// confirmed this member's leadership after it arrived, and the state has caught up.
enum ReadKind {
    Heartbeat,
    Status(Option<StatusCursor>),
    View(String),
    Master(String),
}

struct Read {
    conn: usize,
    session: SessionId,
    req: u64,
    kind: ReadKind,
}

/// A batch of reads asked of the replica, with the last entry proposed before it: its
/// answers wait until that entry is applied too, so that they follow the answers and
/// notices of every earlier request (a heartbeat reply never overtakes a step-down notice).
struct ReadBatch {
    ctx: u64,
    after: u64,
    /// The index to be applied before answering, once confirmed.
    ready_at: Option<u64>,
    reads: Vec<Read>,
}

/// A serving node. See the module documentation.
pub(crate) struct Node {
    state: State,
    replica: Replica,
    /// How the replica was configured (it is built again when this member founds or joins
    /// a group).
    replica_cfg: ReplicaConfig,
    /// Every member's client address (for telling clients where the leader is).
    addresses: BTreeMap<MemberId, String>,
    /// On the leader: learners caught up with the group, since when (promotion waits for
    /// [`members::PROBATION`]).
    caught_up_since: BTreeMap<MemberId, Instant>,
    /// On the leader: its commit index at each tick of the last [`members::CATCH_UP_LAG`]
    /// and a little more, oldest first.
    commits: VecDeque<(Instant, u64)>,
    /// Looking for this member's incarnation (no token in its directory): it serves nothing
    /// and takes no part in replication meanwhile.
    join: Option<Join>,
    bootstrap: bool,
    new_token: Incarnation,
    /// This member drew the incarnation's token (`--bootstrap`).
    drew: bool,
    /// This member took the group's token without its data: it neither votes nor campaigns
    /// until it has applied everything the leader had committed when it first heard from it
    /// (`Some((heard, commit))`: `heard` once a leader's append has come, with its commit).
    behind: Option<(bool, u64)>,
    /// The last log entry applied to `state`.
    applied: u64,
    /// Proposals whose asker waits on a connection: (term, index) -> origin.
    origins: BTreeMap<(u64, u64), Origin>,
    /// Reads not yet asked of the replica (one batch is asked at a time).
    reads_waiting: Vec<Read>,
    /// Reads waiting (asked or not), per connection.
    owed: BTreeMap<usize, usize>,
    /// Batches asked, oldest first.
    batches: VecDeque<ReadBatch>,
    next_ctx: u64,
    /// This member leads, has applied everything committed before its term, and has set up
    /// the leader's timers (the term it did so in). From its election until then it takes
    /// proposals and reads, but decides nothing on its own.
    leading: Option<u64>,
    liveness: Liveness,
    incarnation: Incarnation,
    /// The latest time an input came with.
    now: Instant,
    io: VecDeque<NodeIo>,
    conns: BTreeMap<usize, ConnState>,
    /// Session -> connection it was last heard on.
    bound: BTreeMap<SessionId, usize>,
    /// Designations in progress: election -> candidates that failed their check this round,
    /// and whether a check is running.
    designations: BTreeMap<String, (BTreeSet<String>, bool)>,
    /// Designation commands proposed and not yet applied, by (term, index): the election
    /// is not looked at again until they are.
    deciding: BTreeMap<(u64, u64), String>,
    /// Elections whose designation starts again at a given time.
    retries: Vec<(Instant, String)>,
    /// Elections where no master may be designated before a given time: after a step-down
    /// (preemption), or after this member became leader, until any master's lease under
    /// an earlier leader has surely ended.
    holdoff: BTreeMap<String, Instant>,
    /// Evaluation of probationary group members.
    evaluator: Evaluator,
    /// This leader's own decisions its replica refused (a leadership transfer was under
    /// way), to propose again.
    unproposed: Vec<Command>,
    /// What this member applied, for the simulation's one-history check.
    #[cfg(test)]
    seen: Vec<Seen>,
}

/// What a member applied, as the simulation sees it.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// The command at `index` (of `term`).
    Applied { index: u64, term: u64, cmd: Command },
    /// Every entry up to `index` is applied (those not reported as commands carried none).
    AppliedTo { index: u64 },
    /// The state was replaced by a snapshot up to `index`.
    Restored { index: u64 },
}

/// How a node serves: its replication, its group, its incarnation.
pub(crate) struct NodeConfig {
    /// Replication (this member's id, the voters, timing).
    pub(crate) replica: ReplicaConfig,
    /// Every member's client address, this one's included (empty for a single server).
    pub(crate) addresses: BTreeMap<MemberId, String>,
    /// The incarnation token from the data directory; `None` for a member of a group whose
    /// directory has none (new or wiped): it looks for one ([`Join`]) before it serves.
    pub(crate) incarnation: Option<Incarnation>,
    /// Started with `--bootstrap`: consents to a new incarnation.
    pub(crate) bootstrap: bool,
    /// The token to begin a new incarnation with, if this member is the one to (drawn by
    /// the runtime: the node draws nothing itself).
    pub(crate) new_token: Incarnation,
}

impl NodeConfig {
    /// A single server: a group of one, member 1, with its token.
    pub(crate) fn alone(incarnation: Incarnation, seed: u64) -> NodeConfig {
        NodeConfig {
            replica: ReplicaConfig::new(1, vec![1], seed),
            addresses: BTreeMap::new(),
            incarnation: Some(incarnation),
            bootstrap: false,
            new_token: incarnation,
        }
    }
}

impl Node {
    /// A node serving `state` (the snapshot's, or new), replicating from what was durable,
    /// starting at `now`. A group of one leads at once; its committed entries are applied
    /// then.
    pub(crate) fn new(
        state: State,
        cfg: NodeConfig,
        durable: Durable,
        now: Instant,
    ) -> Result<Node, String> {
        let applied = durable
            .snapshot
            .as_ref()
            .and_then(|s| s.metadata.as_ref())
            .map_or(0, |m| m.index);
        let members = cfg.replica.voters.clone();
        let me = cfg.replica.id;
        let replica_cfg = cfg.replica.clone();
        let replica = Replica::new(cfg.replica, durable, now)?;
        let mut addresses = cfg.addresses;
        let mut io = VecDeque::new();
        for (id, r) in state.member_records() {
            addresses.insert(*id, r.address.clone());
            let address = r.address.clone();
            io.push_back(NodeIo::Member { id: *id, address });
        }
        let join = cfg
            .incarnation
            .is_none()
            .then(|| Join::new(me, members, cfg.bootstrap));
        let mut n = Node {
            state,
            replica,
            replica_cfg,
            addresses,
            caught_up_since: BTreeMap::new(),
            commits: VecDeque::new(),
            join,
            bootstrap: cfg.bootstrap,
            new_token: cfg.new_token,
            drew: false,
            behind: None,
            applied,
            origins: BTreeMap::new(),
            reads_waiting: Vec::new(),
            owed: BTreeMap::new(),
            batches: VecDeque::new(),
            next_ctx: 1,
            leading: None,
            liveness: Liveness::new(),
            incarnation: cfg.incarnation.unwrap_or(0),
            now,
            io,
            conns: BTreeMap::new(),
            bound: BTreeMap::new(),
            designations: BTreeMap::new(),
            deciding: BTreeMap::new(),
            retries: Vec::new(),
            holdoff: BTreeMap::new(),
            evaluator: Evaluator::new(),
            unproposed: Vec::new(),
            #[cfg(test)]
            seen: Vec::new(),
        };
        n.pump();
        Ok(n)
    }

    /// A single server (a group of one, member 1) serving `state` from scratch: for tests.
    #[cfg(test)]
    pub(crate) fn alone(state: State, incarnation: Incarnation, now: Instant) -> Node {
        let cfg = ReplicaConfig::new(1, vec![1], 1);
        let snapshot = Snapshot {
            data: bincode::serialize(&state).expect("state serializes"),
            metadata: Some(raft::eraftpb::SnapshotMetadata {
                conf_state: Some((vec![1], vec![]).into()),
                index: 1,
                term: 1,
            }),
        };
        let durable = Durable {
            snapshot: Some(snapshot),
            ..Durable::default()
        };
        let cfg = NodeConfig {
            replica: cfg,
            ..NodeConfig::alone(incarnation, 1)
        };
        Node::new(state, cfg, durable, now).expect("a valid node")
    }

    /// Whether the state machine should be snapshotted and the log compacted now ([`Node::snapshot`],
    /// [`Node::compacted`]): a member was added since the last snapshot, which it could not
    /// be sent.
    pub(crate) fn wants_snapshot(&self) -> bool {
        self.replica.wants_snapshot() && self.replica.applied() > self.replica.snapshot_index()
    }

    /// This member's id.
    pub(crate) fn id(&self) -> MemberId {
        self.replica.id()
    }

    /// The configuration in force here (for the simulation's operator).
    #[cfg(test)]
    pub(crate) fn conf_state(&self) -> ConfState {
        self.replica.conf_state()
    }

    /// The state machine (for the tests and the simulation's checks).
    #[cfg(test)]
    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// What this member applied since the last call (for the simulation).
    #[cfg(test)]
    pub(crate) fn take_seen(&mut self) -> Vec<Seen> {
        std::mem::take(&mut self.seen)
    }

    /// Whether this member welcomes clients (it knows its incarnation).
    #[cfg(test)]
    pub(crate) fn welcomes(&self) -> bool {
        self.join.is_none()
    }

    /// Whether this member knows its incarnation and takes full part in its group (not
    /// looking for its token, not catching up after taking it).
    #[cfg(test)]
    pub(crate) fn settled(&self) -> bool {
        self.replicating()
    }

    /// Whether this member leads its group (and has taken up the leader's duties).
    #[cfg(test)]
    pub(crate) fn is_leader(&self) -> bool {
        self.leading.is_some()
    }

    /// What a compaction needs: the snapshot's metadata and the state's bytes at the last
    /// applied entry, the entries after it and the hard state.
    pub(crate) fn snapshot(&self) -> (SnapshotMetadata, Vec<u8>, Vec<Entry>, HardState) {
        let meta = SnapshotMetadata {
            conf_state: Some(self.replica.conf_state()),
            index: self.applied,
            term: self.replica.term_of(self.applied).unwrap_or(0),
        };
        let data = bincode::serialize(&self.state).expect("state serializes");
        let rest = self.replica.entries_after(self.applied);
        (meta, data, rest, self.replica.hard_state())
    }

    /// The snapshot from [`Node::snapshot`] is durable: the log before it is dropped.
    pub(crate) fn compacted(&mut self, index: u64, data: Vec<u8>) {
        self.replica.compact(index, data);
    }

    // ---- outputs -------------------------------------------------------------------------

    /// The next thing to do, in order.
    pub(crate) fn poll_io(&mut self) -> Option<NodeIo> {
        self.io.pop_front()
    }

    /// When [`Node::tick`] next has something to do.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        let leader = self.leading.is_some().then(|| {
            self.liveness
                .next_deadline()
                .into_iter()
                .chain(self.retries.iter().map(|r| r.0))
                .chain(self.evaluator.next_due())
                .min()
        });
        let replica = self.replicating().then(|| self.replica.next_wakeup());
        replica.into_iter().chain(leader.flatten()).min()
    }

    /// Connections that have carried no session for `limit` or longer.
    pub(crate) fn idle(&self, now: Instant, limit: Duration) -> Vec<usize> {
        self.conns
            .iter()
            .filter(|(_, x)| {
                x.sessionless_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= limit)
            })
            .map(|(c, _)| *c)
            .collect()
    }

    /// The connection that has carried no session for the longest time, if any.
    pub(crate) fn oldest_idle(&self) -> Option<usize> {
        self.conns
            .iter()
            .filter_map(|(c, x)| x.sessionless_since.map(|t| (t, *c)))
            .min()
            .map(|(_, c)| c)
    }

    // ---- inputs --------------------------------------------------------------------------

    /// A new connection `conn`.
    pub(crate) fn accepted(&mut self, now: Instant, conn: usize) {
        self.now = now;
        self.conns.insert(
            conn,
            ConnState {
                greeted: false,
                peer: None,
                sessions: BTreeSet::new(),
                sessionless_since: Some(now),
                redirected: false,
            },
        );
    }

    /// A message read on `conn`.
    pub(crate) fn frame(&mut self, now: Instant, conn: usize, msg: ClientMsg) {
        self.now = now;
        if self.conns.contains_key(&conn) {
            self.handle(conn, msg);
        }
    }

    /// A frame from another member on connection `conn` (upgraded by [`NodeIo::Upgrade`]).
    /// A frame that does not decode, or that claims to come from another member than the
    /// connection's, closes the connection.
    pub(crate) fn peer_frame(&mut self, now: Instant, conn: usize, bytes: &[u8]) {
        self.now = now;
        let Some(from) = self.conns.get(&conn).and_then(|c| c.peer) else {
            return;
        };
        let msg = match <Message as prost::Message>::decode(bytes) {
            Ok(m) if m.from == from && m.to == self.replica.id() => m,
            _ => return self.close(conn),
        };
        self.peer(msg);
    }

    /// A raft message from another member.
    pub(crate) fn peer(&mut self, msg: Message) {
        if self.join.is_some() {
            return; // no part in replication before the incarnation is known
        }
        if let Some((heard, commit)) = self.behind.as_mut() {
            match msg.get_msg_type() {
                // What the leader had committed when this member first heard from it.
                MessageType::MsgAppend if !*heard => {
                    *heard = true;
                    *commit = msg.commit;
                }
                MessageType::MsgSnapshot if !*heard => {
                    *heard = true;
                    *commit = msg
                        .snapshot
                        .as_ref()
                        .and_then(|s| s.metadata.as_ref())
                        .map_or(0, |m| m.index);
                }
                // No vote from a member that may have forgotten its log and its votes.
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => return,
                _ => {}
            }
        }
        self.replica.step(msg);
        self.pump();
    }

    /// The group's members as this member sees them.
    fn members(&self) -> Vec<MemberInfo> {
        self.replica
            .roles()
            .into_iter()
            .map(|(id, role)| MemberInfo {
                id,
                address: self.addresses.get(&id).cloned().unwrap_or_default(),
                role: role.into(),
            })
            .collect()
    }

    /// The connection to member `id` broke, or a message for it could not be sent.
    pub(crate) fn unreachable(&mut self, now: Instant, id: MemberId) {
        self.now = now;
        if self.join.is_none() {
            self.replica.unreachable(id);
            self.pump();
        }
    }

    /// The leader this member knows of, and its term.
    pub(crate) fn leader_view(&self) -> (Option<MemberId>, u64) {
        (self.replica.leader(), self.replica.term())
    }

    /// Member `id`'s connection broke and a dial right after was refused: nothing listens
    /// where it was (see [`Replica::leader_gone`]: when it led, the first of the other voters
    /// campaigns at once; not a member catching up after it lost its data). Returns whether
    /// this member campaigned.
    pub(crate) fn gone(&mut self, now: Instant, id: MemberId) -> bool {
        self.now = now;
        // A member catching up after it lost its data neither votes nor campaigns.
        let campaigned = self.replicating() && self.replica.leader_gone(id);
        if campaigned {
            self.pump();
        }
        campaigned
    }

    /// The hello this member sends first on its connections to the others.
    pub(crate) fn hello(&self) -> ClientMsg {
        ClientMsg::PeerHello {
            magic: proto::MAGIC,
            version: proto::PROTOCOL_VERSION,
            from: self.replica.id(),
            incarnation: self.join.is_none().then_some(self.incarnation),
            // Nothing applied yet but the founding snapshot.
            fresh: self.drew && self.applied <= FOUNDING_INDEX,
            bootstrap: self.bootstrap,
            voters: if self.join.is_none() {
                self.replica.conf_state().voters
            } else {
                vec![]
            },
        }
    }

    /// Whether the replica runs its timers: not while the incarnation is sought, nor while
    /// catching up after taking it.
    fn replicating(&self) -> bool {
        self.join.is_none() && self.behind.is_none()
    }

    /// The persist batches up to `number` are durable.
    pub(crate) fn persisted(&mut self, now: Instant, number: u64) {
        self.now = now;
        self.replica.persisted(number);
        self.pump();
    }

    /// Connection `conn` is gone (closed by its peer or by the runtime). Its sessions stay;
    /// they are heard again on another connection or expire.
    pub(crate) fn closed(&mut self, now: Instant, conn: usize) {
        self.now = now;
        if let Some(c) = self.conns.remove(&conn) {
            for s in c.sessions {
                if self.bound.get(&s) == Some(&conn) {
                    self.bound.remove(&s);
                }
            }
        }
    }

    /// The outcome of a check asked for with [`NodeIo::Check`]; `ran` is false when the
    /// runtime could not run it (out of threads): the round is tried again later.
    pub(crate) fn checked(
        &mut self,
        now: Instant,
        election: String,
        candidate: String,
        ran: bool,
        ok: bool,
    ) {
        self.now = now;
        let running = self.designations.get(&election).is_some_and(|d| d.1);
        if self.leading.is_none() || !running {
            return; // asked by this member in an earlier leadership: moot
        }
        if !ran {
            if let Some(d) = self.designations.get_mut(&election) {
                d.1 = false;
            }
            self.retries.push((now + DESIGNATION_RETRY, election));
            return;
        }
        if ok {
            self.designations.remove(&election);
            self.designate(election, candidate, now);
        } else {
            if let Some(d) = self.designations.get_mut(&election) {
                d.0.insert(candidate);
                d.1 = false;
            }
            self.designation_step(election, now);
        }
    }

    /// Acts on what is due at `now`: the replica's ticks; on the leader, expiries,
    /// designations and promotions.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.now = now;
        if self.replicating() {
            self.replica.tick(now);
            self.pump();
        }
        if self.leading.is_none() {
            return;
        }
        for cmd in std::mem::take(&mut self.unproposed) {
            self.propose(cmd, None);
        }
        for s in self.liveness.expired(now) {
            // Decided: no heartbeat is acknowledged from here on, whatever the log says
            // when the expiry is applied.
            self.liveness.forget(s);
            self.propose(Command::Expire { session: s }, None);
        }
        self.run_designations(now);
        self.run_promotions(now);
        self.run_member_changes(now);
    }

    // ---- replication ---------------------------------------------------------------------

    /// Performs what the replica asked for.
    fn pump(&mut self) {
        while let Some(io) = self.replica.poll_io() {
            match io {
                ReplicaIo::Persist {
                    number,
                    snapshot,
                    entries,
                    hard_state,
                } => self.io.push_back(NodeIo::Persist {
                    number,
                    snapshot,
                    entries,
                    hard_state,
                }),
                ReplicaIo::Send { to, msg } => self.io.push_back(NodeIo::Peer { to, msg }),
                ReplicaIo::Config {
                    index,
                    term,
                    conf,
                    context,
                } => self.config_applied(index, term, &conf, &context),
                ReplicaIo::Apply { index, term, cmd } => self.apply(index, term, cmd),
                ReplicaIo::AppliedTo { index } => {
                    self.applied = self.applied.max(index);
                    #[cfg(test)]
                    self.seen.push(Seen::AppliedTo { index });
                }
                ReplicaIo::Restore { index, data } => {
                    // From the leader's own snapshot: bytes that do not decode are corruption.
                    self.state = bincode::deserialize(&data)
                        .unwrap_or_else(|e| panic!("snapshot at {index} does not decode: {e}"));
                    self.applied = index;
                    for (id, r) in self.state.member_records() {
                        self.addresses.insert(*id, r.address.clone());
                        let address = r.address.clone();
                        self.io.push_back(NodeIo::Member { id: *id, address });
                    }
                    #[cfg(test)]
                    self.seen.push(Seen::Restored { index });
                }
                ReplicaIo::ReadReady { ctx, index } => {
                    if let Some(b) = self.batches.iter_mut().find(|b| b.ctx == ctx) {
                        b.ready_at = Some(index.max(b.after));
                    }
                    self.ask_reads();
                }
                ReplicaIo::Leader { leader, term } => {
                    if leader == Some(self.replica.id()) {
                        if self.leading != Some(term) {
                            self.lead(term);
                        }
                    } else {
                        self.follow();
                    }
                }
            }
            self.answer_reads();
        }
        if let Some((true, commit)) = self.behind {
            if self.applied.min(self.replica.applied()) >= commit {
                // Caught up: this member's log holds everything committed before it came
                // back; it may vote and campaign again.
                self.behind = None;
                self.replica.resume(self.now);
            }
        }
    }

    /// This member became leader: every session gets its full TTL from now (the grace
    /// period: a deposed leader acknowledged no heartbeat after a majority had moved on, so
    /// no client's deadline lies beyond now + TTL), designations resume after the hold-off,
    /// probation starts over.
    fn lead(&mut self, term: u64) {
        let now = self.now;
        self.leading = Some(term);
        self.liveness = Liveness::new();
        for (s, ttl) in self.state.sessions() {
            self.liveness.track(s, Duration::from_millis(ttl), now);
        }
        // Designations resume, but not before any master that stepped down under an earlier
        // leader (whose notice may never have left) has seen its lease end: hold every
        // election off for the longest TTL of its candidates.
        self.state.mark_all_elections();
        self.holdoff.clear();
        for (name, ttl) in self.state.longest_candidate_ttls() {
            if ttl > 0 {
                self.holdoff.insert(name, now + Duration::from_millis(ttl));
            }
        }
        self.designations.clear();
        self.deciding.clear();
        self.retries.clear();
        self.evaluator = Evaluator::new();
        self.caught_up_since.clear();
        self.commits.clear();
        self.unproposed.clear();
        for (g, m, session, ms) in self.state.probationary() {
            let ttl = Duration::from_millis(self.state.session_ttl(session).unwrap_or(0));
            self.evaluator
                .start(&g, &m, session, Duration::from_millis(ms), ttl, now);
        }
        // Reads that arrived since the election are asked now.
        self.ask_reads();
    }

    /// This member no longer leads: what waits for it is told where to go.
    fn follow(&mut self) {
        self.leading = None;
        self.unproposed.clear();
        // What was proposed and waits for its answer here may still commit under the next
        // leader, or not: the askers are sent there, and resend (a request's id makes the
        // resend a repeat if it did commit).
        let origins: Vec<Origin> = std::mem::take(&mut self.origins).into_values().collect();
        for o in origins {
            let e = self.not_leader();
            self.reply(o.conn, o.session, o.req, Err(e));
        }
        let waiting = std::mem::take(&mut self.reads_waiting);
        let asked: Vec<Read> = self.batches.drain(..).flat_map(|b| b.reads).collect();
        for r in waiting.into_iter().chain(asked) {
            self.paid(r.conn);
            let e = self.not_leader();
            self.reply(r.conn, r.session, r.req, Err(e));
        }
    }

    /// The error telling a client to go to the leader.
    fn not_leader(&self) -> ErrorReply {
        let leader = match self.replica.not_leader() {
            NotLeader::Elsewhere(id) => self.addresses.get(&id).cloned(),
            NotLeader::Unknown => None,
        };
        ErrorReply::NotLeader { leader }
    }

    /// Proposes a command; when applied, its answer goes to `origin`'s connection. False
    /// (and the asker told) when this member does not lead.
    fn propose(&mut self, cmd: Command, origin: Option<Origin>) -> bool {
        match self.replica.propose(&cmd) {
            Ok(at) => {
                if let Some(o) = origin {
                    self.origins.insert(at, o);
                }
                if let Command::Designate { election, .. } | Command::StepDown { election } = &cmd {
                    self.deciding.insert(at, election.clone());
                }
                self.pump();
                true
            }
            Err(_) => {
                match origin {
                    Some(o) => {
                        let e = self.not_leader();
                        self.reply(o.conn, o.session, o.req, Err(e));
                    }
                    // This leader's own decision (an expiry, a designation, a promotion),
                    // refused while it hands leadership over: proposed again at the next tick
                    // if it still leads (a decision gone stale by then is refused at apply,
                    // as any), never lost. A new leader decides afresh.
                    None if self.replica.is_leader() => self.unproposed.push(cmd),
                    None => {}
                }
                false
            }
        }
    }

    /// A read arrived: it is asked of the replica with the next batch.
    fn read(&mut self, conn: usize, session: SessionId, req: u64, kind: ReadKind) {
        if !self.replica.is_leader() {
            let e = self.not_leader();
            self.reply(conn, session, req, Err(e));
            return;
        }
        *self.owed.entry(conn).or_default() += 1;
        self.reads_waiting.push(Read {
            conn,
            session,
            req,
            kind,
        });
        self.ask_reads();
        self.pump();
    }

    /// Asks the replica to confirm the waiting reads, unless a batch is being confirmed
    /// (its confirmation asks for the next).
    fn ask_reads(&mut self) {
        let asking = self.batches.iter().any(|b| b.ready_at.is_none());
        // Not before this leader has committed an entry of its term: raft-rs drops a read
        // asked earlier (and the reads wait in the meantime).
        if asking || self.reads_waiting.is_empty() || self.leading.is_none() {
            return;
        }
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        self.batches.push_back(ReadBatch {
            ctx,
            after: self.replica.last_index(),
            ready_at: None,
            reads: std::mem::take(&mut self.reads_waiting),
        });
        if self.replica.read(ctx).is_err() {
            self.follow();
        }
    }

    /// Answers the confirmed batches whose entries are applied, in order.
    fn answer_reads(&mut self) {
        while self
            .batches
            .front()
            .is_some_and(|b| b.ready_at.is_some_and(|i| i <= self.applied))
        {
            let b = self.batches.pop_front().expect("checked");
            for r in b.reads {
                self.answer(r);
            }
        }
    }

    /// A read of connection `c` was answered.
    fn paid(&mut self, c: usize) {
        if let Some(n) = self.owed.get_mut(&c) {
            *n -= 1;
            if *n == 0 {
                self.owed.remove(&c);
            }
        }
    }

    /// Reads of connection `conn` waiting for their answer.
    pub(crate) fn owed(&self, conn: usize) -> usize {
        self.owed.get(&conn).copied().unwrap_or(0)
    }

    fn answer(&mut self, r: Read) {
        let Read {
            conn: c,
            session,
            req,
            kind,
        } = r;
        self.paid(c);
        let result = match kind {
            ReadKind::Heartbeat => {
                if !self.liveness.touch(session, self.now) {
                    self.reply(c, session, req, Err(ErrorReply::UnknownSession));
                    return;
                }
                self.evaluator.heard(session, self.now);
                let moved = self.bound.get(&session) != Some(&c);
                self.bind(c, session);
                // The catch-up goes first: the reply extends the client's lease, and must
                // not reach it before a step-down it missed.
                if moved {
                    self.catch_up(c, session);
                }
                self.reply(c, session, req, Ok(Reply::Alive));
                return;
            }
            ReadKind::Status(from) => {
                let mut st = self.state.status_page(
                    self.incarnation,
                    from.as_ref(),
                    proto::STATUS_PAGE_BYTES,
                );
                st.members = self.members();
                st.leader = st.members.iter().find(|m| m.role == "leader").cloned();
                Reply::Status(st)
            }
            ReadKind::View(group) => Reply::View(self.state.view(&group)),
            ReadKind::Master(election) => Reply::Master(self.state.master(&election)),
        };
        self.reply(c, session, req, Ok(result));
    }

    /// A committed command, in log order: applied, and its outputs routed.
    fn apply(&mut self, index: u64, term: u64, cmd: Command) {
        self.applied = index;
        #[cfg(test)]
        self.seen.push(Seen::Applied {
            index,
            term,
            cmd: cmd.clone(),
        });
        let origin = self.origins.remove(&(term, index));
        if let Some(election) = self.deciding.remove(&(term, index)) {
            // Decided: the election is looked at again from the state it left.
            self.retries.push((self.now, election));
        }
        let outputs = match self.state.execute(&cmd) {
            Ok(a) => {
                if let (Command::Revoke { .. }, Some(o)) = (&cmd, &origin) {
                    self.reply(o.conn, o.session, o.req, Ok(Reply::Done));
                }
                a.outputs
            }
            Err(e) => match (cmd.asker(), &origin) {
                (Some((session, req)), _) => vec![Output::Reply {
                    session,
                    req,
                    result: Err(e),
                }],
                (None, Some(o)) => {
                    self.reply(o.conn, o.session, o.req, Err(e));
                    vec![]
                }
                // The leader's own decision gone stale (an expiry racing a close).
                (None, None) => vec![],
            },
        };
        self.route(outputs, origin.map(|o| o.conn), cmd.asker());
    }

    // ---- rules ---------------------------------------------------------------------------

    fn send(&mut self, conn: usize, msg: ServerMsg) {
        self.io.push_back(NodeIo::Send { conn, msg });
    }

    /// Closes a connection on the node's own account (a protocol violation).
    fn close(&mut self, conn: usize) {
        self.closed(self.now, conn);
        self.io.push_back(NodeIo::Close { conn });
    }

    fn handle(&mut self, c: usize, msg: ClientMsg) {
        let greeted = self.conns.get(&c).is_some_and(|x| x.greeted);
        match msg {
            ClientMsg::PeerHello {
                magic,
                version,
                from,
                incarnation,
                fresh,
                bootstrap,
                voters,
            } if !greeted => {
                // Any member id but this one's: a member being added is not in the
                // configuration yet when it asks for the incarnation (its address comes with
                // the change that adds it).
                let known = from != 0 && from != self.replica.id();
                let ours =
                    self.join.is_some() || incarnation.map_or(true, |t| t == self.incarnation);
                let refusal = if magic != proto::MAGIC || version != proto::PROTOCOL_VERSION {
                    Some(format!(
                        "protocol version {version} is not supported (this member speaks {})",
                        proto::PROTOCOL_VERSION
                    ))
                } else if !known {
                    Some(format!("member id {from} is this member's own, or invalid"))
                } else if !ours {
                    Some(format!(
                        "member {from} holds another incarnation than this member ({:032x})",
                        self.incarnation
                    ))
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    self.send(c, ServerMsg::Reject { reason });
                    self.close(c);
                    return;
                }
                if let Some(conn) = self.conns.get_mut(&c) {
                    conn.greeted = true;
                    conn.peer = Some(from);
                    conn.sessionless_since = None;
                }
                self.io.push_back(NodeIo::Upgrade { conn: c });
                if incarnation.is_none() && self.join.is_none() {
                    // It came back without its data: whatever it acknowledged is gone.
                    self.replica.unreachable(from);
                    self.pump();
                }
                let heard = Heard {
                    incarnation,
                    fresh,
                    bootstrap,
                    voters,
                };
                self.heard(from, heard);
            }
            ClientMsg::Hello { .. } if !greeted && self.join.is_some() => {
                let why = match self.join.as_ref().map(|j| j.decide()) {
                    Some(Decision::Wait(why)) => why,
                    _ => "it is joining its group".into(),
                };
                let reason = format!("this member does not serve yet: {why}");
                self.send(c, ServerMsg::Reject { reason });
                self.close(c);
            }
            ClientMsg::Hello { magic, version, .. } if !greeted => {
                if magic != proto::MAGIC || version != proto::PROTOCOL_VERSION {
                    let m = ServerMsg::Reject {
                        reason: format!(
                            "protocol version {version} is not supported (this server speaks {})",
                            proto::PROTOCOL_VERSION
                        ),
                    };
                    self.send(c, m);
                    self.close(c);
                    return;
                }
                if let Some(conn) = self.conns.get_mut(&c) {
                    conn.greeted = true;
                }
                self.send(
                    c,
                    ServerMsg::Welcome {
                        version: proto::PROTOCOL_VERSION,
                        incarnation: self.incarnation,
                    },
                );
            }
            ClientMsg::Request { session, req, .. }
                if greeted && self.conns.get(&c).is_some_and(|x| x.redirected) =>
            {
                let e = self.not_leader();
                self.reply(c, session, req, Err(e));
            }
            ClientMsg::Request { session, req, body } if greeted => {
                self.request(c, session, req, body)
            }
            _ => self.close(c), // a request before the handshake, or a second hello
        }
    }

    /// Another member's hello, while this member looks for its incarnation.
    fn heard(&mut self, from: MemberId, h: Heard) {
        let Some(join) = self.join.as_mut() else {
            return;
        };
        join.heard(from, h);
        let (token, behind) = match join.decide() {
            Decision::Wait(_) => return,
            Decision::Take {
                incarnation,
                behind,
            } => (incarnation, behind),
            Decision::Draw => {
                self.drew = true;
                (self.new_token, false)
            }
        };
        self.join = None;
        self.incarnation = token;
        self.behind = behind.then_some((false, 0));
        if let Err(e) = self.start_replica(behind) {
            // Only an invalid raft configuration fails here, and it was valid at the start.
            panic!("the replica does not start again: {e}");
        }
        self.io.push_back(NodeIo::Incarnation { token });
        if self.replicating() {
            self.replica.resume(self.now);
        }
    }

    /// This member has no data (it looked for its incarnation): its replica starts anew. A
    /// member joining a group (`behind`) starts with no configuration and learns it from
    /// the leader's snapshot; a member founding one starts from the founding snapshot, the
    /// same on every founder, made durable first.
    fn start_replica(&mut self, behind: bool) -> Result<(), String> {
        let mut cfg = self.replica_cfg.clone();
        if behind {
            cfg.voters.clear();
            self.replica = Replica::new(cfg, Durable::default(), self.now)?;
        } else {
            let state = State::new();
            let data = bincode::serialize(&state).expect("state serializes");
            let snapshot = founding_snapshot(cfg.voters.clone(), data);
            let durable = Durable {
                snapshot: Some(snapshot.clone()),
                ..Durable::default()
            };
            self.replica = Replica::new(cfg, durable, self.now)?;
            self.state = state;
            self.applied = FOUNDING_INDEX;
            // Batch 0: before any of the new replica's own.
            self.io.push_back(NodeIo::Persist {
                number: 0,
                snapshot: Some(snapshot),
                entries: vec![],
                hard_state: Some(self.replica.hard_state()),
            });
            #[cfg(test)]
            self.seen.push(Seen::Restored {
                index: FOUNDING_INDEX,
            });
        }
        self.pump();
        Ok(())
    }

    /// Whether member `id`'s log holds everything this member (the leader) had committed
    /// [`members::CATCH_UP_LAG`] ago (or at its oldest sample, when it has led for less).
    /// A lag, not the commit index now: in a group that writes all the time, a member is
    /// always a round trip behind that.
    fn has_committed(&self, id: MemberId) -> bool {
        let now = self.now;
        let then = now.checked_sub(members::CATCH_UP_LAG).unwrap_or(now);
        let committed = self
            .commits
            .iter()
            .rev()
            .find(|(t, _)| *t <= then)
            .or(self.commits.front())
            .map_or_else(|| self.replica.committed(), |(_, c)| *c);
        self.replica
            .progress(id)
            .is_some_and(|(matched, _)| matched >= committed)
    }

    /// How far member `id` has come, as this member (the leader) sees it: caught up when
    /// [`Node::has_committed`] and it answered recently (raft-rs clears the latter at every
    /// quorum check, until the next answer); proven once it has been caught up (answers
    /// aside) for [`members::PROBATION`].
    fn progress_of(&self, id: MemberId, now: Instant) -> Progress {
        let active = self.replica.progress(id).is_some_and(|(_, a)| a);
        let caught_up = active && self.has_committed(id);
        let proven = caught_up
            && self
                .caught_up_since
                .get(&id)
                .is_some_and(|t| now.saturating_duration_since(*t) >= members::PROBATION);
        Progress { caught_up, proven }
    }

    /// On the leader: promotes learners that proved themselves (and removes the voters they
    /// replace), and leaves a joint configuration; one change at a time.
    fn run_member_changes(&mut self, now: Instant) {
        self.commits.push_back((now, self.replica.committed()));
        while self.commits.len() > 1
            && now.saturating_duration_since(self.commits[1].0) > members::CATCH_UP_LAG
        {
            self.commits.pop_front();
        }
        let conf = self.replica.conf_state();
        self.caught_up_since
            .retain(|id, _| conf.learners.contains(id));
        for &l in &conf.learners {
            if self.has_committed(l) {
                self.caught_up_since.entry(l).or_insert(now);
            } else {
                self.caught_up_since.remove(&l);
            }
        }
        if self.replica.changing() {
            return;
        }
        let me = self.replica.id();
        let step = members::next_step(me, &conf, self.state.member_records(), |id| {
            self.progress_of(id, now)
        });
        self.member_step(step, None);
    }

    /// Takes a step of a change of members; `origin` is answered once it is applied.
    fn member_step(&mut self, step: members::Step, origin: Option<Origin>) {
        match step {
            members::Step::Nothing => {}
            members::Step::Transfer(to) => {
                self.replica.transfer_leader(to);
                self.pump();
                if let Some(o) = origin {
                    let leader = self.addresses.get(&to).cloned();
                    self.reply(
                        o.conn,
                        o.session,
                        o.req,
                        Err(ErrorReply::NotLeader { leader }),
                    );
                }
            }
            members::Step::Propose { changes, context } => {
                let bytes = bincode::serialize(&context).expect("a context serializes");
                match self.replica.propose_conf_change(&changes, bytes) {
                    Ok(at) => {
                        if let Some(o) = origin {
                            self.origins.insert(at, o);
                        }
                        self.pump();
                    }
                    Err(_) => {
                        if let Some(o) = origin {
                            let e = if self.replica.is_leader() {
                                ErrorReply::Limit(
                                    "another change of the group's members is under way; try \
                                     again once it is applied"
                                        .into(),
                                )
                            } else {
                                self.not_leader()
                            };
                            self.reply(o.conn, o.session, o.req, Err(e));
                        }
                    }
                }
            }
        }
    }

    /// A configuration change was applied: the records it adds are kept (and linked to),
    /// those of members no longer in the group dropped; its asker is answered.
    fn config_applied(&mut self, index: u64, term: u64, conf: &ConfState, context: &[u8]) {
        self.applied = self.applied.max(index);
        let ctx: ChangeContext = bincode::deserialize(context).unwrap_or_default();
        for (id, record) in ctx.add {
            self.addresses.insert(id, record.address.clone());
            let address = record.address.clone();
            self.state.set_member_record(id, record);
            self.io.push_back(NodeIo::Member { id, address });
        }
        let inside = |id: u64| {
            conf.voters.contains(&id)
                || conf.learners.contains(&id)
                || conf.voters_outgoing.contains(&id)
                || conf.learners_next.contains(&id)
        };
        self.state.retain_member_records(inside);
        if let Some(o) = self.origins.remove(&(term, index)) {
            self.reply(o.conn, o.session, o.req, Ok(Reply::Done));
        }
    }

    fn reply(&mut self, c: usize, session: SessionId, req: u64, result: Result<Reply, ErrorReply>) {
        if matches!(result, Err(ErrorReply::NotLeader { .. })) {
            if let Some(conn) = self.conns.get_mut(&c) {
                conn.redirected = true;
            }
        }
        self.send(
            c,
            ServerMsg::Reply {
                session,
                req,
                result,
            },
        );
    }

    fn bind(&mut self, c: usize, session: SessionId) -> bool {
        if let Some(old) = self.bound.get(&session).copied() {
            if old == c {
                return true;
            }
            self.unbind(old, session);
        }
        let Some(conn) = self.conns.get_mut(&c) else {
            return false;
        };
        if conn.sessions.len() >= MAX_SESSIONS_PER_CONNECTION {
            return false;
        }
        conn.sessions.insert(session);
        conn.sessionless_since = None;
        self.bound.insert(session, c);
        true
    }

    /// Takes `session` off connection `c` (it moved, or ended).
    fn unbind(&mut self, c: usize, session: SessionId) {
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.sessions.remove(&session);
            if conn.sessions.is_empty() && conn.sessionless_since.is_none() {
                conn.sessionless_since = Some(self.now);
            }
        }
    }

    fn request(&mut self, c: usize, session: SessionId, req: u64, body: Request) {
        let now = self.now;
        if !self.replica.is_leader() {
            let e = self.not_leader();
            self.reply(c, session, req, Err(e));
            return;
        }
        let origin = Origin {
            conn: c,
            session,
            req,
        };
        match body {
            Request::Open { ttl_ms } => {
                let over = self
                    .conns
                    .get(&c)
                    .is_some_and(|x| x.sessions.len() >= MAX_SESSIONS_PER_CONNECTION);
                if over {
                    let e = ErrorReply::Limit(format!(
                        "a connection may carry {MAX_SESSIONS_PER_CONNECTION} sessions"
                    ));
                    self.reply(c, 0, req, Err(e));
                    return;
                }
                self.propose(Command::Open { req, ttl_ms }, Some(origin));
            }
            Request::Status { from } => self.read(c, session, req, ReadKind::Status(from)),
            Request::Revoke { name } => {
                self.propose(Command::Revoke { name }, Some(origin));
            }
            Request::ChangeMembers { change } => {
                let me = self.replica.id();
                let conf = self.replica.conf_state();
                match members::check_request(me, &conf, &change, |id| self.progress_of(id, now)) {
                    Ok(step) => self.member_step(step, Some(origin)),
                    Err(why) => self.reply(c, session, req, Err(ErrorReply::Invalid(why))),
                }
            }
            Request::View { group } => match Text::GroupName.check(&group) {
                Ok(()) => self.read(c, session, req, ReadKind::View(group)),
                Err(e) => self.reply(c, session, req, Err(ErrorReply::Invalid(e))),
            },
            Request::Master { election } => match Text::ElectionName.check(&election) {
                Ok(()) => self.read(c, session, req, ReadKind::Master(election)),
                Err(e) => self.reply(c, session, req, Err(ErrorReply::Invalid(e))),
            },
            Request::Heartbeat => self.read(c, session, req, ReadKind::Heartbeat),
            body => {
                // A request proves its session alive as a heartbeat does (its check, at
                // apply, says whether the session exists).
                let known = self.liveness.touch(session, now);
                let moved = known && self.bound.get(&session) != Some(&c);
                if known {
                    self.evaluator.heard(session, now);
                    self.bind(c, session);
                }
                self.propose(Command::Request { session, req, body }, Some(origin));
                if moved {
                    self.catch_up(c, session);
                }
            }
        }
    }

    /// A session now heard on another connection than before (a reconnect, or a late request
    /// on a connection its client gave up) may have missed notices sent while it had none, or
    /// sent where it no longer reads: tell it the master cache of every election it takes part
    /// in. After the request's reply, which may be a remembered, older cache. Clients ignore
    /// epochs they know already.
    fn catch_up(&mut self, c: usize, session: SessionId) {
        if self.bound.get(&session) != Some(&c) {
            return;
        }
        for election in self.state.elections_of(session) {
            if self.state.election(&election).is_none() {
                continue; // dropped since (nobody was left in it)
            }
            let info = self.state.master(&election);
            let notice = Notice::MasterChanged { election, info };
            self.send(c, ServerMsg::Notice { session, notice });
        }
    }

    /// Routes what applying a command produced. `origin` is the connection its asker
    /// (`asker`) sent it on, on the member that proposed it.
    fn route(
        &mut self,
        outputs: Vec<Output>,
        origin: Option<usize>,
        asker: Option<(SessionId, u64)>,
    ) {
        for o in outputs {
            match o {
                Output::SessionOpened { session, ttl_ms } => {
                    self.liveness
                        .track(session, Duration::from_millis(ttl_ms), self.now);
                    if let Some(c) = origin {
                        self.bind(c, session);
                    }
                }
                Output::ProbationStarted {
                    group,
                    member,
                    session,
                    probation_ms,
                } => {
                    let ttl = Duration::from_millis(self.state.session_ttl(session).unwrap_or(0));
                    let min = Duration::from_millis(probation_ms);
                    self.evaluator
                        .start(&group, &member, session, min, ttl, self.now);
                }
                Output::ProbationEnded { group, member } => self.evaluator.stop(&group, &member),
                Output::CheckPassed { group, member } => {
                    if self.leading.is_some() && self.evaluator.is_eligible(&group, &member) {
                        self.propose(Command::Promote { group, member }, None);
                    }
                }
                Output::Notice { session, notice } => {
                    if let Some(c) = self.bound.get(&session).copied() {
                        self.send(c, ServerMsg::Notice { session, notice });
                    }
                    // A session without a connection reads the master cache when it
                    // reconnects.
                }
                Output::SessionEnded { session } => {
                    self.liveness.forget(session);
                    if let Some(c) = self.bound.remove(&session) {
                        self.unbind(c, session);
                    }
                }
                Output::Reply {
                    session,
                    req,
                    result,
                } => {
                    // A reply goes to the connection its own session was last heard on, never
                    // to the connection whose command caused it (a release that grants the
                    // lock to another session answers that session on its own connection);
                    // the command's own asker, if not bound (a new or unknown session), is
                    // answered where it asked.
                    if let Some(c) = self.bound.get(&session).copied() {
                        self.reply(c, session, req, result);
                    } else if asker == Some((session, req)) {
                        if let Some(c) = origin {
                            self.reply(c, session, req, result);
                        }
                    }
                    // Otherwise the session has no connection now; the client resends the
                    // request after reconnecting and gets the remembered reply.
                }
            }
        }
    }

    fn run_designations(&mut self, now: Instant) {
        let mut names = self.state.take_designations();
        let (due, later): (Vec<_>, Vec<_>) = self.retries.drain(..).partition(|r| r.0 <= now);
        self.retries = later;
        names.extend(due.into_iter().map(|r| r.1));
        for name in names {
            if self.designations.get(&name).is_some_and(|d| d.1) {
                continue; // a check is running; its result continues the round
            }
            if self.deciding.values().any(|e| *e == name) {
                continue; // a decision is in the log; its application looks again
            }
            self.designation_step(name, now);
        }
    }

    /// Designates `id`, unless the election still has a master (a preemption): then the
    /// master steps down first, and the successor is designated once the old master's TTL has
    /// passed. The old master stops believing by then: any heartbeat reply that would extend
    /// its lease reaches it after the step-down notice (same connection, or the catch-up on a
    /// new one), so its deadline is at most the step-down plus its TTL less drift.
    fn designate(&mut self, name: String, id: String, now: Instant) {
        let master = self
            .state
            .election(&name)
            .and_then(|e| e.master())
            .map(|m| m.session);
        match master {
            Some(session) => {
                let ttl = Duration::from_millis(self.state.session_ttl(session).unwrap_or(0));
                self.propose(
                    Command::StepDown {
                        election: name.clone(),
                    },
                    None,
                );
                let until = now + ttl;
                self.holdoff.insert(name.clone(), until);
                if !self.retries.iter().any(|r| r.1 == name) {
                    self.retries.push((until, name));
                }
            }
            None => {
                self.propose(
                    Command::Designate {
                        election: name,
                        candidate: Some(id),
                    },
                    None,
                );
            }
        }
    }

    fn designation_step(&mut self, name: String, now: Instant) {
        if let Some(until) = self.holdoff.get(&name).copied() {
            if until > now {
                if !self.retries.iter().any(|r| r.1 == name) {
                    self.retries.push((until, name));
                }
                return;
            }
            self.holdoff.remove(&name);
        }
        let failed = self
            .designations
            .get(&name)
            .map(|d| d.0.clone())
            .unwrap_or_default();
        let step = match self.state.election(&name) {
            Some(e) => e.next_step(&failed),
            None => Step::Keep,
        };
        match step {
            Step::Keep => {
                // With preemption, candidates above the master that failed their check are
                // checked again later (they may answer then), as after NoneReachable.
                let failed = self
                    .designations
                    .remove(&name)
                    .is_some_and(|d| !d.0.is_empty());
                if failed && !self.retries.iter().any(|r| r.1 == name) {
                    self.retries.push((now + DESIGNATION_RETRY, name));
                }
            }
            Step::Designate(id) => {
                self.designations.remove(&name);
                self.designate(name, id, now);
            }
            Step::Check { id, endpoint } => {
                self.designations.entry(name.clone()).or_default().1 = true;
                self.io.push_back(NodeIo::Check {
                    election: name,
                    candidate: id,
                    endpoint,
                });
            }
            Step::NoneReachable => {
                self.designations.remove(&name);
                self.propose(
                    Command::Designate {
                        election: name.clone(),
                        candidate: None,
                    },
                    None,
                );
                if !self.retries.iter().any(|r| r.1 == name) {
                    self.retries.push((now + DESIGNATION_RETRY, name));
                }
            }
        }
    }

    /// Promotes probationary members whose probation has passed; those that still wait for
    /// their application's check are marked and promoted when it passes.
    fn run_promotions(&mut self, now: Instant) {
        for (group, member) in self.evaluator.due(now) {
            let waits_for_check = self
                .state
                .group(&group)
                .and_then(|g| g.member(&member))
                .is_some_and(|m| m.needs_check && !m.check_passed);
            if waits_for_check {
                self.evaluator.mark_eligible(&group, &member);
            } else {
                self.evaluator.stop(&group, &member);
                self.propose(Command::Promote { group, member }, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::proto::MasterInfo;

    const INC: Incarnation = 99;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A node driven by hand against a manual clock; what it persists is durable at once
    /// (and its commands kept in `logged`).
    struct T {
        n: Node,
        clock: ManualClock,
        logged: Vec<Command>,
    }

    impl T {
        fn new() -> T {
            T::with_state(State::new())
        }

        fn with_state(state: State) -> T {
            let clock = ManualClock::new();
            let n = Node::alone(state, INC, clock.now());
            let mut t = T {
                n,
                clock,
                logged: vec![],
            };
            assert!(t.io().is_empty());
            assert!(t.n.is_leader(), "a group of one leads at once");
            t.logged.clear();
            t
        }

        fn now(&self) -> Instant {
            self.clock.now()
        }

        fn io(&mut self) -> Vec<NodeIo> {
            let mut out = vec![];
            while let Some(io) = self.n.poll_io() {
                match io {
                    NodeIo::Persist {
                        number, entries, ..
                    } => {
                        for e in entries.iter().filter(|e| !e.data.is_empty()) {
                            self.logged.push(bincode::deserialize(&e.data).unwrap());
                        }
                        self.n.persisted(self.now(), number);
                    }
                    io => out.push(io),
                }
            }
            out
        }

        /// The commands logged since the last call.
        fn logged(&mut self) -> Vec<Command> {
            std::mem::take(&mut self.logged)
        }

        /// A greeted connection.
        fn conn(&mut self, c: usize) {
            self.n.accepted(self.now(), c);
            let hello = ClientMsg::Hello {
                magic: proto::MAGIC,
                version: proto::PROTOCOL_VERSION,
                client_name: "t".into(),
            };
            self.n.frame(self.now(), c, hello);
            assert!(matches!(
                self.io()[..],
                [NodeIo::Send {
                    msg: ServerMsg::Welcome { .. },
                    ..
                }]
            ));
        }

        fn req(&mut self, c: usize, session: SessionId, req: u64, body: Request) -> Vec<NodeIo> {
            let msg = ClientMsg::Request { session, req, body };
            self.n.frame(self.now(), c, msg);
            self.io()
        }

        fn open(&mut self, c: usize, req: u64, ttl_ms: u64) -> SessionId {
            let io = self.req(c, 0, req, Request::Open { ttl_ms });
            assert!(matches!(self.logged()[..], [Command::Open { .. }]));
            match &io[..] {
                [NodeIo::Send {
                    conn,
                    msg:
                        ServerMsg::Reply {
                            result: Ok(Reply::Opened { session, .. }),
                            ..
                        },
                }] if *conn == c => *session,
                other => panic!("{other:?}"),
            }
        }

        fn advance(&mut self, d: Duration) -> Vec<NodeIo> {
            self.clock.advance(d);
            self.n.tick(self.now());
            self.io()
        }
    }

    fn replies(io: &[NodeIo]) -> Vec<(usize, SessionId, Result<Reply, ErrorReply>)> {
        io.iter()
            .filter_map(|i| match i {
                NodeIo::Send {
                    conn,
                    msg:
                        ServerMsg::Reply {
                            session, result, ..
                        },
                } => Some((*conn, *session, result.clone())),
                _ => None,
            })
            .collect()
    }

    fn acquire(name: &str) -> Request {
        Request::Acquire {
            name: name.into(),
            wait: true,
        }
    }

    #[test]
    fn the_handshake_comes_first_and_a_wrong_version_is_refused() {
        let mut t = T::new();
        t.n.accepted(t.now(), 1);
        let io = t.req(1, 0, 1, Request::Open { ttl_ms: 1000 });
        assert_eq!(
            io,
            vec![NodeIo::Close { conn: 1 }],
            "a request before the hello"
        );
        t.n.accepted(t.now(), 2);
        let hello = ClientMsg::Hello {
            magic: proto::MAGIC,
            version: 1,
            client_name: "old".into(),
        };
        t.n.frame(t.now(), 2, hello);
        let io = t.io();
        assert!(matches!(
            &io[..],
            [NodeIo::Send { conn: 2, msg: ServerMsg::Reject { reason } }, NodeIo::Close { conn: 2 }]
                if reason.contains("protocol version 1")
        ));
        t.conn(3);
        t.open(3, 1, 1000);
    }

    #[test]
    fn heartbeats_are_not_logged_and_expiry_hands_the_lock_to_the_waiter() {
        let mut t = T::new();
        t.conn(1);
        t.conn(2);
        let a = t.open(1, 1, 1000);
        let b = t.open(2, 1, 10_000);
        let io = t.req(1, a, 2, acquire("l"));
        assert_eq!(t.logged().len(), 1);
        assert!(matches!(
            replies(&io)[..],
            [(1, _, Ok(Reply::Granted { .. }))]
        ));
        let io = t.req(2, b, 2, acquire("l"));
        assert!(replies(&io).is_empty(), "the waiter waits");
        assert_eq!(t.logged().len(), 1);
        // Heartbeats keep a alive, and are not logged.
        for _ in 0..5 {
            assert!(t.advance(ms(300)).is_empty());
            let io = t.req(1, a, 1 << 63 | 3, Request::Heartbeat);
            assert!(t.logged().is_empty());
            assert!(matches!(replies(&io)[..], [(1, _, Ok(Reply::Alive))]));
        }
        // Silence: expired TTL after the last receipt, not before.
        assert!(t.advance(ms(999)).is_empty());
        let io = t.advance(ms(1));
        assert!(matches!(t.logged()[..], [Command::Expire { session }] if session == a));
        // The grant goes to the waiter, on its own connection.
        assert!(matches!(
            replies(&io)[..],
            [(2, s, Ok(Reply::Granted { .. }))] if s == b
        ));
        // b's TTL runs from its last request, 2.5 s ago.
        t.advance(ms(7499));
        assert!(t.logged().is_empty());
        t.advance(ms(1));
        assert!(matches!(t.logged()[..], [Command::Expire { session }] if session == b));
    }

    #[test]
    fn a_session_heard_on_another_connection_is_answered_and_caught_up_there() {
        let mut t = T::new();
        t.conn(1);
        let a = t.open(1, 1, 5000);
        let campaign = Request::Campaign {
            election: "e".into(),
            id: "me".into(),
            priority: 1,
            endpoint: None,
            preempt: false,
        };
        t.req(1, a, 2, campaign);
        t.n.tick(t.now());
        t.io();
        assert!(t
            .logged()
            .iter()
            .any(|c| matches!(c, Command::Designate { .. })));
        // The client reconnects: a heartbeat on connection 7 moves the session there.
        t.n.closed(t.now(), 1);
        t.conn(7);
        let io = t.req(7, a, 1 << 63 | 5, Request::Heartbeat);
        let notices: Vec<_> = io
            .iter()
            .filter_map(|i| match i {
                NodeIo::Send {
                    conn: 7,
                    msg:
                        ServerMsg::Notice {
                            notice: Notice::MasterChanged { info, .. },
                            ..
                        },
                } => Some(info.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(notices.len(), 1, "caught up on the master cache: {io:?}");
        assert!(notices[0].master.is_some());
        assert!(matches!(replies(&io)[..], [(7, _, Ok(Reply::Alive))]));
        assert_eq!(t.n.idle(t.now() + ms(1), ms(0)), Vec::<usize>::new());
    }

    #[test]
    fn candidates_with_endpoints_are_checked_before_designation() {
        let mut t = T::new();
        t.conn(1);
        t.conn(2);
        let a = t.open(1, 1, 5000);
        let b = t.open(2, 1, 5000);
        for (c, s, id, prio) in [(1, a, "low", 1), (2, b, "high", 2)] {
            let campaign = Request::Campaign {
                election: "e".into(),
                id: id.into(),
                priority: prio,
                endpoint: Some(format!("{id}.example:1")),
                preempt: false,
            };
            t.req(c, s, 2, campaign);
        }
        t.n.tick(t.now());
        let io = t.io();
        let checks: Vec<_> = io
            .iter()
            .filter_map(|i| match i {
                NodeIo::Check { candidate, .. } => Some(candidate.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            checks,
            vec!["high".to_string()],
            "highest priority first, once"
        );
        // It does not answer: the next one is checked.
        t.n.checked(t.now(), "e".into(), "high".into(), true, false);
        let io = t.io();
        assert!(matches!(&io[..], [NodeIo::Check { candidate, .. }] if candidate == "low"));
        t.logged();
        t.n.checked(t.now(), "e".into(), "low".into(), true, true);
        t.io();
        assert!(matches!(
            &t.logged()[..],
            [Command::Designate { candidate: Some(c), .. }] if c == "low"
        ));
        assert_eq!(
            t.n.state().master("e").master.map(|m| m.0),
            Some("low".to_string())
        );
        // A check that could not run is tried again after the retry interval.
        let mut t2 = T::new();
        t2.conn(1);
        let s = t2.open(1, 1, 5000);
        let campaign = Request::Campaign {
            election: "f".into(),
            id: "x".into(),
            priority: 1,
            endpoint: Some("x.example:1".into()),
            preempt: false,
        };
        t2.req(1, s, 2, campaign);
        t2.n.tick(t2.now());
        t2.io();
        t2.n.checked(t2.now(), "f".into(), "x".into(), false, false);
        assert!(t2.io().is_empty());
        let io = t2.advance(DESIGNATION_RETRY);
        assert!(matches!(&io[..], [NodeIo::Check { candidate, .. }] if candidate == "x"));
    }

    #[test]
    fn after_a_restart_no_master_is_designated_before_the_longest_candidate_ttl() {
        // A state with an election whose master's session is gone.
        let mut t = T::new();
        t.conn(1);
        t.conn(2);
        let a = t.open(1, 1, 3000);
        let b = t.open(2, 1, 2000);
        for (c, s, id, prio) in [(1, a, "a", 2), (2, b, "b", 1)] {
            let campaign = Request::Campaign {
                election: "e".into(),
                id: id.into(),
                priority: prio,
                endpoint: None,
                preempt: false,
            };
            t.req(c, s, 2, campaign);
        }
        t.n.tick(t.now());
        t.io();
        assert_eq!(
            t.n.state().master("e").master.map(|m| m.0),
            Some("a".to_string())
        );
        // Restart: sessions get a grace period; a's session closes at once after it, and the
        // designation of b waits for the hold-off of 3 s (a's TTL) from the restart.
        let state = t.n.state().clone();
        let mut r = T::with_state(state);
        r.conn(5);
        r.req(5, a, 9, Request::Close);
        assert_eq!(r.logged().len(), 1);
        r.n.tick(r.now());
        let no_master = |r: &T| {
            r.n.state().master("e")
                == MasterInfo {
                    epoch: r.n.state().master("e").epoch,
                    master: None,
                }
        };
        assert!(no_master(&r));
        // b stays alive with heartbeats on its new connection.
        r.conn(6);
        for i in 0..6 {
            r.advance(ms(499));
            r.req(6, b, 1 << 63 | (10 + i), Request::Heartbeat);
            assert!(no_master(&r), "held off");
        }
        r.advance(ms(6));
        assert_eq!(
            r.n.state().master("e").master.map(|m| m.0),
            Some("b".to_string())
        );
    }

    #[test]
    fn connections_without_sessions_are_idle_from_when_their_last_session_left() {
        let mut t = T::new();
        t.conn(1);
        t.clock.advance(ms(10));
        t.conn(2);
        assert_eq!(t.n.oldest_idle(), Some(1));
        let s = t.open(2, 1, 1000);
        t.clock.advance(ms(10));
        let mut idle = t.n.idle(t.now(), ms(15));
        idle.sort_unstable();
        assert_eq!(idle, vec![1]);
        // The session ends: its connection is idle from then on.
        t.req(2, s, 2, Request::Close);
        assert_eq!(t.n.oldest_idle(), Some(1));
        t.n.closed(t.now(), 1);
        assert_eq!(t.n.oldest_idle(), Some(2));
        assert!(
            t.n.idle(t.now(), ms(1)).is_empty(),
            "idle only since the close"
        );
    }
}
