//! Test harness for hubcat: in-process hubs ([`TestHub`]), real `hubcat` processes
//! ([`hubcat_bin`], [`run_hubcat`], [`NodeProcess`]) and sample records about real hubs
//! ([`sample`], [`sample_records`]).
//!
//! In-process hubs run the node library on their own tokio runtime, so test functions stay
//! plain `#[test]`s and talk to the API with a blocking HTTP client.

pub mod adversary;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use hubcat_config::Config;
use hubcat_node::datadir::{DataDir, InitOptions};
use hubcat_node::engine::Catalogue;
use hubcat_node::net::NetHandle;
use hubcat_node::node::RunningNode;
use libp2p::PeerId;
use serde_json::Value;

/// Longest any harness wait (a node start, a process exit) may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Anti-entropy interval of test hubs, in seconds (gossip carries most changes at once).
pub const TEST_SYNC_SECS: i64 = 2;

/// Wait until the network reports its listen addresses.
async fn wait_for_listen(net: &NetHandle) -> anyhow::Result<Vec<libp2p::Multiaddr>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let addrs = net.listen_addrs().await?;
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        if Instant::now() > deadline {
            bail!("the node did not start listening for peers within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `check` every 50 ms until it returns true or `timeout` passes; returns whether it
/// became true.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Sample records
// ---------------------------------------------------------------------------------------------

/// Health Data Sweden's hub profile (EDIH, Sweden).
pub const HDS_PROFILE: &str = r#"{
  "kind": "profile",
  "name": "HDS",
  "title": {"en": "Health Data Sweden", "sv": "Health Data Sweden"},
  "hub_type": "edih",
  "country": "SE",
  "regions": ["SE11", "SE12", "SE21"],
  "website": "https://healthdatasweden.example",
  "description": {"en": "EDIH supporting SMEs and the public sector in using health data."},
  "languages": ["sv", "en"],
  "technologies": [{"term": "artificial-intelligence", "level": 4}, "big-data"],
  "sectors": [{"term": "health-care", "level": 5}],
  "front_desk": {"email": "info@healthdatasweden.example", "languages": ["sv", "en"]},
  "partners": ["KTH Royal Institute of Technology", "Karolinska Institutet"]
}"#;

/// Health Data Sweden's AI testbed service.
pub const HDS_TESTBED: &str = r#"{
  "kind": "service",
  "id": "health-data-testbed",
  "title": {"en": "Health data testbed for AI products", "sv": "Testbädd för AI-produkter med hälsodata"},
  "description": {"en": "Test and validate AI-based digital health products on pseudonymised health data before you invest."},
  "category": "test-before-invest",
  "technologies": ["artificial-intelligence", "big-data"],
  "sectors": ["health-care"],
  "audience": ["sme", "health-provider"],
  "trl": {"min": 4, "max": 7},
  "area_served": ["SE", "SE11"],
  "languages": ["sv", "en"],
  "delivery": "hybrid",
  "cost": "subsidised",
  "contact": "testbed@healthdatasweden.example",
  "landing_page": "https://healthdatasweden.example/testbed"
}"#;

/// Health Data Sweden's remote patient monitoring practice.
pub const HDS_PRACTICE: &str = r#"{
  "kind": "practice",
  "id": "remote-patient-monitoring",
  "title": {"en": "Remote patient monitoring in primary care"},
  "description": {"en": "Patients with chronic heart failure measure at home; a primary-care nurse follows the readings."},
  "practice_type": "complex-solution",
  "maturity": "deployed",
  "scale": "regional",
  "trl": 9,
  "owner": "Region Stockholm",
  "countries": ["SE"],
  "languages": ["sv"],
  "open_to_twinning": true
}"#;

/// The Galician health living lab's hospital pilot service (Spain, ES11).
pub const GALICIA_PILOTS: &str = r#"{
  "kind": "service",
  "id": "hospital-pilot-testing",
  "title": {"en": "Pilot testing in hospital laboratories", "es": "Pruebas piloto en laboratorios hospitalarios"},
  "description": {"en": "Run a pilot of your digital health product with clinicians in real hospital laboratories."},
  "category": "test-before-invest",
  "technologies": ["iot", "sensors-and-vision"],
  "sectors": ["health-care"],
  "area_served": ["ES", "ES11"],
  "languages": ["es", "gl", "en"],
  "delivery": "onsite"
}"#;

/// OK!Thess's investor readiness coaching (Greece, EL52).
pub const OKTHESS_INVESTOR: &str = r#"{
  "kind": "service",
  "id": "investor-readiness",
  "title": {"en": "Investor readiness coaching", "el": "Προετοιμασία για επενδυτές"},
  "description": {"en": "One-to-one coaching on fundraising and pitching, then meetings with investors."},
  "category": "support-to-find-investment",
  "audience": ["startup", "sme"],
  "area_served": ["GR", "EL52"],
  "languages": ["el", "en"],
  "cost": "free"
}"#;

/// Every sample record by name (`hds-profile`, `hds-testbed`, …), parsed as JSON.
pub fn sample_records() -> BTreeMap<&'static str, Value> {
    [
        ("hds-profile", HDS_PROFILE),
        ("hds-testbed", HDS_TESTBED),
        ("hds-practice", HDS_PRACTICE),
        ("galicia-pilots", GALICIA_PILOTS),
        ("okthess-investor", OKTHESS_INVESTOR),
    ]
    .into_iter()
    .map(|(name, text)| (name, serde_json::from_str(text).expect("fixture is JSON")))
    .collect()
}

/// One sample record by name (see [`sample_records`]); panics on an unknown name.
pub fn sample(name: &str) -> Value {
    sample_records()
        .remove(name)
        .unwrap_or_else(|| panic!("no sample record named {name}"))
}

// ---------------------------------------------------------------------------------------------
// In-process hubs
// ---------------------------------------------------------------------------------------------

/// A hub running in this process: temporary data directory, node, API token and HTTP client.
pub struct TestHub {
    /// The node's data directory (inside `tmp`).
    pub data_dir: DataDir,
    /// The write token from the data directory.
    pub token: String,
    /// Blocking HTTP client for the API.
    pub http: reqwest::blocking::Client,
    config: Config,
    node: Option<RunningNode>,
    runtime: tokio::runtime::Runtime,
    // Declared last: removed after the node has stopped.
    tmp: tempfile::TempDir,
}

/// Hubs of a federation founded by a genesis: `founders` sign it, every hub (founders first,
/// then `others`) joins it, the first founder starts first and the others bootstrap from it;
/// all on CPU `cpu` when given.
/// Returns the running hubs, their dids in the same order, the genesis and its id.
pub fn genesis_federation(
    founders: &[(&str, &str)],
    others: &[(&str, &str)],
    quorum: u32,
    cpu: Option<usize>,
) -> anyhow::Result<(
    Vec<TestHub>,
    Vec<String>,
    hubcat_protocol::genesis::Genesis,
    String,
)> {
    let prepared: Vec<PreparedHub> = founders
        .iter()
        .chain(others)
        .map(|(name, country)| {
            let p = TestHub::prepare(name, country)?;
            Ok(match cpu {
                Some(cpu) => p.on_cpu(cpu),
                None => p,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let dids: Vec<String> = prepared.iter().map(PreparedHub::did).collect();
    let mut genesis = hubcat_protocol::genesis::Genesis::new(
        "health-hubs",
        &dids[..founders.len()],
        quorum,
        "2026-12-02T10:00:00Z",
    )?;
    for p in &prepared[..founders.len()] {
        genesis.sign(&p.key())?;
    }
    let id = genesis.verify()?;
    for p in &prepared {
        hubcat_node::federation::adopt(&p.data_dir, &genesis, &id)?;
    }
    let mut prepared = prepared.into_iter();
    let first = prepared
        .next()
        .ok_or_else(|| anyhow::anyhow!("no founder"))?
        .start_configured(&[], &[])?;
    let boot = [first.p2p_addr()];
    let mut hubs = vec![first];
    for p in prepared {
        hubs.push(p.start_configured(&boot, &[])?);
    }
    Ok((hubs, dids, genesis, id))
}

/// The nearest-rank percentile `p` (0..=1) of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Keep the calling thread (and the threads it starts) on CPU `cpu`. Where that CPU does not
/// exist, the thread stays where it is.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: the CPU set is a plain bit set on the stack, initialised by CPU_ZERO before use;
    // sched_setaffinity reads it and changes only the calling thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A hub's data directory, created but not started (see [`TestHub::prepare`]).
pub struct PreparedHub {
    tmp: tempfile::TempDir,
    pub data_dir: DataDir,
    /// Run the node's threads on this CPU only (see [`PreparedHub::on_cpu`]).
    cpu: Option<usize>,
}

impl PreparedHub {
    /// Run every thread of the node on CPU `cpu` (its runtime's workers and blocking pool, and
    /// the threads they start): a hub sharing a machine with another one's load, as in the
    /// adversary bench, where the attackers run on the other CPU as they would elsewhere.
    pub fn on_cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// The hub's key.
    pub fn key(&self) -> hubcat_protocol::HubKey {
        self.data_dir.load_key().expect("hub key")
    }

    /// The hub's did.
    pub fn did(&self) -> String {
        self.key().id().to_did()
    }

    /// Start the node, dialling `bootstrap`, with extra config overrides.
    pub fn start_configured(
        self,
        bootstrap: &[String],
        overrides: &[(&'static str, toml::Value)],
    ) -> anyhow::Result<TestHub> {
        let PreparedHub { tmp, data_dir, cpu } = self;
        // Tests poll and query their hubs from one address far faster than a person would:
        // the read rate limit is off unless a test sets it (tests/tests/single_node.rs does).
        let mut flags: Vec<(&'static str, toml::Value)> = vec![
            ("sync.interval_secs", toml::Value::Integer(TEST_SYNC_SECS)),
            ("api.read_rate_per_sec", toml::Value::Integer(0)),
        ];
        if !bootstrap.is_empty() {
            flags.push((
                "p2p.bootstrap",
                toml::Value::Array(
                    bootstrap
                        .iter()
                        .map(|b| toml::Value::String(b.clone()))
                        .collect(),
                ),
            ));
        }
        flags.extend(overrides.iter().cloned());
        let mut config = data_dir.load_config(BTreeMap::new(), flags)?.config;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // The hub's name on its threads (as far as Linux's 15 characters allow), to tell
            // hubs apart in a profile.
            .thread_name(format!(
                "rt-{}",
                config.hub.name.chars().take(12).collect::<String>()
            ))
            .enable_all()
            .on_thread_start(move || {
                if let Some(cpu) = cpu {
                    pin_to_cpu(cpu);
                }
            })
            .build()?;
        // Start the node from a thread on its CPU: the threads `start` creates itself (the
        // network's runtime, the peer-ingest thread, the store's and the index's) inherit it.
        let node = std::thread::scope(|s| {
            s.spawn(|| {
                if let Some(cpu) = cpu {
                    pin_to_cpu(cpu);
                }
                runtime.block_on(hubcat_node::node::start(&data_dir, &config))
            })
            .join()
        })
        .map_err(|_| anyhow::anyhow!("starting the node panicked"))??;
        // Keep the libp2p port across stop/resume, so peers that bootstrap from this hub find
        // it again.
        if let Some(net) = &node.net {
            let addrs = runtime.block_on(wait_for_listen(net))?;
            config.p2p.listen = addrs
                .iter()
                .map(|a| {
                    a.iter()
                        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                        .collect::<libp2p::Multiaddr>()
                        .to_string()
                })
                .collect();
        }
        Ok(TestHub {
            token: data_dir.load_token()?,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            data_dir,
            config,
            node: Some(node),
            runtime,
            tmp,
        })
    }
}

impl TestHub {
    /// Create a hub named `name` in `country` and start its node on free loopback ports (API
    /// and libp2p), with no peers.
    pub fn start(name: &str, country: &str) -> anyhow::Result<TestHub> {
        TestHub::start_with(name, country, &[])
    }

    /// Like [`TestHub::start`], dialling `bootstrap` (multiaddrs ending in `/p2p/<peer-id>`).
    pub fn start_with(name: &str, country: &str, bootstrap: &[String]) -> anyhow::Result<TestHub> {
        TestHub::start_configured(name, country, bootstrap, &[])
    }

    /// Like [`TestHub::start_with`], with extra config overrides (as command-line flags would).
    pub fn start_configured(
        name: &str,
        country: &str,
        bootstrap: &[String],
        overrides: &[(&'static str, toml::Value)],
    ) -> anyhow::Result<TestHub> {
        TestHub::prepare(name, country)?.start_configured(bootstrap, overrides)
    }

    /// Create a hub's data directory without starting its node (to join it to a federation
    /// genesis first, say).
    pub fn prepare(name: &str, country: &str) -> anyhow::Result<PreparedHub> {
        let tmp = tempfile::tempdir()?;
        let data_dir = DataDir::new(tmp.path().join("hub"));
        data_dir.init(&InitOptions {
            name: name.into(),
            country: country.into(),
            // Port 0: every hub gets free ports, so tests run in parallel.
            api: Some("127.0.0.1:0".into()),
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap: Vec::new(),
        })?;
        Ok(PreparedHub {
            tmp,
            data_dir,
            cpu: None,
        })
    }

    /// The running node (panics between [`TestHub::stop`] and [`TestHub::resume`]).
    pub fn node(&self) -> &RunningNode {
        self.node.as_ref().expect("node is running")
    }

    /// The node's catalogue engine.
    ///
    /// Drop the returned handle before the `TestHub`: the hub's drop deletes the data
    /// directory, and a catalogue still alive after that keeps the sled store open, whose
    /// final flush on drop can then hang (seen in the benchmarks).
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.node().catalogue.clone()
    }

    /// The node's API base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.node().api_url()
    }

    /// The temporary directory holding the data directory (for scratch files).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// Stop the node cleanly (snapshot and flush), keeping the data directory.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(node) = self.node.take() {
            self.runtime.block_on(node.shutdown())?;
        }
        Ok(())
    }

    /// Start the node again on the same data directory (a new free port).
    pub fn resume(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.node.is_none(), "node is already running");
        let node = self
            .runtime
            .block_on(hubcat_node::node::start(&self.data_dir, &self.config))?;
        self.node = Some(node);
        Ok(())
    }

    /// Stop and start the node on the same data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.resume()
    }

    /// Send a request with an optional bearer token and body; returns (status, JSON body).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("request {path} failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// POST /v1/records with the hub's token; returns (status, JSON body).
    pub fn publish(&self, record: &Value) -> (u16, Value) {
        self.publish_raw(record.to_string().into_bytes(), Some(&self.token))
    }

    /// POST /v1/records with any bytes and token; returns (status, JSON body).
    pub fn publish_raw(&self, body: Vec<u8>, token: Option<&str>) -> (u16, Value) {
        self.request(reqwest::Method::POST, "/v1/records", token, Some(body))
    }

    /// Publish and insist on 201; returns the record view.
    pub fn publish_ok(&self, record: &Value) -> Value {
        let (status, body) = self.publish(record);
        assert_eq!(status, 201, "publish refused: {body}");
        body
    }

    /// GET /v1/records/{id}; returns (status, JSON body).
    pub fn get(&self, id: &str) -> (u16, Value) {
        self.request(
            reqwest::Method::GET,
            &format!("/v1/records/{}", urlencode(id)),
            None,
            None,
        )
    }

    /// GET /v1/records (optional query string without `?`); returns (status, JSON body).
    pub fn list(&self, query: &str) -> (u16, Value) {
        self.request(
            reqwest::Method::GET,
            &format!("/v1/records?{query}"),
            None,
            None,
        )
    }

    /// The number of records GET /v1/records reports.
    pub fn count(&self) -> u64 {
        let (status, body) = self.list("");
        assert_eq!(status, 200, "list failed: {body}");
        body["count"].as_u64().expect("count is a number")
    }

    /// GET /v1/status; returns (status, JSON body).
    pub fn status(&self) -> (u16, Value) {
        self.request(reqwest::Method::GET, "/v1/status", None, None)
    }

    /// DELETE /v1/records/{id} with the hub's token; returns (status, JSON body).
    pub fn delete(&self, id: &str) -> (u16, Value) {
        self.delete_with(id, Some(&self.token))
    }

    /// DELETE /v1/records/{id} with any token; returns (status, JSON body).
    pub fn delete_with(&self, id: &str, token: Option<&str>) -> (u16, Value) {
        self.request(
            reqwest::Method::DELETE,
            &format!("/v1/records/{}", urlencode(id)),
            token,
            None,
        )
    }

    /// The libp2p network of the running node.
    pub fn net(&self) -> &NetHandle {
        self.node()
            .net
            .as_ref()
            .expect("the test hub runs a network")
    }

    /// This hub's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.net().peer_id
    }

    /// The address other hubs bootstrap from: `/ip4/127.0.0.1/tcp/<port>/p2p/<peer-id>`.
    pub fn p2p_addr(&self) -> String {
        self.p2p_addrs()
            .into_iter()
            .find(|a| a.contains("/tcp/"))
            .expect("the hub listens on TCP")
    }

    /// Every address the hub listens on, each ending in `/p2p/<peer-id>`.
    pub fn p2p_addrs(&self) -> Vec<String> {
        self.runtime
            .block_on(self.net().listen_addrs())
            .expect("listen addresses")
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// Run a future on this hub's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// GET /v1/peers.
    pub fn peers(&self) -> Vec<Value> {
        let (status, body) = self.request(reqwest::Method::GET, "/v1/peers", None, None);
        assert_eq!(status, 200, "peers failed: {body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// The number of connected peers.
    pub fn connected_peers(&self) -> usize {
        self.peers()
            .iter()
            .filter(|p| p["connected"].as_bool() == Some(true))
            .count()
    }

    /// The catalogue digest from GET /v1/status.
    pub fn digest(&self) -> String {
        let (status, body) = self.status();
        assert_eq!(status, 200, "status failed: {body}");
        body["digest"].as_str().expect("digest").to_owned()
    }

    /// Stop exchanging anything with `other` (both directions close; new connections refused).
    pub fn cut(&self, other: &TestHub) {
        self.block_on(self.net().block(other.peer_id()));
    }

    /// Undo [`TestHub::cut`] and dial `other` again.
    pub fn heal(&self, other: &TestHub) {
        self.block_on(self.net().unblock(other.peer_id()));
        let addr = other.p2p_addr().parse().expect("multiaddr");
        self.block_on(self.net().dial(addr));
    }

    /// GET /v1/export?format=bundle; returns (status, JSON body).
    pub fn export(&self) -> (u16, Value) {
        self.request(reqwest::Method::GET, "/v1/export?format=bundle", None, None)
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let _ = self.runtime.block_on(node.shutdown());
        }
    }
}

/// Percent-encode a path segment (ids contain `@`, which is fine, but be strict anyway).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// True when `s` is non-empty lower-case hex.
pub fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------------------------
// Real `hubcat` processes
// ---------------------------------------------------------------------------------------------

/// The built `hubcat` binary next to this test executable (`target/<profile>/hubcat`).
pub fn hubcat_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test>-<hash> → target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join(format!("hubcat{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        panic!(
            "the hubcat binary is missing at {}; build it first: cargo build -p hubcat-node",
            bin.display()
        );
    }
    bin
}

/// A `hubcat` command with the HUBCAT_* environment cleared, so only its flags count.
pub fn hubcat_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(hubcat_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("HUBCAT_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Run `hubcat ARGS` to completion; returns (exit code, stdout, stderr). Killed after [`WAIT`].
pub fn run_hubcat(args: &[&str]) -> (i32, String, String) {
    let mut child = hubcat_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubcat");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(stdout));
    let err = read(Box::new(stderr));
    let code = match wait_with_timeout(&mut child, WAIT) {
        Some(code) => code,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hubcat {args:?} (pid {pid}) did not finish within {WAIT:?}");
        }
    };
    (
        code,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// Wait for a child to exit; its exit code (-1 for a signal), or None after `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status.code().unwrap_or(-1));
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `hubcat init --data-dir DIR --name NAME --country CC --api 127.0.0.1:0`; returns the did.
pub fn init_hub(dir: &Path, name: &str, country: &str) -> String {
    init_hub_with(dir, name, country, &[])
}

/// `hubcat init` on free loopback ports (API and libp2p), with bootstrap peers.
pub fn init_hub_with(dir: &Path, name: &str, country: &str, bootstrap: &[String]) -> String {
    let mut args = vec![
        "init",
        "--data-dir",
        path_str(dir),
        "--name",
        name,
        "--country",
        country,
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ];
    for b in bootstrap {
        args.push("--bootstrap");
        args.push(b);
    }
    let (code, out, err) = run_hubcat(&args);
    assert_eq!(code, 0, "hubcat init failed: {err}");
    out.trim().to_owned()
}

/// A path as &str (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A running `hubcat run` process, killed (SIGKILL) when dropped.
pub struct NodeProcess {
    child: Option<Child>,
    /// The node's data directory.
    pub dir: PathBuf,
    /// The API address the node reported in DIR/api.addr.
    pub addr: String,
    stderr_path: PathBuf,
}

impl NodeProcess {
    /// Start `hubcat run --data-dir DIR` and wait until /healthz answers at DIR/api.addr.
    pub fn start(dir: &Path) -> anyhow::Result<NodeProcess> {
        let addr_file = dir.join("api.addr");
        // A killed node leaves its old address behind; the new one rewrites it at start.
        let _ = std::fs::remove_file(&addr_file);
        let stderr_path = dir.with_extension(format!("run-{}.log", unique()));
        let log = std::fs::File::create(&stderr_path)?;
        let child = hubcat_command(&["run", "--data-dir", path_str(dir)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn hubcat run")?;
        let mut node = NodeProcess {
            child: Some(child),
            dir: dir.to_path_buf(),
            addr: String::new(),
            stderr_path,
        };
        node.addr = node.wait_ready()?;
        Ok(node)
    }

    fn wait_ready(&mut self) -> anyhow::Result<String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + WAIT;
        let addr_file = self.dir.join("api.addr");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "hubcat run exited early with {status}; stderr:\n{}",
                        self.stderr()
                    );
                }
            }
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                let addr = text.trim().to_owned();
                if !addr.is_empty() {
                    let ok = http
                        .get(format!("http://{addr}/healthz"))
                        .send()
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        return Ok(addr);
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "hubcat run did not answer /healthz within {WAIT:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// What the node wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM the node (a clean stop: drain, snapshot, flush) and wait; its exit code.
    pub fn terminate(&mut self) -> anyhow::Result<i32> {
        let Some(mut child) = self.child.take() else {
            bail!("node already stopped");
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("could not send SIGTERM to {}", child.id());
        }
        match wait_with_timeout(&mut child, WAIT) {
            Some(code) => Ok(code),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("hubcat run did not stop within {WAIT:?} of SIGTERM")
            }
        }
    }

    /// SIGKILL the node and reap it: no shutdown, no snapshot, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write `contents` to DIR/NAME and return the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create file");
    f.write_all(contents.as_bytes()).expect("write file");
    path
}

/// `hubcat list --json --data-dir DIR`'s record count (the node must be running).
pub fn cli_count(dir: &Path) -> anyhow::Result<u64> {
    let (code, out, err) = run_hubcat(&["list", "--json", "--data-dir", path_str(dir)]);
    if code != 0 {
        return Err(anyhow!("hubcat list failed ({code}): {err}"));
    }
    let v: Value = serde_json::from_str(&out).context("hubcat list --json output")?;
    v["count"]
        .as_u64()
        .ok_or_else(|| anyhow!("no count in {out}"))
}
