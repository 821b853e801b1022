//! Group membership with probationary members (SPEC 3.5, seed 002): numbered views, joining
//! on probation, promotion after an evaluation, and replacement of a failed member by a
//! probationary one in a single view change.
//!
//! Two parts, both sans-IO:
//! - [`Group`]: the durable rules, applied by the server's state machine. Every membership
//!   change (join, promotion, removal, replacement) publishes exactly one new view with a
//!   larger number. [`Group::replace`] removes the failed member and promotes the
//!   probationary one in that single change, so no view ever lacks both.
//! - [`Evaluator`]: the serving node's time-based judgement of probationary members, like
//!   session expiry: a member is due for promotion once it has been healthy (its session
//!   heard from with no gap longer than [`MISSED_HEARTBEAT_FACTOR`] heartbeat intervals) for
//!   its minimum probation, and, when the group asked for one, its application check passed.
//!   A gap restarts the probation clock. The decision enters the log as a command.

use crate::proto::SessionId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most members (full and probationary) of one group: with ids of up to
/// [`crate::proto::MAX_ID_LEN`] bytes, a view (sent whole in every view change) stays within
/// a frame, and a group's row within [`crate::proto::STATUS_PAGE_BYTES`].
pub const MAX_MEMBERS: usize = 2_000;
/// A gap between two requests of a session longer than this many heartbeat intervals (TTL/3)
/// counts as a missed heartbeat.
pub const MISSED_HEARTBEAT_FACTOR: f64 = 1.5;

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRec {
    /// The session it lives under.
    pub session: SessionId,
    /// Full member (true) or probationary (false).
    pub full: bool,
    /// Minimum healthy time before promotion, in milliseconds.
    pub probation_ms: u64,
    /// Whether promotion waits for the application's check.
    pub needs_check: bool,
    /// The application's check passed.
    pub check_passed: bool,
}

/// A group: its view number and members.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Group {
    view: u64,
    members: BTreeMap<String, MemberRec>,
}

/// How a view changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    /// Members promoted to full.
    pub promoted: Vec<String>,
    /// Members removed.
    pub removed: Vec<String>,
    /// Sessions of the removed members: they are told of the view that removed them.
    pub gone: Vec<SessionId>,
}

impl Group {
    /// Leave and check reports: member `id` must not be another session's and, with
    /// `must_exist` (a check report), must be a member. `group` names the group in errors.
    pub fn check_member(
        &self,
        group: &str,
        id: &str,
        session: SessionId,
        must_exist: bool,
    ) -> Result<(), String> {
        use crate::proto::echo;
        match self.members.get(id) {
            Some(m) if m.session != session => {
                Err(format!("member {} belongs to another session", echo(id)))
            }
            None if must_exist => Err(format!("no member {} in {}", echo(id), echo(group))),
            _ => Ok(()),
        }
    }

    /// The view as clients see it: the number and the members in id order, `true` for full
    /// members.
    pub fn info(&self) -> crate::proto::ViewInfo {
        crate::proto::ViewInfo {
            view: self.view,
            members: self
                .members
                .iter()
                .map(|(id, m)| (id.clone(), m.full))
                .collect(),
        }
    }

    /// The current view number (0 before the first change).
    pub fn view(&self) -> u64 {
        self.view
    }

    /// Members in id order.
    pub fn members(&self) -> impl Iterator<Item = (&String, &MemberRec)> {
        self.members.iter()
    }

    /// A member by id.
    pub fn member(&self, id: &str) -> Option<&MemberRec> {
        self.members.get(id)
    }

    /// True when the group has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Checks a join before it is applied.
    pub fn check_join(&self, id: &str, session: SessionId) -> Result<(), String> {
        match self.members.get(id) {
            Some(m) if m.session != session => {
                Err(format!("member id {id:?} belongs to another session"))
            }
            Some(_) => Ok(()),
            None if self.members.len() >= MAX_MEMBERS => {
                Err(format!("a group may have {MAX_MEMBERS} members"))
            }
            None => Ok(()),
        }
    }

    /// Adds a probationary member; a new view. A member that is already there is unchanged
    /// (no new view).
    pub fn join(&mut self, id: &str, rec: MemberRec) -> bool {
        if self.members.contains_key(id) {
            return false;
        }
        self.members.insert(
            id.to_string(),
            MemberRec {
                full: false,
                check_passed: false,
                ..rec
            },
        );
        self.view += 1;
        true
    }

    /// Records the application's check. A failed check removes a probationary member (a new
    /// view); a passed one makes it eligible. Returns the change when the view changed.
    pub fn report_check(&mut self, id: &str, ok: bool) -> Option<Change> {
        let m = self.members.get_mut(id)?;
        if ok {
            m.check_passed = true;
            return None;
        }
        if m.full {
            return None; // checks evaluate probationary members only
        }
        self.remove(id)
    }

    /// Promotes a probationary member whose evaluation passed; a new view.
    pub fn promote(&mut self, id: &str) -> Option<Change> {
        let m = self.members.get_mut(id)?;
        if m.full || (m.needs_check && !m.check_passed) {
            return None;
        }
        m.full = true;
        self.view += 1;
        Some(Change {
            promoted: vec![id.to_string()],
            ..Default::default()
        })
    }

    /// Removes a member; a new view.
    pub fn remove(&mut self, id: &str) -> Option<Change> {
        let m = self.members.remove(id)?;
        self.view += 1;
        Some(Change {
            removed: vec![id.to_string()],
            gone: vec![m.session],
            ..Default::default()
        })
    }

    /// Checks a replacement: `failed` must be a full member, `probationary` a probationary
    /// one.
    pub fn check_replace(&self, failed: &str, probationary: &str) -> Result<(), String> {
        match self.members.get(failed) {
            Some(m) if m.full => {}
            Some(_) => return Err(format!("{failed:?} is not a full member")),
            None => return Err(format!("{failed:?} is not a member")),
        }
        match self.members.get(probationary) {
            Some(m) if !m.full => Ok(()),
            Some(_) => Err(format!("{probationary:?} is already a full member")),
            None => Err(format!("{probationary:?} is not a member")),
        }
    }

    /// Removes `failed` and promotes `probationary` in one view change.
    pub fn replace(&mut self, failed: &str, probationary: &str) -> Result<Change, String> {
        self.check_replace(failed, probationary)?;
        let gone = self.members.remove(failed).map(|m| m.session);
        if let Some(m) = self.members.get_mut(probationary) {
            m.full = true;
        }
        self.view += 1;
        Ok(Change {
            promoted: vec![probationary.to_string()],
            removed: vec![failed.to_string()],
            gone: gone.into_iter().collect(),
        })
    }

    /// Removes every member of a session in one view change.
    pub fn remove_session(&mut self, s: SessionId) -> Option<Change> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.session == s)
            .map(|(id, _)| id.clone())
            .collect();
        if gone.is_empty() {
            return None;
        }
        for id in &gone {
            self.members.remove(id);
        }
        self.view += 1;
        Some(Change {
            removed: gone,
            ..Default::default()
        })
    }
}

#[derive(Debug)]
struct Probation {
    session: SessionId,
    min: Duration,
    interval: Duration,
    healthy_since: Instant,
    last_heard: Instant,
    /// Probation served; waiting for the application's check.
    eligible: bool,
}

/// The serving node's evaluation of probationary members (volatile, like liveness: after a
/// restart probation starts over).
#[derive(Debug, Default)]
pub struct Evaluator {
    /// (group, member) -> probation record.
    members: BTreeMap<(String, String), Probation>,
    by_session: BTreeMap<SessionId, Vec<(String, String)>>,
}

impl Evaluator {
    /// No member under evaluation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts evaluating a probationary member from `now`. `ttl` is its session's TTL.
    pub fn start(
        &mut self,
        group: &str,
        id: &str,
        session: SessionId,
        min: Duration,
        ttl: Duration,
        now: Instant,
    ) {
        let key = (group.to_string(), id.to_string());
        self.by_session
            .entry(session)
            .or_default()
            .push(key.clone());
        self.members.insert(
            key,
            Probation {
                session,
                min,
                interval: ttl / 3,
                healthy_since: now,
                last_heard: now,
                eligible: false,
            },
        );
    }

    /// Stops evaluating a member (promoted or removed).
    pub fn stop(&mut self, group: &str, id: &str) {
        if let Some(p) = self.members.remove(&(group.to_string(), id.to_string())) {
            if let Some(v) = self.by_session.get_mut(&p.session) {
                v.retain(|k| !(k.0 == group && k.1 == id));
                if v.is_empty() {
                    self.by_session.remove(&p.session);
                }
            }
        }
    }

    /// A request of `session` arrived at `now`: a gap longer than allowed restarts the
    /// probation of its members.
    pub fn heard(&mut self, session: SessionId, now: Instant) {
        let Some(keys) = self.by_session.get(&session) else {
            return;
        };
        for k in keys {
            if let Some(p) = self.members.get_mut(k) {
                let gap = now.saturating_duration_since(p.last_heard);
                if gap > p.interval.mul_f64(MISSED_HEARTBEAT_FACTOR) {
                    p.healthy_since = now;
                    p.eligible = false;
                }
                p.last_heard = p.last_heard.max(now);
            }
        }
    }

    /// Members whose probation time has passed as of `now` (healthy for their minimum,
    /// and heard from recently enough). The state machine still checks the application's
    /// check before promoting.
    pub fn due(&self, now: Instant) -> Vec<(String, String)> {
        self.members
            .iter()
            .filter(|(_, p)| {
                !p.eligible
                    && now.saturating_duration_since(p.healthy_since) >= p.min
                    && now.saturating_duration_since(p.last_heard)
                        <= p.interval.mul_f64(MISSED_HEARTBEAT_FACTOR)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The earliest instant at which [`Evaluator::due`] may return something new.
    pub fn next_due(&self) -> Option<Instant> {
        self.members
            .values()
            .filter(|p| !p.eligible)
            .map(|p| p.healthy_since + p.min)
            .min()
    }

    /// Marks a member that served its probation but waits for its application check.
    pub fn mark_eligible(&mut self, group: &str, id: &str) {
        if let Some(p) = self.members.get_mut(&(group.to_string(), id.to_string())) {
            p.eligible = true;
        }
    }

    /// Whether a member served its probation (see [`Evaluator::mark_eligible`]).
    pub fn is_eligible(&self, group: &str, id: &str) -> bool {
        self.members
            .get(&(group.to_string(), id.to_string()))
            .is_some_and(|p| p.eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn rec(session: SessionId, needs_check: bool) -> MemberRec {
        MemberRec {
            session,
            full: false,
            probation_ms: 1000,
            needs_check,
            check_passed: false,
        }
    }

    #[test]
    fn views_grow_by_one_per_change_and_replace_is_one_change() {
        let mut g = Group::default();
        assert!(g.join("a", rec(1, false)));
        assert!(!g.join("a", rec(1, false)), "joining twice changes nothing");
        assert_eq!(g.view(), 1);
        g.promote("a").unwrap();
        assert_eq!(g.view(), 2);
        g.join("b", rec(2, false));
        assert_eq!(g.view(), 3);
        assert!(g.check_replace("b", "a").is_err(), "b is not full");
        let ch = g.replace("a", "b").unwrap();
        assert_eq!(g.view(), 4, "one view for the replacement");
        assert_eq!(ch.promoted, ["b"]);
        assert_eq!(ch.removed, ["a"]);
        assert!(g.member("b").unwrap().full);
        assert!(g.member("a").is_none());
    }

    #[test]
    fn the_application_check_gates_promotion_and_a_failed_check_removes() {
        let mut g = Group::default();
        g.join("a", rec(1, true));
        assert!(g.promote("a").is_none(), "check not passed yet");
        assert!(g.report_check("a", true).is_none());
        assert!(g.promote("a").is_some());
        g.join("b", rec(2, true));
        let v = g.view();
        let ch = g.report_check("b", false).unwrap();
        assert_eq!(ch.removed, ["b"]);
        assert_eq!(g.view(), v + 1);
        assert!(
            g.report_check("a", false).is_none(),
            "full members are not evaluated"
        );
    }

    #[test]
    fn probation_needs_healthy_time_and_a_gap_restarts_it() {
        let c = ManualClock::new();
        let mut e = Evaluator::new();
        let ttl = Duration::from_millis(900); // heartbeats every 300 ms
        e.start("g", "m", 7, Duration::from_secs(1), ttl, c.now());
        for _ in 0..3 {
            c.advance(Duration::from_millis(300));
            e.heard(7, c.now());
        }
        assert!(e.due(c.now()).is_empty(), "900 ms of 1000");
        // A missed heartbeat: 500 ms gap > 1.5 x 300 ms.
        c.advance(Duration::from_millis(500));
        e.heard(7, c.now());
        c.advance(Duration::from_millis(300));
        e.heard(7, c.now());
        assert!(e.due(c.now()).is_empty(), "probation restarted at the gap");
        for _ in 0..3 {
            c.advance(Duration::from_millis(300));
            e.heard(7, c.now());
        }
        assert_eq!(e.due(c.now()), vec![("g".to_string(), "m".to_string())]);
        // Silent now: not due while unheard.
        c.advance(Duration::from_millis(600));
        assert!(e.due(c.now()).is_empty());
        e.stop("g", "m");
        assert!(e.next_due().is_none());
    }
}
