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
//! rotate/<hub did>/<step>/<signer did>       the hub's current key hands over (step 1, 2, …)
//! recover/<hub did>/<step>/<voter did>       a member gives the hub a new key at that step
//! ```
//!
//! The value is a small JSON object, `{"reason": "…", "at": "<RFC 3339>"}`; rotations and
//! recoveries add the new `key` and the `clock` where the old key's changes end (see
//! [`Successor`]). A change may only put votes naming its own author — the key that signed
//! it — as the voter (so nobody can vote in a member's name) and never deletes one: votes are
//! a signed, append-only record of who decided what, and when. A vote counts for the hub whose
//! key signed it ([`KeyBook::hub_of`]).
//!
//! **The rule** ([`evaluate`]): founders are admitted at the genesis; another hub is admitted
//! once `quorum` admitted hubs other than itself have endorsed it, and stays admitted. An
//! admitted hub is suspended while some suspension case has votes from `quorum` admitted hubs
//! other than itself and that case has not been reinstated by `quorum` of them; suspension goes
//! by case, so a hub can be suspended, reinstated and suspended again. Members are the admitted
//! hubs not suspended. The evaluation reads the votes alone — never arrival order or clocks —
//! and involves no circular counting (admission only grows; suspension counts admitted
//! voters), so every node holding the same votes reaches the same members. Keys are read the
//! same way ([`key_book`], [`evaluate_all`]): step by step from each hub's own key.
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
    /// The hub's current key hands over to a new one (signed by the current key).
    Rotate,
    /// Members give a hub that lost its key, or whose key leaked, a new one.
    Recover,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Endorse => "endorse",
            Action::Suspend => "suspend",
            Action::Reinstate => "reinstate",
            Action::Rotate => "rotate",
            Action::Recover => "recover",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "endorse" => Some(Action::Endorse),
            "suspend" => Some(Action::Suspend),
            "reinstate" => Some(Action::Reinstate),
            "rotate" => Some(Action::Rotate),
            "recover" => Some(Action::Recover),
            _ => None,
        }
    }

    /// Rotations and recoveries name a new key; the other votes do not.
    fn names_a_key(self) -> bool {
        matches!(self, Action::Rotate | Action::Recover)
    }
}

/// The new key a rotation or recovery names, and where the old key's changes end: per actor
/// of the old key in the hub's document, its highest sequence number that stays valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Successor {
    pub key: HubId,
    /// Actor id (hex) → highest valid sequence number of the retiring key's changes in the
    /// hub's document; `m/<actor hex>` → the same in the membership document (its votes).
    pub clock: BTreeMap<String, u64>,
}

/// One vote, as read from the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vote {
    pub action: Action,
    pub target: HubId,
    /// 0 for endorsements; the suspension case for suspensions and reinstatements; the key
    /// step (1, 2, …) for rotations and recoveries.
    pub case: u32,
    /// The key that signed the vote: a member for votes, the hub's current key for a rotation.
    pub voter: HubId,
    pub reason: String,
    /// RFC 3339, as the voter's node wrote it.
    pub at: String,
    /// For rotations and recoveries: the new key and where the old key's changes end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successor: Option<Successor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    reason: String,
    at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clock: Option<BTreeMap<String, u64>>,
}

/// The prefix of a clock entry for an actor's changes to the membership document.
pub const VOTES_CLOCK: &str = "m/";

/// Most actors a rotation's clock may name.
const MAX_CLOCK: usize = 256;

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
            successor: None,
        }
    }

    /// A rotation (by the hub's current key `voter`) or recovery (by a member) of `target`'s
    /// key at key step `step`, naming `successor`.
    pub fn handover(
        action: Action,
        target: HubId,
        step: u32,
        voter: HubId,
        successor: Successor,
        reason: &str,
        now_ms: i64,
    ) -> Vote {
        Vote {
            successor: Some(successor),
            ..Vote::new(action, target, step, voter, reason, now_ms)
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
                "case {case}: endorsements use case 0, suspensions, reinstatements, rotations and recoveries 1 or more"
            ));
        }
        // A hub's own (current) key signs its rotations; every other vote is on another hub.
        if target == voter && action != Action::Rotate {
            return Err("a hub cannot vote on itself".into());
        }
        let note: Note = serde_json::from_str(value).map_err(|e| format!("vote value: {e}"))?;
        if note.reason.chars().count() > MAX_REASON {
            return Err(format!("reason: longer than {MAX_REASON} characters"));
        }
        crate::record::parse_timestamp(&note.at).map_err(|e| format!("at: {e}"))?;
        let successor = match (action.names_a_key(), note.key, note.clock) {
            (true, Some(key), Some(clock)) => {
                let key = HubId::from_did(&key).map_err(|e| format!("key: {e}"))?;
                if key == target || key == voter {
                    return Err(
                        "key: the new key must differ from the hub's and the signer's".into(),
                    );
                }
                if clock.len() > MAX_CLOCK
                    || clock.keys().any(|a| {
                        let actor = a.strip_prefix(VOTES_CLOCK).unwrap_or(a);
                        actor.len() > 128 || hex::decode(actor).is_err()
                    })
                {
                    return Err(format!(
                        "clock: at most {MAX_CLOCK} actors, each a hex actor id"
                    ));
                }
                Some(Successor { key, clock })
            }
            (true, _, _) => return Err(format!("{}: needs a key and a clock", action.as_str())),
            (false, None, None) => None,
            (false, _, _) => return Err(format!("{}: takes no key or clock", action.as_str())),
        };
        Ok(Vote {
            action,
            target,
            case,
            voter,
            reason: note.reason,
            at: note.at,
            successor,
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

/// Read the members from the votes (see the module doc for the rule), every vote counted for
/// the key that signed it (see [`evaluate_all`] for hubs that handed their key over).
pub fn evaluate(founders: &BTreeSet<HubId>, quorum: usize, votes: &[Vote]) -> Membership {
    evaluate_mapped(founders, quorum, votes, &KeyBook::default())
}

/// The members and every hub's keys, from the votes alone. A vote counts for the hub whose
/// key signed it (its own, or one it handed over to); who may recover a key depends on who is
/// a member: both are read together, from the founders' own keys on, until neither changes.
pub fn evaluate_all(
    founders: &BTreeSet<HubId>,
    quorum: usize,
    votes: &[Vote],
) -> (Membership, KeyBook) {
    let mut book = KeyBook::default();
    let mut membership = evaluate_mapped(founders, quorum, votes, &book);
    // Each round can only follow handovers the last one found; a chain of them is short.
    for _ in 0..16 {
        let next = key_book_mapped(&membership, votes, &book);
        if next == book {
            break;
        }
        book = next;
        membership = evaluate_mapped(founders, quorum, votes, &book);
    }
    (membership, book)
}

fn evaluate_mapped(
    founders: &BTreeSet<HubId>,
    quorum: usize,
    votes: &[Vote],
    book: &KeyBook,
) -> Membership {
    // Voting hubs by (target, action, case).
    let mut ballots: BTreeMap<(HubId, Action, u32), BTreeSet<HubId>> = BTreeMap::new();
    for v in votes.iter().filter(|v| !v.action.names_a_key()) {
        ballots
            .entry((v.target, v.action, v.case))
            .or_default()
            .insert(book.hub_of(&v.voter));
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

/// A hub's signing keys as the membership document gives them: its own key (the did that names
/// its document) until a rotation or recovery hands over to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubKeys {
    /// The key that signs the hub's changes now.
    pub current: HubId,
    /// Handovers so far.
    pub step: u32,
    /// Keys handed over, oldest first, each with the clock its valid changes end at.
    pub retired: Vec<(HubId, BTreeMap<String, u64>)>,
    /// Keys named for the next step and not (yet) in effect: a recovery short of the quorum,
    /// or rotations that contradict each other.
    pub proposed: BTreeSet<HubId>,
}

/// What a key is to a hub's document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// Its current key.
    Current,
    /// A key handed over: the change is within the clock where its changes end, or past it.
    Retired { step: u32, within: bool },
    /// Named for the next step, not in effect yet.
    Proposed,
    /// Not a key of this hub.
    Unknown,
}

/// Every hub's keys (hubs that never handed over are not listed: their key is their did).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyBook {
    hubs: BTreeMap<HubId, HubKeys>,
    /// Every key taken up (current or retired) → its hub.
    signers: BTreeMap<HubId, HubId>,
}

impl KeyBook {
    /// The hub a key signs for: the hub that took it up, else the key's own did.
    pub fn hub_of(&self, key: &HubId) -> HubId {
        self.signers.get(key).copied().unwrap_or(*key)
    }

    pub fn keys(&self, hub: &HubId) -> Option<&HubKeys> {
        self.hubs.get(hub)
    }

    /// The key that signs `hub`'s changes now.
    pub fn current(&self, hub: &HubId) -> HubId {
        self.hubs.get(hub).map_or(*hub, |k| k.current)
    }

    /// Whether `author` is any key of `hub` (current, retired or proposed): the check before
    /// a signature is worth verifying.
    pub fn may_sign(&self, hub: &HubId, author: &HubId) -> bool {
        hub == author || self.judge(hub, author, &[], 0) != Signer::Unknown
    }

    /// What `author` is to `hub`'s document, for a change by `actor` numbered `seq`.
    pub fn judge(&self, hub: &HubId, author: &HubId, actor: &[u8], seq: u64) -> Signer {
        self.judge_in(hub, author, actor, seq, false)
    }

    /// [`KeyBook::judge`] for a change to the hub's document, or (`votes`) for one of the
    /// hub's changes to the membership document.
    pub fn judge_in(
        &self,
        hub: &HubId,
        author: &HubId,
        actor: &[u8],
        seq: u64,
        votes: bool,
    ) -> Signer {
        let Some(keys) = self.hubs.get(hub) else {
            return if hub == author {
                Signer::Current
            } else {
                Signer::Unknown
            };
        };
        if keys.current == *author {
            return Signer::Current;
        }
        if let Some(i) = keys.retired.iter().position(|(k, _)| k == author) {
            let clock = &keys.retired[i].1;
            let entry = if votes {
                format!("{VOTES_CLOCK}{}", hex::encode(actor))
            } else {
                hex::encode(actor)
            };
            let within = clock.get(&entry).is_some_and(|max| seq <= *max);
            return Signer::Retired {
                step: i as u32 + 1,
                within,
            };
        }
        if keys.proposed.contains(author) {
            return Signer::Proposed;
        }
        Signer::Unknown
    }

    /// Every hub that handed over its key.
    pub fn hubs(&self) -> impl Iterator<Item = (&HubId, &HubKeys)> {
        self.hubs.iter()
    }
}

/// Read every hub's keys from the votes. Step by step from a hub's own key: step `n` hands
/// over to the key that `quorum` members (other than the hub) named in recoveries at step
/// `n` — the smallest such key should two reach the quorum — and, failing that, to the key a
/// rotation at step `n` signed by the current key names, unless two such rotations name
/// different keys (a key in two hands: only a recovery settles that step). A recovery's old
/// key keeps the changes every recovering member had seen (the lowest clock per actor); a
/// rotation's, those its clock names. A key is never taken up twice by one hub.
pub fn key_book(membership: &Membership, votes: &[Vote]) -> KeyBook {
    key_book_mapped(membership, votes, &KeyBook::default())
}

/// [`key_book`] with recovering members known by the keys `book` gives them.
fn key_book_mapped(membership: &Membership, votes: &[Vote], book: &KeyBook) -> KeyBook {
    let mut by_hub: BTreeMap<HubId, Vec<&Vote>> = BTreeMap::new();
    for v in votes.iter().filter(|v| v.successor.is_some()) {
        by_hub.entry(v.target).or_default().push(v);
    }
    let mut hubs = BTreeMap::new();
    let mut signers = BTreeMap::new();
    for (hub, handovers) in by_hub {
        let mut keys = HubKeys {
            current: hub,
            step: 0,
            retired: Vec::new(),
            proposed: BTreeSet::new(),
        };
        let mut used: BTreeSet<HubId> = [hub].into();
        loop {
            let step = keys.step + 1;
            let at_step: Vec<(&Vote, &Successor)> = handovers
                .iter()
                .filter(|v| v.case == step)
                .filter_map(|v| Some((*v, v.successor.as_ref()?)))
                .filter(|(_, s)| !used.contains(&s.key))
                .collect();
            // Recoveries: the members behind each named key.
            let mut recoveries: BTreeMap<HubId, Vec<&Successor>> = BTreeMap::new();
            for (v, s) in &at_step {
                let voter = book.hub_of(&v.voter);
                if v.action == Action::Recover && voter != hub && membership.is_member(&voter) {
                    recoveries.entry(s.key).or_default().push(s);
                }
            }
            let recovered = recoveries
                .iter()
                .find(|(_, backers)| backers.len() >= membership.quorum.max(1))
                .map(|(key, backers)| {
                    let mut clock: BTreeMap<String, u64> = BTreeMap::new();
                    let actors: BTreeSet<&String> =
                        backers.iter().flat_map(|b| b.clock.keys()).collect();
                    for actor in actors {
                        let lowest = backers
                            .iter()
                            .map(|b| b.clock.get(actor).copied().unwrap_or(0))
                            .min()
                            .unwrap_or(0);
                        clock.insert(actor.clone(), lowest);
                    }
                    (*key, clock)
                });
            let rotations: Vec<&Successor> = at_step
                .iter()
                .filter(|(v, _)| v.action == Action::Rotate && v.voter == keys.current)
                .map(|(_, s)| *s)
                .collect();
            let rotated = match rotations.as_slice() {
                [first, rest @ ..] if rest.iter().all(|s| s.key == first.key) => {
                    Some((first.key, first.clock.clone()))
                }
                _ => None,
            };
            let Some((next, clock)) = recovered.or(rotated) else {
                keys.proposed = at_step.iter().map(|(_, s)| s.key).collect();
                break;
            };
            keys.retired.push((keys.current, clock));
            keys.current = next;
            keys.step = step;
            used.insert(next);
        }
        for key in keys.retired.iter().map(|(k, _)| k).chain([&keys.current]) {
            signers.entry(*key).or_insert(hub);
        }
        hubs.insert(hub, keys);
    }
    KeyBook { hubs, signers }
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
            key: vote.successor.as_ref().map(|s| s.key.to_did()),
            clock: vote.successor.as_ref().map(|s| s.clock.clone()),
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
            successor: None,
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

    fn handover(action: Action, target: u8, step: u32, voter: u8, key: u8, seq: u64) -> Vote {
        let mut actor = hub(target).as_bytes().to_vec();
        actor.extend_from_slice(&[0; 16]);
        Vote {
            successor: Some(Successor {
                key: hub(key),
                clock: [(hex::encode(&actor), seq)].into(),
            }),
            ..vote(action, target, step, voter)
        }
    }

    fn actor(n: u8) -> Vec<u8> {
        let mut a = hub(n).as_bytes().to_vec();
        a.extend_from_slice(&[0; 16]);
        a
    }

    #[test]
    fn a_rotation_signed_by_the_current_key_hands_over_and_retires_it_at_its_clock() {
        let votes = [handover(Action::Rotate, 3, 1, 3, 7, 5)];
        let (m, book) = evaluate_all(&founders(), 2, &votes);
        assert!(m.is_member(&hub(3)));
        assert_eq!(book.current(&hub(3)), hub(7));
        assert_eq!(book.judge(&hub(3), &hub(7), &[], 1), Signer::Current);
        assert_eq!(
            book.judge(&hub(3), &hub(3), &actor(3), 5),
            Signer::Retired {
                step: 1,
                within: true
            }
        );
        assert_eq!(
            book.judge(&hub(3), &hub(3), &actor(3), 6),
            Signer::Retired {
                step: 1,
                within: false
            }
        );
        assert_eq!(book.judge(&hub(3), &hub(9), &[], 1), Signer::Unknown);
        // The retired key cannot rotate again; the current one can.
        let mut more = votes.to_vec();
        more.push(handover(Action::Rotate, 3, 2, 3, 9, 1));
        assert_eq!(
            evaluate_all(&founders(), 2, &more).1.current(&hub(3)),
            hub(7)
        );
        more.push(handover(Action::Rotate, 3, 2, 7, 8, 1));
        assert_eq!(
            evaluate_all(&founders(), 2, &more).1.current(&hub(3)),
            hub(8)
        );
    }

    #[test]
    fn a_key_in_two_hands_is_settled_only_by_a_quorum_of_members() {
        // The owner and a thief both rotate away from key 3.
        let mut votes = vec![
            handover(Action::Rotate, 3, 1, 3, 7, 5),
            handover(Action::Rotate, 3, 1, 3, 9, 5),
        ];
        let (_, book) = evaluate_all(&founders(), 2, &votes);
        assert_eq!(book.current(&hub(3)), hub(3));
        assert_eq!(
            book.keys(&hub(3)).expect("listed").proposed,
            [hub(7), hub(9)].into()
        );
        assert_eq!(book.judge(&hub(3), &hub(7), &[], 1), Signer::Proposed);
        // One member cannot recover a key alone; two can, and keep only what both had seen.
        votes.push(handover(Action::Recover, 3, 1, 1, 7, 4));
        assert_eq!(
            evaluate_all(&founders(), 2, &votes).1.current(&hub(3)),
            hub(3)
        );
        votes.push(handover(Action::Recover, 3, 1, 2, 7, 6));
        let (_, book) = evaluate_all(&founders(), 2, &votes);
        assert_eq!(book.current(&hub(3)), hub(7));
        assert_eq!(
            book.judge(&hub(3), &hub(3), &actor(3), 5),
            Signer::Retired {
                step: 1,
                within: false
            }
        );
        // Non-members recovering count for nothing.
        let outsiders: Vec<Vote> = (10..14)
            .map(|v| handover(Action::Recover, 1, 1, v, 9, 1))
            .collect();
        assert_eq!(
            evaluate_all(&founders(), 2, &outsiders).1.current(&hub(1)),
            hub(1)
        );
    }

    #[test]
    fn a_hub_that_handed_its_key_over_still_votes_with_the_new_one() {
        let votes = [
            handover(Action::Rotate, 3, 1, 3, 7, 1),
            vote(Action::Endorse, 4, 0, 1),
            vote(Action::Endorse, 4, 0, 7),
        ];
        let (m, _) = evaluate_all(&founders(), 2, &votes);
        assert!(m.is_member(&hub(4)), "7 votes for founder 3");
        assert!(!m.standing.contains_key(&hub(7)) || !m.is_member(&hub(7)));
        // The same endorsements read without the handover: 7 is nobody.
        assert!(!evaluate(&founders(), 2, &votes).is_member(&hub(4)));
    }

    #[test]
    fn rotations_and_recoveries_carry_a_key_and_a_clock_and_votes_do_not() {
        let at = r#""reason":"","at":"2026-12-02T10:00:00Z""#;
        let k = hub(7).to_did();
        let key = format!("rotate/{}/1/{}", hub(3).to_did(), hub(3).to_did());
        assert!(Vote::parse(&key, &format!(r#"{{{at},"key":"{k}","clock":{{}}}}"#)).is_ok());
        assert!(Vote::parse(&key, &format!("{{{at}}}")).is_err(), "no key");
        let bad_clock = format!(r#"{{{at},"key":"{k}","clock":{{"zz":1}}}}"#);
        assert!(Vote::parse(&key, &bad_clock).is_err());
        let endorse = format!("endorse/{}/0/{}", hub(4).to_did(), hub(1).to_did());
        let with_key = format!(r#"{{{at},"key":"{k}","clock":{{}}}}"#);
        assert!(
            Vote::parse(&endorse, &with_key).is_err(),
            "a vote names no key"
        );
        let self_recovery = format!("recover/{}/1/{}", hub(3).to_did(), hub(3).to_did());
        assert!(Vote::parse(&self_recovery, &with_key).is_err());
    }
}
