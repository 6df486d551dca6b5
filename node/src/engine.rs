//! The catalogue engine: one Automerge document per publisher, fed only by verified signed
//! changes, with a materialised view of every record for queries.
//!
//! Local publishes and remote changes take the same path: a change is verified
//! ([`hubcat_protocol::change::verify_batch_with`]), made durable in the store, and then made
//! visible in the view. A local publish first builds and signs its change on the hub's own
//! document; if verification or storage fails the document is rolled back to its previous
//! heads, so nothing unverified or undurable is ever visible.
//!
//! **Deferred Automerge apply.** One `apply_changes` call costs time in proportion to the whole
//! document, so applying each change as it arrives (fresh gossip from many hubs brings about
//! one change per document per batch) costs O(document) per change. A change that simply
//! extends its document — its dependencies are the document's current heads, its operations
//! are record puts numbered above every operation already there, and its actor's sequence
//! number is the next one — has a result known without Automerge: each record it puts becomes
//! that slot's value, with this change as provenance. Such a change is made durable, its
//! already-validated records go straight into the view, and the change waits in
//! `DocState::pending` to be applied together with its document's other waiting changes
//! ([`settle`](DocState::settle)), when enough have gathered, or before anything reads the
//! Automerge document (snapshots, exports, local writes). Every other change (concurrent
//! edits, missing dependencies, deletes) is applied before `ingest` returns and its records
//! are re-read from Automerge, as before. When Automerge later applies waiting changes, the
//! resulting heads are compared with the predicted ones; a difference is logged and the view
//! re-read from the document.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use automerge::{Change, ChangeHash, ReadDoc, ROOT};
use hubcat_protocol::bundle::{
    self, Bundle, BundleChange, BundlePublisher, BundleRecord, Provenance,
};
use hubcat_protocol::change::{self, AuthorCache, ChangeError, VerifiedChange};
use hubcat_protocol::layout::{self, LayoutError};
use hubcat_protocol::membership::{self, Action, MembershipDoc, Successor, Vote};
use hubcat_protocol::record::format_timestamp;
use hubcat_protocol::{
    CatalogueDoc, DocId, HubDid, HubId, HubKey, Record, RecordError, RecordId, RecordKind,
    SignedChange, Slot,
};
use serde::Serialize;

use crate::store::{Snapshot, Store, StoreError};

mod changes;
mod confirm;
pub use changes::RecordChanges;
use changes::RecordMap;
mod batch;
pub use batch::BatchRow;
mod members;
use members::{Federation, Gate};
pub use members::{MembersReport, Rules};

/// A document's deferred changes are applied once this many wait … (64 measured about 5 µs
/// per record slower end to end at 100 000 records; 256 no faster than 128)
pub const SETTLE_MIN: usize = 128;
/// … or once they are this fraction (1/n) of the document's changes, whichever is more: one
/// `apply_changes` costs about the document's size, so this keeps its cost per change bounded.
pub const SETTLE_FRACTION: usize = 4;
/// Deferred changes over all documents before every document is settled (bounds memory: a
/// waiting change takes about 2 KB, so at most about 130 MB; once applied, the same change
/// takes more than that in its Automerge document).
const SETTLE_TOTAL_MAX: usize = 65_536;
/// A document is snapshotted on the ingest path once the changes since its last snapshot
/// reach this many …
const SNAPSHOT_MIN_CHANGES: usize = 4_096;
// … and at least as many as its last snapshot held (so snapshot work stays proportional to
// what was ingested). Every document is also snapshotted by `Catalogue::snapshot` (shutdown).

/// Most bytes of changes one document may hold: a hub's catalogue of tens of thousands of
/// records stays far below; a peer cannot grow one document without bound.
pub const MAX_DOC_BYTES: u64 = 256 << 20;

/// Locally signed changes buffered for the network task (a lagging subscriber loses the oldest;
/// anti-entropy still carries them).
const LOCAL_CHANNEL: usize = 4096;
/// Applied-change notifications buffered per subscriber.
const APPLIED_CHANNEL: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Invalid(#[from] RecordError),
    #[error("{0}")]
    Refused(#[from] ChangeError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<LayoutError> for EngineError {
    fn from(e: LayoutError) -> Self {
        match e {
            LayoutError::KindConflict { .. } => EngineError::Conflict(e.to_string()),
            LayoutError::NotFound(_) => EngineError::NotFound(e.to_string()),
            LayoutError::BadSlot(_) => {
                EngineError::Invalid(RecordError::field("id", e.to_string()))
            }
            LayoutError::BadRecord { .. } | LayoutError::Mismatch { .. } => {
                EngineError::Invalid(RecordError::field("record", e.to_string()))
            }
            other => EngineError::Internal(other.to_string()),
        }
    }
}

/// A record as the node serves it: the signed content plus its proof of origin.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    /// `slot@z6Mk…`, unique across the federation.
    pub id: String,
    pub kind: RecordKind,
    pub publisher: String,
    pub record: Record,
    pub provenance: Provenance,
}

/// What an ingest did with each change.
#[derive(Debug, Default, Clone, Serialize)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub refused: Vec<Refusal>,
    /// Changes by hubs that are not members of the node's federation (yet): held back, not
    /// refused (see [`members`]).
    pub held: Vec<Refusal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// Position of the change in the batch.
    pub index: usize,
    pub reason: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
struct CommitOutcome {
    accepted: usize,
    duplicates: usize,
    refused: Vec<Refusal>,
    held: Vec<Refusal>,
}

/// Filters for listing records.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub kind: Option<RecordKind>,
    pub publisher: Option<HubId>,
    pub country: Option<String>,
    pub category: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogueStatus {
    pub did: String,
    pub records: BTreeMap<RecordKind, usize>,
    pub documents: usize,
    pub changes: usize,
    /// SHA-256 over every (document, heads) pair: equal catalogues have equal digests.
    pub digest: String,
    pub store_bytes: u64,
    pub changes_accepted: u64,
    pub changes_refused: u64,
}

struct DocState {
    /// The Automerge document. It can lag behind the view by the `pending` changes: code that
    /// reads it must [`settle`](DocState::settle) first (see `State::settle_all`).
    doc: CatalogueDoc,
    /// The owner's did strings, encoded once for every view of this document (`None` for the
    /// membership document, which holds votes, not records).
    owner: Option<HubDid>,
    /// The owner is not a member of the node's federation: its records are not served.
    hidden: bool,
    /// Bytes of the changes indexed here (bounded by [`MAX_DOC_BYTES`]).
    bytes: u64,
    /// (actor number in `actors`, start op) → (change hash, last op): finds the change that
    /// wrote a value.
    ops: BTreeMap<(u32, u64), (ChangeHash, u64)>,
    /// change hash → (signature, timestamp ms) of every change in the document.
    sigs: HashMap<ChangeHash, (Vec<u8>, i64)>,
    /// Per actor, its changes by sequence number: an author signing two different changes
    /// with one sequence number (equivocation) is refused before it can reach the document.
    actors: HashMap<Vec<u8>, ActorLog>,
    /// Slots touched by changes still waiting for missing dependencies.
    waiting: BTreeSet<Slot>,
    /// Changes (hash, signed ms) that went through Automerge but were not in the document
    /// after it: waiting for dependencies, not yet announced as applied.
    unannounced: Vec<(ChangeHash, i64)>,
    dirty: bool,
    /// Verified, durable changes already in the view but not yet applied to `doc`; each one
    /// extends the one before (see the module doc).
    pending: Vec<Change>,
    /// Slots the `pending` changes write (re-read from `doc` should Automerge disagree).
    pending_slots: Vec<Slot>,
    /// Heads of `doc` with `pending` applied, sorted.
    heads: Vec<ChangeHash>,
    /// Highest operation counter of any change indexed here.
    max_op: u64,
    /// Automerge holds changes waiting for dependencies, or refused a change: the indexed
    /// changes are then not all in `doc`, so new changes take the general path.
    irregular: bool,
    /// Automerge refused a verified change (logged); stays set until the node reopens.
    apply_failed: bool,
    /// Changes in this document when it was last snapshotted, and indexed since.
    in_snapshot: usize,
    since_snapshot: usize,
    /// The last commit (`State::batch_epoch`) that touched this document.
    batch_epoch: u64,
}

impl DocState {
    fn new(doc: CatalogueDoc) -> Self {
        let mut heads = doc.heads();
        heads.sort();
        DocState {
            owner: doc.id().hub().map(|h| HubDid::new(*h)),
            hidden: false,
            bytes: 0,
            doc,
            ops: BTreeMap::new(),
            sigs: HashMap::new(),
            actors: HashMap::new(),
            waiting: BTreeSet::new(),
            unannounced: Vec::new(),
            dirty: false,
            pending: Vec::new(),
            pending_slots: Vec::new(),
            heads,
            max_op: 0,
            irregular: false,
            apply_failed: false,
            in_snapshot: 0,
            since_snapshot: 0,
            batch_epoch: 0,
        }
    }

    /// The highest sequence number of each actor of `key` in this document (hex actor ids
    /// after `prefix`): where that key's changes end when it is handed over.
    fn clock_of_key(&self, key: &HubId, prefix: &str) -> BTreeMap<String, u64> {
        self.actors
            .iter()
            .filter(|(actor, _)| actor.starts_with(key.as_bytes()))
            .map(|(actor, log)| (format!("{prefix}{}", hex::encode(actor)), log.max_seq))
            .collect()
    }

    /// A new document in a node of federation `fed`: hidden if its owner is not a member.
    fn new_in(doc: CatalogueDoc, fed: Option<&Federation>) -> Self {
        let mut ds = DocState::new(doc);
        ds.hidden = fed.is_some_and(|f| {
            ds.doc
                .id()
                .hub()
                .is_some_and(|h| !f.membership.is_member(h))
        });
        ds
    }

    fn index(&mut self, change: &Change, signature: &[u8]) {
        self.bytes += change.raw_bytes().len() as u64;
        let actor = change.actor_id().to_bytes();
        if !self.actors.contains_key(actor) {
            let number = self.actors.len() as u32;
            self.actors.insert(
                actor.to_vec(),
                ActorLog {
                    number,
                    max_seq: 0,
                    by_seq: HashMap::new(),
                },
            );
        }
        let number = match self.actors.get_mut(actor) {
            Some(log) => {
                log.by_seq.insert(change.seq(), change.hash());
                log.max_seq = log.max_seq.max(change.seq());
                log.number
            }
            None => return,
        };
        self.max_op = self.max_op.max(change.max_op());
        self.ops.insert(
            (number, change.start_op().get()),
            (change.hash(), change.max_op()),
        );
        self.sigs
            .insert(change.hash(), (signature.to_vec(), change.timestamp()));
        self.since_snapshot += 1;
    }

    /// Does change `c`, writing `writes`, simply extend this document (checked before it is
    /// indexed)? Then Automerge will apply it on top of the current state without conflict or
    /// error, and each record it puts will be its slot's value: its operations are numbered
    /// above every operation in the document, so they win even against a value their `pred`
    /// does not name.
    fn extends_linearly_parts(&self, c: &Change, writes: &[(Slot, Option<Record>)]) -> bool {
        if self.irregular || c.deps().len() != self.heads.len() {
            return false;
        }
        let mut deps = c.deps().to_vec();
        deps.sort();
        let actor = c.actor_id().to_bytes();
        deps == self.heads
            && c.start_op().get() > self.max_op
            && c.seq() == self.actors.get(actor).map_or(0, |log| log.max_seq) + 1
            // Automerge must know every other actor the change refers to.
            && c
                .other_actor_ids()
                .iter()
                .all(|a| self.actors.contains_key(a.to_bytes()))
            && writes.iter().all(|(_, record)| record.is_some())
    }

    /// Apply the pending changes to the Automerge document, then re-read into `records` the
    /// slots in `reread`, the slots of changes that were waiting for dependencies, and — if
    /// Automerge did not end where the pending changes predicted — the pending slots.
    fn settle(&mut self, records: &mut RecordMap, mut reread: BTreeSet<Slot>, all_linear: bool) {
        let changes = std::mem::take(&mut self.pending);
        let predicted = std::mem::take(&mut self.pending_slots);
        if changes.is_empty() && reread.is_empty() {
            return;
        }
        let expected = self.heads.clone();
        let applied = self.doc.apply(changes);
        if let Err(e) = &applied {
            // Verified and stored, but Automerge would not take it: keep serving the other
            // documents; a restart replays the log change by change.
            tracing::error!(doc = %self.doc.id(), error = %e, "applying verified changes failed");
            self.apply_failed = true;
        }
        self.dirty = true;
        let mut heads = self.doc.heads();
        heads.sort();
        let queued = !self.doc.automerge().get_missing_deps(&[]).is_empty();
        if applied.is_err() || !all_linear || heads != expected {
            if all_linear && applied.is_ok() {
                tracing::error!(doc = %self.doc.id(), "Automerge's heads differ from the predicted ones; re-reading the view");
            }
            reread.extend(predicted);
        }
        self.heads = heads;
        self.irregular = queued || self.apply_failed;
        reread.append(&mut self.waiting);
        if let Some(owner) = self.owner.as_ref().map(|o| *o.id()) {
            for slot in &reread {
                let id = RecordKey::new(&owner, slot.clone());
                match self.view(slot) {
                    Some(v) => records.insert(id, Box::new(v)),
                    None => records.remove(&id),
                };
            }
        }
        if queued {
            self.waiting = reread;
        }
    }

    /// The record in `slot` with the provenance of the change that wrote its current value,
    /// read from the Automerge document; `None` while the document is hidden.
    fn view(&self, slot: &Slot) -> Option<RecordView> {
        if self.hidden {
            return None;
        }
        self.view_unhidden(slot)
    }

    /// [`DocState::view`] whether or not the document is hidden.
    fn view_unhidden(&self, slot: &Slot) -> Option<RecordView> {
        let owner = self.owner.as_ref()?;
        let (_, exid) = self.doc.automerge().get(ROOT, slot.as_str()).ok()??;
        let automerge::ObjId::Id(counter, actor, _) = exid else {
            return None;
        };
        let number = self.actors.get(actor.to_bytes())?.number;
        let (_, (hash, max_op)) = self
            .ops
            .range(..=(number, counter))
            .next_back()
            .filter(|((a, _), _)| *a == number)?;
        if counter > *max_op {
            return None;
        }
        let (signature, ts) = self.sigs.get(hash)?;
        let record = self.doc.record(slot)?;
        Some(record_view(owner, slot, record, hash, signature, *ts))
    }

    /// Show or hide this document's records in `records`.
    fn set_hidden(&mut self, hidden: bool, records: &mut RecordMap) {
        if self.hidden == hidden {
            return;
        }
        self.hidden = hidden;
        let Some(owner) = self.owner.as_ref().map(|o| *o.id()) else {
            return;
        };
        for slot in self.doc.slots() {
            let id = RecordKey::new(&owner, slot.clone());
            match self.view(&slot) {
                Some(v) => records.insert(id, Box::new(v)),
                None => records.remove(&id),
            };
        }
    }
}

/// Apply stored changes to `doc` (a snapshot holds only changes whose dependencies had arrived,
/// so all of them are replayed: Automerge skips the ones it has, cheaply); whether Automerge
/// refused any.
fn replay(mut doc: CatalogueDoc, changes: &[(Change, Vec<u8>)]) -> (CatalogueDoc, bool) {
    let all: Vec<Change> = changes.iter().map(|(c, _)| c.clone()).collect();
    if let Err(e) = doc.apply(all) {
        tracing::warn!(doc = %doc.id(), error = %e, "replaying the log as a batch failed; replaying change by change");
        let mut failed = false;
        for (change, _) in changes {
            if let Err(e) = doc.apply(vec![change.clone()]) {
                tracing::error!(doc = %doc.id(), change = %change.hash(), error = %e, "skipping a stored change Automerge refuses");
                failed = true;
            }
        }
        return (doc, failed);
    }
    (doc, false)
}

/// One actor's changes in a document.
struct ActorLog {
    /// Stands for the actor in `DocState::ops` (numbered in order of appearance).
    number: u32,
    /// Highest sequence number of any of its changes indexed here.
    max_seq: u64,
    by_seq: HashMap<u64, ChangeHash>,
}

/// A record as served, with the provenance of the change that wrote it.
fn record_view(
    owner: &HubDid,
    slot: &Slot,
    record: Record,
    hash: &ChangeHash,
    signature: &[u8],
    timestamp_ms: i64,
) -> RecordView {
    RecordView {
        id: format!("{slot}@{}", owner.multibase()),
        kind: record.kind(),
        publisher: owner.did().to_owned(),
        provenance: Provenance {
            publisher: owner.did().to_owned(),
            change_hash: hex::encode(hash.0),
            signature: hex::encode(signature),
            signed_at: format_timestamp(timestamp_ms),
        },
        record,
    }
}

/// The records map's key: ordered like [`RecordId`] (publisher key bytes, then slot), in 56
/// bytes instead of a `HubId`'s 192.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RecordKey {
    publisher: [u8; 32],
    slot: Slot,
}

impl RecordKey {
    fn new(publisher: &HubId, slot: Slot) -> Self {
        RecordKey {
            publisher: *publisher.as_bytes(),
            slot,
        }
    }

    fn of(id: &RecordId) -> Self {
        RecordKey::new(&id.publisher, id.slot.clone())
    }

    fn to_id(&self) -> Result<RecordId, EngineError> {
        let publisher =
            HubId::from_bytes(&self.publisher).map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(RecordId::new(publisher, self.slot.clone()))
    }
}

/// Every record in [`RecordId`] order (what `list` and exports show). The map is a hash map
/// because ingest inserts into it for every record, and a B-tree of 100 000 records made
/// that cost about 2 µs; listing sorts instead.
fn in_order(records: &HashMap<RecordKey, Box<RecordView>>) -> Vec<&RecordView> {
    let mut all: Vec<(&RecordKey, &Box<RecordView>)> = records.iter().collect();
    all.sort_unstable_by(|a, b| a.0.cmp(b.0));
    all.into_iter().map(|(_, v)| &**v).collect()
}

struct State {
    docs: BTreeMap<DocId, DocState>,
    /// Boxed: a view is large, and the map moves entries when it grows. Notes changed
    /// records for derived indexes (see [`changes`]).
    records: RecordMap,
    /// Hash of every stored change (the store's `by_hash` index, held in memory).
    known: HashSet<ChangeHash>,
    last_seq: u64,
    /// Changes waiting in `DocState::pending`, over all documents.
    pending_total: usize,
    /// Counts commits, to list the documents a commit touches without a set.
    batch_epoch: u64,
    /// The federation the node belongs to, if any (see [`members`]).
    federation: Option<Federation>,
}

impl State {
    /// Apply one document's deferred changes (before reading its Automerge history).
    fn settle_doc(&mut self, doc: &DocId) {
        let State {
            docs,
            records,
            pending_total,
            ..
        } = self;
        if let Some(ds) = docs.get_mut(doc).filter(|d| !d.pending.is_empty()) {
            *pending_total = pending_total.saturating_sub(ds.pending.len());
            ds.settle(records, BTreeSet::new(), true);
        }
    }

    /// Every vote in the federation's membership document (settled first); `None` when the
    /// node belongs to no federation.
    fn votes(&mut self) -> Option<Vec<Vote>> {
        let doc = self.federation.as_ref()?.doc.clone();
        self.settle_doc(&doc);
        Some(
            self.docs
                .get(&doc)
                .map(|ds| membership::votes_in(ds.doc.automerge()))
                .unwrap_or_default(),
        )
    }

    /// Re-read the membership from the federation's document and show or hide each hub's
    /// records accordingly (all of them when `all`, else those whose standing changed). Returns
    /// whether any hub's standing changed.
    fn apply_membership(&mut self, all: bool) -> bool {
        let Some(votes) = self.votes() else {
            return false;
        };
        let Some(fed) = self.federation.as_mut() else {
            return false;
        };
        let (changed, keys_changed) = fed.reevaluate(&votes);
        let hubs: Vec<(DocId, bool)> = if all {
            self.docs
                .keys()
                .filter_map(|d| Some((d.clone(), !fed.membership.is_member(d.hub()?))))
                .collect()
        } else {
            changed
                .iter()
                .map(|h| (DocId::Hub(*h), !fed.membership.is_member(h)))
                .collect()
        };
        for (doc, hidden) in hubs {
            self.settle_doc(&doc);
            let State { docs, records, .. } = self;
            if let Some(ds) = docs.get_mut(&doc) {
                ds.set_hidden(hidden, records);
            }
        }
        !changed.is_empty() || keys_changed
    }

    /// Apply every document's deferred changes.
    fn settle_all(&mut self) {
        let State { docs, records, .. } = self;
        for ds in docs.values_mut().filter(|d| !d.pending.is_empty()) {
            ds.settle(records, BTreeSet::new(), true);
        }
        self.pending_total = 0;
    }
}

/// The hub's catalogue: its own document and every other hub's, verified and durable.
pub struct Catalogue {
    store: Arc<dyn Store>,
    /// The hub this node is: its did names the hub's document.
    hub: HubId,
    /// The key that signs the hub's changes now: the hub's own, or the one its federation
    /// handed its signing over to (see [`Catalogue::rotate_key`]).
    key: Mutex<Arc<HubKey>>,
    /// Which keys may sign which hub's document, for verification outside the state lock
    /// (a copy of the federation's key book, replaced when it changes).
    signers: Mutex<Arc<membership::KeyBook>>,
    /// The node belongs to a federation (see [`members`]).
    federated: bool,
    actor_suffix: [u8; 16],
    state: Mutex<State>,
    /// Author keys decoded once (verification runs outside the state lock).
    authors: AuthorCache,
    accepted: AtomicU64,
    refused: AtomicU64,
    refused_by_reason: Mutex<BTreeMap<&'static str, u64>>,
    /// Every change this node signs, for the network to announce.
    local_tx: tokio::sync::broadcast::Sender<SignedChange>,
    /// Every change applied, local or remote (for propagation measurements and metrics).
    applied_tx: tokio::sync::broadcast::Sender<Applied>,
    /// Woken when records changed while someone tracks changes (see [`changes`]).
    records_changed: tokio::sync::Notify,
    /// A changed record waits to be taken (see [`changes`]).
    changes_noted: Arc<std::sync::atomic::AtomicBool>,
}

/// A change that became part of the catalogue.
#[derive(Debug, Clone)]
pub struct Applied {
    pub doc: DocId,
    pub hash: ChangeHash,
    /// When its author signed it (the change's timestamp), unix ms.
    pub signed_ms: i64,
    /// When this node made it durable and visible, unix ms.
    pub applied_ms: i64,
}

impl Catalogue {
    /// Open the catalogue over `store`: load snapshots, replay the log after them, rebuild the
    /// view. The store's contents were verified before they were written. The node belongs to
    /// no federation: every hub's signed catalogue is accepted (see [`Catalogue::open_in`]).
    pub fn open(store: Arc<dyn Store>, key: HubKey) -> Result<Self, EngineError> {
        Self::open_in(store, key, None)
    }

    /// [`Catalogue::open`] for a node of the federation `rules` describe (from its genesis):
    /// only members' catalogues are accepted and served (see [`members`]).
    pub fn open_in(
        store: Arc<dyn Store>,
        key: HubKey,
        rules: Option<Rules>,
    ) -> Result<Self, EngineError> {
        Self::open_as(store, key.id(), key, rules)
    }

    /// [`Catalogue::open_in`] for hub `hub` signing with `key` — the hub's own key, or one
    /// its federation handed its signing over to.
    pub fn open_as(
        store: Arc<dyn Store>,
        hub: HubId,
        key: HubKey,
        rules: Option<Rules>,
    ) -> Result<Self, EngineError> {
        let actor_suffix = match store.get_meta("actor_suffix")? {
            Some(v) if v.len() == 16 => {
                let mut s = [0u8; 16];
                s.copy_from_slice(&v);
                s
            }
            _ => {
                let s = fresh_actor_suffix()?;
                store.put_meta("actor_suffix", &s)?;
                s
            }
        };
        let snapshots: BTreeMap<DocId, Snapshot> = store.snapshots()?.into_iter().collect();
        let mut by_doc: BTreeMap<DocId, Vec<(u64, SignedChange)>> = BTreeMap::new();
        let mut last_seq = 0;
        for (seq, env) in store.log()? {
            last_seq = last_seq.max(seq);
            by_doc.entry(env.doc.clone()).or_default().push((seq, env));
        }
        let mut docs = BTreeMap::new();
        let mut known = HashSet::new();
        for (doc_id, entries) in by_doc {
            let snapshot = snapshots.get(&doc_id);
            let upto = snapshot.map_or(0, |s| s.upto_seq);
            let mut in_snapshot = entries.iter().filter(|(seq, _)| *seq <= upto).count();
            let mut state_changes = Vec::with_capacity(entries.len());
            for (seq, env) in entries {
                let change = Change::try_from(env.change.as_slice()).map_err(|e| {
                    EngineError::Store(StoreError::Corrupt {
                        key: format!("changes/{seq}"),
                        source: hubcat_protocol::codec::CodecError::Malformed(e.to_string()),
                    })
                })?;
                state_changes.push((change, env.signature));
            }
            let logged: HashSet<ChangeHash> = state_changes.iter().map(|(c, _)| c.hash()).collect();
            let (mut doc, mut apply_failed) = match snapshot {
                Some(s) => replay(CatalogueDoc::load(doc_id.clone(), &s.doc)?, &state_changes),
                None => replay(CatalogueDoc::remote(doc_id.clone()), &state_changes),
            };
            // The log is the record of what this node accepted; a snapshot only saves replay
            // time. A snapshot holding a change the log lacks (a store that lost its tail in a
            // crash) would serve a record without its signature and tell peers it has a change
            // it cannot pass on: rebuild such a document from the log alone, so peers send the
            // lost changes again.
            let mut rebuilt = false;
            if doc.heads().iter().any(|h| !logged.contains(h)) {
                tracing::error!(doc = %doc_id, "the snapshot holds changes missing from the log; rebuilding the document from the log (peers will send the missing changes again)");
                (doc, apply_failed) = replay(CatalogueDoc::remote(doc_id.clone()), &state_changes);
                in_snapshot = 0;
                rebuilt = true;
            }
            let mut ds = DocState::new(doc);
            for (change, sig) in &state_changes {
                ds.index(change, sig);
                known.insert(change.hash());
            }
            ds.apply_failed = apply_failed;
            let queued = !ds.doc.automerge().get_missing_deps(&[]).is_empty();
            ds.irregular = apply_failed || queued;
            if queued {
                // Changes still waiting for their dependencies: re-read their slots and
                // announce them once those arrive, as before the restart.
                for (change, _) in state_changes
                    .iter()
                    .filter(|(c, _)| !ds.doc.has_change(&c.hash()))
                {
                    // Stored changes passed this check when they arrived.
                    if let Ok(slots) = layout::check_change(&doc_id, change) {
                        ds.waiting.extend(slots);
                    }
                    ds.unannounced.push((change.hash(), change.timestamp()));
                }
            }
            ds.in_snapshot = in_snapshot;
            ds.since_snapshot = state_changes.len() - in_snapshot;
            // Replace the bad snapshot at the next save.
            ds.dirty = rebuilt;
            docs.insert(doc_id, ds);
        }
        let own = DocId::Hub(hub);
        if let Some(ds) = docs.get_mut(&own) {
            ds.doc.set_actor(&key.id(), actor_suffix);
        }
        let mut state = State {
            docs,
            records: RecordMap::default(),
            known,
            last_seq,
            pending_total: 0,
            batch_epoch: 0,
            federation: rules.map(Federation::new),
        };
        state.apply_membership(true);
        for ds in state.docs.values() {
            let Some(owner) = ds.doc.id().hub() else {
                continue;
            };
            for slot in ds.doc.slots() {
                if let Some(v) = ds.view(&slot) {
                    state
                        .records
                        .insert(RecordKey::new(owner, slot), Box::new(v));
                }
            }
        }
        let signers = Mutex::new(Arc::new(
            state
                .federation
                .as_ref()
                .map(|f| f.keys.clone())
                .unwrap_or_default(),
        ));
        Ok(Catalogue {
            changes_noted: state.records.noted(),
            federated: state.federation.is_some(),
            store,
            hub,
            key: Mutex::new(Arc::new(key)),
            signers,
            actor_suffix,
            state: Mutex::new(state),
            authors: AuthorCache::new(),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refused_by_reason: Mutex::new(BTreeMap::new()),
            local_tx: tokio::sync::broadcast::channel(LOCAL_CHANNEL).0,
            applied_tx: tokio::sync::broadcast::channel(APPLIED_CHANNEL).0,
            records_changed: tokio::sync::Notify::new(),
        })
    }

    pub fn hub_id(&self) -> HubId {
        self.hub
    }

    /// The key `hub`'s changes are signed with now, as the federation's key book gives it.
    pub fn current_key_of(&self, hub: &HubId) -> HubId {
        self.lock()
            .federation
            .as_ref()
            .map_or(*hub, |f| f.keys.current(hub))
    }

    /// Sign from now on with `key`, which the federation must have handed this hub over to.
    pub fn use_key(&self, key: HubKey) -> Result<(), EngineError> {
        let mut state = self.lock();
        let current = state
            .federation
            .as_ref()
            .map_or(self.hub, |f| f.keys.current(&self.hub));
        if current != key.id() {
            return Err(EngineError::Forbidden(format!(
                "{} is not the key {} signs with ({} is)",
                key.id().to_did(),
                self.hub.to_did(),
                current.to_did()
            )));
        }
        let id = key.id();
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        let own = DocId::Hub(self.hub);
        state.settle_doc(&own);
        if let Some(ds) = state.docs.get_mut(&own) {
            ds.doc.set_actor(&id, self.actor_suffix);
        }
        Ok(())
    }

    /// The key signing this hub's changes now (the network's identity at start).
    pub fn signing_key(&self) -> Arc<HubKey> {
        self.key()
    }

    /// The key signing this hub's changes now.
    fn key(&self) -> Arc<HubKey> {
        self.key.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The key this node signs with, if the federation has it sign for the hub now: the
    /// error says which key does (after a handover this node has not taken up, or before a
    /// recovery of this node's key is in effect).
    fn can_sign(&self, state: &State) -> Result<HubId, EngineError> {
        let signer = self.key().id();
        let current = state
            .federation
            .as_ref()
            .map_or(self.hub, |f| f.keys.current(&self.hub));
        if signer != current {
            return Err(EngineError::Forbidden(format!(
                "this node signs with {}, but {} signs for {} now{}",
                signer.to_did(),
                current.to_did(),
                self.hub.to_did(),
                if current == self.hub {
                    " (a recovery of this node's key is not in effect yet: it needs the quorum of members)"
                } else {
                    ""
                }
            )));
        }
        Ok(signer)
    }

    /// This hub's document, empty, writing with the current key.
    fn own_doc(&self) -> CatalogueDoc {
        let mut doc = CatalogueDoc::new(self.hub, self.actor_suffix);
        doc.set_actor(&self.key().id(), self.actor_suffix);
        doc
    }

    /// Verify envelopes, in batches, taking the keys the federation handed hubs over to.
    fn verify(
        &self,
        envelopes: Vec<SignedChange>,
        now_ms: i64,
    ) -> Vec<Result<VerifiedChange, ChangeError>> {
        let book = self
            .signers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // In a federation any key's signed change to a hub's document is judged once
        // verified — a key the membership document hands the hub over to may arrive after the
        // change it signed (see `members::gate`); without one, only the hub's own key signs.
        let federated = self.federated;
        change::verify_batch_signed(envelopes, now_ms, &self.authors, &|hub, author| {
            federated || book.may_sign(hub, author)
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves documents as they were before the failed call
        // (every mutation is rolled back or complete), so the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Verify, store and apply changes from anywhere (a peer, an import, a local publish).
    pub fn ingest(
        &self,
        envelopes: Vec<SignedChange>,
        now_ms: i64,
    ) -> Result<IngestReport, EngineError> {
        let results = self.verify(envelopes, now_ms);
        let mut report = IngestReport::default();
        let mut verified = Vec::with_capacity(results.len());
        for (index, r) in results.into_iter().enumerate() {
            match r {
                Ok(v) => verified.push((index, v)),
                Err(e) => report
                    .refused
                    .push(self.refusal(index, e.reason(), e.to_string())),
            }
        }
        let mut state = self.lock();
        let outcome = self.commit(&mut state, verified)?;
        report.accepted = outcome.accepted;
        report.duplicates = outcome.duplicates;
        report.refused.extend(outcome.refused);
        report.refused.sort_by_key(|r| r.index);
        report.held = outcome.held;
        Ok(report)
    }

    fn refusal(&self, index: usize, reason: &'static str, detail: String) -> Refusal {
        self.count_refusal(reason);
        tracing::warn!(reason, detail = %detail, "refused change");
        Refusal {
            index,
            reason,
            detail,
        }
    }

    fn count_refusal(&self, reason: &'static str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut m = self
            .refused_by_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        self.refused_by_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Store verified changes durably, then make them visible: straight into the view for
    /// changes that extend their document (applied to Automerge later, grouped), through
    /// Automerge now for the others.
    fn commit(
        &self,
        state: &mut State,
        verified: Vec<(usize, VerifiedChange)>,
    ) -> Result<CommitOutcome, EngineError> {
        let mut outcome = CommitOutcome::default();
        let verified = self.gate(state, verified, &mut outcome);
        // Decide first, borrowing (no copies of document ids or actors per change) …
        let mut keep = vec![false; verified.len()];
        {
            let mut seen = HashSet::with_capacity(verified.len());
            let mut batch_seqs: HashMap<(&DocId, &[u8], u64), ChangeHash> =
                HashMap::with_capacity(verified.len());
            let mut batch_doc_bytes: HashMap<&DocId, u64> = HashMap::new();
            for (i, (index, v)) in verified.iter().enumerate() {
                if !seen.insert(v.hash) || state.known.contains(&v.hash) {
                    outcome.duplicates += 1;
                    continue;
                }
                let actor = v.change.actor_id().to_bytes();
                let seq = v.change.seq();
                let doc_bytes = state.docs.get(&v.envelope.doc).map_or(0, |ds| ds.bytes);
                let size = v.envelope.change.len() as u64;
                let batch_bytes = batch_doc_bytes.entry(&v.envelope.doc).or_insert(0);
                if doc_bytes + *batch_bytes + size > MAX_DOC_BYTES {
                    outcome.refused.push(self.refusal(
                        *index,
                        "document_too_large",
                        format!(
                            "change {} would take document {} beyond {MAX_DOC_BYTES} bytes",
                            v.hash, v.envelope.doc
                        ),
                    ));
                    continue;
                }
                *batch_bytes += size;
                let earlier = state
                    .docs
                    .get(&v.envelope.doc)
                    .and_then(|ds| ds.actors.get(actor)?.by_seq.get(&seq).copied())
                    .or_else(|| batch_seqs.get(&(&v.envelope.doc, actor, seq)).copied());
                if let Some(earlier) = earlier.filter(|h| *h != v.hash) {
                    outcome.refused.push(self.refusal(
                        *index,
                        "equivocation",
                        format!(
                            "change {} reuses sequence number {seq} of change {earlier} by the same author",
                            v.hash
                        ),
                    ));
                    continue;
                }
                batch_seqs.insert((&v.envelope.doc, actor, seq), v.hash);
                keep[i] = true;
            }
        }
        // … then take the changes that stay.
        let fresh: Vec<VerifiedChange> = verified
            .into_iter()
            .zip(keep)
            .filter_map(|((_, v), keep)| keep.then_some(v))
            .collect();
        if fresh.is_empty() {
            return Ok(outcome);
        }
        let entries: Vec<(ChangeHash, &SignedChange)> =
            fresh.iter().map(|v| (v.hash, &v.envelope)).collect();
        let seqs = self.store.append(&entries)?;
        drop(entries);
        state.last_seq = seqs.last().copied().unwrap_or(state.last_seq);
        state.known.extend(fresh.iter().map(|v| v.hash));

        // Durable from here on: make every change visible before returning.
        let accepted = fresh.len();
        let mut touched: Vec<DocId> = Vec::new();
        state.batch_epoch += 1;
        let epoch = state.batch_epoch;
        // Documents with a change that does not simply extend them: applied below, and the
        // slots to re-read from Automerge afterwards.
        let mut general: BTreeMap<DocId, BTreeSet<Slot>> = BTreeMap::new();
        let applied_ms = hubcat_protocol::now_ms();
        let State {
            docs,
            records,
            federation,
            ..
        } = &mut *state;
        for v in fresh {
            let VerifiedChange {
                envelope,
                hash,
                change,
                slots,
                writes,
                ..
            } = v;
            let doc_id = envelope.doc;
            let ds = docs.entry(doc_id.clone()).or_insert_with(|| {
                let doc = if doc_id == DocId::Hub(self.hub) {
                    self.own_doc()
                } else {
                    CatalogueDoc::remote(doc_id.clone())
                };
                DocState::new_in(doc, federation.as_ref())
            });
            if ds.batch_epoch != epoch {
                ds.batch_epoch = epoch;
                touched.push(doc_id.clone());
            }
            let linear =
                !general.contains_key(&doc_id) && ds.extends_linearly_parts(&change, &writes);
            ds.index(&change, &envelope.signature);
            if linear {
                // Visible as soon as this call returns.
                self.announce_applied(&doc_id, hash, change.timestamp(), applied_ms);
                ds.heads = vec![hash];
                // A hidden document's records are not served; the membership document's
                // changes write none.
                let owner = ds.owner.as_ref().filter(|_| !ds.hidden);
                for (slot, record) in writes {
                    if let (Some(record), Some(owner)) = (record, owner) {
                        let view = record_view(
                            owner,
                            &slot,
                            record,
                            &hash,
                            &envelope.signature,
                            change.timestamp(),
                        );
                        records.insert(RecordKey::new(owner.id(), slot), Box::new(view));
                    }
                }
                ds.pending_slots.extend(slots);
            } else {
                // Visible once Automerge has it: maybe below, maybe when its dependencies come.
                ds.unannounced.push((hash, change.timestamp()));
                general.entry(doc_id).or_default().extend(slots);
            }
            ds.pending.push(change);
        }
        for (doc_id, reread) in general {
            if let Some(ds) = docs.get_mut(&doc_id) {
                ds.settle(records, reread, false);
                let (now_in, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut ds.unannounced)
                    .into_iter()
                    .partition(|(h, _)| ds.doc.has_change(h));
                ds.unannounced = waiting;
                for (hash, signed_ms) in now_in {
                    self.announce_applied(&doc_id, hash, signed_ms, applied_ms);
                }
            }
        }
        // Apply a document's deferred changes once enough have gathered.
        for doc_id in &touched {
            if let Some(ds) = docs.get_mut(doc_id) {
                if ds.pending.len() >= SETTLE_MIN.max(ds.sigs.len() / SETTLE_FRACTION) {
                    ds.settle(records, BTreeSet::new(), true);
                }
            }
        }
        state.pending_total = state.docs.values().map(|d| d.pending.len()).sum();
        if state.pending_total > SETTLE_TOTAL_MAX {
            state.settle_all();
        }
        self.snapshot_due(state, &touched)?;
        let membership_doc = state.federation.as_ref().map(|f| &f.doc);
        if membership_doc.is_some_and(|d| touched.contains(d)) && state.apply_membership(false) {
            if let Some(fed) = &state.federation {
                *self.signers.lock().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(fed.keys.clone());
            }
            self.release_held(state)?;
        }
        if state.records.has_changes() {
            self.records_changed.notify_one();
        }
        self.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
        outcome.accepted = accepted;
        Ok(outcome)
    }

    /// Set aside the changes the node's federation does not take from their authors now:
    /// held until they are members, or refused (see [`members::gate`]). Returns the others.
    fn gate(
        &self,
        state: &mut State,
        verified: Vec<(usize, VerifiedChange)>,
        outcome: &mut CommitOutcome,
    ) -> Vec<(usize, VerifiedChange)> {
        if state.federation.is_none()
            && verified
                .iter()
                .all(|(_, v)| matches!(v.envelope.doc, DocId::Hub(_)))
        {
            return verified;
        }
        let own = self.hub;
        let mut pass = Vec::with_capacity(verified.len());
        for (index, v) in verified {
            // A change already held in the store is a duplicate, whoever signed it.
            if state.known.contains(&v.hash) {
                pass.push((index, v));
                continue;
            }
            match members::gate(state.federation.as_ref(), &own, &v) {
                Gate::Pass => pass.push((index, v)),
                Gate::Refuse { reason, detail } => {
                    outcome.refused.push(self.refusal(index, reason, detail))
                }
                Gate::Hold { detail } => {
                    tracing::debug!(detail = %detail, "holding a change");
                    outcome.held.push(Refusal {
                        index,
                        reason: "not_a_member",
                        detail,
                    });
                    if let Some(fed) = state.federation.as_mut() {
                        fed.quarantine.hold(v);
                    }
                }
            }
        }
        pass
    }

    /// Apply the held changes whose authors are members now.
    fn release_held(&self, state: &mut State) -> Result<(), EngineError> {
        let Some(fed) = state.federation.as_mut() else {
            return Ok(());
        };
        // Every held change is judged again: its author may be a member now, or its key in
        // effect; those still waiting go back.
        let released = fed.quarantine.release();
        if released.is_empty() {
            return Ok(());
        }
        let n = released.len();
        // Their positions in the batch that brought them are gone: refusals name the change.
        let outcome = self.commit(state, released.into_iter().map(|v| (0, v)).collect())?;
        tracing::info!(
            released = n,
            accepted = outcome.accepted,
            "applied changes held until their authors became members"
        );
        Ok(())
    }

    fn announce_applied(&self, doc: &DocId, hash: ChangeHash, signed_ms: i64, applied_ms: i64) {
        if self.applied_tx.receiver_count() > 0 {
            let _ = self.applied_tx.send(Applied {
                doc: doc.clone(),
                hash,
                signed_ms,
                applied_ms,
            });
        }
    }

    /// Snapshot the documents among `docs` whose changes since their last snapshot reach
    /// `SNAPSHOT_MIN_CHANGES` and the size of that snapshot.
    fn snapshot_due(&self, state: &mut State, docs: &[DocId]) -> Result<(), EngineError> {
        let upto = state.last_seq;
        let State {
            docs: states,
            records,
            ..
        } = &mut *state;
        let mut saved = false;
        for id in docs {
            let Some(ds) = states.get_mut(id) else {
                continue;
            };
            if ds.since_snapshot < SNAPSHOT_MIN_CHANGES.max(ds.in_snapshot) {
                continue;
            }
            ds.settle(records, BTreeSet::new(), true);
            self.save_snapshot(id, ds, upto)?;
            saved = true;
        }
        if saved {
            state.pending_total = state.docs.values().map(|d| d.pending.len()).sum();
            self.store.flush()?;
        }
        Ok(())
    }

    fn save_snapshot(&self, id: &DocId, ds: &mut DocState, upto: u64) -> Result<(), EngineError> {
        self.store.put_snapshot(
            id,
            &Snapshot {
                upto_seq: upto,
                doc: ds.doc.save(),
            },
        )?;
        ds.dirty = false;
        ds.in_snapshot += ds.since_snapshot;
        ds.since_snapshot = 0;
        Ok(())
    }

    /// Apply every change still deferred to its Automerge document. Queries never need this
    /// (the view is always current); it bounds the work left for later, e.g. before a
    /// benchmark stops its clock or before reading the documents themselves.
    pub fn settle(&self) {
        self.lock().settle_all();
    }

    /// Save every changed document as a snapshot (on shutdown, and per document on the ingest
    /// path when its log since the last snapshot has grown enough).
    pub fn snapshot(&self) -> Result<(), EngineError> {
        let mut state = self.lock();
        self.snapshot_locked(&mut state)
    }

    fn snapshot_locked(&self, state: &mut State) -> Result<(), EngineError> {
        state.settle_all();
        let upto = state.last_seq;
        for (id, ds) in state.docs.iter_mut().filter(|(_, d)| d.dirty) {
            self.save_snapshot(id, ds, upto)?;
        }
        self.store.flush()?;
        Ok(())
    }

    /// Sign a change made on the hub's own document and put it through the common path; on any
    /// failure, roll the document back.
    fn local_change<F>(&self, make: F) -> Result<Slot, EngineError>
    where
        F: FnOnce(&mut CatalogueDoc) -> Result<(Change, Slot), LayoutError>,
    {
        let own = DocId::Hub(self.hub);
        let mut state = self.lock();
        let signer = self.can_sign(&state)?;
        let State {
            docs,
            records,
            federation,
            ..
        } = &mut *state;
        let ds = docs
            .entry(own.clone())
            .or_insert_with(|| DocState::new_in(self.own_doc(), federation.as_ref()));
        // The change is made on the Automerge document itself: bring it up to date first.
        ds.settle(records, BTreeSet::new(), true);
        let before = ds.doc.heads();
        let rollback = |ds: &mut DocState, suffix: [u8; 16]| -> Result<(), EngineError> {
            let mut doc = CatalogueDoc::from_automerge(
                ds.doc.id().clone(),
                ds.doc
                    .automerge()
                    .fork_at(&before)
                    .map_err(|e| EngineError::Internal(e.to_string()))?,
            );
            doc.set_actor(&signer, suffix);
            ds.doc = doc;
            Ok(())
        };
        let (change, slot) = match make(&mut ds.doc) {
            Ok(c) => c,
            Err(e) => {
                rollback(ds, self.actor_suffix)?;
                return Err(e.into());
            }
        };
        let envelope = change::sign(&self.key(), &own, &change);
        let announced = envelope.clone();
        let verified = match self
            .verify(vec![envelope], hubcat_protocol::now_ms())
            .pop()
            .unwrap_or_else(|| Err(ChangeError::Decode("no change".into())))
        {
            Ok(v) => v,
            Err(e) => {
                rollback(ds, self.actor_suffix)?;
                return Err(e.into());
            }
        };
        let refused = match self.commit(&mut state, vec![(0, verified)]) {
            Ok(outcome) => outcome.refused.into_iter().chain(outcome.held).next(),
            Err(e) => {
                if let Some(ds) = state.docs.get_mut(&own) {
                    rollback(ds, self.actor_suffix)?;
                }
                return Err(e);
            }
        };
        if let Some(r) = refused {
            if let Some(ds) = state.docs.get_mut(&own) {
                rollback(ds, self.actor_suffix)?;
            }
            return Err(EngineError::Internal(r.detail));
        }
        // Nobody listening (no network) is fine.
        let _ = self.local_tx.send(announced);
        Ok(slot)
    }

    /// Create or update one of this hub's records. Acknowledged only once durable.
    pub fn publish(&self, record: &Record) -> Result<RecordView, EngineError> {
        record.validate()?;
        if let Some(p) = &record.meta().publisher {
            if *p != self.hub.to_did() {
                return Err(EngineError::Invalid(RecordError::field(
                    "publisher",
                    format!("this node publishes as {}, not {p}", self.hub.to_did()),
                )));
            }
        }
        let now = hubcat_protocol::now_ms();
        let slot = self.local_change(|doc| {
            let change = doc.upsert(record, now)?;
            let slots = layout::check_change(doc.id(), &change)?;
            let slot = slots
                .into_iter()
                .next()
                .ok_or_else(|| LayoutError::Automerge("upsert wrote no slot".into()))?;
            Ok((change, slot))
        })?;
        self.get_own(&slot)
    }

    /// Withdraw one of this hub's records (a signed delete; the history stays verifiable).
    pub fn withdraw(&self, id: &str) -> Result<String, EngineError> {
        let rid = self.resolve(id)?;
        if rid.publisher != self.hub {
            return Err(EngineError::Forbidden(format!(
                "record {rid} belongs to {}; only its publisher may withdraw it",
                rid.publisher
            )));
        }
        let now = hubcat_protocol::now_ms();
        let slot = rid.slot.clone();
        self.local_change(|doc| Ok((doc.withdraw(&slot, now)?, slot.clone())))?;
        Ok(rid.to_string())
    }

    /// Cast this hub's vote on `target` in the federation's membership document: endorse it,
    /// or vote to suspend or reinstate it. A suspension joins the open case (votes short of
    /// the quorum) or opens a new one; a reinstatement votes on every case in effect. Returns
    /// the votes cast, durable and on their way to the federation.
    pub fn vote(
        &self,
        action: Action,
        target: &HubId,
        reason: &str,
    ) -> Result<Vec<Vote>, EngineError> {
        check_reason(reason)?;
        let now = hubcat_protocol::now_ms();
        let signer = self.key().id();
        let mut state = self.lock();
        let (fed, votes) = self.federation_votes(&mut state)?;
        let planned = members::plan(
            &fed.membership,
            &fed.by_hub(&votes),
            &self.hub,
            action,
            target,
        )?;
        let cast: Vec<Vote> = planned
            .into_iter()
            .map(|(action, case)| Vote::new(action, *target, case, signer, reason, now))
            .collect();
        self.cast(state, cast.clone(), now)?;
        Ok(cast)
    }

    /// Hand this hub's signing over to `next`: a rotation in the federation's membership
    /// document, signed by the current key, naming `next` and where the current key's changes
    /// end (the highest sequence number of each of its actors in the hub's document). From
    /// then on this node signs with `next`, and every node refuses new changes signed with the
    /// old key; the hub's records stay valid.
    pub fn rotate_key(&self, next: HubKey, reason: &str) -> Result<Vote, EngineError> {
        check_reason(reason)?;
        let now = hubcat_protocol::now_ms();
        let current = self.key();
        if next.id() == current.id() || next.id() == self.hub {
            return Err(EngineError::Invalid(RecordError::field(
                "key",
                "the new key must differ from the hub's current and original keys",
            )));
        }
        let mut state = self.lock();
        let (fed, _) = self.federation_votes(&mut state)?;
        if !fed.membership.is_member(&self.hub) {
            return Err(EngineError::Forbidden(format!(
                "{} is not a member of the federation: only members hand their key over through it",
                self.hub.to_did()
            )));
        }
        let step = fed.keys.keys(&self.hub).map_or(0, |k| k.step) + 1;
        let own = DocId::Hub(self.hub);
        state.settle_doc(&own);
        let clock = key_clock(&state, &own, &current.id());
        let vote = Vote::handover(
            Action::Rotate,
            self.hub,
            step,
            current.id(),
            Successor {
                key: next.id(),
                clock,
            },
            reason,
            now,
        );
        let next_id = next.id();
        // The rotation is signed by the current key; once it is in, the node signs with the
        // new one (the document's actor changes with it).
        let mut state = self.cast_locked(state, vec![vote.clone()], now)?;
        let in_effect = state
            .federation
            .as_ref()
            .is_some_and(|f| f.keys.current(&self.hub) == next_id);
        if !in_effect {
            return Err(EngineError::Conflict(format!(
                "the rotation to {} is recorded but not in effect: another rotation at key step {step} names a different key, so only a recovery by the quorum of members settles it",
                next_id.to_did()
            )));
        }
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        let State { docs, records, .. } = &mut *state;
        if let Some(ds) = docs.get_mut(&own) {
            ds.settle(records, BTreeSet::new(), true);
            ds.doc.set_actor(&next_id, self.actor_suffix);
        }
        Ok(vote)
    }

    /// Vote, as a member, to give `target` — a hub that lost its key, or whose key leaked —
    /// the key `next`. Once the quorum of members has voted for the same key, it signs the
    /// hub's changes, and changes signed with the old key past what every recovering member
    /// had seen are refused.
    pub fn recover_key(
        &self,
        target: &HubId,
        next: &HubId,
        reason: &str,
    ) -> Result<Vote, EngineError> {
        check_reason(reason)?;
        let now = hubcat_protocol::now_ms();
        let signer = self.key().id();
        let mut state = self.lock();
        let (fed, votes) = self.federation_votes(&mut state)?;
        if !fed.membership.is_member(&self.hub) {
            return Err(EngineError::Forbidden(format!(
                "this hub ({}) is not a member of the federation: only members vote",
                self.hub.to_did()
            )));
        }
        if *target == self.hub {
            return Err(EngineError::Invalid(RecordError::field(
                "target",
                "a hub cannot recover its own key: other members vote for it",
            )));
        }
        if !fed.membership.standing.contains_key(target) {
            return Err(EngineError::Conflict(format!(
                "{} is not in the federation",
                target.to_did()
            )));
        }
        let keys = fed.keys.keys(target);
        let current = keys.map_or(*target, |k| k.current);
        let used =
            *next == *target || keys.is_some_and(|k| k.retired.iter().any(|(r, _)| r == next));
        if *next == current || used {
            return Err(EngineError::Invalid(RecordError::field(
                "key",
                "the new key must be one the hub never used",
            )));
        }
        let step = keys.map_or(0, |k| k.step) + 1;
        let voted = fed.by_hub(&votes).iter().any(|v| {
            v.action == Action::Recover
                && v.target == *target
                && v.case == step
                && v.voter == self.hub
        });
        if voted {
            return Err(EngineError::Conflict(format!(
                "this hub has already voted to recover {}'s key at step {step}; it waits for more votes",
                target.to_did()
            )));
        }
        let doc = DocId::Hub(*target);
        state.settle_doc(&doc);
        let clock = key_clock(&state, &doc, &current);
        let vote = Vote::handover(
            Action::Recover,
            *target,
            step,
            signer,
            Successor { key: *next, clock },
            reason,
            now,
        );
        self.cast(state, vec![vote.clone()], now)?;
        Ok(vote)
    }

    /// The federation (with the membership document settled) and the document's votes.
    fn federation_votes<'s>(
        &self,
        state: &'s mut State,
    ) -> Result<(&'s Federation, Vec<Vote>), EngineError> {
        let Some(votes) = state.votes() else {
            return Err(EngineError::Invalid(RecordError::field(
                "federation",
                "this node belongs to no federation; join one with `hubcat federation join`",
            )));
        };
        let fed = state
            .federation
            .as_ref()
            .ok_or_else(|| EngineError::Internal("the federation went away".into()))?;
        Ok((fed, votes))
    }

    /// Put `votes` into the membership document, signed by the current key, then announce them.
    fn cast(
        &self,
        state: MutexGuard<'_, State>,
        votes: Vec<Vote>,
        now: i64,
    ) -> Result<(), EngineError> {
        drop(self.cast_locked(state, votes, now)?);
        Ok(())
    }

    /// [`Catalogue::cast`], keeping the state locked for the caller; announces on unlock.
    fn cast_locked<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        votes: Vec<Vote>,
        now: i64,
    ) -> Result<MutexGuard<'a, State>, EngineError> {
        let Some(doc) = state.federation.as_ref().map(|f| f.doc.clone()) else {
            return Err(EngineError::Internal("no federation".into()));
        };
        let base = state
            .docs
            .get(&doc)
            .map(|ds| ds.doc.automerge().clone())
            .unwrap_or_default();
        let key = self.key();
        let mut md = MembershipDoc::from_automerge(base);
        let mut envelopes = Vec::with_capacity(votes.len());
        for vote in &votes {
            let change = md.cast(vote, self.actor_suffix, now)?;
            envelopes.push(change::sign(&key, &doc, &change));
        }
        let announced = envelopes.clone();
        let mut verified = Vec::with_capacity(envelopes.len());
        for (index, r) in self.verify(envelopes, now).into_iter().enumerate() {
            verified.push((index, r?));
        }
        let outcome = self.commit(&mut state, verified)?;
        if let Some(r) = outcome.refused.into_iter().chain(outcome.held).next() {
            return Err(EngineError::Internal(r.detail));
        }
        for envelope in announced {
            // Nobody listening (no network) is fine. Sent before the state is unlocked: a
            // peer that asks for it at once finds it.
            let _ = self.local_tx.send(envelope);
        }
        Ok(state)
    }

    /// The federation's members, candidates and suspended hubs with their votes; `None` when
    /// the node belongs to no federation.
    pub fn members(&self) -> Option<MembersReport> {
        let mut state = self.lock();
        let votes = state.votes()?;
        let fed = state.federation.as_ref()?;
        Some(members::report(fed, &fed.by_hub(&votes)))
    }

    /// Whether `hub`'s catalogue is accepted and served here: it is a member of the node's
    /// federation, or the node belongs to none.
    pub fn serves(&self, hub: &HubId) -> bool {
        self.lock()
            .federation
            .as_ref()
            .is_none_or(|f| f.membership.is_member(hub))
    }

    /// One of this hub's records — read from its document when the hub is not a member of
    /// the federation (yet), so its records are stored but not served.
    fn get_own(&self, slot: &Slot) -> Result<RecordView, EngineError> {
        let id = RecordId::new(self.hub, slot.clone());
        let mut state = self.lock();
        if let Some(v) = state.records.get(&RecordKey::of(&id)) {
            return Ok(RecordView::clone(v));
        }
        let own = DocId::Hub(self.hub);
        state.settle_doc(&own);
        state
            .docs
            .get(&own)
            .and_then(|ds| ds.view_unhidden(slot))
            .ok_or_else(|| EngineError::Internal(format!("record {id} missing after publish")))
    }

    /// Resolve a user-given id: `slot@z6Mk…`, or a bare slug (this hub's first, else the one
    /// publisher that has it).
    pub fn resolve(&self, id: &str) -> Result<RecordId, EngineError> {
        if id.contains('@') {
            return RecordId::parse(id).map_err(|e| {
                EngineError::Invalid(RecordError::field("id", format!("`{id}`: {e}")))
            });
        }
        let slot = Slot::parse(id)
            .map_err(|e| EngineError::Invalid(RecordError::field("id", e.to_string())))?;
        let own = RecordId::new(self.hub, slot.clone());
        let state = self.lock();
        if state.records.contains_key(&RecordKey::of(&own)) {
            return Ok(own);
        }
        let mut matches: Vec<(&RecordKey, &Box<RecordView>)> = state
            .records
            .iter()
            .filter(|(k, _)| k.slot == slot)
            .collect();
        matches.sort_by(|a, b| a.0.cmp(b.0));
        match matches.as_slice() {
            [] => Err(EngineError::NotFound(format!("no record with id `{id}`"))),
            [(one, _)] => one.to_id(),
            many => Err(EngineError::Conflict(format!(
                "id `{id}` is used by {} publishers; name one: {}",
                many.len(),
                many.iter()
                    .map(|(_, v)| v.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub fn get(&self, id: &str) -> Result<RecordView, EngineError> {
        let rid = self.resolve(id)?;
        self.lock()
            .records
            .get(&RecordKey::of(&rid))
            .map(|v| RecordView::clone(v))
            .ok_or_else(|| EngineError::NotFound(format!("no record with id `{id}`")))
    }

    pub fn list(&self, filter: &ListFilter) -> Vec<RecordView> {
        let state = self.lock();
        let publisher = filter.publisher.map(|p| p.to_did());
        in_order(&state.records)
            .into_iter()
            .filter(|v| filter.kind.is_none_or(|k| v.kind == k))
            .filter(|v| publisher.as_ref().is_none_or(|p| v.publisher == *p))
            .filter(|v| {
                filter
                    .country
                    .as_ref()
                    .is_none_or(|c| v.record.countries().iter().any(|rc| rc == c))
            })
            .filter(|v| {
                filter
                    .category
                    .as_ref()
                    .is_none_or(|c| v.record.category() == Some(c.as_str()))
            })
            .map(|v| (*v).clone())
            .collect()
    }

    pub fn record_count(&self) -> usize {
        self.lock().records.len()
    }

    pub fn status(&self) -> CatalogueStatus {
        use sha2::{Digest, Sha256};
        let state = self.lock();
        let mut records: BTreeMap<RecordKind, usize> =
            RecordKind::ALL.iter().map(|k| (*k, 0)).collect();
        for v in state.records.values() {
            *records.entry(v.kind).or_default() += 1;
        }
        let mut hasher = Sha256::new();
        let mut changes = 0;
        for (id, ds) in &state.docs {
            // `ds.heads`: the document's heads with its deferred changes applied, sorted.
            hasher.update(id.to_string().as_bytes());
            hasher.update([0]);
            for h in &ds.heads {
                hasher.update(h.0);
            }
            changes += ds.sigs.len();
        }
        CatalogueStatus {
            did: self.hub.to_did(),
            records,
            documents: state.docs.len(),
            changes,
            digest: hex::encode(hasher.finalize()),
            store_bytes: self.store.size_on_disk(),
            changes_accepted: self.accepted.load(Ordering::Relaxed),
            changes_refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Changes this node signs from now on, as they become durable.
    pub fn subscribe_local(&self) -> tokio::sync::broadcast::Receiver<SignedChange> {
        self.local_tx.subscribe()
    }

    /// Changes as they are applied (sent after they are durable and in their document —
    /// a change waiting for dependencies is announced when they arrive; visible once the
    /// ingest call that applied them returns).
    pub fn subscribe_applied(&self) -> tokio::sync::broadcast::Receiver<Applied> {
        self.applied_tx.subscribe()
    }

    /// Every document with its heads (changes still waiting for dependencies excluded), but
    /// those of hubs that are not members of the node's federation: they are not offered.
    pub fn doc_heads(&self) -> Vec<(DocId, Vec<ChangeHash>)> {
        let state = self.lock();
        state
            .docs
            .iter()
            .filter(|(_, ds)| !ds.hidden)
            .map(|(id, ds)| (id.clone(), ds.heads.clone()))
            .collect()
    }

    /// The heads of one document (empty when we do not have it).
    pub fn doc_heads_of(&self, doc: &DocId) -> Vec<ChangeHash> {
        self.lock()
            .docs
            .get(doc)
            .map(|ds| ds.heads.clone())
            .unwrap_or_default()
    }

    /// Whether `doc` holds every change in `hashes` (applied, not waiting).
    pub fn has_all(&self, doc: &DocId, hashes: &[ChangeHash]) -> bool {
        let mut state = self.lock();
        state.settle_doc(doc);
        match state.docs.get(doc) {
            Some(ds) => hashes.iter().all(|h| ds.doc.has_change(h)),
            None => hashes.is_empty(),
        }
    }

    /// One document's highest applied sequence number per actor (see
    /// [`hubcat_protocol::sync::Want`]); empty when we do not have the document. Changes
    /// waiting for dependencies are not counted: the peer must still send what they wait for.
    pub fn doc_clock(&self, doc: &DocId) -> Vec<(Vec<u8>, u64)> {
        let mut state = self.lock();
        state.settle_doc(doc);
        let Some(ds) = state.docs.get(doc) else {
            return Vec::new();
        };
        if !ds.irregular {
            // Every indexed change is in the document: the actor logs are the clock.
            return ds
                .actors
                .iter()
                .map(|(actor, log)| (actor.clone(), log.max_seq))
                .collect();
        }
        let mut clock: HashMap<Vec<u8>, u64> = HashMap::new();
        for c in ds.doc.changes() {
            let seq = clock.entry(c.actor_id().to_bytes().to_vec()).or_default();
            *seq = (*seq).max(c.seq());
        }
        clock.into_iter().collect()
    }

    /// What a peer lacks of `doc`, given its heads `have` and its clock (highest sequence
    /// number per actor): our heads and the signed changes not in the history of `have` — or,
    /// when we do not know every head in `have` (the peer holds changes we lack), the changes
    /// above its clock — in causal order, up to about `max_bytes` (at least one change).
    /// `None` when we do not have the document, or do not serve it (its hub is not a member).
    pub fn changes_since(
        &self,
        doc: &DocId,
        have: &[ChangeHash],
        clock: &[(Vec<u8>, u64)],
        max_bytes: usize,
    ) -> Option<ChangesSince> {
        let mut state = self.lock();
        // The history is read from the Automerge document.
        state.settle_doc(doc);
        let ds = state.docs.get(doc).filter(|ds| !ds.hidden)?;
        let heads = ds.doc.heads();
        let mut out = ChangesSince {
            heads,
            changes: Vec::new(),
            more: false,
        };
        let lacking: Vec<Change> = if have.iter().all(|h| ds.doc.has_change(h)) {
            ds.doc.automerge().get_changes(have)
        } else {
            let clock: HashMap<&[u8], u64> =
                clock.iter().map(|(a, s)| (a.as_slice(), *s)).collect();
            ds.doc
                .changes()
                .into_iter()
                .filter(|c| c.seq() > clock.get(c.actor_id().to_bytes()).copied().unwrap_or(0))
                .collect()
        };
        let mut bytes = 0usize;
        for c in lacking {
            let Some((signature, _)) = ds.sigs.get(&c.hash()) else {
                continue;
            };
            let raw = c.raw_bytes();
            if !out.changes.is_empty() && bytes + raw.len() > max_bytes {
                out.more = true;
                break;
            }
            bytes += raw.len() + signature.len();
            out.changes.push(SignedChange {
                doc: doc.clone(),
                author: author_of(&c),
                signature: signature.clone(),
                change: raw.to_vec(),
            });
        }
        Some(out)
    }

    /// Every record with its signed history and the publishers' keys, verifiable offline.
    pub fn export_bundle(&self) -> Result<Bundle, EngineError> {
        let mut state = self.lock();
        // The history is read from the Automerge documents.
        state.settle_all();
        let mut publishers = Vec::new();
        let mut changes = Vec::new();
        let keys = state.federation.as_ref().map(|f| &f.keys);
        for (id, ds) in &state.docs {
            // Hub documents served here, and the membership document (which carries the key
            // handovers the hubs' changes are signed under).
            match id.hub() {
                Some(_) if ds.hidden => continue,
                Some(owner) => publishers.push(BundlePublisher {
                    did: owner.to_did(),
                    public_key: hex::encode(owner.as_bytes()),
                    signing_keys: keys
                        .and_then(|k| k.keys(owner))
                        .map(|k| {
                            k.retired
                                .iter()
                                .map(|(key, _)| key)
                                .chain([&k.current])
                                .filter(|key| *key != owner)
                                .map(|key| key.to_did())
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                None => {}
            }
            for c in ds.doc.changes() {
                let (signature, _) = ds.sigs.get(&c.hash()).ok_or_else(|| {
                    EngineError::Internal(format!("no signature for change {}", c.hash()))
                })?;
                let slots = layout::check_change(id, &c)?;
                let envelope = SignedChange {
                    doc: id.clone(),
                    author: author_of(&c),
                    signature: signature.clone(),
                    change: c.raw_bytes().to_vec(),
                };
                changes.push(BundleChange::of(&envelope, &c.hash(), &slots));
            }
        }
        let records = in_order(&state.records)
            .into_iter()
            .map(|v| {
                Ok(BundleRecord {
                    id: v.id.clone(),
                    record: serde_json::to_value(&v.record)
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                    provenance: v.provenance.clone(),
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok(Bundle {
            format: bundle::BUNDLE_FORMAT.into(),
            version: bundle::BUNDLE_VERSION,
            created: format_timestamp(hubcat_protocol::now_ms()),
            publishers,
            records,
            changes,
        })
    }
}

/// Our heads of a document and the changes a peer lacks (see [`Catalogue::changes_since`]).
#[derive(Debug, Clone)]
pub struct ChangesSince {
    pub heads: Vec<ChangeHash>,
    pub changes: Vec<SignedChange>,
    /// The byte limit cut the list short.
    pub more: bool,
}

/// The author key a verified change's actor id begins with.
fn author_of(change: &Change) -> [u8; 32] {
    let mut author = [0u8; 32];
    let actor = change.actor_id().to_bytes();
    if actor.len() >= 32 {
        author.copy_from_slice(&actor[..32]);
    }
    author
}

/// Where `key`'s changes end, in hub document `doc` and in the membership document (see
/// [`Successor::clock`]).
fn key_clock(state: &State, doc: &DocId, key: &HubId) -> BTreeMap<String, u64> {
    let mut clock = state
        .docs
        .get(doc)
        .map(|ds| ds.clock_of_key(key, ""))
        .unwrap_or_default();
    if let Some(ds) = state
        .federation
        .as_ref()
        .and_then(|f| state.docs.get(&f.doc))
    {
        clock.extend(ds.clock_of_key(key, membership::VOTES_CLOCK));
    }
    clock
}

/// A vote's reason, checked before anything is signed.
fn check_reason(reason: &str) -> Result<(), EngineError> {
    if reason.chars().count() > membership::MAX_REASON {
        return Err(EngineError::Invalid(RecordError::field(
            "reason",
            format!("longer than {} characters", membership::MAX_REASON),
        )));
    }
    Ok(())
}

fn fresh_actor_suffix() -> Result<[u8; 16], EngineError> {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(|e| EngineError::Internal(format!("random source: {e}")))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    /// A valid service record (also used by the batch tests).
    pub(super) fn service(slug: &str, title: &str) -> Record {
        Record::from_value(serde_json::json!({"kind": "service", "id": slug,
            "title": {"en": title}, "description": {"en": "A service."},
            "category": "skills-and-training"}))
        .expect("valid")
    }

    fn signed(key: &HubKey, suffix: [u8; 16], slug: &str, title: &str) -> SignedChange {
        let mut doc = CatalogueDoc::new(key.id(), suffix);
        let change = doc
            .upsert(&service(slug, title), hubcat_protocol::now_ms())
            .expect("change");
        change::sign(key, doc.id(), &change)
    }

    #[test]
    fn equivocating_changes_are_refused_and_the_node_keeps_its_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(dir.path()).expect("store"));
        let node_key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let catalogue = Catalogue::open(store.clone(), node_key).expect("open");
        let remote = HubKey::from_secret_bytes(&[2; 32]).expect("key");
        // Same actor, same sequence number 1, different content.
        let a = signed(&remote, [5; 16], "a", "First");
        let b = signed(&remote, [5; 16], "b", "Second");
        let now = hubcat_protocol::now_ms();
        let r = catalogue.ingest(vec![a.clone()], now).expect("ingest");
        assert_eq!(r.accepted, 1);
        let digest = catalogue.status().digest;
        let r = catalogue.ingest(vec![b.clone()], now).expect("ingest");
        assert_eq!(r.accepted, 0);
        assert_eq!(r.refused[0].reason, "equivocation");
        assert_eq!(catalogue.status().digest, digest);
        assert_eq!(store.change_count(), 1);
        // Replaying the first is a harmless duplicate.
        let r = catalogue.ingest(vec![a], now).expect("ingest");
        assert_eq!((r.accepted, r.duplicates), (0, 1));
        assert_eq!(catalogue.record_count(), 1);
        // Both in one batch to a fresh node: the second is refused, the first lands.
        let dir2 = tempfile::tempdir().expect("tempdir");
        let store2 = Arc::new(SledStore::open(dir2.path()).expect("store"));
        let c2 = Catalogue::open(store2, HubKey::from_secret_bytes(&[3; 32]).expect("key"))
            .expect("open");
        let a = signed(&remote, [5; 16], "a", "First");
        let r = c2.ingest(vec![a, b], now).expect("ingest");
        assert_eq!(r.accepted, 1);
        assert_eq!(r.refused.len(), 1);
        assert_eq!(r.refused[0].index, 1);
    }

    fn titled(slug: &str, title: &str) -> Record {
        service(slug, title)
    }

    fn titles(c: &Catalogue) -> Vec<(String, String, String)> {
        c.list(&ListFilter::default())
            .into_iter()
            .map(|v| {
                (
                    v.id.clone(),
                    v.record.title(None).to_owned(),
                    v.provenance.change_hash,
                )
            })
            .collect()
    }

    /// Changes that extend their document go to the view before Automerge applies them; the
    /// others (concurrent writers, missing dependencies, deletes) through Automerge at once.
    /// Either way the view must be what Automerge holds, which a reopened node re-reads.
    #[test]
    fn the_view_matches_automerge_for_linear_concurrent_late_and_deleting_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(dir.path()).expect("store"));
        let node_key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let c = Catalogue::open(store, node_key).expect("open");
        let hub = HubKey::from_secret_bytes(&[2; 32]).expect("key");
        let now = hubcat_protocol::now_ms();
        let sign = |doc: &CatalogueDoc, ch: &Change| change::sign(&hub, doc.id(), ch);

        // Two nodes of one hub (two actors) writing the same document.
        let mut first = CatalogueDoc::new(hub.id(), [1; 16]);
        let c1 = first.upsert(&titled("x", "x one"), now).expect("c1");
        let c2 = first.upsert(&titled("y", "y one"), now).expect("c2");
        let mut second = CatalogueDoc::from_automerge(first.id().clone(), first.automerge().fork());
        second.set_actor_suffix([2; 16]);
        // Many linear changes, more than one settle's worth, over several batches.
        let mut linear = Vec::new();
        for i in 0..150 {
            let ch = first
                .upsert(&titled(&format!("s{i}"), &format!("s{i} one")), now)
                .expect("change");
            linear.push(sign(&first, &ch));
        }
        let concurrent_a = first.upsert(&titled("x", "x from first"), now).expect("a");
        let concurrent_b = second
            .upsert(&titled("x", "x from second"), now)
            .expect("b");
        let r = c
            .ingest(vec![sign(&first, &c1), sign(&first, &c2)], now)
            .expect("ingest");
        assert_eq!(r.accepted, 2);
        assert_eq!(
            c.get(&format!("x@{}", hub.id().to_multibase()))
                .expect("x")
                .record
                .title(None),
            "x one"
        );
        for batch in linear.chunks(40) {
            let r = c.ingest(batch.to_vec(), now).expect("ingest");
            assert_eq!(r.accepted, batch.len());
        }
        assert_eq!(c.record_count(), 152);
        // The concurrent pair, the second first: Automerge decides which title wins.
        let r = c
            .ingest(
                vec![sign(&second, &concurrent_b), sign(&first, &concurrent_a)],
                now,
            )
            .expect("ingest");
        assert_eq!(r.accepted, 2);
        let mut merged = CatalogueDoc::from_automerge(first.id().clone(), first.automerge().fork());
        merged.apply(vec![concurrent_b.clone()]).expect("merge");
        let x = Slot::parse("x").expect("slot");
        let winner = merged.record(&x).expect("x").title(None).to_owned();
        let x_id = format!("x@{}", hub.id().to_multibase());
        assert_eq!(c.get(&x_id).expect("x").record.title(None), winner);

        // A change whose dependency is late waits, invisible, until the dependency comes.
        let mut late = CatalogueDoc::from_automerge(merged.id().clone(), merged.automerge().fork());
        late.set_actor_suffix([1; 16]);
        let dep = late.upsert(&titled("z", "z one"), now).expect("dep");
        let after = late.upsert(&titled("z", "z two"), now).expect("after");
        let r = c.ingest(vec![sign(&late, &after)], now).expect("ingest");
        assert_eq!(r.accepted, 1);
        let z_id = format!("z@{}", hub.id().to_multibase());
        assert!(
            c.get(&z_id).is_err(),
            "a change without its dependency is not visible"
        );
        let r = c.ingest(vec![sign(&late, &dep)], now).expect("ingest");
        assert_eq!(r.accepted, 1);
        assert_eq!(c.get(&z_id).expect("z").record.title(None), "z two");

        // A withdrawal (a delete) from the hub, then more linear changes after it.
        let gone = late
            .withdraw(&Slot::parse("s7").expect("slot"), now)
            .expect("withdraw");
        let more = late.upsert(&titled("s8", "s8 two"), now).expect("more");
        let r = c
            .ingest(vec![sign(&late, &gone), sign(&late, &more)], now)
            .expect("ingest");
        assert_eq!(r.accepted, 2);
        assert!(c.get(&format!("s7@{}", hub.id().to_multibase())).is_err());
        assert_eq!(
            c.get(&format!("s8@{}", hub.id().to_multibase()))
                .expect("s8")
                .record
                .title(None),
            "s8 two"
        );

        // What a node rebuilt from Automerge shows is what this one shows.
        let before = titles(&c);
        let digest = c.status().digest;
        c.settle();
        assert_eq!(titles(&c), before);
        assert_eq!(c.status().digest, digest);
        drop(c);
        let store = Arc::new(SledStore::open(dir.path()).expect("store"));
        let again = Catalogue::open(store, HubKey::from_secret_bytes(&[1; 32]).expect("key"))
            .expect("reopen");
        assert_eq!(titles(&again), before);
        assert_eq!(again.status().digest, digest);
    }

    /// A peer that holds changes we lack (its heads are unknown to us) still gets only the
    /// changes it lacks, found from its clock, not the whole document.
    #[test]
    fn a_peer_with_unknown_heads_gets_only_what_it_lacks() {
        let open = |seed: u8| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Arc::new(SledStore::open(dir.path()).expect("store"));
            let key = HubKey::from_secret_bytes(&[seed; 32]).expect("key");
            (Catalogue::open(store, key).expect("open"), dir)
        };
        let (ours, _d1) = open(1);
        let (theirs, _d2) = open(2);
        let hub = HubKey::from_secret_bytes(&[3; 32]).expect("key");
        let now = hubcat_protocol::now_ms();
        let mut first = CatalogueDoc::new(hub.id(), [1; 16]);
        let common: Vec<SignedChange> = (0..20)
            .map(|i| {
                let c = first
                    .upsert(&service(&format!("c{i}"), "Common"), now)
                    .expect("change");
                change::sign(&hub, first.id(), &c)
            })
            .collect();
        // The hub's second node (another actor) writes concurrently from the common state.
        let mut second = CatalogueDoc::from_automerge(first.id().clone(), first.automerge().fork());
        second.set_actor_suffix([2; 16]);
        let only_ours: Vec<SignedChange> = (0..3)
            .map(|i| {
                let c = first
                    .upsert(&service(&format!("o{i}"), "Ours"), now)
                    .expect("change");
                change::sign(&hub, first.id(), &c)
            })
            .collect();
        let only_theirs = {
            let c = second
                .upsert(&service("t0", "Theirs"), now)
                .expect("change");
            change::sign(&hub, second.id(), &c)
        };
        let mut all_ours = common.clone();
        all_ours.extend(only_ours.iter().cloned());
        assert_eq!(ours.ingest(all_ours, now).expect("ingest").accepted, 23);
        let mut all_theirs = common;
        all_theirs.push(only_theirs.clone());
        assert_eq!(theirs.ingest(all_theirs, now).expect("ingest").accepted, 21);

        let doc = DocId::Hub(hub.id());
        let their_heads = theirs.doc_heads_of(&doc);
        let their_clock = theirs.doc_clock(&doc);
        let reply = ours
            .changes_since(&doc, &their_heads, &their_clock, usize::MAX)
            .expect("we have the document");
        let sent: HashSet<Vec<u8>> = reply.changes.iter().map(|c| c.change.clone()).collect();
        let lacking: HashSet<Vec<u8>> = only_ours.iter().map(|c| c.change.clone()).collect();
        assert_eq!(sent, lacking, "exactly the three changes they lack");

        // They take them; now they know our heads and send back exactly their own change.
        assert_eq!(
            theirs.ingest(reply.changes, now).expect("ingest").accepted,
            3
        );
        let back = theirs
            .changes_since(&doc, &reply.heads, &[], usize::MAX)
            .expect("they have the document");
        assert_eq!(back.changes.len(), 1);
        assert_eq!(back.changes[0].change, only_theirs.change);
        assert_eq!(ours.ingest(back.changes, now).expect("ingest").accepted, 1);
        assert_eq!(ours.status().digest, theirs.status().digest);
        assert_eq!(ours.record_count(), 24);
    }

    #[test]
    fn reopening_restores_records_and_provenance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_bytes = [7u8; 32];
        let view = {
            let store = Arc::new(SledStore::open(dir.path()).expect("store"));
            let c = Catalogue::open(store, HubKey::from_secret_bytes(&key_bytes).expect("key"))
                .expect("open");
            let v = c.publish(&service("s", "Kept")).expect("publish");
            c.publish(&service("t", "Also kept")).expect("publish");
            c.snapshot().expect("snapshot");
            c.publish(&service("u", "After the snapshot"))
                .expect("publish");
            v
        };
        let store = Arc::new(SledStore::open(dir.path()).expect("store"));
        let c = Catalogue::open(store, HubKey::from_secret_bytes(&key_bytes).expect("key"))
            .expect("reopen");
        assert_eq!(c.record_count(), 3);
        let again = c.get("s").expect("still there");
        assert_eq!(again.provenance, view.provenance);
        // The reopened node keeps writing under its actor without sequence clashes.
        c.publish(&service("v", "New"))
            .expect("publish after reopen");
        assert_eq!(c.record_count(), 4);
    }

    /// A crash that loses the log's tail but keeps a later snapshot must not leave the node
    /// claiming changes it cannot show or pass on: the lost change is asked for again, and
    /// once a peer sends it, its record is served with its signature.
    #[test]
    fn a_snapshot_ahead_of_the_log_is_set_aside_and_the_lost_change_comes_back() {
        let key_bytes = [9u8; 32];
        let key = || HubKey::from_secret_bytes(&key_bytes).expect("key");
        let whole = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(whole.path()).expect("store"));
        let c = Catalogue::open(store.clone(), key()).expect("open");
        c.publish(&service("s", "Logged")).expect("publish");
        c.publish(&service("t", "Lost from the log"))
            .expect("publish");
        c.snapshot().expect("snapshot");
        let own = DocId::Hub(key().id());
        let log = store.log().expect("log");
        let snapshots = store.snapshots().expect("snapshots");
        let suffix = store
            .get_meta("actor_suffix")
            .expect("meta")
            .expect("suffix");
        let lost = log[1].1.clone();
        let lost_hash = Change::try_from(lost.change.as_slice())
            .expect("change")
            .hash();
        drop(c);

        // The same store as it could look after such a crash: the snapshot, the first change.
        let crashed = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(crashed.path()).expect("store"));
        let first = &log[0].1;
        let first_hash = Change::try_from(first.change.as_slice())
            .expect("change")
            .hash();
        store.append(&[(first_hash, first)]).expect("append");
        for (doc, snapshot) in &snapshots {
            store.put_snapshot(doc, snapshot).expect("snapshot");
        }
        store.put_meta("actor_suffix", &suffix).expect("meta");
        let c = Catalogue::open(store, key()).expect("open after the crash");
        assert_eq!(c.record_count(), 1);
        assert!(c.get("s").is_ok());
        assert!(
            !c.has_all(&own, &[lost_hash]),
            "the node must not claim the change its log lost"
        );
        assert_eq!(c.doc_heads_of(&own), vec![first_hash]);

        let report = c
            .ingest(vec![lost], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(report.accepted, 1, "{report:?}");
        let back = c.get("t").expect("the lost record is back");
        assert_eq!(back.provenance.change_hash, lost_hash.to_string());
        assert_eq!(c.record_count(), 2);
    }

    /// A change that arrived before its dependency and was stored, then the node stopped: once
    /// the dependency arrives after the restart, both records are served.
    #[test]
    fn a_change_waiting_for_its_dependency_across_a_restart_becomes_visible() {
        let publisher = HubKey::from_secret_bytes(&[3u8; 32]).expect("key");
        let mut doc = CatalogueDoc::new(publisher.id(), [1; 16]);
        let now = hubcat_protocol::now_ms();
        let first = doc.upsert(&service("a", "First"), now).expect("change");
        let second = doc.upsert(&service("b", "Second"), now).expect("change");
        let first = change::sign(&publisher, doc.id(), &first);
        let second = change::sign(&publisher, doc.id(), &second);

        let dir = tempfile::tempdir().expect("tempdir");
        let node = || HubKey::from_secret_bytes(&[4u8; 32]).expect("key");
        {
            let store = Arc::new(SledStore::open(dir.path()).expect("store"));
            let c = Catalogue::open(store, node()).expect("open");
            let report = c.ingest(vec![second], now).expect("ingest");
            assert_eq!(report.accepted, 1, "{report:?}");
            assert_eq!(c.record_count(), 0, "waits for its dependency");
        }
        let store = Arc::new(SledStore::open(dir.path()).expect("store"));
        let c = Catalogue::open(store, node()).expect("reopen");
        let mut applied = c.subscribe_applied();
        let report = c.ingest(vec![first], now).expect("ingest");
        assert_eq!(report.accepted, 1, "{report:?}");
        let ids: Vec<String> = c
            .list(&ListFilter::default())
            .iter()
            .map(|v| v.id.split('@').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(ids, ["a", "b"], "both records are served");
        let mut announced = 0;
        while applied.try_recv().is_ok() {
            announced += 1;
        }
        assert_eq!(announced, 2, "both changes are announced as applied");
    }
}
