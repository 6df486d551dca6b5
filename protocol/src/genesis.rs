//! A federation's genesis: its name, founding hubs and quorum, signed by every founder.
//!
//! The genesis is what hubs agree on to form a federation (the EUHubs4Data model: hubs agree to
//! join a shared catalogue). Its **id** is a hash of its body — name, founders, quorum, created —
//! so it names one agreement and nothing else; the id names the federation's gossip topic and
//! protocols, so nodes of different federations never mix. The founders' signatures are over
//! that body: a genesis is valid only when every founder has signed it and every signature
//! verifies (`verify_strict`). Adding signatures does not change the id.
//!
//! File form (JSON), as `hubcat federation create` writes it and `sign-genesis` fills in:
//! ```json
//! {"format": "hubcat-genesis", "version": 1, "name": "health-hubs",
//!  "founders": ["did:key:z6Mk…", "did:key:z6Mk…"], "quorum": 2,
//!  "created": "2026-12-02T10:00:00Z", "signatures": {"did:key:z6Mk…": "<hex>"}}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{HubId, HubKey};

pub const GENESIS_FORMAT: &str = "hubcat-genesis";
pub const GENESIS_VERSION: u32 = 1;
/// Signatures are over this domain and the body, so they can mean nothing else.
const SIGNING_DOMAIN: &[u8] = b"hubcat/genesis/v1\0";
/// Most founders a genesis may name.
pub const MAX_FOUNDERS: usize = 64;
/// Longest federation name.
pub const MAX_NAME: usize = 48;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    #[error("genesis field `{field}`: {detail}")]
    Invalid { field: &'static str, detail: String },
    #[error("genesis is not signed by founder {0}")]
    Unsigned(String),
    #[error("genesis signature of {did} does not verify: {detail}")]
    BadSignature { did: String, detail: String },
    #[error("{0} is not a founder of this federation, so it cannot sign its genesis")]
    NotFounder(String),
}

fn invalid(field: &'static str, detail: impl Into<String>) -> GenesisError {
    GenesisError::Invalid {
        field,
        detail: detail.into(),
    }
}

/// What the founders sign (field order fixed: it is serialised for the signature and the id).
#[derive(Debug, Serialize)]
struct Body<'a> {
    format: &'a str,
    version: u32,
    name: &'a str,
    founders: &'a [String],
    quorum: u32,
    created: &'a str,
}

/// A federation's genesis, as stored in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub format: String,
    pub version: u32,
    /// Lowercase letters, digits and dashes, e.g. `health-hubs`.
    pub name: String,
    /// The founding hubs' dids, sorted, no repeats.
    pub founders: Vec<String>,
    /// Endorsements (or votes) from this many members admit (or suspend, reinstate) a hub.
    pub quorum: u32,
    /// RFC 3339 time of creation.
    pub created: String,
    /// Founder did → hex ed25519 signature over the body.
    #[serde(default)]
    pub signatures: BTreeMap<String, String>,
}

impl Genesis {
    /// A new, unsigned genesis. Founders are sorted and must be distinct.
    pub fn new(
        name: &str,
        founders: &[String],
        quorum: u32,
        created: &str,
    ) -> Result<Self, GenesisError> {
        let mut sorted: Vec<String> = founders.to_vec();
        sorted.sort();
        let g = Genesis {
            format: GENESIS_FORMAT.into(),
            version: GENESIS_VERSION,
            name: name.into(),
            founders: sorted,
            quorum,
            created: created.into(),
            signatures: BTreeMap::new(),
        };
        g.check_body()?;
        Ok(g)
    }

    /// Parse a genesis file (checks its shape, not its signatures: see [`Genesis::verify`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, GenesisError> {
        let g: Genesis = serde_json::from_slice(bytes)
            .map_err(|e| invalid("genesis", format!("not a genesis file: {e}")))?;
        g.check_body()?;
        Ok(g)
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and maps always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn check_body(&self) -> Result<(), GenesisError> {
        if self.format != GENESIS_FORMAT {
            return Err(invalid(
                "format",
                format!("`{}`, expected `{GENESIS_FORMAT}`", self.format),
            ));
        }
        if self.version != GENESIS_VERSION {
            return Err(invalid(
                "version",
                format!(
                    "{} is not supported (this node reads {GENESIS_VERSION})",
                    self.version
                ),
            ));
        }
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.name.starts_with('-');
        if !name_ok {
            return Err(invalid(
                "name",
                format!(
                    "`{}`: use 1–{MAX_NAME} lowercase letters, digits and dashes, e.g. health-hubs",
                    self.name
                ),
            ));
        }
        if self.founders.is_empty() || self.founders.len() > MAX_FOUNDERS {
            return Err(invalid(
                "founders",
                format!("{} founders: name 1–{MAX_FOUNDERS}", self.founders.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for did in &self.founders {
            HubId::from_did(did).map_err(|e| invalid("founders", format!("`{did}`: {e}")))?;
            if !seen.insert(did) {
                return Err(invalid("founders", format!("`{did}` is named twice")));
            }
        }
        if !self.founders.windows(2).all(|w| w[0] < w[1]) {
            return Err(invalid("founders", "must be sorted"));
        }
        if self.quorum == 0 || self.quorum as usize > self.founders.len() {
            return Err(invalid(
                "quorum",
                format!(
                    "{}: must be between 1 and the number of founders ({})",
                    self.quorum,
                    self.founders.len()
                ),
            ));
        }
        crate::record::parse_timestamp(&self.created)
            .map_err(|e| invalid("created", format!("`{}`: {e}", self.created)))?;
        Ok(())
    }

    fn body(&self) -> Vec<u8> {
        let body = Body {
            format: &self.format,
            version: self.version,
            name: &self.name,
            founders: &self.founders,
            quorum: self.quorum,
            created: &self.created,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn message(&self) -> Vec<u8> {
        let mut m = SIGNING_DOMAIN.to_vec();
        m.extend_from_slice(&self.body());
        m
    }

    /// The federation id: `<name>-<first 16 bytes of SHA-256 of the body, hex>`. The name
    /// makes it readable; the hash makes it this agreement's alone.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.body());
        format!("{}-{}", self.name, hex::encode(&digest[..16]))
    }

    /// Add `key`'s signature (its hub must be a founder). Signing again replaces its own.
    pub fn sign(&mut self, key: &HubKey) -> Result<(), GenesisError> {
        self.check_body()?;
        let did = key.id().to_did();
        if !self.founders.contains(&did) {
            return Err(GenesisError::NotFounder(did));
        }
        let signature = key.sign(&self.message());
        self.signatures
            .insert(did, hex::encode(signature.to_bytes()));
        Ok(())
    }

    /// Founders that have not signed yet.
    pub fn missing_signatures(&self) -> Vec<&str> {
        self.founders
            .iter()
            .filter(|d| !self.signatures.contains_key(*d))
            .map(String::as_str)
            .collect()
    }

    /// Check the shape and every founder's signature; only signatures by founders are allowed.
    /// Returns the federation id.
    pub fn verify(&self) -> Result<String, GenesisError> {
        self.check_body()?;
        if let Some(extra) = self.signatures.keys().find(|d| !self.founders.contains(d)) {
            return Err(GenesisError::NotFounder(extra.clone()));
        }
        let message = self.message();
        for did in &self.founders {
            let sig_hex = self
                .signatures
                .get(did)
                .ok_or_else(|| GenesisError::Unsigned(did.clone()))?;
            let bad = |detail: &str| GenesisError::BadSignature {
                did: did.clone(),
                detail: detail.into(),
            };
            let bytes = hex::decode(sig_hex).map_err(|_| bad("not hex"))?;
            let bytes: [u8; 64] = bytes.try_into().map_err(|_| bad("not 64 bytes"))?;
            let signature = ed25519_dalek::Signature::from_bytes(&bytes);
            let id = HubId::from_did(did).map_err(|e| bad(&e.to_string()))?;
            if !id.verify(&message, &signature) {
                return Err(bad("wrong signature for this genesis"));
            }
        }
        Ok(self.id())
    }

    /// The founders as hub ids (valid once [`Genesis::verify`] passed).
    pub fn founder_ids(&self) -> Vec<HubId> {
        self.founders
            .iter()
            .filter_map(|d| HubId::from_did(d).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> HubKey {
        HubKey::from_secret_bytes(&[n; 32]).expect("key")
    }

    fn three() -> (Vec<HubKey>, Genesis) {
        let keys: Vec<HubKey> = (1..=3).map(key).collect();
        let dids: Vec<String> = keys.iter().map(|k| k.id().to_did()).collect();
        let g = Genesis::new("health-hubs", &dids, 2, "2026-12-02T10:00:00Z").expect("genesis");
        (keys, g)
    }

    #[test]
    fn a_genesis_is_valid_only_with_every_founder_signature() {
        let (keys, mut g) = three();
        let id = g.id();
        assert!(id.starts_with("health-hubs-"));
        assert!(matches!(g.verify(), Err(GenesisError::Unsigned(_))));
        g.sign(&keys[0]).expect("sign");
        g.sign(&keys[1]).expect("sign");
        assert_eq!(g.missing_signatures(), vec![keys[2].id().to_did()]);
        assert!(g.verify().is_err());
        g.sign(&keys[2]).expect("sign");
        assert_eq!(
            g.verify().expect("valid"),
            id,
            "signatures do not change the id"
        );
        // Through the file form and back.
        let again = Genesis::from_json(g.to_json().as_bytes()).expect("parses");
        assert_eq!(again.verify().expect("valid"), id);
    }

    #[test]
    fn outsiders_tampering_and_bad_fields_are_refused() {
        let (keys, mut g) = three();
        for k in &keys {
            g.sign(k).expect("sign");
        }
        // A hub that is not a founder cannot sign.
        assert!(matches!(
            g.clone().sign(&key(9)),
            Err(GenesisError::NotFounder(_))
        ));
        // A changed quorum (or any field) invalidates every signature and changes the id.
        let mut tampered = g.clone();
        tampered.quorum = 1;
        assert!(matches!(
            tampered.verify(),
            Err(GenesisError::BadSignature { .. })
        ));
        assert_ne!(tampered.id(), g.id());
        // A signature copied onto another founder's entry does not verify.
        let mut swapped = g.clone();
        let first = swapped.signatures[&swapped.founders[0]].clone();
        let second = swapped.founders[1].clone();
        swapped.signatures.insert(second, first);
        assert!(matches!(
            swapped.verify(),
            Err(GenesisError::BadSignature { .. })
        ));
        // An extra signature by an outsider is refused.
        let mut extra = g.clone();
        extra
            .signatures
            .insert(key(9).id().to_did(), "00".repeat(64));
        assert!(matches!(extra.verify(), Err(GenesisError::NotFounder(_))));
        // Bad fields name themselves.
        let dids: Vec<String> = keys.iter().map(|k| k.id().to_did()).collect();
        let field = |r: Result<Genesis, GenesisError>| match r {
            Err(GenesisError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
        assert_eq!(
            field(Genesis::new(
                "Health Hubs",
                &dids,
                2,
                "2026-12-02T10:00:00Z"
            )),
            "name"
        );
        assert_eq!(
            field(Genesis::new("h", &dids, 4, "2026-12-02T10:00:00Z")),
            "quorum"
        );
        assert_eq!(
            field(Genesis::new("h", &dids, 0, "2026-12-02T10:00:00Z")),
            "quorum"
        );
        assert_eq!(
            field(Genesis::new("h", &[], 1, "2026-12-02T10:00:00Z")),
            "founders"
        );
        let twice = vec![dids[0].clone(), dids[0].clone()];
        assert_eq!(
            field(Genesis::new("h", &twice, 1, "2026-12-02T10:00:00Z")),
            "founders"
        );
        assert_eq!(
            field(Genesis::new(
                "h",
                &["did:key:nope".into()],
                1,
                "2026-12-02T10:00:00Z"
            )),
            "founders"
        );
        assert_eq!(field(Genesis::new("h", &dids, 1, "yesterday")), "created");
        assert!(Genesis::from_json(b"{\"format\": 1}").is_err());
    }
}
