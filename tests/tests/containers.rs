//! Container tests: hubcat federations of real containers (the `FROM scratch` image built by
//! `deploy/build-image.sh`) on a private Docker network, cut, killed and restarted the way
//! production does it.
//!
//! They run when `HUBCAT_CONTAINER_TESTS=1` (CI's `.ci/run` sets it, and then a missing Docker
//! engine is a failure); otherwise each test says how to run it and passes. The image is
//! built once per test binary (`HUBCAT_TEST_IMAGE=name:tag` uses an existing image instead).
//!
//! The host only talks to the containers through their API ports published on 127.0.0.1 and
//! through `docker exec`; peer traffic stays on the private network. Containers and networks
//! are named after the test run (`hubcat-t<pid>-<n>`) and removed when a test ends, also when
//! it fails. Tests run one at a time (each starts its own federation) and print their timings.

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hubcat_tests::wait_until;
use serde_json::{json, Value};

/// Longest wait for a federation to agree.
const CONVERGE: Duration = Duration::from_secs(90);
/// Longest wait for one container to become ready.
const READY: Duration = Duration::from_secs(60);
/// Docker's default stop grace period, which the node must beat.
const GRACE_SECS: u64 = 10;

/// One container test at a time: each starts several containers on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// Whether to run; panics when asked to run and Docker is missing.
fn enabled(test: &str) -> bool {
    let wanted = std::env::var("HUBCAT_CONTAINER_TESTS").is_ok_and(|v| v == "1");
    if !wanted {
        eprintln!(
            "skipping container test {test}: set HUBCAT_CONTAINER_TESTS=1 (and have a Docker engine) to run it"
        );
        return false;
    }
    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match engine {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!(
            "HUBCAT_CONTAINER_TESTS=1 but the Docker engine does not answer: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("HUBCAT_CONTAINER_TESTS=1 but `docker` cannot run: {e}"),
    }
}

/// Build the image once (or take `HUBCAT_TEST_IMAGE`); its name.
fn image() -> String {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            if let Ok(name) = std::env::var("HUBCAT_TEST_IMAGE") {
                return Ok(name);
            }
            let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
            let started = Instant::now();
            let status = Command::new(format!("{root}/deploy/build-image.sh"))
                .env("HUBCAT_IMAGE", "hubcat:latest")
                .stdin(Stdio::null())
                .status()
                .map_err(|e| format!("cannot run deploy/build-image.sh: {e}"))?;
            if !status.success() {
                return Err(format!("deploy/build-image.sh failed: {status}"));
            }
            let size = docker(&["image", "inspect", "--format", "{{.Size}}", "hubcat:latest"]);
            let size: u64 = stdout(&size).trim().parse().unwrap_or(0);
            timing(
                "image build (static binary + image)",
                started.elapsed(),
                &format!("image size {:.1} MiB", size as f64 / 1048576.0),
            );
            Ok("hubcat:latest".to_owned())
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn timing(what: &str, took: Duration, note: &str) {
    eprintln!(
        "[container timing] {what}: {:.2} s {note}",
        took.as_secs_f64()
    );
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run docker and panic with its stderr when it fails.
fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    stdout(&o)
}

/// A free TCP port on the host's loopback, for a container's published API.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One hub container.
struct Hub {
    /// Service name on the private network (`hub1`), also its DNS alias.
    alias: String,
    /// Container name, unique to this run.
    container: String,
    /// Host port (on 127.0.0.1) published for the container's API.
    port: u16,
    token: String,
}

/// A federation of hub containers on one private network, removed on drop.
struct Federation {
    network: String,
    hubs: Vec<Hub>,
    image: String,
    http: reqwest::blocking::Client,
    tmp: tempfile::TempDir,
}

fn run_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "hubcat-t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Federation {
    /// Start `n` hubs, each bootstrapping from every other by its service name; wait until
    /// every one is ready (which needs a peer) and has a peer in the mesh.
    fn start(n: usize) -> Federation {
        let image = image();
        let id = run_id();
        let network = id.clone();
        docker_ok(&["network", "create", "--driver", "bridge", &network]);
        let mut fed = Federation {
            network,
            hubs: Vec::new(),
            image,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        let started = Instant::now();
        for i in 1..=n {
            let alias = format!("hub{i}");
            let hub = Hub {
                container: format!("{id}-{alias}"),
                alias,
                port: free_port(),
                token: String::new(),
            };
            let bootstrap: Vec<String> = (1..=n)
                .filter(|j| *j != i)
                .map(|j| format!("/dns4/hub{j}/tcp/7071"))
                .collect();
            fed.run_container(&hub, &bootstrap.join(","), &id);
            fed.hubs.push(hub);
        }
        let mut ready_times = Vec::new();
        for i in 0..n {
            fed.wait_ready(i);
            ready_times.push(started.elapsed());
            fed.hubs[i].token = fed.read_token(i);
        }
        timing(
            &format!("{n} hubs: docker run → all ready (/readyz, a peer each)"),
            started.elapsed(),
            &format!(
                "(per hub: {})",
                ready_times
                    .iter()
                    .map(|t| format!("{:.1}s", t.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        fed
    }

    fn run_container(&self, hub: &Hub, bootstrap: &str, federation: &str) {
        let name_env = format!("HUBCAT_HUB_NAME={}", hub.alias.to_uppercase());
        let boot_env = format!("HUBCAT_P2P_BOOTSTRAP={bootstrap}");
        let fed_env = format!("HUBCAT_P2P_FEDERATION={federation}");
        let publish = format!("127.0.0.1:{}:7070", hub.port);
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &hub.container,
            "--hostname",
            &hub.alias,
            "--network",
            &self.network,
            "--network-alias",
            &hub.alias,
            "-p",
            &publish,
            "-e",
            &name_env,
            "-e",
            "HUBCAT_HUB_COUNTRY=SE",
            "-e",
            &fed_env,
            "-e",
            "HUBCAT_SYNC_INTERVAL_SECS=2",
            "-e",
            "HUBCAT_SYNC_TIMEOUT_SECS=5",
        ];
        if !bootstrap.is_empty() {
            args.extend(["-e", &boot_env, "-e", "HUBCAT_P2P_BOOTSTRAP_UNPINNED=true"]);
        }
        args.push(&self.image);
        docker_ok(&args);
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.hubs[i].port)
    }

    fn get(&self, i: usize, path: &str) -> Option<(u16, Value)> {
        let r = self.http.get(self.url(i, path)).send().ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().unwrap_or(Value::Null)))
    }

    fn wait_ready(&self, i: usize) -> Duration {
        let started = Instant::now();
        while started.elapsed() < READY {
            if let Some((200, _)) = self.get(i, "/readyz") {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} not ready within {READY:?}; last readyz: {:?}\nlogs:\n{}",
            self.hubs[i].container,
            self.get(i, "/readyz"),
            self.logs(i)
        );
    }

    fn logs(&self, i: usize) -> String {
        let o = docker(&["logs", "--tail", "60", &self.hubs[i].container]);
        format!(
            "{}{}",
            stdout(&o),
            String::from_utf8_lossy(&o.stderr).into_owned()
        )
    }

    /// The write token, copied out of the container's volume (never printed).
    fn read_token(&self, i: usize) -> String {
        let dest = self
            .tmp
            .path()
            .join(format!("{}.token", self.hubs[i].alias));
        let _ = std::fs::remove_file(&dest);
        docker_ok(&[
            "cp",
            &format!("{}:/data/api.token", self.hubs[i].container),
            dest.to_str().expect("utf-8 path"),
        ]);
        std::fs::read_to_string(&dest)
            .expect("token file")
            .trim()
            .to_owned()
    }

    /// Publish a service record on hub `i`; its id when acknowledged (201).
    fn publish(&self, i: usize, slug: &str) -> Option<String> {
        publish_on(&self.http, self.hubs[i].port, &self.hubs[i].token, slug)
    }

    /// `hubcat --json ARGS` inside hub `i` (works while the hub is cut off from every
    /// network, when its published port is unreachable); its JSON output.
    fn exec_json(&self, i: usize, args: &[&str], stdin: Option<&str>) -> Option<Value> {
        use std::io::Write as _;
        let mut cmd = Command::new("docker");
        cmd.args(["exec", "-i", &self.hubs[i].container, "hubcat", "--json"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().ok()?;
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes()).ok()?;
            }
        }
        let out = child.wait_with_output().ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Publish on hub `i` through the CLI inside the container.
    fn publish_exec(&self, i: usize, slug: &str) -> Option<String> {
        let v = self.exec_json(i, &["publish", "-"], Some(&service(slug).to_string()))?;
        v["id"].as_str().map(str::to_owned)
    }

    fn ids(&self, i: usize) -> Option<BTreeSet<String>> {
        let v = match self.get(i, "/v1/records?kind=service") {
            Some((200, v)) => v,
            _ => self.exec_json(i, &["list", "--kind", "service"], None)?,
        };
        Some(
            v["records"]
                .as_array()?
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect(),
        )
    }

    fn digest(&self, i: usize) -> Option<String> {
        let v = match self.get(i, "/v1/status") {
            Some((200, v)) => v,
            _ => self.exec_json(i, &["status"], None)?,
        };
        v["digest"].as_str().map(str::to_owned)
    }

    /// Wait until every hub holds every id in `want` and all report one digest; the time it
    /// took.
    fn wait_converged(&self, want: &BTreeSet<String>, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let ids: Vec<Option<BTreeSet<String>>> =
                (0..self.hubs.len()).map(|i| self.ids(i)).collect();
            let digests: BTreeSet<Option<String>> =
                (0..self.hubs.len()).map(|i| self.digest(i)).collect();
            let all_have = ids
                .iter()
                .all(|s| s.as_ref().is_some_and(|s| s.is_superset(want)));
            if all_have && digests.len() == 1 && !digests.contains(&None) {
                return started.elapsed();
            }
            if started.elapsed() > CONVERGE {
                let missing: Vec<String> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let n = s
                            .as_ref()
                            .map(|s| want.difference(s).count())
                            .unwrap_or(usize::MAX);
                        format!("hub{}: {n} missing", i + 1)
                    })
                    .collect();
                // The logs of the first hub that lacks something (else hub1's).
                let worst = ids
                    .iter()
                    .position(|s| !s.as_ref().is_some_and(|s| s.is_superset(want)))
                    .unwrap_or(0);
                panic!(
                    "{what}: no convergence within {CONVERGE:?}: {missing:?}, digests {digests:?}\nlogs of hub{}:\n{}",
                    worst + 1,
                    self.logs(worst)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn exit_code(&self, i: usize) -> i64 {
        docker_ok(&[
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &self.hubs[i].container,
        ])
        .trim()
        .parse()
        .unwrap_or(-1)
    }

    /// `docker stop` hub `i`; how long it took. Asserts a clean exit (0) within the grace.
    fn stop(&self, i: usize) -> Duration {
        let started = Instant::now();
        docker_ok(&[
            "stop",
            "-t",
            &GRACE_SECS.to_string(),
            &self.hubs[i].container,
        ]);
        let took = started.elapsed();
        let code = self.exit_code(i);
        assert_eq!(
            code,
            0,
            "{} exited {code} on docker stop; logs:\n{}",
            self.hubs[i].container,
            self.logs(i)
        );
        assert!(
            took < Duration::from_secs(GRACE_SECS),
            "docker stop took {took:?}, the grace period is {GRACE_SECS} s"
        );
        took
    }

    fn start_again(&self, i: usize) -> Duration {
        let started = Instant::now();
        docker_ok(&["start", &self.hubs[i].container]);
        self.wait_ready(i);
        started.elapsed()
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        for hub in &self.hubs {
            let _ = docker(&["rm", "-f", "-v", &hub.container]);
        }
        let _ = docker(&["network", "rm", &self.network]);
    }
}

fn service(slug: &str) -> Value {
    json!({"kind": "service", "id": slug,
        "title": {"en": format!("Container test service {slug}")},
        "description": {"en": "Published by the container tests."},
        "category": "skills-and-training", "area_served": ["SE"], "languages": ["en"]})
}

fn publish_on(
    http: &reqwest::blocking::Client,
    port: u16,
    token: &str,
    slug: &str,
) -> Option<String> {
    let r = http
        .post(format!("http://127.0.0.1:{port}/v1/records"))
        .bearer_auth(token)
        .json(&service(slug))
        .send()
        .ok()?;
    if r.status().as_u16() != 201 {
        return None;
    }
    let v: Value = r.json().ok()?;
    v["id"].as_str().map(str::to_owned)
}

/// Publish continuously on the given hubs (round robin) until stopped; every acknowledged id.
struct Storm {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Storm {
    fn start(targets: Vec<(u16, String)>, prefix: &str) -> Storm {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let prefix = prefix.to_owned();
        let thread = std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client");
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let (port, token) = &targets[n as usize % targets.len()];
                if let Some(id) = publish_on(&http, *port, token, &format!("{prefix}-{n}")) {
                    acked.push(id);
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
                n += 1;
            }
            acked
        });
        Storm {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("storm thread"))
            .unwrap_or_default()
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn publish_on_one_hub_is_found_on_all_others() {
    if !enabled("publish_on_one_hub_is_found_on_all_others") {
        return;
    }
    let _serial = lock();
    let fed = Federation::start(5);
    let started = Instant::now();
    let id = fed.publish(0, "found-everywhere").expect("publish on hub1");
    let want: BTreeSet<String> = [id.clone()].into();
    let took = fed.wait_converged(&want, "one record from hub1");
    timing(
        "publish on hub1 → found on hubs 2-5",
        started.elapsed(),
        &format!("(converged after {:.2} s)", took.as_secs_f64()),
    );

    // The CLI in the image needs no flags: the image sets the data directory.
    let status = docker_ok(&["exec", &fed.hubs[4].container, "hubcat", "--json", "status"]);
    let status: Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["records"]["service"], 1, "{status}");
    assert_eq!(status["name"], "HUB5");
    docker_ok(&["exec", &fed.hubs[4].container, "hubcat", "health"]);
    let shown = docker_ok(&["exec", &fed.hubs[2].container, "hubcat", "show", &id]);
    assert!(shown.contains("found-everywhere"), "{shown}");

    // Metrics on a receiving hub count the record, the peers and the propagation. The
    // propagation is recorded by a task of its own and peers keep connecting after the
    // hub is ready, so the metrics are polled until they show it all.
    let wanted = [
        "hubcat_records{kind=\"service\"} 1",
        "hubcat_change_propagation_seconds_count 1",
        "hubcat_api_requests_total{route=\"/v1/records\",method=\"GET\",status=\"200\"}",
    ];
    let several_peers = |m: &str| {
        ["4", "3", "2"]
            .iter()
            .any(|n| m.contains(&format!("hubcat_peers_connected {n}\n")))
    };
    let mut metrics = String::new();
    let complete = wait_until(CONVERGE, || {
        metrics = fed
            .http
            .get(fed.url(2, "/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        wanted.iter().all(|line| metrics.contains(line)) && several_peers(&metrics)
    });
    for line in wanted {
        assert!(metrics.contains(line), "missing `{line}` in metrics");
    }
    assert!(
        complete && several_peers(&metrics),
        "hub3 should be connected to several peers"
    );
}

#[test]
fn partition_heals_to_one_digest_and_the_union_of_records() {
    if !enabled("partition_heals_to_one_digest_and_the_union_of_records") {
        return;
    }
    let _serial = lock();
    let fed = Federation::start(5);
    let before = fed.publish(0, "before-partition").expect("publish");
    fed.wait_converged(&[before.clone()].into(), "before the partition");

    // Cut hubs 4 and 5 off the federation's network.
    for i in [3, 4] {
        docker_ok(&[
            "network",
            "disconnect",
            &fed.network,
            &fed.hubs[i].container,
        ]);
    }
    let a = fed.publish(0, "side-a").expect("publish on hub1");
    // Cut off, hubs 4 and 5 are reached through `docker exec` (their published ports go
    // through the network they left).
    let b1 = fed.publish_exec(3, "side-b-4").expect("publish on hub4");
    let b2 = fed.publish_exec(4, "side-b-5").expect("publish on hub5");
    assert!(
        wait_until(CONVERGE, || fed.ids(1).is_some_and(|ids| ids.contains(&a))),
        "side A's record never reached hub2"
    );
    // Two more sync rounds in which side B's records could leak, if the partition failed.
    std::thread::sleep(Duration::from_secs(4));
    let on_hub2 = fed.ids(1).expect("hub2 ids");
    assert!(
        !on_hub2.contains(&b1) && !on_hub2.contains(&b2),
        "the partition holds: side A must not see side B's records"
    );
    assert!(
        !fed.ids(3).expect("hub4 ids").contains(&a),
        "side B must not see side A's record"
    );
    assert_ne!(fed.digest(0), fed.digest(3), "the sides differ");

    // Heal: reconnect with the same service names.
    let healed = Instant::now();
    for i in [3, 4] {
        docker_ok(&[
            "network",
            "connect",
            "--alias",
            &fed.hubs[i].alias,
            &fed.network,
            &fed.hubs[i].container,
        ]);
    }
    let want: BTreeSet<String> = [before, a, b1, b2].into();
    let took = fed.wait_converged(&want, "after the partition healed");
    timing(
        "partition healed → same digest and union of records on all 5 hubs",
        healed.elapsed(),
        &format!("(convergence {:.2} s)", took.as_secs_f64()),
    );
}

#[test]
fn killed_hub_loses_no_acknowledged_record() {
    if !enabled("killed_hub_loses_no_acknowledged_record") {
        return;
    }
    let _serial = lock();
    let fed = Federation::start(3);
    // A storm on hub2 (the one to be killed) and one on hub1.
    let on_victim = Storm::start(
        vec![(fed.hubs[1].port, fed.hubs[1].token.clone())],
        "kill-2",
    );
    let on_other = Storm::start(
        vec![(fed.hubs[0].port, fed.hubs[0].token.clone())],
        "kill-1",
    );
    std::thread::sleep(Duration::from_secs(3));
    docker_ok(&["kill", "-s", "KILL", &fed.hubs[1].container]);
    let killed_at = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let acked_victim = on_victim.finish();
    std::thread::sleep(Duration::from_secs(1));
    let acked_other = on_other.finish();
    assert!(
        acked_victim.len() >= 10,
        "the storm should have been acknowledged on hub2 before the kill ({})",
        acked_victim.len()
    );
    let restart = fed.start_again(1);
    timing(
        "hub2 SIGKILLed during a publish storm → restarted and ready",
        restart,
        &format!(
            "({} acknowledged on hub2, {} on hub1)",
            acked_victim.len(),
            acked_other.len()
        ),
    );
    let want: BTreeSet<String> = acked_victim.into_iter().chain(acked_other).collect();
    let took = fed.wait_converged(&want, "after the kill");
    timing(
        "every acknowledged record on every hub after the kill",
        killed_at.elapsed(),
        &format!("(convergence after restart {:.2} s)", took.as_secs_f64()),
    );
}

#[test]
fn rolling_restart_while_publishing_loses_nothing() {
    if !enabled("rolling_restart_while_publishing_loses_nothing") {
        return;
    }
    let _serial = lock();
    let fed = Federation::start(3);
    let targets: Vec<(u16, String)> = fed.hubs.iter().map(|h| (h.port, h.token.clone())).collect();
    let storm = Storm::start(targets, "rolling");
    let started = Instant::now();
    let mut stops = Vec::new();
    for i in 0..fed.hubs.len() {
        std::thread::sleep(Duration::from_secs(1));
        stops.push(fed.stop(i));
        fed.start_again(i);
    }
    std::thread::sleep(Duration::from_secs(1));
    let acked = storm.finish();
    assert!(acked.len() >= 20, "publishing went on: {}", acked.len());
    let want: BTreeSet<String> = acked.iter().cloned().collect();
    let took = fed.wait_converged(&want, "after the rolling restart");
    timing(
        "rolling restart of 3 hubs while publishing → converged",
        started.elapsed(),
        &format!(
            "({} acknowledged, all present; stops took {}; convergence {:.2} s)",
            acked.len(),
            stops
                .iter()
                .map(|d| format!("{:.1}s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" "),
            took.as_secs_f64()
        ),
    );
}

#[test]
fn docker_stop_exits_zero_within_the_grace_period_under_load() {
    if !enabled("docker_stop_exits_zero_within_the_grace_period_under_load") {
        return;
    }
    let _serial = lock();
    let fed = Federation::start(2);
    let storm = Storm::start(vec![(fed.hubs[0].port, fed.hubs[0].token.clone())], "stop");
    std::thread::sleep(Duration::from_secs(2));
    let took = fed.stop(0);
    let acked = storm.finish();
    timing(
        "docker stop under a publish storm → exit 0",
        took,
        &format!("({} acknowledged before the stop)", acked.len()),
    );
    let logs = fed.logs(0);
    assert!(
        logs.contains("node stopped"),
        "clean shutdown logged:\n{logs}"
    );
    // Everything acknowledged survived the stop.
    fed.start_again(0);
    fed.wait_converged(&acked.into_iter().collect(), "after docker stop");
}
