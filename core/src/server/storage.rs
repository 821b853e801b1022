//! Durable storage in the data directory: the incarnation token, a snapshot of the state and
//! a write-ahead log of commands (SPEC 2.2, 3.7).
//!
//! Files:
//! - `incarnation`: the service's incarnation token, 32 hex digits. A directory without it is
//!   a new incarnation: any other file there is stale and removed.
//! - `snapshot`: `[u32 len][u32 crc32][bincode State]`, replaced atomically (write to
//!   `snapshot.tmp`, fsync, rename, fsync the directory).
//! - `wal`: records `[u32 len][u32 crc32][bincode Command]`, appended; a record whose length
//!   or checksum does not hold (a write torn by a crash) ends the log and is cut off.
//!
//! Group commit: [`Storage::append`] buffers records, [`Storage::commit`] writes them and calls
//! `fdatasync` once, however many there are. With [`Durability::None`] nothing is written: the
//! state lives in memory only, and every start is a new incarnation.

use super::state::{Command, State};
use crate::proto::Incarnation;
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

/// Records in the log after which a snapshot is taken and the log restarted.
pub const SNAPSHOT_EVERY: u64 = 50_000;
const MAX_RECORD: usize = 64 << 20;

/// What was found in the data directory at start.
#[derive(Debug)]
pub struct Recovered {
    /// The state rebuilt from snapshot and log.
    pub state: State,
    /// The incarnation token in force.
    pub incarnation: Incarnation,
    /// True when the directory had no token: a new incarnation began.
    pub new_incarnation: bool,
    /// Log records replayed.
    pub replayed: u64,
}

/// The data directory of a running server.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    durability: Durability,
    wal: Option<File>,
    buf: Vec<u8>,
    records: u64,
}

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

fn random_token() -> io::Result<Incarnation> {
    let mut b = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u128::from_le_bytes(b) | 1)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_record(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(payload).to_le_bytes());
    out.extend_from_slice(payload);
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

impl Storage {
    /// Opens (creating if needed) the data directory and rebuilds the state.
    pub fn open(dir: &Path, durability: Durability) -> io::Result<(Storage, Recovered)> {
        let mut s = Storage {
            dir: dir.to_path_buf(),
            durability,
            wal: None,
            buf: Vec::new(),
            records: 0,
        };
        if durability == Durability::None {
            return Ok((
                s,
                Recovered {
                    state: State::new(),
                    incarnation: random_token()?,
                    new_incarnation: true,
                    replayed: 0,
                },
            ));
        }
        fs::create_dir_all(dir)?;
        let token_path = dir.join("incarnation");
        let (incarnation, new_incarnation) = match fs::read_to_string(&token_path) {
            Ok(t) => {
                let v = u128::from_str_radix(t.trim(), 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} does not hold an incarnation token",
                            token_path.display()
                        ),
                    )
                })?;
                (v, false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // No token: whatever else is here cannot be trusted to be this service's state.
                for f in ["snapshot", "snapshot.tmp", "wal"] {
                    let _ = fs::remove_file(dir.join(f));
                }
                let t = random_token()?;
                let tmp = dir.join("incarnation.tmp");
                let mut f = File::create(&tmp)?;
                writeln!(f, "{t:032x}")?;
                f.sync_all()?;
                fs::rename(&tmp, &token_path)?;
                sync_dir(dir)?;
                (t, true)
            }
            Err(e) => return Err(e),
        };
        let mut state = match fs::read(dir.join("snapshot")) {
            Ok(b) => {
                let (recs, _) = read_records(&b);
                let p = recs.first().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "snapshot is corrupt")
                })?;
                bincode::deserialize(p).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("snapshot: {e}"))
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::new(),
            Err(e) => return Err(e),
        };
        let wal_path = dir.join("wal");
        let bytes = match fs::read(&wal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(e),
        };
        let (recs, valid) = read_records(&bytes);
        let mut replayed = 0;
        for r in &recs {
            let cmd: Command = bincode::deserialize(r)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("wal: {e}")))?;
            state.apply(&cmd);
            replayed += 1;
        }
        let wal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&wal_path)?;
        if valid < bytes.len() {
            // A torn tail from a crash: nothing in it was acknowledged.
            wal.set_len(valid as u64)?;
            wal.sync_all()?;
        }
        s.wal = Some(wal);
        s.records = replayed;
        Ok((
            s,
            Recovered {
                state,
                incarnation,
                new_incarnation,
                replayed,
            },
        ))
    }

    /// Buffers a command for the next [`Storage::commit`].
    pub fn append(&mut self, cmd: &Command) {
        if self.durability == Durability::None {
            return;
        }
        let p = bincode::serialize(cmd).expect("commands serialize");
        write_record(&mut self.buf, &p);
        self.records += 1;
    }

    /// True when appended commands wait for a commit.
    pub fn dirty(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes buffered commands and makes them durable with one fdatasync.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let wal = self.wal.as_mut().expect("fsync storage has a wal");
        wal.write_all(&self.buf)?;
        wal.sync_data()?;
        self.buf.clear();
        Ok(())
    }

    /// Whether the log is long enough to be replaced by a snapshot.
    pub fn wants_snapshot(&self) -> bool {
        self.durability == Durability::Fsync && self.records >= SNAPSHOT_EVERY
    }

    /// Writes a snapshot of `state` (which must include every committed command) and starts
    /// an empty log.
    pub fn snapshot(&mut self, state: &State) -> io::Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        self.commit()?;
        let p = bincode::serialize(state).expect("state serializes");
        let mut b = Vec::with_capacity(p.len() + 8);
        write_record(&mut b, &p);
        let tmp = self.dir.join("snapshot.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&b)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join("snapshot"))?;
        sync_dir(&self.dir)?;
        // The snapshot holds everything in the log: start it over.
        let wal = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(self.dir.join("wal"))?;
        wal.sync_all()?;
        self.wal = Some(OpenOptions::new().append(true).open(self.dir.join("wal"))?);
        self.records = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Request;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tenure-storage-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn log_and_snapshot_survive_reopen_and_torn_tails_are_cut() {
        let d = tmpdir("a");
        let (mut s, r) = Storage::open(&d, Durability::Fsync).unwrap();
        assert!(r.new_incarnation);
        let inc = r.incarnation;
        let mut st = r.state;
        let cmds = vec![
            Command::Open {
                req: 1,
                ttl_ms: 1000,
            },
            Command::Request {
                session: 1,
                req: 2,
                body: Request::Acquire {
                    name: "x".into(),
                    wait: false,
                },
            },
        ];
        for c in &cmds {
            s.append(c);
            st.apply(c);
        }
        s.commit().unwrap();
        drop(s);
        // A torn record at the end.
        let mut f = OpenOptions::new().append(true).open(d.join("wal")).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (mut s, r) = Storage::open(&d, Durability::Fsync).unwrap();
        assert!(!r.new_incarnation);
        assert_eq!(r.incarnation, inc);
        assert_eq!(r.replayed, 2);
        assert_eq!(r.state.locks().get("x").unwrap().0, 1);
        s.snapshot(&r.state).unwrap();
        s.append(&Command::Expire { session: 1 });
        s.commit().unwrap();
        drop(s);
        let (_, r) = Storage::open(&d, Durability::Fsync).unwrap();
        assert_eq!(r.replayed, 1);
        assert!(r.state.locks().get("x").is_none());
        assert!(!r.state.has_session(1));
        // A wiped token is a new incarnation and drops the old state.
        fs::remove_file(d.join("incarnation")).unwrap();
        let (_, r) = Storage::open(&d, Durability::Fsync).unwrap();
        assert!(r.new_incarnation);
        assert_ne!(r.incarnation, inc);
        assert_eq!(r.state.session_count(), 0);
        fs::remove_dir_all(&d).unwrap();
    }
}
