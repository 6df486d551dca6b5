//! Durable storage behind a small trait, with sled as the engine.
//!
//! What is stored:
//! - `changes`: the append-only log of verified signed changes, keyed by a big-endian sequence
//!   number (sequential keys are what sled writes fastest), values in the versioned codec;
//! - `by_hash`: change hash → sequence number, to refuse duplicates without touching the log;
//! - `snapshots`: per document, an Automerge `save()` plus the log position it covers, so a
//!   restart loads the snapshot and replays only the log after it;
//! - `meta`: node metadata (the actor suffix, format version).
//!
//! Every method blocks; callers on the async runtime go through `spawn_blocking`.
//! [`Store::append`] returns only after the batch is flushed to disk: that is what makes a
//! publish acknowledgement mean "durable".

use std::path::Path;

use automerge::ChangeHash;
use hubcat_protocol::{codec, DocId, SignedChange};
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
        })
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
        let mut log = sled::Batch::default();
        let mut index = sled::Batch::default();
        let mut seqs = Vec::with_capacity(changes.len());
        for (hash, change) in changes {
            let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
            log.insert(&seq.to_be_bytes(), codec::encode(*change));
            index.insert(&hash.0, &seq.to_be_bytes());
            seqs.push(seq);
        }
        self.changes.apply_batch(log)?;
        self.by_hash.apply_batch(index)?;
        self.db.flush()?;
        Ok(seqs)
    }

    fn contains(&self, hash: &ChangeHash) -> Result<bool, StoreError> {
        Ok(self.by_hash.contains_key(hash.0)?)
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
