//! Operating a node: backup while it runs and restore with a new actor, readiness, metrics,
//! `hubcat health`, first start with `--init-if-missing`, bootstrap without a peer id, a burst
//! of connections from one address dropped before the handshake, and a bounded SIGTERM
//! shutdown — in process (the harness's `TestHub`) and with real `hubcat` processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hubcat_tests::{
    hubcat_bin, init_hub, path_str, run_hubcat, sample, wait_until, NodeProcess, TestHub,
};
use serde_json::{json, Value};

fn service(slug: &str) -> Value {
    json!({"kind": "service", "id": slug, "title": {"en": format!("Service {slug}")},
        "description": {"en": "A service."}, "category": "skills-and-training"})
}

fn has(hub: &TestHub, id: &str) -> bool {
    hub.get(id).0 == 200
}

/// The restored node's next change must not reuse an (actor, sequence number) the hub used
/// after the backup: a peer holding that later change would refuse the new one as
/// equivocation and the federation would never converge.
#[test]
fn a_restored_node_takes_a_new_actor_so_its_next_change_never_collides() {
    let mut a = TestHub::start("HDS", "SE").expect("hub A");
    let b = TestHub::start_with("GAL", "ES", &[a.p2p_addr()]).expect("hub B");
    let r1 = a.publish_ok(&service("before-backup"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(wait_until(Duration::from_secs(20), || has(&b, &r1)));

    // A backup of the running node (through its API), then a change the backup lacks.
    let out = a.tmp().join("a.backup.json");
    let report = a
        .block_on(hubcat_node::backup::backup(&a.data_dir, &out))
        .expect("backup while running");
    assert_eq!((report.source, report.records), ("node", 1));
    let r2 = a.publish_ok(&service("after-backup"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(wait_until(Duration::from_secs(20), || has(&b, &r2)));

    // Restoring while the node runs is refused and changes nothing.
    let err = hubcat_node::backup::restore(&a.data_dir, &out).expect_err("node running");
    assert!(err.to_string().contains("stop it"), "{err}");

    a.stop().expect("stop A");
    let restored = hubcat_node::backup::restore(&a.data_dir, &out).expect("restore");
    assert_eq!(restored.records, 1);
    assert!(restored.new_actor);
    a.resume().expect("start A again");
    assert!(has(&a, &r1), "the backup's record is back");

    // The next change on the restored node, and the change made after the backup (which
    // comes back from B), both end up everywhere; B refuses nothing.
    let r3 = a.publish_ok(&service("after-restore"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let converged = wait_until(Duration::from_secs(30), || {
        [&r1, &r2, &r3].iter().all(|id| has(&a, id) && has(&b, id)) && a.digest() == b.digest()
    });
    assert!(
        converged,
        "A {:?} / B {:?}",
        a.status().1["records"],
        b.status().1["records"]
    );
    assert_eq!(b.status().1["changes_refused"], 0, "{}", b.status().1);
}

#[test]
fn readiness_waits_for_a_peer_only_when_bootstrap_peers_are_configured_and_metrics_count() {
    let alone = TestHub::start("HDS", "SE").expect("hub");
    let (status, body) = alone.request(reqwest::Method::GET, "/readyz", None, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["peers_required"], 0);

    // A bootstrap peer nobody answers at: alive, not ready, and it says why.
    let nobody = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let dead = format!("/ip4/127.0.0.1/tcp/9/p2p/{nobody}");
    let waiting = TestHub::start_with("GAL", "ES", &[dead]).expect("hub");
    let (status, body) = waiting.request(reqwest::Method::GET, "/readyz", None, None);
    assert_eq!(status, 503, "{body}");
    assert!(body["waiting_for"].to_string().contains("peer"), "{body}");
    assert_eq!(
        waiting
            .request(reqwest::Method::GET, "/healthz", None, None)
            .0,
        200
    );

    alone.publish_ok(&sample("hds-testbed"));
    alone.publish_ok(&sample("hds-practice"));
    let (code, _) = alone.publish_raw(b"{}".to_vec(), Some(&alone.token));
    assert_eq!(code, 400);
    let metrics = alone
        .http
        .get(format!("{}/metrics", alone.url()))
        .send()
        .expect("metrics");
    assert!(metrics
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/openmetrics-text")));
    let text = metrics.text().expect("text");
    for line in [
        "hubcat_records{kind=\"service\"} 1",
        "hubcat_records{kind=\"practice\"} 1",
        "hubcat_publishers 1",
        "hubcat_changes_applied_total 2",
        "hubcat_api_requests_total{route=\"/v1/records\",method=\"POST\",status=\"201\"} 2",
        "hubcat_api_requests_total{route=\"/v1/records\",method=\"POST\",status=\"400\"} 1",
        "hubcat_api_requests_total{route=\"/readyz\",method=\"GET\",status=\"200\"} 1",
        "hubcat_peers_connected 0",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[test]
fn bootstrap_by_address_alone_learns_the_peer_id_when_allowed() {
    let a = TestHub::start("HDS", "SE").expect("hub A");
    let addr = a.p2p_addr();
    let bare = addr.split("/p2p/").next().expect("address").to_owned();
    // Refused unless the operator says so.
    let err = TestHub::start_with("GAL", "ES", std::slice::from_ref(&bare))
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("p2p.bootstrap_unpinned"),
        "{err:#}"
    );
    let b = TestHub::start_configured(
        "GAL",
        "ES",
        &[],
        &[
            (
                "p2p.bootstrap",
                toml::Value::Array(vec![toml::Value::String(bare)]),
            ),
            ("p2p.bootstrap_unpinned", toml::Value::Boolean(true)),
        ],
    )
    .expect("hub B");
    let id = a.publish_ok(&sample("hds-testbed"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(wait_until(Duration::from_secs(20), || has(&b, &id)));
    let peers = b.peers();
    assert!(
        peers
            .iter()
            .any(|p| p["peer_id"] == a.peer_id().to_string() && p["connected"] == true),
        "{peers:?}"
    );
    assert_eq!(
        b.request(reqwest::Method::GET, "/readyz", None, None).0,
        200
    );
}

#[test]
fn cli_backup_while_running_restore_when_stopped_health_and_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hub");
    init_hub(&dir, "HDS", "SE");
    let d = path_str(&dir);
    let mut node = NodeProcess::start(&dir).expect("start");

    let (code, out, err) = run_hubcat(&["health", "--data-dir", d]);
    assert_eq!((code, out.trim()), (0, "ready"), "{err}");
    let file = tmp.path().join("service.json");
    std::fs::write(&file, sample("hds-testbed").to_string()).expect("write");
    let (code, _, err) = run_hubcat(&["publish", "--data-dir", d, path_str(&file)]);
    assert_eq!(code, 0, "{err}");

    let backup = tmp.path().join("backup.json");
    let (code, out, err) = run_hubcat(&["backup", "--data-dir", d, path_str(&backup)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("1 records") && out.contains("running node"),
        "{out}"
    );
    let (code, _, err) = run_hubcat(&["verify", path_str(&backup)]);
    assert_eq!(code, 0, "a backup verifies offline: {err}");
    let (code, _, err) = run_hubcat(&["backup", "--data-dir", d, path_str(&backup)]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = run_hubcat(&["restore", "--data-dir", d, path_str(&backup)]);
    assert_ne!(code, 0);
    assert!(err.contains("stop it"), "{err}");

    let stopping = Instant::now();
    assert_eq!(node.terminate().expect("SIGTERM"), 0, "{}", node.stderr());
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(8), "stopped in {took:?}");
    assert!(node.stderr().contains("node stopped"), "{}", node.stderr());
    let (code, _, err) = run_hubcat(&["health", "--data-dir", d]);
    assert_ne!(code, 0);
    assert!(err.contains("no node is running"), "{err}");

    let (code, out, err) = run_hubcat(&["restore", "--data-dir", d, path_str(&backup)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new actor"), "{out}");
    let node = NodeProcess::start(&dir).expect("start after restore");
    let (code, out, err) = run_hubcat(&["list", "--json", "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["count"], 1);
    drop(node);
}

#[test]
fn run_init_if_missing_creates_the_hub_from_the_environment_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hub");
    let env: BTreeMap<&str, &str> = [
        ("HUBCAT_DATA_DIR", path_str(&dir)),
        ("HUBCAT_HUB_NAME", "HDS"),
        ("HUBCAT_HUB_COUNTRY", "SE"),
        ("HUBCAT_API_LISTEN", "127.0.0.1:0"),
        ("HUBCAT_P2P_LISTEN", "/ip4/127.0.0.1/tcp/0"),
        ("HUBCAT_LOG_FORMAT", "json"),
    ]
    .into();
    let start = || {
        let mut cmd = std::process::Command::new(hubcat_bin());
        for (k, _) in std::env::vars() {
            if k.starts_with("HUBCAT_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.envs(&env)
            .args(["run", "--init-if-missing"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let wait_addr = || {
        wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(dir.join("api.addr")).is_ok()
        })
    };
    let stop = |child: std::process::Child| {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let first = start();
    assert!(wait_addr(), "node did not start");
    let key = std::fs::read(dir.join("hub.key")).expect("key created");
    let logs = stop(first);
    assert!(logs.contains("created the hub"), "{logs}");
    // JSON logs: every line is an object.
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("hubcat node") {
            continue;
        }
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    let second = start();
    assert!(wait_addr(), "node did not start again");
    let logs = stop(second);
    assert!(!logs.contains("created the hub"), "{logs}");
    assert_eq!(
        std::fs::read(dir.join("hub.key")).expect("key"),
        key,
        "the key is never replaced"
    );
}

/// Stopping a node returns only once its network is gone: the network's tasks hold the
/// catalogue and so the store's lock, and a restart (or a restore) right after the stop must
/// be able to take it — also while a peer is gossiping and syncing with the node.
#[test]
fn a_stopped_node_lets_go_of_its_store_at_once_even_while_peers_talk_to_it() {
    let mut a = TestHub::start("HDS", "SE").expect("hub A");
    let b = TestHub::start_with("GAL", "ES", &[a.p2p_addr()]).expect("hub B");
    for round in 0..5 {
        for i in 0..20 {
            b.publish_ok(&service(&format!("busy-{round}-{i}")));
        }
        a.restart()
            .unwrap_or_else(|e| panic!("restart {round} right after the stop: {e:#}"));
    }
    let last = b.publish_ok(&service("after-the-restarts"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        wait_until(Duration::from_secs(30), || has(&a, &last)),
        "the restarted node hears from its peer again"
    );
}

#[test]
fn a_burst_of_connections_from_one_address_is_dropped_before_the_handshake_and_peers_keep_syncing()
{
    let a = TestHub::start("HDS", "SE").expect("hub A");
    let b = TestHub::start_with("GAL", "ES", &[a.p2p_addr()]).expect("hub B");
    assert!(
        wait_until(Duration::from_secs(30), || a.connected_peers() == 1
            && b.connected_peers() == 1),
        "A and B did not connect"
    );
    // 300 TCP connections to A's libp2p port from one address, opened and dropped at once (as a
    // banned peer redialling would): the address's burst is 64, then 20 a second, and every
    // connection beyond never reaches the Noise handshake.
    let port: u16 = a
        .p2p_addr()
        .split("/tcp/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("tcp port");
    for _ in 0..300 {
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    }
    assert!(
        wait_until(Duration::from_secs(10), || a.net().inbound_refused() >= 150),
        "only {} of 300 connections were dropped before their handshake",
        a.net().inbound_refused()
    );
    let text = a
        .http
        .get(format!("{}/metrics", a.url()))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    let refused = a.net().inbound_refused();
    assert!(
        text.lines().any(|l| l
            .strip_prefix("hubcat_p2p_inbound_refused_total ")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 150 && n <= refused)),
        "no hubcat_p2p_inbound_refused_total in:\n{text}"
    );
    // The peer connected before is not cut off: a record B publishes reaches A.
    let id = b.publish_ok(&service("after-the-burst"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        wait_until(Duration::from_secs(30), || a.get(&id).0 == 200),
        "B's record did not reach A after the burst"
    );
    assert_eq!(a.connected_peers(), 1);
}
