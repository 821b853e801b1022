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
pub const PROTOCOL_VERSION: u16 = 5;
/// Largest frame payload, in bytes: what a client accepts from a server, and the most any
/// message may encode to.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest frame payload a server accepts from a client, in bytes. The largest request (a
/// campaign with the longest election name, id and endpoint) is under 2 KiB; a lower bound
/// than [`MAX_FRAME`] keeps what a connection can make the server buffer small (1,000
/// connections each sending an unfinished frame hold at most 64 MiB).
pub const MAX_REQUEST_FRAME: usize = 64 << 10;
/// Largest frame between members, in bytes: a raft message carries up to 1 MiB of entries,
/// or a snapshot of the whole state.
pub const MAX_PEER_FRAME: usize = 256 << 20;
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
    /// First frame of a connection from another member of the group: after it, every frame
    /// on the connection is a raft message (protobuf, as raft-rs encodes it), of up to
    /// [`MAX_PEER_FRAME`] bytes.
    PeerHello {
        /// Must be [`MAGIC`].
        magic: [u8; 4],
        /// The member's protocol version.
        version: u16,
        /// The member's id in the group.
        from: u64,
        /// Its incarnation token, if it has one (a new or wiped member has none).
        incarnation: Option<Incarnation>,
        /// It began this incarnation for a new group (`--bootstrap`) and has applied
        /// nothing yet: members started with `--bootstrap` may take its token.
        fresh: bool,
        /// It was started with `--bootstrap` (consent to a new incarnation).
        bootstrap: bool,
        /// The voters of the group's configuration as it has applied it (empty without a
        /// token): a member joining counts a majority of these (added in version 5).
        voters: Vec<u64>,
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
    /// A page of the service's status for `tenure status`: from the start, or from where the
    /// previous page said the next one begins ([`StatusInfo::next`]). Added in protocol
    /// version 3 (version 2 sent the whole status in one reply, which could exceed a frame).
    Status {
        /// Where the page begins; `None` for the first page.
        from: Option<StatusCursor>,
    },
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
    /// Administrative: change the tenure group's own members (`tenure member`). Sent with
    /// session 0; answered once the change is applied (a replacement: once the new member
    /// is added as a learner; it is promoted, and the old one removed, when caught up).
    ChangeMembers {
        /// The change.
        change: MemberChange,
    },
}

/// A change of the tenure group's own members, asked by an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// Add a member (as a learner; promoted once caught up).
    Add {
        /// Its id (new in the group).
        id: u64,
        /// Its address.
        address: String,
    },
    /// Remove a member.
    Remove {
        /// Its id.
        id: u64,
    },
    /// Add member `id` as a learner and, once it is caught up, promote it and remove
    /// `old` in one change.
    Replace {
        /// The voter to replace.
        old: u64,
        /// The new member's id.
        id: u64,
        /// The new member's address.
        address: String,
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
    /// This member of a replicated group does not lead it: the request was not taken. The
    /// leader's client address, when known; otherwise an election is under way.
    NotLeader {
        /// Where the leader listens.
        leader: Option<String>,
    },
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
            ErrorReply::NotLeader { leader: Some(l) } => {
                write!(f, "this server does not lead its group; the leader is {l}")
            }
            ErrorReply::NotLeader { leader: None } => {
                write!(
                    f,
                    "this server does not lead its group, and no leader is known now"
                )
            }
        }
    }
}

/// Where a page of the status begins: the first row of a section, in the section's order
/// (sessions by id, then locks, elections and groups by name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusCursor {
    /// Sessions from this id on.
    Sessions(SessionId),
    /// Locks from this name on.
    Locks(String),
    /// Elections from this name on.
    Elections(String),
    /// Groups from this name on.
    Groups(String),
}

/// Bytes of rows (sessions, locks, elections, groups) in one status page. The limits of
/// locks (name, waiters), elections (name, candidates, ids) and groups (name, members, ids)
/// keep every single row below it, so each page holds at least one row and a status of any
/// size is read in pages, each well inside [`MAX_FRAME`] (a test builds the largest row of
/// each kind).
pub const STATUS_PAGE_BYTES: usize = MAX_FRAME - 8 * 1024;

/// The service as `tenure status` shows it: one page of it on the wire (see
/// [`Request::Status`]), the whole of it from [`crate::Client::status`].
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
    /// Where the next page begins; `None` on the last page (and in a whole status).
    pub next: Option<StatusCursor>,
    /// The leader of the servers' group, as the member that answered knows it (`None`
    /// while there is none); a single server is its own leader.
    pub leader: Option<MemberInfo>,
    /// The members of the servers' group.
    pub members: Vec<MemberInfo>,
}

/// A member of the servers' group in a [`StatusInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its id (as given by `--cluster`; 1 for a single server).
    pub id: u64,
    /// Where clients and the other members reach it.
    pub address: String,
    /// `leader`, `follower` (a voter), or `learner`; as the leader sees it, `unreachable`
    /// for a member it has not heard from within an election timeout.
    pub role: String,
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

/// Longest candidate or member id, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest endpoint (`host:port`), in bytes.
pub const MAX_ENDPOINT_LEN: usize = 256;
/// Longest client name (shown in logs and `tenure status`), in bytes.
pub const MAX_CLIENT_NAME_LEN: usize = 256;
/// Characters of a refused value that an error message repeats; the rest is elided, so that
/// an error never grows with the input that caused it.
pub const ECHO_CHARS: usize = 64;

/// What a string given to tenure names. Each kind has one length limit and one check, used by
/// the server, the Rust client and every binding, so a bad string gets the same error
/// everywhere, naming what it is ("election name is 2000 bytes long; the limit is 1024").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// A lock's name.
    LockName,
    /// An election's name.
    ElectionName,
    /// A group's name.
    GroupName,
    /// A candidate's id in an election.
    CandidateId,
    /// A member's id in a group.
    MemberId,
    /// A server or candidate endpoint, `host:port`.
    Endpoint,
    /// The client name sent in the handshake.
    ClientName,
}

impl Text {
    /// How error messages call it ("lock name", "member id", ...).
    pub fn what(self) -> &'static str {
        match self {
            Text::LockName => "lock name",
            Text::ElectionName => "election name",
            Text::GroupName => "group name",
            Text::CandidateId => "candidate id",
            Text::MemberId => "member id",
            Text::Endpoint => "endpoint",
            Text::ClientName => "client name",
        }
    }

    /// Longest accepted value, in UTF-8 bytes.
    pub fn max_len(self) -> usize {
        match self {
            Text::LockName | Text::ElectionName | Text::GroupName => MAX_NAME_LEN,
            Text::CandidateId | Text::MemberId => MAX_ID_LEN,
            Text::Endpoint => MAX_ENDPOINT_LEN,
            Text::ClientName => MAX_CLIENT_NAME_LEN,
        }
    }

    /// Checks `s`: 1 to [`Text::max_len`] bytes (a client name may be empty), no NUL; an
    /// endpoint must also be `host:port` with a numeric port. Strings are Rust strings, so
    /// they are valid Unicode already: a binding must refuse what is not (a lone surrogate, an
    /// invalid UTF-8 sequence) rather than rewrite it.
    pub fn check(self, s: &str) -> Result<(), String> {
        let what = self.what();
        if s.is_empty() && self != Text::ClientName {
            return Err(format!("{what} is empty"));
        }
        if s.len() > self.max_len() {
            return Err(format!(
                "{what} is {} bytes long; the limit is {}",
                s.len(),
                self.max_len()
            ));
        }
        if s.contains('\0') {
            return Err(format!("{what} {} contains a NUL byte", echo(s)));
        }
        if self == Text::Endpoint {
            let shape = s
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !shape {
                return Err(format!("endpoint {} is not host:port", echo(s)));
            }
        }
        Ok(())
    }
}

/// `s` quoted for an error message, cut after [`ECHO_CHARS`] characters with the total length
/// said, so that a huge value is never repeated whole.
pub fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_CHARS {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(ECHO_CHARS).collect();
    format!("{head:?}... ({} bytes)", s.len())
}

/// Checks a lock name (see [`Text::check`]).
pub fn validate_name(name: &str) -> Result<(), String> {
    Text::LockName.check(name)
}

/// A codec error: the connection that produced it must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix exceeds the reader's limit.
    TooLarge(usize),
    /// The payload does not decode as a message.
    Malformed(String),
    /// A message to send does not fit in a frame (its encoding exceeds [`MAX_FRAME`]).
    Unencodable(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
            FrameError::Unencodable(e) => write!(f, "message cannot be sent: {e}"),
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

/// Appends one framed message to `out`. A message whose encoding would exceed [`MAX_FRAME`]
/// is an error and leaves `out` as it was: every message that input can make large (a status,
/// a view, an error echoing a name) is bounded or paged so that it fits, and this error is the
/// backstop that turns a missed bound into a failed request instead of a crash.
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    use bincode::Options;
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = options().serialize_into(&mut *out, msg) {
        out.truncate(start);
        return Err(FrameError::Unencodable(e.to_string()));
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The encoded size of `msg`'s payload (without the length prefix), or `None` when it is
/// larger than [`MAX_FRAME`].
pub fn encoded_len<T: Serialize>(msg: &T) -> Option<usize> {
    use bincode::Options;
    options().serialized_size(msg).ok().map(|n| n as usize)
}

/// Decodes one payload (without its length prefix).
pub fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, FrameError> {
    use bincode::Options;
    options()
        .deserialize(payload)
        .map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Splits a byte stream into frames. Sans-IO: feed it what was read, take frames out.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    limit: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::with_limit(MAX_FRAME)
    }
}

impl FrameReader {
    /// An empty reader accepting frames of up to [`MAX_FRAME`] bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty reader accepting frames of up to `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            limit,
        }
    }

    /// Accepts frames of up to `limit` bytes from now on (a connection that turned out to be
    /// another member's).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Writes one frame of raw `payload` bytes (a length prefix, then the bytes).
    pub fn frame_raw(payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// True when a complete frame (or an oversized length prefix) is buffered.
    pub fn has_frame(&self) -> bool {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return false;
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        len > self.limit || avail.len() >= 4 + len
    }

    /// Appends bytes read from the connection. The buffer grows to what the frame being
    /// assembled needs (its length prefix says), not to the next power of two, so an
    /// unfinished frame holds about its own size.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let avail = self.buf.len() - self.start;
        let need = if avail >= 4 {
            let b = &self.buf[self.start..];
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            (4 + len.min(self.limit))
                .saturating_sub(avail)
                .max(bytes.len())
        } else {
            bytes.len()
        };
        self.buf.reserve_exact(need);
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete payload, if any. An oversized length prefix is an error.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            self.compact();
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > self.limit {
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
            encode(m, &mut bytes).unwrap();
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
        )
        .unwrap();
        let n = bad.len();
        bad[n - 9..n - 1].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut r = FrameReader::new();
        r.extend(&bad);
        let f = r.next_frame().unwrap().unwrap().to_vec();
        assert!(decode::<ClientMsg>(&f).is_err());
    }

    #[test]
    fn a_message_larger_than_a_frame_is_an_error_not_a_panic() {
        let mut out = vec![1, 2, 3];
        let big = ServerMsg::Reject {
            reason: "x".repeat(MAX_FRAME + 1),
        };
        assert!(matches!(
            encode(&big, &mut out),
            Err(FrameError::Unencodable(_))
        ));
        assert_eq!(out, vec![1, 2, 3], "nothing of it is left behind");
        assert_eq!(encoded_len(&big), None);
        let small = ServerMsg::Reject {
            reason: "no".into(),
        };
        encode(&small, &mut out).unwrap();
        assert_eq!(encoded_len(&small), Some(out.len() - 7));
    }

    #[test]
    fn a_request_reader_refuses_frames_over_its_limit() {
        let mut r = FrameReader::with_limit(MAX_REQUEST_FRAME);
        r.extend(&((MAX_REQUEST_FRAME + 1) as u32).to_be_bytes());
        assert!(r.has_frame());
        assert!(matches!(r.next_frame(), Err(FrameError::TooLarge(_))));
        // An unfinished frame holds about its own size, not the next power of two.
        let mut r = FrameReader::with_limit(MAX_REQUEST_FRAME);
        r.extend(&(60_000u32).to_be_bytes());
        for _ in 0..59 {
            r.extend(&[0u8; 1000]);
        }
        assert!(!r.has_frame());
        assert!(r.buf.capacity() < 61_000, "{}", r.buf.capacity());
    }

    #[test]
    fn endpoints_and_ids_are_checked() {
        assert!(Text::Endpoint.check("127.0.0.1:80").is_ok());
        assert!(Text::Endpoint.check("[::1]:80").is_ok());
        assert!(Text::Endpoint.check("host").is_err());
        assert!(Text::Endpoint.check("host:http").is_err());
        assert!(Text::Endpoint.check(":80").is_err());
        assert!(Text::MemberId.check("").is_err());
        assert!(Text::MemberId.check("a\0").is_err());
        assert!(Text::CandidateId
            .check(&"x".repeat(MAX_ID_LEN + 1))
            .is_err());
        assert!(Text::ClientName.check("").is_ok());
        let e = Text::ElectionName.check(&"x".repeat(2000)).unwrap_err();
        assert_eq!(e, "election name is 2000 bytes long; the limit is 1024");
        // A refused value is echoed cut short, whatever its size.
        let huge = format!("{}:http", "h".repeat(1 << 20));
        let e = Text::ClientName.check(&huge).unwrap_err();
        assert!(e.len() < 200, "{e}");
        assert!(e.starts_with("client name is 1048581 bytes long"), "{e}");
        let e = Text::Endpoint
            .check(&format!("{}\0", "h".repeat(200)))
            .unwrap_err();
        assert!(e.len() < 200 && e.contains("(201 bytes)"), "{e}");
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
