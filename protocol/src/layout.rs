//! The layout of a hub's catalogue document, and the check every incoming change must pass.
//!
//! A hub document is one Automerge map whose keys are *slots*: `profile` holds the hub's
//! profile, every other key is the slug of a service or practice. Each value is the record's
//! canonical JSON (a string), so one upsert is one Automerge operation in one change, merges
//! are record-wise last-writer-wins, and a record's kind can never be forked by a concurrent
//! write. A withdrawal deletes the slot; the history keeps the signed delete.
//!
//! Keys are flat (not `services: {…}` / `practices: {…}` maps) on purpose: nested maps would
//! have to be created by some first change, and two nodes of one hub creating them
//! concurrently would hide each other's records.

use automerge::{
    transaction::{CommitOptions, Transactable},
    ActorId, Automerge, Change, ChangeHash, ReadDoc, ScalarValue, ROOT,
};

use crate::change::DocId;
use crate::identity::{HubDid, HubId};
use crate::record::{format_timestamp, Record, RecordKind, PROFILE_SLUG, SCHEMA_VERSION};

/// Most operations one change may carry.
pub const MAX_OPS_PER_CHANGE: usize = 1024;

/// A record's place in its hub document: `profile` or a service/practice slug.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(String);

impl Slot {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn profile() -> Slot {
        Slot(PROFILE_SLUG.to_owned())
    }

    /// A slot from a slug given by a user or a peer (validated like a record id).
    pub fn parse(key: &str) -> Result<Slot, LayoutError> {
        if key == PROFILE_SLUG || crate::record::check_slug("id", key).is_ok() {
            Ok(Slot(key.to_owned()))
        } else {
            Err(LayoutError::BadSlot(key.chars().take(80).collect()))
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("`{0}` is not a valid record slot")]
    BadSlot(String),
    #[error("change has {0} operations; at most {MAX_OPS_PER_CHANGE}, at least 1")]
    OpCount(usize),
    #[error("operation outside the document root (nested objects are not part of the layout)")]
    NotAtRoot,
    #[error("slot `{slot}`: operation is not a record put or delete")]
    BadOperation { slot: String },
    #[error("slot `{slot}`: the record does not validate: {detail}")]
    BadRecord { slot: String, detail: String },
    #[error("slot `{slot}`: {detail}")]
    Mismatch { slot: String, detail: String },
    #[error("automerge: {0}")]
    Automerge(String),
    #[error("id `{slot}` is already used by a {existing} of this hub")]
    KindConflict { slot: String, existing: RecordKind },
    #[error("no record `{0}` in this hub's catalogue")]
    NotFound(String),
}

/// Check every operation of `change` against the layout of `doc`; return the slots it touches
/// (none for the membership document, which holds votes, not records).
pub fn check_change(doc: &DocId, change: &Change) -> Result<Vec<Slot>, LayoutError> {
    let author = match doc {
        DocId::Hub(owner) => *owner,
        DocId::Membership(_) => author_of(change)?,
    };
    check_change_with(doc, &HubDid::new(author), change).map(|c| c.slots)
}

/// The hub whose key a change's actor id begins with.
pub fn author_of(change: &Change) -> Result<HubId, LayoutError> {
    let actor = change.actor_id().to_bytes();
    actor
        .get(..32)
        .and_then(|key| <&[u8; 32]>::try_from(key).ok())
        .and_then(|key| HubId::from_bytes(key).ok())
        .ok_or_else(|| LayoutError::Mismatch {
            slot: "(actor)".into(),
            detail: "the actor id does not begin with a hub key".into(),
        })
}

/// What [`check_change_with`] found in a change that passed: the records it writes, already
/// parsed and validated, so nobody parses them again.
#[derive(Debug, Clone)]
pub struct CheckedChange {
    /// Every slot the change writes or deletes, sorted, without repeats.
    pub slots: Vec<Slot>,
    /// Per operation, in operation order (lowest op counter first): the slot and the record put
    /// there, or `None` for a delete.
    pub writes: Vec<(Slot, Option<Record>)>,
}

/// [`check_change`] with the author's did already encoded, returning the validated records as
/// well as the slots. In a hub document `author` should be the owner (only the owner writes
/// it); if it is not, the owner's did is encoded again here, so a wrong argument costs time,
/// never a wrong check. In the membership document every vote must name `author` as voter.
pub fn check_change_with(
    doc: &DocId,
    author: &HubDid,
    change: &Change,
) -> Result<CheckedChange, LayoutError> {
    let owner = match doc {
        DocId::Hub(owner) => owner,
        DocId::Membership(_) => {
            crate::membership::check_change(author.id(), change)?;
            return Ok(CheckedChange {
                slots: Vec::new(),
                writes: Vec::new(),
            });
        }
    };
    let encoded;
    let owner_did = if author.id() == owner {
        author.did()
    } else {
        encoded = owner.to_did();
        encoded.as_str()
    };
    // Most changes write one record.
    let mut writes = Vec::with_capacity(1);
    for_root_ops(change, |key, action| {
        let slot = Slot::parse(key)?;
        let record = match action {
            automerge::legacy::OpType::Delete => None,
            automerge::legacy::OpType::Put(ScalarValue::Str(json)) => {
                Some(check_record_in_slot(&slot, json, owner_did)?)
            }
            _ => {
                return Err(LayoutError::BadOperation {
                    slot: slot.0.clone(),
                })
            }
        };
        writes.push((slot, record));
        Ok(())
    })?;
    let mut slots: Vec<Slot> = writes.iter().map(|(s, _)| s.clone()).collect();
    slots.sort();
    slots.dedup();
    Ok(CheckedChange { slots, writes })
}

/// Call `f` with the key and action of each operation of `change`, in order, after checking
/// the shape every document layout shares: 1 to [`MAX_OPS_PER_CHANGE`] operations, each on a
/// key of the root map.
pub(crate) fn for_root_ops<F>(change: &Change, mut f: F) -> Result<(), LayoutError>
where
    F: FnMut(&str, &automerge::legacy::OpType) -> Result<(), LayoutError>,
{
    let ops = change.decode().operations;
    if ops.is_empty() || ops.len() > MAX_OPS_PER_CHANGE {
        return Err(LayoutError::OpCount(ops.len()));
    }
    for op in ops {
        if op.obj != automerge::legacy::ObjectId::Root || op.insert {
            return Err(LayoutError::NotAtRoot);
        }
        let automerge::legacy::Key::Map(key) = &op.key else {
            return Err(LayoutError::NotAtRoot);
        };
        f(key, &op.action)?;
    }
    Ok(())
}

fn check_record_in_slot(slot: &Slot, json: &str, owner_did: &str) -> Result<Record, LayoutError> {
    let record =
        Record::from_json_published_by(json, owner_did).map_err(|e| LayoutError::BadRecord {
            slot: slot.0.clone(),
            detail: e.to_string(),
        })?;
    let mismatch = |detail: String| LayoutError::Mismatch {
        slot: slot.0.clone(),
        detail,
    };
    let is_profile_slot = slot.0 == PROFILE_SLUG;
    if is_profile_slot != (record.kind() == RecordKind::Profile) {
        return Err(mismatch(format!(
            "a {} cannot live in this slot",
            record.kind()
        )));
    }
    let meta = record.meta();
    if meta.id.as_deref() != Some(slot.as_str()) {
        return Err(mismatch(format!(
            "record id {:?} differs from its slot",
            meta.id
        )));
    }
    if meta.publisher.as_deref() != Some(owner_did) {
        return Err(mismatch(format!(
            "record publisher {:?} is not the document's owner",
            meta.publisher
        )));
    }
    Ok(record)
}

/// A hub's catalogue document with the operations the layout allows.
pub struct CatalogueDoc {
    id: DocId,
    doc: Automerge,
}

impl CatalogueDoc {
    /// An empty document for `owner`, writing with actor `owner key || suffix`.
    pub fn new(owner: HubId, actor_suffix: [u8; 16]) -> Self {
        let mut doc = CatalogueDoc {
            id: DocId::Hub(owner),
            doc: Automerge::new(),
        };
        doc.set_actor_suffix(actor_suffix);
        doc
    }

    /// An empty document for a remote hub; this node never writes it.
    pub fn remote(id: DocId) -> Self {
        CatalogueDoc {
            id,
            doc: Automerge::new(),
        }
    }

    /// Wrap an Automerge document (e.g. a fork at earlier heads) as a catalogue document.
    pub fn from_automerge(id: DocId, doc: Automerge) -> Self {
        CatalogueDoc { id, doc }
    }

    /// Load a saved document (a snapshot written by [`CatalogueDoc::save`]).
    pub fn load(id: DocId, bytes: &[u8]) -> Result<Self, LayoutError> {
        let doc = Automerge::load(bytes).map_err(|e| LayoutError::Automerge(e.to_string()))?;
        Ok(CatalogueDoc { id, doc })
    }

    /// Write from now on as `owner key || suffix` (a restored node takes a fresh suffix).
    pub fn set_actor_suffix(&mut self, suffix: [u8; 16]) {
        // Only a hub's own document is written through this type.
        if let Some(owner) = self.id.hub().copied() {
            self.set_actor(&owner, suffix);
        }
    }

    /// Write from now on as `signer key || suffix`: the hub's own key, or the key the
    /// federation handed its signing over to.
    pub fn set_actor(&mut self, signer: &HubId, suffix: [u8; 16]) {
        let mut actor = Vec::with_capacity(48);
        actor.extend_from_slice(signer.as_bytes());
        actor.extend_from_slice(&suffix);
        self.doc.set_actor(ActorId::from(actor));
    }

    pub fn id(&self) -> &DocId {
        &self.id
    }

    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn has_change(&self, hash: &ChangeHash) -> bool {
        self.doc.get_change_by_hash(hash).is_some()
    }

    /// Every change in the document, in causal order.
    pub fn changes(&self) -> Vec<Change> {
        self.doc.get_changes(&[])
    }

    /// Apply verified changes (idempotent; changes with missing dependencies wait inside).
    pub fn apply(&mut self, changes: Vec<Change>) -> Result<(), LayoutError> {
        self.doc
            .apply_changes(changes)
            .map_err(|e| LayoutError::Automerge(e.to_string()))
    }

    /// The canonical JSON in `slot`, if a record lives there.
    pub fn get(&self, slot: &Slot) -> Option<String> {
        match self.doc.get(ROOT, slot.as_str()) {
            Ok(Some((automerge::Value::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Str(json) => Some(json.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Every occupied slot.
    pub fn slots(&self) -> Vec<Slot> {
        self.doc.keys(ROOT).map(Slot).collect()
    }

    /// The record in `slot`, parsed (records in the document were validated on entry).
    pub fn record(&self, slot: &Slot) -> Option<Record> {
        self.get(slot)
            .and_then(|json| Record::from_json(json.as_bytes()).ok())
    }

    /// Create or update a record as one change. Fills the envelope: schema, id (generated
    /// when absent), publisher, issued (kept on update), modified and last_confirmed (now).
    pub fn upsert(&mut self, record: &Record, now_ms: i64) -> Result<Change, LayoutError> {
        let mut record = record.clone();
        let slot = match record.kind() {
            RecordKind::Profile => Slot::profile(),
            _ => match &record.meta().id {
                Some(id) => Slot::parse(id)?,
                None => Slot(uuid_like_slug(&self.doc, now_ms)),
            },
        };
        let existing = self.record(&slot);
        if let Some(existing) = &existing {
            if existing.kind() != record.kind() {
                return Err(LayoutError::KindConflict {
                    slot: slot.0,
                    existing: existing.kind(),
                });
            }
        }
        let owner = self.id.hub().ok_or_else(|| LayoutError::BadOperation {
            slot: "(records belong in a hub document)".into(),
        })?;
        let now = format_timestamp(now_ms);
        let issued = existing.as_ref().and_then(|e| e.meta().issued.clone());
        let meta = record.meta_mut();
        meta.schema = Some(SCHEMA_VERSION);
        meta.id = Some(slot.0.clone());
        meta.publisher = Some(owner.to_did());
        meta.issued = Some(issued.unwrap_or_else(|| now.clone()));
        meta.modified = Some(now.clone());
        meta.last_confirmed = Some(now);
        record.validate().map_err(|e| LayoutError::BadRecord {
            slot: slot.0.clone(),
            detail: e.to_string(),
        })?;
        let json = record.to_canonical_json();
        self.commit(&slot, now_ms, |tx| tx.put(ROOT, slot.as_str(), json))
    }

    /// Confirm a record is still true: the same record with only `last_confirmed` set to now,
    /// as one change (`modified` and every other field stay as they are).
    pub fn confirm(&mut self, slot: &Slot, now_ms: i64) -> Result<Change, LayoutError> {
        let mut record = self
            .record(slot)
            .ok_or_else(|| LayoutError::NotFound(slot.0.clone()))?;
        record.meta_mut().last_confirmed = Some(format_timestamp(now_ms));
        record.validate().map_err(|e| LayoutError::BadRecord {
            slot: slot.0.clone(),
            detail: e.to_string(),
        })?;
        let json = record.to_canonical_json();
        self.commit(slot, now_ms, |tx| tx.put(ROOT, slot.as_str(), json))
    }

    /// Withdraw a record: a signed delete of its slot.
    pub fn withdraw(&mut self, slot: &Slot, now_ms: i64) -> Result<Change, LayoutError> {
        if self.get(slot).is_none() {
            return Err(LayoutError::NotFound(slot.0.clone()));
        }
        self.commit(slot, now_ms, |tx| tx.delete(ROOT, slot.as_str()))
    }

    fn commit<F>(&mut self, slot: &Slot, now_ms: i64, op: F) -> Result<Change, LayoutError>
    where
        F: FnOnce(
            &mut automerge::transaction::Transaction<'_>,
        ) -> Result<(), automerge::AutomergeError>,
    {
        let mut tx = self.doc.transaction();
        if let Err(e) = op(&mut tx) {
            tx.rollback();
            return Err(LayoutError::Automerge(e.to_string()));
        }
        // The message names the slot: provenance for people reading the raw history.
        tx.commit_with(
            CommitOptions::default()
                .with_message(slot.as_str())
                .with_time(now_ms),
        );
        self.doc
            .get_last_local_change()
            .ok_or_else(|| LayoutError::Automerge("commit produced no change".into()))
    }
}

/// A fresh slug for a record published without an id: 16 random hex characters.
fn uuid_like_slug(doc: &Automerge, now_ms: i64) -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No random source: derive from time and history size, still unique per document.
        bytes = (now_ms as u64 ^ (doc.get_heads().len() as u64) << 56).to_be_bytes();
    }
    format!("r{}", hex::encode(bytes))
}

/// A record's id across the federation: its slot and its publisher, written `slot@z6Mk…`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    pub publisher: HubId,
    pub slot: Slot,
}

impl RecordId {
    pub fn new(publisher: HubId, slot: Slot) -> Self {
        RecordId { publisher, slot }
    }

    /// Parse `slot@z6Mk…`.
    pub fn parse(s: &str) -> Result<RecordId, LayoutError> {
        let (slot, publisher) = s
            .rsplit_once('@')
            .ok_or_else(|| LayoutError::BadSlot(s.chars().take(80).collect()))?;
        let publisher = HubId::from_multibase(publisher)
            .map_err(|_| LayoutError::BadSlot(s.chars().take(80).collect()))?;
        Ok(RecordId {
            publisher,
            slot: Slot::parse(slot)?,
        })
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.slot, self.publisher.to_multibase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::HubKey;

    fn practice(id: Option<&str>) -> Record {
        let mut v = serde_json::json!({"kind":"practice","title":{"en":"Telemonitoring"},
            "description":{"en":"Remote monitoring of heart failure patients."},
            "practice_type":"complex-solution","maturity":"deployed"});
        if let Some(id) = id {
            v["id"] = id.into();
        }
        Record::from_value(v).expect("valid")
    }

    #[test]
    fn confirm_changes_only_last_confirmed() {
        let key = HubKey::from_secret_bytes(&[9; 32]).expect("key");
        let mut doc = CatalogueDoc::new(key.id(), [1; 16]);
        doc.upsert(&practice(Some("p")), 1_000_000).expect("upsert");
        let slot = Slot::parse("p").expect("slot");
        let before = doc.record(&slot).expect("record");
        doc.confirm(&slot, 5_000_000).expect("confirm");
        let after = doc.record(&slot).expect("record");
        assert_eq!(
            after.meta().last_confirmed.as_deref(),
            Some("1970-01-01T01:23:20Z")
        );
        let mut same = after.clone();
        same.meta_mut().last_confirmed = before.meta().last_confirmed.clone();
        assert_eq!(same, before);
        assert!(matches!(
            doc.confirm(&Slot::parse("nope").expect("slot"), 5_000_000),
            Err(LayoutError::NotFound(_))
        ));
    }

    #[test]
    fn upsert_fills_the_envelope_and_keeps_issued() {
        let key = HubKey::from_secret_bytes(&[3; 32]).expect("key");
        let mut doc = CatalogueDoc::new(key.id(), [0; 16]);
        doc.upsert(&practice(Some("tm")), 1_000_000).expect("first");
        doc.upsert(&practice(Some("tm")), 2_000_000)
            .expect("update");
        let r = doc
            .record(&Slot::parse("tm").expect("slot"))
            .expect("record");
        assert_eq!(
            r.meta().publisher.as_deref(),
            Some(key.id().to_did().as_str())
        );
        assert_eq!(r.meta().issued.as_deref(), Some("1970-01-01T00:16:40Z"));
        assert_eq!(r.meta().modified.as_deref(), Some("1970-01-01T00:33:20Z"));
        assert_eq!(doc.changes().len(), 2, "one change per upsert");
    }

    #[test]
    fn generated_ids_and_withdrawal() {
        let key = HubKey::from_secret_bytes(&[3; 32]).expect("key");
        let mut doc = CatalogueDoc::new(key.id(), [0; 16]);
        let change = doc.upsert(&practice(None), 1).expect("upsert");
        let slots = check_change(doc.id(), &change).expect("layout");
        assert_eq!(slots.len(), 1);
        doc.withdraw(&slots[0], 2).expect("withdraw");
        assert!(doc.slots().is_empty());
        assert!(matches!(
            doc.withdraw(&slots[0], 3),
            Err(LayoutError::NotFound(_))
        ));
    }

    #[test]
    fn a_change_writing_outside_the_layout_is_refused() {
        let key = HubKey::from_secret_bytes(&[3; 32]).expect("key");
        let mut am = Automerge::new();
        let mut actor = key.id().as_bytes().to_vec();
        actor.extend_from_slice(&[0; 16]);
        am.set_actor(ActorId::from(actor));
        let mut tx = am.transaction();
        tx.put(ROOT, "tm", 42).expect("put");
        tx.commit();
        let change = am.get_last_local_change().expect("change");
        let err = check_change(&DocId::Hub(key.id()), &change).expect_err("refused");
        assert!(matches!(err, LayoutError::BadOperation { .. }));
    }

    #[test]
    fn record_ids_round_trip() {
        let key = HubKey::from_secret_bytes(&[3; 32]).expect("key");
        let id = RecordId::new(key.id(), Slot::parse("ai-testbed").expect("slot"));
        assert_eq!(RecordId::parse(&id.to_string()).expect("parse"), id);
        assert!(RecordId::parse("ai-testbed").is_err());
    }
}
