//! What nodes say to each other, and the pure logic of anti-entropy.
//!
//! **Gossip** carries [`Gossip::Announce`]: a document's new heads and, when small, the signed
//! changes themselves, so a new record reaches every node in one wave. Gossip is lossy;
//! anti-entropy is what guarantees convergence.
//!
//! **Anti-entropy** reconciles the set of (document, heads) pairs the way range-based set
//! reconciliation does. Each document has a 64-bit key (the first 8 bytes of SHA-256 over its
//! id) and a 64-bit heads fingerprint. The key space is cut into ranges by nibbles of the key:
//!
//! 1. the client sends the fingerprints of the 16 top-level ranges ([`DocSet::summary`]); two
//!    nodes in sync stop here, whatever the catalogue's size;
//! 2. the server answers each range that differs with its items there (key + heads
//!    fingerprint) when the range is small, or with the fingerprints of its 16 sub-ranges
//!    ([`DocSet::answer`]); the client recurses into sub-ranges that differ
//!    ([`DocSet::compare`]);
//! 3. for each document that differs the client asks for the changes it lacks, sending its
//!    heads and its clock ([`SyncRequest::Exchange`]); the server answers with its heads and
//!    those changes: the changes after the client's heads when it knows them all, else the
//!    changes after the client's clock (see [`Want`]);
//! 4. the client pushes the changes the server lacks ([`SyncRequest::Push`]).
//!
//! One differing record among thousands of documents costs a few hashes plus the record's
//! change, in two or three round trips. Every change received either way goes through the
//! node's verification path before it is stored or applied.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::change::{DocId, SignedChange};
use crate::codec::{self, CodecError};

/// Fan-out of the range tree: one nibble of the document key per level.
pub const FANOUT: usize = 16;
/// Deepest range path (16 nibbles = the whole 64-bit key).
pub const MAX_DEPTH: usize = 16;
/// A range with at most this many documents is answered with its items, not split.
pub const ITEMS_PER_RANGE: usize = 64;

pub type Hash = [u8; 32];

/// A signed change inside a message that names its document once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireChange {
    pub author: [u8; 32],
    pub signature: Vec<u8>,
    pub change: Vec<u8>,
}

impl WireChange {
    pub fn of(envelope: &SignedChange) -> Self {
        WireChange {
            author: envelope.author,
            signature: envelope.signature.clone(),
            change: envelope.change.clone(),
        }
    }

    pub fn into_envelope(self, doc: DocId) -> SignedChange {
        SignedChange {
            doc,
            author: self.author,
            signature: self.signature,
            change: self.change,
        }
    }

    /// Bytes that must move whatever the framing: the change and its signature.
    pub fn payload_len(&self) -> usize {
        self.change.len() + self.signature.len()
    }
}

/// Turn a document's changes on the wire back into envelopes for verification.
pub fn envelopes(doc: &DocId, changes: Vec<WireChange>) -> Vec<SignedChange> {
    changes
        .into_iter()
        .map(|c| c.into_envelope(doc.clone()))
        .collect()
}

/// A gossip message on the federation's topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    /// A document has new heads; `changes` holds the new signed changes when they are small,
    /// and is empty otherwise (a receiver that lacks the heads then syncs with the sender).
    Announce {
        doc: DocId,
        heads: Vec<Hash>,
        changes: Vec<WireChange>,
    },
}

/// The fingerprint of one range of the document key space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeFingerprint {
    /// Nibbles of the key prefix naming the range (empty = everything).
    pub path: Vec<u8>,
    pub count: u32,
    pub fingerprint: [u8; 8],
}

/// One document in a range: its key and heads fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSummary {
    pub key: u64,
    pub heads: [u8; 8],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeReply {
    /// Every document the responder has in the range.
    Items {
        path: Vec<u8>,
        items: Vec<ItemSummary>,
    },
    /// The range is large: the responder's fingerprints of its sub-ranges.
    Split {
        path: Vec<u8>,
        children: Vec<RangeFingerprint>,
    },
}

/// A document the client wants to catch up on, named by key, with the heads it has.
///
/// `clock` is the client's highest sequence number per actor. An Automerge change depends on
/// its actor's previous change, so a document's history is exactly the changes at or below
/// its clock: when the client holds changes the server does not know (its heads are then
/// unknown to the server), the server still finds exactly what the client lacks — every
/// change above the clock — instead of sending the whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    pub key: u64,
    pub heads: Vec<Hash>,
    pub clock: Vec<ActorSeq>,
}

/// One actor's highest sequence number in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorSeq {
    pub actor: Vec<u8>,
    pub seq: u64,
}

/// The server's state of one document and the changes the client lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocReply {
    pub doc: DocId,
    pub heads: Vec<Hash>,
    pub changes: Vec<WireChange>,
}

/// A document's changes pushed to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocChanges {
    pub doc: DocId,
    pub changes: Vec<WireChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// Compare these ranges. `name` is the sender's hub name, shown to operators; sent once
    /// per connection.
    Reconcile {
        name: Option<String>,
        ranges: Vec<RangeFingerprint>,
    },
    /// Send the changes I lack in these documents.
    Exchange { wants: Vec<Want> },
    /// Changes you lack.
    Push { docs: Vec<DocChanges> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Ranges that differ (none: in sync). `name` is the responder's hub name, sent once per
    /// connection.
    Reconcile {
        name: Option<String>,
        replies: Vec<RangeReply>,
    },
    /// `more`: the byte limit was reached; ask again with the new heads for the rest.
    Exchange { docs: Vec<DocReply>, more: bool },
    /// What the responder did with pushed changes.
    Pushed {
        accepted: u32,
        duplicates: u32,
        refused: u32,
    },
    /// The request was refused (malformed, too large, over a limit), with the reason.
    Refused { reason: String },
}

/// Encode a wire message (version byte + postcard).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    codec::encode(message)
}

/// Decode a wire message, refusing more than `limit` bytes.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    codec::decode(bytes, limit)
}

/// A document's 64-bit reconciliation key.
pub fn doc_key(doc: &DocId) -> u64 {
    let digest = Sha256::digest(doc.to_string().as_bytes());
    let mut k = [0u8; 8];
    k.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(k)
}

/// A fingerprint of a document's heads (order-independent).
pub fn heads_fingerprint(heads: &[ChangeHash]) -> [u8; 8] {
    let mut sorted: Vec<&ChangeHash> = heads.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for head in sorted {
        h.update(head.0);
    }
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize()[..8]);
    out
}

#[derive(Debug, Clone)]
struct Entry {
    doc: DocId,
    heads: Vec<ChangeHash>,
    fingerprint: [u8; 8],
}

/// The set of (document, heads) pairs a node holds, ordered by document key.
#[derive(Debug, Clone, Default)]
pub struct DocSet {
    items: BTreeMap<u64, Entry>,
}

/// What the client learned from a round of range replies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Sub-ranges that still differ: send them in the next `Reconcile`.
    pub next: Vec<RangeFingerprint>,
    /// Documents the peer has in another state or that we lack: ask for them (`Exchange`).
    pub wants: Vec<Want>,
    /// Documents the peer does not have at all: push them whole.
    pub peer_lacks: Vec<DocId>,
}

impl Comparison {
    pub fn is_done(&self) -> bool {
        self.next.is_empty() && self.wants.is_empty() && self.peer_lacks.is_empty()
    }
}

/// The key range `[lo, hi]` a nibble path names.
fn bounds(path: &[u8]) -> Option<(u64, u64)> {
    if path.len() > MAX_DEPTH || path.iter().any(|n| *n as usize >= FANOUT) {
        return None;
    }
    let mut lo: u64 = 0;
    for (i, n) in path.iter().enumerate() {
        lo |= (*n as u64) << (60 - 4 * i);
    }
    let free_bits = 64 - 4 * path.len() as u32;
    let hi = if free_bits == 64 {
        u64::MAX
    } else {
        lo | ((1u64 << free_bits) - 1)
    };
    Some((lo, hi))
}

fn to_hashes(heads: &[ChangeHash]) -> Vec<Hash> {
    heads.iter().map(|h| h.0).collect()
}

impl DocSet {
    pub fn new(docs: impl IntoIterator<Item = (DocId, Vec<ChangeHash>)>) -> Self {
        let items = docs
            .into_iter()
            .filter(|(_, heads)| !heads.is_empty())
            .map(|(doc, heads)| {
                (
                    doc_key(&doc),
                    Entry {
                        fingerprint: heads_fingerprint(&heads),
                        doc,
                        heads,
                    },
                )
            })
            .collect();
        DocSet { items }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The document with this key, and its heads.
    pub fn get(&self, key: u64) -> Option<(&DocId, &[ChangeHash])> {
        self.items.get(&key).map(|e| (&e.doc, e.heads.as_slice()))
    }

    fn range(&self, path: &[u8]) -> impl Iterator<Item = (&u64, &Entry)> {
        let (lo, hi) = bounds(path).unwrap_or((1, 0));
        let inner = if lo <= hi {
            Some(self.items.range(lo..=hi))
        } else {
            None
        };
        inner.into_iter().flatten()
    }

    /// The fingerprint of the range `path` names (an invalid path is an empty range).
    pub fn fingerprint(&self, path: &[u8]) -> RangeFingerprint {
        let mut h = Sha256::new();
        let mut count = 0u32;
        for (key, e) in self.range(path) {
            h.update(key.to_be_bytes());
            h.update(e.fingerprint);
            count += 1;
        }
        let mut fingerprint = [0u8; 8];
        if count > 0 {
            fingerprint.copy_from_slice(&h.finalize()[..8]);
        }
        RangeFingerprint {
            path: path.to_vec(),
            count,
            fingerprint,
        }
    }

    fn children(&self, path: &[u8]) -> Vec<RangeFingerprint> {
        (0..FANOUT as u8)
            .map(|n| {
                let mut p = path.to_vec();
                p.push(n);
                self.fingerprint(&p)
            })
            .collect()
    }

    /// The opening message of a round: the 16 top-level ranges.
    pub fn summary(&self) -> Vec<RangeFingerprint> {
        self.children(&[])
    }

    /// Server side: answer every range whose fingerprint differs from ours. Malformed paths
    /// are answered as empty ranges. `limit` caps the ranges answered (the rest are dropped;
    /// the client asks again next round).
    pub fn answer(&self, ranges: &[RangeFingerprint], limit: usize) -> Vec<RangeReply> {
        let mut replies = Vec::new();
        for theirs in ranges.iter().take(limit) {
            if bounds(&theirs.path).is_none() {
                continue;
            }
            let mine = self.fingerprint(&theirs.path);
            if mine.count == theirs.count && mine.fingerprint == theirs.fingerprint {
                continue;
            }
            if mine.count as usize <= ITEMS_PER_RANGE || theirs.path.len() >= MAX_DEPTH {
                replies.push(RangeReply::Items {
                    path: theirs.path.clone(),
                    items: self
                        .range(&theirs.path)
                        .map(|(key, e)| ItemSummary {
                            key: *key,
                            heads: e.fingerprint,
                        })
                        .collect(),
                });
            } else {
                replies.push(RangeReply::Split {
                    path: theirs.path.clone(),
                    children: self.children(&theirs.path),
                });
            }
        }
        replies
    }

    /// Client side: what the server's replies mean for us.
    pub fn compare(&self, replies: &[RangeReply]) -> Comparison {
        let mut out = Comparison::default();
        for reply in replies {
            match reply {
                RangeReply::Split { path, children } => {
                    if path.len() >= MAX_DEPTH {
                        continue;
                    }
                    for theirs in children {
                        // Only direct children of the range asked about.
                        if theirs.path.len() != path.len() + 1 || !theirs.path.starts_with(path) {
                            continue;
                        }
                        let mine = self.fingerprint(&theirs.path);
                        if mine.count != theirs.count || mine.fingerprint != theirs.fingerprint {
                            out.next.push(mine);
                        }
                    }
                }
                RangeReply::Items { path, items } => {
                    let Some((lo, hi)) = bounds(path) else {
                        continue;
                    };
                    let theirs: BTreeMap<u64, [u8; 8]> = items
                        .iter()
                        .filter(|i| i.key >= lo && i.key <= hi)
                        .map(|i| (i.key, i.heads))
                        .collect();
                    for (key, heads) in &theirs {
                        match self.items.get(key) {
                            Some(e) if e.fingerprint == *heads => {}
                            Some(e) => out.wants.push(Want {
                                key: *key,
                                heads: to_hashes(&e.heads),
                                clock: Vec::new(),
                            }),
                            None => out.wants.push(Want {
                                key: *key,
                                heads: Vec::new(),
                                clock: Vec::new(),
                            }),
                        }
                    }
                    for (key, e) in self.range(path) {
                        if !theirs.contains_key(key) {
                            out.peer_lacks.push(e.doc.clone());
                        }
                    }
                }
            }
        }
        out
    }
}

/// Heads from the wire into Automerge's type.
pub fn change_hashes(heads: &[Hash]) -> Vec<ChangeHash> {
    heads.iter().map(|h| ChangeHash(*h)).collect()
}

/// Heads from Automerge's type onto the wire.
pub fn wire_hashes(heads: &[ChangeHash]) -> Vec<Hash> {
    to_hashes(heads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::HubKey;

    fn doc(i: u8) -> DocId {
        let mut secret = [0u8; 32];
        secret[0] = i;
        secret[1] = 1;
        DocId::Hub(HubKey::from_secret_bytes(&secret).expect("key").id())
    }

    fn heads(n: u8) -> Vec<ChangeHash> {
        vec![ChangeHash([n; 32])]
    }

    fn set(docs: &[(u8, u8)]) -> DocSet {
        DocSet::new(docs.iter().map(|(d, h)| (doc(*d), heads(*h))))
    }

    /// Run the reconciliation between two sets as the node does; returns (round trips,
    /// wants, peer_lacks).
    fn reconcile(client: &DocSet, server: &DocSet) -> (usize, Vec<Want>, Vec<DocId>) {
        let mut ranges = client.summary();
        let mut wants = Vec::new();
        let mut lacks = Vec::new();
        let mut rounds = 0;
        while !ranges.is_empty() {
            rounds += 1;
            assert!(rounds <= MAX_DEPTH + 1, "reconciliation does not terminate");
            let replies = server.answer(&ranges, usize::MAX);
            let cmp = client.compare(&replies);
            wants.extend(cmp.wants);
            lacks.extend(cmp.peer_lacks);
            ranges = cmp.next;
        }
        (rounds, wants, lacks)
    }

    #[test]
    fn equal_sets_need_one_small_round() {
        let docs: Vec<(u8, u8)> = (0..200).map(|i| (i, i)).collect();
        let a = set(&docs);
        let b = set(&docs);
        let replies = b.answer(&a.summary(), usize::MAX);
        assert!(replies.is_empty());
        // A round after the first on a connection: no names.
        let request = encode(&SyncRequest::Reconcile {
            name: None,
            ranges: a.summary(),
        });
        let response = encode(&SyncResponse::Reconcile {
            name: None,
            replies,
        });
        assert!(
            request.len() + response.len() <= 300,
            "{} + {} bytes",
            request.len(),
            response.len()
        );
    }

    #[test]
    fn one_differing_document_is_found_among_many() {
        let mut docs: Vec<(u8, u8)> = (0..250).map(|i| (i, 1)).collect();
        let a = set(&docs);
        docs[17].1 = 2;
        let b = set(&docs);
        let (rounds, wants, lacks) = reconcile(&a, &b);
        assert_eq!(rounds, 1);
        assert_eq!(wants.len(), 1);
        assert_eq!(a.get(wants[0].key).map(|(d, _)| d.clone()), Some(doc(17)));
        assert_eq!(wants[0].heads, vec![[1u8; 32]]);
        assert!(lacks.is_empty());
    }

    #[test]
    fn missing_documents_are_found_on_both_sides() {
        let a = set(&[(1, 1), (2, 1), (3, 1)]);
        let b = set(&[(2, 1), (3, 1), (4, 1)]);
        let (_, wants, lacks) = reconcile(&a, &b);
        assert_eq!(lacks, vec![doc(1)]);
        assert_eq!(wants.len(), 1);
        assert_eq!(wants[0].key, doc_key(&doc(4)));
        assert!(wants[0].heads.is_empty());
    }

    #[test]
    fn large_ranges_split_and_recurse() {
        let docs: Vec<(u8, u8)> = (0..=255).map(|i| (i, 1)).collect();
        // 256 docs over 16 ranges is about 16 per range: force splitting with a big set.
        let many: Vec<(DocId, Vec<ChangeHash>)> = (0..3000u32)
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..4].copy_from_slice(&i.to_be_bytes());
                secret[4] = 9;
                (
                    DocId::Hub(HubKey::from_secret_bytes(&secret).expect("key").id()),
                    heads(1),
                )
            })
            .collect();
        let a = DocSet::new(many.clone());
        let mut changed = many.clone();
        changed[1234].1 = heads(2);
        let b = DocSet::new(changed);
        let (rounds, wants, lacks) = reconcile(&a, &b);
        assert!(rounds >= 2, "3000 docs must split at least once");
        assert_eq!(wants.len(), 1);
        assert_eq!(
            a.get(wants[0].key).map(|(d, _)| d.clone()),
            Some(many[1234].0.clone())
        );
        assert!(lacks.is_empty());
        assert!(set(&docs).answer(&set(&docs).summary(), 16).is_empty());
    }

    #[test]
    fn malformed_paths_are_ignored() {
        let a = set(&[(1, 1)]);
        let bogus = RangeFingerprint {
            path: vec![99],
            count: 0,
            fingerprint: [0; 8],
        };
        assert!(a.answer(std::slice::from_ref(&bogus), 10).is_empty());
        let deep = RangeFingerprint {
            path: vec![0; 40],
            count: 0,
            fingerprint: [0; 8],
        };
        assert!(a.answer(&[deep], 10).is_empty());
        let cmp = a.compare(&[RangeReply::Items {
            path: vec![99],
            items: vec![],
        }]);
        assert!(cmp.is_done());
    }

    #[test]
    fn messages_round_trip_through_the_codec() {
        let m = Gossip::Announce {
            doc: doc(1),
            heads: vec![[3; 32]],
            changes: vec![WireChange {
                author: [1; 32],
                signature: vec![2; 64],
                change: vec![4; 100],
            }],
        };
        let bytes = encode(&m);
        assert_eq!(decode::<Gossip>(&bytes, 1 << 20).expect("decodes"), m);
        assert!(decode::<Gossip>(&bytes, 10).is_err());
        assert!(decode::<SyncRequest>(&[1, 200, 3], 1 << 20).is_err());
    }
}
