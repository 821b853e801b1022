//! Messages between client and server, and how they are framed on the wire.
//!
//! A connection starts with a handshake: the client's first frame is [`ClientMsg::Hello`] with
//! the magic bytes and the protocol version; the server answers [`ServerMsg::Welcome`] with its
//! incarnation token, or [`ServerMsg::Reject`] and closes. After that the client sends
//! [`ClientMsg::Request`]s, each carrying its session id and a request id, and the server
//! answers each with a [`ServerMsg::Reply`] echoing both.
//!
//! Framing: a 4-byte big-endian payload length, then the payload encoded with bincode (fixed
//! little-endian integers, a size limit equal to the frame limit). A frame longer than
//! [`MAX_FRAME`], a payload that does not decode, or a connection that ends inside a frame is
//! a protocol error that closes that connection only.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Magic bytes at the start of every handshake.
pub const MAGIC: [u8; 4] = *b"TNRE";
/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u16 = 2;
/// Largest frame payload accepted, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Longest lock name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// A session identifier assigned by the server. 0 means "no session".
pub type SessionId = u64;
/// A fencing token: the service's revision at the moment of a grant.
pub type Token = u64;
/// An incarnation token of the service (SPEC 3.7).
pub type Incarnation = u128;

/// Frames sent by clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First frame of a connection.
    Hello {
        /// Must be [`MAGIC`].
        magic: [u8; 4],
        /// The client's protocol version.
        version: u16,
        /// A name for logs and `tenure status`.
        client_name: String,
    },
    /// A request under a session (`session` is 0 for `Open` and `Status`).
    Request {
        /// The session the request belongs to.
        session: SessionId,
        /// Request id, unique per session: a retried request reuses it.
        req: u64,
        /// What is asked.
        body: Request,
    },
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Open a session with this TTL.
    Open {
        /// Time-to-live in milliseconds.
        ttl_ms: u64,
    },
    /// Keep the session alive; also binds the session to this connection.
    Heartbeat,
    /// Acquire a lock; with `wait` the reply comes when granted, else at once.
    Acquire {
        /// Lock name.
        name: String,
        /// Queue behind the holder instead of failing at once.
        wait: bool,
    },
    /// Give up a waiting acquire (request `target`); releases the lock if it was granted.
    Cancel {
        /// Request id of the acquire.
        target: u64,
    },
    /// Release a held lock.
    Release {
        /// Lock name.
        name: String,
        /// The token of the grant being released.
        token: Token,
    },
    /// Close the session, releasing everything it holds.
    Close,
    /// A snapshot of the service for `tenure status`.
    Status,
    /// Administrative: release a lock whoever holds it (the holder is told, with reason
    /// `released`). Sent with session 0.
    Revoke {
        /// Lock name.
        name: String,
    },
    /// Register as a candidate of an election (under this session).
    Campaign {
        /// Election name.
        election: String,
        /// Candidate id, unique in the election.
        id: String,
        /// Priority: higher wins.
        priority: i64,
        /// How to reach the candidate (`host:port`), checked before it is designated.
        endpoint: Option<String>,
        /// Prefer a higher-priority candidate over a live master.
        preempt: bool,
    },
    /// Withdraw a candidacy (a master resigning gives way to the next).
    Resign {
        /// Election name.
        election: String,
        /// Candidate id.
        id: String,
    },
    /// Be told of every master change of an election.
    Observe {
        /// Election name.
        election: String,
    },
    /// Ask for the master: from the cache when it names a live master, else after a
    /// designation.
    RequestElection {
        /// Election name.
        election: String,
    },
    /// Read the master cache (changes nothing).
    Master {
        /// Election name.
        election: String,
    },
    /// Join a group as a probationary member (under this session).
    Join {
        /// Group name.
        group: String,
        /// Member id, unique in the group.
        id: String,
        /// Minimum healthy time before promotion, in milliseconds.
        probation_ms: u64,
        /// Promotion also waits for the application's check ([`Request::ReportCheck`]).
        needs_check: bool,
    },
    /// Leave a group.
    Leave {
        /// Group name.
        group: String,
        /// Member id.
        id: String,
    },
    /// The application's evaluation of a probationary member: a pass makes it eligible for
    /// promotion, a failure removes it.
    ReportCheck {
        /// Group name.
        group: String,
        /// Member id.
        id: String,
        /// Passed or failed.
        ok: bool,
    },
    /// Remove a failed full member and promote a probationary one, in one view change.
    Replace {
        /// Group name.
        group: String,
        /// The full member to remove.
        failed: String,
        /// The probationary member to promote.
        probationary: String,
    },
    /// Be told of every view change of a group without being a member.
    WatchGroup {
        /// Group name.
        group: String,
    },
    /// Read a group's view (changes nothing).
    View {
        /// Group name.
        group: String,
    },
}

/// A group's view, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ViewInfo {
    /// View number.
    pub view: u64,
    /// Members in id order, with `true` for full members and `false` for probationary ones.
    pub members: Vec<(String, bool)>,
}

/// An election's master, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MasterInfo {
    /// Epoch of the last change of master.
    pub epoch: u64,
    /// The master's candidate id and endpoint, if there is a master.
    pub master: Option<(String, Option<String>)>,
}

/// Something the server tells a session without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// An election's master changed.
    MasterChanged {
        /// Election name.
        election: String,
        /// The new master cache.
        info: MasterInfo,
    },
    /// An administrator released a lock this session held.
    LockRevoked {
        /// Lock name.
        name: String,
        /// The token of the revoked grant.
        token: Token,
    },
    /// A group's view changed.
    ViewChanged {
        /// Group name.
        group: String,
        /// The new view.
        info: ViewInfo,
    },
}

/// Frames sent by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// Handshake accepted.
    Welcome {
        /// The server's protocol version.
        version: u16,
        /// The service's incarnation token.
        incarnation: Incarnation,
    },
    /// Handshake refused; the server closes the connection.
    Reject {
        /// Why.
        reason: String,
    },
    /// A notice for a session (sent on the connection it was last heard on).
    Notice {
        /// The session notified.
        session: SessionId,
        /// What happened.
        notice: Notice,
    },
    /// The answer to a request.
    Reply {
        /// Echoed session id (the new one for `Open`).
        session: SessionId,
        /// Echoed request id.
        req: u64,
        /// The outcome.
        result: Result<Reply, ErrorReply>,
    },
}

/// Successful outcomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A session was opened.
    Opened {
        /// Its id.
        session: SessionId,
        /// The TTL granted, in milliseconds.
        ttl_ms: u64,
    },
    /// Heartbeat acknowledged.
    Alive,
    /// The lock is granted with this fencing token.
    Granted {
        /// Lock name.
        name: String,
        /// Fencing token.
        token: Token,
    },
    /// `try` acquire: held by another session.
    Busy,
    /// Released, closed or cancelled.
    Done,
    /// Service status.
    Status(StatusInfo),
    /// An election's master cache.
    Master(MasterInfo),
    /// A group's view.
    View(ViewInfo),
}

/// Errors a request can get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorReply {
    /// The session does not exist (expired, closed, or lost with the service's state).
    UnknownSession,
    /// The session does not hold this lock with this token.
    NotHolder,
    /// The request is malformed or violates a limit; the text says which.
    Invalid(String),
    /// A limit of the service was reached; the text says which.
    Limit(String),
    /// The request id is older than the window of remembered replies.
    Stale,
    /// The session asked for a lock it already holds (added in protocol version 2).
    AlreadyHeld,
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorReply::UnknownSession => write!(f, "the session does not exist on the server"),
            ErrorReply::NotHolder => write!(f, "the session does not hold this lock"),
            ErrorReply::Invalid(s) => write!(f, "invalid request: {s}"),
            ErrorReply::Limit(s) => write!(f, "limit reached: {s}"),
            ErrorReply::Stale => write!(f, "request id too old to be answered"),
            ErrorReply::AlreadyHeld => write!(f, "the session already holds this lock"),
        }
    }
}

/// The service as `tenure status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatusInfo {
    /// Incarnation token.
    pub incarnation: Incarnation,
    /// Current revision (the last fencing token handed out or later).
    pub revision: u64,
    /// Open sessions.
    pub sessions: Vec<SessionInfo>,
    /// Held locks.
    pub locks: Vec<LockInfo>,
    /// Elections with their master and candidates.
    pub elections: Vec<ElectionInfo>,
    /// Groups with their views.
    pub groups: Vec<(String, ViewInfo)>,
}

/// One election in a [`StatusInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionInfo {
    /// Election name.
    pub name: String,
    /// The master cache.
    pub master: MasterInfo,
    /// Candidates in designation order: (id, priority, session).
    pub candidates: Vec<(String, i64, SessionId)>,
}

/// One session in a [`StatusInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Session id.
    pub id: SessionId,
    /// TTL in milliseconds.
    pub ttl_ms: u64,
}

/// One held lock in a [`StatusInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Lock name.
    pub name: String,
    /// Holding session.
    pub holder: SessionId,
    /// Fencing token of the grant.
    pub token: Token,
    /// Sessions waiting, in order.
    pub waiters: Vec<SessionId>,
}

/// Checks a lock name: 1 to [`MAX_NAME_LEN`] bytes, no NUL.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("lock name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "lock name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err("lock name contains a NUL byte".into());
    }
    Ok(())
}

/// A codec error: the connection that produced it must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds [`MAX_FRAME`].
    TooLarge(usize),
    /// The payload does not decode as a message.
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

fn options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_FRAME as u64)
        .reject_trailing_bytes()
}

/// Appends one framed message to `out`.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    use bincode::Options;
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    options()
        .serialize_into(&mut *out, msg)
        .expect("messages serialize");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Decodes one payload (without its length prefix).
pub fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, FrameError> {
    use bincode::Options;
    options()
        .deserialize(payload)
        .map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Splits a byte stream into frames. Sans-IO: feed it what was read, take frames out.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the connection.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete payload, if any. An oversized length prefix is an error.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            self.compact();
            return Ok(None);
        }
        let len = u32::from_be_bytes(avail[..4].try_into().unwrap()) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if avail.len() < 4 + len {
            self.compact();
            return Ok(None);
        }
        let s = self.start + 4;
        self.start = s + len;
        Ok(Some(&self.buf[s..s + len]))
    }

    /// True when bytes of an incomplete frame are buffered (a close now truncates a frame).
    pub fn has_partial(&self) -> bool {
        self.start < self.buf.len()
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_split_reads() {
        let msgs = vec![
            ClientMsg::Hello {
                magic: MAGIC,
                version: PROTOCOL_VERSION,
                client_name: "t".into(),
            },
            ClientMsg::Request {
                session: 7,
                req: 9,
                body: Request::Acquire {
                    name: "a/b".into(),
                    wait: true,
                },
            },
        ];
        let mut bytes = vec![];
        for m in &msgs {
            encode(m, &mut bytes);
        }
        let mut r = FrameReader::new();
        let mut got = vec![];
        for b in bytes.chunks(3) {
            r.extend(b);
            while let Some(f) = r.next_frame().unwrap() {
                got.push(decode::<ClientMsg>(f).unwrap());
            }
        }
        assert_eq!(got, msgs);
        assert!(!r.has_partial());
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        let mut r = FrameReader::new();
        r.extend(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
        assert!(matches!(r.next_frame(), Err(FrameError::TooLarge(_))));
        let mut r = FrameReader::new();
        r.extend(&[0, 0, 0, 3, 0xde, 0xad, 0xbe]);
        let f = r.next_frame().unwrap().unwrap().to_vec();
        assert!(decode::<ClientMsg>(&f).is_err());
        // A huge string length inside a small frame is refused without allocating it.
        let mut bad = vec![];
        encode(
            &ClientMsg::Hello {
                magic: MAGIC,
                version: 1,
                client_name: "x".into(),
            },
            &mut bad,
        );
        let n = bad.len();
        bad[n - 9..n - 1].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut r = FrameReader::new();
        r.extend(&bad);
        let f = r.next_frame().unwrap().unwrap().to_vec();
        assert!(decode::<ClientMsg>(&f).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("").is_err());
        assert!(validate_name("a\0b").is_err());
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_name("jobs/reindex").is_ok());
    }
}
