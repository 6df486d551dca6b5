//! Federation on in-process clusters: nodes on loopback (port 0), each with its own key and
//! store, talking libp2p. What a user would notice: a record published at one hub is found at
//! every other; cut links heal; a stopped node catches up; forged input never lands.

use std::time::Duration;

use hubcat_tests::{sample, wait_until, TestHub};
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(30);

/// Every hub reports the same digest.
fn converged(hubs: &[&TestHub]) -> bool {
    let first = hubs[0].digest();
    hubs.iter().all(|h| h.digest() == first)
}

fn titles(hub: &TestHub) -> Vec<String> {
    let (status, body) = hub.list("");
    assert_eq!(status, 200);
    let mut t: Vec<String> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["record"]["title"]["en"].as_str().map(String::from))
        .collect();
    t.sort();
    t
}

fn service(slug: &str, title: &str) -> Value {
    json!({"kind": "service", "id": slug, "title": {"en": title},
           "description": {"en": "A service offered to SMEs."},
           "category": "skills-and-training", "area_served": ["SE"]})
}

#[test]
fn a_record_published_on_one_hub_is_found_on_the_others_with_updates_and_withdrawals() {
    // A listens on TCP and QUIC; B joins over TCP, C over QUIC.
    let a = TestHub::start_configured(
        "HDS",
        "SE",
        &[],
        &[(
            "p2p.listen",
            toml::Value::Array(vec![
                "/ip4/127.0.0.1/tcp/0".into(),
                "/ip4/127.0.0.1/udp/0/quic-v1".into(),
            ]),
        )],
    )
    .expect("hub A");
    let quic = a
        .p2p_addrs()
        .into_iter()
        .find(|x| x.contains("/quic-v1/"))
        .expect("A listens on QUIC");
    let b = TestHub::start_with("GAL", "ES", &[a.p2p_addr()]).expect("hub B");
    let c = TestHub::start_configured(
        "THESS",
        "GR",
        &[quic],
        &[(
            "p2p.listen",
            toml::Value::Array(vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()]),
        )],
    )
    .expect("hub C");

    let published = a.publish_ok(&sample("hds-testbed"));
    let id = published["id"].as_str().expect("id").to_owned();
    for hub in [&b, &c] {
        assert!(
            wait_until(CONVERGE, || hub.get(&id).0 == 200),
            "record {id} never reached {}",
            hub.url()
        );
        let (_, found) = hub.get(&id);
        assert_eq!(found["publisher"], published["publisher"]);
        assert_eq!(
            found["provenance"]["change_hash"],
            published["provenance"]["change_hash"]
        );
        assert_eq!(
            found["provenance"]["signature"],
            published["provenance"]["signature"]
        );
        let (_, listed) = hub.list("kind=service");
        assert!(listed["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["id"] == id.as_str()));
    }

    // An update keeps the id and reaches both.
    let mut updated = sample("hds-testbed");
    updated["title"]["en"] = json!("Health data testbed, second edition");
    let after = a.publish_ok(&updated);
    assert_eq!(after["id"], id.as_str());
    for hub in [&b, &c] {
        assert!(
            wait_until(CONVERGE, || hub.get(&id).1["record"]["title"]["en"]
                == "Health data testbed, second edition"),
            "the update never reached {}",
            hub.url()
        );
    }

    // A withdrawal removes it everywhere.
    let (status, body) = a.delete(&id);
    assert_eq!(status, 200, "{body}");
    for hub in [&b, &c] {
        assert!(
            wait_until(CONVERGE, || hub.get(&id).0 == 404),
            "the withdrawal never reached {}",
            hub.url()
        );
    }
    assert!(wait_until(CONVERGE, || converged(&[&a, &b, &c])));

    // Operators see their peers: did, name, last sync, bytes.
    let peers = b.peers();
    let pa = peers
        .iter()
        .find(|p| p["peer_id"] == a.peer_id().to_string())
        .expect("B knows A");
    assert_eq!(pa["did"], published["publisher"]);
    assert_eq!(pa["connected"], true);
    assert!(pa["bytes_in"].as_u64().expect("bytes") > 0);
    assert!(wait_until(CONVERGE, || {
        b.peers()
            .iter()
            .any(|p| p["name"] == "HDS" && p["last_sync"].is_i64())
    }));
    let (_, status) = b.status();
    assert!(status["peers"].as_u64().expect("peers") >= 1);
    assert_eq!(
        status["did"]
            .as_str()
            .map(|d| d.starts_with("did:key:z6Mk")),
        Some(true)
    );
}

#[test]
fn five_hubs_in_a_line_converge() {
    let mut hubs: Vec<TestHub> = Vec::new();
    for i in 0..5 {
        let bootstrap: Vec<String> = hubs.last().map(|h| vec![h.p2p_addr()]).unwrap_or_default();
        hubs.push(TestHub::start_with(&format!("H{i}"), "SE", &bootstrap).expect("hub"));
    }
    for (i, hub) in hubs.iter().enumerate() {
        hub.publish_ok(&service(&format!("line-{i}"), &format!("Line service {i}")));
    }
    let refs: Vec<&TestHub> = hubs.iter().collect();
    assert!(
        wait_until(CONVERGE, || refs.iter().all(|h| h.count() == 5)),
        "counts: {:?}",
        refs.iter().map(|h| h.count()).collect::<Vec<_>>()
    );
    assert!(wait_until(CONVERGE, || converged(&refs)));
    let expected: Vec<String> = (0..5).map(|i| format!("Line service {i}")).collect();
    for hub in &refs {
        assert_eq!(titles(hub), expected);
    }
}

#[test]
fn a_partition_heals_to_the_union_of_both_sides() {
    let a = TestHub::start("A", "SE").expect("hub");
    let b = TestHub::start_with("B", "SE", &[a.p2p_addr()]).expect("hub");
    let c = TestHub::start_with("C", "ES", &[a.p2p_addr(), b.p2p_addr()]).expect("hub");
    let d = TestHub::start_with("D", "ES", &[a.p2p_addr(), c.p2p_addr()]).expect("hub");
    let all = [&a, &b, &c, &d];
    a.publish_ok(&service("before", "Before the split"));
    assert!(wait_until(CONVERGE, || all.iter().all(|h| h.count() == 1)));

    // Split {A, B} | {C, D}.
    for (x, y) in [(&a, &c), (&a, &d), (&b, &c), (&b, &d)] {
        x.cut(y);
        y.cut(x);
    }
    // Every hub down to its one partner before anything is published: a link still open
    // across the cut would carry the record over.
    assert!(wait_until(CONVERGE, || all
        .iter()
        .all(|h| h.connected_peers() == 1)));
    a.publish_ok(&service("left", "Published on the left"));
    d.publish_ok(&service("right", "Published on the right"));
    assert!(wait_until(CONVERGE, || b.count() == 2 && c.count() == 2));
    // Nothing crossed the cut.
    assert_eq!(titles(&b), ["Before the split", "Published on the left"]);
    assert_eq!(titles(&c), ["Before the split", "Published on the right"]);
    assert_ne!(a.digest(), d.digest());

    for (x, y) in [(&a, &c), (&a, &d), (&b, &c), (&b, &d)] {
        x.heal(y);
        y.heal(x);
    }
    assert!(
        wait_until(CONVERGE, || converged(&all)),
        "digests after healing differ"
    );
    for hub in all {
        assert_eq!(
            titles(hub),
            [
                "Before the split",
                "Published on the left",
                "Published on the right"
            ]
        );
    }
}

#[test]
fn a_stopped_hub_catches_up_on_a_thousand_records() {
    let a = TestHub::start("A", "SE").expect("hub");
    let mut b = TestHub::start_with("B", "SE", &[a.p2p_addr()]).expect("hub");
    a.publish_ok(&service("first", "First"));
    assert!(wait_until(CONVERGE, || b.count() == 1));
    b.stop().expect("stop B");

    let cat = a.catalogue();
    for i in 0..1000 {
        let record = hubcat_protocol::Record::from_value(service(
            &format!("bulk-{i}"),
            &format!("Bulk service {i}"),
        ))
        .expect("valid record");
        cat.publish(&record).expect("publish");
    }
    assert_eq!(a.count(), 1001);

    b.resume().expect("resume B");
    assert!(
        wait_until(Duration::from_secs(60), || b.count() == 1001),
        "B has {} of 1001 records",
        b.count()
    );
    assert!(wait_until(CONVERGE, || converged(&[&a, &b])));
}

/// Responses capped at their minimum and no periodic rounds: everything a returning hub lacks,
/// over many documents, must come in the one session it starts when it reconnects.
#[test]
fn one_session_brings_a_returning_hub_up_to_date_on_many_documents() {
    use hubcat_protocol::{change, CatalogueDoc, HubKey, Record};
    let quiet = [
        ("sync.interval_secs", toml::Value::Integer(3600)),
        ("sync.max_response_bytes", toml::Value::Integer(64 * 1024)),
    ];
    let a = TestHub::start_configured("A", "SE", &[], &quiet).expect("hub");
    let mut b = TestHub::start_configured("B", "SE", &[a.p2p_addr()], &quiet).expect("hub");
    a.publish_ok(&service("first", "First"));
    assert!(wait_until(CONVERGE, || b.count() == 1));
    b.stop().expect("stop B");

    // Forty other hubs' records reach A while B is away: about 600 KB, ten responses' worth.
    let now = hubcat_protocol::now_ms();
    let mut envelopes = Vec::new();
    for h in 0..40u8 {
        let key = HubKey::from_secret_bytes(&[h + 10; 32]).expect("key");
        let mut doc = CatalogueDoc::new(key.id(), [1; 16]);
        for i in 0..10 {
            let record = Record::from_value(service(
                &format!("offer-{i}"),
                &format!("Offer {i} of hub {h}, described at some length so it weighs what a real one does"),
            ))
            .expect("valid record");
            let c = doc.upsert(&record, now).expect("change");
            envelopes.push(change::sign(&key, doc.id(), &c));
        }
    }
    let cat = a.catalogue();
    let report = cat.ingest(envelopes, now).expect("ingest");
    assert_eq!(report.accepted, 400);
    drop(cat);
    assert_eq!(a.count(), 401);

    b.resume().expect("resume B");
    assert!(
        wait_until(CONVERGE, || b.count() == 401),
        "B has {} of 401 records after reconnecting (no periodic round runs)",
        b.count()
    );
    assert!(wait_until(CONVERGE, || converged(&[&a, &b])));
}

mod hostile {
    use super::*;
    use hubcat_protocol::bundle::BundleChange;
    use hubcat_protocol::change;
    use hubcat_protocol::sync::{
        encode, DocChanges, Gossip, SyncRequest, SyncResponse, WireChange,
    };
    use hubcat_protocol::{CatalogueDoc, DocId, HubKey, Record, SignedChange};

    fn record(slug: &str) -> Record {
        Record::from_value(service(slug, "Spam offer")).expect("valid record")
    }

    /// A properly signed change by `key` on its own document.
    fn own_change(key: &HubKey, slug: &str) -> SignedChange {
        let mut doc = CatalogueDoc::new(key.id(), [9; 16]);
        let c = doc
            .upsert(&record(slug), hubcat_protocol::now_ms())
            .expect("change");
        change::sign(key, doc.id(), &c)
    }

    fn announce(env: &SignedChange) -> Vec<u8> {
        encode(&Gossip::Announce {
            doc: env.doc.clone(),
            heads: vec![],
            changes: vec![WireChange::of(env)],
        })
    }

    fn score_of(hub: &TestHub, peer: &str) -> Option<f64> {
        hub.peers()
            .iter()
            .find(|p| p["peer_id"] == peer)
            .and_then(|p| p["score"].as_f64())
    }

    #[test]
    fn forged_altered_unauthorised_replayed_garbage_and_oversized_input_never_lands() {
        let a = TestHub::start("A", "SE").expect("hub");
        let b = TestHub::start_with("B", "ES", &[a.p2p_addr()]).expect("hub");
        // The hostile hub lets itself send messages larger than honest nodes accept.
        let m = TestHub::start_configured(
            "M",
            "SE",
            &[a.p2p_addr()],
            &[("p2p.max_message_bytes", toml::Value::Integer(8 << 20))],
        )
        .expect("hub");
        let honest = [&a, &b];
        let genuine = a.publish_ok(&service("genuine", "Genuine offer"));
        assert!(wait_until(CONVERGE, || b.count() == 1 && m.count() == 1));
        assert!(wait_until(CONVERGE, || a
            .peers()
            .iter()
            .any(
                |p| p["peer_id"] == m.peer_id().to_string() && p["connected"] == true
            )));
        let before: Vec<(String, u64, u64)> = honest
            .iter()
            .map(|h| {
                let (_, s) = h.status();
                (
                    h.digest(),
                    h.count(),
                    s["changes"].as_u64().expect("changes"),
                )
            })
            .collect();

        let x = HubKey::generate().expect("key");
        let y = HubKey::generate().expect("key");
        // 1. Signed by the wrong key: X's change, Y's signature.
        let mut wrong_key = own_change(&x, "wrong-key");
        let c = automerge::Change::from_bytes(wrong_key.change.clone()).expect("change");
        wrong_key.signature = change::sign(&y, &DocId::Hub(x.id()), &c).signature;
        // 2. Altered bytes after signing.
        let mut altered = own_change(&x, "altered");
        let mid = altered.change.len() / 2;
        altered.change[mid] ^= 0x20;
        // 3. A change for another hub's document (A's), correctly signed by X.
        let mut unauthorised = own_change(&x, "takeover");
        unauthorised.doc = DocId::Hub(a.catalogue().hub_id());
        // 4. A replay of A's genuine change, from A's own export.
        let (_, bundle) = a.export();
        let replay: BundleChange =
            serde_json::from_value(bundle["changes"][0].clone()).expect("bundle change");
        let replay = replay.envelope().expect("envelope");
        assert_eq!(
            replay.doc.hub().expect("a hub document").to_did(),
            genuine["publisher"]
        );

        let net = m.net();
        for forged in [&wrong_key, &altered, &unauthorised] {
            m.block_on(net.publish_raw(announce(forged)));
        }
        m.block_on(net.publish_raw(announce(&replay)));
        // 5. Garbage bytes, and 6. an oversized message.
        m.block_on(net.publish_raw(b"\x01garbage that decodes to nothing".to_vec()));
        m.block_on(net.publish_raw(vec![7u8; 2 << 20]));
        // The same forgeries pushed over sync, and an oversized sync request.
        let push = encode(&SyncRequest::Push {
            docs: [&wrong_key, &altered, &unauthorised]
                .iter()
                .map(|e| DocChanges {
                    doc: e.doc.clone(),
                    changes: vec![WireChange::of(e)],
                })
                .collect(),
        });
        let reply = m
            .block_on(net.request(a.peer_id(), push))
            .expect("A answers a push");
        let reply: SyncResponse = hubcat_protocol::sync::decode(&reply, 1 << 20).expect("reply");
        assert_eq!(
            reply,
            SyncResponse::Pushed {
                accepted: 0,
                duplicates: 0,
                refused: 3
            }
        );
        assert!(
            m.block_on(net.request(a.peer_id(), vec![1u8; 2 << 20]))
                .is_err(),
            "an oversized sync request must be cut off"
        );

        // Gossip is validated as it arrives, one batch at a time: wait for the last of it.
        assert!(
            wait_until(CONVERGE, || a.status().1["changes_refused"]
                .as_u64()
                .is_some_and(|n| n >= 6)),
            "{}",
            a.status().1
        );
        // A penalises the hostile peer.
        let mid_id = m.peer_id().to_string();
        assert!(
            wait_until(CONVERGE, || score_of(&a, &mid_id).is_some_and(|s| s < 0.0)),
            "score of the hostile peer on A: {:?}",
            score_of(&a, &mid_id)
        );
        // Nothing landed anywhere honest, and the honest hubs keep serving and syncing.
        std::thread::sleep(Duration::from_secs(1));
        for (hub, (digest, count, changes)) in honest.iter().zip(&before) {
            let (status, s) = hub.status();
            assert_eq!(status, 200);
            assert_eq!(&hub.digest(), digest);
            assert_eq!(hub.count(), *count);
            assert_eq!(s["changes"].as_u64(), Some(*changes));
            let (_, listed) = hub.list(&format!("publisher={}", x.id().to_did()));
            assert_eq!(listed["count"], 0);
        }
        let (status, _) = a.request(reqwest::Method::GET, "/healthz", None, None);
        assert_eq!(status, 200);
        let after = a.publish_ok(&service("after-attack", "Still publishing"));
        assert!(wait_until(CONVERGE, || b
            .get(after["id"].as_str().expect("id"))
            .0
            == 200));
    }
}
