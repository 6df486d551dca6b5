//! Which records changed: the hook that keeps indexes derived from the view (the search
//! index) current on every applied change, local or remote.
//!
//! Every path that changes the view — a linear change going straight in, Automerge re-reads
//! after a settle, the rebuild at open — writes through [`RecordMap::insert`] and
//! [`RecordMap::remove`], which note the record's key once someone tracks changes. A consumer
//! calls [`Catalogue::track_changes`] once (it gets every record), then
//! [`Catalogue::take_changes`] whenever [`Catalogue::records_changed`] wakes it (or before it
//! answers a query): each call returns the records upserted and removed since the one before,
//! read from the view under the catalogue's lock, so what it gets is exactly what queries see.
//! Noting keys in a set keeps this O(records changed) and bounded by the catalogue's size
//! however far the consumer lags; without a consumer nothing is noted.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{in_order, Catalogue, RecordKey, RecordView};

/// The view's records, noting changed keys while changes are tracked.
#[derive(Default)]
pub(super) struct RecordMap {
    map: HashMap<RecordKey, Box<RecordView>>,
    /// Keys inserted or removed since the last [`Catalogue::take_changes`]; `None` until a
    /// consumer tracks changes.
    changed: Option<HashSet<RecordKey>>,
    /// Set (under the catalogue's lock) when a key is noted, cleared by the consumer: lets
    /// [`Catalogue::take_changes`] answer "nothing" without the lock, so a query does not
    /// wait for a commit that changes no record (a peer's refused or held changes).
    noted: Arc<AtomicBool>,
}

impl Deref for RecordMap {
    type Target = HashMap<RecordKey, Box<RecordView>>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl RecordMap {
    pub(super) fn insert(
        &mut self,
        key: RecordKey,
        view: Box<RecordView>,
    ) -> Option<Box<RecordView>> {
        self.note(&key);
        self.map.insert(key, view)
    }

    pub(super) fn remove(&mut self, key: &RecordKey) -> Option<Box<RecordView>> {
        let old = self.map.remove(key);
        if old.is_some() {
            self.note(key);
        }
        old
    }

    fn note(&mut self, key: &RecordKey) {
        if let Some(changed) = &mut self.changed {
            changed.insert(key.clone());
            self.noted.store(true, Ordering::Release);
        }
    }

    /// The flag [`RecordMap::note`] sets, for reading without the catalogue's lock.
    pub(super) fn noted(&self) -> Arc<AtomicBool> {
        self.noted.clone()
    }

    /// Whether a tracked change waits to be taken.
    pub(super) fn has_changes(&self) -> bool {
        self.changed.as_ref().is_some_and(|c| !c.is_empty())
    }
}

/// Records changed since the last [`Catalogue::take_changes`].
#[derive(Debug, Default, Clone)]
pub struct RecordChanges {
    /// Records created or updated, as the view now holds them (signed, with provenance).
    pub upserted: Vec<RecordView>,
    /// Ids (`slot@z6Mk…`) of records withdrawn.
    pub removed: Vec<String>,
}

impl RecordChanges {
    pub fn is_empty(&self) -> bool {
        self.upserted.is_empty() && self.removed.is_empty()
    }
}

impl Catalogue {
    /// Start (or restart) tracking changed records and return every record now in the view:
    /// a consumer builds from this, then applies [`Catalogue::take_changes`]. Changes made
    /// between the two are in both, so applying them must be idempotent (an upsert by id).
    pub fn track_changes(&self) -> Vec<RecordView> {
        let mut state = self.lock();
        state.records.changed = Some(HashSet::new());
        in_order(&state.records).into_iter().cloned().collect()
    }

    /// The records upserted and withdrawn since the last call (empty when changes are not
    /// tracked).
    pub fn take_changes(&self) -> RecordChanges {
        // Nothing noted since the last call: every commit that noted a key set the flag before
        // it released the lock, so a commit finished before this call is never missed.
        if !self.changes_noted.swap(false, Ordering::AcqRel) {
            return RecordChanges::default();
        }
        let mut state = self.lock();
        let Some(changed) = state.records.changed.as_mut() else {
            return RecordChanges::default();
        };
        if changed.is_empty() {
            return RecordChanges::default();
        }
        let keys = std::mem::take(changed);
        let mut out = RecordChanges::default();
        for key in keys {
            match state.records.get(&key) {
                Some(view) => out.upserted.push(RecordView::clone(view)),
                None => {
                    if let Ok(id) = key.to_id() {
                        out.removed.push(id.to_string());
                    }
                }
            }
        }
        out
    }

    /// Woken (one permit is kept) after a commit changed records while changes are tracked.
    pub fn records_changed(&self) -> &tokio::sync::Notify {
        &self.records_changed
    }
}
