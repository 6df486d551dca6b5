//! Search, freshness, duplicates, gaps and matchmaking on in-process hubs, as a user of the
//! API sees them: records published on one hub are found on another, in any language; filters,
//! facets and pages add up; stale records are flagged until their publisher confirms them;
//! bad parameters are refused by name and change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hubcat_protocol::{change, CatalogueDoc, HubKey, Record, SignedChange};
use hubcat_tests::{sample, urlencode, wait_until, TestHub};
use reqwest::Method;
use serde_json::{json, Value};

const CONVERGE: Duration = Duration::from_secs(30);
const DAY_MS: i64 = 86_400_000;

/// A hub publishing straight into a node's catalogue with its own key and document (as if its
/// changes had arrived by sync), at any signing time.
struct Remote {
    key: HubKey,
    doc: CatalogueDoc,
}

impl Remote {
    fn new(seed: u8) -> Remote {
        let key = HubKey::from_secret_bytes(&[seed; 32]).expect("key");
        Remote::with_key(key, [seed; 16])
    }

    fn with_key(key: HubKey, actor_suffix: [u8; 16]) -> Remote {
        let doc = CatalogueDoc::new(key.id(), actor_suffix);
        Remote { key, doc }
    }

    fn did(&self) -> String {
        self.key.id().to_did()
    }

    fn id(&self, slug: &str) -> String {
        format!("{slug}@{}", self.key.id().to_multibase())
    }

    fn publish(&mut self, hub: &TestHub, record: Value) {
        self.publish_at(hub, record, hubcat_protocol::now_ms());
    }

    /// A signed change upserting `record`, or why the record is invalid.
    fn sign(&mut self, record: Value, at_ms: i64) -> Result<SignedChange, String> {
        let record = Record::from_value(record).map_err(|e| e.to_string())?;
        let change = self.doc.upsert(&record, at_ms).map_err(|e| e.to_string())?;
        Ok(change::sign(&self.key, self.doc.id(), &change))
    }

    fn publish_at(&mut self, hub: &TestHub, record: Value, at_ms: i64) {
        let envelope = self.sign(record, at_ms).expect("valid record");
        let report = hub
            .catalogue()
            .ingest(vec![envelope], hubcat_protocol::now_ms())
            .expect("ingest");
        assert_eq!(report.accepted, 1, "refused: {report:?}");
    }
}

fn search(hub: &TestHub, query: &str) -> Value {
    let (status, body) = hub.request(Method::GET, &format!("/v1/search?{query}"), None, None);
    assert_eq!(status, 200, "search {query} failed: {body}");
    body
}

/// The slugs (id before `@`) of a search's results, in rank order.
fn slugs(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .expect("id")
                .split('@')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn service(slug: &str, title: Value, category: &str, area: &[&str], languages: &[&str]) -> Value {
    json!({"kind": "service", "id": slug, "title": title,
           "description": {"en": "A service for small and medium enterprises."},
           "category": category, "area_served": area, "languages": languages})
}

fn profile(
    name: &str,
    title: &str,
    country: &str,
    regions: &[&str],
    website: Option<&str>,
) -> Value {
    let mut p = json!({"kind": "profile", "name": name, "title": {"en": title},
        "hub_type": "edih", "country": country, "regions": regions});
    if let Some(w) = website {
        p["website"] = json!(w);
    }
    p
}

#[test]
fn a_record_published_on_one_hub_is_found_on_the_others_stemmed_and_withdrawals_disappear() {
    let a = TestHub::start("HDS", "SE").expect("hub A");
    let b = TestHub::start_with("GAL", "ES", &[a.p2p_addr()]).expect("hub B");
    let c = TestHub::start_with("THESS", "GR", &[a.p2p_addr()]).expect("hub C");

    // Swedish text with "hälsodatan" (the data), never "hälsodata".
    let mut testbed = sample("hds-testbed");
    testbed["title"]["sv"] = json!("Testbädd för AI-produkter");
    testbed["description"]["sv"] =
        json!("Testa och validera AI-baserade produkter på pseudonymiserade hälsodatan.");
    let published = a.publish_ok(&testbed);
    let id = published["id"].as_str().expect("id").to_owned();
    // Spanish only.
    let mut galicia = sample("galicia-pilots");
    galicia["title"] = json!({"es": "Pruebas piloto en laboratorios hospitalarios"});
    galicia["description"] = json!({"es": "Pruebe su producto de salud digital con clínicos en laboratorios hospitalarios reales."});
    galicia["languages"] = json!(["es", "gl"]);
    b.publish_ok(&galicia);
    b.publish_ok(&json!({"kind": "service", "id": "hospital-lab-testing",
        "title": {"en": "Testing in hospital laboratories"},
        "description": {"en": "Clinical laboratories test your device with real hospitals."},
        "category": "test-before-invest", "area_served": ["ES"], "languages": ["en"]}));

    // On C, a Swedish word finds the Swedish description's inflected form (stemming and
    // prefix), and a Spanish plural finds the Spanish singular and vice versa.
    assert!(
        wait_until(CONVERGE, || slugs(&search(&c, "q=h%C3%A4lsodata"))
            == ["health-data-testbed"]),
        "the Swedish record never became searchable on C: {}",
        search(&c, "q=h%C3%A4lsodata")
    );
    let found = search(&c, "q=h%C3%A4lsodata");
    let hit = &found["results"][0];
    assert_eq!(hit["id"], id.as_str());
    assert_eq!(hit["publisher"]["did"], published["publisher"]);
    assert_eq!(
        hit["publisher"]["name"],
        Value::Null,
        "A published no profile yet"
    );
    assert_eq!(hit["provenance"], published["provenance"]);
    assert_eq!(hit["stale"], false);
    assert!(wait_until(CONVERGE, || search(&c, "q=laboratorio")
        ["total"]
        == 1));
    assert_eq!(
        slugs(&search(&c, "q=laboratorio")),
        ["hospital-pilot-testing"]
    );
    assert_eq!(
        slugs(&search(&c, "q=laboratorios")),
        ["hospital-pilot-testing"]
    );
    // English stemming: "laboratory" finds "laboratories". B's second record may reach C
    // after its first, so this waits for it too.
    assert!(
        wait_until(CONVERGE, || slugs(&search(&c, "q=laboratory"))
            == ["hospital-lab-testing"]),
        "the English record never became searchable on C: {}",
        search(&c, "q=laboratory")
    );

    // The requested language ranks first, and titles come in it.
    let es = search(&c, "q=hospital&lang=es");
    assert_eq!(
        slugs(&es),
        ["hospital-pilot-testing", "hospital-lab-testing"]
    );
    assert_eq!(
        es["results"][0]["title"],
        "Pruebas piloto en laboratorios hospitalarios"
    );
    assert_eq!(es["results"][0]["title_language"], "es");
    let en = search(&c, "q=hospital&lang=en");
    assert_eq!(
        slugs(&en),
        ["hospital-lab-testing", "hospital-pilot-testing"]
    );
    assert_eq!(
        en["results"][1]["title"],
        "Pruebas piloto en laboratorios hospitalarios"
    );
    assert_eq!(en["results"][1]["title_language"], "es");

    // A profile names the publisher in results everywhere.
    a.publish_ok(&sample("hds-profile"));
    assert!(wait_until(CONVERGE, || {
        search(&c, "q=h%C3%A4lsodata")["results"][0]["publisher"]["name"] == "HDS"
    }));

    // A withdrawal disappears from search on every hub (each of which found it first).
    assert!(wait_until(CONVERGE, || [&a, &b].iter().all(|hub| search(
        hub,
        "q=h%C3%A4lsodata"
    )["results"][0]["publisher"]["name"]
        == "HDS")));
    let (status, _) = a.delete(&id);
    assert_eq!(status, 200);
    for hub in [&a, &b, &c] {
        assert!(
            wait_until(CONVERGE, || search(hub, "q=h%C3%A4lsodata")["total"] == 0),
            "the withdrawn record is still found on {}",
            hub.url()
        );
    }
}

/// One hub holding records of three publishers with known filter values.
fn filter_fixture() -> (TestHub, Remote, Remote) {
    let hub = TestHub::start("HDS", "SE").expect("hub");
    hub.publish_ok(&sample("hds-profile"));
    hub.publish_ok(&sample("hds-testbed"));
    hub.publish_ok(&sample("hds-practice"));
    hub.publish_ok(&service(
        "sthlm-training",
        json!({"en": "AI training for SMEs in Stockholm"}),
        "skills-and-training",
        &["SE110"],
        &["sv"],
    ));
    let mut gal = Remote::new(21);
    gal.publish(
        &hub,
        profile("GAL", "Galician health living lab", "ES", &["ES11"], None),
    );
    gal.publish(&hub, sample("galicia-pilots"));
    gal.publish(
        &hub,
        json!({"kind": "practice", "id": "tele-icu",
        "title": {"es": "UCI a distancia", "en": "Tele-ICU"},
        "description": {"en": "Intensive care specialists support small hospitals remotely."},
        "practice_type": "app", "maturity": "pilot", "countries": ["ES"],
        "open_to_twinning": false}),
    );
    let mut thess = Remote::new(22);
    thess.publish(
        &hub,
        json!({"kind": "profile", "name": "THESS",
        "title": {"en": "Thessaloniki innovation ecosystem"}, "hub_type": "dih",
        "country": "GR", "regions": ["EL52"]}),
    );
    thess.publish(&hub, sample("okthess-investor"));
    (hub, gal, thess)
}

#[test]
fn filters_alone_and_combined_facets_pages_and_nuts_prefixes() {
    let (hub, gal, thess) = filter_fixture();
    let all = search(&hub, "");
    assert_eq!(all["total"], 9);

    let cases: &[(&str, &[&str])] = &[
        (
            "kind=service",
            &[
                "health-data-testbed",
                "hospital-pilot-testing",
                "investor-readiness",
                "sthlm-training",
            ],
        ),
        ("kind=practice", &["remote-patient-monitoring", "tele-icu"]),
        (
            "category=test-before-invest",
            &["health-data-testbed", "hospital-pilot-testing"],
        ),
        ("technology=iot", &["hospital-pilot-testing"]),
        // The HDS profile names big-data too.
        (
            "technology=iot,big-data",
            &["health-data-testbed", "hospital-pilot-testing", "profile"],
        ),
        (
            "sector=health-care",
            &["health-data-testbed", "hospital-pilot-testing", "profile"],
        ),
        // A region counts for its country: EL52 is in Greece (GR in ISO, EL in NUTS).
        ("country=GR", &["investor-readiness", "profile"]),
        ("country=EL", &["investor-readiness", "profile"]),
        (
            "country=ES",
            &["hospital-pilot-testing", "profile", "tele-icu"],
        ),
        // NUTS prefixes: SE1 holds SE11 and SE110.
        (
            "region=SE1",
            &["health-data-testbed", "profile", "sthlm-training"],
        ),
        (
            "region=SE11",
            &["health-data-testbed", "profile", "sthlm-training"],
        ),
        ("region=SE110", &["sthlm-training"]),
        ("region=EL5", &["investor-readiness", "profile"]),
        ("language=gl", &["hospital-pilot-testing"]),
        ("maturity=deployed", &["remote-patient-monitoring"]),
        ("practice_type=app", &["tele-icu"]),
        ("open_to_twinning=true", &["remote-patient-monitoring"]),
        ("open_to_twinning=false", &["tele-icu"]),
        ("hub_type=dih", &["investor-readiness", "profile"]),
        (
            "kind=service&country=SE&category=skills-and-training",
            &["sthlm-training"],
        ),
        (
            "kind=service&region=SE1&technology=big-data",
            &["health-data-testbed"],
        ),
        ("q=hospital&country=ES&kind=practice", &["tele-icu"]),
        ("q=training&language=sv", &["sthlm-training"]),
        (
            "fresh=true&kind=practice",
            &["remote-patient-monitoring", "tele-icu"],
        ),
        ("fresh=false", &[]),
    ];
    for (query, expected) in cases {
        let got = sorted(slugs(&search(&hub, &format!("{query}&per_page=100"))));
        let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, sorted(want), "filter {query}");
    }
    let publisher = search(&hub, &format!("publisher={}", urlencode(&gal.did())));
    assert_eq!(
        sorted(slugs(&publisher)),
        ["hospital-pilot-testing", "profile", "tele-icu"]
    );
    let thess_services = search(
        &hub,
        &format!("publisher={}&kind=service", urlencode(&thess.did())),
    );
    assert_eq!(slugs(&thess_services), ["investor-readiness"]);
    assert_eq!(thess_services["results"][0]["publisher"]["name"], "THESS");

    // Facets count every hit; a single-valued facet adds up to the hit count.
    let services = search(&hub, "kind=service&per_page=1");
    assert_eq!(services["total"], 4);
    let category_sum: u64 = services["facets"]["category"]
        .as_array()
        .expect("category facet")
        .iter()
        .map(|c| c["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(category_sum, 4);
    let practices = search(&hub, "kind=practice");
    for facet in ["maturity", "practice_type"] {
        let sum: u64 = practices["facets"][facet]
            .as_array()
            .expect("facet")
            .iter()
            .map(|c| c["count"].as_u64().expect("count"))
            .sum();
        assert_eq!(sum, 2, "{facet} facet");
    }
    let countries: BTreeMap<String, u64> = all["facets"]["country"]
        .as_array()
        .expect("country facet")
        .iter()
        .map(|c| {
            (
                c["value"].as_str().expect("value").to_owned(),
                c["count"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(countries.get("SE"), Some(&4));
    assert_eq!(countries.get("GR"), Some(&2));
    assert_eq!(countries.get("ES"), Some(&3));

    // Pages: every hit once, in rank order, with the same total.
    let mut paged = Vec::new();
    for page in 1..=5 {
        let v = search(&hub, &format!("per_page=2&page={page}"));
        assert_eq!(v["total"], 9);
        assert_eq!(v["pages"], 5);
        paged.extend(
            v["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| r["id"].clone()),
        );
    }
    let one_page: Vec<Value> = search(&hub, "per_page=100")["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(paged, one_page);
    assert_eq!(search(&hub, "per_page=2&page=6")["results"], json!([]));
}

#[test]
fn bad_parameters_are_refused_by_name_and_change_nothing() {
    let hub = TestHub::start("HDS", "SE").expect("hub");
    let view = hub.publish_ok(&sample("hds-testbed"));
    let id = view["id"].as_str().expect("id").to_owned();
    let mut other = Remote::new(40);
    other.publish(&hub, sample("galicia-pilots"));
    let digest = hub.digest();
    let before = search(&hub, "q=testbed");
    let cases: &[(Method, &str, Option<Value>, &str)] = &[
        (Method::GET, "/v1/search?kind=hub", None, "kind"),
        (Method::GET, "/v1/search?category=testing", None, "category"),
        (Method::GET, "/v1/search?technology=ai", None, "technology"),
        (Method::GET, "/v1/search?country=SWE", None, "country"),
        (Method::GET, "/v1/search?region=SE99", None, "region"),
        (Method::GET, "/v1/search?language=xx", None, "language"),
        (Method::GET, "/v1/search?maturity=old", None, "maturity"),
        (Method::GET, "/v1/search?fresh=maybe", None, "fresh"),
        (Method::GET, "/v1/search?page=0", None, "page"),
        (Method::GET, "/v1/search?per_page=1000", None, "per_page"),
        (Method::GET, "/v1/search?publisher=hds", None, "publisher"),
        (Method::GET, "/v1/search?colour=blue", None, "colour"),
        (Method::GET, "/v1/gaps?by=planet", None, "by"),
        (
            Method::GET,
            "/v1/gaps?technology=telepathy",
            None,
            "technology",
        ),
        (Method::GET, "/v1/duplicates?x=1", None, "x"),
        (
            Method::POST,
            "/v1/match",
            Some(json!({"country": "SE"})),
            "need",
        ),
        (
            Method::POST,
            "/v1/match",
            Some(json!({"need": "AI", "country": "Sweden"})),
            "country",
        ),
        (
            Method::POST,
            "/v1/match",
            Some(json!({"need": "AI", "country": "SE", "trl": 12})),
            "trl",
        ),
        (
            Method::POST,
            "/v1/match",
            Some(json!({"need": "AI", "country": "SE", "language": "swe"})),
            "language",
        ),
        (
            Method::POST,
            "/v1/match",
            Some(json!({"need": "AI", "country": "SE", "audience": ["aliens"]})),
            "audience",
        ),
        (
            Method::POST,
            "/v1/match",
            Some(json!({"need": "AI", "country": "SE", "budget": 5})),
            "budget",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, err) = hub.request(
            method.clone(),
            path,
            None,
            body.as_ref().map(|b| b.to_string().into_bytes()),
        );
        assert_eq!(status, 400, "{path} {body:?}: {err}");
        assert_eq!(err["field"], *field, "{path} {body:?}: {err}");
        assert_eq!(err["error"], "invalid_request", "{path}: {err}");
        assert!(err["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // Writes: no token, or a record that is not ours or not there.
    let (status, _) = hub.request(
        Method::POST,
        &format!("/v1/records/{}/confirm", urlencode(&id)),
        None,
        None,
    );
    assert_eq!(status, 401);
    let (status, _) = hub.request(Method::POST, "/v1/confirm", Some("wrong"), None);
    assert_eq!(status, 401);
    let (status, _) = hub.request(Method::POST, "/v1/reindex", None, None);
    assert_eq!(status, 401);
    let (status, _) = hub.request(
        Method::POST,
        "/v1/records/nope/confirm",
        Some(&hub.token),
        None,
    );
    assert_eq!(status, 404);
    let (status, err) = hub.request(
        Method::POST,
        &format!(
            "/v1/records/{}/confirm",
            urlencode(&other.id("hospital-pilot-testing"))
        ),
        Some(&hub.token),
        None,
    );
    assert_eq!(status, 403, "{err}");
    assert_eq!(
        hub.digest(),
        digest,
        "a refused request changed the catalogue"
    );
    assert_eq!(search(&hub, "q=testbed")["results"], before["results"]);
}

#[test]
fn stale_records_are_flagged_and_filterable_until_confirmed() {
    let hub = TestHub::start_configured(
        "HDS",
        "SE",
        &[],
        &[("catalogue.stale_after_days", toml::Value::Integer(30))],
    )
    .expect("hub");
    let now = hubcat_protocol::now_ms();
    // This hub's own record, signed 40 days ago by another node of the hub (its own key).
    let mut own_old = Remote::with_key(hub.data_dir.load_key().expect("key"), [7; 16]);
    own_old.publish_at(&hub, sample("hds-practice"), now - 40 * DAY_MS);
    own_old.publish_at(&hub, sample("hds-testbed"), now - 40 * DAY_MS);
    // Another hub's record signed 29 days ago: still fresh.
    let mut other = Remote::new(31);
    other.publish_at(&hub, sample("galicia-pilots"), now - 29 * DAY_MS);
    hub.publish_ok(&sample("hds-profile"));

    let all = search(&hub, "per_page=100");
    let stale: BTreeMap<String, bool> = all["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let slug = r["id"]
                .as_str()
                .expect("id")
                .split('@')
                .next()
                .expect("slug")
                .to_owned();
            (slug, r["stale"].as_bool().expect("stale flag"))
        })
        .collect();
    assert_eq!(
        stale,
        BTreeMap::from([
            ("health-data-testbed".to_owned(), true),
            ("hospital-pilot-testing".to_owned(), false),
            ("profile".to_owned(), false),
            ("remote-patient-monitoring".to_owned(), true),
        ])
    );
    assert_eq!(
        sorted(slugs(&search(&hub, "fresh=false"))),
        ["health-data-testbed", "remote-patient-monitoring"]
    );
    assert_eq!(
        sorted(slugs(&search(&hub, "fresh=true"))),
        ["hospital-pilot-testing", "profile"]
    );

    // Confirming re-signs with only last_confirmed changed.
    let practice_id = own_old.id("remote-patient-monitoring");
    let (_, before) = hub.get(&practice_id);
    let (status, confirmed) = hub.request(
        Method::POST,
        &format!("/v1/records/{}/confirm", urlencode(&practice_id)),
        Some(&hub.token),
        None,
    );
    assert_eq!(status, 200, "{confirmed}");
    assert_ne!(
        confirmed["provenance"]["change_hash"],
        before["provenance"]["change_hash"]
    );
    let mut same = confirmed["record"].clone();
    same["last_confirmed"] = before["record"]["last_confirmed"].clone();
    assert_eq!(
        same, before["record"],
        "confirm changed more than last_confirmed"
    );
    assert_ne!(
        confirmed["record"]["last_confirmed"],
        before["record"]["last_confirmed"]
    );
    assert_eq!(
        confirmed["record"]["modified"],
        before["record"]["modified"]
    );
    assert_eq!(slugs(&search(&hub, "fresh=false")), ["health-data-testbed"]);
    let hit = search(&hub, "q=monitoring");
    assert_eq!(hit["results"][0]["stale"], false);
    assert_eq!(
        hit["results"][0]["provenance"]["change_hash"],
        confirmed["provenance"]["change_hash"]
    );

    // Confirm every own record: none stays stale; the other hub's record is not touched.
    let (status, all_confirmed) = hub.request(Method::POST, "/v1/confirm", Some(&hub.token), None);
    assert_eq!(status, 200, "{all_confirmed}");
    assert_eq!(all_confirmed["count"], 3);
    assert_eq!(search(&hub, "fresh=false")["total"], 0);
    let (_, theirs) = hub.get(&other.id("hospital-pilot-testing"));
    assert!(theirs["record"]["last_confirmed"]
        .as_str()
        .is_some_and(|t| t < confirmed["record"]["last_confirmed"].as_str().unwrap_or("")));
}

#[test]
fn duplicates_are_profiles_of_different_publishers_with_one_domain_or_name() {
    let hub = TestHub::start("HDS", "SE").expect("hub");
    hub.publish_ok(&profile(
        "HDS",
        "Health Data Sweden",
        "SE",
        &[],
        Some("https://www.healthdata.example.se/"),
    ));
    let mut copy = Remote::new(51);
    copy.publish(
        &hub,
        profile(
            "HDSW",
            "Health data for Sweden",
            "SE",
            &[],
            Some("http://healthdata.example.se/about"),
        ),
    );
    let mut namesake = Remote::new(52);
    namesake.publish(
        &hub,
        profile(
            "Agrotech",
            "Andalucía Agrotech Digital Innovation Hub",
            "ES",
            &[],
            Some("https://a.example.es"),
        ),
    );
    let mut namesake2 = Remote::new(53);
    namesake2.publish(
        &hub,
        profile(
            "AAT",
            "ANDALUCIA AGROTECH digital innovation hub",
            "ES",
            &[],
            Some("https://b.example.es"),
        ),
    );
    let mut unrelated = Remote::new(54);
    unrelated.publish(
        &hub,
        profile(
            "THESS",
            "Thessaloniki innovation",
            "GR",
            &[],
            Some("https://healthdata.example.gr"),
        ),
    );

    let (status, body) = hub.request(Method::GET, "/v1/duplicates", None, None);
    assert_eq!(status, 200, "{body}");
    let groups: BTreeSet<(String, String, BTreeSet<String>)> = body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["reason"].as_str().expect("reason").to_owned(),
                g["key"].as_str().expect("key").to_owned(),
                g["profiles"]
                    .as_array()
                    .expect("profiles")
                    .iter()
                    .map(|p| p["name"].as_str().expect("name").to_owned())
                    .collect(),
            )
        })
        .collect();
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        groups,
        BTreeSet::from([
            (
                "website".to_owned(),
                "healthdata.example.se".to_owned(),
                set(&["HDS", "HDSW"])
            ),
            (
                "name".to_owned(),
                "andalucia agrotech digital innovation hub".to_owned(),
                set(&["AAT", "Agrotech"])
            ),
        ])
    );
    assert_eq!(body["count"], 2);
}

#[test]
fn gaps_of_a_hand_built_federation_are_exactly_its_holes() {
    let hub = TestHub::start("HDS", "SE").expect("hub");
    hub.publish_ok(&profile(
        "HDS",
        "Health Data Sweden",
        "SE",
        &["SE11", "SE12"],
        None,
    ));
    hub.publish_ok(&service(
        "se-test",
        json!({"en": "AI testbed"}),
        "test-before-invest",
        &["SE11"],
        &["sv"],
    ));
    hub.publish_ok(&service(
        "se-skills",
        json!({"en": "AI course"}),
        "skills-and-training",
        &["SE"],
        &["sv"],
    ));
    let mut gal = Remote::new(61);
    gal.publish(&hub, profile("GAL", "Galicia", "ES", &["ES11"], None));
    gal.publish(
        &hub,
        service(
            "es-test",
            json!({"en": "Hospital pilots"}),
            "test-before-invest",
            &["ES11"],
            &["es"],
        ),
    );
    gal.publish(
        &hub,
        service(
            "es-net",
            json!({"en": "Health cluster"}),
            "ecosystem-and-networking",
            &["ES", "PT"],
            &["es"],
        ),
    );
    let mut thess = Remote::new(62);
    thess.publish(
        &hub,
        profile("THESS", "Thessaloniki", "GR", &["EL52"], None),
    );
    thess.publish(
        &hub,
        service(
            "gr-invest",
            json!({"en": "Investor readiness"}),
            "support-to-find-investment",
            &["EL52"],
            &["el"],
        ),
    );
    // A second Swedish provider of training, from Greece, across the border.
    thess.publish(
        &hub,
        service(
            "gr-skills",
            json!({"en": "Skills bootcamp"}),
            "skills-and-training",
            &["GR", "SE"],
            &["en"],
        ),
    );

    let (status, gaps) = hub.request(Method::GET, "/v1/gaps?by=country", None, None);
    assert_eq!(status, 200, "{gaps}");
    assert_eq!(gaps["hub_areas"], json!(["ES", "GR", "SE"]));
    assert_eq!(gaps["areas"], json!(["ES", "GR", "PT", "SE"]));
    let holes: BTreeSet<(String, String)> = gaps["empty"]
        .as_array()
        .expect("empty")
        .iter()
        .map(|h| {
            (
                h["category"].as_str().expect("c").to_owned(),
                h["area"].as_str().expect("a").to_owned(),
            )
        })
        .collect();
    let want = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(c, a)| (c.to_string(), a.to_string()))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        holes,
        want(&[
            ("ecosystem-and-networking", "GR"),
            ("ecosystem-and-networking", "SE"),
            ("skills-and-training", "ES"),
            ("support-to-find-investment", "ES"),
            ("support-to-find-investment", "SE"),
            ("test-before-invest", "GR"),
        ])
    );
    assert_eq!(
        gaps["matrix"]["skills-and-training"]["SE"],
        json!({"services": 2, "hubs": 2})
    );
    assert_eq!(
        gaps["matrix"]["ecosystem-and-networking"]["PT"],
        json!({"services": 1, "hubs": 1})
    );

    // By NUTS region: a service naming its country covers every region in it.
    let (status, by_region) = hub.request(
        Method::GET,
        "/v1/gaps?by=region&category=test-before-invest,skills-and-training",
        None,
        None,
    );
    assert_eq!(status, 200, "{by_region}");
    assert_eq!(
        by_region["hub_areas"],
        json!(["EL52", "ES11", "SE11", "SE12"])
    );
    let holes: BTreeSet<(String, String)> = by_region["empty"]
        .as_array()
        .expect("empty")
        .iter()
        .map(|h| {
            (
                h["category"].as_str().expect("c").to_owned(),
                h["area"].as_str().expect("a").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        holes,
        want(&[
            ("skills-and-training", "ES11"),
            ("test-before-invest", "EL52"),
            ("test-before-invest", "SE12"),
        ])
    );
    // Only services with a technology count when one is asked for: none here has one.
    let (_, tech) = hub.request(Method::GET, "/v1/gaps?technology=quantum", None, None);
    assert_eq!(tech["empty"].as_array().map(Vec::len), Some(12));
}

#[test]
fn a_swedish_need_ranks_the_swedish_testbed_above_a_cross_border_english_service() {
    let hub = TestHub::start("HDS", "SE").expect("hub");
    hub.publish_ok(&sample("hds-profile"));
    hub.publish_ok(&sample("hds-testbed"));
    let mut de = Remote::new(71);
    de.publish(
        &hub,
        profile("KI-DE", "KI Testfeld Deutschland", "DE", &["DE21"], None),
    );
    de.publish(&hub, json!({"kind": "service", "id": "ai-test-lab",
        "title": {"en": "AI test lab for health products"},
        "description": {"en": "Test your AI product in our lab before you invest, wherever you are in Europe."},
        "category": "test-before-invest", "technologies": ["artificial-intelligence"],
        "trl": {"min": 3, "max": 8}, "area_served": ["DE"], "cross_border": true,
        "languages": ["en", "de"]}));
    de.publish(
        &hub,
        json!({"kind": "service", "id": "cloud-course",
        "title": {"en": "Cloud skills course"}, "description": {"en": "Learn cloud computing."},
        "category": "skills-and-training", "area_served": ["DE"], "languages": ["de"]}),
    );

    let (status, body) = hub.request(
        Method::POST,
        "/v1/match",
        None,
        Some(
            json!({"need": "testbädd för AI-produkter med hälsodata", "country": "SE",
                   "region": "SE11", "language": "sv", "technologies": ["artificial-intelligence"],
                   "trl": 5})
            .to_string()
            .into_bytes(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    let order: Vec<&str> = results
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .expect("id")
                .split('@')
                .next()
                .expect("slug")
        })
        .collect();
    assert_eq!(order, ["health-data-testbed", "ai-test-lab"], "{body}");
    let reasons = |i: usize| -> String {
        results[i]["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let first = reasons(0);
    assert!(first.contains("serves your region SE11"), "{first}");
    assert!(first.contains("offered in Swedish (sv)"), "{first}");
    assert!(first.contains("TRL 4–7 fits your TRL 5"), "{first}");
    assert!(first.contains("“testbädd”"), "{first}");
    let second = reasons(1);
    assert!(second.contains("cross-border service"), "{second}");
    assert!(second.contains("not offered in Swedish"), "{second}");
    assert!(results[0]["scores"]["area"].as_f64() > results[1]["scores"]["area"].as_f64());
    assert_eq!(results[0]["publisher"]["name"], "HDS");
    assert!(results[0]["provenance"]["signature"]
        .as_str()
        .is_some_and(|s| s.len() == 128));

    // A category narrows the candidates.
    let (_, skills) = hub.request(
        Method::POST,
        "/v1/match",
        None,
        Some(
            json!({"need": "cloud course", "country": "SE", "category": "skills-and-training"})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(skills["count"], 1, "{skills}");
    assert!(skills["results"][0]["reasons"][1]
        .as_str()
        .is_some_and(|r| r.starts_with("does not serve SE")));
}

#[test]
fn reindex_and_restart_restore_the_same_results() {
    let (mut hub, _, _) = filter_fixture();
    let queries = [
        "q=hospital&lang=es",
        "kind=service&per_page=2&page=2",
        "country=GR",
        "q=AI%20training",
    ];
    let before: Vec<Value> = queries.iter().map(|q| search(&hub, q)).collect();
    assert!(before.iter().all(|v| v["total"].as_u64() > Some(0)));
    let (status, body) = hub.request(Method::POST, "/v1/reindex", Some(&hub.token), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["indexed"], 9);
    // Everything but the clock-dependent threshold and float scores must be equal.
    let strip = |mut v: Value| {
        v.as_object_mut().map(|o| o.remove("stale_before"));
        for r in v["results"].as_array_mut().into_iter().flatten() {
            r.as_object_mut().map(|o| o.remove("score"));
        }
        v
    };
    for (q, b) in queries.iter().zip(&before) {
        assert_eq!(
            strip(search(&hub, q)),
            strip(b.clone()),
            "after reindex: {q}"
        );
    }
    hub.restart().expect("restart");
    for (q, b) in queries.iter().zip(&before) {
        assert_eq!(
            strip(search(&hub, q)),
            strip(b.clone()),
            "after restart: {q}"
        );
    }
}

/// EDIH service terms of the EC export that name one of the four EDIH categories.
fn category_of(term: &str) -> Option<&'static str> {
    match term {
        "Prototyping" | "Field trial" => Some("test-before-invest"),
        "Vocational training" => Some("skills-and-training"),
        "Finance" => Some("support-to-find-investment"),
        "Ecosystem building" => Some("ecosystem-and-networking"),
        _ => None,
    }
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[test]
fn the_real_edih_catalogue_is_searchable_with_its_gaps_and_duplicates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/edih_catalogue.json");
    if !path.exists() {
        eprintln!(
            "skipping: the real EDIH catalogue {} is absent (shared reference data not beside the checkout)",
            path.display()
        );
        return;
    }
    let raw: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("catalogue JSON");
    assert_eq!(raw.len(), 457);
    let hub = TestHub::start("NODE", "BE").expect("hub");
    let now = hubcat_protocol::now_ms();

    // One key per real hub: its profile, and one service per EDIH category it lists.
    let mut envelopes = Vec::new();
    let mut loaded: Vec<(&Value, BTreeSet<&'static str>)> = Vec::new();
    let mut refused = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        let s = |k: &str| h[k].as_str().unwrap_or("").to_owned();
        let hub_type = match s("status").as_str() {
            "EDIH" => "edih",
            "Seal of Excellence" => "seal-of-excellence",
            _ => "dih",
        };
        let description = cut(s("description").trim(), 2000);
        let mut profile = json!({"kind": "profile", "name": cut(&s("name"), 60),
            "title": {"en": cut(&s("title"), 200)}, "hub_type": hub_type,
            "country": s("country")});
        if !description.is_empty() {
            profile["description"] = json!({"en": description});
        }
        if let Some(w) = h["website"].as_str().filter(|w| w.contains('.')) {
            profile["website"] = json!(if w.starts_with("http") {
                w.to_owned()
            } else {
                format!("https://{w}")
            });
        }
        let categories: BTreeSet<&'static str> = h["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["term"].as_str().and_then(category_of))
            .collect();
        let mut remote = Remote::with_key(
            HubKey::from_secret_bytes(&{
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(1_000 + i as u64).to_be_bytes());
                seed
            })
            .expect("key"),
            [1; 16],
        );
        match remote.sign(profile, now) {
            Ok(e) => envelopes.push(e),
            Err(e) => {
                refused.push(format!("{}: {e}", s("name")));
                continue;
            }
        }
        for c in &categories {
            let service = json!({"kind": "service", "id": c,
                "title": {"en": format!("{} — {}", c, cut(&s("title"), 150))},
                "description": {"en": if description.is_empty() { s("title") } else { cut(&description, 400) }},
                "category": c, "area_served": [s("country")]});
            envelopes.push(
                remote
                    .sign(service, now)
                    .expect("service from a valid profile"),
            );
        }
        loaded.push((h, categories));
    }
    assert!(
        refused.len() < 10,
        "too many real hubs refused: {refused:?}"
    );
    for batch in envelopes.chunks(256) {
        let r = hub.catalogue().ingest(batch.to_vec(), now).expect("ingest");
        assert!(r.refused.is_empty(), "{:?}", r.refused);
    }

    // Profiles by country, Greece under either code.
    let mut per_country: BTreeMap<String, u64> = BTreeMap::new();
    for (h, _) in &loaded {
        *per_country
            .entry(h["country"].as_str().expect("country").to_owned())
            .or_default() += 1;
    }
    for (country, n) in &per_country {
        let v = search(&hub, &format!("kind=profile&country={country}&per_page=1"));
        assert_eq!(v["total"].as_u64(), Some(*n), "profiles in {country}");
    }
    if let Some(gr) = per_country.get("GR") {
        assert_eq!(
            search(&hub, "kind=profile&country=EL")["total"].as_u64(),
            Some(*gr)
        );
    }
    let facet_total: u64 = search(&hub, "kind=profile")["facets"]["country"]
        .as_array()
        .expect("country facet")
        .iter()
        .map(|c| c["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(facet_total, loaded.len() as u64, "one country per profile");

    // Real text: both Andalucía Agrotech hubs.
    let agro = search(&hub, "q=agrotech&kind=profile");
    let titles: Vec<&str> = agro["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["title"].as_str())
        .collect();
    assert!(
        titles.iter().filter(|t| t.contains("Agrotech")).count() >= 2,
        "{titles:?}"
    );

    // Gaps: exactly the (category, country) pairs no hub of that country offers.
    let mut offered: BTreeSet<(String, String)> = BTreeSet::new();
    let countries: BTreeSet<String> = per_country.keys().cloned().collect();
    for (h, cats) in &loaded {
        for c in cats {
            offered.insert((c.to_string(), h["country"].as_str().expect("c").to_owned()));
        }
    }
    let mut expected = BTreeSet::new();
    for c in [
        "test-before-invest",
        "skills-and-training",
        "support-to-find-investment",
        "ecosystem-and-networking",
    ] {
        for country in &countries {
            if !offered.contains(&(c.to_owned(), country.clone())) {
                expected.insert((c.to_owned(), country.clone()));
            }
        }
    }
    let (status, gaps) = hub.request(Method::GET, "/v1/gaps?by=country", None, None);
    assert_eq!(status, 200);
    let holes: BTreeSet<(String, String)> = gaps["empty"]
        .as_array()
        .expect("empty")
        .iter()
        .map(|h| {
            (
                h["category"].as_str().expect("c").to_owned(),
                h["area"].as_str().expect("a").to_owned(),
            )
        })
        .collect();
    assert_eq!(holes, expected);
    assert!(!holes.is_empty() && holes.len() < countries.len() * 4);

    // Duplicates: every website domain two real hubs share is reported, and only those.
    let mut by_domain: BTreeMap<String, usize> = BTreeMap::new();
    for (h, _) in &loaded {
        if let Some(w) = h["website"].as_str().filter(|w| w.contains('.')) {
            let host = w
                .split("://")
                .last()
                .unwrap_or(w)
                .split('/')
                .next()
                .unwrap_or("")
                .to_lowercase();
            let host = host.strip_prefix("www.").unwrap_or(&host).to_owned();
            *by_domain.entry(host).or_default() += 1;
        }
    }
    let shared: BTreeSet<String> = by_domain
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(d, _)| d)
        .collect();
    assert!(shared.contains("sirris.be"), "{shared:?}");
    let (status, dups) = hub.request(Method::GET, "/v1/duplicates", None, None);
    assert_eq!(status, 200);
    let groups = dups["groups"].as_array().expect("groups");
    let reported: BTreeSet<String> = groups
        .iter()
        .filter(|g| g["reason"] == "website")
        .map(|g| g["key"].as_str().expect("key").to_owned())
        .collect();
    assert_eq!(reported, shared);
    for name in ["datalife", "nest", "cih"] {
        assert!(
            groups
                .iter()
                .any(|g| g["reason"] == "name" && g["key"] == name),
            "duplicate name {name} not reported"
        );
    }
}

/// Every route, fed bad input: a 4xx whose body names the parameter or field at fault (or, for
/// unknown ids and routes, what was not found), and the catalogue is untouched.
#[test]
fn every_route_refuses_bad_input_naming_what_was_wrong_and_changes_nothing() {
    let hub = TestHub::start("HDS", "SE").expect("hub");
    let id = hub.publish_ok(&sample("hds-testbed"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, before) = hub.status();
    let token = hub.token.clone();
    let t = Some(token.as_str());
    let body = |v: Value| Some(v.to_string().into_bytes());
    // (method, path, token, body, status, what the body must name)
    type Case<'a> = (
        Method,
        String,
        Option<&'a str>,
        Option<Vec<u8>>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/v1/search?kind=offering".into(),
            None,
            None,
            400,
            "kind",
        ),
        (
            Method::GET,
            "/v1/search?country=XX".into(),
            None,
            None,
            400,
            "country",
        ),
        (
            Method::GET,
            "/v1/search?region=ZZ99".into(),
            None,
            None,
            400,
            "region",
        ),
        (
            Method::GET,
            "/v1/search?language=xx".into(),
            None,
            None,
            400,
            "language",
        ),
        (
            Method::GET,
            "/v1/search?maturity=ripe".into(),
            None,
            None,
            400,
            "maturity",
        ),
        (
            Method::GET,
            "/v1/search?technology=magic".into(),
            None,
            None,
            400,
            "technology",
        ),
        (
            Method::GET,
            "/v1/search?page=0".into(),
            None,
            None,
            400,
            "page",
        ),
        (
            Method::GET,
            "/v1/search?per_page=100000".into(),
            None,
            None,
            400,
            "per_page",
        ),
        (
            Method::GET,
            "/v1/search?open_to_twinning=maybe".into(),
            None,
            None,
            400,
            "open_to_twinning",
        ),
        (
            Method::GET,
            "/v1/search?colour=blue".into(),
            None,
            None,
            400,
            "colour",
        ),
        (
            Method::GET,
            "/v1/gaps?by=planet".into(),
            None,
            None,
            400,
            "by",
        ),
        (
            Method::GET,
            "/v1/gaps?category=nothing".into(),
            None,
            None,
            400,
            "category",
        ),
        (
            Method::GET,
            "/v1/records?kind=offering".into(),
            None,
            None,
            400,
            "kind",
        ),
        (
            Method::GET,
            "/v1/records/no-such-record".into(),
            None,
            None,
            404,
            "no-such-record",
        ),
        (
            Method::GET,
            "/v1/export?format=pdf".into(),
            None,
            None,
            400,
            "format",
        ),
        (
            Method::POST,
            "/v1/match".into(),
            None,
            body(json!({"country": "SE"})),
            400,
            "need",
        ),
        (
            Method::POST,
            "/v1/match".into(),
            None,
            body(json!({"need": "AI", "country": "XX"})),
            400,
            "country",
        ),
        (
            Method::POST,
            "/v1/match".into(),
            None,
            body(json!({"need": "AI", "country": "SE", "trl": 12})),
            400,
            "trl",
        ),
        (
            Method::POST,
            "/v1/match".into(),
            None,
            Some(b"{not json".to_vec()),
            400,
            "body",
        ),
        (
            Method::POST,
            "/v1/records".into(),
            t,
            Some(b"[1, 2]".to_vec()),
            400,
            "JSON object",
        ),
        (
            Method::POST,
            "/v1/records/no-such-record/confirm".into(),
            t,
            None,
            404,
            "no-such-record",
        ),
        (
            Method::POST,
            format!("/v1/records/{id}/confirm"),
            None,
            None,
            401,
            "api.token",
        ),
        (
            Method::DELETE,
            "/v1/records/no-such-record".into(),
            t,
            None,
            404,
            "no-such-record",
        ),
        (
            Method::POST,
            "/v1/import?format=xml".into(),
            t,
            Some(b"x".to_vec()),
            400,
            "format",
        ),
        (
            Method::POST,
            "/v1/reindex".into(),
            None,
            None,
            401,
            "api.token",
        ),
        (Method::GET, "/v1/nowhere".into(), None, None, 404, "route"),
        (Method::PUT, "/v1/records".into(), t, None, 405, "method"),
        (
            Method::GET,
            "/v1/federation/members".into(),
            None,
            None,
            404,
            "no federation",
        ),
        (
            Method::POST,
            "/v1/federation/votes".into(),
            None,
            body(json!({"action": "endorse", "target": "did:key:z6Mk"})),
            401,
            "api.token",
        ),
        (
            Method::POST,
            "/v1/federation/votes".into(),
            t,
            body(json!({"action": "expel", "target": "did:key:z6Mk"})),
            400,
            "action",
        ),
        (
            Method::POST,
            "/v1/federation/votes".into(),
            t,
            body(json!({"action": "endorse", "target": "hub-42"})),
            400,
            "target",
        ),
        (
            Method::POST,
            "/v1/federation/votes".into(),
            t,
            body(json!({"action": "endorse", "target": "did:key:z6Mk", "weight": 3})),
            400,
            "weight",
        ),
        (
            Method::POST,
            "/v1/federation/votes".into(),
            t,
            Some(b"{not json".to_vec()),
            400,
            "body",
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, token, body, status, names) in cases {
        let (code, v) = hub.request(method.clone(), &path, token, body);
        let text = v.to_string();
        if code != status || !text.contains(names) || v["error"].as_str().is_none() {
            wrong.push(format!(
                "{method} {path}: {code} {text} (wanted {status} naming `{names}`)"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let (_, after) = hub.status();
    assert_eq!(after["digest"], before["digest"], "the catalogue changed");
    assert_eq!(after["changes"], before["changes"]);
}
