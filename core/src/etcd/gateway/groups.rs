//! Groups on etcd. A group's whole state (view number, members, probation, checks) is one key,
//! `tenure/groups/<name>/view`, holding [`crate::membership::Group`] as JSON, changed only by
//! transactions that hold if the key is as read: every change applies the rules of
//! [`crate::membership`] to what was read and publishes exactly one new view, and a
//! replacement removes the failed member and promotes the probationary one in that single
//! write. Each member also has a presence key, `tenure/groups/<name>/m/<id>`, under its
//! session's lease: when the lease ends, the key goes, and every gateway taking part in the
//! group (a *keeper* per group) removes the member in one view change.
//!
//! Probation is judged as the tenure server judges it ([`crate::membership::Evaluator`]), by
//! the gateway of the member's own session from its heartbeats' answers: a gap restarts the
//! probation clock, and so does a reconnection (the new connection's gateway starts the
//! clock when the session first mentions the group, which a session does after every
//! reconnection).

use super::{invalid, keys, Fail, Gateway};
use crate::membership::{Group, MemberRec};
use crate::proto::{ErrorReply, Notice, Reply, SessionId, Text, ViewInfo};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;

/// Wakes the keepers when dropped (after an evaluation started).
struct Wakes<'a>(&'a tokio::sync::Notify);

impl Drop for Wakes<'_> {
    fn drop(&mut self) {
        self.0.notify_waiters();
    }
}

/// One group this connection takes part in.
pub(super) struct Participation {
    /// Sessions told of every new view (members and watchers).
    sessions: HashSet<SessionId>,
    task: AbortHandle,
}

impl Participation {
    /// `session` takes no more part (its session ended).
    pub(super) fn leave(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }
}

impl Drop for Participation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The extra operation of a change that may remove a member: its presence key goes with it.
fn presence_removal(presence: &str) -> impl Fn(&bool) -> Vec<TxnOp> + '_ {
    move |removed| {
        if *removed {
            vec![TxnOp::delete(presence, None)]
        } else {
            vec![]
        }
    }
}

fn group_dir(name: &str) -> String {
    keys::group_dir(name)
}

/// A group read at one revision: its state, the view key's modification revision (0: no
/// group yet) and the members whose presence key exists.
struct Read {
    group: Group,
    mod_revision: i64,
    present: HashSet<String>,
    revision: i64,
}

impl Gateway {
    async fn read_group(&self, name: &str) -> Result<Read, Fail> {
        let g = self
            .etcd()
            .get(group_dir(name), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut r = Read {
            group: Group::default(),
            mod_revision: 0,
            present: HashSet::new(),
            revision: g.header().map_or(0, |h| h.revision()),
        };
        for kv in g.kvs() {
            match kv.key_str().ok().and_then(keys::parse_group_key) {
                Some((_, None)) => {
                    r.group = serde_json::from_slice(kv.value()).unwrap_or_default();
                    r.mod_revision = kv.mod_revision();
                }
                Some((_, Some(id))) => {
                    r.present.insert(id);
                }
                None => {}
            }
        }
        Ok(r)
    }

    /// Changes group `name` with `f` (the membership rules) and writes it, with `extra`
    /// operations, in one transaction that holds if the group is as read; retried when
    /// another writer came first. Returns `f`'s result and the view written (or read, when
    /// `f` changed nothing).
    async fn update_group<T>(
        &self,
        name: &str,
        mut f: impl FnMut(&mut Group) -> Result<T, String>,
        extra: impl Fn(&T) -> Vec<TxnOp>,
    ) -> Result<(T, ViewInfo), Fail> {
        let key = keys::group_view_key(name);
        loop {
            let r = self.read_group(name).await?;
            let mut g = r.group.clone();
            let out = f(&mut g).map_err(invalid)?;
            let value = serde_json::to_string(&g).unwrap_or_default();
            let before = serde_json::to_string(&r.group).unwrap_or_default();
            let mut ops = extra(&out);
            if value == before && ops.is_empty() {
                return Ok((out, g.info()));
            }
            ops.insert(0, TxnOp::put(key.clone(), value, None));
            let t = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    r.mod_revision,
                )])
                .and_then(ops);
            if self.etcd().txn(t).await?.succeeded() {
                return Ok((out, g.info()));
            }
        }
    }

    /// Adds `session` (if any) to group `name`'s participants, starting its keeper if this
    /// connection had none.
    fn take_part(self: &Arc<Self>, name: &str, session: Option<SessionId>) {
        let mut all = self.groups.lock();
        let p = all.entry(name.to_string()).or_insert_with(|| {
            let gw = self.clone();
            let n = name.to_string();
            let h = tokio::spawn(async move { gw.keeper_loop(n).await });
            self.track(h.abort_handle());
            Participation {
                sessions: HashSet::new(),
                task: h.abort_handle(),
            }
        });
        if let Some(s) = session {
            p.sessions.insert(s);
        }
    }

    /// Keeps group `name` for this connection: tells its sessions of new views, removes
    /// members whose session ended, promotes the members this gateway evaluates once due. The
    /// watch is made before the first read and kept ([`super::next_change`]).
    async fn keeper_loop(self: Arc<Self>, name: String) {
        let mut told = None;
        'watch: loop {
            let opts = WatchOptions::new().with_prefix();
            let Ok((_w, mut s)) = self.etcd().watch(group_dir(&name), Some(opts)).await else {
                self.broken.notify_one();
                return;
            };
            loop {
                let Ok(r) = self.read_group(&name).await else {
                    self.broken.notify_one();
                    return;
                };
                if told != Some(r.group.view()) {
                    told = Some(r.group.view());
                    let sessions: Vec<SessionId> = self
                        .groups
                        .lock()
                        .get(&name)
                        .map(|p| p.sessions.iter().copied().collect())
                        .unwrap_or_default();
                    let (group, info) = (name.clone(), r.group.info());
                    self.tell(sessions, Notice::ViewChanged { group, info });
                }
                match self.keep(&name, &r).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(_) => {
                        self.broken.notify_one();
                        return;
                    }
                }
                // Until the group changes, or a member evaluated here may be due.
                let started = self.evaluations.notified();
                tokio::pin!(started);
                started.as_mut().enable();
                let now = Instant::now();
                let here = self.evaluating.lock().iter().any(|(g, _)| g == &name);
                let due = here
                    && self
                        .evaluator
                        .lock()
                        .due(now)
                        .iter()
                        .any(|(g, _)| g == &name);
                if due {
                    continue;
                }
                // Evaluations move with heartbeats: look again at least every second.
                let wake = here.then(|| {
                    let next = self.evaluator.lock().next_due().unwrap_or(now);
                    next.max(now + Duration::from_millis(10))
                        .min(now + Duration::from_secs(1))
                });
                match super::next_change(&mut s, r.revision, wake, Some(started.as_mut())).await {
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

    /// One change the keeper owes group `name` as read in `r`: removes the members of one
    /// session that ended, or promotes the members due. True when it changed something
    /// (read again).
    async fn keep(&self, name: &str, r: &Read) -> Result<bool, Fail> {
        let mut gone: BTreeMap<SessionId, Vec<String>> = BTreeMap::new();
        for (id, m) in r.group.members() {
            if !r.present.contains(id) {
                gone.entry(m.session).or_default().push(id.clone());
            }
        }
        if let Some((&session, _)) = gone.iter().next() {
            self.update_group(
                name,
                |g| {
                    g.remove_session(session);
                    Ok(())
                },
                |_| vec![],
            )
            .await?;
            return Ok(true);
        }
        let due: Vec<String> = self
            .evaluator
            .lock()
            .due(Instant::now())
            .into_iter()
            .filter(|(g, _)| g == name)
            .map(|(_, id)| id)
            .collect();
        for id in &due {
            let waits = r
                .group
                .member(id)
                .is_some_and(|m| m.needs_check && !m.check_passed);
            if waits {
                self.evaluator.lock().mark_eligible(name, id);
                continue;
            }
            self.evaluator.lock().stop(name, id);
            self.update_group(name, |g| Ok(g.promote(id)), |_| vec![])
                .await?;
        }
        Ok(!due.is_empty())
    }

    /// Starts evaluating `session`'s probationary members of group `name` that this
    /// connection does not evaluate yet.
    async fn evaluate(&self, session: SessionId, name: &str, g: &Group) -> Result<(), Fail> {
        let mine: Vec<(String, u64)> = g
            .members()
            .filter(|(id, m)| {
                m.session == session
                    && !m.full
                    && !self
                        .evaluating
                        .lock()
                        .contains(&(name.to_string(), id.to_string()))
            })
            .map(|(id, m)| (id.clone(), m.probation_ms))
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let ttl = self.session_ttl(session).await?;
        let now = Instant::now();
        let _wake = Wakes(&self.evaluations);
        for (id, probation_ms) in mine {
            self.evaluating
                .lock()
                .insert((name.to_string(), id.clone()));
            self.evaluator.lock().start(
                name,
                &id,
                session,
                Duration::from_millis(probation_ms),
                ttl,
                now,
            );
        }
        Ok(())
    }

    /// The TTL etcd granted `session`'s lease.
    async fn session_ttl(&self, session: SessionId) -> Result<Duration, Fail> {
        let t = self.etcd().lease_time_to_live(session as i64, None).await?;
        if t.ttl() < 0 {
            return Err(Fail::Reply(ErrorReply::UnknownSession));
        }
        Ok(Duration::from_secs(t.granted_ttl().max(0) as u64))
    }

    pub(super) async fn join(
        self: &Arc<Self>,
        session: SessionId,
        group: &str,
        id: &str,
        probation_ms: u64,
        needs_check: bool,
    ) -> Result<Reply, Fail> {
        Text::GroupName.check(group).map_err(invalid)?;
        Text::MemberId.check(id).map_err(invalid)?;
        let max = crate::server::state::MAX_TTL_MS;
        if probation_ms > max {
            return Err(invalid(format!(
                "probation of {probation_ms} ms is longer than {max} ms"
            )));
        }
        // The lease must exist before the presence key can be put under it.
        self.session_ttl(session).await?;
        let presence = keys::group_member_key(group, id);
        let lease = PutOptions::new().with_lease(session as i64);
        let (_, info) = self
            .update_group(
                group,
                |g| {
                    g.check_join(id, session)?;
                    g.join(
                        id,
                        MemberRec {
                            session,
                            full: false,
                            probation_ms,
                            needs_check,
                            check_passed: false,
                        },
                    );
                    Ok(())
                },
                |_| {
                    vec![TxnOp::put(
                        presence.clone(),
                        session.to_string(),
                        Some(lease.clone()),
                    )]
                },
            )
            .await?;
        self.take_part(group, Some(session));
        let r = self.read_group(group).await?;
        self.evaluate(session, group, &r.group).await?;
        Ok(Reply::View(info))
    }

    pub(super) async fn leave(
        &self,
        session: SessionId,
        group: &str,
        id: &str,
    ) -> Result<Reply, Fail> {
        Text::GroupName.check(group).map_err(invalid)?;
        Text::MemberId.check(id).map_err(invalid)?;
        let presence = keys::group_member_key(group, id);
        self.update_group(
            group,
            |g| {
                g.check_member(group, id, session, false)?;
                Ok(g.remove(id).is_some())
            },
            presence_removal(&presence),
        )
        .await?;
        self.evaluator.lock().stop(group, id);
        self.evaluating
            .lock()
            .remove(&(group.to_string(), id.to_string()));
        Ok(Reply::Done)
    }

    pub(super) async fn report_check(
        &self,
        session: SessionId,
        group: &str,
        id: &str,
        ok: bool,
    ) -> Result<Reply, Fail> {
        Text::GroupName.check(group).map_err(invalid)?;
        Text::MemberId.check(id).map_err(invalid)?;
        let presence = keys::group_member_key(group, id);
        let (removed, _) = self
            .update_group(
                group,
                |g| {
                    g.check_member(group, id, session, true)?;
                    Ok(g.report_check(id, ok).is_some())
                },
                presence_removal(&presence),
            )
            .await?;
        if removed {
            self.evaluator.lock().stop(group, id);
        } else if ok && self.evaluator.lock().is_eligible(group, id) {
            // It served its probation and waited only for this check.
            self.evaluator.lock().stop(group, id);
            self.update_group(group, |g| Ok(g.promote(id)), |_| vec![])
                .await?;
        }
        Ok(Reply::Done)
    }

    pub(super) async fn replace(
        self: &Arc<Self>,
        group: &str,
        failed: &str,
        probationary: &str,
    ) -> Result<Reply, Fail> {
        Text::GroupName.check(group).map_err(invalid)?;
        Text::MemberId.check(failed).map_err(invalid)?;
        Text::MemberId.check(probationary).map_err(invalid)?;
        let presence = keys::group_member_key(group, failed);
        let (_, info) = self
            .update_group(
                group,
                |g| g.replace(failed, probationary).map(|_| ()),
                |_| vec![TxnOp::delete(presence.clone(), None)],
            )
            .await?;
        self.evaluator.lock().stop(group, probationary);
        Ok(Reply::View(info))
    }

    /// Watch a group, or read its view; either way the session is told of later views (a
    /// session reads the views of the groups it has handles for after each reconnection,
    /// which is how a new connection learns of them and evaluates its members again).
    pub(super) async fn watch_group(
        self: &Arc<Self>,
        session: SessionId,
        group: &str,
    ) -> Result<Reply, Fail> {
        Text::GroupName.check(group).map_err(invalid)?;
        self.take_part(group, Some(session));
        let r = self.read_group(group).await?;
        self.evaluate(session, group, &r.group).await?;
        Ok(Reply::View(r.group.info()))
    }

    /// Groups for a status reply.
    pub(super) async fn group_status(&self) -> Result<Vec<(String, ViewInfo)>, Fail> {
        let g = self
            .etcd()
            .get(
                format!("{}groups/", keys::PREFIX),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_limit(super::STATUS_LIMIT),
                ),
            )
            .await?;
        let mut out = vec![];
        for kv in g.kvs() {
            if let Some((name, None)) = kv.key_str().ok().and_then(keys::parse_group_key) {
                let group: Group = serde_json::from_slice(kv.value()).unwrap_or_default();
                out.push((name, group.info()));
            }
        }
        Ok(out)
    }
}
