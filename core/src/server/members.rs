//! Changes of the group's own members (SPEC 3.6, following 3.5 and seed 002): what the
//! leader proposes, given the configuration in force and how far each member has come.
//! Sans-IO: the node asks `next_step` on every tick while it leads, and `check_request`
//! when an operator asks for a change (`tenure member add|remove|replace`).
//!
//! The rules:
//! - A new server joins as a **learner** (a probationary member): it receives the log and
//!   votes in nothing.
//! - The leader **promotes** a learner to voter once it has been caught up for
//!   [`PROBATION`] (the seed's minimum healthy time): its log holds everything the leader
//!   had committed [`CATCH_UP_LAG`] ago, and it answered recently.
//! - A learner added to **replace** a voter is promoted and the voter removed in one
//!   configuration change (raft's joint consensus, left automatically), so the group never
//!   runs with fewer voters than it had.
//! - A voter is removed by one change, never the last voter. The leader is never removed
//!   while it leads (raft-rs leaves that case untested): it hands leadership to a caught-up
//!   voter first, and the request is answered "not leader" so that the client asks the new
//!   leader, which does the removal.
//! - One change at a time (raft's rule): a request while one is under way is refused with a
//!   reason, and may be tried again.
//! - Every member's client address travels in the change that adds it and is kept in the
//!   replicated state ([`MemberRecord`]), so members started before it know where it is.

use super::replica::MemberId;
pub use crate::proto::MemberChange;
use raft::eraftpb::{ConfChangeType, ConfState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a learner must have been caught up with the group before it is promoted.
pub const PROBATION: Duration = Duration::from_secs(1);

/// A member is caught up when its log holds everything the leader had committed this long
/// ago.
pub const CATCH_UP_LAG: Duration = Duration::from_millis(500);

/// What the group keeps of a member added by a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Where clients and members reach it (`host:port`).
    pub address: String,
    /// The voter it replaces once promoted, if it was added to replace one.
    pub replaces: Option<MemberId>,
}

/// The context attached to a change: the records it adds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChangeContext {
    pub(crate) add: Vec<(MemberId, MemberRecord)>,
}

/// What the leader does about the group's configuration now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Propose this change (none: leave a joint configuration).
    Propose {
        changes: Vec<(ConfChangeType, MemberId)>,
        context: ChangeContext,
    },
    /// Hand leadership to this voter first (the leader is to be removed).
    Transfer(MemberId),
    /// Nothing to do.
    Nothing,
}

/// How far a member has come, as the leader sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// Its log holds what the leader had committed [`CATCH_UP_LAG`] ago, and it answered
    /// recently.
    pub(crate) caught_up: bool,
    /// It has been caught up for at least [`PROBATION`].
    pub(crate) proven: bool,
}

fn is_member(conf: &ConfState, id: MemberId) -> bool {
    conf.voters.contains(&id) || conf.learners.contains(&id) || conf.learners_next.contains(&id)
}

/// A caught-up voter other than `me` and `except`, to hand leadership to.
fn successor(
    conf: &ConfState,
    me: MemberId,
    except: MemberId,
    progress: &impl Fn(MemberId) -> Progress,
) -> Option<MemberId> {
    conf.voters
        .iter()
        .copied()
        .find(|&v| v != me && v != except && progress(v).caught_up)
}

/// What the leader `me` proposes next, unless a change is under way: leave a joint
/// configuration; promote a proven learner (removing the voter it replaces in the same
/// change).
pub(crate) fn next_step(
    me: MemberId,
    conf: &ConfState,
    records: &BTreeMap<MemberId, MemberRecord>,
    progress: impl Fn(MemberId) -> Progress,
) -> Step {
    if !conf.voters_outgoing.is_empty() {
        return Step::Propose {
            changes: vec![],
            context: ChangeContext::default(),
        };
    }
    for &l in &conf.learners {
        if !progress(l).proven {
            continue;
        }
        let replaces = records
            .get(&l)
            .and_then(|r| r.replaces)
            .filter(|v| conf.voters.contains(v));
        let mut changes = vec![(ConfChangeType::AddNode, l)];
        if let Some(v) = replaces {
            if v == me {
                return match successor(conf, me, v, &progress) {
                    Some(s) => Step::Transfer(s),
                    None => Step::Nothing,
                };
            }
            changes.push((ConfChangeType::RemoveNode, v));
        }
        return Step::Propose {
            changes,
            context: ChangeContext::default(),
        };
    }
    Step::Nothing
}

/// What an operator's request comes to on the leader `me`: a step, or why it is refused.
pub(crate) fn check_request(
    me: MemberId,
    conf: &ConfState,
    change: &MemberChange,
    progress: impl Fn(MemberId) -> Progress,
) -> Result<Step, String> {
    let valid_new = |id: MemberId, address: &str| -> Result<(), String> {
        if id == 0 {
            return Err("member ids start at 1".into());
        }
        if is_member(conf, id) {
            return Err(format!("member {id} is in the group already"));
        }
        if address.is_empty() || address.len() > 255 || !address.contains(':') {
            return Err(format!("{address:?} is not an address (host:port)"));
        }
        Ok(())
    };
    match change {
        MemberChange::Add { id, address } => {
            valid_new(*id, address)?;
            let record = MemberRecord {
                address: address.clone(),
                replaces: None,
            };
            Ok(Step::Propose {
                changes: vec![(ConfChangeType::AddLearnerNode, *id)],
                context: ChangeContext {
                    add: vec![(*id, record)],
                },
            })
        }
        MemberChange::Replace { old, id, address } => {
            valid_new(*id, address)?;
            if !conf.voters.contains(old) {
                return Err(format!("member {old} is not a voter of the group"));
            }
            let record = MemberRecord {
                address: address.clone(),
                replaces: Some(*old),
            };
            Ok(Step::Propose {
                changes: vec![(ConfChangeType::AddLearnerNode, *id)],
                context: ChangeContext {
                    add: vec![(*id, record)],
                },
            })
        }
        MemberChange::Remove { id } => {
            if !is_member(conf, *id) {
                return Err(format!("member {id} is not in the group"));
            }
            if conf.voters.contains(id) && conf.voters.len() == 1 {
                return Err(format!("member {id} is the group's last voter"));
            }
            if *id == me {
                return match successor(conf, me, me, &progress) {
                    Some(s) => Ok(Step::Transfer(s)),
                    None => Err(format!(
                        "member {id} leads and no other voter is caught up to take over"
                    )),
                };
            }
            Ok(Step::Propose {
                changes: vec![(ConfChangeType::RemoveNode, *id)],
                context: ChangeContext::default(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[u64], learners: &[u64]) -> ConfState {
        ConfState::from((voters.to_vec(), learners.to_vec()))
    }

    fn up(caught_up: bool, proven: bool) -> Progress {
        Progress { caught_up, proven }
    }

    #[test]
    fn a_learner_is_promoted_once_proven_and_a_replacement_removes_in_the_same_change() {
        let c = conf(&[1, 2, 3], &[4]);
        let mut records = BTreeMap::new();
        records.insert(
            4,
            MemberRecord {
                address: "h:4".into(),
                replaces: None,
            },
        );
        assert_eq!(
            next_step(1, &c, &records, |_| up(true, false)),
            Step::Nothing
        );
        let Step::Propose { changes, .. } = next_step(1, &c, &records, |_| up(true, true)) else {
            panic!()
        };
        assert_eq!(changes, vec![(ConfChangeType::AddNode, 4)]);
        records.get_mut(&4).unwrap().replaces = Some(3);
        let Step::Propose { changes, .. } = next_step(1, &c, &records, |_| up(true, true)) else {
            panic!()
        };
        assert_eq!(
            changes,
            vec![
                (ConfChangeType::AddNode, 4),
                (ConfChangeType::RemoveNode, 3)
            ]
        );
        // Replacing the leader: leadership goes to a caught-up voter first.
        assert_eq!(
            next_step(3, &c, &records, |_| up(true, true)),
            Step::Transfer(1)
        );
        // A joint configuration is left before anything else.
        let mut j = c.clone();
        j.voters_outgoing = vec![1, 2, 3];
        let Step::Propose { changes, .. } = next_step(1, &j, &records, |_| up(true, true)) else {
            panic!()
        };
        assert!(changes.is_empty());
    }

    #[test]
    fn requests_are_checked_against_the_configuration() {
        let c = conf(&[1, 2, 3], &[]);
        let p = |_| up(true, true);
        let add = |id, a: &str| MemberChange::Add {
            id,
            address: a.into(),
        };
        assert!(check_request(1, &c, &add(2, "h:2"), p)
            .unwrap_err()
            .contains("already"));
        assert!(check_request(1, &c, &add(0, "h:2"), p).is_err());
        assert!(check_request(1, &c, &add(4, "nohost"), p)
            .unwrap_err()
            .contains("address"));
        let Ok(Step::Propose { changes, context }) = check_request(1, &c, &add(4, "h:4"), p) else {
            panic!()
        };
        assert_eq!(changes, vec![(ConfChangeType::AddLearnerNode, 4)]);
        assert_eq!(context.add[0].0, 4);
        let rep = MemberChange::Replace {
            old: 9,
            id: 4,
            address: "h:4".into(),
        };
        assert!(check_request(1, &c, &rep, p)
            .unwrap_err()
            .contains("not a voter"));
        let rm = |id| MemberChange::Remove { id };
        assert!(check_request(1, &c, &rm(7), p).is_err());
        assert_eq!(check_request(1, &c, &rm(1), p), Ok(Step::Transfer(2)));
        assert!(check_request(1, &c, &rm(1), |_| up(false, false))
            .unwrap_err()
            .contains("leads"));
        let one = conf(&[1], &[]);
        assert!(check_request(1, &one, &rm(1), p)
            .unwrap_err()
            .contains("last voter"));
        let Ok(Step::Propose { changes, .. }) = check_request(1, &c, &rm(3), p) else {
            panic!()
        };
        assert_eq!(changes, vec![(ConfChangeType::RemoveNode, 3)]);
    }
}
