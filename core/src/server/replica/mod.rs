//! Replication of the command log among the members of a tenure group (SPEC 3.6), on TiKV's
//! `raft` crate (raft-rs). Like the serving node (`node`), a machine with no I/O: the caller
//! feeds it time, peer messages and proposals, and performs what it asks ([`ReplicaIo`]) in
//! order.
//!
//! Why raft-rs: its `RawNode` does no I/O and no threading of its own (a `Ready` says what to
//! persist, send and apply), so it fits the sans-IO node, the deterministic simulation and
//! the runtime's group commit; pre-vote and check-quorum are built in; it is the Raft of
//! TiKV. openraft, the alternative, drives storage and network through async traits on a
//! runtime of its own, which the simulation could not step deterministically.
//!
//! Rules kept here:
//! - The log's entries are the server's [`Command`]s (bincode); the state machine is
//!   [`super::state::State`], fed by [`ReplicaIo::Apply`] in log order on every member.
//! - Persistence is asynchronous and batched: [`ReplicaIo::Persist`] hands over entries and
//!   the hard state to make durable; only when the caller reports them durable
//!   ([`Replica::persisted`]) does this member count them (its votes and its own copy toward
//!   a commit) and send the messages that depend on them. A member that crashes before its
//!   fsync has promised nothing.
//! - Election timeouts are randomized here, from a seeded generator, not by raft-rs (whose
//!   thread-local generator would make the simulation unrepeatable): raft-rs is given a
//!   fixed timeout of [`ReplicaConfig::election_ticks`] ticks, and while this member is not
//!   leader each of its ticks is stretched by one factor drawn in [1, 2) per timeout, so its
//!   election timeout is uniform in [T, 2T) as in the Raft paper.

mod store;

use super::state::Command;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, Entry,
    EntryType, HardState, Message, Snapshot, SnapshotMetadata,
};
use raft::{Config, RawNode, StateRole};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use store::LogStore;

/// A member's id in its group (1, 2, 3, ... as given by `--cluster`; 0 is "none").
pub type MemberId = u64;

/// How a member replicates.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This member.
    pub id: MemberId,
    /// The voters of a group being founded, or (a member that has no snapshot yet) the
    /// configuration to start from; empty for a member joining a group (it learns the
    /// configuration from the leader's snapshot). A member with a snapshot takes the
    /// snapshot's configuration and the changes its log applies after it.
    pub voters: Vec<MemberId>,
    /// One raft tick.
    pub tick: Duration,
    /// Ticks without hearing a leader before a member campaigns (stretched by up to 2×).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Seed of the election-timeout randomization (the simulation gives its own).
    pub seed: u64,
}

impl ReplicaConfig {
    /// A member of a group with the default timing: a 20 ms tick, heartbeats every 2 ticks
    /// (40 ms), elections after 10 to 20 ticks (200–400 ms) without a leader.
    pub fn new(id: MemberId, voters: Vec<MemberId>, seed: u64) -> ReplicaConfig {
        ReplicaConfig {
            id,
            voters,
            tick: Duration::from_millis(20),
            election_ticks: 10,
            heartbeat_ticks: 2,
            seed,
        }
    }
}

/// The first snapshot of a group being founded: the empty state machine (`state`) at index
/// 1, term 1, with the founding `voters`. Every founding member starts from the same one, so
/// their logs agree; and since every member's log then begins after index 1, a member that
/// joins later with nothing (new or wiped) is sent a snapshot, which carries the
/// configuration in force, instead of entries it would apply to a configuration it does not
/// know.
pub fn founding_snapshot(voters: Vec<MemberId>, state: Vec<u8>) -> Snapshot {
    Snapshot {
        data: state,
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState::from((voters, vec![]))),
            index: FOUNDING_INDEX,
            term: 1,
        }),
    }
}

/// The index of a group's founding snapshot ([`founding_snapshot`]).
pub const FOUNDING_INDEX: u64 = 1;

/// What a member had made durable before it stopped.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    /// The last snapshot (the state machine's bytes at its index), if any.
    pub snapshot: Option<Snapshot>,
    /// The last hard state persisted (term, vote, commit).
    pub hard_state: HardState,
    /// Every entry persisted after the snapshot, in order (later entries at an index
    /// replace earlier ones).
    pub entries: Vec<Entry>,
}

impl Durable {
    /// What a [`ReplicaIo::Persist`] makes durable: the snapshot replaces the log, the
    /// entries replace any at their indexes and after, the hard state replaces the last.
    pub fn add(
        &mut self,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
    ) {
        if let Some(snap) = snapshot {
            self.snapshot = Some(snap);
            self.entries.clear();
        }
        if let Some(first) = entries.first() {
            let from = first.index;
            // The entries are in index order (each batch follows what it keeps): cut at
            // the first at `from` or later without reading the whole log.
            let keep = self.entries.partition_point(|e| e.index < from);
            self.entries.truncate(keep);
            self.entries.extend(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
    }
}

/// What the replica asks for, to be performed in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaIo {
    /// Make these durable (the snapshot first, replacing the whole log; then the entries,
    /// replacing any at the same indexes and after; then the hard state), then call
    /// [`Replica::persisted`] with `number`.
    Persist {
        /// Which batch, for [`Replica::persisted`].
        number: u64,
        /// A snapshot received from the leader (announced by [`ReplicaIo::Restore`] first).
        snapshot: Option<Snapshot>,
        /// Entries to append.
        entries: Vec<Entry>,
        /// The new hard state, when it changed.
        hard_state: Option<HardState>,
    },
    /// Send a message to another member.
    Send {
        /// Its id.
        to: MemberId,
        /// The message.
        msg: Message,
    },
    /// Apply a committed command to the state machine (every member, in log order).
    Apply {
        /// Its index in the log.
        index: u64,
        /// The term of the leader that proposed it (with `index`, what
        /// [`Replica::propose`] returned to that leader).
        term: u64,
        /// The command.
        cmd: Command,
    },
    /// Every entry up to `index` is applied (those that carry no command included: a new
    /// leader's empty entry). Follows the [`ReplicaIo::Apply`]s of the batch.
    AppliedTo {
        /// The last entry applied.
        index: u64,
    },
    /// The state machine is replaced by a snapshot the leader sent (this member was too far
    /// behind for entries): `data` is the state at `index`. Applies that follow continue
    /// from there.
    Restore {
        /// The last entry the snapshot covers.
        index: u64,
        /// The state machine's bytes.
        data: Vec<u8>,
    },
    /// Leadership was confirmed by a majority after [`Replica::read`] was called with `ctx`
    /// (this member was leader in a term nobody had left when each of them answered); reads
    /// may be answered once everything up to `index` is applied.
    ReadReady {
        /// What was passed to [`Replica::read`].
        ctx: u64,
        /// The commit index when the read was asked.
        index: u64,
    },
    /// A configuration change was applied (every member, in log order): `conf` is the
    /// configuration in force from here; `context` is what the proposer attached (the node's
    /// record of addresses). `term` and `index` are the entry's, as
    /// [`Replica::propose_conf_change`] returned them.
    Config {
        /// Its index in the log.
        index: u64,
        /// The term it was proposed in.
        term: u64,
        /// The configuration now (a joint one has `voters_outgoing`).
        conf: ConfState,
        /// The proposer's context bytes.
        context: Vec<u8>,
    },
    /// The leader this member knows of changed (`None`: no leader known). This member's own
    /// leadership is announced only once it has applied the first entry of its term, so
    /// that its state machine holds every committed command first; it takes proposals and
    /// reads from its election on ([`Replica::is_leader`]).
    Leader {
        /// The leader.
        leader: Option<MemberId>,
        /// The current term.
        term: u64,
    },
}

/// Why a proposal was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotLeader {
    /// Another member leads (the client should go there).
    Elsewhere(MemberId),
    /// No leader is known now (an election is under way).
    Unknown,
}

/// One member's replication machine.
pub struct Replica {
    raw: RawNode<LogStore>,
    cfg: ReplicaConfig,
    rng: fastrand::Rng,
    /// When the next raft tick is due.
    next_tick: Instant,
    /// The stretch of this member's ticks for the current election timeout.
    stretch: f64,
    /// Last `election_elapsed` seen (a reset means a new timeout: draw a new stretch).
    elapsed_seen: usize,
    /// Batches handed over in order and not yet durable: their number, the messages that may
    /// leave only then, and whether there was anything to persist (an empty batch is done
    /// once every one before it is).
    held: VecDeque<(u64, Vec<Message>, bool)>,
    /// Snapshots being persisted: (batch, index), applied once the batch is durable.
    restoring: VecDeque<(u64, u64)>,
    /// This member leads in term `.0`; it says so once entry `.1` is applied.
    announce: Option<(u64, u64)>,
    /// The hard state last handed over for persistence.
    written_hs: HardState,
    leader: Option<MemberId>,
    io: VecDeque<ReplicaIo>,
}

impl Replica {
    /// A member starting at `now` from what it had made durable (`Durable::default()` for a
    /// new member). The group's voters are `cfg.voters` (configuration changes come later).
    /// A group of one elects itself at once.
    pub fn new(cfg: ReplicaConfig, durable: Durable, now: Instant) -> Result<Replica, String> {
        let applied = durable
            .snapshot
            .as_ref()
            .and_then(|s| s.metadata.as_ref())
            .map_or(0, |m| m.index);
        let written_hs = durable.hard_state.clone();
        let store = LogStore::new(
            ConfState::from((cfg.voters.clone(), vec![])),
            durable.snapshot,
            &durable.entries,
            durable.hard_state,
        )?;
        let rc = Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            min_election_tick: cfg.election_ticks,
            max_election_tick: cfg.election_ticks + 1,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            applied,
            ..Default::default()
        };
        rc.validate()
            .map_err(|e| format!("raft configuration: {e}"))?;
        let raw = RawNode::with_default_logger(&rc, store).map_err(|e| format!("raft: {e}"))?;
        let mut rng =
            fastrand::Rng::with_seed(cfg.seed ^ cfg.id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let stretch = 1.0 + rng.f64();
        let alone = cfg.voters == [cfg.id];
        let mut r = Replica {
            raw,
            next_tick: now,
            stretch,
            elapsed_seen: 0,
            held: VecDeque::new(),
            restoring: VecDeque::new(),
            announce: None,
            written_hs,
            leader: None,
            io: VecDeque::new(),
            rng,
            cfg,
        };
        r.next_tick = now + r.tick_interval();
        if alone {
            // Nobody else could lead: no election timeout to wait for.
            let _ = r.raw.campaign();
        }
        r.drain();
        Ok(r)
    }

    /// This member's id.
    pub fn id(&self) -> MemberId {
        self.cfg.id
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<MemberId> {
        self.leader
    }

    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Proposes a command (leader only). It is applied, here and on every member, once a
    /// majority has it durably; returns the (term, index) its [`ReplicaIo::Apply`] will carry
    /// (another command may take that index if this leader is deposed first).
    pub fn propose(&mut self, cmd: &Command) -> Result<(u64, u64), NotLeader> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let data = bincode::serialize(cmd).expect("commands serialize");
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose(vec![], data)
            .map_err(|_| NotLeader::Unknown)?;
        let index = self.raw.raft.raft_log.last_index();
        if index == before {
            return Err(NotLeader::Unknown); // dropped (a leadership transfer under way)
        }
        let term = self.raw.raft.term;
        self.drain();
        Ok((term, index))
    }

    /// Proposes a change of the group's configuration (leader only): `changes` in one step
    /// (one change: a simple change; several: joint consensus, left automatically once
    /// applied; none: leave a joint configuration). Refused while another change is not yet
    /// applied. Returns the (term, index) its [`ReplicaIo::Config`] will carry.
    pub fn propose_conf_change(
        &mut self,
        changes: &[(ConfChangeType, MemberId)],
        context: Vec<u8>,
    ) -> Result<(u64, u64), NotLeader> {
        if !self.is_leader() || self.raw.raft.has_pending_conf() {
            return Err(self.not_leader());
        }
        let mut cc = ConfChangeV2::default();
        cc.set_transition(ConfChangeTransition::Auto);
        cc.changes = changes
            .iter()
            .map(|&(t, id)| {
                let mut c = ConfChangeSingle::default();
                c.set_change_type(t);
                c.node_id = id;
                c
            })
            .collect();
        cc.context = context.clone();
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose_conf_change(context, cc)
            .map_err(|_| NotLeader::Unknown)?;
        let index = self.raw.raft.raft_log.last_index();
        if index == before {
            return Err(NotLeader::Unknown);
        }
        let term = self.raw.raft.term;
        self.drain();
        Ok((term, index))
    }

    /// Whether the snapshot a lagging member would be sent predates the configuration in
    /// force (a member was added since): the caller should snapshot its state machine and
    /// [`Replica::compact`] soon, or that member cannot be sent one.
    pub fn wants_snapshot(&self) -> bool {
        let store = self.raw.store();
        let Some(snap) = store.snapshot_conf() else {
            return false; // no snapshot at all: a group of one, nobody to send one to
        };
        let named = |id: &u64| snap.voters.contains(id) || snap.learners.contains(id);
        let cs = store.conf_state();
        !cs.voters.iter().chain(&cs.learners).all(named)
    }

    /// The index this member's last snapshot ends at (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.raw.store().snapshot_index()
    }

    /// Whether a configuration change is proposed and not yet applied here.
    pub fn changing(&self) -> bool {
        self.raw.raft.has_pending_conf()
    }

    /// On the leader: how far member `id`'s log matches this one's, and whether it was heard
    /// from recently.
    pub fn progress(&self, id: MemberId) -> Option<(u64, bool)> {
        self.raw
            .raft
            .prs()
            .get(id)
            .map(|p| (p.matched, p.recent_active))
    }

    /// The commit index this member knows.
    pub fn committed(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Hands leadership to member `id` (leader only; it campaigns at once once caught up).
    pub fn transfer_leader(&mut self, id: MemberId) {
        self.raw.transfer_leader(id);
        self.drain();
    }

    /// Asks a majority to confirm this member's leadership; [`ReplicaIo::ReadReady`] with
    /// `ctx` follows if they do. Nothing follows if leadership is lost first.
    pub fn read(&mut self, ctx: u64) -> Result<(), NotLeader> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        self.raw.read_index(ctx.to_le_bytes().to_vec());
        self.drain();
        Ok(())
    }

    /// Why this member takes no proposals.
    pub fn not_leader(&self) -> NotLeader {
        match self.leader {
            Some(l) if l != self.cfg.id => NotLeader::Elsewhere(l),
            _ => NotLeader::Unknown,
        }
    }

    /// The members and their roles as this member sees them: `(id, role)` with role
    /// `leader`, `follower`, `learner`, or (on the leader) `unreachable` for a member whose
    /// progress is not recently active.
    pub fn roles(&self) -> Vec<(MemberId, &'static str)> {
        let cs = self.raw.store().conf_state();
        let leading = self.is_leader();
        let mut out = Vec::new();
        for (ids, voter) in [(&cs.voters, true), (&cs.learners, false)] {
            for &id in ids {
                let active = !leading
                    || id == self.cfg.id
                    || self.raw.raft.prs().get(id).is_some_and(|p| p.recent_active);
                let role = if Some(id) == self.leader {
                    "leader"
                } else if !active {
                    "unreachable"
                } else if voter {
                    "follower"
                } else {
                    "learner"
                };
                out.push((id, role));
            }
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }

    /// The last entry raft-rs counts as applied (a snapshot counts once it is durable).
    pub fn applied(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    /// The index of the last entry in this member's log.
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// The state machine at `index` (applied here) is `data`: entries up to it are dropped
    /// from memory, and lagging members are sent this snapshot. Call only once `data` is
    /// durable.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) {
        self.raw.mut_store().compact(index, data);
    }

    /// The entries after `index` this member holds (to rewrite its log after a compaction).
    pub fn entries_after(&self, index: u64) -> Vec<Entry> {
        self.raw.store().entries_after(index)
    }

    /// The hard state (term, vote, commit) as last handed over for persistence.
    pub fn hard_state(&self) -> HardState {
        self.raw.store().hard_state().clone()
    }

    /// The term of entry `index`, if this member has it.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        raft::Storage::term(self.raw.store(), index).ok()
    }

    /// The configuration in force (voters and learners).
    pub fn conf_state(&self) -> ConfState {
        self.raw.store().conf_state().clone()
    }

    /// Nothing listens any more where member `id` was (a connection to it was refused: its
    /// process is gone, its machine is up). When `id` is this member's leader and this member
    /// is the first (lowest id) of the other voters, it campaigns at once, as the target of
    /// a leadership transfer does (no pre-vote, and the others' leases of the dead leader do
    /// not make them ignore it), instead of waiting out an election timeout: a crashed
    /// leader is replaced in about one round trip. Only one member does so, so that two
    /// candidates do not split the vote; the others keep their timeouts, which take over if
    /// the first cannot win (its log is behind, or it is gone too). Safety does not depend on
    /// it: a vote still needs a majority and an up-to-date log. Returns whether it
    /// campaigned.
    pub fn leader_gone(&mut self, id: MemberId) -> bool {
        if self.leader != Some(id) || self.is_leader() || id == self.cfg.id {
            return false;
        }
        let conf = self.conf_state();
        let first = conf
            .voters
            .iter()
            .chain(&conf.voters_outgoing)
            .copied()
            .filter(|v| *v != id)
            .min();
        if first != Some(self.cfg.id) {
            return false;
        }
        // What a leader sends the member it hands leadership to; raft-rs then campaigns
        // with the transfer's context. A member that may not vote (a learner) ignores it.
        let mut m = Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgTimeoutNow);
        m.from = id;
        m.to = self.cfg.id;
        m.term = self.raw.raft.term;
        let stepped = self.raw.step(m).is_ok();
        self.drain();
        stepped && self.raw.raft.state == StateRole::Candidate
    }

    /// Another member could not be reached (its connection broke, a send failed, or it came
    /// back without its log): the leader stops assuming it has what it had, and probes it.
    pub fn unreachable(&mut self, id: MemberId) {
        self.raw.report_unreachable(id);
        self.drain();
    }

    /// A message from another member.
    pub fn step(&mut self, mut msg: Message) {
        if msg.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat {
            // A leader's heartbeat carries the commit index up to what it believes this
            // member holds; a member that lost its log (wiped disk) holds less, and raft-rs
            // would panic. Committing stops at what is here; the appends bring the rest.
            msg.commit = msg.commit.min(self.raw.raft.raft_log.last_index());
        }
        // Errors are messages for another group or from a removed member: dropped.
        let _ = self.raw.step(msg);
        self.drain();
    }

    /// Time passed: runs the raft ticks that are due.
    pub fn tick(&mut self, now: Instant) {
        while now >= self.next_tick {
            if !self.restoring.is_empty() {
                // A snapshot is being made durable: raft-rs cannot campaign before it is
                // applied (its log below the snapshot is gone). The timer waits for it.
                self.next_tick += self.tick_interval();
                continue;
            }
            self.raw.tick();
            let elapsed = self.raw.raft.election_elapsed;
            if elapsed < self.elapsed_seen || elapsed == 0 {
                // The election timer was reset (heard a leader, or campaigned): a new timeout.
                self.stretch = 1.0 + self.rng.f64();
            }
            self.elapsed_seen = elapsed;
            self.next_tick += self.tick_interval();
        }
        self.drain();
    }

    /// Takes up ticking again at `now` after a time without (the node held its ticks while
    /// this member could not take part in elections): the ticks missed are not run.
    pub fn resume(&mut self, now: Instant) {
        self.next_tick = now + self.tick_interval();
    }

    /// The batch `number` (and every one before it) is durable.
    pub fn persisted(&mut self, number: u64) {
        // The batches up to `number`, and the empty ones right after them, are done.
        let mut upto = None;
        while let Some(&(n, _, must)) = self.held.front() {
            if n > number && must {
                break;
            }
            let (n, msgs, _) = self.held.pop_front().expect("checked");
            self.send_all(msgs);
            upto = Some(n);
        }
        let Some(upto) = upto else {
            return;
        };
        self.raw.on_persist_ready(upto);
        while self.restoring.front().is_some_and(|(n, _)| *n <= upto) {
            let (_, index) = self.restoring.pop_front().expect("checked");
            self.raw.advance_apply_to(index);
        }
        self.drain();
    }

    /// When [`Replica::tick`] should be called next.
    pub fn next_wakeup(&self) -> Instant {
        self.next_tick
    }

    /// The next thing to perform.
    pub fn poll_io(&mut self) -> Option<ReplicaIo> {
        self.io.pop_front()
    }

    fn tick_interval(&self) -> Duration {
        if self.is_leader() {
            self.cfg.tick
        } else {
            self.cfg.tick.mul_f64(self.stretch)
        }
    }

    fn send_all(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            let snapshot = msg.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot;
            let to = msg.to;
            self.io.push_back(ReplicaIo::Send { to, msg });
            if snapshot {
                // Counted as delivered at once: the member is probed from there, and if the
                // snapshot was lost, its refusals of what follows bring another. (Without a
                // report raft-rs waits for the member forever once its answer is lost.)
                self.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
            }
        }
    }

    /// Handles every `Ready` raft-rs has.
    fn drain(&mut self) {
        while self.raw.has_ready() {
            let mut rd = self.raw.ready();
            if let Some(ss) = rd.ss() {
                let leader = (ss.leader_id != raft::INVALID_ID).then_some(ss.leader_id);
                if leader != self.leader {
                    self.leader = leader;
                    let term = self.raw.raft.term;
                    if leader == Some(self.cfg.id) {
                        // Announced once the first entry of its term (appended on election)
                        // is applied: its state machine then holds everything committed.
                        self.announce = Some((term, self.raw.raft.raft_log.last_index()));
                    } else {
                        self.announce = None;
                        self.io.push_back(ReplicaIo::Leader { leader, term });
                    }
                }
            }
            // A leader's messages may leave before its own copy is durable (Raft allows it:
            // it counts itself only once persisted).
            let msgs = rd.take_messages();
            self.send_all(msgs);
            let snapshot = rd.snapshot().clone();
            let snapshot = (snapshot.metadata.as_ref().is_some_and(|m| m.index > 0)
                || !snapshot.data.is_empty())
            .then_some(snapshot);
            if let Some(snap) = &snapshot {
                let index = snap.metadata.as_ref().map_or(0, |m| m.index);
                self.raw.mut_store().apply_snapshot(snap.clone());
                self.io.push_back(ReplicaIo::Restore {
                    index,
                    data: snap.data.clone(),
                });
                self.restoring.push_back((rd.number(), index));
            }
            for rs in rd.take_read_states() {
                let mut b = [0u8; 8];
                if rs.request_ctx.len() == 8 {
                    b.copy_from_slice(&rs.request_ctx);
                    self.io.push_back(ReplicaIo::ReadReady {
                        ctx: u64::from_le_bytes(b),
                        index: rs.index,
                    });
                }
            }
            let committed = rd.take_committed_entries();
            self.apply(committed);
            let entries = rd.take_entries();
            let hard_state = rd.hs().cloned();
            {
                let store = self.raw.mut_store();
                store.append(&entries);
                if let Some(hs) = &hard_state {
                    store.set_hard_state(hs.clone());
                }
            }
            let number = rd.number();
            let persisted_msgs = rd.take_persisted_messages();
            // A term or a vote must be durable before anything depends on it; a commit index
            // need not be (Raft learns it again): a batch that only moves the commit index
            // costs no fsync of its own, it is written with the next batch that has entries.
            let vote_or_term = hard_state.as_ref().is_some_and(|hs| {
                hs.term != self.written_hs.term || hs.vote != self.written_hs.vote
            });
            let must = !entries.is_empty() || vote_or_term || snapshot.is_some();
            if must {
                let current = self.raw.store().hard_state().clone();
                let hard_state = (current != self.written_hs).then(|| {
                    self.written_hs = current.clone();
                    current
                });
                self.io.push_back(ReplicaIo::Persist {
                    number,
                    snapshot,
                    entries,
                    hard_state,
                });
            }
            // Always the asynchronous advance: raft-rs's synchronous one would count every
            // earlier batch durable too, before its fsync (a leader of one then applied an
            // entry a crash lost: simulation seed 5565).
            self.raw.advance_append_async(rd);
            if !must && self.held.is_empty() {
                // Nothing to make durable, nothing before it outstanding: done now.
                self.send_all(persisted_msgs);
                self.raw.on_persist_ready(number);
            } else {
                self.held.push_back((number, persisted_msgs, must));
            }
        }
    }

    /// Applies a committed configuration change: raft-rs switches to it, the store keeps it
    /// (for snapshots), the node hears of it.
    fn apply_conf_change(&mut self, e: &Entry) {
        // Written by this program's proposals (or raft-rs's own, empty, to leave a joint
        // configuration): one that does not decode is corruption.
        let cc: ConfChangeV2 = prost::Message::decode(&e.data[..]).unwrap_or_else(|err| {
            panic!("configuration change {} does not decode: {err}", e.index)
        });
        // raft-rs refuses a change that is invalid against the configuration in force; it
        // does so on every member alike, so the entry changes nothing anywhere.
        let Ok(conf) = self.raw.apply_conf_change(&cc) else {
            return;
        };
        self.raw.mut_store().set_conf_state(conf.clone());
        // raft-rs leaves a leader that the change removes leading (an untested branch of
        // its `post_conf_change`), and its next commit check panics looking up the leader's
        // own progress. A member that leads when its removal is asked hands leadership over
        // first (`members::check_request`); one elected after the change was proposed (it
        // had the entry, not yet applied) steps down here, and the new voters elect one of
        // theirs. The simulation found it (elections, seed 6211 of 20,000).
        let me = self.cfg.id;
        if self.is_leader() && !conf.voters.contains(&me) && !conf.voters_outgoing.contains(&me) {
            let term = self.raw.raft.term;
            self.raw.raft.become_follower(term, raft::INVALID_ID);
        }
        self.io.push_back(ReplicaIo::Config {
            index: e.index,
            term: e.term,
            conf,
            context: cc.context.to_vec(),
        });
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&e);
                    continue;
                }
                EntryType::EntryConfChange => continue, // never proposed here
                EntryType::EntryNormal if e.data.is_empty() => continue, // a new leader's
                EntryType::EntryNormal => {}
            }
            match bincode::deserialize::<Command>(&e.data) {
                Ok(cmd) => self.io.push_back(ReplicaIo::Apply {
                    index: e.index,
                    term: e.term,
                    cmd,
                }),
                // Written by this program's proposals only: a command that does not decode
                // is corruption, and applying around it would fork the state machines.
                Err(err) => panic!("log entry {} does not decode: {err}", e.index),
            }
        }
        self.raw.advance_apply_to(last);
        self.io.push_back(ReplicaIo::AppliedTo { index: last });
        if let Some((term, index)) = self.announce {
            if last >= index && self.is_leader() && self.raw.raft.term == term {
                self.announce = None;
                let leader = Some(self.cfg.id);
                self.io.push_back(ReplicaIo::Leader { leader, term });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Request;
    use std::collections::BTreeMap;

    /// A group of members on a manual clock, with a network that delivers every message after
    /// `delay` unless a member is down or cut off, and durable state made at each persist.
    struct Group {
        now: Instant,
        members: BTreeMap<MemberId, Option<Replica>>,
        durable: BTreeMap<MemberId, Durable>,
        applied: BTreeMap<MemberId, Vec<(u64, Command)>>,
        wire: Vec<(Instant, Message)>,
        cut: Vec<MemberId>,
        seed: u64,
        /// Persists not yet durable: made durable at the next step (a group commit), lost in
        /// a crash.
        pending: Vec<PendingPersist>,
        /// Share of messages lost on the wire.
        loss: f64,
        rng: fastrand::Rng,
        step: u64,
        /// Reads confirmed: (member, ctx).
        reads: Vec<(MemberId, u64)>,
        /// Snapshots received.
        restores: u64,
        /// Configuration changes applied: (member, configuration).
        configs: Vec<(MemberId, ConfState)>,
    }

    const DELAY: Duration = Duration::from_millis(1);

    /// A member's persist not yet durable: (member, batch, snapshot, entries, hard state).
    type PendingPersist = (
        MemberId,
        u64,
        Option<Snapshot>,
        Vec<Entry>,
        Option<HardState>,
    );

    impl Group {
        fn new(n: u64, seed: u64) -> Group {
            let now = Instant::now();
            let ids: Vec<u64> = (1..=n).collect();
            let mut g = Group {
                now,
                members: BTreeMap::new(),
                durable: BTreeMap::new(),
                applied: BTreeMap::new(),
                wire: vec![],
                cut: vec![],
                seed,
                pending: vec![],
                loss: 0.0,
                rng: fastrand::Rng::with_seed(seed),
                step: 0,
                reads: vec![],
                restores: 0,
                configs: vec![],
            };
            for id in &ids {
                g.durable.insert(*id, Durable::default());
            }
            for id in &ids {
                g.start(*id);
            }
            g
        }

        fn start(&mut self, id: MemberId) {
            let ids: Vec<u64> = self.durable.keys().copied().collect();
            let cfg = ReplicaConfig::new(id, ids, self.seed);
            let d = self.durable[&id].clone();
            // The state machine is the snapshot's, then the committed entries replayed.
            let base = d
                .snapshot
                .as_ref()
                .map_or(vec![], |s| bincode::deserialize(&s.data).unwrap());
            self.applied.insert(id, base);
            let r = Replica::new(cfg, d, self.now).unwrap();
            self.members.insert(id, Some(r));
            self.perform(id);
        }

        /// Member `id` snapshots what it applied (made durable at once) and compacts.
        fn compact(&mut self, id: MemberId) {
            let applied = self.applied[&id].clone();
            let Some(&(index, _)) = applied.last() else {
                return;
            };
            let data = bincode::serialize(&applied).unwrap();
            let r = self.members.get_mut(&id).unwrap().as_mut().unwrap();
            let term = r.term_of(index).unwrap();
            r.compact(index, data.clone());
            let rest = r.entries_after(index);
            let d = self.durable.get_mut(&id).unwrap();
            d.snapshot = Some(Snapshot {
                data,
                metadata: Some(raft::eraftpb::SnapshotMetadata {
                    conf_state: Some(r.conf_state()),
                    index,
                    term,
                }),
            });
            d.entries = rest;
        }

        fn crash(&mut self, id: MemberId) {
            self.members.insert(id, None);
            self.pending.retain(|p| p.0 != id);
        }

        /// The group commit: what was handed over becomes durable, and each member is told.
        fn sync(&mut self) {
            for (id, number, snapshot, entries, hard_state) in std::mem::take(&mut self.pending) {
                let d = self.durable.get_mut(&id).unwrap();
                d.add(snapshot, entries, hard_state);
                if let Some(Some(r)) = self.members.get_mut(&id) {
                    r.persisted(number);
                }
                self.perform(id);
            }
        }

        fn perform(&mut self, id: MemberId) {
            loop {
                let Some(Some(r)) = self.members.get_mut(&id) else {
                    return;
                };
                let Some(io) = r.poll_io() else {
                    return;
                };
                match io {
                    ReplicaIo::Persist {
                        number,
                        snapshot,
                        entries,
                        hard_state,
                    } => self
                        .pending
                        .push((id, number, snapshot, entries, hard_state)),
                    ReplicaIo::Send { msg, .. } => {
                        let lost = self.loss > 0.0 && self.rng.f64() < self.loss;
                        if !lost && !self.cut.contains(&id) && !self.cut.contains(&msg.to) {
                            self.wire.push((self.now + DELAY, msg));
                        }
                    }
                    ReplicaIo::Apply { index, cmd, .. } => {
                        self.applied.get_mut(&id).unwrap().push((index, cmd))
                    }
                    ReplicaIo::Restore { data, .. } => {
                        self.restores += 1;
                        let state = bincode::deserialize(&data).unwrap();
                        self.applied.insert(id, state);
                    }
                    ReplicaIo::ReadReady { ctx, .. } => self.reads.push((id, ctx)),
                    ReplicaIo::AppliedTo { .. } => {}
                    ReplicaIo::Leader { .. } => {}
                    ReplicaIo::Config { conf, .. } => self.configs.push((id, conf)),
                }
            }
        }

        /// Runs the group for `d` in 1 ms steps.
        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += Duration::from_millis(1);
                let now = self.now;
                let (due, later): (Vec<_>, Vec<_>) =
                    self.wire.drain(..).partition(|(t, _)| *t <= now);
                self.wire = later;
                for (_, m) in due {
                    if self.cut.contains(&m.to) || self.cut.contains(&m.from) {
                        continue;
                    }
                    if let Some(Some(r)) = self.members.get_mut(&m.to) {
                        r.step(m.clone());
                    }
                    self.perform(m.to);
                }
                let ids: Vec<u64> = self.members.keys().copied().collect();
                for id in ids {
                    if let Some(Some(r)) = self.members.get_mut(&id) {
                        r.tick(now);
                    }
                    self.perform(id);
                }
                // A group commit every 3 ms: a crash between two loses what waits.
                self.step += 1;
                if self.step % 3 == 0 {
                    self.sync();
                }
            }
        }

        /// Members crashed and not restarted.
        fn down(&self) -> Vec<MemberId> {
            self.members
                .iter()
                .filter(|(_, r)| r.is_none())
                .map(|(id, _)| *id)
                .collect()
        }

        fn leaders(&self) -> Vec<MemberId> {
            self.members
                .iter()
                .filter(|(_, r)| r.as_ref().is_some_and(|r| r.is_leader()))
                .map(|(id, _)| *id)
                .collect()
        }

        /// Member `id` starts with nothing and no configuration: it joins once added.
        fn join(&mut self, id: MemberId) {
            self.durable.insert(id, Durable::default());
            self.applied.insert(id, vec![]);
            let cfg = ReplicaConfig::new(id, vec![], self.seed);
            let r = Replica::new(cfg, Durable::default(), self.now).unwrap();
            self.members.insert(id, Some(r));
            self.perform(id);
        }

        fn change(
            &mut self,
            changes: &[(ConfChangeType, MemberId)],
        ) -> Result<(u64, u64), NotLeader> {
            let l = *self.leaders().first().ok_or(NotLeader::Unknown)?;
            let r = self.members.get_mut(&l).unwrap().as_mut().unwrap();
            let res = r.propose_conf_change(changes, vec![]);
            self.perform(l);
            res
        }

        fn propose(&mut self, cmd: &Command) -> Result<(u64, u64), NotLeader> {
            let l = *self.leaders().first().ok_or(NotLeader::Unknown)?;
            let r = self.members.get_mut(&l).unwrap().as_mut().unwrap();
            let res = r.propose(cmd);
            self.perform(l);
            res
        }
    }

    impl Group {
        /// Three members settled with a leader, and `n` commands committed.
        fn with_commands(seed: u64, n: u64) -> Group {
            let mut g = Group::new(3, seed);
            g.run(Duration::from_secs(2));
            for i in 0..n {
                g.propose(&cmd(i)).unwrap();
            }
            g.run(Duration::from_millis(50));
            g
        }
    }

    fn cmd(i: u64) -> Command {
        Command::Request {
            session: 1,
            req: i,
            body: Request::Close,
        }
    }

    /// Every member's applied commands are a prefix of the longest one (one history).
    fn one_history(g: &Group) -> usize {
        let longest = g.applied.values().max_by_key(|v| v.len()).unwrap().clone();
        for (id, v) in &g.applied {
            assert_eq!(
                v[..],
                longest[..v.len()],
                "member {id} applied another history"
            );
        }
        longest.len()
    }

    #[test]
    fn a_group_elects_one_leader_and_applies_one_history() {
        let mut g = Group::new(3, 1);
        g.run(Duration::from_secs(2));
        assert_eq!(g.leaders().len(), 1, "one leader after 2 s");
        for i in 0..100 {
            g.propose(&cmd(i)).unwrap();
            g.run(Duration::from_millis(3));
        }
        g.run(Duration::from_millis(200));
        assert_eq!(one_history(&g), 100);
        for v in g.applied.values() {
            assert_eq!(v.len(), 100, "every member applied everything");
        }
    }

    #[test]
    fn a_leader_crash_elects_another_and_committed_commands_survive() {
        for seed in 0..20 {
            let mut g = Group::with_commands(seed, 20);
            let old = g.leaders()[0];
            let committed = g.applied[&old].clone();
            assert_eq!(committed.len(), 20);
            g.crash(old);
            // A new leader within two election timeouts (and the pre-vote) of the last
            // heartbeat: 2 × 400 ms, plus the check-quorum of the followers.
            g.run(Duration::from_millis(1000));
            let now = g.leaders();
            assert_eq!(now.len(), 1, "seed {seed}: one new leader");
            assert_ne!(now[0], old);
            for i in 20..40 {
                g.propose(&cmd(i)).unwrap();
            }
            g.run(Duration::from_millis(50));
            // The old leader restarts from its durable state and catches up.
            g.start(old);
            g.run(Duration::from_millis(500));
            assert_eq!(one_history(&g), 40, "seed {seed}");
            assert_eq!(
                g.applied[&old].len(),
                40,
                "seed {seed}: the restarted member caught up"
            );
            assert_eq!(g.applied[&old][..20], committed[..]);
        }
    }

    #[test]
    fn a_crashed_leader_whose_port_refuses_is_replaced_within_milliseconds() {
        for seed in 0..20 {
            let mut g = Group::with_commands(seed, 20);
            let old = g.leaders()[0];
            g.crash(old);
            let mut others: Vec<MemberId> =
                g.durable.keys().copied().filter(|m| *m != old).collect();
            others.sort_unstable();
            // Both survivors are told; only the first (lowest id) campaigns.
            let mut campaigned = vec![];
            for &m in &others {
                let r = g.members.get_mut(&m).unwrap().as_mut().unwrap();
                assert_eq!(r.leader(), Some(old));
                if r.leader_gone(old) {
                    campaigned.push(m);
                }
                g.perform(m);
            }
            assert_eq!(campaigned, vec![others[0]], "seed {seed}");
            // Leader within a few message delays and group commits, far below the election
            // timeout (200 ms) that would otherwise come first.
            g.run(Duration::from_millis(20));
            assert_eq!(g.leaders(), vec![others[0]], "seed {seed}");
            for i in 20..25 {
                g.propose(&cmd(i)).unwrap();
            }
            g.run(Duration::from_millis(20));
            assert_eq!(one_history(&g), 25, "seed {seed}");
            // Told about a member that is not its leader, or told again: nothing.
            let r = g.members.get_mut(&others[1]).unwrap().as_mut().unwrap();
            assert!(!r.leader_gone(old));
            assert!(!r.leader_gone(others[1]));
        }
    }

    #[test]
    fn an_isolated_leader_is_replaced_and_its_uncommitted_proposals_are_dropped() {
        let mut g = Group::new(3, 7);
        g.run(Duration::from_secs(2));
        let old = g.leaders()[0];
        g.cut.push(old);
        // Proposed to the cut-off leader: never committed (no majority).
        let r = g.members.get_mut(&old).unwrap().as_mut().unwrap();
        r.propose(&cmd(999)).unwrap();
        g.perform(old);
        g.run(Duration::from_millis(1500));
        let leaders = g.leaders();
        assert!(
            !leaders.contains(&old),
            "check-quorum: the isolated leader stepped down ({leaders:?})"
        );
        assert_eq!(leaders.len(), 1);
        g.propose(&cmd(1)).unwrap();
        g.cut.clear();
        g.run(Duration::from_millis(1000));
        assert_eq!(one_history(&g), 1);
        assert!(g
            .applied
            .values()
            .all(|v| v.iter().all(|(_, c)| *c != cmd(999))));
    }

    #[test]
    fn a_member_behind_the_compacted_log_gets_a_snapshot() {
        let mut g = Group::new(3, 11);
        g.run(Duration::from_secs(2));
        let leader = g.leaders()[0];
        let behind = (1..=3).find(|i| *i != leader).unwrap();
        g.crash(behind);
        for i in 0..30 {
            g.propose(&cmd(i)).unwrap();
        }
        g.run(Duration::from_millis(100));
        for id in 1..=3 {
            if id != behind {
                g.compact(id);
            }
        }
        g.start(behind);
        g.run(Duration::from_millis(500));
        for i in 30..35 {
            g.propose(&cmd(i)).unwrap();
        }
        g.run(Duration::from_millis(100));
        assert_eq!(one_history(&g), 35);
        assert_eq!(g.applied[&behind].len(), 35, "caught up");
        assert_eq!(g.restores, 1, "from the snapshot");
        // It can lead from there: the leader goes, it or the third is elected.
        g.crash(leader);
        g.run(Duration::from_millis(1500));
        assert_eq!(g.leaders().len(), 1, "a new leader");
        g.start(leader);
        g.run(Duration::from_millis(500));
        // And it restarts from its own durable snapshot.
        g.crash(behind);
        g.start(behind);
        g.run(Duration::from_millis(500));
        assert_eq!(g.applied[&behind].len(), 35);
    }

    #[test]
    fn a_learner_joins_from_a_snapshot_and_replaces_a_voter_in_one_change() {
        let mut g = Group::new(3, 13);
        g.run(Duration::from_secs(2));
        for i in 0..10 {
            g.propose(&cmd(i)).unwrap();
        }
        g.run(Duration::from_millis(100));
        for id in 1..=3 {
            g.compact(id);
        }
        // Member 4 starts with nothing: it is added as a learner and gets the snapshot.
        g.join(4);
        g.change(&[(ConfChangeType::AddLearnerNode, 4)]).unwrap();
        assert!(
            g.change(&[(ConfChangeType::AddNode, 4)]).is_err(),
            "one change at a time"
        );
        g.run(Duration::from_millis(50));
        // The snapshot predates member 4: none can be sent until the next compaction.
        let l = g.leaders()[0];
        assert_eq!(g.restores, 0);
        assert!(g.members[&l].as_ref().unwrap().wants_snapshot());
        for i in 10..12 {
            g.propose(&cmd(i)).unwrap();
        }
        g.run(Duration::from_millis(50));
        for id in 1..=3 {
            g.compact(id);
        }
        assert!(!g.members[&l].as_ref().unwrap().wants_snapshot());
        g.run(Duration::from_millis(300));
        assert_eq!(g.restores, 1, "the learner got the snapshot");
        let learner = |g: &Group, id| {
            g.members[&id]
                .as_ref()
                .unwrap()
                .conf_state()
                .learners
                .contains(&4)
        };
        assert!(
            (1..=4).all(|id| learner(&g, id)),
            "every member has 4 as learner"
        );
        for i in 12..15 {
            g.propose(&cmd(i)).unwrap();
        }
        g.run(Duration::from_millis(100));
        assert_eq!(g.applied[&4].len(), 15, "the learner applies the log");
        // Promote 4 and remove a follower in one change (joint consensus, left by itself).
        let leader = g.leaders()[0];
        let old = (1..=3).find(|i| *i != leader).unwrap();
        g.change(&[
            (ConfChangeType::AddNode, 4),
            (ConfChangeType::RemoveNode, old),
        ])
        .unwrap();
        g.run(Duration::from_millis(300));
        let cs = g.members[&leader].as_ref().unwrap().conf_state();
        let mut want: Vec<u64> = (1..=4).filter(|i| *i != old).collect();
        want.sort();
        let mut voters = cs.voters.clone();
        voters.sort();
        assert_eq!(voters, want);
        assert!(
            cs.voters_outgoing.is_empty(),
            "the joint configuration was left"
        );
        assert!(g.configs.iter().any(|(_, c)| !c.voters_outgoing.is_empty()));
        // The removed member is gone; 4 counts toward the majority: with the third voter
        // down too, the leader and 4 commit.
        g.crash(old);
        let third = (1..=3).find(|i| *i != leader && *i != old).unwrap();
        g.crash(third);
        g.propose(&cmd(15)).unwrap();
        g.run(Duration::from_millis(100));
        assert_eq!(
            g.applied[&4].len(),
            16,
            "committed by the leader and member 4"
        );
        assert_eq!(one_history(&g), 16);
    }

    #[test]
    fn a_read_is_confirmed_only_by_a_majority() {
        let mut g = Group::new(3, 5);
        g.run(Duration::from_secs(2));
        let leader = g.leaders()[0];
        let read = |g: &mut Group, ctx: u64| {
            let r = g.members.get_mut(&leader).unwrap().as_mut().unwrap();
            r.read(ctx).unwrap();
            g.perform(leader);
        };
        read(&mut g, 7);
        g.run(Duration::from_millis(20));
        assert_eq!(g.reads, vec![(leader, 7)]);
        // Cut off from both followers, the leader's read never comes back (and it steps
        // down at its check-quorum).
        g.cut = (1..=3).filter(|i| *i != leader).collect();
        read(&mut g, 8);
        g.run(Duration::from_millis(1500));
        assert_eq!(g.reads, vec![(leader, 7)], "no majority, no confirmation");
        assert!(!g.leaders().contains(&leader));
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let run = |seed| {
            let mut g = Group::new(5, seed);
            g.run(Duration::from_secs(1));
            (g.leaders(), g.members[&1].as_ref().unwrap().term())
        };
        assert_eq!(run(3), run(3));
    }

    /// Crashes (losing what was not yet durable), restarts, partitions and lost messages on
    /// a seeded schedule: the members never apply two histories, and every command applied
    /// anywhere is applied everywhere once the faults stop.
    #[test]
    fn faults_never_fork_the_history() {
        let seeds: u64 = std::env::var("REPLICA_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        for seed in 0..seeds {
            let n = if seed % 2 == 0 { 3 } else { 5 };
            let mut g = Group::new(n, seed);
            g.loss = 0.05;
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut next = 0u64;
            for _ in 0..60 {
                match rng.u8(0..10) {
                    0 => {
                        let id = rng.u64(1..=n);
                        if (g.down().len() as u64) < (n - 1) / 2 {
                            g.crash(id);
                        }
                    }
                    1 => {
                        if let Some(id) = g.down().first() {
                            g.start(*id);
                        }
                    }
                    2 => {
                        let id = rng.u64(1..=n);
                        if !g.cut.contains(&id) {
                            g.cut.push(id);
                        }
                    }
                    3 => g.cut.clear(),
                    _ => {
                        for _ in 0..rng.u64(1..5) {
                            if g.propose(&cmd(next)).is_ok() {
                                next += 1;
                            }
                        }
                    }
                }
                g.run(Duration::from_millis(rng.u64(5..100)));
                one_history(&g);
            }
            // Faults stop: everyone up, connected, no loss.
            g.cut.clear();
            g.loss = 0.0;
            for id in g.down() {
                g.start(id);
            }
            g.run(Duration::from_secs(2));
            assert_eq!(g.leaders().len(), 1, "seed {seed}: one leader once healed");
            // A command proposed now commits, and takes everything before it along.
            g.propose(&cmd(u64::MAX)).unwrap();
            g.run(Duration::from_millis(500));
            let len = one_history(&g);
            for (id, v) in &g.applied {
                assert_eq!(v.len(), len, "seed {seed}: member {id} is behind");
            }
            assert_eq!(g.applied[&1].last().map(|x| &x.1), Some(&cmd(u64::MAX)));
        }
    }
}
