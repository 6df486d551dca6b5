//! The sync message handler's pure core on hostile requests: any request bytes are decoded
//! under the size limit, and a reconcile request is answered from a fixed set of documents
//! and the answer compared back, without panicking and within the reply limit.
#![no_main]

use std::sync::OnceLock;

use automerge::ChangeHash;
use hubcat_protocol::sync::{decode, DocSet, SyncRequest};
use hubcat_protocol::{DocId, HubKey};
use libfuzzer_sys::fuzz_target;

/// Most ranges answered per request (as the node caps them).
const MAX_RANGES: usize = 4096;

fn docs() -> &'static DocSet {
    static SET: OnceLock<DocSet> = OnceLock::new();
    SET.get_or_init(|| {
        DocSet::new((0..300u32).map(|i| {
            let mut secret = [1u8; 32];
            secret[..4].copy_from_slice(&i.to_be_bytes());
            let id = HubKey::from_secret_bytes(&secret).expect("key").id();
            (DocId::Hub(id), vec![ChangeHash([(i % 251) as u8; 32])])
        }))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode::<SyncRequest>(data, 1 << 20) else {
        return;
    };
    let set = docs();
    match request {
        SyncRequest::Reconcile { ranges, .. } => {
            let replies = set.answer(&ranges, MAX_RANGES);
            assert!(replies.len() <= ranges.len().min(MAX_RANGES));
            // The set agrees with itself: comparing its own answers finds nothing to fetch.
            let cmp = set.compare(&replies);
            assert!(cmp.wants.is_empty() && cmp.peer_lacks.is_empty());
        }
        SyncRequest::Exchange { wants } => {
            for w in wants.iter().take(MAX_RANGES) {
                let _ = set.get(w.key);
            }
        }
        SyncRequest::Push { .. } => {}
    }
});
