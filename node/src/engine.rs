//! The catalogue engine: one Automerge document per publisher, fed only by verified signed
//! changes, with a materialised view of every record for queries.
//!
//! Local publishes and remote changes take the same path: a change is verified
//! ([`hubcat_protocol::change::verify_batch`]), made durable in the store, applied to its
//! document, and then the records it touched are re-read into the view. A local publish first
//! builds and signs its change on the hub's own document; if verification or storage fails the
//! document is rolled back to its previous heads, so nothing unverified or undurable is ever
//! visible.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use automerge::{Change, ChangeHash, ReadDoc, ROOT};
use hubcat_protocol::bundle::{
    self, Bundle, BundleChange, BundlePublisher, BundleRecord, Provenance,
};
use hubcat_protocol::change::{self, ChangeError, VerifiedChange};
use hubcat_protocol::layout::{self, LayoutError};
use hubcat_protocol::record::format_timestamp;
use hubcat_protocol::{
    CatalogueDoc, DocId, HubId, HubKey, Record, RecordError, RecordId, RecordKind, SignedChange,
    Slot,
};
use serde::Serialize;

use crate::store::{Snapshot, Store, StoreError};

/// Snapshot changed documents after this many applied changes.
const SNAPSHOT_EVERY: u64 = 20_000;

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
    doc: CatalogueDoc,
    /// (actor, start op) → (change hash, last op): finds the change that wrote a value.
    ops: BTreeMap<(Vec<u8>, u64), (ChangeHash, u64)>,
    /// change hash → (signature, timestamp ms) of every change in the document.
    sigs: HashMap<ChangeHash, (Vec<u8>, i64)>,
    /// (actor, sequence number) → change: an author signing two different changes with one
    /// sequence number (equivocation) is refused before it can reach the document.
    seqs: HashMap<(Vec<u8>, u64), ChangeHash>,
    /// Slots touched by changes still waiting for missing dependencies.
    waiting: BTreeSet<Slot>,
    dirty: bool,
}

impl DocState {
    fn new(doc: CatalogueDoc) -> Self {
        DocState {
            doc,
            ops: BTreeMap::new(),
            sigs: HashMap::new(),
            seqs: HashMap::new(),
            waiting: BTreeSet::new(),
            dirty: false,
        }
    }

    fn index(&mut self, change: &Change, signature: &[u8]) {
        let actor = change.actor_id().to_bytes().to_vec();
        self.seqs
            .insert((actor.clone(), change.seq()), change.hash());
        self.ops.insert(
            (actor, change.start_op().get()),
            (change.hash(), change.max_op()),
        );
        self.sigs
            .insert(change.hash(), (signature.to_vec(), change.timestamp()));
    }

    /// The record in `slot` with the provenance of the change that wrote its current value.
    fn view(&self, slot: &Slot) -> Option<RecordView> {
        let owner = *self.doc.id().owner();
        let (_, exid) = self.doc.automerge().get(ROOT, slot.as_str()).ok()??;
        let automerge::ObjId::Id(counter, actor, _) = exid else {
            return None;
        };
        let actor = actor.to_bytes().to_vec();
        let (_, (hash, max_op)) = self
            .ops
            .range(..=(actor.clone(), counter))
            .next_back()
            .filter(|((a, _), _)| *a == actor)?;
        if counter > *max_op {
            return None;
        }
        let (signature, ts) = self.sigs.get(hash)?;
        let record = self.doc.record(slot)?;
        Some(RecordView {
            id: RecordId::new(owner, slot.clone()).to_string(),
            kind: record.kind(),
            publisher: owner.to_did(),
            provenance: Provenance {
                publisher: owner.to_did(),
                change_hash: hex::encode(hash.0),
                signature: hex::encode(signature),
                signed_at: format_timestamp(*ts),
            },
            record,
        })
    }
}

struct State {
    docs: BTreeMap<DocId, DocState>,
    records: BTreeMap<RecordId, RecordView>,
    last_seq: u64,
    applied_since_snapshot: u64,
}

/// The hub's catalogue: its own document and every other hub's, verified and durable.
pub struct Catalogue {
    store: Arc<dyn Store>,
    key: HubKey,
    actor_suffix: [u8; 16],
    state: Mutex<State>,
    accepted: AtomicU64,
    refused: AtomicU64,
    refused_by_reason: Mutex<BTreeMap<&'static str, u64>>,
    /// Every change this node signs, for the network to announce.
    local_tx: tokio::sync::broadcast::Sender<SignedChange>,
    /// Every change applied, local or remote (for propagation measurements and metrics).
    applied_tx: tokio::sync::broadcast::Sender<Applied>,
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
    /// view. The store's contents were verified before they were written.
    pub fn open(store: Arc<dyn Store>, key: HubKey) -> Result<Self, EngineError> {
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
        for (doc_id, entries) in by_doc {
            let mut doc = match snapshots.get(&doc_id) {
                Some(s) => CatalogueDoc::load(doc_id.clone(), &s.doc)?,
                None => CatalogueDoc::remote(doc_id.clone()),
            };
            let mut state_changes = Vec::with_capacity(entries.len());
            let mut to_apply = Vec::new();
            for (seq, env) in entries {
                let change = Change::from_bytes(env.change.clone()).map_err(|e| {
                    EngineError::Store(StoreError::Corrupt {
                        key: format!("changes/{seq}"),
                        source: hubcat_protocol::codec::CodecError::Malformed(e.to_string()),
                    })
                })?;
                // A snapshot holds only changes whose dependencies had arrived; replay them all
                // (Automerge skips the ones it has by actor sequence number, cheaply).
                to_apply.push(change.clone());
                state_changes.push((change, env.signature));
            }
            if let Err(e) = doc.apply(to_apply.clone()) {
                tracing::warn!(doc = %doc_id, error = %e, "replaying the log as a batch failed; replaying change by change");
                for change in to_apply {
                    if let Err(e) = doc.apply(vec![change.clone()]) {
                        tracing::error!(doc = %doc_id, change = %change.hash(), error = %e, "skipping a stored change Automerge refuses");
                    }
                }
            }
            let mut ds = DocState::new(doc);
            for (change, sig) in &state_changes {
                ds.index(change, sig);
            }
            docs.insert(doc_id, ds);
        }
        let own = DocId::Hub(key.id());
        if let Some(ds) = docs.get_mut(&own) {
            ds.doc.set_actor_suffix(actor_suffix);
        }
        let mut records = BTreeMap::new();
        for ds in docs.values() {
            for slot in ds.doc.slots() {
                if let Some(v) = ds.view(&slot) {
                    records.insert(RecordId::new(*ds.doc.id().owner(), slot), v);
                }
            }
        }
        Ok(Catalogue {
            store,
            key,
            actor_suffix,
            state: Mutex::new(State {
                docs,
                records,
                last_seq,
                applied_since_snapshot: 0,
            }),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refused_by_reason: Mutex::new(BTreeMap::new()),
            local_tx: tokio::sync::broadcast::channel(LOCAL_CHANNEL).0,
            applied_tx: tokio::sync::broadcast::channel(APPLIED_CHANNEL).0,
        })
    }

    pub fn hub_id(&self) -> HubId {
        self.key.id()
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
        let results = change::verify_batch(envelopes, now_ms);
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

    /// Store verified changes durably, then apply them and refresh the view.
    fn commit(
        &self,
        state: &mut State,
        verified: Vec<(usize, VerifiedChange)>,
    ) -> Result<CommitOutcome, EngineError> {
        let mut outcome = CommitOutcome::default();
        let mut fresh: Vec<VerifiedChange> = Vec::with_capacity(verified.len());
        let mut seen = BTreeSet::new();
        let mut batch_seqs: HashMap<(DocId, Vec<u8>, u64), ChangeHash> = HashMap::new();
        for (index, v) in verified {
            if !seen.insert(v.hash) || self.store.contains(&v.hash)? {
                outcome.duplicates += 1;
                continue;
            }
            let actor = v.change.actor_id().to_bytes().to_vec();
            let seq = v.change.seq();
            let earlier = state
                .docs
                .get(&v.envelope.doc)
                .and_then(|ds| ds.seqs.get(&(actor.clone(), seq)).copied())
                .or_else(|| {
                    batch_seqs
                        .get(&(v.envelope.doc.clone(), actor.clone(), seq))
                        .copied()
                });
            if let Some(earlier) = earlier.filter(|h| *h != v.hash) {
                outcome.refused.push(self.refusal(
                    index,
                    "equivocation",
                    format!(
                        "change {} reuses sequence number {seq} of change {earlier} by the same author",
                        v.hash
                    ),
                ));
                continue;
            }
            batch_seqs.insert((v.envelope.doc.clone(), actor, seq), v.hash);
            fresh.push(v);
        }
        if fresh.is_empty() {
            return Ok(outcome);
        }
        let entries: Vec<(ChangeHash, &SignedChange)> =
            fresh.iter().map(|v| (v.hash, &v.envelope)).collect();
        let seqs = self.store.append(&entries)?;
        state.last_seq = seqs.last().copied().unwrap_or(state.last_seq);

        let mut by_doc: BTreeMap<DocId, Vec<VerifiedChange>> = BTreeMap::new();
        for v in fresh {
            by_doc.entry(v.envelope.doc.clone()).or_default().push(v);
        }
        let mut accepted = 0;
        for (doc_id, changes) in by_doc {
            let ds = state.docs.entry(doc_id.clone()).or_insert_with(|| {
                DocState::new(if doc_id == DocId::Hub(self.key.id()) {
                    CatalogueDoc::new(self.key.id(), self.actor_suffix)
                } else {
                    CatalogueDoc::remote(doc_id.clone())
                })
            });
            let mut touched: BTreeSet<Slot> = std::mem::take(&mut ds.waiting);
            let applied_ms = hubcat_protocol::now_ms();
            for v in &changes {
                ds.index(&v.change, &v.envelope.signature);
                touched.extend(v.slots.iter().cloned());
                if self.applied_tx.receiver_count() > 0 {
                    let _ = self.applied_tx.send(Applied {
                        doc: doc_id.clone(),
                        hash: v.hash,
                        signed_ms: v.change.timestamp(),
                        applied_ms,
                    });
                }
            }
            accepted += changes.len();
            if let Err(e) = ds
                .doc
                .apply(changes.into_iter().map(|v| v.change).collect())
            {
                // Verified and stored, but Automerge would not take it: keep serving the other
                // documents; a restart replays the log change by change.
                tracing::error!(doc = %doc_id, error = %e, "applying verified changes failed");
            }
            ds.dirty = true;
            if !ds.doc.automerge().get_missing_deps(&[]).is_empty() {
                ds.waiting = touched.clone();
            }
            let owner = *doc_id.owner();
            for slot in touched {
                let id = RecordId::new(owner, slot.clone());
                match ds.view(&slot) {
                    Some(v) => state.records.insert(id, v),
                    None => state.records.remove(&id),
                };
            }
        }
        self.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
        state.applied_since_snapshot += accepted as u64;
        if state.applied_since_snapshot >= SNAPSHOT_EVERY {
            self.snapshot_locked(state)?;
        }
        outcome.accepted = accepted;
        Ok(outcome)
    }

    /// Save every changed document as a snapshot (on shutdown and every few thousand changes).
    pub fn snapshot(&self) -> Result<(), EngineError> {
        let mut state = self.lock();
        self.snapshot_locked(&mut state)
    }

    fn snapshot_locked(&self, state: &mut State) -> Result<(), EngineError> {
        let upto = state.last_seq;
        for (id, ds) in state.docs.iter_mut().filter(|(_, d)| d.dirty) {
            self.store.put_snapshot(
                id,
                &Snapshot {
                    upto_seq: upto,
                    doc: ds.doc.save(),
                },
            )?;
            ds.dirty = false;
        }
        self.store.flush()?;
        state.applied_since_snapshot = 0;
        Ok(())
    }

    /// Sign a change made on the hub's own document and put it through the common path; on any
    /// failure, roll the document back.
    fn local_change<F>(&self, make: F) -> Result<Slot, EngineError>
    where
        F: FnOnce(&mut CatalogueDoc) -> Result<(Change, Slot), LayoutError>,
    {
        let own = DocId::Hub(self.key.id());
        let mut state = self.lock();
        let ds = state
            .docs
            .entry(own.clone())
            .or_insert_with(|| DocState::new(CatalogueDoc::new(self.key.id(), self.actor_suffix)));
        let before = ds.doc.heads();
        let rollback = |ds: &mut DocState, suffix: [u8; 16]| -> Result<(), EngineError> {
            let mut doc = CatalogueDoc::from_automerge(
                ds.doc.id().clone(),
                ds.doc
                    .automerge()
                    .fork_at(&before)
                    .map_err(|e| EngineError::Internal(e.to_string()))?,
            );
            doc.set_actor_suffix(suffix);
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
        let envelope = change::sign(&self.key, &own, &change);
        let announced = envelope.clone();
        let verified = match change::verify(envelope, hubcat_protocol::now_ms()) {
            Ok(v) => v,
            Err(e) => {
                rollback(ds, self.actor_suffix)?;
                return Err(e.into());
            }
        };
        let refused = match self.commit(&mut state, vec![(0, verified)]) {
            Ok(outcome) => outcome.refused.into_iter().next(),
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
            if *p != self.key.id().to_did() {
                return Err(EngineError::Invalid(RecordError::field(
                    "publisher",
                    format!("this node publishes as {}, not {p}", self.key.id().to_did()),
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
        if rid.publisher != self.key.id() {
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

    fn get_own(&self, slot: &Slot) -> Result<RecordView, EngineError> {
        let id = RecordId::new(self.key.id(), slot.clone());
        self.lock()
            .records
            .get(&id)
            .cloned()
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
        let own = RecordId::new(self.key.id(), slot.clone());
        let state = self.lock();
        if state.records.contains_key(&own) {
            return Ok(own);
        }
        let matches: Vec<&RecordId> = state.records.keys().filter(|r| r.slot == slot).collect();
        match matches.as_slice() {
            [] => Err(EngineError::NotFound(format!("no record with id `{id}`"))),
            [one] => Ok((*one).clone()),
            many => Err(EngineError::Conflict(format!(
                "id `{id}` is used by {} publishers; name one: {}",
                many.len(),
                many.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub fn get(&self, id: &str) -> Result<RecordView, EngineError> {
        let rid = self.resolve(id)?;
        self.lock()
            .records
            .get(&rid)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("no record with id `{id}`")))
    }

    pub fn list(&self, filter: &ListFilter) -> Vec<RecordView> {
        let state = self.lock();
        state
            .records
            .values()
            .filter(|v| filter.kind.is_none_or(|k| v.kind == k))
            .filter(|v| filter.publisher.is_none_or(|p| v.publisher == p.to_did()))
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
            .cloned()
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
            let mut heads = ds.doc.heads();
            heads.sort();
            hasher.update(id.to_string().as_bytes());
            hasher.update([0]);
            for h in heads {
                hasher.update(h.0);
            }
            changes += ds.sigs.len();
        }
        CatalogueStatus {
            did: self.key.id().to_did(),
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

    /// Changes as they are applied (sent after they are durable; visible once the ingest call
    /// that applied them returns).
    pub fn subscribe_applied(&self) -> tokio::sync::broadcast::Receiver<Applied> {
        self.applied_tx.subscribe()
    }

    /// Every document with its heads (changes still waiting for dependencies excluded).
    pub fn doc_heads(&self) -> Vec<(DocId, Vec<ChangeHash>)> {
        let state = self.lock();
        state
            .docs
            .iter()
            .map(|(id, ds)| (id.clone(), ds.doc.heads()))
            .collect()
    }

    /// The heads of one document (empty when we do not have it).
    pub fn doc_heads_of(&self, doc: &DocId) -> Vec<ChangeHash> {
        self.lock()
            .docs
            .get(doc)
            .map(|ds| ds.doc.heads())
            .unwrap_or_default()
    }

    /// Whether `doc` holds every change in `hashes` (applied, not waiting).
    pub fn has_all(&self, doc: &DocId, hashes: &[ChangeHash]) -> bool {
        let state = self.lock();
        match state.docs.get(doc) {
            Some(ds) => hashes.iter().all(|h| ds.doc.has_change(h)),
            None => hashes.is_empty(),
        }
    }

    /// What a peer whose heads of `doc` are `have` lacks: our heads and the signed changes
    /// not in the history of `have` (heads we do not know are ignored), in causal order, up to
    /// about `max_bytes` (at least one change). `None` when we do not have the document.
    pub fn changes_since(
        &self,
        doc: &DocId,
        have: &[ChangeHash],
        max_bytes: usize,
    ) -> Option<ChangesSince> {
        let state = self.lock();
        let ds = state.docs.get(doc)?;
        let known: Vec<ChangeHash> = have
            .iter()
            .filter(|h| ds.doc.has_change(h))
            .copied()
            .collect();
        let heads = ds.doc.heads();
        let mut out = ChangesSince {
            heads,
            changes: Vec::new(),
            more: false,
        };
        let mut bytes = 0usize;
        for c in ds.doc.automerge().get_changes(&known) {
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
        let state = self.lock();
        let mut publishers = Vec::new();
        let mut changes = Vec::new();
        for (id, ds) in &state.docs {
            let owner = id.owner();
            publishers.push(BundlePublisher {
                did: owner.to_did(),
                public_key: hex::encode(owner.as_bytes()),
            });
            for c in ds.doc.changes() {
                let (signature, _) = ds.sigs.get(&c.hash()).ok_or_else(|| {
                    EngineError::Internal(format!("no signature for change {}", c.hash()))
                })?;
                let slots = layout::check_change(id, &c)?;
                let envelope = SignedChange {
                    doc: id.clone(),
                    author: *owner.as_bytes(),
                    signature: signature.clone(),
                    change: c.raw_bytes().to_vec(),
                };
                changes.push(BundleChange::of(&envelope, &c.hash(), &slots));
            }
        }
        let records = state
            .records
            .values()
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

fn fresh_actor_suffix() -> Result<[u8; 16], EngineError> {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(|e| EngineError::Internal(format!("random source: {e}")))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    fn service(slug: &str, title: &str) -> Record {
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
}
