//! Federation membership across a running federation: three founders with quorum 2 and a
//! newcomer. A hub's records are refused everywhere until the quorum has endorsed it, then
//! served everywhere; one founder alone can neither admit nor suspend; a suspended hub's
//! records disappear from search on every node and its new changes are held back;
//! reinstatement brings them back.

use std::time::Duration;

use hubcat_protocol::{change, CatalogueDoc, HubKey, Record};
use hubcat_tests::{genesis_federation, urlencode, wait_until, TestHub};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn service(slug: &str, word: &str) -> Value {
    json!({"kind": "service", "id": slug,
        "title": {"en": format!("{word} testbed")},
        "description": {"en": format!("Test {word} before you invest.")},
        "category": "test-before-invest"})
}

/// Hits for `word` published by `did`, from the node's search.
fn found(hub: &TestHub, word: &str, did: &str) -> usize {
    let (code, body) = hub.request(
        Method::GET,
        &format!("/v1/search?q={word}&publisher={}", urlencode(did)),
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
    body["total"].as_u64().expect("total") as usize
}

fn vote(hub: &TestHub, action: &str, target: &str) -> (u16, Value) {
    hub.request(
        Method::POST,
        "/v1/federation/votes",
        Some(&hub.token),
        Some(
            json!({"action": action, "target": target, "reason": "decided at the hub council"})
                .to_string()
                .into_bytes(),
        ),
    )
}

fn vote_ok(hub: &TestHub, action: &str, target: &str) {
    let (code, body) = vote(hub, action, target);
    assert_eq!(code, 201, "{action} {target}: {body}");
}

/// How many votes on `target` with `action` the node holds.
fn votes_on(hub: &TestHub, target: &str, action: &str) -> usize {
    let (code, body) = hub.request(Method::GET, "/v1/federation/members", None, None);
    assert_eq!(code, 200, "{body}");
    ["members", "candidates", "suspended"]
        .iter()
        .flat_map(|l| body[l].as_array().cloned().unwrap_or_default())
        .filter(|h| h["did"] == target)
        .flat_map(|h| h["votes"].as_array().cloned().unwrap_or_default())
        .filter(|v| v["action"] == action)
        .count()
}

/// Wait two sync rounds: whatever was going to arrive has.
fn settle() {
    std::thread::sleep(Duration::from_secs(
        2 * hubcat_tests::TEST_SYNC_SECS as u64 + 1,
    ));
}

#[test]
fn three_founders_with_quorum_two_admit_suspend_and_reinstate_a_hub_everywhere() {
    let (hubs, dids, _, _) = genesis_federation(
        &[("HDS", "SE"), ("GAL", "ES"), ("THESS", "GR")],
        &[("NEW", "PT")],
        2,
        None,
    )
    .expect("federation");
    let (founders, newcomer) = hubs.split_at(3);
    let d = &newcomer[0];
    let d_did = &dids[3];

    // Every founder publishes and is served everywhere; the newcomer's record is stored on
    // its own node but served nowhere, not even there.
    for (i, h) in founders.iter().enumerate() {
        h.publish_ok(&service(&format!("lab-{i}"), "robotics"));
    }
    let (code, body) = d.publish(&service("imaging", "imaging"));
    assert_eq!(
        code, 201,
        "the newcomer's node stores its own record: {body}"
    );
    assert!(wait_until(WAIT, || hubs
        .iter()
        .all(|h| (0..3).all(|i| found(h, "robotics", &dids[i]) == 1))));
    settle();
    for h in &hubs {
        assert_eq!(
            found(h, "imaging", d_did),
            0,
            "a candidate is served nowhere"
        );
    }
    // The newcomer cannot vote.
    let (code, body) = vote(d, "endorse", &dids[0]);
    assert_eq!(code, 403, "{body}");

    // Bad votes are refused, naming what is wrong, and change nothing.
    let bad = |hub: &TestHub, body: Value, status: u16, names: &str| {
        let (code, v) = hub.request(
            Method::POST,
            "/v1/federation/votes",
            Some(&hub.token),
            Some(body.to_string().into_bytes()),
        );
        assert_eq!(code, status, "{body} → {v}");
        assert!(
            v.to_string().contains(names),
            "{body} → {v} should name {names}"
        );
    };
    let a = &founders[0];
    bad(
        a,
        json!({"action": "endorse", "target": dids[0]}),
        400,
        "target",
    );
    bad(
        a,
        json!({"action": "endorse", "target": dids[1]}),
        409,
        "already a member",
    );
    bad(
        a,
        json!({"action": "reinstate", "target": d_did}),
        409,
        "not suspended",
    );
    bad(
        a,
        json!({"action": "suspend", "target": d_did}),
        409,
        "not a member",
    );
    bad(
        a,
        json!({"action": "endorse", "target": d_did, "reason": "x".repeat(501)}),
        400,
        "reason",
    );
    assert_eq!(votes_on(a, d_did, "endorse"), 0);

    // One founder's endorsement does not admit it.
    vote_ok(&founders[0], "endorse", d_did);
    assert!(wait_until(WAIT, || hubs
        .iter()
        .all(|h| votes_on(h, d_did, "endorse") == 1)));
    settle();
    for h in &hubs {
        assert_eq!(
            found(h, "imaging", d_did),
            0,
            "one endorsement admits no one"
        );
    }

    // The second one does, on every node.
    vote_ok(&founders[1], "endorse", d_did);
    assert!(
        wait_until(WAIT, || hubs
            .iter()
            .all(|h| found(h, "imaging", d_did) == 1)),
        "the admitted hub's record is served everywhere"
    );

    bad(
        a,
        json!({"action": "endorse", "target": d_did}),
        409,
        "already a member",
    );

    // One founder alone cannot suspend it.
    vote_ok(&founders[2], "suspend", d_did);
    assert!(wait_until(WAIT, || hubs
        .iter()
        .all(|h| votes_on(h, d_did, "suspend") == 1)));
    settle();
    for h in &hubs {
        assert_eq!(found(h, "imaging", d_did), 1, "one vote suspends no one");
    }

    // A second vote does: its records disappear from search everywhere …
    vote_ok(&founders[0], "suspend", d_did);
    assert!(
        wait_until(WAIT, || hubs
            .iter()
            .all(|h| found(h, "imaging", d_did) == 0)),
        "the suspended hub's record is served nowhere"
    );
    // … and its new changes are held back by every other node.
    let (code, body) = d.publish(&service("genomics", "genomics"));
    assert_eq!(code, 201, "{body}");
    settle();
    for h in founders {
        assert_eq!(found(h, "genomics", d_did), 0);
        let (_, members) = h.request(Method::GET, "/v1/federation/members", None, None);
        assert_eq!(members["suspended"][0]["did"], *d_did);
    }

    // Reinstatement by two founders brings every record back, the held one too.
    vote_ok(&founders[1], "reinstate", d_did);
    vote_ok(&founders[2], "reinstate", d_did);
    assert!(
        wait_until(WAIT, || hubs.iter().all(|h| found(h, "imaging", d_did)
            == 1
            && found(h, "genomics", d_did) == 1)),
        "the reinstated hub's records are served everywhere"
    );
    let digest = hubs[0].digest();
    assert!(wait_until(WAIT, || hubs
        .iter()
        .all(|h| h.digest() == digest)));
}

#[test]
fn a_hub_rotates_its_key_and_members_recover_a_leaked_one_across_the_federation() {
    let (hubs, dids, _, _) = genesis_federation(
        &[("HDS", "SE"), ("GAL", "ES"), ("THESS", "GR")],
        &[],
        2,
        None,
    )
    .expect("federation");
    let mut hubs = hubs.into_iter();
    let (a, b, mut c) = match (hubs.next(), hubs.next(), hubs.next()) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => panic!("three hubs"),
    };
    let c_did = dids[2].clone();

    c.publish_ok(&service("lab", "robotics"));
    assert!(wait_until(WAIT, || found(&a, "robotics", &c_did) == 1));

    // Rotation: the node makes the new key, signs the handover with the old one, signs on
    // with the new one.
    let old_key = c.data_dir.load_key().expect("old key");
    let (code, rotated) = c.request(
        Method::POST,
        "/v1/key/rotate",
        Some(&c.token),
        Some(br#"{"reason": "yearly rotation"}"#.to_vec()),
    );
    assert_eq!(code, 200, "{rotated}");
    assert_eq!(rotated["did"], *c_did);
    let new_did = rotated["key"].as_str().expect("new key").to_owned();
    assert_ne!(new_did, c_did);
    let (hub, signing) = c.data_dir.load_identity().expect("identity");
    assert_eq!(hub.to_did(), c_did, "the hub keeps its did");
    assert_eq!(signing.id().to_did(), new_did, "hub.key holds the new key");
    assert!(!c.data_dir.next_key_path().exists());
    let mode = std::fs::metadata(c.data_dir.key_path())
        .expect("key file")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    c.publish_ok(&service("training", "genomics"));
    assert!(
        wait_until(WAIT, || [&a, &b]
            .iter()
            .all(
                |h| found(h, "genomics", &c_did) == 1 && found(h, "robotics", &c_did) == 1
            )),
        "the new key's record is served everywhere, and the old key's records stay"
    );
    // A node stopped after signing the handover but before moving the new key into place
    // (the old key still in hub.key, the new one in hub.key.next) finishes it at its start.
    c.stop().expect("stop");
    std::fs::remove_file(c.data_dir.key_path()).expect("remove hub.key");
    c.data_dir.write_next_key(&old_key).expect("write");
    std::fs::rename(c.data_dir.next_key_path(), c.data_dir.key_path()).expect("old key back");
    c.data_dir
        .write_next_key(&signing)
        .expect("new key in hub.key.next");
    // After a restart the node signs with the new key (its peer id follows it).
    c.resume().expect("resume");
    assert!(
        !c.data_dir.next_key_path().exists(),
        "the handover was finished"
    );
    assert_eq!(
        c.data_dir.load_key().expect("key").id().to_did(),
        new_did,
        "hub.key holds the new key again"
    );
    // A hub.key.next whose handover never happened is forgotten.
    c.stop().expect("stop");
    c.data_dir
        .write_next_key(&HubKey::generate().expect("key"))
        .expect("write");
    c.resume().expect("resume");
    assert!(
        !c.data_dir.next_key_path().exists(),
        "the unused key is gone"
    );
    assert_eq!(c.data_dir.load_key().expect("key").id().to_did(), new_did);
    c.publish_ok(&service("imaging", "imaging"));
    assert!(wait_until(WAIT, || found(&a, "imaging", &c_did) == 1));

    // The old key's new changes are refused.
    let mut stolen = CatalogueDoc::new(hub, [9; 16]);
    let spam = stolen
        .upsert(
            &Record::from_value(service("spam", "spam")).expect("record"),
            hubcat_protocol::now_ms(),
        )
        .expect("change");
    let forged = change::sign(&old_key, stolen.id(), &spam);
    for h in [&a, &b, &c] {
        let r = h
            .catalogue()
            .ingest(vec![forged.clone()], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(r.refused.len(), 1, "{r:?}");
        assert_eq!(r.refused[0].reason, "retired_key");
    }

    // A backup of the federation, with the handover in it, verifies offline.
    let (code, bundle) = a.export();
    assert_eq!(code, 200);
    let bundle: hubcat_protocol::bundle::Bundle = serde_json::from_value(bundle).expect("a bundle");
    hubcat_protocol::bundle::verify(&bundle, hubcat_protocol::now_ms()).expect("verifies");

    // B's key leaks: two members give B a new key; then the new key's change is taken and the
    // thief's refused.
    let b_hub = b.data_dir.load_key().expect("b key");
    let fresh = HubKey::generate().expect("key");
    let recover = |h: &TestHub| {
        h.request(
            Method::POST,
            "/v1/federation/votes",
            Some(&h.token),
            Some(
                json!({"action": "recover", "target": dids[1], "key": fresh.id().to_did(),
                       "reason": "key leaked"})
                .to_string()
                .into_bytes(),
            ),
        )
    };
    let (code, v) = recover(&a);
    assert_eq!(code, 201, "{v}");
    let (code, v) = recover(&c);
    assert_eq!(code, 201, "{v}");
    let (code, v) = recover(&b);
    assert_eq!(code, 400, "nobody recovers its own key: {v}");
    let mut renewed = CatalogueDoc::new(b_hub.id(), [5; 16]);
    renewed.set_actor(&fresh.id(), [5; 16]);
    let change = renewed
        .upsert(
            &Record::from_value(service("renewed", "renewed")).expect("record"),
            hubcat_protocol::now_ms(),
        )
        .expect("change");
    let good = change::sign(&fresh, renewed.id(), &change);
    let mut thief_doc = CatalogueDoc::new(b_hub.id(), [6; 16]);
    let change = thief_doc
        .upsert(
            &Record::from_value(service("theft", "theft")).expect("record"),
            hubcat_protocol::now_ms(),
        )
        .expect("change");
    let theft = change::sign(&b_hub, thief_doc.id(), &change);
    assert!(wait_until(WAIT, || {
        let r = a
            .catalogue()
            .ingest(vec![good.clone()], hubcat_protocol::now_ms())
            .expect("ingest");
        r.accepted + r.duplicates == 1
    }));
    let r = a
        .catalogue()
        .ingest(vec![theft], hubcat_protocol::now_ms())
        .expect("ingest");
    assert_eq!(r.refused[0].reason, "retired_key");
    assert!(wait_until(WAIT, || found(&c, "renewed", &dids[1]) == 1));
    assert_eq!(found(&a, "theft", &dids[1]), 0);
}
