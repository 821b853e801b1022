//! Elections in the state machine: campaign, resign, observe, request an election, and the
//! serving node's designations and step-downs, each check beside its application. The
//! election's own rules (priority order, preemption, when a designation is needed) are in
//! [`crate::election`].
//!
//! Rules kept here:
//! - A candidate id belongs to the session that registered it.
//! - Every change of master takes a new epoch from the service's revision counter (shared
//!   with fencing tokens), and is pushed to every candidate and observer.
//! - A designation decided before a later change is applied only if it still makes sense.
//! - An election nobody takes part in any more is dropped; made again, its epochs continue
//!   from the service's revision.
//! - A request for an election waits only while the election needs a designation: any
//!   change after which it no longer does (a master set, every candidate gone, the
//!   election dropped) answers it ([`State::settle_awaiting`]).

use super::{check, master_info, Output, State};
use crate::election::{Candidate, Election};
use crate::proto::{echo, ErrorReply, MasterInfo, Notice, Reply, SessionId, Text};
use std::collections::{BTreeMap, BTreeSet};

impl State {
    pub(super) fn check_campaign(
        &self,
        session: SessionId,
        election: &str,
        id: &str,
        endpoint: Option<&str>,
    ) -> Result<(), ErrorReply> {
        check(Text::ElectionName, election)?;
        check(Text::CandidateId, id)?;
        if let Some(e) = endpoint {
            check(Text::Endpoint, e)?;
        }
        self.check_candidate(session, election, id)
    }

    /// A candidate id registered by another session may not be used or resigned.
    fn check_candidate(
        &self,
        session: SessionId,
        election: &str,
        id: &str,
    ) -> Result<(), ErrorReply> {
        let taken = self
            .elections
            .get(election)
            .and_then(|e| e.candidate(id))
            .is_some_and(|c| c.session != session);
        if taken {
            return Err(ErrorReply::Invalid(format!(
                "candidate id {} is registered in {} by another session",
                echo(id),
                echo(election)
            )));
        }
        Ok(())
    }

    pub(super) fn campaign(
        &mut self,
        session: SessionId,
        req: u64,
        election: &str,
        candidate: Candidate,
        preempt: bool,
        out: &mut Vec<Output>,
    ) {
        let e = self.election_entry(election);
        match e.register(candidate, preempt) {
            Ok(()) => {
                let info = master_info(e);
                self.touched.insert(election.to_string());
                self.enter_election(session, election);
                self.reply(session, req, Ok(Reply::Master(info)), out);
            }
            Err(m) => self.reply(session, req, Err(ErrorReply::Limit(m)), out),
        }
    }

    pub(super) fn check_resign(
        &self,
        session: SessionId,
        election: &str,
        id: &str,
    ) -> Result<(), ErrorReply> {
        check(Text::ElectionName, election)?;
        check(Text::CandidateId, id)?;
        self.check_candidate(session, election, id)
    }

    pub(super) fn resign(
        &mut self,
        session: SessionId,
        req: u64,
        election: &str,
        id: &str,
        out: &mut Vec<Output>,
    ) {
        let e = self.elections.get_mut(election);
        if let Some(e) = e.filter(|e| e.candidate(id).is_some()) {
            if e.remove(id) {
                self.change_master(election, None, out);
            }
            self.touched.insert(election.to_string());
            self.settle_awaiting(election, false, out);
        }
        self.reply(session, req, Ok(Reply::Done), out);
    }

    pub(super) fn check_election_name(&self, election: &str) -> Result<(), ErrorReply> {
        check(Text::ElectionName, election)
    }

    pub(super) fn observe(
        &mut self,
        session: SessionId,
        req: u64,
        election: &str,
        out: &mut Vec<Output>,
    ) {
        let e = self.election_entry(election);
        match e.observe(session) {
            Ok(()) => {
                let info = master_info(e);
                self.enter_election(session, election);
                self.reply(session, req, Ok(Reply::Master(info)), out);
            }
            Err(m) => self.reply(session, req, Err(ErrorReply::Limit(m)), out),
        }
    }

    /// A member asks for a designation: answered at once when the cache names a master (or
    /// there is nobody to designate), else when the serving node designates one.
    pub(super) fn request_election(
        &mut self,
        session: SessionId,
        req: u64,
        election: &str,
        out: &mut Vec<Output>,
    ) {
        if !self.awaits_designation(election) {
            let info = self.master(election);
            self.reply(session, req, Ok(Reply::Master(info)), out);
            return;
        }
        self.awaiting
            .entry(election.to_string())
            .or_default()
            .push((session, req));
        self.session_mut(session)
            .more()
            .awaiting
            .insert(req, election.to_string());
        self.touched.insert(election.to_string());
    }

    /// An election request given up on: remember that it ended, so that a copy still in
    /// flight (resent on another connection) is not applied again.
    pub(super) fn cancel_awaiting(&mut self, session: SessionId, target: u64) {
        let s = self.session_mut(session);
        let Some(election) = s.take_awaiting(&target) else {
            return;
        };
        let e = Err(ErrorReply::Invalid("election request cancelled".into()));
        s.remember(target, e);
        if let Some(v) = self.awaiting.get_mut(&election) {
            v.retain(|w| *w != (session, target));
        }
    }

    pub(super) fn check_designate(&self, election: &str) -> Result<(), ErrorReply> {
        if self.elections.contains_key(election) {
            Ok(())
        } else {
            Err(ErrorReply::Invalid(format!(
                "no election {}",
                echo(election)
            )))
        }
    }

    /// The serving node designated `candidate` (`None`: nobody answered its checks).
    pub(super) fn designate(&mut self, name: &str, candidate: Option<&str>, out: &mut Vec<Output>) {
        let Some(e) = self.elections.get(name) else {
            return;
        };
        match candidate {
            Some(id) => {
                // A designation decided before a later change may be stale: apply it only
                // if it still makes sense.
                let stale = e.candidate(id).is_none()
                    || !e.needs_designation()
                    || e.master().is_some_and(|m| m.id == id);
                if !stale {
                    self.change_master(name, Some(id.to_string()), out);
                }
                self.settle_awaiting(name, false, out);
            }
            // Nobody answered: waiters learn the master as it is (a master that was kept
            // stays; else there is none).
            None => self.settle_awaiting(name, true, out),
        }
    }

    /// True while a request for `election` waits for a designation: it has no master and
    /// candidates to designate.
    fn awaits_designation(&self, election: &str) -> bool {
        self.elections
            .get(election)
            .is_some_and(|e| e.master().is_none() && e.needs_designation())
    }

    /// Answers the requests waiting for `name`'s designation with its master as it is, when
    /// it no longer needs one (or always, with `now`).
    pub(super) fn settle_awaiting(&mut self, name: &str, now: bool, out: &mut Vec<Output>) {
        if !self.awaiting.contains_key(name) || (!now && self.awaits_designation(name)) {
            return;
        }
        let info = self.master(name);
        for (session, req) in self.awaiting.remove(name).unwrap_or_default() {
            if let Some(s) = self.sessions.get_mut(&session) {
                s.take_awaiting(&req);
            }
            self.reply(session, req, Ok(Reply::Master(info.clone())), out);
        }
    }

    pub(super) fn check_step_down(&self, election: &str) -> Result<(), ErrorReply> {
        if self
            .elections
            .get(election)
            .is_some_and(|e| e.master().is_some())
        {
            Ok(())
        } else {
            Err(ErrorReply::Invalid(format!(
                "{} has no master",
                echo(election)
            )))
        }
    }

    /// Sets a new master (or none) with a new epoch and notifies the election's audience.
    pub(super) fn change_master(
        &mut self,
        name: &str,
        master: Option<String>,
        out: &mut Vec<Output>,
    ) {
        let epoch = self.locks.bump();
        let Some(e) = self.elections.get_mut(name) else {
            return;
        };
        e.set_master(master, epoch);
        let info = master_info(e);
        for session in e.audience() {
            out.push(Output::Notice {
                session,
                notice: Notice::MasterChanged {
                    election: name.to_string(),
                    info: info.clone(),
                },
            });
        }
        self.touched.insert(name.to_string());
        self.settle_awaiting(name, false, out);
    }

    /// A session that ended leaves its elections: its candidates go (a master among them
    /// with a new epoch), its waiting requests are dropped, empty elections are dropped.
    pub(super) fn leave_elections(
        &mut self,
        session: SessionId,
        elections: &BTreeSet<String>,
        awaiting: &BTreeMap<u64, String>,
        out: &mut Vec<Output>,
    ) {
        for (req, name) in awaiting {
            if let Some(v) = self.awaiting.get_mut(name) {
                v.retain(|w| *w != (session, *req));
            }
        }
        for name in elections {
            let Some(e) = self.elections.get_mut(name) else {
                continue;
            };
            if e.remove_session(session) {
                self.change_master(name, None, out);
            }
            self.touched.insert(name.clone());
            if self.elections.get(name).is_some_and(|e| e.is_empty()) {
                self.elections.remove(name);
            }
            self.settle_awaiting(name, false, out);
        }
    }

    /// Records that a session takes part in an election (to leave it when the session ends).
    fn enter_election(&mut self, session: SessionId, election: &str) {
        self.session_mut(session)
            .more()
            .elections
            .insert(election.to_string());
    }

    /// The election `name`, created if new. A new election's master cache starts at the
    /// service's current revision, not at 0: a name dropped when nobody was left in it and
    /// used again must not go back to epochs older than what its members were told (they
    /// ignore older epochs, and would keep a master that is gone).
    fn election_entry(&mut self, name: &str) -> &mut Election {
        let revision = self.locks.revision();
        self.elections.entry(name.to_string()).or_insert_with(|| {
            let mut e = Election::default();
            e.set_master(None, revision);
            e
        })
    }

    /// The master cache of an election (no master, epoch 0, for an unknown one).
    pub fn master(&self, name: &str) -> MasterInfo {
        self.elections
            .get(name)
            .map(master_info)
            .unwrap_or_default()
    }
}
