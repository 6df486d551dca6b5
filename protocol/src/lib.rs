//! hubcat-protocol: everything two hubcat nodes must agree on, with no I/O.
//!
//! - [`record`]: the record layout users write (profile, service, practice) and its validation;
//!   [`vocab`] and [`tables`] hold the closed lists it validates against.
//! - [`identity`]: hub key pairs and their `did:key` names.
//! - [`layout`]: the shape of a hub's Automerge document and the check every change must pass.
//! - [`change`]: signed change envelopes, signing, verification and the write rule.
//! - [`codec`]: the versioned binary encoding for stored and wire values.
//! - [`bundle`]: the offline-verifiable export of records with their signed history.
//! - [`sync`]: gossip and anti-entropy messages, and the range reconciliation of documents.
//! - [`genesis`]: a federation's founding agreement, signed by every founder; its hash names
//!   the federation.
//!
//! The node crate drives these with sockets, tasks and storage; nothing here blocks or
//! touches the network, so every rule can be tested (and fuzzed) as a pure function.

pub mod bundle;
pub mod change;
pub mod codec;
pub mod genesis;
pub mod identity;
pub mod layout;
pub mod membership;
pub mod record;
pub mod sync;
pub mod tables;
pub mod vocab;

pub use change::{DocId, SignedChange, VerifiedChange};
pub use identity::{HubDid, HubId, HubKey};
pub use layout::{CatalogueDoc, RecordId, Slot};
pub use record::{Record, RecordError, RecordKind};

/// The current time in unix milliseconds (the one clock read the protocol's callers share).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
