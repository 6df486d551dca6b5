//! Every wire message type decodes arbitrary bytes without panicking, within its size limit,
//! and whatever decodes re-encodes to bytes that decode to the same value.
#![no_main]

use hubcat_protocol::sync::{decode, encode, Gossip, SyncRequest, SyncResponse};
use hubcat_protocol::SignedChange;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

fn round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decode::<T>(data, LIMIT) {
        let again = encode(&value);
        let back: T = decode(&again, LIMIT).expect("re-encoded message decodes");
        assert_eq!(back, value);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Gossip>(data);
    round_trip::<SyncRequest>(data);
    round_trip::<SyncResponse>(data);
    round_trip::<SignedChange>(data);
    // A limit below the input's length is always refused.
    if data.len() > 1 {
        assert!(decode::<SyncRequest>(data, data.len() - 1).is_err());
    }
});
