//! Elections on etcd: candidates are keys under the candidate's lease, the master cache is one
//! key whose modification revision is the epoch ([`super::keys`]). There is no server to
//! designate masters, so every gateway taking part in an election runs an *elector* for it:
//! it reads the election at one revision, applies the rules of [`crate::election`] (through
//! [`keys::decide`]) and, when they call for a change, writes the master cache in a
//! transaction that holds only if the cache and the designated candidate are still as it read
//! them. Electors of different processes race; one transaction wins and the others read the
//! result. Every change of the cache is told to the sessions of this connection that take
//! part, as a `master_changed` notice.

use super::{keys, Fail, Gateway};
use crate::etcd::keys::{CandidateRecord, Decision, MasterRecord};
use crate::proto::{ErrorReply, MasterInfo, Notice, Reply, SessionId, Text};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// One election this connection takes part in.
pub(super) struct Participation {
    /// Sessions told of every change (candidates and observers).
    sessions: HashSet<SessionId>,
    /// Of those, the ones that asked to observe.
    observers: HashSet<SessionId>,
    /// The elector's latest reading.
    latest: watch::Receiver<Option<Snapshot>>,
    task: AbortHandle,
}

impl Participation {
    /// `session` takes no more part (its session ended).
    pub(super) fn leave(&mut self, session: SessionId) {
        self.sessions.remove(&session);
        self.observers.remove(&session);
    }
}

impl Drop for Participation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An election as an elector last read it.
#[derive(Clone)]
pub(super) struct Snapshot {
    info: MasterInfo,
    /// The cache names a current candidate.
    live: bool,
    candidates: usize,
    revision: i64,
}

/// An election read at one revision.
struct Read {
    candidates: Vec<(CandidateRecord, i64)>,
    master: MasterRecord,
    epoch: u64,
    revision: i64,
}

impl Read {
    fn info(&self) -> MasterInfo {
        MasterInfo {
            epoch: self.epoch,
            master: self.master.master.as_ref().map(|id| {
                let endpoint = self
                    .candidates
                    .iter()
                    .find(|(c, _)| &c.id == id)
                    .and_then(|(c, _)| c.endpoint.clone());
                (id.clone(), endpoint)
            }),
        }
    }
}

impl Gateway {
    async fn read_election(&self, name: &str) -> Result<Read, Fail> {
        let g = self
            .etcd()
            .get(
                keys::election_dir(name),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut r = Read {
            candidates: vec![],
            master: MasterRecord::default(),
            epoch: 0,
            revision: g.header().map_or(0, |h| h.revision()),
        };
        for kv in g.kvs() {
            match kv.key_str().ok().and_then(keys::parse_election_key) {
                Some((_, None)) => {
                    r.master = serde_json::from_slice(kv.value()).unwrap_or_default();
                    r.epoch = kv.mod_revision() as u64;
                }
                Some((_, Some(_))) => {
                    if let Ok(c) = serde_json::from_slice::<CandidateRecord>(kv.value()) {
                        r.candidates.push((c, kv.create_revision()));
                    }
                }
                None => {}
            }
        }
        Ok(r)
    }

    /// Adds `session` (if any) to election `name`'s participants, starting its elector if
    /// this connection had none; returns the elector's readings.
    fn participate(
        self: &Arc<Self>,
        name: &str,
        session: Option<SessionId>,
        observer: bool,
    ) -> watch::Receiver<Option<Snapshot>> {
        let mut all = self.elections.lock();
        let p = all.entry(name.to_string()).or_insert_with(|| {
            let (tx, rx) = watch::channel(None);
            let gw = self.clone();
            let n = name.to_string();
            let h = tokio::spawn(async move { gw.elector(n, tx).await });
            self.track(h.abort_handle());
            Participation {
                sessions: HashSet::new(),
                observers: HashSet::new(),
                latest: rx,
                task: h.abort_handle(),
            }
        });
        if let Some(s) = session {
            p.sessions.insert(s);
            if observer {
                p.observers.insert(s);
            }
        }
        p.latest.clone()
    }

    /// The elector's first reading at or after `revision`.
    async fn snapshot_after(
        rx: &mut watch::Receiver<Option<Snapshot>>,
        revision: i64,
        until: impl Fn(&Snapshot) -> bool,
    ) -> Result<Snapshot, Fail> {
        let r = rx
            .wait_for(|s| {
                s.as_ref()
                    .is_some_and(|s| s.revision >= revision && until(s))
            })
            .await
            .map_err(|_| Fail::Broken("the elector ended".into()))?;
        Ok(r.clone().expect("checked above"))
    }

    /// Runs election `name` for this connection: read, decide, write, then wait for the next
    /// change (or a step-down's end, or a retry of failed checks). The watch is made before
    /// the first read and kept ([`super::next_change`]).
    async fn elector(self: Arc<Self>, name: String, tx: watch::Sender<Option<Snapshot>>) {
        let mut c = self.etcd();
        let (mut failed, mut checked) = (BTreeSet::new(), BTreeSet::new());
        let mut stepdown: Option<(u64, Instant)> = None;
        let mut told = None;
        let mut retry_at: Option<Instant> = None;
        'watch: loop {
            let opts = WatchOptions::new().with_prefix();
            let Ok((_w, mut s)) = c.watch(keys::election_dir(&name), Some(opts)).await else {
                self.broken.notify_one();
                return;
            };
            loop {
                let Ok(r) = self.read_election(&name).await else {
                    self.broken.notify_one();
                    return;
                };
                let info = r.info();
                let live = r
                    .master
                    .master
                    .as_ref()
                    .is_some_and(|m| r.candidates.iter().any(|(c, _)| &c.id == m));
                tx.send_replace(Some(Snapshot {
                    info: info.clone(),
                    live,
                    candidates: r.candidates.len(),
                    revision: r.revision,
                }));
                if told != Some(r.epoch) {
                    told = Some(r.epoch);
                    failed.clear();
                    checked.clear();
                    retry_at = None;
                    let sessions: Vec<SessionId> = self
                        .elections
                        .lock()
                        .get(&name)
                        .map(|p| p.sessions.iter().copied().collect())
                        .unwrap_or_default();
                    let election = name.clone();
                    self.tell(sessions, Notice::MasterChanged { election, info });
                }
                if retry_at.is_some_and(|t| Instant::now() >= t) {
                    failed.clear();
                    retry_at = None;
                }
                let mut wake = retry_at;
                let over = if r.master.master.is_none() && r.master.wait_ms > 0 {
                    let seen = match stepdown {
                        Some((e, t)) if e == r.epoch => t,
                        _ => Instant::now(),
                    };
                    stepdown = Some((r.epoch, seen));
                    let end = seen + Duration::from_millis(r.master.wait_ms);
                    if Instant::now() < end {
                        wake = Some(wake.map_or(end, |w| w.min(end)));
                        false
                    } else {
                        true
                    }
                } else {
                    false
                };
                let cands: Vec<CandidateRecord> =
                    r.candidates.iter().map(|(c, _)| c.clone()).collect();
                match keys::decide(&cands, &r.master, r.epoch, over, &failed, &checked) {
                    Decision::Keep | Decision::WaitStepDown => {}
                    Decision::Write(rec) => {
                        if self.write_master(&name, &r, &rec).await.is_err() {
                            self.broken.notify_one();
                            return;
                        }
                        continue;
                    }
                    Decision::Check { id, endpoint } => {
                        if reachable(&endpoint).await {
                            checked.insert(id);
                        } else {
                            failed.insert(id);
                            retry_at =
                                Some(Instant::now() + crate::server::node::DESIGNATION_RETRY);
                        }
                        continue;
                    }
                }
                match super::next_change(&mut s, r.revision, wake, None).await {
                    Ok(super::Woke::Rewatch) => continue 'watch,
                    Ok(_) => {}
                    Err(_) => {
                        self.broken.notify_one();
                        return;
                    }
                }
            }
        }
    }

    /// Writes the master cache `rec` if the cache and the designated candidate are still as
    /// `r` read them.
    async fn write_master(&self, name: &str, r: &Read, rec: &MasterRecord) -> Result<(), Fail> {
        let mkey = keys::master_key(name);
        let mut when = vec![Compare::mod_revision(
            mkey.clone(),
            CompareOp::Equal,
            r.epoch as i64,
        )];
        if let Some(id) = &rec.master {
            let created = r
                .candidates
                .iter()
                .find(|(c, _)| &c.id == id)
                .map_or(0, |(_, rev)| *rev);
            when.push(Compare::create_revision(
                keys::candidate_key(name, id),
                CompareOp::Equal,
                created,
            ));
        }
        let value = serde_json::to_string(rec).unwrap_or_default();
        let t = Txn::new()
            .when(when)
            .and_then([TxnOp::put(mkey, value, None)]);
        self.etcd().txn(t).await?;
        Ok(())
    }

    pub(super) async fn campaign(
        self: &Arc<Self>,
        session: SessionId,
        body: (String, String, i64, Option<String>, bool),
    ) -> Result<Reply, Fail> {
        let (election, id, priority, endpoint, preempt) = body;
        Text::ElectionName
            .check(&election)
            .map_err(super::invalid)?;
        Text::CandidateId.check(&id).map_err(super::invalid)?;
        if let Some(e) = &endpoint {
            Text::Endpoint.check(e).map_err(super::invalid)?;
        }
        let mut c = self.etcd();
        let ttl = c.lease_time_to_live(session as i64, None).await?;
        if ttl.ttl() < 0 {
            return Err(Fail::Reply(ErrorReply::UnknownSession));
        }
        let rec = CandidateRecord {
            id: id.clone(),
            priority,
            endpoint,
            session,
            preempt,
            ttl_ms: ttl.granted_ttl().max(0) as u64 * 1000,
        };
        let key = keys::candidate_key(&election, &id);
        let value = serde_json::to_string(&rec).unwrap_or_default();
        let lease = PutOptions::new().with_lease(session as i64);
        // Registered anew, or again by the same session (a resend, or a changed priority).
        let t = Txn::new()
            .when([Compare::lease(
                key.clone(),
                CompareOp::Equal,
                session as i64,
            )])
            .and_then([TxnOp::put(key.clone(), value.clone(), Some(lease.clone()))])
            .or_else([TxnOp::txn(
                Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), value, Some(lease))]),
            )]);
        let r = c.txn(t).await?;
        let done = r.succeeded()
            || r.op_responses().into_iter().any(|op| match op {
                etcd_client::TxnOpResponse::Txn(t) => t.succeeded(),
                _ => false,
            });
        if !done {
            return Err(super::invalid(format!(
                "candidate id {} is registered by another session",
                crate::proto::echo(&id)
            )));
        }
        let mut rx = self.participate(&election, Some(session), false);
        let at = super::revision(&r) as i64;
        let s = Self::snapshot_after(&mut rx, at, |_| true).await?;
        Ok(Reply::Master(s.info))
    }

    pub(super) async fn resign(
        &self,
        session: SessionId,
        election: &str,
        id: &str,
    ) -> Result<Reply, Fail> {
        Text::ElectionName.check(election).map_err(super::invalid)?;
        Text::CandidateId.check(id).map_err(super::invalid)?;
        let key = keys::candidate_key(election, id);
        let t = Txn::new()
            .when([Compare::lease(
                key.clone(),
                CompareOp::Equal,
                session as i64,
            )])
            .and_then([TxnOp::delete(key, None)]);
        self.etcd().txn(t).await?;
        let mut all = self.elections.lock();
        if let Some(p) = all.get_mut(election) {
            if !p.observers.contains(&session) {
                p.sessions.remove(&session);
            }
        }
        Ok(Reply::Done)
    }

    /// Observe (`observer`) or read the master cache; either way the session is told of
    /// later changes (a session reads the caches of the elections it has handles for after
    /// each reconnection, which is how a new connection learns of them).
    pub(super) async fn observe(
        self: &Arc<Self>,
        session: SessionId,
        election: &str,
        observer: bool,
    ) -> Result<Reply, Fail> {
        Text::ElectionName.check(election).map_err(super::invalid)?;
        let mut rx = self.participate(election, Some(session), observer);
        let s = Self::snapshot_after(&mut rx, 0, |_| true).await?;
        Ok(Reply::Master(s.info))
    }

    /// The master: from the cache when it names a live candidate, else once one is
    /// designated (at once when there are no candidates).
    pub(super) async fn request_election(self: &Arc<Self>, election: &str) -> Result<Reply, Fail> {
        Text::ElectionName.check(election).map_err(super::invalid)?;
        let now = self.read_election(election).await?;
        let mut rx = self.participate(election, None, false);
        let s =
            Self::snapshot_after(&mut rx, now.revision, |s| s.live || s.candidates == 0).await?;
        Ok(Reply::Master(s.info))
    }

    /// Elections for a status reply: every election with its cache and candidates in
    /// designation order.
    pub(super) async fn election_status(&self) -> Result<Vec<crate::proto::ElectionInfo>, Fail> {
        let g = self
            .etcd()
            .get(
                format!("{}elections/", keys::PREFIX),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_limit(super::STATUS_LIMIT),
                ),
            )
            .await?;
        let mut names: Vec<String> = g
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok().and_then(keys::parse_election_key))
            .map(|(n, _)| n)
            .collect();
        names.dedup();
        let mut out = vec![];
        for name in names {
            let r = self.read_election(&name).await?;
            let cands: Vec<CandidateRecord> = r.candidates.iter().map(|(c, _)| c.clone()).collect();
            let e = keys::election(&cands, &r.master, r.epoch);
            out.push(crate::proto::ElectionInfo {
                name,
                master: r.info(),
                candidates: e
                    .ordered()
                    .iter()
                    .map(|c| (c.id.clone(), c.priority, c.session))
                    .collect(),
            });
        }
        Ok(out)
    }
}

/// The connectivity check before designating a candidate with an endpoint (as the tenure
/// server's: a connection accepted within [`crate::server::CHECK_TIMEOUT`]).
async fn reachable(endpoint: &str) -> bool {
    matches!(
        tokio::time::timeout(
            crate::server::CHECK_TIMEOUT,
            tokio::net::TcpStream::connect(endpoint)
        )
        .await,
        Ok(Ok(_))
    )
}
