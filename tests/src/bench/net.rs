//! `hubcat-bench propagate | catchup | diff | idle | net`: the federation layer measured on
//! loopback, with real nodes ([`hubcat_tests::TestHub`]: the node library, its sled store, its
//! libp2p swarm and its API, each on its own two-thread tokio runtime) in this process.
//!
//! - [`propagate`]: gossip latency — 5, 10, 20 nodes; 1 000 records published at one node;
//!   per record, the time until it is visible on every node.
//! - [`catchup`]: a node that misses 10 000 records joins; time and bytes until it has
//!   converged, against the size of the missing signed changes.
//! - [`reconcile`]: `idle` (bytes of an anti-entropy round between nodes in sync) and `diff`
//!   (bytes and round trips when one record differs among 100 000, next to Automerge's own
//!   sync protocol run cold on the same documents).
//!
//! Bytes are the node's own accounting: sync request and response bodies plus their 4-byte
//! length prefix (`SessionReport`, and the per-peer `bytes_in` / `bytes_out` counters), i.e.
//! what the application puts on a libp2p stream. Noise, Yamux, TCP and IP framing come on top
//! and are not counted.

pub mod catchup;
pub mod propagate;
pub mod reconcile;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hubcat_node::engine::Catalogue;
use hubcat_protocol::{change, CatalogueDoc, SignedChange};
use hubcat_tests::TestHub;
use serde::Serialize;

use super::corpus::{self, Corpus};
use super::{Console, Machine};

/// Record timestamps of preloaded changes start here (2025-10-09T…Z), one millisecond apart:
/// deterministic, and in the past so the future-timestamp check passes.
const BASE_MS: i64 = 1_760_000_000_000;
/// Changes per `Catalogue::ingest` call when preloading a node.
const PRELOAD_BATCH: usize = 2048;
/// An anti-entropy interval long enough that no periodic round runs during a bench that drives
/// its sessions itself (the node still syncs once when a peer connects).
pub const QUIET_SYNC_SECS: i64 = 3600;

/// Flags shared by the network benches (each bench reads the ones it needs).
#[derive(Debug, Clone, clap::Args)]
pub struct NetArgs {
    /// Print one JSON object on stdout; the tables go to stderr.
    #[arg(long)]
    pub json: bool,
    /// A smaller version of each bench (the four together finish in about a minute).
    #[arg(long)]
    pub quick: bool,
    /// Exit with status 2 when a target is missed.
    #[arg(long)]
    pub require_target: bool,
    /// propagate: cluster sizes, comma separated (default 5,10,20; --quick 5,10).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<usize>,
    /// propagate: records published and timed per cluster (default 1000; --quick 100).
    #[arg(long)]
    pub records: Option<usize>,
    /// propagate: publishing pace at node 0, records per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// propagate: `p2p.max_peers` of every node (default: the node's default, 50).
    #[arg(long)]
    pub max_peers: Option<i64>,
    /// catchup: records the joining node misses (default 10000; --quick 1000).
    #[arg(long)]
    pub missing: Option<usize>,
    /// diff: records on both nodes (default 100000; --quick 10000).
    #[arg(long)]
    pub diff_records: Option<usize>,
    /// idle: record counts, comma separated (default 1000,10000,100000; --quick 1000,10000).
    #[arg(long, value_delimiter = ',')]
    pub idle_records: Vec<usize>,
    /// idle: anti-entropy rounds measured per record count.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Publishing hubs the preloaded records are spread over (catchup, diff, idle).
    #[arg(long, default_value_t = 500)]
    pub publishers: usize,
    /// propagate: write every record's latency to this CSV file (nodes, record, published at
    /// ms after the first, latency ms, slowest node, out-of-order deliveries of that record).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Reference data with hub texts (default: `<workspace>/../shared/data/edih_catalogue.json`).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

impl NetArgs {
    pub fn data_file(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(corpus::shared_data_file)
    }
}

/// Which network bench a subcommand runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Propagate,
    Catchup,
    Diff,
    Idle,
    /// All four, idle and diff on the same pair of nodes.
    All,
}

/// The load average (1, 5, 15 min) when a bench started and ended: the machine is shared.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Load {
    pub before: [f64; 3],
    pub after: [f64; 3],
}

impl Load {
    pub fn now() -> [f64; 3] {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut out = [0.0; 3];
        for (slot, field) in out.iter_mut().zip(text.split_whitespace()) {
            *slot = field.parse().unwrap_or(0.0);
        }
        out
    }
}

/// Everything one `hubcat-bench` network subcommand printed with `--json`.
#[derive(Debug, Serialize)]
pub struct NetReport {
    pub bench: &'static str,
    pub machine: Machine,
    pub text_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagate: Option<propagate::PropagateReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup: Option<catchup::CatchupReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<reconcile::DiffReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<reconcile::IdleReport>,
    /// Every bench that ran met its targets.
    pub targets_met: bool,
}

/// Run one network bench (or all of them); returns whether every target that ran was met.
pub fn run(which: Which, args: &NetArgs) -> anyhow::Result<bool> {
    let console = Console { json: args.json };
    let machine = Machine::probe();
    if machine.build == "debug" {
        console.say("note: debug build — figures mean nothing; use `cargo run --release`");
    }
    let data = args.data_file();
    let text_source = if data.exists() {
        format!("{}", data.display())
    } else {
        console.say(&format!(
            "note: shared/data not found ({}): using generated text",
            data.display()
        ));
        "generated text".to_owned()
    };
    let mut report = NetReport {
        bench: match which {
            Which::Propagate => "propagate",
            Which::Catchup => "catchup",
            Which::Diff => "diff",
            Which::Idle => "idle",
            Which::All => "net",
        },
        machine,
        text_source,
        propagate: None,
        catchup: None,
        diff: None,
        idle: None,
        targets_met: true,
    };
    console.say(&format!(
        "hubcat-bench {} — in-process nodes on loopback, {} CPUs ({}), {} build",
        report.bench, report.machine.cpus, report.machine.cpu_model, report.machine.build
    ));
    if matches!(which, Which::Propagate | Which::All) {
        let r = propagate::run(args, console)?;
        console.say(&propagate::render(&r));
        report.targets_met &= r.target_met;
        report.propagate = Some(r);
    }
    if matches!(which, Which::Catchup | Which::All) {
        let r = catchup::run(args, console)?;
        console.say(&catchup::render(&r));
        report.targets_met &= r.target_met;
        report.catchup = Some(r);
    }
    if matches!(which, Which::Idle | Which::Diff | Which::All) {
        let (idle, diff) = reconcile::run(
            matches!(which, Which::Idle | Which::All),
            matches!(which, Which::Diff | Which::All),
            args,
            console,
        )?;
        if let Some(r) = idle {
            console.say(&reconcile::render_idle(&r));
            report.targets_met &= r.target_met;
            report.idle = Some(r);
        }
        if let Some(r) = diff {
            console.say(&reconcile::render_diff(&r));
            report.targets_met &= r.target_met;
            report.diff = Some(r);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report.targets_met)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `n` signed changes, one record upsert each, from the corpus' publishers: `(publisher
/// index, envelope)` in round-robin order, so every prefix is causally complete per document.
/// The same production as the ingest bench's stage 1.
pub fn produce(corpus: &Corpus, n: usize) -> anyhow::Result<Vec<(usize, SignedChange)>> {
    let mut docs: Vec<CatalogueDoc> = corpus
        .publishers
        .iter()
        .enumerate()
        .map(|(p, publisher)| {
            let mut suffix = [0u8; 16];
            suffix[..8].copy_from_slice(&(p as u64).to_be_bytes());
            CatalogueDoc::new(publisher.key.id(), suffix)
        })
        .collect();
    let records = corpus.records(n)?;
    let mut out = Vec::with_capacity(n);
    for (i, (p, record)) in records.into_iter().enumerate() {
        let doc = docs.get_mut(p).context("record of an unknown publisher")?;
        let change = doc
            .upsert(&record, BASE_MS + i as i64)
            .with_context(|| format!("upsert of record {i}"))?;
        out.push((
            p,
            change::sign(&corpus.publishers[p].key, doc.id(), &change),
        ));
    }
    Ok(out)
}

/// Bytes a change must take on the wire whatever the protocol: the raw Automerge change plus
/// its 64-byte signature.
pub fn minimum_bytes(changes: &[(usize, SignedChange)]) -> u64 {
    changes
        .iter()
        .map(|(_, c)| (c.change.len() + c.signature.len()) as u64)
        .sum()
}

/// Ingest `changes` into `catalogue` (each publisher's changes together, batches of
/// [`PRELOAD_BATCH`]); fails unless every change is accepted as new.
pub fn preload(catalogue: &Catalogue, changes: &[(usize, SignedChange)]) -> anyhow::Result<()> {
    let mut ordered: Vec<&(usize, SignedChange)> = changes.iter().collect();
    // Stable: each publisher's changes stay in causal order.
    ordered.sort_by_key(|(p, _)| *p);
    let now = hubcat_protocol::now_ms();
    for (b, batch) in ordered.chunks(PRELOAD_BATCH).enumerate() {
        let envelopes: Vec<SignedChange> = batch.iter().map(|(_, c)| c.clone()).collect();
        let n = envelopes.len();
        let r = catalogue
            .ingest(envelopes, now)
            .with_context(|| format!("preload batch {b}"))?;
        if let Some(refusal) = r.refused.first() {
            bail!(
                "preload batch {b}: {} change(s) refused, first: {} ({})",
                r.refused.len(),
                refusal.reason,
                refusal.detail
            );
        }
        if r.accepted != n {
            bail!(
                "preload batch {b}: {} of {n} changes accepted ({} duplicates)",
                r.accepted,
                r.duplicates
            );
        }
    }
    Ok(())
}

/// Start an in-process hub with an anti-entropy interval of `sync_secs`.
pub fn start_hub(
    name: &str,
    country: &str,
    bootstrap: &[String],
    sync_secs: i64,
) -> anyhow::Result<TestHub> {
    TestHub::start_configured(
        name,
        country,
        bootstrap,
        &[("sync.interval_secs", toml::Value::Integer(sync_secs))],
    )
    .with_context(|| format!("starting hub {name}"))
}

/// How many peers `hub` is connected to.
pub fn connected(hub: &TestHub) -> anyhow::Result<usize> {
    let peers = hub.block_on(hub.net().peers())?;
    Ok(peers.iter().filter(|p| p.connected).count())
}

/// Sync bytes both ways between `hub` and `peer`, by `hub`'s per-peer counters.
pub fn bytes_with(hub: &TestHub, peer: &TestHub) -> anyhow::Result<u64> {
    let id = peer.peer_id().to_string();
    let peers = hub.block_on(hub.net().peers())?;
    Ok(peers
        .iter()
        .find(|p| p.peer_id == id)
        .map(|p| p.bytes_in + p.bytes_out)
        .unwrap_or(0))
}

/// True when both catalogues hold exactly the same (document, heads) pairs — what the status
/// digest hashes.
pub fn same_heads(a: &Catalogue, b: &Catalogue) -> bool {
    let norm = |c: &Catalogue| {
        let mut v = c.doc_heads();
        for (_, heads) in v.iter_mut() {
            heads.sort();
        }
        v.retain(|(_, heads)| !heads.is_empty());
        v
    };
    norm(a) == norm(b)
}

/// Poll `check` every 10 ms until it returns true or `timeout` passes.
pub fn wait_for(
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub use hubcat_tests::percentile;

/// A small deterministic generator (SplitMix64) for topologies.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x853c_49e6_748f_ea9b)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 for n = 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// `12345` → `12 345`.
pub fn bytes(n: u64) -> String {
    super::group(n as f64)
}
