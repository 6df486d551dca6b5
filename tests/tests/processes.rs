//! Real `hubcat` processes, driven the way an operator drives them: `init`, `run`, `publish`,
//! `show`, `list`, `export`, `verify`, `key show`, and SIGKILL.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hubcat_tests::{
    cli_count, hubcat_command, init_hub, init_hub_with, path_str, run_hubcat, sample, wait_until,
    wait_with_timeout, write_file, NodeProcess, WAIT,
};
use serde_json::Value;

fn publish(dir: &Path, file: &Path) -> (i32, String, String) {
    run_hubcat(&["publish", "--data-dir", path_str(dir), path_str(file)])
}

fn publish_ok(dir: &Path, file: &Path) -> String {
    let (code, out, err) = publish(dir, file);
    assert_eq!(code, 0, "hubcat publish failed: {err}");
    let id = out.trim().to_owned();
    assert!(id.contains("@z6Mk"), "publish printed {id:?}");
    id
}

/// Create hub HDS in `dir`, run it, publish its profile and its testbed service; the running
/// node and the service's id.
fn running_hub_with_testbed(dir: &Path) -> (NodeProcess, String) {
    init_hub(dir, "HDS", "SE");
    let node = NodeProcess::start(dir).expect("hubcat run");
    let scratch = dir.parent().expect("the data directory has a parent");
    publish_ok(
        dir,
        &write_file(scratch, "p.json", &sample("hds-profile").to_string()),
    );
    let id = publish_ok(
        dir,
        &write_file(scratch, "s.json", &sample("hds-testbed").to_string()),
    );
    (node, id)
}

#[test]
fn a_publish_acknowledged_before_sigkill_survives_the_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hds");
    init_hub(&dir, "HDS", "SE");
    let mut node = NodeProcess::start(&dir).expect("hubcat run");

    let file = write_file(
        tmp.path(),
        "testbed.json",
        &sample("hds-testbed").to_string(),
    );
    let id = publish_ok(&dir, &file);
    // No shutdown, no snapshot: the acknowledgement alone must mean durable.
    node.kill();

    let again = NodeProcess::start(&dir).expect("hubcat run again");
    let (code, out, err) = run_hubcat(&["show", "--data-dir", path_str(&dir), &id]);
    assert_eq!(code, 0, "hubcat show {id} after SIGKILL: {err}");
    assert!(out.contains(&id), "{out}");
    assert!(out.contains("Health data testbed for AI products"), "{out}");

    let (code, out, err) = run_hubcat(&["show", "--json", "--data-dir", path_str(&dir), &id]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("show --json");
    assert_eq!(v["id"], id.as_str());
    assert!(v["provenance"]["signature"]
        .as_str()
        .is_some_and(|s| s.len() == 128));
    assert_eq!(cli_count(&dir).expect("list"), 1);
    drop(again);

    // Same again across a clean stop (snapshot + log replay) and another SIGKILL.
    let mut node = NodeProcess::start(&dir).expect("hubcat run");
    let mut changed = sample("hds-testbed");
    changed["title"]["en"] = "Health data testbed, second edition".into();
    let file = write_file(tmp.path(), "testbed2.json", &changed.to_string());
    assert_eq!(publish_ok(&dir, &file), id, "an update keeps the id");
    assert_eq!(node.terminate().expect("SIGTERM"), 0, "{}", node.stderr());
    assert!(
        !dir.join("api.addr").exists(),
        "a clean stop removes api.addr"
    );

    let mut node = NodeProcess::start(&dir).expect("hubcat run after SIGTERM");
    let practice = write_file(
        tmp.path(),
        "practice.json",
        &sample("hds-practice").to_string(),
    );
    let practice_id = publish_ok(&dir, &practice);
    node.kill();

    let _node = NodeProcess::start(&dir).expect("hubcat run after the second SIGKILL");
    let (code, out, err) = run_hubcat(&["show", "--data-dir", path_str(&dir), &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("second edition"), "{out}");
    let (code, _, err) = run_hubcat(&["show", "--data-dir", path_str(&dir), &practice_id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cli_count(&dir).expect("list"), 2);
}

#[test]
fn an_exported_bundle_verifies_and_a_flipped_byte_names_the_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hds");
    let (_node, id) = running_hub_with_testbed(&dir);

    // hubcat export --data-dir DIR --format bundle > FILE
    let bundle_path = tmp.path().join("catalogue.bundle.json");
    let out = std::fs::File::create(&bundle_path).expect("bundle file");
    let mut child = hubcat_command(&["export", "--data-dir", path_str(&dir), "--format", "bundle"])
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("hubcat export");
    assert_eq!(
        wait_with_timeout(&mut child, WAIT),
        Some(0),
        "hubcat export"
    );

    let (code, out, err) = run_hubcat(&["verify", path_str(&bundle_path)]);
    assert_eq!(code, 0, "hubcat verify of a fresh export: {err}");
    assert!(out.contains("valid: 2 records"), "{out}");

    // Change one character of the service's title where the record's content is listed.
    let text = std::fs::read_to_string(&bundle_path).expect("read bundle");
    let title = "Health data testbed for AI products";
    assert_eq!(text.matches(title).count(), 1, "the title appears once");
    let tampered = text.replace(title, "Health data testbed for AI pr0ducts");
    assert_eq!(tampered.len(), text.len(), "one byte changed");
    std::fs::write(&bundle_path, tampered).expect("write bundle");

    let (code, out, err) = run_hubcat(&["verify", path_str(&bundle_path)]);
    assert_ne!(code, 0, "a tampered bundle must not verify: {out}");
    assert!(err.contains(&id), "stderr names the record {id}: {err}");
    assert!(!out.contains("valid"), "{out}");
}

#[test]
fn a_readable_key_file_stops_run_and_key_show_works_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hds");
    let did = init_hub(&dir, "HDS", "SE");
    let key = dir.join("hub.key");

    // The node was never started: key show works offline.
    let (code, out, err) = run_hubcat(&["key", "show", "--data-dir", path_str(&dir)]);
    assert_eq!(code, 0, "hubcat key show: {err}");
    assert!(out.contains(&did), "key show prints the did {did}: {out}");
    assert!(out.contains("peer id"), "{out}");
    assert!(out.contains("12D3KooW"), "libp2p peer id: {out}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let started = Instant::now();
    let mut child = hubcat_command(&["run", "--data-dir", path_str(&dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hubcat run");
    let code = wait_with_timeout(&mut child, Duration::from_secs(10));
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("hubcat run with a 0644 key file kept running");
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert_ne!(code, Some(0), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.contains("chmod 600"), "stderr tells the fix: {err}");
    assert!(!dir.join("api.addr").exists(), "nothing was served");

    // Restoring the mode lets the same key be shown again, unchanged.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, out, err) = run_hubcat(&["key", "show", "--json", "--data-dir", path_str(&dir)]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("key show --json");
    assert_eq!(v["did"], did.as_str());
    assert!(v["peer_id"]
        .as_str()
        .is_some_and(|p| p.starts_with("12D3KooW")));
}

#[test]
fn cli_refusals_name_the_field_and_a_stopped_node_says_how_to_start_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hds");
    init_hub(&dir, "HDS", "SE");

    // Never started: the CLI says so and how to start it.
    let (code, _, err) = run_hubcat(&["list", "--data-dir", path_str(&dir)]);
    assert_ne!(code, 0);
    assert!(
        err.contains("not running") && err.contains("hubcat run"),
        "never-started node: {err}"
    );

    let mut node = NodeProcess::start(&dir).expect("hubcat run");
    publish_ok(
        &dir,
        &write_file(tmp.path(), "ok.json", &sample("hds-testbed").to_string()),
    );
    assert_eq!(cli_count(&dir).expect("list"), 1);

    let mut bad = sample("okthess-investor");
    bad["category"] = "consulting".into();
    let bad_file = write_file(tmp.path(), "bad.json", &bad.to_string());
    let (code, out, err) = publish(&dir, &bad_file);
    assert_ne!(code, 0, "unknown category accepted: {out}");
    assert!(err.contains("category"), "stderr names the field: {err}");
    assert!(err.contains("consulting"), "and the value: {err}");
    assert_eq!(cli_count(&dir).expect("list"), 1, "nothing was published");

    // A TOML file with the same mistake is refused the same way.
    let toml_file = write_file(
        tmp.path(),
        "bad.toml",
        "kind = \"service\"\ncategory = \"consulting\"\n[title]\nen = \"Coaching\"\n[description]\nen = \"Coaching.\"\n",
    );
    let (code, _, err) = publish(&dir, &toml_file);
    assert_ne!(code, 0);
    assert!(err.contains("category"), "{err}");

    // Stopped (killed) node: the stale address answers nothing.
    node.kill();
    for args in [
        vec!["list", "--data-dir", path_str(&dir)],
        vec!["publish", "--data-dir", path_str(&dir), path_str(&bad_file)],
    ] {
        let (code, _, err) = run_hubcat(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(
            err.contains("not running") && err.contains("hubcat run"),
            "{args:?} against a stopped node: {err}"
        );
    }
}

#[test]
fn init_twice_refuses_and_keeps_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hds");
    let did = init_hub(&dir, "HDS", "SE");
    let key = dir.join("hub.key");
    let key_before = std::fs::read(&key).expect("key");
    let token_before = std::fs::read(dir.join("api.token")).expect("token");
    let config_before = std::fs::read(dir.join("hubcat.toml")).expect("config");

    let (code, out, err) = run_hubcat(&[
        "init",
        "--data-dir",
        path_str(&dir),
        "--name",
        "Other",
        "--country",
        "ES",
    ]);
    assert_ne!(code, 0, "second init succeeded: {out}");
    assert!(err.contains("already"), "{err}");
    assert_eq!(std::fs::read(&key).expect("key"), key_before);
    assert_eq!(
        std::fs::read(dir.join("api.token")).expect("token"),
        token_before
    );
    assert_eq!(
        std::fs::read(dir.join("hubcat.toml")).expect("config"),
        config_before
    );
    let mode = std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (code, out, _) = run_hubcat(&["key", "show", "--data-dir", path_str(&dir)]);
    assert_eq!(code, 0);
    assert!(out.contains(&did), "the hub is still {did}: {out}");
}

fn cli_json(args: &[&str]) -> Value {
    let (code, out, err) = run_hubcat(args);
    assert_eq!(code, 0, "hubcat {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("hubcat {args:?} printed {out}: {e}"))
}

#[test]
fn three_run_processes_configured_by_files_and_bootstrap_addresses_converge() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = ["hds", "gal", "thess"]
        .iter()
        .map(|n| tmp.path().join(n))
        .collect();
    // A line: gal bootstraps from hds, thess from gal. Each address goes into the config file
    // by `init --bootstrap`; nothing else configures the nodes.
    let mut nodes = Vec::new();
    let mut previous: Option<String> = None;
    for (dir, (name, country)) in dirs
        .iter()
        .zip([("HDS", "SE"), ("GAL", "ES"), ("THESS", "GR")])
    {
        let bootstrap: Vec<String> = previous.iter().cloned().collect();
        init_hub_with(dir, name, country, &bootstrap);
        let config = std::fs::read_to_string(dir.join("hubcat.toml")).expect("config file");
        for b in &bootstrap {
            assert!(config.contains(b.as_str()), "{config}");
        }
        nodes.push(NodeProcess::start(dir).expect("hubcat run"));
        let status = cli_json(&["status", "--json", "--data-dir", path_str(dir)]);
        let listen = status["listen"][0]
            .as_str()
            .expect("a listen address")
            .to_owned();
        assert!(listen.contains("/p2p/12D3KooW"), "{listen}");
        previous = Some(listen);
    }
    let files = [
        write_file(tmp.path(), "a.json", &sample("hds-testbed").to_string()),
        write_file(tmp.path(), "b.json", &sample("galicia-pilots").to_string()),
        write_file(
            tmp.path(),
            "c.json",
            &sample("okthess-investor").to_string(),
        ),
    ];
    let ids: Vec<String> = dirs
        .iter()
        .zip(&files)
        .map(|(dir, file)| publish_ok(dir, file))
        .collect();
    let converged = wait_until(Duration::from_secs(60), || {
        let digests: Vec<Value> = dirs
            .iter()
            .map(|d| cli_json(&["status", "--json", "--data-dir", path_str(d)])["digest"].clone())
            .collect();
        dirs.iter().all(|d| cli_count(d).ok() == Some(3))
            && digests.windows(2).all(|w| w[0] == w[1])
    });
    assert!(converged, "the three processes did not converge");
    // Every record can be shown on every node, with its publisher's signature.
    for dir in &dirs {
        for id in &ids {
            let v = cli_json(&["show", "--json", "--data-dir", path_str(dir), id]);
            assert_eq!(v["id"], id.as_str());
            assert!(v["provenance"]["signature"]
                .as_str()
                .is_some_and(|s| s.len() == 128));
        }
    }
    // The middle hub sees both neighbours, by did and name.
    let status = cli_json(&["status", "--json", "--data-dir", path_str(&dirs[1])]);
    assert!(status["peers"].as_u64().expect("peers") >= 2, "{status}");
    assert!(status["records"]["service"].as_u64().is_some());
    let peers = cli_json(&["peers", "--json", "--data-dir", path_str(&dirs[1])]);
    let names: Vec<&str> = peers
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let peers = cli_json(&["peers", "--json", "--data-dir", path_str(&dirs[1])]);
            let names: Vec<String> = peers
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect();
            names.contains(&"HDS".to_string()) && names.contains(&"THESS".to_string())
        }),
        "peer names seen by GAL: {names:?}"
    );
    for mut node in nodes {
        assert_eq!(node.terminate().expect("terminate"), 0);
    }
}

/// The query subcommands against a running node, as an operator types them: search (Swedish
/// text finds the record), gaps, match, duplicates, confirm and reindex; a bad filter is
/// refused naming the parameter, and nothing changes.
#[test]
fn the_query_commands_answer_from_the_running_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hds");
    let (_node, id) = running_hub_with_testbed(&dir);
    let d = path_str(&dir);
    let json = |args: &[&str]| -> Value {
        let mut all = vec![args[0], "--json", "--data-dir", d];
        all.extend_from_slice(&args[1..]);
        let (code, out, err) = run_hubcat(&all);
        assert_eq!(code, 0, "hubcat {args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("hubcat {args:?}: {e}: {out}"))
    };

    let found = json(&["search", "testbädd", "--country", "SE"]);
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["results"][0]["id"], id.as_str());
    let none = json(&["search", "testbädd", "--country", "FI"]);
    assert_eq!(none["total"], 0, "{none}");

    let (code, _, err) = run_hubcat(&["search", "--data-dir", d, "--kind", "offering"]);
    assert_ne!(code, 0);
    assert!(err.contains("kind") && err.contains("service"), "{err}");

    let gaps = json(&["gaps", "--category", "test-before-invest"]);
    let gaps_text = gaps.to_string();
    assert!(gaps_text.contains("SE"), "{gaps_text}");

    let matched = json(&[
        "match",
        "validate an AI product on health data",
        "--country",
        "SE",
    ]);
    assert_eq!(matched["results"][0]["id"], id.as_str(), "{matched}");

    let dups = json(&["duplicates"]);
    assert!(dups.is_object() || dups.is_array(), "{dups}");

    let before = json(&["show", &id]);
    std::thread::sleep(Duration::from_millis(1100));
    json(&["confirm", &id]);
    let after = json(&["show", &id]);
    assert_ne!(
        before["record"]["last_confirmed"], after["record"]["last_confirmed"],
        "confirm re-signs with a new last_confirmed"
    );
    assert_ne!(
        before["provenance"]["change_hash"],
        after["provenance"]["change_hash"]
    );

    let (code, _, err) = run_hubcat(&["reindex", "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&["search", "testbädd"])["total"], 1);
    assert_eq!(
        cli_count(&dir).expect("list"),
        2,
        "the query commands changed nothing else"
    );
}

/// Every command fed bad input: a non-zero exit whose message names the argument, field or
/// file at fault, and the running node's catalogue unchanged.
#[test]
fn every_command_refuses_bad_input_naming_it_and_the_catalogue_is_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hds");
    let (_node, id) = running_hub_with_testbed(&dir);
    let d = path_str(&dir).to_owned();
    let digest = || cli_json(&["status", "--json", "--data-dir", &d])["digest"].clone();
    let before = digest();
    let scratch = tmp.path();
    let bad_category = {
        let mut r = sample("okthess-investor");
        r["category"] = "consulting".into();
        write_file(scratch, "bad-category.json", &r.to_string())
    };
    let not_json = write_file(scratch, "not.json", "{\"kind\": \"service\", ");
    let no_title = write_file(
        scratch,
        "no-title.json",
        r#"{"kind": "service", "id": "x", "description": {"en": "Y"}, "category": "test-before-invest"}"#,
    );
    let bad_csv = write_file(
        scratch,
        "rows.csv",
        "kind,id,title.en,description.en,category\nservice,Bad Slug!,T,D,test-before-invest\n",
    );
    let garbage = write_file(scratch, "garbage.json", "not a bundle or genesis");
    let missing = scratch.join("missing.json");
    let missing = path_str(&missing).to_owned();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    // (arguments, what the message must name)
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            s(&["publish", "--data-dir", &d, path_str(&bad_category)]),
            "category",
        ),
        (
            s(&["publish", "--data-dir", &d, path_str(&not_json)]),
            "json",
        ),
        (
            s(&["publish", "--data-dir", &d, path_str(&no_title)]),
            "title",
        ),
        (s(&["publish", "--data-dir", &d, &missing]), "missing.json"),
        (s(&["withdraw", "--data-dir", &d, "Bad Id!"]), "id"),
        (
            s(&["withdraw", "--data-dir", &d, "no-such-record"]),
            "no-such-record",
        ),
        (
            s(&["show", "--data-dir", &d, "nope@z6MkBad"]),
            "nope@z6MkBad",
        ),
        (s(&["list", "--data-dir", &d, "--kind", "offering"]), "kind"),
        (s(&["list", "--data-dir", &d, "--country", "XX"]), "country"),
        (
            s(&["list", "--data-dir", &d, "--publisher", "hub-1"]),
            "publisher",
        ),
        (
            s(&["search", "--data-dir", &d, "--per-page", "0", "ai"]),
            "per_page",
        ),
        (
            s(&["search", "--data-dir", &d, "--maturity", "ripe"]),
            "maturity",
        ),
        (s(&["gaps", "--data-dir", &d, "--by", "planet"]), "planet"),
        (s(&["export", "--data-dir", &d, "--format", "xml"]), "xml"),
        (s(&["import", "--data-dir", &d, path_str(&bad_csv)]), "id"),
        (s(&["import", "--data-dir", &d, &missing]), "missing.json"),
        (
            s(&["confirm", "--data-dir", &d, "no-such-record"]),
            "no-such-record",
        ),
        (s(&["verify", path_str(&garbage)]), "bundle"),
        (
            s(&["federation", "endorse", "--data-dir", &d, "hub-42"]),
            "target",
        ),
        (
            s(&[
                "federation",
                "endorse",
                "--data-dir",
                &d,
                &id.split('@')
                    .nth(1)
                    .map(|k| format!("did:key:{k}"))
                    .unwrap_or_default(),
            ]),
            "federation",
        ),
        (
            s(&["federation", "members", "--data-dir", &d]),
            "federation",
        ),
        (
            s(&["federation", "join", "--data-dir", &d, path_str(&garbage)]),
            "genesis",
        ),
        (
            s(&[
                "federation",
                "create",
                "--name",
                "Bad Name",
                "--founder",
                "did:key:z6Mk",
                "--quorum",
                "1",
            ]),
            "name",
        ),
        (
            s(&["federation", "sign-genesis", "--data-dir", &d, &missing]),
            "missing.json",
        ),
        (s(&["restore", "--data-dir", &d, &missing]), "missing.json"),
        (
            s(&["init", "--data-dir", &d, "--name", "X", "--country", "SE"]),
            "already",
        ),
        (
            s(&["status", "--data-dir", path_str(&scratch.join("nowhere"))]),
            "hubcat init",
        ),
    ];
    let mut wrong = Vec::new();
    for (args, names) in &cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = run_hubcat(&argv);
        if code == 0 || !err.to_lowercase().contains(&names.to_lowercase()) {
            wrong.push(format!(
                "hubcat {}: exit {code}, stdout {out:?}, stderr {err:?} (wanted a refusal naming `{names}`)",
                args.join(" ")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(digest(), before, "bad input changed the catalogue");
    assert_eq!(cli_count(&dir).expect("the node still serves"), 2);
}
