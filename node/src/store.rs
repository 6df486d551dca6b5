//! Durable storage behind a small trait, with sled as the engine.
//!
//! What is stored:
//! - `changes`: the append-only log of verified signed changes, keyed by a big-endian sequence
//!   number (sequential keys are what sled writes fastest), values in the versioned codec;
//! - `by_hash`: the hashes of every stored change, to refuse duplicates without touching the
//!   log: one entry per appended batch, keyed by the batch's first sequence number (8 bytes),
//!   holding the batch's change hashes in log order (32 bytes each). Stores written before
//!   that hold one entry per change keyed by its hash (32 bytes); both are read. Lookups go
//!   to an in-memory set loaded from this tree on first use;
//! - `snapshots`: per document, an Automerge `save()` plus the log position it covers, so a
//!   restart loads the snapshot and replays only the log after it;
//! - `meta`: node metadata (the actor suffix, format version).
//!
//! Every method blocks; callers on the async runtime go through `spawn_blocking`.
//! [`Store::append`] returns only after the batch is flushed to disk: that is what makes a
//! publish acknowledgement mean "durable".

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use automerge::ChangeHash;
use hubcat_protocol::{change, codec, DocId, SignedChange};
use serde::{Deserialize, Serialize};

/// Largest stored value we will decode (a change plus its envelope, or a document snapshot).
const MAX_STORED_VALUE: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored value at {key} does not decode: {source}")]
    Corrupt {
        key: String,
        source: codec::CodecError,
    },
    #[error(
        "the data directory {0} is in use by another hubcat process (is `hubcat run` running?)"
    )]
    Locked(String),
}

/// A document snapshot and the log position it includes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The log position when the snapshot was taken (changes waiting for dependencies at that
    /// time are not in `doc`, so a restart still replays every change the snapshot lacks).
    pub upto_seq: u64,
    pub doc: Vec<u8>,
}

/// The storage a catalogue needs. Small on purpose, so another engine could replace sled.
pub trait Store: Send + Sync + 'static {
    /// Durably append changes (already verified); returns the sequence numbers given.
    fn append(&self, changes: &[(ChangeHash, &SignedChange)]) -> Result<Vec<u64>, StoreError>;
    fn contains(&self, hash: &ChangeHash) -> Result<bool, StoreError>;
    /// Every stored change in log order, with its sequence number.
    fn log(&self) -> Result<Vec<(u64, SignedChange)>, StoreError>;
    fn change_count(&self) -> usize;
    fn put_snapshot(&self, doc: &DocId, snapshot: &Snapshot) -> Result<(), StoreError>;
    fn snapshots(&self) -> Result<Vec<(DocId, Snapshot)>, StoreError>;
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn flush(&self) -> Result<(), StoreError>;
    fn size_on_disk(&self) -> u64;
}

pub struct SledStore {
    db: sled::Db,
    changes: sled::Tree,
    by_hash: sled::Tree,
    snapshots: sled::Tree,
    meta: sled::Tree,
    next_seq: std::sync::atomic::AtomicU64,
    /// Every stored change hash, loaded from `by_hash` on the first `contains` (one sled
    /// insert per batch instead of one per change with a random key).
    hashes: Mutex<Option<HashSet<ChangeHash>>>,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(256 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(path.display().to_string())
                }
                other => StoreError::Sled(other),
            })?;
        let changes = db.open_tree("changes")?;
        let next = match changes.last()? {
            Some((k, _)) => seq_of(&k) + 1,
            None => 1,
        };
        Ok(SledStore {
            by_hash: db.open_tree("by_hash")?,
            snapshots: db.open_tree("snapshots")?,
            meta: db.open_tree("meta")?,
            changes,
            db,
            next_seq: std::sync::atomic::AtomicU64::new(next),
            hashes: Mutex::new(None),
        })
    }

    fn hashes(&self) -> MutexGuard<'_, Option<HashSet<ChangeHash>>> {
        // The set is only ever extended with hashes already written: a panic elsewhere cannot
        // leave it claiming a change the store lacks.
        self.hashes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_hashes(&self) -> Result<HashSet<ChangeHash>, StoreError> {
        let mut set = HashSet::new();
        for entry in self.by_hash.iter() {
            let (k, v) = entry?;
            match k.len() {
                // Written before batches: the key is the hash.
                32 => {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(&k);
                    set.insert(ChangeHash(h));
                }
                8 if v.len() % 32 == 0 => {
                    for chunk in v.chunks_exact(32) {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(chunk);
                        set.insert(ChangeHash(h));
                    }
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        key: format!("by_hash/{}", hex::encode(&k)),
                        source: codec::CodecError::Malformed(format!(
                            "{}-byte key, {}-byte value",
                            k.len(),
                            v.len()
                        )),
                    })
                }
            }
        }
        Ok(set)
    }
}

fn seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

impl Store for SledStore {
    fn append(&self, changes: &[(ChangeHash, &SignedChange)]) -> Result<Vec<u64>, StoreError> {
        use std::sync::atomic::Ordering;
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let first = self
            .next_seq
            .fetch_add(changes.len() as u64, Ordering::SeqCst);
        let seqs: Vec<u64> = (first..first + changes.len() as u64).collect();
        let encoded = change::encode_all(changes.iter().map(|(_, c)| *c));
        let mut log = sled::Batch::default();
        let mut hashes = Vec::with_capacity(32 * changes.len());
        for ((hash, _), (seq, value)) in changes.iter().zip(seqs.iter().zip(encoded)) {
            log.insert(&seq.to_be_bytes(), value);
            hashes.extend_from_slice(&hash.0);
        }
        self.changes.apply_batch(log)?;
        self.by_hash.insert(first.to_be_bytes(), hashes)?;
        self.db.flush()?;
        if let Some(set) = self.hashes().as_mut() {
            set.extend(changes.iter().map(|(h, _)| *h));
        }
        Ok(seqs)
    }

    fn contains(&self, hash: &ChangeHash) -> Result<bool, StoreError> {
        let mut hashes = self.hashes();
        if hashes.is_none() {
            *hashes = Some(self.load_hashes()?);
        }
        Ok(hashes.as_ref().is_some_and(|set| set.contains(hash)))
    }

    fn log(&self) -> Result<Vec<(u64, SignedChange)>, StoreError> {
        let mut out = Vec::with_capacity(self.changes.len());
        for entry in self.changes.iter() {
            let (k, v) = entry?;
            let seq = seq_of(&k);
            let change =
                codec::decode(&v, MAX_STORED_VALUE).map_err(|source| StoreError::Corrupt {
                    key: format!("changes/{seq}"),
                    source,
                })?;
            out.push((seq, change));
        }
        Ok(out)
    }

    fn change_count(&self) -> usize {
        self.changes.len()
    }

    fn put_snapshot(&self, doc: &DocId, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.snapshots
            .insert(doc.to_string().as_bytes(), codec::encode(snapshot))?;
        Ok(())
    }

    fn snapshots(&self) -> Result<Vec<(DocId, Snapshot)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.snapshots.iter() {
            let (k, v) = entry?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let corrupt = |source| StoreError::Corrupt {
                key: format!("snapshots/{name}"),
                source,
            };
            let doc = DocId::parse(&name)
                .map_err(|e| corrupt(codec::CodecError::Malformed(e.to_string())))?;
            out.push((doc, codec::decode(&v, MAX_STORED_VALUE).map_err(corrupt)?));
        }
        Ok(out)
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubcat_protocol::{CatalogueDoc, HubKey, Record};

    fn envelope(key: &HubKey, slug: &str) -> (ChangeHash, SignedChange) {
        let record = Record::from_value(serde_json::json!({"kind": "service", "id": slug,
            "title": {"en": "T"}, "description": {"en": "D"}, "category": "skills-and-training"}))
        .expect("valid");
        let mut doc = CatalogueDoc::new(key.id(), [1; 16]);
        let change = doc.upsert(&record, 1_700_000_000_000).expect("change");
        (change.hash(), change::sign(key, doc.id(), &change))
    }

    #[test]
    fn appended_changes_are_found_logged_in_order_and_kept_across_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = HubKey::from_secret_bytes(&[4; 32]).expect("key");
        let (a, b, c) = (
            envelope(&key, "a"),
            envelope(&key, "b"),
            envelope(&key, "c"),
        );
        // A store written before batched hash entries: one `by_hash` entry per change.
        let old = envelope(&key, "old");
        {
            let store = SledStore::open(dir.path()).expect("open");
            assert!(!store.contains(&a.0).expect("contains"));
            let seqs = store.append(&[(a.0, &a.1), (b.0, &b.1)]).expect("append");
            assert_eq!(seqs, vec![1, 2]);
            // Found whether the set was loaded before or after the append.
            assert!(store.contains(&a.0).expect("contains"));
            assert!(store.contains(&b.0).expect("contains"));
            assert_eq!(store.append(&[(c.0, &c.1)]).expect("append"), vec![3]);
            assert!(store.contains(&c.0).expect("contains"));
            store
                .by_hash
                .insert(old.0 .0, &9u64.to_be_bytes())
                .expect("insert");
            store.flush().expect("flush");
        }
        let store = SledStore::open(dir.path()).expect("reopen");
        for h in [&a.0, &b.0, &c.0, &old.0] {
            assert!(store.contains(h).expect("contains"));
        }
        assert!(!store.contains(&ChangeHash([0; 32])).expect("contains"));
        let log = store.log().expect("log");
        assert_eq!(
            log,
            vec![(1, a.1.clone()), (2, b.1.clone()), (3, c.1.clone())]
        );
        assert_eq!(store.append(&[(old.0, &old.1)]).expect("append"), vec![4]);
    }
}
