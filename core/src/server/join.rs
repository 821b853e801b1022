//! How a member without an incarnation token (a new or wiped data directory) finds the one
//! to take (SPEC 3.7, seed 004). Sans-IO: the node feeds it the hellos of the other members
//! (each says whether that member has a token, and which) and asks it what to do.
//!
//! The rules:
//! - **A majority holds the same token**: take it. The group went on without this member's
//!   data; the member is behind and catches up from the leader before it votes or campaigns
//!   (the node's catch-up gate), which closes Raft's wiped-disk hazard (a member that forgot
//!   its log and its vote and grants votes as if empty). A majority of what? Of the members
//!   this one was started with (`--cluster`), or of the voters of the configuration the
//!   members that answered report (the group's members change: a new member started to
//!   replace a failed one cannot hear from it, and members added since are not in its
//!   list); either suffices. Every member that answers is counted, in the list or not.
//! - **Fewer than a majority hold one**: the group's state may be lost, and only an operator
//!   may begin a new incarnation (every client then gets `data_lost`). The operator's word
//!   is `--bootstrap`: the lowest-numbered member, started with it and without a token,
//!   draws a new token once a majority of members (itself included) answered that they have
//!   none and were started with `--bootstrap` too; the others started with `--bootstrap`
//!   take it while its holder has applied nothing (`fresh`). A first start of a group is
//!   the same operator act: every member gets `--bootstrap`.
//! - Otherwise: wait, and say why.

use super::replica::MemberId;
use crate::proto::Incarnation;
use std::collections::BTreeMap;

/// What another member said in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heard {
    pub(crate) incarnation: Option<Incarnation>,
    pub(crate) fresh: bool,
    pub(crate) bootstrap: bool,
    /// The voters of its configuration (empty without a token).
    pub(crate) voters: Vec<MemberId>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Keep waiting: the reason, for the log.
    Wait(String),
    /// Take this token. `behind`: the group may have committed entries this member lacks
    /// (it must catch up before it votes).
    Take {
        incarnation: Incarnation,
        behind: bool,
    },
    /// Begin a new incarnation with a new token (this member is the one to draw it).
    Draw,
}

/// A member's search for its incarnation.
#[derive(Debug)]
pub(crate) struct Join {
    me: MemberId,
    members: Vec<MemberId>,
    bootstrap: bool,
    heard: BTreeMap<MemberId, Heard>,
}

impl Join {
    /// Member `me` of `members` (itself included), started with `--bootstrap` or not.
    pub(crate) fn new(me: MemberId, members: Vec<MemberId>, bootstrap: bool) -> Join {
        Join {
            me,
            members,
            bootstrap,
            heard: BTreeMap::new(),
        }
    }

    /// Member `from` said hello (the latest hello of a member replaces its earlier one).
    pub(crate) fn heard(&mut self, from: MemberId, h: Heard) {
        if from != self.me && from != 0 {
            self.heard.insert(from, h);
        }
    }

    /// A token held by a majority of the voters of a configuration some holder of it
    /// reports.
    fn held_by_a_reported_majority(&self) -> Option<Incarnation> {
        for h in self.heard.values() {
            let (Some(t), false) = (h.incarnation, h.voters.is_empty()) else {
                continue;
            };
            let holders = h
                .voters
                .iter()
                .filter(|v| self.heard.get(v).is_some_and(|x| x.incarnation == Some(t)))
                .count();
            if holders > h.voters.len() / 2 {
                return Some(t);
            }
        }
        None
    }

    fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// What to do, given what was heard.
    pub(crate) fn decide(&self) -> Decision {
        let mut counts: BTreeMap<Incarnation, usize> = BTreeMap::new();
        for (id, h) in &self.heard {
            if let (Some(t), true) = (h.incarnation, self.members.contains(id)) {
                *counts.entry(t).or_default() += 1;
            }
        }
        let listed = counts
            .iter()
            .find(|(_, n)| **n >= self.majority())
            .map(|(t, _)| *t);
        if let Some(t) = listed.or_else(|| self.held_by_a_reported_majority()) {
            return Decision::Take {
                incarnation: t,
                behind: true,
            };
        }
        let lowest = self.members.iter().copied().min().unwrap_or(self.me);
        if self.bootstrap {
            if let Some(h) = self.heard.get(&lowest) {
                if let (Some(t), true) = (h.incarnation, h.fresh) {
                    return Decision::Take {
                        incarnation: t,
                        behind: false,
                    };
                }
            }
            if lowest == self.me {
                let empty = self
                    .heard
                    .values()
                    .filter(|h| h.incarnation.is_none() && h.bootstrap)
                    .count();
                if empty + 1 >= self.majority() {
                    return Decision::Draw;
                }
                return Decision::Wait(format!(
                    "waiting for a majority of the {} members to answer, without a token and \
                     started with --bootstrap, before beginning a new incarnation ({} so far)",
                    self.members.len(),
                    empty + 1
                ));
            }
            return Decision::Wait(format!(
                "waiting for member {lowest} to begin the new incarnation (--bootstrap)"
            ));
        }
        let with: usize = counts.values().sum();
        Decision::Wait(format!(
            "this member has no incarnation token, and {with} of the {} members answered with \
             one (a majority must hold the same token to rejoin); if the group's data is lost, \
             start every member with --bootstrap to begin a new incarnation",
            self.members.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(incarnation: Option<Incarnation>, fresh: bool, bootstrap: bool) -> Heard {
        Heard {
            incarnation,
            fresh,
            bootstrap,
            voters: vec![],
        }
    }

    fn hv(incarnation: Incarnation, voters: &[u64]) -> Heard {
        Heard {
            incarnation: Some(incarnation),
            fresh: false,
            bootstrap: false,
            voters: voters.to_vec(),
        }
    }

    #[test]
    fn a_new_member_counts_a_majority_of_the_configuration_reported() {
        // Member 4, started with 1, 2, 3 and itself while 3 is down: 2 of 4 listed is no
        // majority, but 1 and 2 are a majority of the voters they report.
        let mut j = Join::new(4, vec![1, 2, 3, 4], false);
        j.heard(1, hv(7, &[1, 2, 3]));
        assert!(matches!(j.decide(), Decision::Wait(_)));
        j.heard(2, hv(7, &[1, 2, 3]));
        assert_eq!(
            j.decide(),
            Decision::Take {
                incarnation: 7,
                behind: true
            }
        );
        // Members added since count, listed or not; a minority of the reported voters does
        // not.
        let mut j = Join::new(6, vec![1, 2, 3, 6], false);
        j.heard(4, hv(7, &[1, 3, 4, 5]));
        j.heard(5, hv(7, &[1, 3, 4, 5]));
        assert!(matches!(j.decide(), Decision::Wait(_)), "2 of 4");
        j.heard(3, hv(7, &[1, 3, 4, 5]));
        assert!(matches!(j.decide(), Decision::Take { .. }), "3 of 4");
        // A voter list that the same token's holders do not make a majority of: wait.
        let mut j = Join::new(6, vec![6], false);
        j.heard(1, hv(7, &[1, 2, 3]));
        j.heard(2, hv(8, &[1, 2, 3]));
        assert!(matches!(j.decide(), Decision::Wait(_)));
    }

    #[test]
    fn a_wiped_member_takes_the_majority_token_and_is_behind() {
        let mut j = Join::new(3, vec![1, 2, 3], false);
        j.heard(1, h(Some(7), false, false));
        assert!(matches!(j.decide(), Decision::Wait(_)), "one of three");
        j.heard(2, h(Some(7), false, false));
        assert_eq!(
            j.decide(),
            Decision::Take {
                incarnation: 7,
                behind: true
            }
        );
        // A minority token is not enough, even with --bootstrap.
        let mut j = Join::new(3, vec![1, 2, 3], true);
        j.heard(1, h(Some(7), false, false));
        j.heard(2, h(None, false, true));
        assert!(matches!(j.decide(), Decision::Wait(_)));
    }

    #[test]
    fn a_new_group_begins_only_with_bootstrap_on_a_majority() {
        // Without --bootstrap nobody draws a token.
        let mut j = Join::new(1, vec![1, 2, 3], false);
        j.heard(2, h(None, false, false));
        j.heard(3, h(None, false, false));
        let Decision::Wait(why) = j.decide() else {
            panic!()
        };
        assert!(why.contains("--bootstrap"), "{why}");
        // The lowest member draws once a majority consents.
        let mut j = Join::new(1, vec![1, 2, 3], true);
        assert!(matches!(j.decide(), Decision::Wait(_)));
        j.heard(3, h(None, false, true));
        assert_eq!(j.decide(), Decision::Draw);
        // The others take its token while it is fresh.
        let mut j = Join::new(2, vec![1, 2, 3], true);
        assert!(matches!(j.decide(), Decision::Wait(_)));
        j.heard(1, h(Some(9), true, true));
        assert_eq!(
            j.decide(),
            Decision::Take {
                incarnation: 9,
                behind: false
            }
        );
        // Not once it has applied something: then only the majority rule.
        let mut j = Join::new(2, vec![1, 2, 3], true);
        j.heard(1, h(Some(9), false, true));
        assert!(matches!(j.decide(), Decision::Wait(_)));
        // Members not listed do not count toward the listed majority.
        let mut j = Join::new(2, vec![1, 2, 3], false);
        j.heard(8, h(Some(9), false, false));
        j.heard(9, h(Some(9), false, false));
        assert!(matches!(j.decide(), Decision::Wait(_)));
    }
}
