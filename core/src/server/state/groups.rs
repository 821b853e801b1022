//! Groups in the state machine: join, leave, application checks, replacement, watching, and
//! the serving node's promotions, each check beside its application. The group's own rules
//! (probation, views, replacement) are in [`crate::membership`].
//!
//! Rules kept here:
//! - A member id belongs to the session that joined with it.
//! - Probation is at most [`MAX_TTL_MS`] long.
//! - Every new view is pushed to the group's members and watchers, and to members it removed
//!   while their session lives.
//! - A group watches at most [`crate::membership::MAX_MEMBERS`] non-member sessions.

use super::{check, view_info, Output, State, MAX_TTL_MS};
use crate::membership::{Change, Group, MemberRec, MAX_MEMBERS};
use crate::proto::{echo, ErrorReply, Notice, Reply, SessionId, Text};
use std::collections::BTreeSet;

impl State {
    pub(super) fn check_join(
        &self,
        session: SessionId,
        group: &str,
        id: &str,
        probation_ms: u64,
    ) -> Result<(), ErrorReply> {
        check(Text::GroupName, group)?;
        check(Text::MemberId, id)?;
        if probation_ms > MAX_TTL_MS {
            return Err(ErrorReply::Invalid(format!(
                "probation of {probation_ms} ms is longer than {MAX_TTL_MS} ms"
            )));
        }
        match self.groups.get(group) {
            Some(g) => g.check_join(id, session).map_err(ErrorReply::Invalid),
            None => Ok(()),
        }
    }

    pub(super) fn join(
        &mut self,
        session: SessionId,
        req: u64,
        group: &str,
        id: &str,
        rec: MemberRec,
        out: &mut Vec<Output>,
    ) {
        let probation_ms = rec.probation_ms;
        let joined = self
            .groups
            .entry(group.to_string())
            .or_default()
            .join(id, rec);
        self.enter_group(session, group);
        if joined {
            out.push(Output::ProbationStarted {
                group: group.to_string(),
                member: id.to_string(),
                session,
                probation_ms,
            });
            self.view_changed(group, Change::default(), out);
        }
        let info = self.view(group);
        self.reply(session, req, Ok(Reply::View(info)), out);
    }

    /// Leave and check reports: a member of the group that is not another session's.
    /// `must_exist`: a report about an unknown member is an error; leaving one is not.
    pub(super) fn check_member(
        &self,
        session: SessionId,
        group: &str,
        id: &str,
        must_exist: bool,
    ) -> Result<(), ErrorReply> {
        check(Text::GroupName, group)?;
        check(Text::MemberId, id)?;
        let none = Group::default();
        let g = self.groups.get(group).unwrap_or(&none);
        g.check_member(group, id, session, must_exist)
            .map_err(ErrorReply::Invalid)
    }

    pub(super) fn leave(
        &mut self,
        session: SessionId,
        req: u64,
        group: &str,
        id: &str,
        out: &mut Vec<Output>,
    ) {
        let ch = self.groups.get_mut(group).and_then(|g| g.remove(id));
        if let Some(ch) = ch {
            self.view_changed(group, ch, out);
        }
        self.reply(session, req, Ok(Reply::Done), out);
    }

    pub(super) fn report_check(
        &mut self,
        session: SessionId,
        req: u64,
        group: &str,
        id: &str,
        ok: bool,
        out: &mut Vec<Output>,
    ) {
        let ch = self
            .groups
            .get_mut(group)
            .and_then(|g| g.report_check(id, ok));
        if let Some(ch) = ch {
            self.view_changed(group, ch, out);
        } else if ok {
            out.push(Output::CheckPassed {
                group: group.to_string(),
                member: id.to_string(),
            });
        }
        self.reply(session, req, Ok(Reply::Done), out);
    }

    pub(super) fn check_replace(
        &self,
        group: &str,
        failed: &str,
        probationary: &str,
    ) -> Result<(), ErrorReply> {
        check(Text::GroupName, group)?;
        check(Text::MemberId, failed)?;
        check(Text::MemberId, probationary)?;
        match self.groups.get(group) {
            Some(g) => g
                .check_replace(failed, probationary)
                .map_err(ErrorReply::Invalid),
            None => Err(ErrorReply::Invalid(format!("no group {}", echo(group)))),
        }
    }

    pub(super) fn replace(
        &mut self,
        session: SessionId,
        req: u64,
        group: &str,
        failed: &str,
        probationary: &str,
        out: &mut Vec<Output>,
    ) {
        let g = self.groups.get_mut(group).expect("checked");
        match g.replace(failed, probationary) {
            Ok(ch) => {
                self.view_changed(group, ch, out);
                let info = self.view(group);
                self.reply(session, req, Ok(Reply::View(info)), out);
            }
            Err(e) => self.reply(session, req, Err(ErrorReply::Invalid(e)), out),
        }
    }

    pub(super) fn check_watch(&self, session: SessionId, group: &str) -> Result<(), ErrorReply> {
        check(Text::GroupName, group)?;
        let full = self
            .watchers
            .get(group)
            .is_some_and(|w| w.len() >= MAX_MEMBERS && !w.contains(&session));
        if full {
            return Err(ErrorReply::Limit(format!(
                "group {} has {MAX_MEMBERS} watchers already",
                echo(group)
            )));
        }
        Ok(())
    }

    pub(super) fn watch(
        &mut self,
        session: SessionId,
        req: u64,
        group: &str,
        out: &mut Vec<Output>,
    ) {
        self.watchers
            .entry(group.to_string())
            .or_default()
            .insert(session);
        self.enter_group(session, group);
        let info = self.view(group);
        self.reply(session, req, Ok(Reply::View(info)), out);
    }

    pub(super) fn check_promote(&self, group: &str, member: &str) -> Result<(), ErrorReply> {
        if self
            .groups
            .get(group)
            .and_then(|g| g.member(member))
            .is_some()
        {
            Ok(())
        } else {
            Err(ErrorReply::Invalid(format!(
                "no member {} in {}",
                echo(member),
                echo(group)
            )))
        }
    }

    /// The serving node found a probationary member healthy for its probation time.
    pub(super) fn promote(&mut self, group: &str, member: &str, out: &mut Vec<Output>) {
        let ch = self.groups.get_mut(group).and_then(|g| g.promote(member));
        if let Some(ch) = ch {
            self.view_changed(group, ch, out);
        }
    }

    /// A session that ended leaves its groups, as member and as watcher; empty groups are
    /// dropped.
    pub(super) fn leave_groups(
        &mut self,
        session: SessionId,
        groups: &BTreeSet<String>,
        out: &mut Vec<Output>,
    ) {
        for name in groups {
            if let Some(w) = self.watchers.get_mut(name) {
                w.remove(&session);
                if w.is_empty() {
                    self.watchers.remove(name);
                }
            }
            let ch = self
                .groups
                .get_mut(name)
                .and_then(|g| g.remove_session(session));
            if let Some(ch) = ch {
                self.view_changed(name, ch, out);
            }
            if self.groups.get(name).is_some_and(|g| g.is_empty()) {
                self.groups.remove(name);
            }
        }
    }

    /// Tells the group's members and watchers of a new view; ends evaluations of members no
    /// longer on probation.
    fn view_changed(&mut self, name: &str, ch: Change, out: &mut Vec<Output>) {
        for m in ch.promoted.iter().chain(ch.removed.iter()) {
            out.push(Output::ProbationEnded {
                group: name.to_string(),
                member: m.clone(),
            });
        }
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let info = view_info(g);
        let mut audience: BTreeSet<SessionId> = g.members().map(|(_, m)| m.session).collect();
        // Removed members hear of the view that removed them, if their session lives.
        audience.extend(ch.gone.iter().filter(|s| self.sessions.contains_key(s)));
        if let Some(w) = self.watchers.get(name) {
            audience.extend(w.iter().copied());
        }
        for session in audience {
            out.push(Output::Notice {
                session,
                notice: Notice::ViewChanged {
                    group: name.to_string(),
                    info: info.clone(),
                },
            });
        }
    }

    /// Records that a session takes part in a group (to leave it when the session ends).
    fn enter_group(&mut self, session: SessionId, group: &str) {
        self.session_mut(session)
            .more()
            .groups
            .insert(group.to_string());
    }
}
