//! The gateway: one per connection of a session to an etcd member, speaking tenure's protocol
//! on its end of a socket pair and etcd's v3 API to the member (see [`super`] for the design
//! and [`super::keys`] for the key layout and the lock rule).
//!
//! Every request runs as a task of its own, so a waiting acquire holds up nothing else. An
//! answer etcd refuses for a reason tenure knows (a lease that does not exist) becomes the
//! matching error reply; any other failure of etcd (the member died, the stream ended) ends
//! the connection, as a failed tenure server would, so the session's own retry policy dials
//! the next endpoint and resends what was in flight. The gateway has no timeouts of its own
//! besides the handshake's: a member that stops answering is noticed by the session, whose
//! heartbeat goes unanswered, and which then drops the connection, ending the gateway and
//! everything it runs.

mod elections;
mod expiry;
mod groups;

use super::keys::{self, Entry, Existing};
use crate::proto::{
    self, ClientMsg, ErrorReply, FrameReader, Incarnation, LockInfo, MemberInfo, Notice, Reply,
    Request, ServerMsg, SessionId, SessionInfo, StatusInfo, Text, Token,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue,
    LeaseKeepAliveStream, LeaseKeeper, LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchFilterType, WatchOptions, WatchStream,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::AbortHandle;

/// Worker threads of the runtime that every gateway of the process runs on.
const WORKERS: usize = 2;

/// Keys ahead of a waiter whose deletion it can check in its grant's transaction (each is a
/// comparison; etcd allows 128 operations in a transaction by default). With more ahead, the
/// waiter reads the queue again when its predecessor goes.
const OLDER_KNOWN: usize = 8;

/// Sessions and locks a status reply lists at most (a reply is one frame).
pub const STATUS_LIMIT: i64 = 5_000;

/// The process's runtime for gateways, started by the first etcd connection.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("tenure-etcd")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| format!("cannot start the etcd runtime: {e}"))
}

/// Locks granted to each session of this process, by incarnation and session: what a new
/// connection of the session watches again, from each grant's revision.
type Granted = HashMap<(Incarnation, SessionId), HashMap<String, Token>>;

fn granted() -> &'static Mutex<Granted> {
    static G: OnceLock<Mutex<Granted>> = OnceLock::new();
    G.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Replies remembered per session, by incarnation and session: the last [`REPLY_WINDOW`] of
/// each session's requests that change something, so that a request resent on a new
/// connection (its reply was lost with the old one) is answered as the first attempt was,
/// not done twice, as a tenure server does with its window of remembered replies. The
/// gateway runs in the client's process, so the window outlives its connections.
type Replies = HashMap<(Incarnation, SessionId), VecDeque<(u64, Result<Reply, ErrorReply>)>>;

/// Replies remembered per session (see [`Replies`]).
pub const REPLY_WINDOW: usize = 64;

fn replies() -> &'static Mutex<Replies> {
    static R: OnceLock<Mutex<Replies>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Whether a request's reply is remembered: those under a session that change something.
/// (Reads are answered afresh; heartbeats must reach etcd; requests without a session carry
/// request ids that are only unique per client; a close ends the session and its window, and
/// closing again is harmless.)
fn remembered(session: SessionId, body: &Request) -> bool {
    session != 0
        && !matches!(
            body,
            Request::Heartbeat
                | Request::Close
                | Request::Status { .. }
                | Request::Master { .. }
                | Request::View { .. }
                | Request::Observe { .. }
                | Request::WatchGroup { .. }
                | Request::RequestElection { .. }
        )
}

/// See [`super::open`].
pub(super) fn open(addr: &str, step: Duration) -> Result<UnixStream, String> {
    let rt = runtime()?;
    let (mine, theirs) = UnixStream::pair().map_err(|e| format!("socket pair: {e}"))?;
    theirs
        .set_nonblocking(true)
        .map_err(|e| format!("socket pair: {e}"))?;
    let addr = addr.to_string();
    rt.spawn(async move {
        serve(theirs, addr, step).await;
    });
    Ok(mine)
}

/// An acquire in progress, as a cancel finds it.
struct Waiting {
    /// The lock's name.
    name: String,
    /// Tells the acquire to stop.
    cancel: Arc<Stop>,
    /// Ends (its sender is dropped) when the acquire's task has ended.
    done: watch::Receiver<()>,
}

/// A cancel's signal to its acquire: checked before each of its transactions, and awaited
/// while it waits.
#[derive(Default)]
struct Stop {
    set: std::sync::atomic::AtomicBool,
    wake: Notify,
}

impl Stop {
    fn fire(&self) {
        self.set.store(true, Ordering::Release);
        self.wake.notify_one();
    }
    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
}

/// Per session and lock name: the id of the last turn given out and what ends it.
type Chains = HashMap<(SessionId, String), (u64, oneshot::Receiver<()>)>;

/// A request's turn among the requests about one lock of one session ([`Gateway::turn`]);
/// dropping it lets the next one go.
struct Turn {
    key: (SessionId, String),
    id: u64,
    _tx: oneshot::Sender<()>,
}

/// Why a request got no reply of its own.
enum Fail {
    /// An error reply.
    Reply(ErrorReply),
    /// etcd failed: the connection ends (the text says why; it is for debugging only).
    Broken(#[allow(dead_code)] String),
}

impl From<etcd_client::Error> for Fail {
    fn from(e: etcd_client::Error) -> Fail {
        let s = e.to_string();
        if s.contains("lease not found") {
            Fail::Reply(ErrorReply::UnknownSession)
        } else {
            Fail::Broken(s)
        }
    }
}

fn invalid(s: String) -> Fail {
    Fail::Reply(ErrorReply::Invalid(s))
}

/// Reads one client message (the handshake's).
async fn read_msg(
    rd: &mut OwnedReadHalf,
    frames: &mut FrameReader,
    buf: &mut [u8],
) -> Option<ClientMsg> {
    loop {
        if let Some(f) = frames.next_frame().ok()? {
            return proto::decode(f).ok();
        }
        match rd.read(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => frames.extend(&buf[..n]),
        }
    }
}

async fn write_msg(wr: &mut OwnedWriteHalf, msg: &ServerMsg) -> Option<()> {
    let mut b = Vec::new();
    proto::encode(msg, &mut b).ok()?;
    wr.write_all(&b).await.ok()
}

/// Connects to the member and reads (or makes) the incarnation token.
async fn reach(addr: &str, step: Duration) -> Result<(Client, Incarnation), String> {
    let opts = ConnectOptions::new().with_connect_timeout(step);
    let mut c = Client::connect([format!("http://{addr}")], Some(opts))
        .await
        .map_err(|e| e.to_string())?;
    let k = keys::incarnation_key();
    let fresh = format!("{:032x}", fastrand::u128(1..));
    let t = Txn::new()
        .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(k.clone(), fresh.clone(), None)])
        .or_else([TxnOp::get(k, None)]);
    let r = c.txn(t).await.map_err(|e| e.to_string())?;
    let v = if r.succeeded() {
        fresh
    } else {
        let kv = first_kv(&r).ok_or("the incarnation key vanished")?;
        String::from_utf8_lossy(kv.value()).into_owned()
    };
    let inc = u128::from_str_radix(v.trim(), 16).map_err(|_| {
        format!(
            "{} holds something tenure did not write",
            keys::incarnation_key()
        )
    })?;
    Ok((c, inc))
}

/// Serves one connection until either side ends it.
async fn serve(sock: UnixStream, addr: String, step: Duration) {
    let Ok(sock) = tokio::net::UnixStream::from_std(sock) else {
        return;
    };
    let (mut rd, mut wr) = sock.into_split();
    let mut frames = FrameReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    match read_msg(&mut rd, &mut frames, &mut buf).await {
        Some(ClientMsg::Hello { magic, .. }) if magic == proto::MAGIC => {}
        _ => return,
    }
    let (etcd, incarnation) = match tokio::time::timeout(step, reach(&addr, step)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let reason = format!("etcd at {addr}: {e}");
            let _ = write_msg(&mut wr, &ServerMsg::Reject { reason }).await;
            return;
        }
        Err(_) => {
            let reason = format!("etcd at {addr} did not answer within {step:?}");
            let _ = write_msg(&mut wr, &ServerMsg::Reject { reason }).await;
            return;
        }
    };
    let welcome = ServerMsg::Welcome {
        version: proto::PROTOCOL_VERSION,
        incarnation,
    };
    if write_msg(&mut wr, &welcome).await.is_none() {
        return;
    }
    let (out, mut out_rx) = mpsc::unbounded_channel();
    let gw = Arc::new(Gateway {
        etcd,
        incarnation,
        out,
        broken: Notify::new(),
        waits: Mutex::new(HashMap::new()),
        watching: Mutex::new(HashMap::new()),
        tasks: Mutex::new(Vec::new()),
        attached: Mutex::new(HashSet::new()),
        keeper: tokio::sync::Mutex::new(None),
        elections: Mutex::new(HashMap::new()),
        groups: Mutex::new(HashMap::new()),
        evaluator: Mutex::new(crate::membership::Evaluator::new()),
        evaluating: Mutex::new(HashSet::new()),
        evaluations: Notify::new(),
        chains: Mutex::new(HashMap::new()),
        turns: AtomicU64::new(0),
    });
    'conn: loop {
        loop {
            match frames.next_frame() {
                Ok(Some(f)) => match proto::decode::<ClientMsg>(f) {
                    Ok(ClientMsg::Request { session, req, body }) => {
                        gw.dispatch(session, req, body)
                    }
                    _ => break 'conn,
                },
                Ok(None) => break,
                Err(_) => break 'conn,
            }
        }
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => frames.extend(&buf[..n]),
            },
            m = out_rx.recv() => match m {
                Some(m) => {
                    if write_msg(&mut wr, &m).await.is_none() {
                        break;
                    }
                }
                None => break,
            },
            _ = gw.broken.notified() => break,
        }
    }
    gw.stop();
}

/// The state of one connection.
struct Gateway {
    etcd: Client,
    incarnation: Incarnation,
    /// Replies and notices for the session, written in order by the connection's loop.
    out: mpsc::UnboundedSender<ServerMsg>,
    /// Set when etcd failed: the connection ends.
    broken: Notify,
    /// Acquires in progress, by request id: the lock's name and the task (once started).
    waits: Mutex<HashMap<u64, Waiting>>,
    /// The watch of each granted lock, by session and name.
    watching: Mutex<HashMap<(SessionId, String), AbortHandle>>,
    /// Every task of the connection, stopped with it.
    tasks: Mutex<Vec<AbortHandle>>,
    /// Sessions heard on this connection (whose granted locks are watched).
    attached: Mutex<HashSet<SessionId>>,
    /// The keep-alive stream of the session heard last.
    keeper: tokio::sync::Mutex<Option<(SessionId, LeaseKeeper, LeaseKeepAliveStream)>>,
    /// The elections this connection takes part in, by name.
    elections: Mutex<HashMap<String, elections::Participation>>,
    /// The groups this connection takes part in, by name.
    groups: Mutex<HashMap<String, groups::Participation>>,
    /// Probation of the probationary members of this connection's sessions.
    evaluator: Mutex<crate::membership::Evaluator>,
    /// (group, member) under evaluation here.
    evaluating: Mutex<HashSet<(String, String)>>,
    /// Wakes the group keepers: an evaluation started.
    evaluations: Notify,
    /// The last turn given out per session and lock ([`Gateway::turn`]).
    chains: Mutex<Chains>,
    turns: AtomicU64,
}

impl Gateway {
    fn etcd(&self) -> Client {
        self.etcd.clone()
    }

    /// Sends `notice` to each of `sessions` (on this connection).
    fn tell(&self, sessions: impl IntoIterator<Item = SessionId>, notice: Notice) {
        for session in sessions {
            let _ = self.out.send(ServerMsg::Notice {
                session,
                notice: notice.clone(),
            });
        }
    }

    fn track(&self, h: AbortHandle) {
        let mut t = self.tasks.lock();
        t.retain(|h| !h.is_finished());
        t.push(h);
    }

    /// The connection ended: stop everything it runs. What is in etcd stays (the session may
    /// go on through another connection).
    fn stop(&self) {
        for h in self.tasks.lock().drain(..) {
            h.abort();
        }
        self.watching.lock().clear();
        self.waits.lock().clear();
        self.elections.lock().clear();
        self.groups.lock().clear();
    }

    /// The turn of a request about lock `name` of `session`: it starts once the previous
    /// such request of this connection has ended its turn, so that a session's requests about
    /// one lock take effect in the order sent (a cancel before the acquire that follows it),
    /// as on a tenure server. A waiting acquire ends its turn once it is queued.
    fn turn(&self, session: SessionId, name: &str) -> (Option<oneshot::Receiver<()>>, Turn) {
        let (tx, rx) = oneshot::channel();
        let id = self.turns.fetch_add(1, Ordering::Relaxed);
        let key = (session, name.to_string());
        let prev = self.chains.lock().insert(key.clone(), (id, rx));
        (prev.map(|(_, r)| r), Turn { key, id, _tx: tx })
    }

    fn end_turn(&self, turn: Option<Turn>) {
        if let Some(t) = turn {
            let mut c = self.chains.lock();
            if c.get(&t.key).is_some_and(|(id, _)| *id == t.id) {
                c.remove(&t.key);
            }
        }
    }

    fn dispatch(self: &Arc<Self>, session: SessionId, req: u64, body: Request) {
        let remember = remembered(session, &body);
        if remember {
            let known = replies()
                .lock()
                .get(&(self.incarnation, session))
                .and_then(|w| w.iter().find(|(r, _)| *r == req).map(|(_, a)| a.clone()));
            if let Some(result) = known {
                let _ = self.out.send(ServerMsg::Reply {
                    session,
                    req,
                    result,
                });
                return;
            }
        }
        // A cancel does not abort its acquire (a transaction in flight would still land, and
        // leave a key behind): it tells it to stop waiting, waits for its task to end, and
        // then removes whatever key that acquire made.
        let mut cancelled = None;
        if let Request::Cancel { target } = &body {
            if let Some(w) = self.waits.lock().remove(target) {
                w.cancel.fire();
                cancelled = Some((w.name, w.done));
            }
        }
        let mut stop = None;
        let mut running = None;
        if let Request::Acquire { name, .. } = &body {
            let (tx, rx) = watch::channel(());
            let cancel = Arc::new(Stop::default());
            let w = Waiting {
                name: name.clone(),
                cancel: cancel.clone(),
                done: rx,
            };
            self.waits.lock().insert(req, w);
            stop = Some(cancel);
            running = Some(tx);
        }
        let about = match &body {
            Request::Acquire { name, .. } | Request::Release { name, .. } => Some(name.clone()),
            Request::Cancel { .. } => cancelled.as_ref().map(|(n, _)| n.clone()),
            _ => None,
        };
        let (prev, turn) = match about {
            Some(name) => {
                let (p, t) = self.turn(session, &name);
                (p, Some(t))
            }
            None => (None, None),
        };
        let gw = self.clone();
        let h = tokio::spawn(async move {
            let _running = running;
            if let Some(p) = prev {
                let _ = p.await;
            }
            let mut name = None;
            if let Some((n, mut done)) = cancelled {
                while done.changed().await.is_ok() {}
                name = Some(n);
            }
            let mut turn = turn;
            let result = gw.handle(session, req, body, name, stop, &mut turn).await;
            gw.end_turn(turn);
            gw.waits.lock().remove(&req);
            gw.finish(session, req, result, remember);
        });
        self.track(h.abort_handle());
    }

    fn finish(&self, session: SessionId, req: u64, result: Result<Reply, Fail>, remember: bool) {
        let result = match result {
            Ok(r) => Ok(r),
            Err(Fail::Reply(e)) => {
                if e == ErrorReply::UnknownSession {
                    self.forget(session);
                }
                Err(e)
            }
            Err(Fail::Broken(_)) => {
                self.broken.notify_one();
                return;
            }
        };
        if remember && result != Err(ErrorReply::UnknownSession) {
            let mut all = replies().lock();
            let w = all.entry((self.incarnation, session)).or_default();
            if w.len() >= REPLY_WINDOW {
                w.pop_front();
            }
            w.push_back((req, result.clone()));
        }
        let session = match &result {
            Ok(Reply::Opened { session, .. }) => *session,
            _ => session,
        };
        let _ = self.out.send(ServerMsg::Reply {
            session,
            req,
            result,
        });
    }

    async fn handle(
        self: &Arc<Self>,
        session: SessionId,
        req: u64,
        body: Request,
        cancelled: Option<String>,
        stop: Option<Arc<Stop>>,
        turn: &mut Option<Turn>,
    ) -> Result<Reply, Fail> {
        match body {
            Request::Open { ttl_ms } => return self.open_session(ttl_ms).await,
            Request::Status { .. } => return self.status().await,
            Request::Revoke { name } => return self.revoke(&name).await,
            Request::ChangeMembers { .. } => {
                return Err(invalid(
                    "an etcd cluster's members are changed with etcdctl, not tenure".into(),
                ))
            }
            _ if session == 0 => return Err(Fail::Reply(ErrorReply::UnknownSession)),
            _ => {}
        }
        self.attach(session);
        match body {
            Request::Heartbeat => self.heartbeat(session).await,
            Request::Acquire { name, wait } => {
                let stop = stop.unwrap_or_default();
                self.acquire(session, req, &name, wait, &stop, turn).await
            }
            Request::Cancel { target } => self.cancel(session, target, cancelled).await,
            Request::Release { name, token } => self.release(session, &name, token).await,
            Request::Close => self.close(session).await,
            Request::Campaign {
                election,
                id,
                priority,
                endpoint,
                preempt,
            } => {
                self.campaign(session, (election, id, priority, endpoint, preempt))
                    .await
            }
            Request::Resign { election, id } => self.resign(session, &election, &id).await,
            Request::Observe { election } => self.observe(session, &election, true).await,
            Request::Master { election } => self.observe(session, &election, false).await,
            Request::RequestElection { election } => self.request_election(&election).await,
            Request::Join {
                group,
                id,
                probation_ms,
                needs_check,
            } => {
                self.join(session, &group, &id, probation_ms, needs_check)
                    .await
            }
            Request::Leave { group, id } => self.leave(session, &group, &id).await,
            Request::ReportCheck { group, id, ok } => {
                self.report_check(session, &group, &id, ok).await
            }
            Request::Replace {
                group,
                failed,
                probationary,
            } => self.replace(&group, &failed, &probationary).await,
            Request::WatchGroup { group } | Request::View { group } => {
                self.watch_group(session, &group).await
            }
            Request::Open { .. }
            | Request::Status { .. }
            | Request::Revoke { .. }
            | Request::ChangeMembers { .. } => unreachable!("answered above"),
        }
    }

    /// The first request of `session` on this connection: watch again the locks it was
    /// granted, from their grant, so that a deletion while it was away is reported now.
    fn attach(self: &Arc<Self>, session: SessionId) {
        if !self.attached.lock().insert(session) {
            return;
        }
        let locks: Vec<(String, Token)> = granted()
            .lock()
            .get(&(self.incarnation, session))
            .map(|m| m.iter().map(|(n, t)| (n.clone(), *t)).collect())
            .unwrap_or_default();
        for (name, token) in locks {
            self.watch_grant(session, name, token);
        }
    }

    /// The session is gone: forget its grants, its remembered replies and its part in
    /// elections and groups.
    fn forget(&self, session: SessionId) {
        granted().lock().remove(&(self.incarnation, session));
        replies().lock().remove(&(self.incarnation, session));
        for p in self.elections.lock().values_mut() {
            p.leave(session);
        }
        for p in self.groups.lock().values_mut() {
            p.leave(session);
        }
        self.watching.lock().retain(|(s, _), h| {
            if *s == session {
                h.abort();
            }
            *s != session
        });
    }

    /// Records a grant and watches its key.
    fn grant(self: &Arc<Self>, session: SessionId, name: &str, token: Token) -> Reply {
        granted()
            .lock()
            .entry((self.incarnation, session))
            .or_default()
            .insert(name.to_string(), token);
        self.watch_grant(session, name.to_string(), token);
        Reply::Granted {
            name: name.to_string(),
            token,
        }
    }

    /// The session gave the lock up: forget the grant and stop its watch.
    fn ungrant(&self, session: SessionId, name: &str) {
        if let Some(m) = granted().lock().get_mut(&(self.incarnation, session)) {
            m.remove(name);
        }
        if let Some(h) = self.watching.lock().remove(&(session, name.to_string())) {
            h.abort();
        }
    }

    fn watch_grant(self: &Arc<Self>, session: SessionId, name: String, token: Token) {
        let gw = self.clone();
        let n = name.clone();
        let h = tokio::spawn(async move {
            gw.watch_own(session, n, token).await;
        });
        if let Some(old) = self
            .watching
            .lock()
            .insert((session, name), h.abort_handle())
        {
            old.abort();
        }
        self.track(h.abort_handle());
    }

    /// Watches a granted lock's key from its grant until it is deleted, then tells the
    /// session: the lock was revoked (`released`), or, when the session's lease is gone with
    /// it, ends the connection so that the session learns its end from its next heartbeat.
    async fn watch_own(self: &Arc<Self>, session: SessionId, name: String, token: Token) {
        let key = keys::lock_key(&name, session);
        let mut from = token as i64 + 1;
        let mut c = self.etcd();
        loop {
            let opts = WatchOptions::new()
                .with_start_revision(from)
                .with_filters([WatchFilterType::NoPut]);
            let Ok((_w, mut s)) = c.watch(key.clone(), Some(opts)).await else {
                self.broken.notify_one();
                return;
            };
            let gone = loop {
                match s.message().await {
                    Ok(Some(r)) => {
                        if r.events()
                            .iter()
                            .any(|e| e.event_type() == EventType::Delete)
                        {
                            break true;
                        }
                        if r.canceled() {
                            // Compacted past the grant: read the key instead.
                            break false;
                        }
                    }
                    _ => {
                        self.broken.notify_one();
                        return;
                    }
                }
            };
            if !gone {
                match c.get(key.clone(), None).await {
                    Ok(g) => match g.kvs().first() {
                        Some(kv) if kv.mod_revision() as Token == token => {
                            from = g.header().map_or(from, |h| h.revision() + 1);
                            continue;
                        }
                        _ => {}
                    },
                    Err(_) => {
                        self.broken.notify_one();
                        return;
                    }
                }
            }
            break;
        }
        if let Some(m) = granted().lock().get_mut(&(self.incarnation, session)) {
            if m.get(&name) == Some(&token) {
                m.remove(&name);
            }
        }
        self.watching.lock().remove(&(session, name.clone()));
        match self.lease_alive(session).await {
            Ok(()) => {
                let _ = self.out.send(ServerMsg::Notice {
                    session,
                    notice: Notice::LockRevoked { name, token },
                });
            }
            Err(_) => self.broken.notify_one(),
        }
    }

    /// Ok while the session's lease exists. (etcd answers -1 for a lease it does not have, and
    /// the remaining whole seconds, so 0 in the last second, for one it has.)
    async fn lease_alive(&self, session: SessionId) -> Result<(), Fail> {
        let r = self.etcd().lease_time_to_live(session as i64, None).await?;
        if r.ttl() >= 0 {
            Ok(())
        } else {
            Err(Fail::Reply(ErrorReply::UnknownSession))
        }
    }

    async fn open_session(&self, ttl_ms: u64) -> Result<Reply, Fail> {
        crate::server::state::check_ttl(ttl_ms).map_err(invalid)?;
        let mut c = self.etcd();
        let g = c.lease_grant(keys::lease_seconds(ttl_ms), None).await?;
        let ttl_ms = g.ttl() as u64 * 1000;
        let put = PutOptions::new().with_lease(g.id());
        c.put(
            keys::session_key(g.id() as SessionId),
            ttl_ms.to_string(),
            Some(put),
        )
        .await?;
        Ok(Reply::Opened {
            session: g.id() as SessionId,
            ttl_ms,
        })
    }

    async fn heartbeat(&self, session: SessionId) -> Result<Reply, Fail> {
        let mut k = self.keeper.lock().await;
        if k.as_ref().map(|x| x.0) != Some(session) {
            let (keeper, stream) = self.etcd().lease_keep_alive(session as i64).await?;
            *k = Some((session, keeper, stream));
        }
        let Some((_, keeper, stream)) = k.as_mut() else {
            unreachable!("set above")
        };
        // The keep-alive and the session key's write (see [`expiry`]), side by side: the
        // session lives on only when both are done.
        let kept = async {
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(r) if r.ttl() > 0 => Ok(()),
                Some(_) => Err(Fail::Reply(ErrorReply::UnknownSession)),
                None => Err(Fail::Broken("etcd ended the keep-alive stream".into())),
            }
        };
        let mut c = self.etcd();
        let written = c.txn(Self::heartbeat_write(session));
        let (kept, written) = tokio::join!(kept, written);
        kept?;
        if !written?.succeeded() {
            // A waiter ended the session (it was silent for its TTL): its lease goes too.
            let _ = c.lease_revoke(session as i64).await;
            return Err(Fail::Reply(ErrorReply::UnknownSession));
        }
        self.evaluator
            .lock()
            .heard(session, std::time::Instant::now());
        Ok(Reply::Alive)
    }

    /// Acquire: take the lock if its directory is empty, else (waiting) join the queue, in one
    /// transaction; or find the key a resent request made. A waiter then waits for the keys
    /// ahead of it to go, and writes the grant.
    ///
    /// A waiter watches the lock's deletions *before* that transaction, from the current
    /// revision: etcd serves a watch that starts in the past (as one made after a read must,
    /// to miss nothing) from a loop that runs every 100 ms, which is where its own recipes'
    /// hand-over cliff comes from. It costs an uncontended waiting acquire one round trip.
    async fn acquire(
        self: &Arc<Self>,
        session: SessionId,
        req: u64,
        name: &str,
        wait: bool,
        stop: &Stop,
        turn: &mut Option<Turn>,
    ) -> Result<Reply, Fail> {
        Text::LockName.check(name).map_err(invalid)?;
        if stop.is_set() {
            // Cancelled before it began: nothing to undo.
            return Ok(Reply::Done);
        }
        let dir = keys::lock_dir(name);
        let key = keys::lock_key(name, session);
        let lease = PutOptions::new().with_lease(session as i64);
        let mut c = self.etcd();
        let mut deletions = if wait {
            let opts = WatchOptions::new()
                .with_prefix()
                .with_filters([WatchFilterType::NoPut]);
            Some(c.watch(dir.clone(), Some(opts)).await?)
        } else {
            None
        };
        let held = TxnOp::put(key.clone(), Entry::Held(req).value(), Some(lease.clone()));
        let mut otherwise = vec![TxnOp::get(key.clone(), None)];
        if wait {
            otherwise.push(TxnOp::txn(self.enqueue_txn(&dir, &key, req, &lease)));
        }
        let t = Txn::new()
            .when([Compare::create_revision(dir.clone(), CompareOp::Equal, 0).with_prefix()])
            .and_then([held])
            .or_else(otherwise);
        let r = c.txn(t).await?;
        if r.succeeded() {
            return Ok(self.grant(session, name, revision(&r)));
        }
        let ops = r.op_responses();
        let existing = match ops.first() {
            Some(TxnOpResponse::Get(g)) => g.kvs().first().cloned(),
            _ => None,
        };
        let (mut mine, mut older, mut at) = match existing {
            Some(kv) => match keys::existing(req, Entry::parse(kv.value()), kv.mod_revision()) {
                Existing::Granted(token) => return Ok(self.grant(session, name, token)),
                Existing::AlreadyHeld => return Err(Fail::Reply(ErrorReply::AlreadyHeld)),
                Existing::Waiting => {
                    let (older, at) = self.ahead(&dir, kv.create_revision()).await?;
                    (kv.create_revision(), older, at)
                }
            },
            // Taken or queued for: a try is answered at once.
            None if !wait => return Ok(Reply::Busy),
            None => match ops.get(1) {
                Some(TxnOpResponse::Txn(q)) if q.succeeded() => queued(q, revision(&r) as i64),
                _ => return Err(Fail::Reply(ErrorReply::AlreadyHeld)),
            },
        };
        // Queued: the session's next request about this lock may go.
        self.end_turn(turn.take());
        let Some((_w, deletions)) = deletions.as_mut() else {
            unreachable!("a waiting acquire watches")
        };
        loop {
            if older.is_empty() {
                // First in the queue: the lock is ours. Written as granted unless our key went
                // meanwhile (the lease ended, or someone deleted it).
                if let Some(token) = self.mark_held(&key, mine, &[], req, session).await? {
                    return Ok(self.grant(session, name, token));
                }
                (mine, older, at) = self.requeue(&dir, &key, req, &lease, session).await?;
                continue;
            }
            let known = older.len() <= OLDER_KNOWN;
            let mut ahead: HashSet<Vec<u8>> = older.iter().map(|(k, _)| k.clone()).collect();
            let mut lost_place = false;
            // Next in line: end the head's session once it has been silent for its TTL
            // ([`expiry`]). Should that fail, etcd still ends its lease, later.
            let mut watching_head = older.len() == 1;
            let head = older.first().cloned().unwrap_or_default();
            let silent = self.expire_silent(&head.0, head.1);
            tokio::pin!(silent);
            // Until every known key ahead is gone (or, with more ahead than known, any), or
            // ours is (the lease ended, or someone deleted it).
            'wait: loop {
                let m = tokio::select! {
                    m = deletions.message() => m?,
                    // Cancelled: the cancel removes our key once this task has ended.
                    _ = stop.wake.notified() => return Ok(Reply::Done),
                    // Ended or failed: either way, the head's key going is seen on the watch.
                    _ = &mut silent, if watching_head => {
                        watching_head = false;
                        continue;
                    }
                };
                let Some(m) = m else {
                    return Err(Fail::Broken("etcd ended a watch".into()));
                };
                if m.canceled() {
                    // Compacted or refused: read the queue again, and watch anew.
                    return Err(Fail::Broken("etcd cancelled a watch".into()));
                }
                for e in m.events() {
                    let Some(kv) = e.kv() else { continue };
                    if kv.mod_revision() <= at {
                        continue;
                    }
                    if kv.key() == key.as_bytes() {
                        lost_place = true;
                        break 'wait;
                    }
                    if ahead.remove(kv.key()) && !known {
                        break 'wait;
                    }
                }
                if ahead.is_empty() {
                    break;
                }
            }
            if lost_place {
                (mine, older, at) = self.requeue(&dir, &key, req, &lease, session).await?;
                continue;
            }
            if known && ahead.is_empty() {
                // Every key that was ahead is gone: the grant needs no read first (a
                // hand-over costs one watch event and one write).
                if let Some(token) = self.mark_held(&key, mine, &older, req, session).await? {
                    return Ok(self.grant(session, name, token));
                }
            }
            (older, at) = self.ahead(&dir, mine).await?;
        }
    }

    /// The transaction that queues `key` for acquire `req` (unless it is there) and reads the
    /// keys ahead of it (see [`queued`]).
    fn enqueue_txn(&self, dir: &str, key: &str, req: u64, lease: &PutOptions) -> Txn {
        let ahead = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_keys_only()
            .with_limit(OLDER_KNOWN as i64 + 2);
        Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key, Entry::Waiting(req).value(), Some(lease.clone())),
                TxnOp::get(dir, Some(ahead)),
            ])
    }

    /// Our key went while we waited: if the session lives, queue again at the back.
    async fn requeue(
        &self,
        dir: &str,
        key: &str,
        req: u64,
        lease: &PutOptions,
        session: SessionId,
    ) -> Result<(i64, Vec<(Vec<u8>, i64)>, i64), Fail> {
        self.lease_alive(session).await?;
        let r = self
            .etcd()
            .txn(self.enqueue_txn(dir, key, req, lease))
            .await?;
        if !r.succeeded() {
            return Err(Fail::Reply(ErrorReply::AlreadyHeld));
        }
        Ok(queued(&r, revision(&r) as i64))
    }

    /// The keys created before ours (at `mine`), newest first: up to OLDER_KNOWN + 1 of them,
    /// so that when there are fewer the whole set is known; and the revision read at.
    async fn ahead(&self, dir: &str, mine: i64) -> Result<(Vec<(Vec<u8>, i64)>, i64), Fail> {
        let before = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_max_create_revision(mine - 1)
            .with_keys_only()
            .with_limit(OLDER_KNOWN as i64 + 1);
        let g = self.etcd().get(dir, Some(before)).await?;
        let at = g.header().map_or(0, |h| h.revision());
        let older = g
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.create_revision()))
            .collect();
        Ok((older, at))
    }

    /// Writes the grant of our queue key (created at `mine`) if it is still there and every
    /// key of `older` (key, creation revision) is gone (or was made again, after ours). The
    /// grant's revision, or `None` when the transaction did not hold.
    async fn mark_held(
        &self,
        key: &str,
        mine: i64,
        older: &[(Vec<u8>, i64)],
        req: u64,
        session: SessionId,
    ) -> Result<Option<Token>, Fail> {
        let mut when = vec![Compare::create_revision(key, CompareOp::Equal, mine)];
        for (k, created) in older {
            when.push(Compare::create_revision(
                k.clone(),
                CompareOp::NotEqual,
                *created,
            ));
        }
        let t = Txn::new().when(when).and_then([TxnOp::put(
            key,
            Entry::Held(req).value(),
            Some(PutOptions::new().with_lease(session as i64)),
        )]);
        let r = self.etcd().txn(t).await?;
        Ok(r.succeeded().then(|| revision(&r)))
    }

    /// Cancel: the acquire `target` is given up; its key goes, whether it waited or was
    /// granted meanwhile. `name` is the lock's, when this connection ran the acquire; else
    /// the session's keys are searched for the one `target` made.
    async fn cancel(
        &self,
        session: SessionId,
        target: u64,
        name: Option<String>,
    ) -> Result<Reply, Fail> {
        let mut c = self.etcd();
        let keys: Vec<Vec<u8>> = match name {
            Some(n) => vec![keys::lock_key(&n, session).into_bytes()],
            None => {
                let r = c
                    .lease_time_to_live(
                        session as i64,
                        Some(LeaseTimeToLiveOptions::new().with_keys()),
                    )
                    .await?;
                r.keys().to_vec()
            }
        };
        for k in keys {
            let Some((name, _)) = std::str::from_utf8(&k).ok().and_then(keys::parse_lock_key)
            else {
                continue;
            };
            let g = c.get(k.clone(), None).await?;
            let Some(kv) = g.kvs().first() else { continue };
            if Entry::parse(kv.value()).map(Entry::req) != Some(target) {
                continue;
            }
            self.ungrant(session, &name);
            let t = Txn::new()
                .when([Compare::mod_revision(
                    k.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(k, None)]);
            c.txn(t).await?;
            break;
        }
        Ok(Reply::Done)
    }

    async fn release(&self, session: SessionId, name: &str, token: Token) -> Result<Reply, Fail> {
        Text::LockName.check(name).map_err(invalid)?;
        self.ungrant(session, name);
        let key = keys::lock_key(name, session);
        let t = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                token as i64,
            )])
            .and_then([TxnOp::delete(key.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let r = self.etcd().txn(t).await?;
        // A key already gone was released (a resend whose first attempt did it) or taken
        // away (the holder is told by its watch): either way there is nothing to give up.
        if r.succeeded() || first_kv(&r).is_none() {
            Ok(Reply::Done)
        } else {
            Err(Fail::Reply(ErrorReply::NotHolder))
        }
    }

    async fn close(&self, session: SessionId) -> Result<Reply, Fail> {
        // Stop the watches first: the revocation deletes the keys they watch.
        self.forget(session);
        match self.etcd().lease_revoke(session as i64).await {
            Ok(_) => Ok(Reply::Done),
            Err(e) => match Fail::from(e) {
                Fail::Reply(ErrorReply::UnknownSession) => Ok(Reply::Done),
                f => Err(f),
            },
        }
    }

    /// Revoke: delete whichever key holds the lock; its session is told by its own watch.
    async fn revoke(&self, name: &str) -> Result<Reply, Fail> {
        Text::LockName.check(name).map_err(invalid)?;
        let mut c = self.etcd();
        loop {
            let first = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1);
            let g = c.get(keys::lock_dir(name), Some(first)).await?;
            let Some(kv) = g.kvs().first() else {
                return Err(invalid(format!("no lock {} is held", proto::echo(name))));
            };
            let t = Txn::new()
                .when([Compare::mod_revision(
                    kv.key().to_vec(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(kv.key().to_vec(), None)]);
            if c.txn(t).await?.succeeded() {
                return Ok(Reply::Done);
            }
        }
    }

    /// Status: sessions, locks, elections and groups from their keys (at most
    /// [`STATUS_LIMIT`] keys of each kind, and what fits one page: [`fit_page`]), and etcd's
    /// members.
    async fn status(&self) -> Result<Reply, Fail> {
        let mut c = self.etcd();
        let s = c
            .get(
                keys::sessions_dir(),
                Some(GetOptions::new().with_prefix().with_limit(STATUS_LIMIT)),
            )
            .await?;
        let sessions = s
            .kvs()
            .iter()
            .filter_map(|kv| {
                let id = keys::parse_session_key(kv.key_str().ok()?)?;
                let ttl_ms = kv.value_str().ok()?.parse().ok()?;
                Some(SessionInfo { id, ttl_ms })
            })
            .collect();
        let l = c
            .get(
                keys::locks_dir(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Create, SortOrder::Ascend)
                        .with_limit(STATUS_LIMIT),
                ),
            )
            .await?;
        let mut locks: BTreeMap<String, LockInfo> = BTreeMap::new();
        for kv in l.kvs() {
            let Some((name, lease)) = kv.key_str().ok().and_then(keys::parse_lock_key) else {
                continue;
            };
            match locks.get_mut(&name) {
                Some(info) => info.waiters.push(lease),
                None => {
                    let info = LockInfo {
                        name: name.clone(),
                        holder: lease,
                        token: kv.mod_revision() as Token,
                        waiters: vec![],
                    };
                    locks.insert(name, info);
                }
            }
        }
        let st = c.status().await?;
        let leader = st.leader();
        let members = c
            .member_list()
            .await?
            .members()
            .iter()
            .map(|m| MemberInfo {
                id: m.id(),
                address: m.client_urls().join(","),
                role: if m.is_learner() {
                    "learner"
                } else if m.id() == leader {
                    "leader"
                } else {
                    "follower"
                }
                .into(),
            })
            .collect::<Vec<_>>();
        let mut st = StatusInfo {
            incarnation: self.incarnation,
            revision: l.header().map_or(0, |h| h.revision()) as u64,
            sessions,
            locks: locks.into_values().collect(),
            elections: self.election_status().await?,
            groups: self.group_status().await?,
            next: None,
            leader: members.iter().find(|m| m.id == leader).cloned(),
            members,
        };
        fit_page(&mut st);
        Ok(Reply::Status(st))
    }
}

/// Shortens a status until it fits one page ([`proto::STATUS_PAGE_BYTES`]) by dropping the
/// last entries of its longest list: the etcd backend answers status in one page (with a
/// thousand locks of long names, what does not fit is left out rather than the connection
/// broken by a frame too large).
fn fit_page(st: &mut StatusInfo) {
    // (No size at all: larger than a frame.)
    while proto::encoded_len(st).map_or(true, |n| n > proto::STATUS_PAGE_BYTES) {
        let lens = [
            st.sessions.len(),
            st.locks.len(),
            st.elections.len(),
            st.groups.len(),
        ];
        let longest = (0..4).max_by_key(|&i| lens[i]).unwrap_or(0);
        if lens[longest] == 0 {
            return;
        }
        let cut = lens[longest] - (lens[longest] / 8).max(1);
        match longest {
            0 => st.sessions.truncate(cut),
            1 => st.locks.truncate(cut),
            2 => st.elections.truncate(cut),
            _ => st.groups.truncate(cut),
        }
    }
}

/// Our place in a queue from the response of [`Gateway::enqueue_txn`] written at revision
/// `mine`: the creation revision, the keys ahead (newest first, ours left out) and the
/// revision they were read at.
fn queued(r: &TxnResponse, mine: i64) -> (i64, Vec<(Vec<u8>, i64)>, i64) {
    let older = r
        .op_responses()
        .into_iter()
        .find_map(|op| match op {
            TxnOpResponse::Get(g) => Some(
                g.kvs()
                    .iter()
                    .filter(|kv| kv.create_revision() < mine)
                    .map(|kv| (kv.key().to_vec(), kv.create_revision()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default();
    (mine, older, mine)
}

/// How a wait for a change ended ([`next_change`]).
enum Woke {
    /// Something changed after what was read.
    Changed,
    /// The time given passed, or the nudge fired.
    Timer,
    /// etcd cancelled the watch: watch again (then read again).
    Rewatch,
}

/// Waits for an event of watch `s` after revision `after` (earlier ones are in what was read
/// already), or until `until`, or until `nudge` fires. The watch must have been made before
/// the read, from the then current revision (never from the past: etcd serves those from a
/// loop that runs every 100 ms).
async fn next_change(
    s: &mut WatchStream,
    after: i64,
    until: Option<std::time::Instant>,
    mut nudge: Option<std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>>,
) -> Result<Woke, Fail> {
    let deadline = until.map(tokio::time::Instant::from_std);
    loop {
        let nudged = async {
            match nudge.as_mut() {
                Some(n) => n.as_mut().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = s.message() => match m? {
                Some(r) if r.canceled() => return Ok(Woke::Rewatch),
                Some(r) if r
                    .events()
                    .iter()
                    .any(|e| e.kv().is_some_and(|kv| kv.mod_revision() > after)) =>
                {
                    return Ok(Woke::Changed)
                }
                Some(_) => {}
                None => return Err(Fail::Broken("etcd ended a watch".into())),
            },
            _ = timer => return Ok(Woke::Timer),
            _ = nudged => return Ok(Woke::Timer),
        }
    }
}

/// The revision a transaction wrote at.
fn revision(r: &TxnResponse) -> Token {
    r.header().map_or(0, |h| h.revision()) as Token
}

/// The first key a transaction's first read found.
fn first_kv(r: &TxnResponse) -> Option<KeyValue> {
    r.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_too_large_for_a_page_is_shortened_to_fit() {
        let mut st = StatusInfo::default();
        for i in 0..3000 {
            st.locks.push(LockInfo {
                name: format!("{i:01000}"),
                holder: i,
                token: i,
                waiters: vec![],
            });
        }
        st.sessions = (0..100)
            .map(|id| SessionInfo { id, ttl_ms: 1000 })
            .collect();
        fit_page(&mut st);
        let n = proto::encoded_len(&st).unwrap();
        assert!(n <= proto::STATUS_PAGE_BYTES, "{n}");
        assert!(st.locks.len() > 500 && st.locks.len() < 3000);
        assert_eq!(
            st.sessions.len(),
            100,
            "the longest list is shortened first"
        );
    }
}
