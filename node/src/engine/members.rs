//! Federation membership inside the engine: whose changes are accepted, whose records are
//! served, and the changes held back until their author is a member.
//!
//! A node that belongs to a federation (it holds a verified genesis) carries the federation's
//! membership document like any other document: verified, durable, synchronised. Who is a
//! member is read from that document alone ([`hubcat_protocol::membership::evaluate`]), so
//! every node holding the same votes serves the same hubs. Changes to a hub's catalogue are
//! accepted only from members, and so are votes; a change from anyone else is *held* — kept
//! in memory, up to [`QUARANTINE_MAX_CHANGES`] changes and [`QUARANTINE_MAX_BYTES`] bytes,
//! oldest dropped first — and applied once its author is admitted (or reinstated). A held
//! change is not a refusal: the peer that relayed it did nothing wrong, and sync brings a
//! dropped one again. Records of hubs that are not members (candidates, suspended hubs) are
//! not served: not listed, not searchable, not offered to peers.
//!
//! A hub's own node accepts its own changes whatever its standing (they are stored and sent
//! once the federation admits the hub), but serves its records only while it is a member,
//! like every other node.

use std::collections::{BTreeSet, HashSet, VecDeque};

use automerge::ChangeHash;
use hubcat_protocol::change::VerifiedChange;
use hubcat_protocol::genesis::Genesis;
use hubcat_protocol::membership::{self, Action, KeyBook, Membership, Signer, Standing, Vote};
use hubcat_protocol::{DocId, HubId};
use serde::Serialize;

use super::EngineError;
use hubcat_protocol::RecordError;

/// Most changes held back at once, over all authors.
pub const QUARANTINE_MAX_CHANGES: usize = 4096;
/// Most bytes of changes held back at once.
pub const QUARANTINE_MAX_BYTES: usize = 16 << 20;

/// What a federation's genesis fixes: its id, founders and quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub federation: String,
    pub founders: BTreeSet<HubId>,
    pub quorum: usize,
}

impl Rules {
    /// The rules of a verified genesis whose id is `id`.
    pub fn from_genesis(genesis: &Genesis, id: &str) -> Rules {
        Rules {
            federation: id.to_owned(),
            founders: genesis.founder_ids().into_iter().collect(),
            quorum: genesis.quorum as usize,
        }
    }

    /// The federation's membership document.
    pub fn doc(&self) -> DocId {
        DocId::Membership(self.federation.clone())
    }
}

/// The node's federation: its rules, the membership its document gives now, and the changes
/// held back.
pub(super) struct Federation {
    pub rules: Rules,
    pub doc: DocId,
    pub membership: Membership,
    /// The keys hubs handed their signing over to.
    pub keys: KeyBook,
    pub quarantine: Quarantine,
}

impl Federation {
    pub fn new(rules: Rules) -> Self {
        Federation {
            membership: membership::evaluate(&rules.founders, rules.quorum, &[]),
            keys: KeyBook::default(),
            doc: rules.doc(),
            rules,
            quarantine: Quarantine::default(),
        }
    }

    /// Re-read the membership and the keys from the document's votes; the hubs whose
    /// standing changed, and whether any hub's keys did.
    pub fn reevaluate(&mut self, votes: &[Vote]) -> (Vec<HubId>, bool) {
        let (next, keys) = membership::evaluate_all(&self.rules.founders, self.rules.quorum, votes);
        let changed = next
            .standing
            .iter()
            .filter(|(hub, _)| self.membership.is_member(hub) != next.is_member(hub))
            .map(|(hub, _)| *hub)
            .collect();
        let keys_changed = keys != self.keys;
        self.membership = next;
        self.keys = keys;
        (changed, keys_changed)
    }

    /// The votes with each voter's key replaced by its hub.
    pub fn by_hub(&self, votes: &[Vote]) -> Vec<Vote> {
        votes
            .iter()
            .map(|v| Vote {
                voter: self.keys.hub_of(&v.voter),
                ..v.clone()
            })
            .collect()
    }
}

/// What the engine does with a verified change.
pub(super) enum Gate {
    Pass,
    /// Held until its author is a member (or its key in effect).
    Hold {
        detail: String,
    },
    Refuse {
        reason: &'static str,
        detail: String,
    },
}

/// Decide on one verified change (see the module doc).
pub(super) fn gate(fed: Option<&Federation>, own: &HubId, v: &VerifiedChange) -> Gate {
    let doc = &v.envelope.doc;
    let Some(fed) = fed else {
        return match doc {
            DocId::Hub(owner) if *owner == v.author => Gate::Pass,
            DocId::Hub(owner) => Gate::Refuse {
                reason: "not_authorised",
                detail: format!(
                    "{} may not write document hub/{}: this node belongs to no federation that handed the hub's key over",
                    v.author.to_did(),
                    owner.to_did()
                ),
            },
            DocId::Membership(id) => Gate::Refuse {
                reason: "no_federation",
                detail: format!(
                    "membership change for federation {id}: this node belongs to no federation"
                ),
            },
        };
    };
    let hub = match doc {
        DocId::Hub(owner) => *owner,
        DocId::Membership(id) if *id != fed.rules.federation => {
            return Gate::Refuse {
                reason: "wrong_federation",
                detail: format!(
                    "membership change for federation {id}: this node belongs to {}",
                    fed.rules.federation
                ),
            }
        }
        DocId::Membership(_) => fed.keys.hub_of(&v.author),
    };
    // Is the author the hub's key, one it handed over (for changes within its clock), or
    // one named to take over?
    let actor = v.change.actor_id().to_bytes();
    let membership_doc = matches!(doc, DocId::Membership(_));
    match fed
        .keys
        .judge_in(&hub, &v.author, actor, v.change.seq(), membership_doc)
    {
        Signer::Current | Signer::Retired { within: true, .. } => {}
        Signer::Retired { step, .. } => {
            return Gate::Refuse {
                reason: "retired_key",
                detail: format!(
                    "change {} to {doc} is signed by {}, a key of {} retired at key step {step}",
                    v.hash,
                    v.author.to_did(),
                    hub.to_did()
                ),
            }
        }
        Signer::Proposed => {
            return Gate::Hold {
                detail: format!(
                    "change {} to {doc} is signed by {}, named to take over {}'s key but not in effect: held until it is",
                    v.hash,
                    v.author.to_did(),
                    hub.to_did()
                ),
            }
        }
        // Possibly a key the membership document will hand the hub over to, whose change
        // arrived first: held, like a change of a hub not admitted yet.
        Signer::Unknown => {
            return Gate::Hold {
                detail: format!(
                    "change {} to {doc} is signed by {}, not (yet) a key of {}: held until the federation hands the hub over to it",
                    v.hash,
                    v.author.to_did(),
                    hub.to_did()
                ),
            }
        }
    }
    if fed.membership.is_member(&hub) || (hub == *own && !membership_doc) {
        return Gate::Pass;
    }
    let standing = match fed.membership.standing.get(&hub) {
        Some(Standing::Suspended) => "is suspended",
        Some(Standing::Candidate) => "is a candidate not yet endorsed by the quorum",
        _ => "is not a member",
    };
    Gate::Hold {
        detail: format!(
            "{} {standing} in federation {}: change {} to {doc} held until it is a member",
            hub.to_did(),
            fed.rules.federation,
            v.hash
        ),
    }
}

/// Changes held back until their author is a member (bounded; oldest dropped first).
#[derive(Default)]
pub(super) struct Quarantine {
    held: VecDeque<VerifiedChange>,
    hashes: HashSet<ChangeHash>,
    bytes: usize,
    /// Changes dropped to keep within the bounds, since the node started.
    pub dropped: u64,
}

impl Quarantine {
    /// Hold `v` (a change already held is not held twice).
    pub fn hold(&mut self, v: VerifiedChange) {
        if !self.hashes.insert(v.hash) {
            return;
        }
        self.bytes += v.envelope.change.len();
        self.held.push_back(v);
        while self.held.len() > QUARANTINE_MAX_CHANGES || self.bytes > QUARANTINE_MAX_BYTES {
            let Some(old) = self.held.pop_front() else {
                break;
            };
            self.forget(&old);
            self.dropped += 1;
        }
    }

    fn forget(&mut self, v: &VerifiedChange) {
        self.hashes.remove(&v.hash);
        self.bytes = self.bytes.saturating_sub(v.envelope.change.len());
    }

    /// Take out every held change, oldest first (to be judged again: those still waiting
    /// come back).
    pub fn release(&mut self) -> Vec<VerifiedChange> {
        self.hashes.clear();
        self.bytes = 0;
        std::mem::take(&mut self.held).into()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }
}

/// The votes to cast for `action` on `target` by `voter`, given the document's `votes` and the
/// current `membership`; the error says why this vote cannot be cast.
pub(super) fn plan(
    membership: &Membership,
    votes: &[Vote],
    voter: &HubId,
    action: Action,
    target: &HubId,
) -> Result<Vec<(Action, u32)>, EngineError> {
    plan_or_why(membership, votes, voter, action, target).map_err(|(kind, why)| match kind {
        Why::Target => EngineError::Invalid(RecordError::field("target", why)),
        Why::Voter => EngineError::Forbidden(why),
        Why::State => EngineError::Conflict(why),
    })
}

/// Why a vote cannot be cast: about its target, its voter, or the state of the votes.
enum Why {
    Target,
    Voter,
    State,
}

fn plan_or_why(
    membership: &Membership,
    votes: &[Vote],
    voter: &HubId,
    action: Action,
    target: &HubId,
) -> Result<Vec<(Action, u32)>, (Why, String)> {
    let did = target.to_did();
    if target == voter {
        return Err((Why::Target, "a hub cannot vote on itself".into()));
    }
    if !membership.is_member(voter) {
        return Err((
            Why::Voter,
            format!(
                "this hub ({}) is not a member of the federation: only members vote",
                voter.to_did()
            ),
        ));
    }
    let state = |why: String| Err((Why::State, why));
    let cast_already = |action: Action, case: u32| {
        votes.iter().any(|v| {
            v.action == action && v.case == case && v.target == *target && v.voter == *voter
        })
    };
    let standing = membership.standing.get(target).copied();
    // Voters on (action, case) counted as the rule counts them: admitted hubs other than the
    // target.
    let admitted = |h: &HubId| {
        membership
            .standing
            .get(h)
            .is_some_and(|s| *s != Standing::Candidate)
    };
    let tally = |action: Action, case: u32| {
        votes
            .iter()
            .filter(|v| v.action == action && v.case == case && v.target == *target)
            .filter(|v| admitted(&v.voter))
            .map(|v| v.voter)
            .collect::<BTreeSet<_>>()
            .len()
    };
    match action {
        Action::Endorse => {
            if matches!(
                standing,
                Some(Standing::Founder | Standing::Member | Standing::Suspended)
            ) {
                return state(format!("{did} is already a member"));
            }
            if cast_already(Action::Endorse, 0) {
                return state(format!("this hub has already endorsed {did}"));
            }
            Ok(vec![(Action::Endorse, 0)])
        }
        Action::Suspend => {
            match standing {
                Some(Standing::Suspended) => return state(format!("{did} is already suspended")),
                Some(Standing::Founder | Standing::Member) => {}
                _ => return state(format!("{did} is not a member")),
            }
            // Join the open case (suspension votes short of the quorum), else open a new one.
            let highest = votes
                .iter()
                .filter(|v| v.target == *target && v.action == Action::Suspend)
                .map(|v| v.case)
                .max()
                .unwrap_or(0);
            let case = if highest > 0 && tally(Action::Suspend, highest) < membership.quorum {
                highest
            } else {
                highest + 1
            };
            if cast_already(Action::Suspend, case) {
                return state(format!(
                    "this hub has already voted to suspend {did} (case {case}); it waits for more votes"
                ));
            }
            Ok(vec![(Action::Suspend, case)])
        }
        Action::Reinstate => {
            if standing != Some(Standing::Suspended) {
                return state(format!("{did} is not suspended"));
            }
            // Every suspension case in effect: suspended by the quorum, not yet reinstated.
            let cases: BTreeSet<u32> = votes
                .iter()
                .filter(|v| v.target == *target && v.action == Action::Suspend)
                .map(|v| v.case)
                .filter(|c| {
                    tally(Action::Suspend, *c) >= membership.quorum
                        && tally(Action::Reinstate, *c) < membership.quorum
                })
                .filter(|c| !cast_already(Action::Reinstate, *c))
                .collect();
            if cases.is_empty() {
                return state(format!(
                    "this hub has already voted to reinstate {did}; it waits for more votes"
                ));
            }
            Ok(cases.into_iter().map(|c| (Action::Reinstate, c)).collect())
        }
        // Handovers name a key: see `Catalogue::rotate_key` and `Catalogue::recover_key`.
        Action::Rotate | Action::Recover => Err((
            Why::Target,
            format!("{} names a new key: use the key commands", action.as_str()),
        )),
    }
}

/// A vote as listed for people.
#[derive(Debug, Clone, Serialize)]
pub struct VoteView {
    pub action: Action,
    pub case: u32,
    pub voter: String,
    pub reason: String,
    pub at: String,
}

/// One hub the membership document names.
#[derive(Debug, Clone, Serialize)]
pub struct HubStanding {
    pub did: String,
    pub standing: Standing,
    /// Every vote on this hub, oldest first.
    pub votes: Vec<VoteView>,
}

/// The federation's members, candidates and suspended hubs, with who voted what and when.
#[derive(Debug, Clone, Serialize)]
pub struct MembersReport {
    pub federation: String,
    pub quorum: usize,
    pub members: Vec<HubStanding>,
    /// Hubs endorsed by fewer members than the quorum so far.
    pub candidates: Vec<HubStanding>,
    pub suspended: Vec<HubStanding>,
    /// Changes held back until their authors are members.
    pub held_changes: usize,
}

pub(super) fn report(fed: &Federation, votes: &[Vote]) -> MembersReport {
    let mut out = MembersReport {
        federation: fed.rules.federation.clone(),
        quorum: fed.rules.quorum,
        members: Vec::new(),
        candidates: Vec::new(),
        suspended: Vec::new(),
        held_changes: fed.quarantine.len(),
    };
    for (hub, standing) in &fed.membership.standing {
        let mut on: Vec<VoteView> = votes
            .iter()
            .filter(|v| v.target == *hub)
            .map(|v| VoteView {
                action: v.action,
                case: v.case,
                voter: v.voter.to_did(),
                reason: v.reason.clone(),
                at: v.at.clone(),
            })
            .collect();
        on.sort_by(|a, b| (&a.at, &a.voter).cmp(&(&b.at, &b.voter)));
        let entry = HubStanding {
            did: hub.to_did(),
            standing: *standing,
            votes: on,
        };
        match standing {
            Standing::Founder | Standing::Member => out.members.push(entry),
            Standing::Candidate => out.candidates.push(entry),
            Standing::Suspended => out.suspended.push(entry),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use automerge::transaction::{CommitOptions, Transactable};
    use automerge::{ActorId, Automerge, ReadDoc, ROOT};
    use hubcat_protocol::change;
    use hubcat_protocol::membership::MembershipDoc;
    use hubcat_protocol::{CatalogueDoc, HubKey, SignedChange};

    use super::*;
    use crate::engine::tests::service;
    use crate::engine::{Catalogue, ListFilter};
    use crate::store::SledStore;

    fn key(n: u8) -> HubKey {
        HubKey::from_secret_bytes(&[n; 32]).expect("key")
    }

    fn id(n: u8) -> HubId {
        key(n).id()
    }

    /// Founders 1, 2 and 3; quorum 2.
    fn rules() -> Rules {
        Rules {
            federation: "health-hubs-00ff".into(),
            founders: [id(1), id(2), id(3)].into(),
            quorum: 2,
        }
    }

    fn node(n: u8) -> (Catalogue, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(dir.path()).expect("store"));
        let c = Catalogue::open_in(store, key(n), Some(rules())).expect("open");
        (c, dir)
    }

    /// Hub `n` publishes a service (change number `seq` of its document).
    fn publication(doc: &mut CatalogueDoc, n: u8, slug: &str) -> SignedChange {
        let change = doc
            .upsert(&service(slug, slug), hubcat_protocol::now_ms())
            .expect("change");
        change::sign(&key(n), doc.id(), &change)
    }

    fn served(c: &Catalogue, n: u8) -> Vec<String> {
        c.list(&ListFilter {
            publisher: Some(id(n)),
            ..ListFilter::default()
        })
        .into_iter()
        .map(|v| v.record.meta().id.clone().unwrap_or_default())
        .collect()
    }

    /// Give `to` everything `from` serves (a sync round without the network).
    fn sync(from: &Catalogue, to: &Catalogue) {
        for (doc, _) in from.doc_heads() {
            let cs = from
                .changes_since(&doc, &[], &[], usize::MAX)
                .expect("served document");
            let r = to
                .ingest(cs.changes, hubcat_protocol::now_ms())
                .expect("ingest");
            assert!(r.refused.is_empty(), "{:?}", r.refused);
        }
    }

    #[test]
    fn a_candidate_is_held_until_the_quorum_endorses_it_then_served() {
        let (a, _da) = node(1);
        let (b, _db) = node(2);
        let mut d_doc = CatalogueDoc::new(id(4), [4; 16]);
        let first = publication(&mut d_doc, 4, "lab");

        let r = a
            .ingest(vec![first.clone()], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!((r.accepted, r.refused.len(), r.held.len()), (0, 0, 1));
        assert!(
            r.held[0].detail.contains("candidate") || r.held[0].detail.contains("not a member")
        );
        assert!(served(&a, 4).is_empty());
        assert_eq!(a.members().expect("federation").held_changes, 1);
        assert!(!a.doc_heads().iter().any(|(d, _)| *d == DocId::Hub(id(4))));

        // One founder's endorsement is not enough.
        let votes = a
            .vote(Action::Endorse, &id(4), "EDIH in good standing")
            .expect("vote");
        assert_eq!(votes.len(), 1);
        assert!(served(&a, 4).is_empty());
        let report = a.members().expect("federation");
        assert_eq!(report.candidates.len(), 1);
        assert_eq!(report.candidates[0].votes[0].voter, id(1).to_did());
        assert_eq!(
            report.candidates[0].votes[0].reason,
            "EDIH in good standing"
        );
        // … and it cannot be given twice.
        assert!(matches!(
            a.vote(Action::Endorse, &id(4), ""),
            Err(EngineError::Conflict(_))
        ));

        // The second endorsement, from another founder, admits the hub: its held change is
        // applied at once.
        sync(&a, &b);
        b.vote(Action::Endorse, &id(4), "").expect("vote");
        sync(&b, &a);
        assert_eq!(served(&a, 4), ["lab"]);
        assert_eq!(a.members().expect("federation").held_changes, 0);
        let member = a.members().expect("federation");
        assert!(member.members.iter().any(|h| h.did == id(4).to_did()));

        // From now on its changes are accepted directly, on every node.
        let second = publication(&mut d_doc, 4, "training");
        let r = b
            .ingest(vec![first, second], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!((r.accepted, r.held.len()), (2, 0));
        assert_eq!(served(&b, 4), ["lab", "training"]);
    }

    #[test]
    fn a_quorum_suspends_a_hub_whose_records_and_new_changes_wait_until_it_is_reinstated() {
        let (a, da) = node(1);
        let (b, _db) = node(2);
        let mut c_doc = CatalogueDoc::new(id(3), [3; 16]);
        let r = a
            .ingest(
                vec![publication(&mut c_doc, 3, "lab")],
                hubcat_protocol::now_ms(),
            )
            .expect("ingest");
        assert_eq!(r.accepted, 1, "a founder's change is accepted");

        let v = a.vote(Action::Suspend, &id(3), "spam").expect("vote");
        assert_eq!(v[0].case, 1);
        assert_eq!(served(&a, 3), ["lab"], "one vote does not suspend");
        sync(&a, &b);
        let v = b.vote(Action::Suspend, &id(3), "spam").expect("vote");
        assert_eq!(v[0].case, 1, "the second vote joins the open case");
        sync(&b, &a);
        assert!(served(&a, 3).is_empty(), "suspended: not served");
        assert!(a
            .changes_since(&DocId::Hub(id(3)), &[], &[], usize::MAX)
            .is_none());
        let report = a.members().expect("federation");
        assert_eq!(report.suspended.len(), 1);

        // Its new changes are held, not accepted.
        let later = publication(&mut c_doc, 3, "training");
        let r = a
            .ingest(vec![later.clone()], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!((r.accepted, r.held.len()), (0, 1));

        // The suspension holds across a restart (it is read from the stored votes).
        drop(a);
        let store = Arc::new(SledStore::open(da.path()).expect("store"));
        let a = Catalogue::open_in(store, key(1), Some(rules())).expect("reopen");
        assert!(served(&a, 3).is_empty());

        // Reinstatement by the quorum brings its records back.
        a.vote(Action::Reinstate, &id(3), "cleaned up")
            .expect("vote");
        assert!(served(&a, 3).is_empty(), "one vote does not reinstate");
        sync(&a, &b);
        b.vote(Action::Reinstate, &id(3), "cleaned up")
            .expect("vote");
        sync(&b, &a);
        assert_eq!(served(&a, 3), ["lab"]);
        // The change held before the restart was lost with the memory; a peer brings it again.
        let r = a
            .ingest(vec![later], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(r.accepted, 1);
        assert_eq!(served(&a, 3), ["lab", "training"]);
    }

    #[test]
    fn votes_count_only_from_members_in_their_own_name_in_this_federation() {
        let (a, _da) = node(1);
        let now = hubcat_protocol::now_ms();
        let doc = rules().doc();
        // A non-member's endorsement is held (it would count once its voter is a member).
        let mut md = MembershipDoc::new();
        let vote = Vote::new(Action::Endorse, id(6), 0, id(5), "", now);
        let change = md.cast(&vote, [5; 16], now).expect("cast");
        let r = a
            .ingest(vec![change::sign(&key(5), &doc, &change)], now)
            .expect("ingest");
        assert_eq!((r.accepted, r.held.len()), (0, 1));

        // A vote in a founder's name signed by someone else is refused outright.
        let mut forged = Automerge::new();
        let mut actor = id(5).as_bytes().to_vec();
        actor.extend_from_slice(&[5; 16]);
        forged.set_actor(ActorId::from(actor));
        let mut tx = forged.transaction();
        let key_in_founders_name = Vote::new(Action::Endorse, id(5), 0, id(1), "", now).key();
        tx.put(
            ROOT,
            key_in_founders_name.as_str(),
            r#"{"reason":"","at":"2026-12-02T10:00:00Z"}"#,
        )
        .expect("put");
        let (hash, _) = tx.commit_with(CommitOptions::default().with_time(now));
        let change = forged
            .get_change_by_hash(&hash.expect("hash"))
            .expect("change");
        let r = a
            .ingest(vec![change::sign(&key(5), &doc, &change)], now)
            .expect("ingest");
        assert_eq!(r.refused.len(), 1);
        assert!(
            r.refused[0].detail.contains("in the name of"),
            "{}",
            r.refused[0].detail
        );

        // A founder's genuine vote for another federation is refused.
        let mut md = MembershipDoc::new();
        let vote = Vote::new(Action::Endorse, id(6), 0, id(2), "", now);
        let change = md.cast(&vote, [2; 16], now).expect("cast");
        let other = DocId::Membership("other-fed-1234".into());
        let r = a
            .ingest(vec![change::sign(&key(2), &other, &change)], now)
            .expect("ingest");
        assert_eq!(r.refused[0].reason, "wrong_federation");

        // A node of no federation takes no membership change.
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(dir.path()).expect("store"));
        let open = Catalogue::open(store, key(1)).expect("open");
        let r = open
            .ingest(vec![change::sign(&key(2), &doc, &change)], now)
            .expect("ingest");
        assert_eq!(r.refused[0].reason, "no_federation");
        assert!(matches!(
            open.vote(Action::Endorse, &id(6), ""),
            Err(EngineError::Invalid(_))
        ));

        // Nothing of the above counted.
        let report = a.members().expect("federation");
        assert_eq!(report.members.len(), 3);
        assert!(report.candidates.is_empty());
    }

    #[test]
    fn only_members_vote_and_never_on_themselves() {
        let (d, _dd) = node(4);
        assert!(matches!(
            d.vote(Action::Endorse, &id(5), ""),
            Err(EngineError::Forbidden(_))
        ));
        let (a, _da) = node(1);
        assert!(matches!(
            a.vote(Action::Suspend, &id(1), ""),
            Err(EngineError::Invalid(_))
        ));
        assert!(matches!(
            a.vote(Action::Reinstate, &id(2), ""),
            Err(EngineError::Conflict(_))
        ));
        assert!(matches!(
            a.vote(Action::Endorse, &id(2), ""),
            Err(EngineError::Conflict(_))
        ));
        // A candidate's own records are stored on its node, but not served there either.
        let record = d
            .publish(&service("lab", "Lab"))
            .expect("own publish is stored");
        assert_eq!(record.publisher, id(4).to_did());
        assert!(served(&d, 4).is_empty());
    }

    #[test]
    fn a_rotated_key_signs_for_the_hub_and_new_changes_by_the_old_key_are_refused() {
        let (c, dc) = node(3);
        let (a, _da) = node(1);
        c.publish(&service("lab", "Lab")).expect("publish");
        let vote = c.rotate_key(key(7), "yearly rotation").expect("rotate");
        assert_eq!(vote.action, Action::Rotate);
        c.publish(&service("training", "Training"))
            .expect("publish with the new key");
        sync(&c, &a);
        assert_eq!(served(&a, 3), ["lab", "training"], "records stay valid");
        let report = a.members().expect("federation");
        assert!(report.members.iter().any(|h| h.did == id(3).to_did()));

        // The old key signs a new change: refused everywhere from now on.
        let mut stolen = CatalogueDoc::new(id(3), [9; 16]);
        let late = publication(&mut stolen, 3, "spam");
        let r = a
            .ingest(vec![late.clone()], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(r.refused.len(), 1);
        assert_eq!(r.refused[0].reason, "retired_key");
        let r = c
            .ingest(vec![late], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(
            r.refused[0].reason, "retired_key",
            "on the hub's own node too"
        );
        // A key no handover names is held, never applied.
        let mut other = CatalogueDoc::new(id(3), [8; 16]);
        other.set_actor(&id(9), [8; 16]);
        let change = other
            .upsert(&service("x", "X"), hubcat_protocol::now_ms())
            .expect("change");
        let env = change::sign(&key(9), other.id(), &change);
        let r = a
            .ingest(vec![env], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(
            (r.accepted, r.held.len()),
            (0, 1),
            "held: no handover names it"
        );

        // The hub's votes count under its new key.
        c.vote(Action::Endorse, &id(4), "").expect("vote");
        sync(&c, &a);
        a.vote(Action::Endorse, &id(4), "").expect("vote");
        let report = a.members().expect("federation");
        let four = report
            .members
            .iter()
            .find(|h| h.did == id(4).to_did())
            .expect("4 admitted by 1 and (7 for) 3");
        assert!(four.votes.iter().any(|v| v.voter == id(3).to_did()));

        // Reopened with the new key, the node goes on signing with it.
        drop(c);
        let store = Arc::new(SledStore::open(dc.path()).expect("store"));
        let c = Catalogue::open_as(store, id(3), key(7), Some(rules())).expect("reopen");
        c.publish(&service("imaging", "Imaging")).expect("publish");
        sync(&c, &a);
        assert_eq!(served(&a, 3), ["imaging", "lab", "training"]);
    }

    #[test]
    fn a_leaked_key_is_replaced_by_a_quorum_of_members_and_the_thief_is_refused() {
        let (a, _da) = node(1);
        let (b, _db) = node(2);
        let mut owner = CatalogueDoc::new(id(3), [3; 16]);
        let genuine = publication(&mut owner, 3, "lab");
        for n in [&a, &b] {
            n.ingest(vec![genuine.clone()], hubcat_protocol::now_ms())
                .expect("ingest");
        }
        // The hub's new key (its old one leaked) publishes: held until the recovery is in effect.
        let mut renewed = CatalogueDoc::new(id(3), [4; 16]);
        renewed.set_actor(&id(8), [4; 16]);
        let change = renewed
            .upsert(&service("training", "Training"), hubcat_protocol::now_ms())
            .expect("change");
        let fresh = change::sign(&key(8), renewed.id(), &change);

        // The hub's new node, signing with key 8, may not publish before the recovery.
        let dn = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(dn.path()).expect("store"));
        let renewed_node = Catalogue::open_as(store, id(3), key(8), Some(rules())).expect("open");
        assert!(matches!(
            renewed_node.publish(&service("early", "Early")),
            Err(EngineError::Forbidden(_))
        ));

        a.recover_key(&id(3), &id(8), "key leaked").expect("vote");
        let r = a
            .ingest(vec![fresh.clone()], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(
            (r.accepted, r.held.len()),
            (0, 1),
            "one member cannot recover a key"
        );
        assert!(matches!(
            a.recover_key(&id(3), &id(8), ""),
            Err(EngineError::Conflict(_))
        ));
        sync(&a, &b);
        b.recover_key(&id(3), &id(8), "key leaked").expect("vote");
        sync(&b, &a);
        assert_eq!(served(&a, 3), ["lab", "training"], "the held change is in");
        sync(&a, &renewed_node);
        renewed_node
            .publish(&service("imaging", "Imaging"))
            .expect("the recovered key signs for the hub");

        // The thief, holding the old key, signs on: refused.
        let theft = publication(&mut owner, 3, "spam");
        let r = a
            .ingest(vec![theft], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(r.refused[0].reason, "retired_key");
        assert_eq!(served(&a, 3), ["lab", "training"]);

        // Only members recover keys, and nobody its own.
        let (d, _dd) = node(4);
        assert!(matches!(
            d.recover_key(&id(3), &id(9), ""),
            Err(EngineError::Forbidden(_))
        ));
        assert!(matches!(
            a.recover_key(&id(1), &id(9), ""),
            Err(EngineError::Invalid(_))
        ));
    }
}
