//! The versioned binary codec for everything hubcat stores or sends.
//!
//! An encoded value is one version byte followed by the value in postcard (a compact,
//! stable serde format). A reader refuses versions it does not know, trailing bytes, and
//! inputs over the caller's size limit, so a decoder never allocates more than it was given.
//! When a layout changes, bump [`VERSION`] and keep a decoder for the old one here.

use serde::{de::DeserializeOwned, Serialize};

/// The encoding version written today.
pub const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty input")]
    Empty,
    #[error("unknown encoding version {0} (this node reads version {VERSION})")]
    UnknownVersion(u8),
    #[error("input is {len} bytes, over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed input: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// Encode a value with the current version byte.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_sized(value, 0)
}

/// [`encode`] into a buffer made for about `size_hint` bytes (no regrowth for a value of
/// known size, such as a group of changes).
pub fn encode_sized<T: Serialize>(value: &T, size_hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + size_hint);
    out.push(VERSION);
    // postcard only fails on types it cannot represent (none of ours) or a full buffer.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(_) => vec![VERSION],
    }
}

/// Decode a value, refusing inputs over `limit` bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{DocId, SignedChange};
    use crate::identity::HubKey;
    use proptest::prelude::*;

    fn envelope(change: Vec<u8>) -> SignedChange {
        let key = HubKey::from_secret_bytes(&[9; 32]).expect("key");
        SignedChange {
            doc: DocId::Hub(key.id()),
            author: *key.id().as_bytes(),
            signature: vec![1; 64],
            change,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let env = envelope(vec![1, 2, 3]);
        let bytes = encode(&env);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(
            decode::<SignedChange>(&bytes, 1 << 20).expect("decodes"),
            env
        );

        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(
            decode::<SignedChange>(&v2, 1 << 20),
            Err(CodecError::UnknownVersion(2))
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            decode::<SignedChange>(&trailing, 1 << 20),
            Err(CodecError::Trailing(1))
        );
        assert!(matches!(
            decode::<SignedChange>(&bytes, 10),
            Err(CodecError::TooLarge { .. })
        ));
        assert_eq!(decode::<SignedChange>(&[], 10), Err(CodecError::Empty));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<SignedChange>(&bytes, 1 << 20);
        }

        #[test]
        fn any_envelope_round_trips(change in proptest::collection::vec(any::<u8>(), 0..256)) {
            let env = envelope(change);
            prop_assert_eq!(decode::<SignedChange>(&encode(&env), 1 << 20).expect("decodes"), env);
        }
    }
}
