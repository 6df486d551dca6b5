//! Hub identities: an ed25519 key pair per hub, named by its W3C `did:key`.
//!
//! `HubKey` holds the secret: its `Debug` is redacted and it is zeroized on drop (ed25519-dalek's
//! `zeroize` feature). `HubId` is the public half; it prints as `did:key:z6Mk…`, and its
//! `short()` form is what logs show.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Multicodec prefix of an ed25519 public key (`ed25519-pub`, 0xed as a varint).
const ED25519_PUB_MULTICODEC: [u8; 2] = [0xed, 0x01];
const DID_KEY_PREFIX: &str = "did:key:z";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("`{0}` is not a did:key (expected did:key:z6Mk…)")]
    NotDidKey(String),
    #[error("`{0}` is not a did:key for an ed25519 key")]
    NotEd25519(String),
    #[error("`{0}` does not hold a valid ed25519 public key")]
    BadKey(String),
    #[error("a secret key must be 32 bytes, got {0}")]
    SecretLength(usize),
    #[error("the system random source failed: {0}")]
    Random(String),
}

/// A hub's signing key. Never printed; zeroized when dropped.
pub struct HubKey {
    secret: SigningKey,
}

impl std::fmt::Debug for HubKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HubKey({}, secret redacted)", self.id().short())
    }
}

impl HubKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(HubKey {
            secret: SigningKey::from_bytes(&seed),
        })
    }

    /// A key from its 32 secret bytes (for loading the key file, and deterministic tests).
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| IdentityError::SecretLength(bytes.len()))?;
        let seed = zeroize::Zeroizing::new(seed);
        Ok(HubKey {
            secret: SigningKey::from_bytes(&seed),
        })
    }

    /// The secret bytes, for writing the key file. Wrapped so they are wiped after use.
    pub fn secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.secret.to_bytes())
    }

    pub fn id(&self) -> HubId {
        HubId(self.secret.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.secret.sign(message)
    }
}

/// A hub's public identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HubId(VerifyingKey);

impl PartialOrd for HubId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HubId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_bytes().cmp(other.0.as_bytes())
    }
}

impl HubId {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        VerifyingKey::from_bytes(bytes)
            .map(HubId)
            .map_err(|_| IdentityError::BadKey(hex::encode(bytes)))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// The `did:key` form: multicodec ed25519-pub + key, base58btc, `z` multibase prefix.
    pub fn to_did(&self) -> String {
        let mut buf = Vec::with_capacity(34);
        buf.extend_from_slice(&ED25519_PUB_MULTICODEC);
        buf.extend_from_slice(self.0.as_bytes());
        format!("{DID_KEY_PREFIX}{}", bs58::encode(buf).into_string())
    }

    /// The method-specific part of the did (`z6Mk…`), used in record ids.
    pub fn to_multibase(&self) -> String {
        self.to_did()[DID_KEY_PREFIX.len() - 1..].to_owned()
    }

    pub fn from_did(did: &str) -> Result<Self, IdentityError> {
        let encoded = did
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or_else(|| IdentityError::NotDidKey(did.to_owned()))?;
        Self::from_base58(encoded, did)
    }

    /// Parse the `z6Mk…` multibase form (as in record ids).
    pub fn from_multibase(s: &str) -> Result<Self, IdentityError> {
        let encoded = s
            .strip_prefix('z')
            .ok_or_else(|| IdentityError::NotDidKey(s.to_owned()))?;
        Self::from_base58(encoded, s)
    }

    fn from_base58(encoded: &str, shown: &str) -> Result<Self, IdentityError> {
        if encoded.len() > 64 {
            return Err(IdentityError::NotDidKey(shown.chars().take(80).collect()));
        }
        let bytes = bs58::decode(encoded)
            .into_vec()
            .map_err(|_| IdentityError::NotDidKey(shown.to_owned()))?;
        let key = bytes
            .strip_prefix(&ED25519_PUB_MULTICODEC)
            .ok_or_else(|| IdentityError::NotEd25519(shown.to_owned()))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| IdentityError::BadKey(shown.to_owned()))?;
        Self::from_bytes(&key)
    }

    /// A short form for logs and tables: `z6Mk` + 8 characters.
    pub fn short(&self) -> String {
        let mb = self.to_multibase();
        mb.chars().take(12).collect()
    }

    /// Strict verification: refuses small-order keys and malleable signatures.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.0.verify_strict(message, signature).is_ok()
    }
}

/// A hub id together with its `did:key` string, encoded once: base58 costs about a
/// microsecond, and the receive path needs the did for every change it checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubDid {
    id: HubId,
    did: String,
}

impl HubDid {
    pub fn new(id: HubId) -> Self {
        HubDid {
            did: id.to_did(),
            id,
        }
    }

    pub fn id(&self) -> &HubId {
        &self.id
    }

    /// `did:key:z6Mk…`, as [`HubId::to_did`].
    pub fn did(&self) -> &str {
        &self.did
    }

    /// `z6Mk…`, as [`HubId::to_multibase`].
    pub fn multibase(&self) -> &str {
        &self.did[DID_KEY_PREFIX.len() - 1..]
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_did())
    }
}

impl std::fmt::Debug for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HubId({})", self.short())
    }
}

impl std::str::FromStr for HubId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HubId::from_did(s)
    }
}

impl serde::Serialize for HubId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_did())
    }
}

impl<'de> serde::Deserialize<'de> for HubId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HubId::from_did(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_key_matches_the_w3c_test_vector() {
        // did:key spec test vector for ed25519 (public key from the spec's example).
        let did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let id = HubId::from_did(did).expect("valid did");
        assert_eq!(id.to_did(), did);
        assert_eq!(id.to_multibase(), &did[8..]);
        assert_eq!(HubId::from_multibase(&id.to_multibase()).expect("mb"), id);
    }

    #[test]
    fn hub_did_strings_match_the_id() {
        let id = HubKey::from_secret_bytes(&[5u8; 32]).expect("key").id();
        let named = HubDid::new(id);
        assert_eq!(named.did(), id.to_did());
        assert_eq!(named.multibase(), id.to_multibase());
        assert_eq!(named.id(), &id);
    }

    #[test]
    fn bad_dids_are_refused() {
        assert!(HubId::from_did("did:web:example.org").is_err());
        assert!(HubId::from_did("did:key:z6Mk").is_err());
        assert!(
            HubId::from_did("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme").is_err()
        );
    }

    #[test]
    fn sign_and_verify_and_debug_redacts() {
        let key = HubKey::from_secret_bytes(&[7u8; 32]).expect("key");
        let sig = key.sign(b"hello");
        assert!(key.id().verify(b"hello", &sig));
        assert!(!key.id().verify(b"hellO", &sig));
        let dbg = format!("{key:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&hex::encode([7u8; 32])));
    }
}
