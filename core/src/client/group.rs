//! Group membership handles of the client (SPEC 3.5): joining on probation, watching a
//! group, replacing a failed member. The rules live in [`crate::membership`] and the server;
//! the client keeps the views it was told, in view order, and derives `member_promoted` and
//! `member_removed` from consecutive views.

use super::watched::{handle_of, watch_handle, Handle, Versioned, WatchHandle, Watched};
use super::{Answer, Client, Held, Pending};
use crate::error::{Error, Result};
use crate::events::{Event, Handler, Member};
use crate::proto::{Reply, Request, Text, ViewInfo};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a process joins a group.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Member id, unique in the group (1..=256 bytes, no NUL).
    pub id: String,
    /// Minimum time with a live session and no missed heartbeat before promotion.
    pub probation: Duration,
    /// Promotion also waits for [`Membership::report_check`] to pass.
    pub needs_check: bool,
}

impl JoinOptions {
    /// Join as `id` with a probation of `probation` and no application check.
    pub fn new(id: impl Into<String>, probation: Duration) -> Self {
        JoinOptions {
            id: id.into(),
            probation,
            needs_check: false,
        }
    }
}

/// A group's view.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// View number; strictly increases.
    pub number: u64,
    /// Members in id order with their status.
    pub members: Vec<Member>,
}

pub(crate) fn to_view(info: &ViewInfo) -> View {
    View {
        number: info.view,
        members: info
            .members
            .iter()
            .map(|(id, full)| Member {
                id: id.clone(),
                full: *full,
            })
            .collect(),
    }
}

/// The events one view change means, given the view before it.
pub(crate) fn view_events(group: &str, prev: &ViewInfo, next: &ViewInfo) -> Vec<Event> {
    let v = to_view(next);
    let mut evs = vec![Event::ViewChanged {
        group: group.to_string(),
        view: v.number,
        members: v.members.clone(),
    }];
    for (id, full) in &next.members {
        let was = prev.members.iter().find(|m| &m.0 == id).map(|m| m.1);
        if *full && was == Some(false) {
            evs.push(Event::MemberPromoted {
                group: group.to_string(),
                member: id.clone(),
            });
        }
    }
    for (id, _) in &prev.members {
        if !next.members.iter().any(|m| &m.0 == id) {
            evs.push(Event::MemberRemoved {
                group: group.to_string(),
                member: id.clone(),
            });
        }
    }
    evs
}

/// Shared record of a membership or watch, between its handle and the session.
pub(crate) type GroupShared = Watched<ViewInfo>;

impl Versioned for ViewInfo {
    fn version(&self) -> u64 {
        self.view
    }

    fn changes(name: &str, prev: &Self, next: &Self) -> Vec<Event> {
        view_events(name, prev, next)
    }

    fn held(w: Arc<Watched<Self>>) -> Held {
        Held::Group(w)
    }

    type Public = View;
    fn public(&self) -> View {
        to_view(self)
    }
}

watch_handle!(Membership => View, GroupWatch => View);

fn pick(held: Held) -> Option<Arc<GroupShared>> {
    match held {
        Held::Group(g) => Some(g),
        _ => None,
    }
}

/// Membership of this client in a group. Dropping it leaves the group.
pub struct Membership {
    h: Handle<ViewInfo>,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("group", &self.h.shared.name)
            .field("id", &self.h.shared.id)
            .field("view", &self.view())
            .finish()
    }
}

impl Membership {
    /// The group's name.
    pub fn group(&self) -> &str {
        self.name()
    }

    /// The view as last told.
    pub fn view(&self) -> View {
        self.value()
    }

    /// True while this process is a member of the group in the last view it was told of,
    /// and its session's lease is valid by the client's own deadline.
    pub fn is_member(&self) -> bool {
        self.status().is_some()
    }

    /// True while this process is a full member (see [`Membership::is_member`]).
    pub fn is_full(&self) -> bool {
        self.status() == Some(true)
    }

    fn status(&self) -> Option<bool> {
        let id = self.h.shared.id.as_ref()?;
        self.h
            .shared
            .live(&self.h.client.inner.shared, Instant::now(), |info| {
                info.members.iter().find(|m| &m.0 == id).map(|m| m.1)
            })
            .flatten()
    }

    /// Calls `callback` with `view_changed`, `member_promoted` and `member_removed` events of
    /// this group, in view order, on a dispatcher thread; first with the current view.
    pub fn on_view_change(&self, callback: impl Fn(Event) + Send + Sync + 'static) {
        self.on_change(Handler::dispatched(callback));
    }

    /// Reports the application's evaluation of this (probationary) member: a pass lets the
    /// service promote it once its probation has passed; a failure removes it.
    pub fn report_check(&self, ok: bool) -> Result<()> {
        self.report_check_start(ok)?.wait()
    }

    /// [`Membership::report_check`] without blocking (see [`Client::lock_start`]).
    pub fn report_check_start(&self, ok: bool) -> Result<Pending<()>> {
        let body = Request::ReportCheck {
            group: self.h.shared.name.clone(),
            id: self.h.shared.id.clone().unwrap_or_default(),
            ok,
        };
        let make = |_: &Client, a: Answer| match a? {
            (Reply::Done, _) => Ok(()),
            (r, _) => Err(Error::Rejected(format!("unexpected reply {r:?}"))),
        };
        let c = &self.h.client;
        c.pending(body, c.no_answer(), make, "report_check")
    }

    /// Leaves the group and waits for the service to confirm.
    pub fn leave(self) -> Result<()> {
        self.leave_inner(true)
    }

    /// [`Membership::leave`] without blocking (see [`Client::lock_start`]).
    pub fn leave_start(self) -> Result<Pending<()>> {
        self.h.give_up_start(leave_request)
    }

    fn leave_inner(&self, wait: bool) -> Result<()> {
        self.h.give_up(wait, leave_request)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Then `h` stops the callbacks and has the record forgotten.
        let _ = self.leave_inner(false);
    }
}

/// A watch on a group's views without being a member. Dropping it stops the callbacks.
pub struct GroupWatch {
    h: Handle<ViewInfo>,
}

impl fmt::Debug for GroupWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupWatch")
            .field("group", &self.h.shared.name)
            .field("view", &self.view())
            .finish()
    }
}

impl GroupWatch {
    /// The view as last told.
    pub fn view(&self) -> View {
        self.value()
    }

    /// See [`Membership::on_view_change`].
    pub fn on_view_change(&self, callback: impl Fn(Event) + Send + Sync + 'static) {
        self.on_change(Handler::dispatched(callback));
    }

    /// Stops watching.
    pub fn close(self) {}
}

impl Client {
    /// Joins `group` as a probationary member. The service promotes it to full member once
    /// it has had a live session with no missed heartbeat for `probation` (and, with
    /// `needs_check`, its application check passed); it is removed when its session ends.
    pub fn join(&self, group: &str, opts: JoinOptions) -> Result<Membership> {
        self.join_start(group, opts)?.wait()
    }

    /// [`Client::join`] without blocking (see [`Client::lock_start`]). A `Pending` dropped
    /// before its result leaves the group again.
    pub fn join_start(&self, group: &str, opts: JoinOptions) -> Result<Pending<Membership>> {
        super::check(Text::GroupName, group)?;
        super::check(Text::MemberId, &opts.id)?;
        let ms = opts.probation.as_millis();
        if ms > crate::server::state::MAX_TTL_MS as u128 {
            return Err(Error::InvalidArgument(format!(
                "probation {:?} is longer than a day",
                opts.probation
            )));
        }
        let body = Request::Join {
            group: group.to_string(),
            id: opts.id,
            probation_ms: ms as u64,
            needs_check: opts.needs_check,
        };
        let make = |c: &Client, a: Answer| {
            Ok(Membership {
                h: handle_of(c, a, pick)?,
            })
        };
        self.pending(body, self.no_answer(), make, "join")
    }

    /// Watches `group`'s views.
    pub fn watch_group(&self, group: &str) -> Result<GroupWatch> {
        self.watch_group_start(group)?.wait()
    }

    /// [`Client::watch_group`] without blocking (see [`Client::lock_start`]).
    pub fn watch_group_start(&self, group: &str) -> Result<Pending<GroupWatch>> {
        super::check(Text::GroupName, group)?;
        let body = Request::WatchGroup {
            group: group.to_string(),
        };
        let make = |c: &Client, a: Answer| {
            Ok(GroupWatch {
                h: handle_of(c, a, pick)?,
            })
        };
        self.pending(body, self.no_answer(), make, "watch_group")
    }

    /// Removes the failed full member `failed` and promotes the probationary member
    /// `probationary` in a single view change; returns the new view.
    pub fn replace(&self, group: &str, failed: &str, probationary: &str) -> Result<View> {
        self.replace_start(group, failed, probationary)?.wait()
    }

    /// [`Client::replace`] without blocking (see [`Client::lock_start`]).
    pub fn replace_start(
        &self,
        group: &str,
        failed: &str,
        probationary: &str,
    ) -> Result<Pending<View>> {
        super::check(Text::GroupName, group)?;
        let body = Request::Replace {
            group: group.to_string(),
            failed: failed.to_string(),
            probationary: probationary.to_string(),
        };
        let make = |_: &Client, a: Answer| match a? {
            (Reply::View(v), _) => Ok(to_view(&v)),
            (r, _) => Err(Error::Rejected(format!("unexpected reply {r:?}"))),
        };
        self.pending(body, self.no_answer(), make, "replace")
    }
}

/// The request that gives up a membership.
fn leave_request(group: &str, id: String) -> Request {
    Request::Leave {
        group: group.to_string(),
        id,
    }
}
