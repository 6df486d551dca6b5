//! Signed changes: the only way anything enters a hub's catalogue document.
//!
//! Every Automerge change travels in a [`SignedChange`] envelope: the document it belongs to,
//! the author's ed25519 public key, the raw change bytes and the author's signature over the
//! change hash. Automerge change hashes chain over their dependencies, so a signed head also
//! authenticates the history below it.
//!
//! A node applies a change only after [`verify`] (or [`verify_batch`]) accepted it:
//! 1. size within the limit, bytes decode as an Automerge change (its checksum holds);
//! 2. the change's actor id begins with the author's public key;
//! 3. the author may write the document ([`may_write`]);
//! 4. its timestamp is not too far in the future;
//! 5. every operation fits the document layout ([`crate::layout`]) and every record it writes
//!    validates;
//! 6. the signature verifies (strictly, or in an ed25519 batch for keys known not to be weak).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use automerge::{Change, ChangeHash};
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::identity::{HubDid, HubId, HubKey};
use crate::layout::{self, LayoutError, Slot};
use crate::record::Record;

/// Domain separation for change signatures, so they can never be replayed as anything else.
const SIGNING_DOMAIN: &[u8] = b"hubcat/change/v1\0";
/// Largest change accepted, in bytes (a record is at most 256 KiB of JSON; a change compresses).
pub const MAX_CHANGE_BYTES: usize = 512 * 1024;
/// How far in the future a change's timestamp may lie (clock skew), in milliseconds.
pub const MAX_FUTURE_MS: i64 = 10 * 60 * 1000;
/// Signatures per ed25519 batch: the batch rate has levelled off by here, and one bad
/// signature makes only its own batch fall back to one-by-one verification.
pub const ED25519_BATCH: usize = 512;
/// Author keys an [`AuthorCache`] keeps (a federation has hundreds of hubs).
const AUTHOR_CACHE_MAX: usize = 4096;

/// Which Automerge document a change belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocId {
    /// A hub's own catalogue: its profile, services and practices. Only that hub writes it.
    Hub(HubId),
    /// A federation's membership document (see [`crate::membership`]), named by the
    /// federation id: every member writes its own votes into it.
    Membership(String),
}

/// Longest federation id in a membership document's name (a genesis name, a dash, 32 hex).
const MAX_FEDERATION_ID: usize = 96;

impl DocId {
    /// The hub owning this document: `None` for the membership document, which no one owns.
    pub fn hub(&self) -> Option<&HubId> {
        match self {
            DocId::Hub(h) => Some(h),
            DocId::Membership(_) => None,
        }
    }

    pub fn parse(s: &str) -> Result<Self, ChangeError> {
        if let Some(did) = s.strip_prefix("hub/") {
            return HubId::from_did(did)
                .map(DocId::Hub)
                .map_err(|e| ChangeError::BadDocId(format!("{s}: {e}")));
        }
        match s.strip_prefix("membership/") {
            Some(id)
                if !id.is_empty()
                    && id.len() <= MAX_FEDERATION_ID
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                Ok(DocId::Membership(id.to_owned()))
            }
            _ => Err(ChangeError::BadDocId(s.chars().take(80).collect())),
        }
    }
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocId::Hub(h) => write!(f, "hub/{}", h.to_did()),
            DocId::Membership(id) => write!(f, "membership/{id}"),
        }
    }
}

impl Serialize for DocId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DocId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DocId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The rule deciding who may write which document: a hub document only by its own hub key;
/// the membership document by any hub, each only in its own name (the layout checks that every
/// vote names its author) — whether the author is a member is the node's check, against the
/// membership the document itself gives.
pub fn may_write(doc: &DocId, author: &HubId) -> bool {
    match doc {
        DocId::Hub(owner) => owner == author,
        DocId::Membership(_) => true,
    }
}

/// A change as it travels and as it is stored: raw Automerge bytes plus who signed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedChange {
    pub doc: DocId,
    /// The author's ed25519 public key.
    pub author: [u8; 32],
    /// ed25519 signature over `SIGNING_DOMAIN || doc || 0 || change hash`.
    pub signature: Vec<u8>,
    /// The raw Automerge change, exactly as Automerge encoded it.
    pub change: Vec<u8>,
}

/// A [`SignedChange`] borrowed, with the document's name already written out: it serialises
/// to exactly the bytes of the `SignedChange` (`DocId` serialises as its name, and slices as
/// the vectors they borrow from).
#[derive(Serialize)]
struct SignedChangeRef<'a> {
    doc: &'a str,
    author: &'a [u8; 32],
    /// As bytes: in postcard a byte string and a sequence of `u8` are the same bytes (length,
    /// then the bytes), and bytes are copied at once rather than one `u8` at a time.
    #[serde(serialize_with = "as_bytes")]
    signature: &'a [u8],
    #[serde(serialize_with = "as_bytes")]
    change: &'a [u8],
}

fn as_bytes<S: serde::Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

/// Document names already written out, for [`encode_group`] (a caller keeps one; bounded).
#[derive(Debug, Default)]
pub struct DocNames {
    names: HashMap<DocId, String>,
}

/// Encode envelopes as one value with the versioned codec, byte for byte as
/// [`crate::codec::encode`] encodes a `Vec<SignedChange>` of them (decode it as that), but
/// writing each document's name (a base58 encoding) once per document rather than per change.
pub fn encode_group(changes: &[&SignedChange], names: &mut DocNames) -> Vec<u8> {
    let names = &mut names.names;
    if names.len() + changes.len() > AUTHOR_CACHE_MAX {
        names.clear();
    }
    for c in changes {
        if !names.contains_key(&c.doc) {
            names.insert(c.doc.clone(), c.doc.to_string());
        }
    }
    let refs: Option<Vec<SignedChangeRef<'_>>> = changes
        .iter()
        .map(|c| {
            Some(SignedChangeRef {
                doc: names.get(&c.doc)?,
                author: &c.author,
                signature: &c.signature,
                change: &c.change,
            })
        })
        .collect();
    // Each change: its bytes and signature, the author key, a document name, and lengths.
    let size: usize = changes
        .iter()
        .map(|c| c.change.len() + c.signature.len() + 32 + 64 + 8)
        .sum();
    match refs {
        Some(refs) => crate::codec::encode_sized(&refs, size),
        // Every name was just inserted; encode the slow way should that ever not hold.
        None => crate::codec::encode(&changes),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("change is {0} bytes, larger than the {MAX_CHANGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("change bytes do not decode: {0}")]
    Decode(String),
    #[error("invalid document id `{0}`")]
    BadDocId(String),
    #[error("author key is not a valid ed25519 public key")]
    BadAuthorKey,
    #[error("author key is a weak (small-order) key")]
    WeakAuthorKey,
    #[error("the change's actor id does not begin with the author's key {0}")]
    ActorNotAuthor(String),
    #[error("{author} may not write document {doc}")]
    NotAuthorised { doc: String, author: String },
    #[error("change timestamp {0} ms lies more than {MAX_FUTURE_MS} ms in the future")]
    FromTheFuture(i64),
    #[error("signature does not verify for change {0}")]
    BadSignature(String),
    #[error("{0}")]
    Layout(#[from] LayoutError),
}

impl ChangeError {
    /// A short, stable reason name for logs and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            ChangeError::TooLarge(_) => "too_large",
            ChangeError::Decode(_) => "undecodable",
            ChangeError::BadDocId(_) => "bad_doc_id",
            ChangeError::BadAuthorKey | ChangeError::WeakAuthorKey => "bad_author_key",
            ChangeError::ActorNotAuthor(_) => "actor_not_author",
            ChangeError::NotAuthorised { .. } => "not_authorised",
            ChangeError::FromTheFuture(_) => "future_timestamp",
            ChangeError::BadSignature(_) => "bad_signature",
            ChangeError::Layout(_) => "bad_layout",
        }
    }
}

/// A change that passed every check: safe to store and apply.
#[derive(Debug, Clone)]
pub struct VerifiedChange {
    pub envelope: SignedChange,
    pub author: HubId,
    pub hash: ChangeHash,
    pub change: Change,
    /// The document slots (records) this change writes or deletes.
    pub slots: Vec<Slot>,
    /// Per operation, in operation order: the slot and the validated record put there, or
    /// `None` for a delete (see [`layout::CheckedChange`]), so the record is parsed only once.
    pub writes: Vec<(Slot, Option<Record>)>,
}

impl VerifiedChange {
    pub fn timestamp_ms(&self) -> i64 {
        self.change.timestamp()
    }
}

fn signing_message(doc: &DocId, hash: &ChangeHash) -> Vec<u8> {
    signing_message_for(&doc.to_string(), hash)
}

fn signing_message_for(doc: &str, hash: &ChangeHash) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_DOMAIN.len() + doc.len() + 1 + 32);
    msg.extend_from_slice(SIGNING_DOMAIN);
    msg.extend_from_slice(doc.as_bytes());
    msg.push(0);
    msg.extend_from_slice(&hash.0);
    msg
}

/// Author keys already decoded and checked: decoding a key is a curve point decompression,
/// and a federation's changes come from a few hundred keys. Bounded (it starts over when
/// full); only keys that passed are kept. Safe to share between threads.
#[derive(Debug, Default)]
pub struct AuthorCache {
    known: Mutex<HashMap<[u8; 32], Arc<HubDid>>>,
}

impl AuthorCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The author key decoded and checked (valid point, not of small order), with its did.
    pub fn author(&self, key: &[u8; 32]) -> Result<Arc<HubDid>, ChangeError> {
        if let Some(hit) = self.lock().get(key) {
            return Ok(hit.clone());
        }
        let author = HubId::from_bytes(key).map_err(|_| ChangeError::BadAuthorKey)?;
        if author.verifying_key().is_weak() {
            return Err(ChangeError::WeakAuthorKey);
        }
        let author = Arc::new(HubDid::new(author));
        let mut known = self.lock();
        if known.len() >= AUTHOR_CACHE_MAX {
            known.clear();
        }
        known.insert(*key, author.clone());
        Ok(author)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<HubDid>>> {
        // The map holds only checked keys; a panic elsewhere cannot leave it inconsistent.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Decode an Automerge change from untrusted bytes. Automerge 0.12 panics on some malformed
/// changes instead of returning an error (found by fuzzing `fuzz/fuzz_targets/change_envelope.rs`:
/// a truncated LEB128 number inside a column), so the decoder runs under `catch_unwind` and a
/// panic becomes a refusal like any other undecodable change.
///
/// Only an uncompressed change chunk is taken (Automerge's magic bytes, a checksum, then chunk
/// type 1): that is all a node ever signs. Other chunk types go to other decoders in Automerge —
/// the bundle decoder allocated over 3 GB for a 27-byte input the fuzzer found, and a
/// compressed change inflates — so they are refused before Automerge reads them.
pub fn decode_change(bytes: &[u8]) -> Result<Change, ChangeError> {
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    const CHANGE_CHUNK: u8 = 1;
    if bytes.len() < 9 || bytes[..4] != MAGIC {
        return Err(ChangeError::Decode("not an Automerge change".into()));
    }
    if bytes[8] != CHANGE_CHUNK {
        return Err(ChangeError::Decode(format!(
            "chunk type {} is not an uncompressed change",
            bytes[8]
        )));
    }
    match std::panic::catch_unwind(|| Change::try_from(bytes)) {
        Ok(Ok(change)) => Ok(change),
        Ok(Err(e)) => Err(ChangeError::Decode(e.to_string())),
        Err(_) => Err(ChangeError::Decode(
            "malformed change (the Automerge decoder gave up on it)".into(),
        )),
    }
}

/// Sign an Automerge change made by `key` in `doc`.
pub fn sign(key: &HubKey, doc: &DocId, change: &Change) -> SignedChange {
    let signature = key.sign(&signing_message(doc, &change.hash()));
    SignedChange {
        doc: doc.clone(),
        author: *key.id().as_bytes(),
        signature: signature.to_bytes().to_vec(),
        change: change.raw_bytes().to_vec(),
    }
}

/// The checks that need no signature: size, decoding, actor, write rule, time, layout.
pub struct Prechecked {
    envelope: SignedChange,
    author: Arc<HubDid>,
    change: Change,
    signature: Signature,
    checked: layout::CheckedChange,
    /// What the author signed: `SIGNING_DOMAIN || doc || 0 || change hash`.
    message: Vec<u8>,
}

/// Run every check but the signature.
pub fn precheck(envelope: SignedChange, now_ms: i64) -> Result<Prechecked, ChangeError> {
    precheck_with(envelope, now_ms, &AuthorCache::new())
}

/// Which keys may sign a hub's document besides the hub's own: `(hub, author) → bool`. A
/// federation's membership document hands a hub's signing over to new keys (see
/// [`crate::membership::key_book`]); without one, only the hub's own key signs.
pub type Signers<'a> = &'a (dyn Fn(&HubId, &HubId) -> bool + Sync);

fn own_key_only(hub: &HubId, author: &HubId) -> bool {
    hub == author
}

/// [`precheck`] with author keys decoded once per `authors` cache.
pub fn precheck_with(
    envelope: SignedChange,
    now_ms: i64,
    authors: &AuthorCache,
) -> Result<Prechecked, ChangeError> {
    precheck_signed(envelope, now_ms, authors, &own_key_only)
}

/// [`precheck_with`] where `signers` says which other keys may sign a hub's document.
pub fn precheck_signed(
    envelope: SignedChange,
    now_ms: i64,
    authors: &AuthorCache,
    signers: Signers<'_>,
) -> Result<Prechecked, ChangeError> {
    if envelope.change.len() > MAX_CHANGE_BYTES {
        return Err(ChangeError::TooLarge(envelope.change.len()));
    }
    let author = authors.author(&envelope.author)?;
    let signature = Signature::from_slice(&envelope.signature)
        .map_err(|_| ChangeError::BadSignature("(malformed signature)".into()))?;
    let may = match &envelope.doc {
        DocId::Hub(owner) => owner == author.id() || signers(owner, author.id()),
        other => may_write(other, author.id()),
    };
    if !may {
        return Err(ChangeError::NotAuthorised {
            doc: envelope.doc.to_string(),
            author: author.did().to_owned(),
        });
    }
    let change = decode_change(&envelope.change)?;
    if !change
        .actor_id()
        .to_bytes()
        .starts_with(author.id().as_bytes())
    {
        return Err(ChangeError::ActorNotAuthor(author.id().short()));
    }
    if change.author().is_some() {
        // Automerge's author field is not part of the layout (and one actor with two authors
        // would make Automerge refuse a whole batch).
        return Err(ChangeError::Layout(LayoutError::BadOperation {
            slot: "(change author field)".into(),
        }));
    }
    if change.timestamp() > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(ChangeError::FromTheFuture(change.timestamp()));
    }
    let checked = layout::check_change_with(&envelope.doc, &author, &change)?;
    // The write rule makes the author the document's owner, whose did is at hand.
    let message = match &envelope.doc {
        DocId::Hub(owner) if owner == author.id() => {
            let mut doc = String::with_capacity(4 + author.did().len());
            doc.push_str("hub/");
            doc.push_str(author.did());
            signing_message_for(&doc, &change.hash())
        }
        other => signing_message(other, &change.hash()),
    };
    Ok(Prechecked {
        envelope,
        author,
        change,
        signature,
        checked,
        message,
    })
}

impl Prechecked {
    fn finish(self) -> VerifiedChange {
        VerifiedChange {
            hash: self.change.hash(),
            envelope: self.envelope,
            author: *self.author.id(),
            change: self.change,
            slots: self.checked.slots,
            writes: self.checked.writes,
        }
    }

    fn verify_strict(self) -> Result<VerifiedChange, ChangeError> {
        if self.author.id().verify(&self.message, &self.signature) {
            Ok(self.finish())
        } else {
            Err(ChangeError::BadSignature(self.change.hash().to_string()))
        }
    }
}

/// Verify one change completely.
pub fn verify(envelope: SignedChange, now_ms: i64) -> Result<VerifiedChange, ChangeError> {
    precheck(envelope, now_ms)?.verify_strict()
}

/// [`verify`] where `signers` says which other keys may sign a hub's document.
pub fn verify_signed(
    envelope: SignedChange,
    now_ms: i64,
    signers: Signers<'_>,
) -> Result<VerifiedChange, ChangeError> {
    precheck_signed(envelope, now_ms, &AuthorCache::new(), signers)?.verify_strict()
}

/// Verify many changes, checking signatures in ed25519 batches. A failed batch is re-checked
/// one by one, so each refusal names its own change. Results keep the input order.
pub fn verify_batch(
    envelopes: Vec<SignedChange>,
    now_ms: i64,
) -> Vec<Result<VerifiedChange, ChangeError>> {
    verify_batch_with(envelopes, now_ms, &AuthorCache::new())
}

/// [`verify_batch`] with author keys decoded once per `authors` cache (a node keeps one).
pub fn verify_batch_with(
    envelopes: Vec<SignedChange>,
    now_ms: i64,
    authors: &AuthorCache,
) -> Vec<Result<VerifiedChange, ChangeError>> {
    verify_batch_signed(envelopes, now_ms, authors, &own_key_only)
}

/// [`verify_batch_with`] where `signers` says which other keys may sign a hub's document.
pub fn verify_batch_signed(
    envelopes: Vec<SignedChange>,
    now_ms: i64,
    authors: &AuthorCache,
    signers: Signers<'_>,
) -> Vec<Result<VerifiedChange, ChangeError>> {
    let prechecked: Vec<Result<Prechecked, ChangeError>> = envelopes
        .into_iter()
        .map(|e| precheck_signed(e, now_ms, authors, signers))
        .collect();
    // Which changes passed the precheck, in ed25519 batches of at most ED25519_BATCH.
    let ok: Vec<usize> = prechecked
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().ok().map(|_| i))
        .collect();
    let mut batch_ok = vec![true; prechecked.len()];
    for chunk in ok.chunks(ED25519_BATCH) {
        let members: Vec<&Prechecked> = chunk
            .iter()
            .filter_map(|&i| prechecked[i].as_ref().ok())
            .collect();
        let messages: Vec<&[u8]> = members.iter().map(|p| p.message.as_slice()).collect();
        let signatures: Vec<Signature> = members.iter().map(|p| p.signature).collect();
        let keys: Vec<ed25519_dalek::VerifyingKey> = members
            .iter()
            .map(|p| *p.author.id().verifying_key())
            .collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_err() {
            for &i in chunk {
                batch_ok[i] = false;
            }
        }
    }
    prechecked
        .into_iter()
        .zip(batch_ok)
        .map(|(p, batch_ok)| {
            let p = p?;
            if batch_ok {
                Ok(p.finish())
            } else {
                p.verify_strict()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::CatalogueDoc;
    use crate::record::Record;

    fn service(slug: &str) -> Record {
        Record::from_json(
            format!(
                r#"{{"kind":"service","id":"{slug}","title":{{"en":"AI testbed"}},
                "description":{{"en":"Test AI before you invest."}},"category":"test-before-invest"}}"#
            )
            .as_bytes(),
        )
        .expect("valid record")
    }

    fn signed(key: &HubKey, slug: &str) -> SignedChange {
        let mut doc = CatalogueDoc::new(key.id(), [1u8; 16]);
        let change = doc
            .upsert(&service(slug), 1_700_000_000_000)
            .expect("change");
        sign(key, doc.id(), &change)
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_signed_change_verifies() {
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let v = verify(signed(&key, "a"), NOW).expect("verifies");
        assert_eq!(v.author, key.id());
        assert_eq!(v.slots.len(), 1);
    }

    #[test]
    fn wrong_key_altered_bytes_and_foreign_document_are_refused() {
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let other = HubKey::from_secret_bytes(&[2; 32]).expect("key");

        // Signed by another key, claiming the original author.
        let mut env = signed(&key, "a");
        let forged = signed(&other, "a");
        env.signature = forged.signature;
        assert!(matches!(
            verify(env, NOW),
            Err(ChangeError::BadSignature(_))
        ));

        // One byte of the change altered.
        let mut env = signed(&key, "a");
        let n = env.change.len();
        env.change[n - 3] ^= 0x01;
        assert!(verify(env, NOW).is_err());

        // A change by `other` placed into `key`'s document.
        let mut env = signed(&other, "a");
        env.doc = DocId::Hub(key.id());
        assert!(matches!(
            verify(env, NOW),
            Err(ChangeError::NotAuthorised { .. })
        ));

        // Author field swapped to the document owner: actor no longer matches.
        let mut env = signed(&other, "a");
        env.doc = DocId::Hub(key.id());
        env.author = *key.id().as_bytes();
        assert!(matches!(
            verify(env, NOW),
            Err(ChangeError::ActorNotAuthor(_))
        ));
    }

    #[test]
    fn only_uncompressed_change_chunks_reach_the_automerge_decoder() {
        // A 27-byte bundle chunk the fuzzer found: Automerge's bundle decoder allocates over
        // 3 GB for it.
        let bomb: [u8; 27] = [
            0x85, 0x6f, 0x4a, 0x83, 0x1b, 0x26, 0xf6, 0x40, 0x3, 0x10, 0x0, 0x0, 0x1, 0x1, 0x0,
            0x1, 0x23, 0x7, 0xff, 0xe6, 0xff, 0xba, 0x1, 0x0, 0x0, 0x5, 0x2,
        ];
        match decode_change(&bomb) {
            Err(ChangeError::Decode(d)) => assert!(d.contains("chunk type 3"), "{d}"),
            other => panic!("{other:?}"),
        }
        assert!(decode_change(b"hello").is_err());
        // Every change a node makes is an uncompressed change chunk.
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let env = signed(&key, "a");
        assert_eq!(env.change[8], 1);
        assert!(decode_change(&env.change).is_ok());
    }

    #[test]
    fn a_change_that_makes_automerge_panic_is_refused_as_undecodable() {
        // The input the change-envelope fuzz target found (a truncated number in a column).
        let bytes: [u8; 57] = [
            133, 111, 74, 131, 1, 35, 255, 0, 3, 16, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 35, 2,
            255, 0, 0, 0, 131, 74, 111, 255, 0, 133, 8, 0, 0, 0, 0, 0, 47, 1, 35, 255, 0, 3, 16, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(matches!(decode_change(&bytes), Err(ChangeError::Decode(_))));
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let mut env = signed(&key, "a");
        env.change = bytes.to_vec();
        assert!(matches!(verify(env, NOW), Err(ChangeError::Decode(_))));
    }

    #[test]
    fn a_change_from_the_future_is_refused() {
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let env = signed(&key, "a");
        assert!(matches!(
            verify(env, NOW - MAX_FUTURE_MS - 1),
            Err(ChangeError::FromTheFuture(_))
        ));
    }

    #[test]
    fn a_borrowed_envelope_encodes_like_the_envelope() {
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let env = signed(&key, "a");
        let other = signed(&HubKey::from_secret_bytes(&[2; 32]).expect("key"), "b");
        let group = vec![env.clone(), other.clone(), env.clone()];
        let mut names = DocNames::default();
        for _ in 0..2 {
            let bytes = encode_group(&[&env, &other, &env], &mut names);
            assert_eq!(bytes, crate::codec::encode(&group));
            let back: Vec<SignedChange> = crate::codec::decode(&bytes, 1 << 20).expect("decode");
            assert_eq!(back, group);
        }
    }

    #[test]
    fn weak_and_invalid_author_keys_are_refused_every_time() {
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let authors = AuthorCache::new();
        // The identity point: a valid encoding of a small-order point.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for _ in 0..2 {
            let mut env = signed(&key, "a");
            env.author = identity;
            assert_eq!(
                precheck_with(env, NOW, &authors).err(),
                Some(ChangeError::WeakAuthorKey)
            );
        }
        // The same change verifies with the cache, and again from the cache.
        for _ in 0..2 {
            let v = verify_batch_with(vec![signed(&key, "a")], NOW, &authors);
            assert!(v[0].is_ok());
        }
    }

    #[test]
    fn a_bad_signature_beyond_the_first_ed25519_batch_is_named() {
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let other = HubKey::from_secret_bytes(&[2; 32]).expect("key");
        let mut batch: Vec<SignedChange> = (0..ED25519_BATCH + 3)
            .map(|i| signed(&key, &format!("s{i}")))
            .collect();
        let bad = ED25519_BATCH + 1;
        batch[bad].signature = signed(&other, "x").signature;
        let results = verify_batch_with(batch, NOW, &AuthorCache::new());
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_ok(), i != bad, "change {i}");
        }
    }

    #[test]
    fn verified_changes_carry_their_parsed_records() {
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let v = verify(signed(&key, "a"), NOW).expect("verifies");
        assert_eq!(v.writes.len(), 1);
        let (slot, record) = &v.writes[0];
        assert_eq!(slot.as_str(), "a");
        let record = record.as_ref().expect("a put");
        assert_eq!(
            record.meta().publisher.as_deref(),
            Some(key.id().to_did().as_str())
        );
    }

    #[test]
    fn batch_verification_names_the_bad_change() {
        let key = HubKey::from_secret_bytes(&[1; 32]).expect("key");
        let other = HubKey::from_secret_bytes(&[2; 32]).expect("key");
        let mut batch: Vec<SignedChange> = (0..5).map(|i| signed(&key, &format!("s{i}"))).collect();
        batch[3].signature = signed(&other, "s3").signature;
        let results = verify_batch(batch, NOW);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_ok(), i != 3, "change {i}");
        }
    }
}
