//! Federation membership: the shared document of votes and the rule that reads members from it.
//!
//! **The document.** One Automerge map per federation (`DocId::Membership(<federation id>)`),
//! written by the members, carried and synchronised by every node like the hubs' catalogues.
//! Every key is one vote, and names its voter:
//!
//! ```text
//! endorse/<target did>/0/<voter did>        admit the target
//! suspend/<target did>/<case>/<voter did>   suspend the target (case 1, 2, …)
//! reinstate/<target did>/<case>/<voter did> lift suspension number <case>
//! ```
//!
//! The value is a small JSON object, `{"reason": "…", "at": "<RFC 3339>"}`. A change may only
//! put votes naming its own author as the voter (so nobody can vote in a member's name) and
//! never deletes one: votes are a signed, append-only record of who decided what, and when.
//!
//! **The rule** ([`evaluate`]): founders are admitted at the genesis; another hub is admitted
//! once `quorum` admitted hubs other than itself have endorsed it, and stays admitted. An
//! admitted hub is suspended while some suspension case has votes from `quorum` admitted hubs
//! other than itself and that case has not been reinstated by `quorum` of them; suspension goes
//! by case, so a hub can be suspended, reinstated and suspended again. Members are the admitted
//! hubs not suspended. The evaluation reads the votes alone — never arrival order or clocks —
//! and involves no circular counting (admission only grows; suspension counts admitted
//! voters), so every node holding the same votes reaches the same members.
//!
//! Votes a hub cast while a member stand after it is suspended; what stops a suspended hub
//! from voting on is the node, which accepts changes to the membership document, like changes
//! to a catalogue, only from members, and holds the others back until their author is a
//! member.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{
    transaction::{CommitOptions, Transactable},
    ActorId, Automerge, Change, ReadDoc, ScalarValue, ROOT,
};
use serde::{Deserialize, Serialize};

use crate::identity::HubId;
use crate::layout::{for_root_ops, LayoutError};
use crate::record::format_timestamp;

/// Longest reason given with a vote.
pub const MAX_REASON: usize = 500;

/// What a vote asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Endorse,
    Suspend,
    Reinstate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Endorse => "endorse",
            Action::Suspend => "suspend",
            Action::Reinstate => "reinstate",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "endorse" => Some(Action::Endorse),
            "suspend" => Some(Action::Suspend),
            "reinstate" => Some(Action::Reinstate),
            _ => None,
        }
    }
}

/// One vote, as read from the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vote {
    pub action: Action,
    pub target: HubId,
    /// 0 for endorsements; the suspension case otherwise.
    pub case: u32,
    pub voter: HubId,
    pub reason: String,
    /// RFC 3339, as the voter's node wrote it.
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    reason: String,
    at: String,
}

impl Vote {
    /// A vote cast now (`now_ms`) by `voter`.
    pub fn new(
        action: Action,
        target: HubId,
        case: u32,
        voter: HubId,
        reason: &str,
        now_ms: i64,
    ) -> Vote {
        Vote {
            action,
            target,
            case,
            voter,
            reason: reason.to_owned(),
            at: format_timestamp(now_ms),
        }
    }

    /// The document key of this vote.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.action.as_str(),
            self.target.to_did(),
            self.case,
            self.voter.to_did()
        )
    }

    /// Read a vote from its key and value; the error says what is wrong with which part.
    pub fn parse(key: &str, value: &str) -> Result<Vote, String> {
        let parts: Vec<&str> = key.split('/').collect();
        let [action, target, case, voter] = parts[..] else {
            return Err(format!(
                "`{}` is not a vote key (action/target/case/voter)",
                cut(key)
            ));
        };
        let action = Action::parse(action).ok_or_else(|| {
            format!(
                "`{}`: action must be endorse, suspend or reinstate",
                cut(action)
            )
        })?;
        let target = HubId::from_did(target).map_err(|e| format!("target: {e}"))?;
        let voter = HubId::from_did(voter).map_err(|e| format!("voter: {e}"))?;
        let case: u32 = case
            .parse()
            .map_err(|_| format!("case `{}` is not a number", cut(case)))?;
        if (action == Action::Endorse) != (case == 0) {
            return Err(format!(
                "case {case}: endorsements use case 0, suspensions and reinstatements 1 or more"
            ));
        }
        if target == voter {
            return Err("a hub cannot vote on itself".into());
        }
        let note: Note = serde_json::from_str(value).map_err(|e| format!("vote value: {e}"))?;
        if note.reason.chars().count() > MAX_REASON {
            return Err(format!("reason: longer than {MAX_REASON} characters"));
        }
        crate::record::parse_timestamp(&note.at).map_err(|e| format!("at: {e}"))?;
        Ok(Vote {
            action,
            target,
            case,
            voter,
            reason: note.reason,
            at: note.at,
        })
    }
}

fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Check a change to the membership document signed by `author`: only puts of well-formed
/// votes whose voter is `author`, at the root. Returns the votes.
pub fn check_change(author: &HubId, change: &Change) -> Result<Vec<Vote>, LayoutError> {
    let mut votes = Vec::new();
    for_root_ops(change, |key, action| {
        let automerge::legacy::OpType::Put(ScalarValue::Str(value)) = action else {
            return Err(LayoutError::BadOperation { slot: cut(key) });
        };
        let vote = Vote::parse(key, value).map_err(|detail| LayoutError::Mismatch {
            slot: cut(key),
            detail,
        })?;
        if vote.voter != *author {
            return Err(LayoutError::Mismatch {
                slot: cut(key),
                detail: format!(
                    "a vote in the name of {} signed by {}",
                    vote.voter.to_did(),
                    author.to_did()
                ),
            });
        }
        votes.push(vote);
        Ok(())
    })?;
    Ok(votes)
}

/// Where a hub stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    Founder,
    Member,
    /// Endorsed by fewer than `quorum` members so far.
    Candidate,
    Suspended,
}

/// The members and everyone else the votes name, as [`evaluate`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub quorum: usize,
    pub standing: BTreeMap<HubId, Standing>,
}

impl Membership {
    /// May this hub's catalogue be accepted and served?
    pub fn is_member(&self, hub: &HubId) -> bool {
        matches!(
            self.standing.get(hub),
            Some(Standing::Founder | Standing::Member)
        )
    }

    pub fn is_suspended(&self, hub: &HubId) -> bool {
        self.standing.get(hub) == Some(&Standing::Suspended)
    }

    pub fn members(&self) -> impl Iterator<Item = &HubId> {
        self.standing
            .iter()
            .filter(|(_, s)| matches!(s, Standing::Founder | Standing::Member))
            .map(|(h, _)| h)
    }
}

/// Read the members from the votes (see the module doc for the rule).
pub fn evaluate(founders: &BTreeSet<HubId>, quorum: usize, votes: &[Vote]) -> Membership {
    // Voters by (target, action, case).
    let mut ballots: BTreeMap<(HubId, Action, u32), BTreeSet<HubId>> = BTreeMap::new();
    for v in votes {
        ballots
            .entry((v.target, v.action, v.case))
            .or_default()
            .insert(v.voter);
    }
    let count = |among: &BTreeSet<HubId>, key: &(HubId, Action, u32)| {
        ballots.get(key).map_or(0, |voters| {
            voters
                .iter()
                .filter(|v| **v != key.0 && among.contains(*v))
                .count()
        })
    };
    // Admitted: the founders, then whoever `quorum` admitted hubs endorsed, until no one else
    // is (each round only adds, so this ends, in the same place on every node).
    let mut admitted = founders.clone();
    loop {
        let more: Vec<HubId> = ballots
            .keys()
            .filter(|(t, a, _)| *a == Action::Endorse && !admitted.contains(t))
            .filter(|key| count(&admitted, key) >= quorum)
            .map(|(t, _, _)| *t)
            .collect();
        if more.is_empty() {
            break;
        }
        admitted.extend(more);
    }
    let mut standing = BTreeMap::new();
    for target in votes.iter().map(|v| &v.target).chain(founders) {
        let suspended = admitted.contains(target)
            && ballots
                .range((*target, Action::Suspend, 0)..=(*target, Action::Suspend, u32::MAX))
                .any(|(key, _)| {
                    count(&admitted, key) >= quorum
                        && count(&admitted, &(*target, Action::Reinstate, key.2)) < quorum
                });
        let s = if !admitted.contains(target) {
            Standing::Candidate
        } else if suspended {
            Standing::Suspended
        } else if founders.contains(target) {
            Standing::Founder
        } else {
            Standing::Member
        };
        standing.insert(*target, s);
    }
    Membership { quorum, standing }
}

/// Every vote in a membership document (values that do not parse are skipped: changes are
/// checked before they are applied, so there are none).
pub fn votes_in(doc: &Automerge) -> Vec<Vote> {
    doc.keys(ROOT)
        .filter_map(|key| match doc.get(ROOT, key.as_str()) {
            Ok(Some((automerge::Value::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Str(v) => Vote::parse(&key, v).ok(),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The membership document with the operations the layout allows.
pub struct MembershipDoc {
    doc: Automerge,
}

impl Default for MembershipDoc {
    fn default() -> Self {
        MembershipDoc::new()
    }
}

impl MembershipDoc {
    pub fn new() -> Self {
        MembershipDoc {
            doc: Automerge::new(),
        }
    }

    pub fn from_automerge(doc: Automerge) -> Self {
        MembershipDoc { doc }
    }

    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    pub fn apply(&mut self, changes: Vec<Change>) -> Result<(), LayoutError> {
        self.doc
            .apply_changes(changes)
            .map_err(|e| LayoutError::Automerge(e.to_string()))
    }

    /// Every vote in the document (see [`votes_in`]).
    pub fn votes(&self) -> Vec<Vote> {
        votes_in(&self.doc)
    }

    /// Cast `vote` (its voter is the node's own hub), writing with actor
    /// `voter key || actor_suffix`: one change, to be signed by the voter.
    pub fn cast(
        &mut self,
        vote: &Vote,
        actor_suffix: [u8; 16],
        now_ms: i64,
    ) -> Result<Change, LayoutError> {
        let (action, target, voter) = (vote.action, vote.target, vote.voter);
        let note = serde_json::to_string(&Note {
            reason: vote.reason.clone(),
            at: vote.at.clone(),
        })
        .map_err(|e| LayoutError::Automerge(e.to_string()))?;
        let key = vote.key();
        Vote::parse(&key, &note).map_err(|detail| LayoutError::Mismatch {
            slot: cut(&key),
            detail,
        })?;
        let mut actor = Vec::with_capacity(48);
        actor.extend_from_slice(voter.as_bytes());
        actor.extend_from_slice(&actor_suffix);
        self.doc.set_actor(ActorId::from(actor));
        let mut tx = self.doc.transaction();
        tx.put(ROOT, key.as_str(), note)
            .map_err(|e| LayoutError::Automerge(e.to_string()))?;
        let (hash, _) = tx.commit_with(
            CommitOptions::default()
                .with_message(format!("{} {}", action.as_str(), target.to_did()))
                .with_time(now_ms),
        );
        let hash = hash.ok_or_else(|| LayoutError::Automerge("empty vote change".into()))?;
        self.doc
            .get_change_by_hash(&hash)
            .ok_or_else(|| LayoutError::Automerge("vote change not found".into()))
    }

    /// The case a new suspension of `target` opens (one above its highest case), and the case
    /// a reinstatement closes (its highest).
    pub fn cases(&self, target: &HubId) -> (u32, u32) {
        let highest = self
            .votes()
            .iter()
            .filter(|v| v.target == *target && v.action == Action::Suspend)
            .map(|v| v.case)
            .max()
            .unwrap_or(0);
        (highest + 1, highest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::HubKey;

    fn hub(n: u8) -> HubId {
        HubKey::from_secret_bytes(&[n; 32]).expect("key").id()
    }

    fn vote(action: Action, target: u8, case: u32, voter: u8) -> Vote {
        Vote {
            action,
            target: hub(target),
            case,
            voter: hub(voter),
            reason: String::new(),
            at: "2026-12-02T10:00:00Z".into(),
        }
    }

    fn founders() -> BTreeSet<HubId> {
        [hub(1), hub(2), hub(3)].into()
    }

    #[test]
    fn a_hub_is_admitted_by_a_quorum_of_members_and_not_by_one_founder() {
        let one = [vote(Action::Endorse, 4, 0, 1)];
        let m = evaluate(&founders(), 2, &one);
        assert_eq!(m.standing[&hub(4)], Standing::Candidate);
        assert!(!m.is_member(&hub(4)));

        let two = [
            vote(Action::Endorse, 4, 0, 1),
            vote(Action::Endorse, 4, 0, 2),
        ];
        let m = evaluate(&founders(), 2, &two);
        assert_eq!(m.standing[&hub(4)], Standing::Member);
        assert_eq!(m.standing[&hub(1)], Standing::Founder);

        // Endorsements by non-members do not count, however many.
        let outsiders: Vec<Vote> = (10..20).map(|v| vote(Action::Endorse, 4, 0, v)).collect();
        assert!(!evaluate(&founders(), 2, &outsiders).is_member(&hub(4)));

        // A member admitted by the founders counts towards the next admission.
        let chain = [
            vote(Action::Endorse, 4, 0, 1),
            vote(Action::Endorse, 4, 0, 2),
            vote(Action::Endorse, 5, 0, 4),
            vote(Action::Endorse, 5, 0, 3),
        ];
        assert!(evaluate(&founders(), 2, &chain).is_member(&hub(5)));
    }

    #[test]
    fn suspension_and_reinstatement_go_by_case_and_need_a_quorum() {
        let mut votes = vec![vote(Action::Suspend, 3, 1, 1)];
        assert!(
            evaluate(&founders(), 2, &votes).is_member(&hub(3)),
            "one vote"
        );
        votes.push(vote(Action::Suspend, 3, 1, 2));
        let m = evaluate(&founders(), 2, &votes);
        assert!(m.is_suspended(&hub(3)));
        assert!(!m.is_member(&hub(3)));

        // Alone, 3 can neither suspend 1 in return nor reinstate itself (votes on oneself
        // never count).
        votes.push(vote(Action::Suspend, 1, 1, 3));
        votes.push(vote(Action::Reinstate, 3, 1, 3));
        let m = evaluate(&founders(), 2, &votes);
        assert!(m.is_member(&hub(1)) && m.is_suspended(&hub(3)));

        votes.push(vote(Action::Reinstate, 3, 1, 1));
        votes.push(vote(Action::Reinstate, 3, 1, 2));
        let m = evaluate(&founders(), 2, &votes);
        assert_eq!(m.standing[&hub(3)], Standing::Founder);

        // Suspended again under a new case.
        votes.push(vote(Action::Suspend, 3, 2, 1));
        votes.push(vote(Action::Suspend, 3, 2, 2));
        assert!(evaluate(&founders(), 2, &votes).is_suspended(&hub(3)));
    }

    #[test]
    fn the_answer_does_not_depend_on_the_order_of_votes() {
        let mut votes = vec![
            vote(Action::Endorse, 4, 0, 1),
            vote(Action::Endorse, 4, 0, 2),
            vote(Action::Suspend, 2, 1, 1),
            vote(Action::Suspend, 2, 1, 4),
            vote(Action::Endorse, 5, 0, 2),
            vote(Action::Endorse, 5, 0, 3),
        ];
        let first = evaluate(&founders(), 2, &votes);
        votes.reverse();
        assert_eq!(evaluate(&founders(), 2, &votes), first);
        // 4, admitted by 1 and 2, helps suspend 2; 2's endorsements made before stand.
        assert!(first.is_suspended(&hub(2)));
        assert!(first.is_member(&hub(4)) && first.is_member(&hub(5)));
    }

    #[test]
    fn a_change_may_only_carry_votes_in_its_authors_name() {
        let mut doc = MembershipDoc::new();
        let now = 1_764_000_000_000;
        let endorse = Vote::new(Action::Endorse, hub(4), 0, hub(1), "known hub", now);
        let change = doc.cast(&endorse, [0; 16], now).expect("vote");
        let votes = check_change(&hub(1), &change).expect("own vote");
        assert_eq!(votes.len(), 1);
        assert_eq!(votes[0].target, hub(4));
        let forged = check_change(&hub(2), &change).expect_err("someone else's vote");
        assert!(forged.to_string().contains("in the name of"), "{forged}");
        assert_eq!(doc.votes(), votes);

        // A vote on oneself, or with a bad case, cannot even be written.
        let on_itself = Vote::new(Action::Endorse, hub(1), 0, hub(1), "", now);
        assert!(doc.cast(&on_itself, [0; 16], now).is_err());
        let no_case = Vote::new(Action::Suspend, hub(2), 0, hub(1), "", now);
        assert!(doc.cast(&no_case, [0; 16], now).is_err());
    }
}
