//! The export bundle: every record with the signed changes that made it and the publishers'
//! keys, so anyone can check a catalogue offline with no node running (`hubcat verify`).
//!
//! Verification replays every change through the same checks a node applies on receipt,
//! rebuilds each hub document, and compares every listed record and its provenance with the
//! rebuilt state. Any difference fails and names the record.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ReadDoc as _;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::change::{self, DocId, SignedChange};
use crate::identity::HubId;
use crate::layout::{CatalogueDoc, RecordId, Slot};

pub const BUNDLE_FORMAT: &str = "hubcat-bundle";
pub const BUNDLE_VERSION: u32 = 1;

/// Where a record comes from: enough to verify it offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The publishing hub's did.
    pub publisher: String,
    /// Hash of the Automerge change that last wrote the record (hex).
    pub change_hash: String,
    /// The publisher's ed25519 signature over that change (hex).
    pub signature: String,
    /// When the change was signed (RFC 3339, from the change's timestamp).
    pub signed_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundlePublisher {
    pub did: String,
    /// The ed25519 public key, hex.
    pub public_key: String,
    /// Other keys that signed for this publisher: keys its federation handed its signing over
    /// to (rotations and recoveries in the bundle's membership document), dids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleRecord {
    /// `slot@z6Mk…`
    pub id: String,
    pub record: serde_json::Value,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleChange {
    pub doc: String,
    /// The change hash (hex), as the signer saw it.
    pub hash: String,
    pub author: String,
    pub signature: String,
    /// The raw Automerge change, base64.
    pub change: String,
    /// The records this change writes, so a damaged change can still be named.
    pub records: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub version: u32,
    pub created: String,
    pub publishers: Vec<BundlePublisher>,
    pub records: Vec<BundleRecord>,
    pub changes: Vec<BundleChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a hubcat bundle: {0}")]
    Format(String),
    #[error("record {record}: {detail}")]
    Record { record: String, detail: String },
    #[error("document {doc}: {detail}")]
    Document { doc: String, detail: String },
}

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    pub publishers: usize,
    pub records: usize,
    pub changes: usize,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl BundleChange {
    /// The entry of a change: a hub document's, naming the records it writes, or the
    /// membership document's (no records).
    pub fn of(change: &SignedChange, hash: &automerge::ChangeHash, slots: &[Slot]) -> Self {
        BundleChange {
            doc: change.doc.to_string(),
            hash: hex::encode(hash.0),
            author: HubId::from_bytes(&change.author)
                .map(|h| h.to_did())
                .unwrap_or_else(|_| hex::encode(change.author)),
            signature: hex::encode(&change.signature),
            change: b64().encode(&change.change),
            records: match change.doc.hub() {
                Some(owner) => slots
                    .iter()
                    .map(|s| RecordId::new(*owner, s.clone()).to_string())
                    .collect(),
                None => Vec::new(),
            },
        }
    }

    /// The signed change this entry carries (not verified).
    pub fn envelope(&self) -> Result<SignedChange, String> {
        let doc = DocId::parse(&self.doc).map_err(|e| e.to_string())?;
        let author = HubId::from_did(&self.author).map_err(|e| e.to_string())?;
        let signature = hex::decode(&self.signature).map_err(|e| format!("signature: {e}"))?;
        let change = b64()
            .decode(&self.change)
            .map_err(|e| format!("change bytes: {e}"))?;
        Ok(SignedChange {
            doc,
            author: *author.as_bytes(),
            signature,
            change,
        })
    }
}

/// Check every signature, rebuild every document, and compare with the listed records.
pub fn verify(bundle: &Bundle, now_ms: i64) -> Result<BundleReport, BundleError> {
    if bundle.format != BUNDLE_FORMAT || bundle.version != BUNDLE_VERSION {
        return Err(BundleError::Format(format!(
            "format {:?} version {} (expected {BUNDLE_FORMAT:?} version {BUNDLE_VERSION})",
            bundle.format, bundle.version
        )));
    }
    let mut keys = BTreeMap::new();
    // Publisher → the other keys that signed for it.
    let mut handed: BTreeMap<HubId, BTreeSet<HubId>> = BTreeMap::new();
    for p in &bundle.publishers {
        let id = HubId::from_did(&p.did).map_err(|e| BundleError::Format(e.to_string()))?;
        if hex::encode(id.as_bytes()) != p.public_key {
            return Err(BundleError::Format(format!(
                "publisher {}: public key does not match its did",
                p.did
            )));
        }
        keys.insert(p.did.clone(), id);
        for k in &p.signing_keys {
            let key = HubId::from_did(k).map_err(|e| {
                BundleError::Format(format!("publisher {}: signing key: {e}", p.did))
            })?;
            handed.entry(id).or_default().insert(key);
            keys.insert(k.clone(), key);
        }
    }
    let signers = |hub: &HubId, author: &HubId| handed.get(hub).is_some_and(|k| k.contains(author));

    let mut docs: BTreeMap<DocId, CatalogueDoc> = BTreeMap::new();
    // (record id) → (change hash, signature) of every change that wrote it.
    let mut writers: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for c in &bundle.changes {
        let name = || {
            if c.records.is_empty() {
                format!("(change {})", c.hash)
            } else {
                c.records.join(", ")
            }
        };
        let fail = |detail: String| BundleError::Record {
            record: name(),
            detail,
        };
        let envelope = c.envelope().map_err(fail)?;
        // Votes in the membership document are signed by members, publishers or not.
        let votes = matches!(envelope.doc, DocId::Membership(_));
        if !votes && !keys.contains_key(&c.author) {
            return Err(fail(format!(
                "author {} is not among the publishers",
                c.author
            )));
        }
        let verified =
            change::verify_signed(envelope, now_ms, &signers).map_err(|e| fail(e.to_string()))?;
        if hex::encode(verified.hash.0) != c.hash {
            return Err(fail(format!(
                "change hash {} differs from the listed {}",
                hex::encode(verified.hash.0),
                c.hash
            )));
        }
        let Some(owner) = verified.envelope.doc.hub().copied() else {
            // The membership document: replayed below like the others, it writes no record.
            docs.entry(verified.envelope.doc.clone())
                .or_insert_with(|| CatalogueDoc::remote(verified.envelope.doc.clone()))
                .apply(vec![verified.change])
                .map_err(|e| fail(e.to_string()))?;
            continue;
        };
        let listed: Vec<String> = verified
            .slots
            .iter()
            .map(|s| RecordId::new(owner, s.clone()).to_string())
            .collect();
        if listed != c.records {
            return Err(fail(format!(
                "change writes {listed:?}, listed as {:?}",
                c.records
            )));
        }
        for r in &listed {
            writers
                .entry(r.clone())
                .or_default()
                .push((c.hash.clone(), c.signature.clone()));
        }
        let doc_id = verified.envelope.doc.clone();
        docs.entry(doc_id.clone())
            .or_insert_with(|| CatalogueDoc::remote(doc_id))
            .apply(vec![verified.change])
            .map_err(|e| fail(e.to_string()))?;
    }

    let mut present = 0usize;
    for doc in docs.values() {
        let missing = doc.automerge().get_missing_deps(&[]);
        if !missing.is_empty() {
            return Err(BundleError::Document {
                doc: doc.id().to_string(),
                detail: format!("{} changes are missing from the history", missing.len()),
            });
        }
        if doc.id().hub().is_some() {
            present += doc.slots().len();
        }
    }

    for r in &bundle.records {
        let fail = |detail: String| BundleError::Record {
            record: r.id.clone(),
            detail,
        };
        let id = RecordId::parse(&r.id).map_err(|e| fail(e.to_string()))?;
        let doc = docs
            .get(&DocId::Hub(id.publisher))
            .ok_or_else(|| fail("no signed change for this record's publisher".into()))?;
        let json = doc
            .get(&id.slot)
            .ok_or_else(|| fail("not present in the publisher's signed history".into()))?;
        let signed: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| fail(e.to_string()))?;
        if signed != r.record {
            return Err(fail(
                "content differs from what its publisher signed".into(),
            ));
        }
        if r.provenance.publisher != id.publisher.to_did() {
            return Err(fail("provenance names another publisher".into()));
        }
        let signed_by = writers.get(&r.id).map(Vec::as_slice).unwrap_or_default();
        if !signed_by
            .iter()
            .any(|(h, s)| *h == r.provenance.change_hash && *s == r.provenance.signature)
        {
            return Err(fail(
                "provenance does not match any signed change of this record".into(),
            ));
        }
    }
    if present != bundle.records.len() {
        return Err(BundleError::Format(format!(
            "the signed history holds {present} records, the bundle lists {}",
            bundle.records.len()
        )));
    }
    Ok(BundleReport {
        publishers: bundle.publishers.len(),
        records: bundle.records.len(),
        changes: bundle.changes.len(),
    })
}
