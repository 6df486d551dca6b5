//! The change-envelope decoder and verification path on hostile input:
//! 1. arbitrary bytes as an encoded envelope, verified (must be refused, never panic);
//! 2. arbitrary bytes as the raw Automerge change of an envelope *properly signed by the
//!    document's owner* — so the layout and record checks behind the signature see fuzzed
//!    changes too — verified singly and in a batch: both must agree, and whatever passes must
//!    decode to record puts or deletes that the layout allows;
//! 3. the same raw change as a change to a federation's membership document signed by the
//!    same key: refused or accepted alike singly and in a batch, and what passes writes only
//!    votes in the signer's own name.
#![no_main]

use std::sync::OnceLock;

use hubcat_protocol::change;
use hubcat_protocol::{codec, DocId, HubKey, SignedChange};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static HubKey {
    static KEY: OnceLock<HubKey> = OnceLock::new();
    KEY.get_or_init(|| HubKey::from_secret_bytes(&[7; 32]).expect("key"))
}

/// libfuzzer-sys's panic hook aborts on every panic, even one caught: Automerge 0.12 panics on
/// some malformed changes, which `change::decode_change` catches and refuses (as the node
/// does). A silent hook lets that catch work; a panic nobody catches still reaches libFuzzer's
/// own wrapper, which aborts and reports it.
fn quiet_caught_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    let now = 1_800_000_000_000;
    if let Ok(envelope) = codec::decode::<SignedChange>(data, 1 << 20) {
        // Signed by nobody we know: never accepted.
        assert!(change::verify(envelope, now).is_err());
    }
    let Ok(raw) = change::decode_change(data) else {
        return;
    };
    let membership = DocId::Membership("fuzz-0123".into());
    let vote = change::sign(key(), &membership, &raw);
    let single = change::verify(vote.clone(), now);
    let batch = change::verify_batch(vec![vote], now);
    assert_eq!(single.is_ok(), batch[0].is_ok());
    if let Ok(v) = single {
        assert!(v.writes.is_empty(), "a membership change writes no record");
        let votes = hubcat_protocol::membership::check_change(&key().id(), &v.change)
            .expect("a verified membership change passes its layout check");
        assert!(votes.iter().all(|vote| vote.voter == key().id()));
    }
    let doc = DocId::Hub(key().id());
    let envelope = change::sign(key(), &doc, &raw);
    let single = change::verify(envelope.clone(), now);
    let batch = change::verify_batch(vec![envelope.clone()], now);
    assert_eq!(single.is_ok(), batch[0].is_ok());
    if single.is_ok() {
        // The signature covers the change: one flipped bit and it is refused.
        let mut tampered = envelope;
        if let Some(b) = tampered.change.last_mut() {
            *b ^= 1;
            assert!(change::verify(tampered, now).is_err());
        }
    }
});
