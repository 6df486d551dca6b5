//! Federation genesis through the `hubcat` binary: founders create and sign a genesis, hubs
//! join by it, and a genesis whose founder signatures do not all verify is refused with
//! nothing changed. Nodes of one genesis federate; a node of another genesis never mixes in.

use std::path::Path;
use std::time::Duration;

use hubcat_tests::{init_hub_with, path_str, run_hubcat, wait_until, write_file, NodeProcess};
use serde_json::Value;

fn cli_json(args: &[&str]) -> Value {
    let (code, out, err) = run_hubcat(args);
    assert_eq!(code, 0, "hubcat {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("hubcat {args:?} printed {out}: {e}"))
}

fn status(node: &NodeProcess) -> Value {
    cli_json(&["status", "--json", "--data-dir", path_str(&node.dir)])
}

fn publish(node: &NodeProcess, slug: &str) {
    let file = write_file(
        node.dir.parent().expect("parent"),
        &format!("{slug}.json"),
        &format!(
            r#"{{"kind": "service", "id": "{slug}", "title": {{"en": "Service {slug}"}},
               "description": {{"en": "Offered to SMEs."}}, "category": "skills-and-training"}}"#
        ),
    );
    let (code, _, err) = run_hubcat(&[
        "publish",
        "--data-dir",
        path_str(&node.dir),
        path_str(&file),
    ]);
    assert_eq!(code, 0, "publish failed: {err}");
}

fn sign(dir: &Path, genesis: &Path) -> Value {
    cli_json(&[
        "federation",
        "sign-genesis",
        "--json",
        "--data-dir",
        path_str(dir),
        path_str(genesis),
    ])
}

#[test]
fn hubs_join_by_a_genesis_every_founder_signed_and_other_federations_never_mix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = ["a", "b", "c"].iter().map(|n| tmp.path().join(n)).collect();
    let dids: Vec<String> = dirs
        .iter()
        .zip(["HDS", "GAL", "THESS"])
        .map(|(d, n)| init_hub_with(d, n, "SE", &[]))
        .collect();
    let genesis = tmp.path().join("genesis.json");
    let created = cli_json(&[
        "federation",
        "create",
        "--json",
        "--name",
        "health-hubs",
        "--founder",
        &dids[0],
        "--founder",
        &dids[1],
        "--founder",
        &dids[2],
        "--quorum",
        "2",
        "--out",
        path_str(&genesis),
    ]);
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("health-hubs-"), "{id}");

    // Not every founder has signed: joining is refused, naming the missing founder.
    assert_eq!(
        sign(&dirs[0], &genesis)["missing"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        sign(&dirs[1], &genesis)["missing"].as_array().map(Vec::len),
        Some(1)
    );
    let (code, _, err) = run_hubcat(&[
        "federation",
        "join",
        "--data-dir",
        path_str(&dirs[0]),
        path_str(&genesis),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&dids[2]),
        "names the founder that has not signed: {err}"
    );
    assert!(!dirs[0].join("genesis.json").exists(), "nothing written");

    // A hub that is not a founder cannot sign.
    let outsider = tmp.path().join("outsider");
    init_hub_with(&outsider, "OUT", "ES", &[]);
    let (code, _, err) = run_hubcat(&[
        "federation",
        "sign-genesis",
        "--data-dir",
        path_str(&outsider),
        path_str(&genesis),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not a founder"), "{err}");

    assert!(sign(&dirs[2], &genesis)["missing"]
        .as_array()
        .is_some_and(Vec::is_empty));

    // A tampered genesis (quorum changed after signing) is refused by join and by init, and
    // init then creates no hub.
    let text = std::fs::read_to_string(&genesis).expect("genesis");
    let tampered = write_file(
        tmp.path(),
        "tampered.json",
        &text.replace("\"quorum\": 2", "\"quorum\": 1"),
    );
    assert_ne!(text, std::fs::read_to_string(&tampered).expect("tampered"));
    let (code, _, err) = run_hubcat(&[
        "federation",
        "join",
        "--data-dir",
        path_str(&dirs[0]),
        path_str(&tampered),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("does not verify"), "{err}");
    let late = tmp.path().join("late");
    let (code, _, err) = run_hubcat(&[
        "init",
        "--data-dir",
        path_str(&late),
        "--name",
        "LATE",
        "--country",
        "PT",
        "--genesis",
        path_str(&tampered),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("does not verify"), "{err}");
    assert!(
        !late.join("hub.key").exists(),
        "a refused genesis leaves no hub behind"
    );

    // Every founder joins by the genesis; a fourth hub runs a federation of its own.
    for d in &dirs {
        let joined = cli_json(&[
            "federation",
            "join",
            "--json",
            "--data-dir",
            path_str(d),
            path_str(&genesis),
        ]);
        assert_eq!(joined["federation"], id.as_str());
    }
    let other = tmp.path().join("other");
    init_hub_with(&other, "OTHER", "PT", &[]);
    let solo = tmp.path().join("solo.json");
    let other_did = cli_json(&["key", "show", "--json", "--data-dir", path_str(&other)])["did"]
        .as_str()
        .expect("did")
        .to_owned();
    cli_json(&[
        "federation",
        "create",
        "--json",
        "--name",
        "solo",
        "--founder",
        &other_did,
        "--quorum",
        "1",
        "--out",
        path_str(&solo),
    ]);
    sign(&other, &solo);
    cli_json(&[
        "federation",
        "join",
        "--json",
        "--data-dir",
        path_str(&other),
        path_str(&solo),
    ]);

    // Run them: b and c bootstrap from a; `other` also dials a but speaks another federation.
    let a = NodeProcess::start(&dirs[0]).expect("start a");
    let a_addr = status(&a)["listen"][0]
        .as_str()
        .expect("listen address")
        .to_owned();
    let set_bootstrap = |dir: &Path| {
        let config = dir.join("hubcat.toml");
        let text = std::fs::read_to_string(&config).expect("config");
        let text = text.replace("[p2p]\n", &format!("[p2p]\nbootstrap = [\"{a_addr}\"]\n"));
        assert!(text.contains(&a_addr), "config has a [p2p] section: {text}");
        std::fs::write(&config, text).expect("write config");
    };
    for d in [&dirs[1], &dirs[2], &other] {
        set_bootstrap(d);
    }
    let b = NodeProcess::start(&dirs[1]).expect("start b");
    let c = NodeProcess::start(&dirs[2]).expect("start c");
    let o = NodeProcess::start(&other).expect("start other");
    assert_eq!(status(&a)["federation"], id.as_str());
    assert_ne!(status(&o)["federation"], id.as_str());

    publish(&a, "from-a");
    publish(&o, "from-other");
    let count = |n: &NodeProcess| {
        status(n)["records"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || count(&b) == 1 && count(&c) == 1),
        "the genesis members hold a's record: b {} c {}",
        count(&b),
        count(&c)
    );
    // Give the other federation every chance to leak in, then check it did not.
    std::thread::sleep(Duration::from_secs(3));
    for n in [&a, &b, &c] {
        assert_eq!(count(n), 1, "no record of another federation");
    }
    assert_eq!(
        count(&o),
        1,
        "the other federation holds only its own record"
    );
}
