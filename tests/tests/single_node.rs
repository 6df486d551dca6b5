//! One node, in process, through its HTTP API (and its engine for forged changes): what a hub
//! publishing its catalogue would notice.

use std::sync::Arc;

use base64::Engine as _;
use hubcat_node::engine::Catalogue;
use hubcat_node::store::{SledStore, Store};
use hubcat_protocol::bundle::{self, Bundle};
use hubcat_protocol::change::{self, DocId};
use hubcat_protocol::{CatalogueDoc, HubKey, Record, SignedChange};
use hubcat_tests::{is_hex, sample, TestHub};
use serde_json::{json, Value};

fn hub() -> TestHub {
    TestHub::start("HDS", "SE").expect("start hub")
}

/// The operations of a bundle change: (slot, is_delete) for each.
fn bundle_change_ops(c: &bundle::BundleChange) -> Vec<(String, bool)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&c.change)
        .expect("base64 change");
    let change = automerge::Change::from_bytes(bytes).expect("automerge change");
    change
        .decode()
        .operations
        .iter()
        .map(|op| {
            let slot = match &op.key {
                automerge::legacy::Key::Map(k) => k.to_string(),
                other => format!("{other:?}"),
            };
            (slot, matches!(op.action, automerge::legacy::OpType::Delete))
        })
        .collect()
}

fn assert_provenance(view: &Value, did: &str) {
    assert_eq!(view["publisher"], did, "{view}");
    let p = &view["provenance"];
    assert_eq!(p["publisher"], did, "{view}");
    let hash = p["change_hash"].as_str().expect("change_hash");
    assert!(is_hex(hash) && hash.len() == 64, "change_hash {hash}");
    let sig = p["signature"].as_str().expect("signature");
    assert!(is_hex(sig) && sig.len() == 128, "signature {sig}");
}

#[test]
fn publish_update_withdraw_and_the_export_still_verifies() {
    let hub = hub();
    let (_, status) = hub.status();
    let did = status["did"].as_str().expect("did").to_owned();
    assert!(did.starts_with("did:key:z6Mk"), "{did}");

    // Publish: the answer, GET and list all carry the signed record.
    hub.publish_ok(&sample("hds-profile"));
    let created = hub.publish_ok(&sample("hds-testbed"));
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("health-data-testbed@z6Mk"), "{id}");
    assert_eq!(created["kind"], "service");
    assert_provenance(&created, &did);
    assert_eq!(created["record"]["publisher"], did.as_str());

    let (code, got) = hub.get(&id);
    assert_eq!(code, 200, "{got}");
    assert_provenance(&got, &did);
    assert_eq!(got["provenance"], created["provenance"]);
    assert_eq!(
        got["record"]["title"]["en"],
        "Health data testbed for AI products"
    );
    // The bare slug finds this hub's record too.
    let (code, by_slug) = hub.get("health-data-testbed");
    assert_eq!(code, 200, "{by_slug}");
    assert_eq!(by_slug["id"], id.as_str());

    let (code, list) = hub.list("");
    assert_eq!(code, 200);
    assert_eq!(list["count"], 2);
    let (_, filtered) = hub.list("kind=service&country=SE&category=test-before-invest");
    assert_eq!(filtered["count"], 1, "{filtered}");
    let listed = list["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["id"] == id.as_str())
        .expect("listed");
    assert_provenance(listed, &did);

    // Update: same id, new title, new signed change; first publication time kept.
    let mut changed = sample("hds-testbed");
    changed["title"]["en"] = "Health data testbed for AI and analytics".into();
    let updated = hub.publish_ok(&changed);
    assert_eq!(updated["id"], id.as_str());
    assert_ne!(
        updated["provenance"]["change_hash"],
        created["provenance"]["change_hash"]
    );
    assert_eq!(updated["record"]["issued"], created["record"]["issued"]);
    let (_, got) = hub.get(&id);
    assert_eq!(
        got["record"]["title"]["en"],
        "Health data testbed for AI and analytics"
    );
    assert_eq!(got["provenance"], updated["provenance"]);
    assert_eq!(hub.count(), 2, "an update is not a new record");
    // A record as the node serves it (envelope included) can be published again as is.
    let again = hub.publish_ok(&got["record"]);
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["record"]["issued"], created["record"]["issued"]);
    assert_eq!(hub.count(), 2);

    // Withdraw: gone from GET and list.
    let (code, body) = hub.delete(&id);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["withdrawn"], id.as_str());
    let (code, body) = hub.get(&id);
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    let (_, list) = hub.list("");
    assert_eq!(list["count"], 1);
    assert!(list["records"]
        .as_array()
        .expect("records")
        .iter()
        .all(|r| r["id"] != id.as_str()));
    // Withdrawing again is a 404, not a second delete.
    assert_eq!(hub.delete(&id).0, 404);

    // The export verifies offline and keeps the withdrawn record's signed history.
    let (code, exported) = hub.export();
    assert_eq!(code, 200, "{exported}");
    let bundle: Bundle = serde_json::from_value(exported).expect("bundle JSON");
    let report =
        bundle::verify(&bundle, hubcat_protocol::now_ms()).expect("bundle verifies offline");
    assert_eq!(report.records, 1);
    assert_eq!(report.publishers, 1);
    assert_eq!(bundle.records.len(), 1);
    assert!(bundle.records[0].id.starts_with("profile@"));
    let history: Vec<&bundle::BundleChange> = bundle
        .changes
        .iter()
        .filter(|c| c.records.contains(&id))
        .collect();
    let ops: Vec<(String, bool)> = history.iter().flat_map(|c| bundle_change_ops(c)).collect();
    let upserts = ops
        .iter()
        .filter(|(s, del)| s == "health-data-testbed" && !del);
    let deletes = ops
        .iter()
        .filter(|(s, del)| s == "health-data-testbed" && *del);
    assert_eq!(
        upserts.count(),
        2,
        "both upserts are in the export: {ops:?}"
    );
    assert_eq!(deletes.count(), 1, "the delete is in the export: {ops:?}");
    assert!(history.iter().all(|c| c.author == did));
}

/// One refused input: what is sent, the status and the field the answer must name.
struct BadInput {
    name: &'static str,
    body: Vec<u8>,
    status: u16,
    field: Option<&'static str>,
    /// Text the detail must contain.
    detail: &'static str,
}

fn with(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = sample(name);
    edit(&mut v);
    v.to_string().into_bytes()
}

#[test]
fn bad_inputs_are_refused_naming_the_field_and_change_nothing() {
    let hub = hub();
    hub.publish_ok(&sample("hds-profile"));
    hub.publish_ok(&sample("hds-testbed"));
    hub.publish_ok(&sample("hds-practice"));
    let before_count = hub.count();
    let (_, before) = hub.status();

    let cases = vec![
        BadInput {
            name: "unknown country",
            body: with("hds-profile", |v| v["country"] = "XX".into()),
            status: 400,
            field: Some("country"),
            detail: "XX",
        },
        BadInput {
            name: "unknown NUTS code in area_served",
            body: with("hds-testbed", |v| v["area_served"] = json!(["SE", "SE99"])),
            status: 400,
            field: Some("area_served[1]"),
            detail: "SE99",
        },
        BadInput {
            name: "unknown NUTS code in regions",
            body: with("hds-profile", |v| v["regions"] = json!(["SE99"])),
            status: 400,
            field: Some("regions[0]"),
            detail: "SE99",
        },
        BadInput {
            name: "unknown language key in a title",
            body: with("hds-testbed", |v| {
                v["title"] = json!({"xx": "Health data testbed"})
            }),
            status: 400,
            field: Some("title.xx"),
            detail: "xx",
        },
        BadInput {
            name: "language name instead of a code",
            body: with("hds-testbed", |v| v["languages"] = json!(["swedish"])),
            status: 400,
            field: Some("languages[0]"),
            detail: "swedish",
        },
        BadInput {
            name: "TRL min above max",
            body: with("hds-testbed", |v| v["trl"] = json!({"min": 7, "max": 3})),
            status: 400,
            field: Some("trl"),
            detail: "min 7",
        },
        BadInput {
            name: "missing title",
            body: with("hds-testbed", |v| {
                v.as_object_mut().expect("object").remove("title");
            }),
            status: 400,
            field: Some("title"),
            detail: "missing",
        },
        BadInput {
            name: "unknown category",
            body: with("hds-testbed", |v| v["category"] = "consulting".into()),
            status: 400,
            field: Some("category"),
            detail: "test-before-invest",
        },
        BadInput {
            name: "1 MB description",
            body: with("hds-testbed", |v| {
                v["description"]["en"] = "x".repeat(1_000_000).into()
            }),
            status: 400,
            field: Some("description.en"),
            detail: "too long",
        },
        BadInput {
            name: "unknown field",
            body: with("hds-testbed", |v| v["colour"] = "blue".into()),
            status: 400,
            field: Some("colour"),
            detail: "unknown field",
        },
        BadInput {
            name: "TRL out of range",
            body: with("hds-testbed", |v| v["trl"] = json!({"min": 0, "max": 3})),
            status: 400,
            field: Some("trl.min"),
            detail: "1 to 9",
        },
        BadInput {
            name: "blank title",
            body: with("hds-testbed", |v| v["title"] = json!({"en": "   "})),
            status: 400,
            field: Some("title.en"),
            detail: "empty",
        },
        BadInput {
            name: "id that is not a slug",
            body: with("hds-testbed", |v| v["id"] = "Health Data Testbed".into()),
            status: 400,
            field: Some("id"),
            detail: "not a valid id",
        },
        BadInput {
            name: "another hub as publisher",
            body: with("hds-testbed", |v| {
                v["publisher"] = "did:key:z6MkqPkT8egSaVPV5WymQQiPPpWaFTzMQvzQRDpKDv15GuL5".into()
            }),
            status: 400,
            field: Some("publisher"),
            detail: "publishes as",
        },
        BadInput {
            name: "broken JSON",
            body: br#"{"kind": "service", "title": {"en": "AI"#.to_vec(),
            status: 400,
            field: None,
            detail: "JSON",
        },
        BadInput {
            name: "body over api.max_body_bytes",
            body: with("hds-testbed", |v| {
                v["description"]["en"] = "x".repeat(5 * 1024 * 1024).into()
            }),
            status: 413,
            field: None,
            detail: "max_body_bytes",
        },
        BadInput {
            name: "a service claiming the profile's id",
            body: with("hds-testbed", |v| v["id"] = "profile".into()),
            status: 400,
            field: Some("id"),
            detail: "reserved",
        },
        BadInput {
            name: "a practice's id reused for a service",
            body: with("hds-testbed", |v| {
                v["id"] = "remote-patient-monitoring".into()
            }),
            status: 409,
            field: Some("id"),
            detail: "remote-patient-monitoring",
        },
    ];

    let mut failures = Vec::new();
    for case in &cases {
        // All on one pooled client: a 413 must close its connection cleanly (the server sends
        // `Connection: close`), so the next request still works.
        let (status, body) = hub.publish_raw(case.body.clone(), Some(&hub.token));
        let detail = body["detail"].as_str().unwrap_or("");
        let ok = status == case.status
            && body["error"].as_str().is_some_and(|e| !e.is_empty())
            && body["field"].as_str() == case.field
            && detail.contains(case.detail);
        if !ok {
            failures.push(format!(
                "{}: expected {} field {:?} detail ~{:?}, got {status} {body}",
                case.name, case.status, case.field, case.detail
            ));
        }
        let after = hub.count();
        if after != before_count {
            failures.push(format!(
                "{}: record count changed {before_count} → {after}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let (_, after) = hub.status();
    assert_eq!(after["digest"], before["digest"], "catalogue unchanged");
    assert_eq!(after["changes"], before["changes"], "no change was stored");
    // The practice kept its kind and content.
    let (code, practice) = hub.get("remote-patient-monitoring");
    assert_eq!(code, 200);
    assert_eq!(practice["kind"], "practice");
}

#[test]
fn writes_without_the_right_token_are_refused() {
    let hub = hub();
    let created = hub.publish_ok(&sample("hds-testbed"));
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, before) = hub.status();
    let record = sample("okthess-investor").to_string().into_bytes();

    for token in [None, Some("not-the-token"), Some("")] {
        let (code, body) = hub.publish_raw(record.clone(), token);
        assert_eq!(code, 401, "publish with {token:?}: {body}");
        assert_eq!(body["error"], "unauthorised");
        assert!(body["detail"].as_str().unwrap_or("").contains("api.token"));
        let (code, body) = hub.delete_with(&id, token);
        assert_eq!(code, 401, "withdraw with {token:?}: {body}");
    }
    // A token one character off is still wrong.
    let mut near = hub.token.clone();
    let last = near.pop().expect("token");
    near.push(if last == '0' { '1' } else { '0' });
    assert_eq!(hub.publish_raw(record.clone(), Some(&near)).0, 401);

    let (_, after) = hub.status();
    assert_eq!(after["digest"], before["digest"]);
    assert_eq!(after["changes"], before["changes"]);
    assert_eq!(hub.count(), 1);
    assert_eq!(hub.get(&id).0, 200, "the record was not withdrawn");
    assert_eq!(hub.get("investor-readiness").0, 404);
}

/// The read rate limit on a real node: one address over it gets 429 with Retry-After, while the
/// hub's staff (the write token) and the health probe still get through.
#[test]
fn a_reader_over_the_rate_limit_is_held_back_and_the_node_keeps_serving() {
    let hub = TestHub::start_configured(
        "HDS",
        "SE",
        &[],
        &[
            ("api.read_rate_per_sec", 1.into()),
            ("api.read_burst", 5.into()),
        ],
    )
    .expect("hub");
    let url = format!("{}/v1/records", hub.url());
    let codes: Vec<u16> = (0..8)
        .map(|_| hub.http.get(&url).send().expect("GET").status().as_u16())
        .collect();
    assert_eq!(&codes[..5], &[200; 5], "the burst is served: {codes:?}");
    assert!(codes[5..].contains(&429), "then held back: {codes:?}");
    let r = hub.http.get(&url).send().expect("GET");
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().expect("error body");
    assert_eq!(body["error"], "rate_limited");

    // Staff with the token publish and read; the probe answers.
    hub.publish_ok(&sample("hds-testbed"));
    let r = hub
        .http
        .get(&url)
        .bearer_auth(&hub.token)
        .send()
        .expect("GET with the token");
    assert_eq!(r.status().as_u16(), 200);
    let health = hub
        .http
        .get(format!("{}/healthz", hub.url()))
        .send()
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
}

#[test]
fn records_survive_a_restart_with_the_same_provenance() {
    let mut hub = hub();
    let profile = hub.publish_ok(&sample("hds-profile"));
    let service = hub.publish_ok(&sample("hds-testbed"));
    let (_, before) = hub.status();

    hub.restart().expect("restart");
    for view in [&profile, &service] {
        let id = view["id"].as_str().expect("id");
        let (code, got) = hub.get(id);
        assert_eq!(code, 200, "{id} after restart: {got}");
        assert_eq!(got["record"], view["record"], "{id}");
        assert_eq!(got["provenance"], view["provenance"], "{id}");
    }
    let (_, after) = hub.status();
    assert_eq!(after["digest"], before["digest"]);
    assert_eq!(after["did"], before["did"]);
    assert_eq!(hub.count(), 2);
    let (code, exported) = hub.export();
    assert_eq!(code, 200);
    let bundle: Bundle = serde_json::from_value(exported).expect("bundle");
    let report = bundle::verify(&bundle, hubcat_protocol::now_ms()).expect("verifies");
    assert_eq!(report.records, 2);

    // And the node still writes after the restart.
    let mut changed = sample("hds-testbed");
    changed["cost"] = "free".into();
    let updated = hub.publish_ok(&changed);
    assert_eq!(updated["id"], service["id"]);
    assert_eq!(updated["record"]["cost"], "free");
}

// ---------------------------------------------------------------------------------------------
// Forged changes, straight into the engine
// ---------------------------------------------------------------------------------------------

const NOW_SLACK_MS: i64 = 1000;

fn record(v: Value) -> Record {
    Record::from_value(v).expect("valid record")
}

/// A change by `writer` on `doc_owner`'s document upserting `rec`, signed by `signer` (author =
/// signer's key) — any of these may differ to forge something.
fn signed_upsert(doc_owner: &HubKey, signer: &HubKey, rec: &Record) -> SignedChange {
    let mut doc = CatalogueDoc::new(doc_owner.id(), [7u8; 16]);
    let change = doc
        .upsert(rec, hubcat_protocol::now_ms() - NOW_SLACK_MS)
        .expect("upsert");
    change::sign(signer, doc.id(), &change)
}

#[test]
fn forged_changes_are_refused_and_leave_the_store_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SledStore::open(&tmp.path().join("store")).expect("store"));
    let victim = HubKey::generate().expect("key");
    let attacker = HubKey::generate().expect("key");
    let catalogue = Catalogue::open(store.clone(), victim.clone_key()).expect("catalogue");

    let published = catalogue
        .publish(&record(sample("hds-testbed")))
        .expect("publish");
    let id = published.id.clone();
    let before_count = catalogue.record_count();
    let before_digest = catalogue.status().digest;
    let before_changes = store.change_count();
    assert_eq!(before_changes, 1);

    let mut hijack = sample("hds-testbed");
    hijack["title"]["en"] = "Send your data to evil.example".into();
    let hijack = record(hijack);

    // 1. Signed by the wrong key: the victim's document and author, the attacker's signature.
    let mut wrong_key = signed_upsert(&victim, &attacker, &hijack);
    wrong_key.author = *victim.id().as_bytes();

    // 2. A genuine victim change whose bytes were altered in transit.
    let genuine = signed_upsert(&victim, &victim, &record(sample("hds-practice")));
    let mut altered = genuine.clone();
    let needle = b"Region Stockholm";
    match altered
        .change
        .windows(needle.len())
        .position(|w| w == needle)
    {
        Some(at) => altered.change[at] = b'X',
        None => {
            let mid = altered.change.len() / 2;
            altered.change[mid] ^= 0x01;
        }
    }

    // 3. The attacker writing the victim's document, signing as itself.
    let foreign = signed_upsert(&victim, &attacker, &hijack);
    assert_eq!(foreign.doc, DocId::Hub(victim.id()));
    assert_eq!(foreign.author, *attacker.id().as_bytes());

    let report = catalogue
        .ingest(vec![wrong_key, altered, foreign], hubcat_protocol::now_ms())
        .expect("ingest");
    assert_eq!(report.accepted, 0, "{report:?}");
    let reasons: Vec<(usize, &str)> = report.refused.iter().map(|r| (r.index, r.reason)).collect();
    assert_eq!(reasons.len(), 3, "{report:?}");
    assert_eq!(reasons[0], (0, "bad_signature"), "{report:?}");
    assert_eq!(reasons[1].0, 1);
    assert!(
        ["undecodable", "bad_signature"].contains(&reasons[1].1),
        "{report:?}"
    );
    assert_eq!(reasons[2], (2, "not_authorised"), "{report:?}");
    assert!(report.refused.iter().all(|r| !r.detail.is_empty()));

    assert_eq!(catalogue.record_count(), before_count);
    let status = catalogue.status();
    assert_eq!(status.digest, before_digest);
    assert_eq!(status.changes_refused, 3);
    assert_eq!(store.change_count(), before_changes);
    let still = catalogue.get(&id).expect("record");
    assert_eq!(
        still.record.title(Some("en")),
        "Health data testbed for AI products"
    );
    assert_eq!(still.provenance, published.provenance);

    // Control: the untampered genuine change and a third hub's own change are accepted.
    let third = HubKey::generate().expect("key");
    let report = catalogue
        .ingest(
            vec![
                genuine,
                signed_upsert(&third, &third, &record(sample("galicia-pilots"))),
            ],
            hubcat_protocol::now_ms(),
        )
        .expect("ingest");
    assert_eq!(report.accepted, 2, "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(catalogue.record_count(), before_count + 2);
    assert_eq!(store.change_count(), before_changes + 2);
}

/// Cloning a key through its secret bytes (HubKey is deliberately not Clone).
trait CloneKey {
    fn clone_key(&self) -> HubKey;
}

impl CloneKey for HubKey {
    fn clone_key(&self) -> HubKey {
        HubKey::from_secret_bytes(self.secret_bytes().as_ref()).expect("key")
    }
}
