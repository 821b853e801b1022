//! Durable storage in the data directory: the incarnation token, and the member's raft log
//! (entries, hard state) after its last snapshot of the state (SPEC 2.2, 3.6, 3.7).
//!
//! Files:
//! - `incarnation`: the service's incarnation token, 32 hex digits. A directory without it is
//!   a new incarnation: any other file there is stale and removed.
//! - `current`: the generation in force, a decimal number. A generation is a snapshot and
//!   the log that continues it; a new one (after a compaction, or a snapshot received from
//!   the leader) is written whole and fsynced, then `current` is replaced atomically
//!   (write `current.tmp`, fsync, rename, fsync the directory), then the old one is removed.
//!   A crash leaves either generation whole, never a snapshot with a log from another.
//! - `snapshot.N`: `[u32 len][u32 crc32][bincode SnapshotFile]`: the index and term of the
//!   last entry it covers, the configuration, and the state (bincode `State`).
//! - `log.N`: records `[u32 len][u32 crc32][bincode Record]`, appended: entries (a later entry
//!   at an index replaces the earlier one and everything after it) and hard states. A
//!   record whose length or checksum does not hold (a write torn by a crash) ends the log and
//!   is cut off: nothing in it was acknowledged.
//!
//! Group commit: [`Storage::persist`] buffers records, [`Storage::commit`] writes them and
//! calls `fdatasync` once, however many there are. With [`Durability::None`] nothing is
//! written: the state lives in memory only, and every start is a new incarnation.
//!
//! A directory written before replication (a `wal` file of commands) is refused with a
//! message that says so: its commands have no raft indexes or terms to join a group with.

use super::replica::Durable;
use super::state::State;
use crate::proto::Incarnation;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// How the server keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A change is acknowledged only after it is on disk (fdatasync). The default.
    #[default]
    Fsync,
    /// Nothing is written; a restart begins a new incarnation.
    None,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "none" => Ok(Durability::None),
            _ => Err(format!("durability must be 'fsync' or 'none', not {s:?}")),
        }
    }
}

/// Entries in the log after which a snapshot is taken and the log restarted.
pub const SNAPSHOT_EVERY: u64 = 50_000;
const MAX_RECORD: usize = 64 << 20;

/// What was found in the data directory at start.
#[derive(Debug)]
pub struct Recovered {
    /// The state of the last snapshot (the log's committed entries are applied to it by the
    /// replica, as on every start).
    pub state: State,
    /// The raft log and hard state, for the replica.
    pub durable: Durable,
    /// The incarnation token in force; `None` when the directory had none and none was to
    /// be drawn (a member of a group looks for its group's: see `server::join`).
    pub incarnation: Option<Incarnation>,
    /// True when the directory had no token: a new incarnation began (or is sought).
    pub new_incarnation: bool,
}

/// One snapshot file.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    index: u64,
    term: u64,
    /// The configuration at `index`, as raft-rs encodes it (voters and learners, and the
    /// outgoing voters of a joint configuration).
    conf: Vec<u8>,
    /// bincode [`State`].
    state: Vec<u8>,
}

/// One record of the log.
#[derive(Serialize, Deserialize)]
enum Record {
    Entries(Vec<StoredEntry>),
    Hard { term: u64, vote: u64, commit: u64 },
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    index: u64,
    term: u64,
    kind: i32,
    data: Vec<u8>,
    context: Vec<u8>,
}

impl From<&Entry> for StoredEntry {
    fn from(e: &Entry) -> Self {
        StoredEntry {
            index: e.index,
            term: e.term,
            kind: e.entry_type,
            data: e.data.clone(),
            context: e.context.clone(),
        }
    }
}

impl From<StoredEntry> for Entry {
    fn from(e: StoredEntry) -> Self {
        Entry {
            index: e.index,
            term: e.term,
            entry_type: e.kind,
            data: e.data,
            context: e.context,
            ..Default::default()
        }
    }
}

/// The data directory of a running server.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    durability: Durability,
    generation: u64,
    log: Option<File>,
    buf: Vec<u8>,
    /// Entries written since the generation began.
    entries: u64,
}

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// A new incarnation token, from the kernel's random source (never 0).
pub(crate) fn random_token() -> io::Result<Incarnation> {
    let mut b = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u128::from_le_bytes(b) | 1)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn write_record(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn record_of<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    let p = bincode::serialize(v).expect("records serialize");
    write_record(out, &p);
}

/// Parses records from `bytes`; returns them and the length of the valid prefix.
fn read_records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = vec![];
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let sum = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        if len > MAX_RECORD || bytes.len() - at - 8 < len {
            break;
        }
        let p = &bytes[at + 8..at + 8 + len];
        if crc(p) != sum {
            break;
        }
        out.push(p);
        at += 8 + len;
    }
    (out, at)
}

/// Writes `bytes` to `path` through a temporary file, fsynced, renamed into place.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn read_opt(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Storage {
    /// Opens (creating if needed) the data directory and reads back what it holds. A
    /// directory without a token begins a new incarnation when `draw` is set (a single
    /// server); otherwise its token is left to be found ([`Storage::store_token`]).
    pub fn open(
        dir: &Path,
        durability: Durability,
        draw: bool,
    ) -> io::Result<(Storage, Recovered)> {
        let mut s = Storage {
            dir: dir.to_path_buf(),
            durability,
            generation: 0,
            log: None,
            buf: Vec::new(),
            entries: 0,
        };
        if durability == Durability::None {
            let rec = Recovered {
                state: State::new(),
                durable: Durable::default(),
                incarnation: if draw { Some(random_token()?) } else { None },
                new_incarnation: true,
            };
            return Ok((s, rec));
        }
        fs::create_dir_all(dir)?;
        if dir.join("wal").exists() {
            return Err(invalid(format!(
                "{} was written by a tenure from before replication (it has a 'wal' file); \
                 this version cannot read it: serve from a new data directory",
                dir.display()
            )));
        }
        let token_path = dir.join("incarnation");
        let (incarnation, new_incarnation) = match fs::read_to_string(&token_path) {
            Ok(t) => {
                let v = u128::from_str_radix(t.trim(), 16).map_err(|_| {
                    invalid(format!(
                        "{} does not hold an incarnation token",
                        token_path.display()
                    ))
                })?;
                (Some(v), false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // No token: whatever else is here cannot be trusted to be this service's state.
                for entry in fs::read_dir(dir)? {
                    let name = entry?.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with("snapshot.")
                        || name.starts_with("log.")
                        || name.starts_with("current")
                    {
                        let _ = fs::remove_file(dir.join(&*name));
                    }
                }
                if draw {
                    let t = random_token()?;
                    write_atomic(dir, "incarnation", format!("{t:032x}\n").as_bytes())?;
                    (Some(t), true)
                } else {
                    (None, true)
                }
            }
            Err(e) => return Err(e),
        };
        s.generation = match read_opt(&dir.join("current"))? {
            Some(b) => String::from_utf8_lossy(&b)
                .trim()
                .parse()
                .map_err(|_| invalid(format!("{}/current is corrupt", dir.display())))?,
            None => 0,
        };
        let (state, snapshot) = match read_opt(&s.snapshot_path(s.generation))? {
            Some(b) => {
                let (recs, _) = read_records(&b);
                let p = recs
                    .first()
                    .ok_or_else(|| invalid("snapshot is corrupt".into()))?;
                let f: SnapshotFile =
                    bincode::deserialize(p).map_err(|e| invalid(format!("snapshot: {e}")))?;
                let state: State = bincode::deserialize(&f.state)
                    .map_err(|e| invalid(format!("snapshot state: {e}")))?;
                let snap = Snapshot {
                    data: f.state,
                    metadata: Some(SnapshotMetadata {
                        conf_state: Some(
                            <ConfState as prost::Message>::decode(&f.conf[..])
                                .map_err(|e| invalid(format!("snapshot configuration: {e}")))?,
                        ),
                        index: f.index,
                        term: f.term,
                    }),
                };
                (state, Some(snap))
            }
            None => (State::new(), None),
        };
        let log_path = s.log_path(s.generation);
        let bytes = read_opt(&log_path)?.unwrap_or_default();
        let (recs, valid) = read_records(&bytes);
        let mut durable = Durable {
            snapshot,
            ..Durable::default()
        };
        for r in recs {
            match bincode::deserialize::<Record>(r).map_err(|e| invalid(format!("log: {e}")))? {
                Record::Entries(es) => {
                    for e in es {
                        let e = Entry::from(e);
                        let keep = durable.entries.partition_point(|x| x.index < e.index);
                        durable.entries.truncate(keep);
                        durable.entries.push(e);
                        s.entries += 1;
                    }
                }
                Record::Hard { term, vote, commit } => {
                    durable.hard_state = HardState { term, vote, commit };
                }
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        if valid < bytes.len() {
            // A torn tail from a crash: nothing in it was acknowledged.
            log.set_len(valid as u64)?;
            log.sync_all()?;
        }
        s.log = Some(log);
        let rec = Recovered {
            state,
            durable,
            incarnation,
            new_incarnation,
        };
        Ok((s, rec))
    }

    /// Stores the incarnation token this member found (durably, before it serves).
    pub fn store_token(&mut self, t: Incarnation) -> io::Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        write_atomic(&self.dir, "incarnation", format!("{t:032x}\n").as_bytes())
    }

    fn snapshot_path(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("snapshot.{generation}"))
    }

    fn log_path(&self, generation: u64) -> PathBuf {
        self.dir.join(format!("log.{generation}"))
    }

    /// Buffers what the replica asked to persist for the next [`Storage::commit`]. A snapshot
    /// received from the leader starts a new generation at once (rare: a member far behind).
    pub fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> io::Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        if let Some(snap) = snapshot {
            // Whatever was buffered is older than the snapshot and replaced by it.
            self.buf.clear();
            let meta = snap.metadata.clone().unwrap_or_default();
            self.start_generation(&meta, &snap.data, &[], &HardState::default())?;
        }
        if !entries.is_empty() {
            let es: Vec<StoredEntry> = entries.iter().map(StoredEntry::from).collect();
            record_of(&mut self.buf, &Record::Entries(es));
            self.entries += entries.len() as u64;
        }
        if let Some(hs) = hard_state {
            let r = Record::Hard {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            };
            record_of(&mut self.buf, &r);
        }
        Ok(())
    }

    /// True when records wait for a commit.
    pub fn dirty(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes buffered records and makes them durable with one fdatasync.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let log = self.log.as_mut().expect("fsync storage has a log");
        log.write_all(&self.buf)?;
        log.sync_data()?;
        self.buf.clear();
        Ok(())
    }

    /// Whether the log is long enough to be replaced by a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        self.durability == Durability::Fsync && self.entries >= SNAPSHOT_EVERY
    }

    /// Starts a new generation from the state `state` (bincode) at entry `index` of term
    /// `term`, continued by `rest` (the entries after it) and `hard_state`. Everything
    /// buffered is committed first.
    pub fn compact(
        &mut self,
        meta: &SnapshotMetadata,
        state: &[u8],
        rest: &[Entry],
        hard_state: &HardState,
    ) -> io::Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        self.commit()?;
        self.start_generation(meta, state, rest, hard_state)
    }

    fn start_generation(
        &mut self,
        meta: &SnapshotMetadata,
        state: &[u8],
        rest: &[Entry],
        hard_state: &HardState,
    ) -> io::Result<()> {
        let next = self.generation + 1;
        let cs = meta.conf_state.clone().unwrap_or_default();
        let f = SnapshotFile {
            index: meta.index,
            term: meta.term,
            conf: prost::Message::encode_to_vec(&cs),
            state: state.to_vec(),
        };
        let mut b = Vec::new();
        record_of(&mut b, &f);
        write_atomic(&self.dir, &format!("snapshot.{next}"), &b)?;
        let mut l = Vec::new();
        if !rest.is_empty() {
            let es: Vec<StoredEntry> = rest.iter().map(StoredEntry::from).collect();
            record_of(&mut l, &Record::Entries(es));
        }
        let r = Record::Hard {
            term: hard_state.term,
            vote: hard_state.vote,
            commit: hard_state.commit,
        };
        record_of(&mut l, &r);
        write_atomic(&self.dir, &format!("log.{next}"), &l)?;
        // The switch: from here on a restart reads the new generation.
        write_atomic(&self.dir, "current", format!("{next}\n").as_bytes())?;
        let _ = fs::remove_file(self.snapshot_path(self.generation));
        let _ = fs::remove_file(self.log_path(self.generation));
        self.generation = next;
        self.log = Some(OpenOptions::new().append(true).open(self.log_path(next))?);
        self.entries = rest.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tenure-storage-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 3],
            ..Default::default()
        }
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote: 1,
            commit,
        }
    }

    #[test]
    fn log_and_snapshot_survive_reopen_and_torn_tails_are_cut() {
        let d = tmpdir("a");
        let (mut s, r) = Storage::open(&d, Durability::Fsync, true).unwrap();
        assert!(r.new_incarnation);
        let inc = r.incarnation;
        s.persist(None, &[e(1, 1), e(2, 1), e(3, 1)], Some(&hs(1, 2)))
            .unwrap();
        s.commit().unwrap();
        // A new leader replaces entry 3.
        s.persist(None, &[e(3, 2)], Some(&hs(2, 3))).unwrap();
        s.commit().unwrap();
        drop(s);
        // A torn record at the end.
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join("log.0"))
            .unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (mut s, r) = Storage::open(&d, Durability::Fsync, true).unwrap();
        assert!(!r.new_incarnation);
        assert_eq!(r.incarnation, inc);
        let idx: Vec<_> = r
            .durable
            .entries
            .iter()
            .map(|x| (x.index, x.term))
            .collect();
        assert_eq!(idx, vec![(1, 1), (2, 1), (3, 2)]);
        assert_eq!(r.durable.hard_state, hs(2, 3));
        // A compaction at 2: a new generation with the state and entry 3.
        let mut st = State::new();
        st.apply(&crate::server::state::Command::Open {
            req: 1,
            ttl_ms: 1000,
        });
        let meta = SnapshotMetadata {
            conf_state: Some(ConfState::from((vec![1], vec![]))),
            index: 2,
            term: 1,
        };
        let bytes = bincode::serialize(&st).unwrap();
        s.compact(&meta, &bytes, &[e(3, 2)], &hs(2, 3)).unwrap();
        s.persist(None, &[e(4, 2)], Some(&hs(2, 4))).unwrap();
        s.commit().unwrap();
        drop(s);
        assert!(!d.join("log.0").exists() && !d.join("snapshot.0").exists());
        let (_, r) = Storage::open(&d, Durability::Fsync, true).unwrap();
        assert!(r.state.has_session(1));
        let snap = r.durable.snapshot.as_ref().unwrap();
        assert_eq!(snap.metadata.as_ref().unwrap().index, 2);
        let idx: Vec<_> = r.durable.entries.iter().map(|x| x.index).collect();
        assert_eq!(idx, vec![3, 4]);
        // A half-written next generation (no switch of `current`) is ignored.
        fs::write(d.join("snapshot.2"), b"garbage").unwrap();
        let (_, r) = Storage::open(&d, Durability::Fsync, true).unwrap();
        assert_eq!(r.durable.entries.len(), 2);
        // A wiped token is a new incarnation and drops the old state.
        fs::remove_file(d.join("incarnation")).unwrap();
        let (_, r) = Storage::open(&d, Durability::Fsync, true).unwrap();
        assert!(r.new_incarnation);
        assert_ne!(r.incarnation, inc);
        assert_eq!(r.state.session_count(), 0);
        assert!(r.durable.entries.is_empty() && r.durable.snapshot.is_none());
        // A directory from before replication is refused, saying why.
        fs::write(d.join("wal"), b"").unwrap();
        let err = Storage::open(&d, Durability::Fsync, true).unwrap_err();
        assert!(err.to_string().contains("before replication"), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }
}
