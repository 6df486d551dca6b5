//! Durable storage behind a small trait, with sled as the engine.
//!
//! What is stored:
//! - `changes`: the append-only log of verified signed changes, in the versioned codec, keyed
//!   by big-endian sequence numbers (sequential keys are what sled writes fastest). Changes
//!   appended together are stored in groups of up to [`LOG_GROUP`]: key = first sequence
//!   number (8 bytes) + number of changes (1 byte), value = the encoded `Vec<SignedChange>`
//!   (sled copies a node per insert, so fewer, mid-sized values cost less). Entries with an
//!   8-byte key hold one `SignedChange` (stores written before groups); both are read;
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

/// Largest stored value we will decode (a group of changes, or a document snapshot).
const MAX_STORED_VALUE: usize = 64 * 1024 * 1024;
/// Most changes in one log entry: about 13 KB values with today's records; per change, 8 cost
/// sled about half of one entry each, and larger groups cost more again (BENCHMARKS.md).
pub const LOG_GROUP: usize = 8;

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
    /// Changes in the log (its entries may hold several).
    count: std::sync::atomic::AtomicU64,
    /// Document names for encoding envelopes, kept across appends.
    names: Mutex<change::DocNames>,
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
                // sled reports the data directory's lock as `Other` "could not acquire lock".
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock") =>
                {
                    StoreError::Locked(path.display().to_string())
                }
                other => StoreError::Sled(other),
            })?;
        let changes = db.open_tree("changes")?;
        let next = match changes.last()? {
            Some((k, _)) => seq_of(&k) + entry_len(&k),
            None => 1,
        };
        let mut count = 0;
        for key in changes.iter().keys() {
            count += entry_len(&key?);
        }
        Ok(SledStore {
            by_hash: db.open_tree("by_hash")?,
            snapshots: db.open_tree("snapshots")?,
            meta: db.open_tree("meta")?,
            changes,
            db,
            next_seq: std::sync::atomic::AtomicU64::new(next),
            count: std::sync::atomic::AtomicU64::new(count),
            names: Mutex::new(change::DocNames::default()),
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

/// Changes in the log entry with this key: a group's count, else one.
fn entry_len(key: &[u8]) -> u64 {
    match key.get(8) {
        Some(&n) => u64::from(n),
        None => 1,
    }
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
        let mut log = sled::Batch::default();
        {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            for (i, group) in changes.chunks(LOG_GROUP).enumerate() {
                let envelopes: Vec<&SignedChange> = group.iter().map(|(_, c)| *c).collect();
                let mut key = [0u8; 9];
                key[..8].copy_from_slice(&(first + (i * LOG_GROUP) as u64).to_be_bytes());
                // LOG_GROUP fits a byte.
                key[8] = group.len() as u8;
                log.insert(&key, change::encode_group(&envelopes, &mut names));
            }
        }
        let mut hashes = Vec::with_capacity(32 * changes.len());
        for (hash, _) in changes {
            hashes.extend_from_slice(&hash.0);
        }
        self.changes.apply_batch(log)?;
        self.by_hash.insert(first.to_be_bytes(), hashes)?;
        self.db.flush()?;
        self.count.fetch_add(changes.len() as u64, Ordering::SeqCst);
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
        let mut out = Vec::with_capacity(self.change_count());
        for entry in self.changes.iter() {
            let (k, v) = entry?;
            let seq = seq_of(&k);
            let corrupt = |source| StoreError::Corrupt {
                key: format!("changes/{seq}"),
                source,
            };
            if k.len() == 8 {
                out.push((seq, codec::decode(&v, MAX_STORED_VALUE).map_err(corrupt)?));
                continue;
            }
            let group: Vec<SignedChange> = codec::decode(&v, MAX_STORED_VALUE).map_err(corrupt)?;
            if k.len() != 9 || group.len() as u64 != entry_len(&k) {
                return Err(corrupt(codec::CodecError::Malformed(format!(
                    "{}-byte key for a group of {} changes",
                    k.len(),
                    group.len()
                ))));
            }
            out.extend((seq..).zip(group));
        }
        Ok(out)
    }

    fn change_count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst) as usize
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
        // A store written before groups and batched hash entries: one log entry and one
        // `by_hash` entry per change.
        let old = envelope(&key, "old");
        {
            let store = SledStore::open(dir.path()).expect("open");
            store
                .changes
                .insert(1u64.to_be_bytes(), codec::encode(&old.1))
                .expect("insert");
        }
        let many: Vec<(ChangeHash, SignedChange)> = (0..LOG_GROUP + 3)
            .map(|i| envelope(&key, &format!("m{i}")))
            .collect();
        {
            let store = SledStore::open(dir.path()).expect("open");
            assert_eq!(store.change_count(), 1);
            assert!(!store.contains(&a.0).expect("contains"));
            let seqs = store.append(&[(a.0, &a.1), (b.0, &b.1)]).expect("append");
            assert_eq!(seqs, vec![2, 3]);
            // Found whether the set was loaded before or after the append.
            assert!(store.contains(&a.0).expect("contains"));
            assert!(store.contains(&b.0).expect("contains"));
            assert_eq!(store.append(&[(c.0, &c.1)]).expect("append"), vec![4]);
            assert!(store.contains(&c.0).expect("contains"));
            let refs: Vec<(ChangeHash, &SignedChange)> =
                many.iter().map(|(h, e)| (*h, e)).collect();
            let seqs = store.append(&refs).expect("append");
            assert_eq!(seqs, (5..5 + refs.len() as u64).collect::<Vec<_>>());
            store
                .by_hash
                .insert(old.0 .0, &1u64.to_be_bytes())
                .expect("insert");
            store.flush().expect("flush");
        }
        let store = SledStore::open(dir.path()).expect("reopen");
        for h in [&a.0, &b.0, &c.0, &old.0, &many[LOG_GROUP + 1].0] {
            assert!(store.contains(h).expect("contains"));
        }
        assert!(!store.contains(&ChangeHash([0; 32])).expect("contains"));
        let mut expected = vec![
            (1, old.1.clone()),
            (2, a.1.clone()),
            (3, b.1.clone()),
            (4, c.1.clone()),
        ];
        expected.extend((5..).zip(many.iter().map(|(_, e)| e.clone())));
        assert_eq!(store.log().expect("log"), expected);
        assert_eq!(store.change_count(), expected.len());
        let next = expected.len() as u64 + 1;
        assert_eq!(
            store.append(&[(old.0, &old.1)]).expect("append"),
            vec![next]
        );
    }
}
