//! The raft log as raft-rs reads it: this member's entries after its last snapshot, the hard
//! state, the configuration, and the snapshot itself (its index, term and the state machine's
//! bytes, which a lagging member receives). In memory; what is on disk is the caller's
//! ([`super::ReplicaIo::Persist`]), and a restart rebuilds this from it.
//!
//! raft-rs's own `MemStorage` is not used: it builds snapshots from its commit index with no
//! state machine bytes, and forgets the term of the entry before its first one when it
//! compacts, both of which a member that sends snapshots needs.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

/// See the module documentation.
#[derive(Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    /// The last snapshot: everything up to and including its index is in `snapshot_data`.
    snapshot_meta: SnapshotMetadata,
    snapshot_data: Vec<u8>,
    /// Entries after the snapshot, contiguous.
    entries: Vec<Entry>,
}

impl LogStore {
    /// A store with configuration `conf_state`, starting from `snapshot` (when there is one),
    /// then `entries` (those at or before the snapshot are skipped) and `hard_state`.
    pub fn new(
        conf_state: ConfState,
        snapshot: Option<Snapshot>,
        entries: &[Entry],
        hard_state: HardState,
    ) -> Result<LogStore, String> {
        let mut s = LogStore {
            conf_state,
            ..LogStore::default()
        };
        if let Some(snap) = snapshot {
            s.apply_snapshot(snap);
        }
        let after: Vec<Entry> = entries
            .iter()
            .filter(|e| e.index > s.snapshot_meta.index)
            .cloned()
            .collect();
        if let Some(first) = after.first() {
            if first.index != s.snapshot_meta.index + 1 {
                return Err(format!(
                    "the log starts at entry {} but the snapshot ends at {}",
                    first.index, s.snapshot_meta.index
                ));
            }
        }
        s.append(&after);
        // The hard state on disk may be older than the snapshot (its commit index is written
        // lazily): everything in the snapshot is committed, in its term or later.
        let mut hs = hard_state;
        hs.commit = hs.commit.max(s.snapshot_meta.index);
        hs.term = hs.term.max(s.snapshot_meta.term);
        s.hard_state = hs;
        Ok(s)
    }

    /// Appends entries, replacing those at the same indexes and after.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        assert!(
            first.index > self.snapshot_meta.index,
            "entry {} is inside the snapshot (up to {})",
            first.index,
            self.snapshot_meta.index
        );
        let keep = (first.index - self.snapshot_meta.index - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "a gap before entry {}",
            first.index
        );
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
    }

    /// The configuration changed (a change was applied).
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// The hard state raft-rs asked to persist.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Replaces everything with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, mut snap: Snapshot) {
        let meta = snap.metadata.take().unwrap_or_default();
        if let Some(cs) = &meta.conf_state {
            self.conf_state = cs.clone();
        }
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.entries.clear();
        self.snapshot_meta = meta;
        self.snapshot_data = snap.data;
    }

    /// The state machine at `index` (applied here, so committed) is `data`: the entries up to
    /// it are dropped; the snapshot sent to lagging members is this one from now on.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) {
        if index <= self.snapshot_meta.index {
            return;
        }
        let term = self
            .term_of(index)
            .expect("compacted up to an entry in the log");
        let drop = (index - self.snapshot_meta.index) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot_meta = SnapshotMetadata {
            conf_state: Some(self.conf_state.clone()),
            index,
            term,
        };
        self.snapshot_data = data;
    }

    /// The entries after `index` (for rewriting the log file after a compaction).
    pub fn entries_after(&self, index: u64) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| e.index > index)
            .cloned()
            .collect()
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The index the last snapshot ends at (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_meta.index
    }

    /// The configuration the last snapshot holds.
    pub fn snapshot_conf(&self) -> Option<&ConfState> {
        self.snapshot_meta.conf_state.as_ref()
    }

    /// The configuration in force.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_meta.index, |e| e.index)
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.snapshot_meta.index {
            return Some(self.snapshot_meta.term);
        }
        if idx < self.snapshot_meta.index || idx > self.last() {
            return None;
        }
        Some(self.entries[(idx - self.snapshot_meta.index - 1) as usize].term)
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot_meta.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(high <= self.last() + 1, "entries up to {high} asked for");
        let base = self.snapshot_meta.index + 1;
        let slice = &self.entries[(low - base) as usize..(high - base) as usize];
        // At least one entry, then as many as fit in `max_size` bytes.
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut size = 0u64;
        let mut out = Vec::new();
        for e in slice {
            size += (e.data.len() + e.context.len() + 24) as u64;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_meta.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_meta.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // A snapshot from before `to` was added would not name it in its configuration, and
        // `to` would refuse it: none until the next compaction (which a member's addition
        // asks for, [`super::Replica::wants_snapshot`]).
        let names = |cs: &ConfState| {
            cs.voters.contains(&to)
                || cs.learners.contains(&to)
                || cs.voters_outgoing.contains(&to)
                || cs.learners_next.contains(&to)
        };
        let named = self.snapshot_meta.conf_state.as_ref().is_some_and(names);
        if self.snapshot_meta.index < request_index || !named {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(Snapshot {
            data: self.snapshot_data.clone(),
            metadata: Some(self.snapshot_meta.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8],
            ..Default::default()
        }
    }

    #[test]
    fn appends_replace_the_tail_and_compaction_keeps_the_boundary_term() {
        let cs = ConfState::from((vec![1, 2, 3], vec![]));
        let mut s = LogStore::new(cs, None, &[], HardState::default()).unwrap();
        s.append(&[e(1, 1), e(2, 1), e(3, 1)]);
        s.append(&[e(3, 2), e(4, 2)]);
        assert_eq!(s.term(3).unwrap(), 2);
        assert_eq!(s.last_index().unwrap(), 4);
        s.compact(2, b"state at 2".to_vec());
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 1, "the boundary's term is kept");
        assert!(matches!(
            s.entries(2, 3, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let got = s
            .entries(3, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.iter().map(|x| x.index).collect::<Vec<_>>(), vec![3, 4]);
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!(snap.data, b"state at 2");
        // A member the snapshot's configuration does not name would refuse it.
        assert!(matches!(
            s.snapshot(0, 9),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert_eq!(snap.metadata.as_ref().unwrap().index, 2);
        // A restart from that snapshot and the whole log skips the compacted entries.
        let all = [e(1, 1), e(2, 1), e(3, 2), e(4, 2)];
        let r =
            LogStore::new(ConfState::default(), Some(snap), &all, HardState::default()).unwrap();
        assert_eq!(r.first_index().unwrap(), 3);
        assert_eq!(r.last_index().unwrap(), 4);
        // A received snapshot replaces the log.
        let mut f =
            LogStore::new(ConfState::default(), None, &[e(1, 1)], HardState::default()).unwrap();
        f.apply_snapshot(s.snapshot(0, 3).unwrap());
        assert_eq!(f.last_index().unwrap(), 2);
        assert_eq!(f.hard_state().commit, 2);
    }
}
