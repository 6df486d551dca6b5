//! `propagate`: how fast a new record reaches every node through gossip.
//!
//! For each cluster size: node 0 starts alone; every later node bootstraps from 2 or 3 random
//! earlier nodes (node 1 from node 0, node 2 from both), so the cluster is connected without
//! being a star or a full mesh. The node's own discovery then adds connections (Kademlia dials
//! peers it learns of while it has fewer than `p2p.max_peers`, default 50, so with the defaults
//! a 20-node cluster ends up fully connected); `--max-peers` lowers that limit for a sparser
//! cluster where gossip needs several hops. The report gives the connections per node. Anti-entropy runs at the production default
//! (every 30 s), so gossip carries what is measured.
//!
//! Settling: wait until the connections join every node into one cluster and no node's
//! connection count has changed for 3 s (the node's discovery adds connections for a while),
//! then publish warm-up records at node 0 until three in a row reach every node within 500 ms
//! (the gossipsub mesh has formed).
//!
//! Measured: `--records` records published at node 0 through `Catalogue::publish` at a steady
//! `--rate`. Every node's `Catalogue::subscribe_applied()` (subscribed before the first
//! publish) reports when each change was applied there. A record is *visible* on a node when
//! its change and every earlier change of node 0's document are applied (Automerge holds a
//! change back until its dependencies arrive, but the engine announces it as applied when it
//! stores it). Per record: latency = max over nodes of (visible − the wall time just before
//! `publish` was called), so it includes node 0's own durable write. Reported: p50, p99 and
//! max over records of that per-record maximum, and for context the median of every
//! (record, node) latency.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use hubcat_node::engine::{Applied, Catalogue};
use hubcat_protocol::Record;
use hubcat_tests::TestHub;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::TryRecvError};

use super::super::corpus::Corpus;
use super::super::{round, Console, Table};
use super::{connected, percentile, wait_for, Load, NetArgs, Rng};

/// The p99 the largest cluster must reach.
pub const TARGET_P99_MS: f64 = 250.0;
/// Cluster size the target applies to.
pub const TARGET_NODES: usize = 20;
/// The node's default anti-entropy interval (`sync.interval_secs`).
const PRODUCTION_SYNC_SECS: i64 = 30;
const FULL_NODES: [usize; 3] = [5, 10, 20];
const QUICK_NODES: [usize; 2] = [5, 10];
const FULL_RECORDS: usize = 1000;
const QUICK_RECORDS: usize = 100;
/// Warm-up: this many records in a row must reach every node within `WARM_MS`.
const WARM_STREAK: usize = 3;
const WARM_MS: i64 = 500;
const MAX_WARMUPS: usize = 40;
/// Connections must stay unchanged this long before warm-up starts.
const STABLE: Duration = Duration::from_secs(3);
/// How long after the last publish the bench waits for stragglers.
const DRAIN: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, Serialize)]
pub struct PropagateRun {
    pub nodes: usize,
    pub records: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Median over every (record, node ≠ 0) pair: a typical single delivery.
    pub all_deliveries_p50_ms: f64,
    /// Records that had not reached every node `DRAIN` after the last publish (excluded from
    /// the percentiles; any makes the run miss its target).
    pub undelivered: usize,
    /// (record, node) pairs whose change was announced as applied before an earlier change
    /// of the same document had arrived (delivered out of order).
    pub out_of_order: usize,
    pub rate_per_s: f64,
    /// `p2p.max_peers` of every node (None: the node's default).
    pub max_peers: Option<i64>,
    /// Publishing took this long (slower than `records / rate` when publish itself lagged).
    pub publish_seconds: f64,
    /// How long `Catalogue::publish` at node 0 took (sign, verify, durable write, apply): p50
    /// and p99 over the timed records. The latencies above include it.
    pub publish_call_p50_ms: f64,
    pub publish_call_p99_ms: f64,
    pub warmup_records: usize,
    /// Connections per node when timing started and when it ended.
    pub connections_mean_start: f64,
    pub connections_min_start: usize,
    pub connections_mean_end: f64,
    pub load: Load,
}

#[derive(Debug, Clone, Serialize)]
pub struct PropagateReport {
    pub target_p99_ms: f64,
    pub target_nodes: usize,
    pub target_met: bool,
    pub runs: Vec<PropagateRun>,
}

pub fn run(args: &NetArgs, console: Console) -> anyhow::Result<PropagateReport> {
    let sizes: Vec<usize> = if !args.nodes.is_empty() {
        args.nodes.clone()
    } else if args.quick {
        QUICK_NODES.to_vec()
    } else {
        FULL_NODES.to_vec()
    };
    ensure!(
        sizes.iter().all(|n| *n >= 2),
        "--nodes: every cluster needs at least 2 nodes"
    );
    let n_records = args.records.unwrap_or(if args.quick {
        QUICK_RECORDS
    } else {
        FULL_RECORDS
    });
    ensure!(n_records > 0, "--records must be at least 1");
    ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be positive"
    );
    // One publisher's records: warm-ups first, then the timed ones (distinct slugs).
    let corpus = Corpus::load(1, &args.data_file())?;
    let records: Vec<Record> = corpus
        .records(MAX_WARMUPS + n_records)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let mut runs = Vec::new();
    let mut traces = String::from(
        "nodes,record,published_ms,publish_call_us,latency_ms,slowest_node,out_of_order\n",
    );
    for &nodes in &sizes {
        console.progress(&format!(
            "propagate: {nodes} nodes, {n_records} records at {} / s",
            args.rate
        ));
        let (run, trace) = run_size(
            nodes,
            &records,
            n_records,
            args.rate,
            args.max_peers,
            console,
        )?;
        runs.push(run);
        traces.push_str(&trace);
    }
    if let Some(path) = &args.trace {
        std::fs::write(path, traces)
            .with_context(|| format!("writing the trace to {}", path.display()))?;
    }
    let target_met = runs
        .iter()
        .filter(|r| r.nodes >= TARGET_NODES)
        .all(|r| r.undelivered == 0 && r.p99_ms <= TARGET_P99_MS)
        && runs.iter().any(|r| r.nodes >= TARGET_NODES)
        && runs.iter().all(|r| r.undelivered == 0);
    Ok(PropagateReport {
        target_p99_ms: TARGET_P99_MS,
        target_nodes: TARGET_NODES,
        target_met,
        runs,
    })
}

/// Each node's applied changes: change hash (hex) → applied_ms, first sighting kept.
struct Watch {
    rxs: Vec<broadcast::Receiver<Applied>>,
    seen: Vec<HashMap<String, i64>>,
    lagged: u64,
}

impl Watch {
    fn new(hubs: &[TestHub]) -> Self {
        Watch {
            rxs: hubs
                .iter()
                .map(|h| h.catalogue().subscribe_applied())
                .collect(),
            seen: vec![HashMap::new(); hubs.len()],
            lagged: 0,
        }
    }

    fn drain(&mut self) {
        for (rx, seen) in self.rxs.iter_mut().zip(self.seen.iter_mut()) {
            loop {
                match rx.try_recv() {
                    Ok(a) => {
                        seen.entry(a.hash.to_string()).or_insert(a.applied_ms);
                    }
                    Err(TryRecvError::Lagged(n)) => self.lagged += n,
                    Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
                }
            }
        }
    }

    /// Whether every node has applied every change in `hashes`.
    fn everywhere(&self, hashes: &[String]) -> bool {
        self.seen
            .iter()
            .all(|seen| hashes.iter().all(|h| seen.contains_key(h)))
    }

    /// The latest applied_ms of `hash` over the nodes (None while a node lacks it).
    fn last_applied(&self, hash: &str) -> Option<i64> {
        self.seen
            .iter()
            .map(|seen| seen.get(hash).copied())
            .collect::<Option<Vec<i64>>>()
            .and_then(|v| v.into_iter().max())
    }
}

/// Connections per node: (mean, min).
fn connections(hubs: &[TestHub]) -> anyhow::Result<(f64, usize)> {
    let counts: Vec<usize> = hubs.iter().map(connected).collect::<anyhow::Result<_>>()?;
    let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
    Ok((mean, counts.iter().copied().min().unwrap_or(0)))
}

/// Whether the connections between the hubs join them all into one cluster.
fn all_linked(hubs: &[TestHub]) -> anyhow::Result<bool> {
    let index: HashMap<String, usize> = hubs
        .iter()
        .enumerate()
        .map(|(i, h)| (h.peer_id().to_string(), i))
        .collect();
    let mut links: Vec<Vec<usize>> = Vec::with_capacity(hubs.len());
    for hub in hubs {
        let peers = hub.block_on(hub.net().peers())?;
        links.push(
            peers
                .iter()
                .filter(|p| p.connected)
                .filter_map(|p| index.get(&p.peer_id).copied())
                .collect(),
        );
    }
    let mut reached = vec![false; hubs.len()];
    let mut stack = vec![0];
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut reached[i], true) {
            stack.extend(links[i].iter().copied());
        }
    }
    Ok(reached.iter().all(|r| *r))
}

fn publish(cat: &Catalogue, record: &Record) -> anyhow::Result<(i64, String)> {
    let published = hubcat_protocol::now_ms();
    let view = cat.publish(record).context("publish at node 0")?;
    Ok((published, view.provenance.change_hash))
}

fn run_size(
    nodes: usize,
    records: &[Record],
    n_records: usize,
    rate: f64,
    max_peers: Option<i64>,
    console: Console,
) -> anyhow::Result<(PropagateRun, String)> {
    let before = Load::now();
    let mut rng = Rng::new(nodes as u64);
    let mut hubs: Vec<TestHub> = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let want = if i <= 2 { i } else { 2 + rng.below(2) };
        let mut picks: Vec<usize> = Vec::with_capacity(want);
        while picks.len() < want {
            let p = rng.below(i);
            if !picks.contains(&p) {
                picks.push(p);
            }
        }
        let bootstrap: Vec<String> = picks.iter().map(|&p| hubs[p].p2p_addr()).collect();
        let mut overrides = vec![(
            "sync.interval_secs",
            toml::Value::Integer(PRODUCTION_SYNC_SECS),
        )];
        if let Some(m) = max_peers {
            overrides.push(("p2p.max_peers", toml::Value::Integer(m)));
        }
        hubs.push(
            TestHub::start_configured(&format!("P{i:02}"), "SE", &bootstrap, &overrides)
                .with_context(|| format!("starting hub P{i:02}"))?,
        );
    }
    let linked = wait_for(Duration::from_secs(30), || all_linked(&hubs))?;
    ensure!(
        linked,
        "{nodes} nodes did not form one connected cluster within 30 s"
    );
    // The node's discovery keeps adding connections for a while (Kademlia routing updates):
    // wait until no node's connection count has changed for `STABLE`.
    let mut counts: Vec<usize> = Vec::new();
    let mut stable_since = Instant::now();
    let stable = wait_for(Duration::from_secs(60), || {
        let now: Vec<usize> = hubs.iter().map(connected).collect::<anyhow::Result<_>>()?;
        if now != counts {
            counts = now;
            stable_since = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
        Ok(stable_since.elapsed() >= STABLE)
    })?;
    ensure!(
        stable,
        "{nodes} nodes: connections still changing after 60 s"
    );
    let cat0: Arc<Catalogue> = hubs[0].catalogue();
    let mut watch = Watch::new(&hubs);

    // Warm-up until the gossip mesh carries records at once.
    let mut streak = 0;
    let mut warmups = 0;
    while streak < WARM_STREAK {
        if warmups >= MAX_WARMUPS {
            bail!(
                "{nodes} nodes: gossip did not settle — fewer than {WARM_STREAK} warm-up records in a row reached every node within {WARM_MS} ms after {MAX_WARMUPS} tries"
            );
        }
        let (published, hash) = publish(&cat0, &records[warmups])?;
        warmups += 1;
        let hashes = [hash.clone()];
        wait_for(Duration::from_secs(5), || {
            watch.drain();
            Ok(watch.everywhere(&hashes))
        })?;
        match watch.last_applied(&hash) {
            Some(t) if t - published <= WARM_MS => streak += 1,
            _ => streak = 0,
        }
    }
    // Let the last warm-up's echoes pass.
    std::thread::sleep(Duration::from_millis(300));
    watch.drain();
    let (conn_mean_start, conn_min_start) = connections(&hubs)?;

    // Timed run at a steady pace.
    let timed = &records[MAX_WARMUPS..MAX_WARMUPS + n_records];
    let mut published = Vec::with_capacity(n_records);
    let mut hashes = Vec::with_capacity(n_records);
    let mut calls: Vec<f64> = Vec::with_capacity(n_records);
    let start = Instant::now();
    for (k, record) in timed.iter().enumerate() {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let call = Instant::now();
        let (t, hash) = publish(&cat0, record)?;
        calls.push(call.elapsed().as_secs_f64() * 1e6);
        published.push(t);
        hashes.push(hash);
        watch.drain();
    }
    let publish_seconds = start.elapsed().as_secs_f64();
    wait_for(DRAIN, || {
        watch.drain();
        Ok(watch.everywhere(&hashes))
    })?;
    ensure!(
        watch.lagged == 0,
        "{} applied notifications were lost (receiver lagged)",
        watch.lagged
    );
    let (conn_mean_end, _) = connections(&hubs)?;

    // Visible on node j = max applied_ms over this change and every earlier one (one chain).
    let mut worst: Vec<Option<i64>> = vec![Some(i64::MIN); n_records];
    let mut slowest = vec![0usize; n_records];
    let mut late = vec![0usize; n_records];
    let mut deliveries: Vec<f64> = Vec::with_capacity(n_records * nodes);
    let mut out_of_order = 0;
    for (j, seen) in watch.seen.iter().enumerate() {
        let mut visible = i64::MIN;
        let mut complete = true;
        for (k, hash) in hashes.iter().enumerate() {
            match seen.get(hash) {
                Some(&applied) if complete => {
                    if applied < visible {
                        out_of_order += 1;
                        late[k] += 1;
                    }
                    visible = visible.max(applied);
                    if let Some(w) = worst[k].as_mut() {
                        if visible > *w {
                            *w = visible;
                            slowest[k] = j;
                        }
                    }
                    if j != 0 {
                        deliveries.push((visible - published[k]) as f64);
                    }
                }
                _ => {
                    complete = false;
                    worst[k] = None;
                }
            }
        }
    }
    let mut trace = String::new();
    for k in 0..n_records {
        let latency = worst[k].map(|w| (w - published[k]).to_string());
        trace.push_str(&format!(
            "{nodes},{k},{},{:.0},{},{},{}\n",
            published[k] - published[0],
            calls[k],
            latency.as_deref().unwrap_or(""),
            slowest[k],
            late[k]
        ));
    }
    let mut sorted_calls = calls.clone();
    sorted_calls.sort_by(f64::total_cmp);
    let mut latencies: Vec<f64> = worst
        .iter()
        .zip(&published)
        .filter_map(|(w, p)| w.map(|w| (w - p) as f64))
        .collect();
    let undelivered = n_records - latencies.len();
    latencies.sort_by(f64::total_cmp);
    deliveries.sort_by(f64::total_cmp);
    if undelivered > 0 {
        console.progress(&format!(
            "{undelivered} of {n_records} records had not reached every node {DRAIN:?} after the last publish"
        ));
    }
    let run = PropagateRun {
        nodes,
        records: n_records,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        all_deliveries_p50_ms: percentile(&deliveries, 0.50),
        undelivered,
        out_of_order,
        rate_per_s: rate,
        max_peers,
        publish_seconds: round(publish_seconds, 2),
        publish_call_p50_ms: round(percentile(&sorted_calls, 0.50) / 1e3, 2),
        publish_call_p99_ms: round(percentile(&sorted_calls, 0.99) / 1e3, 2),
        warmup_records: warmups,
        connections_mean_start: round(conn_mean_start, 1),
        connections_min_start: conn_min_start,
        connections_mean_end: round(conn_mean_end, 1),
        load: Load {
            before,
            after: Load::now(),
        },
    };
    // Catalogue handles first: a store must not outlive its hub's temporary directory.
    drop(watch);
    drop(cat0);
    drop(hubs);
    Ok((run, trace))
}

pub fn render(report: &PropagateReport) -> String {
    let mut t = Table::default();
    t.row([
        "nodes",
        "records",
        "p50 ms",
        "p99 ms",
        "max ms",
        "all p50 ms",
        "undelivered",
        "out of order",
        "conn/node",
        "publish p50/p99 ms",
        "warm-ups",
        "load 1m",
    ]);
    for r in &report.runs {
        t.row([
            r.nodes.to_string(),
            r.records.to_string(),
            format!("{:.0}", r.p50_ms),
            format!("{:.0}", r.p99_ms),
            format!("{:.0}", r.max_ms),
            format!("{:.0}", r.all_deliveries_p50_ms),
            r.undelivered.to_string(),
            r.out_of_order.to_string(),
            format!(
                "{:.1} → {:.1}",
                r.connections_mean_start, r.connections_mean_end
            ),
            format!(
                "{:.1} / {:.1}",
                r.publish_call_p50_ms, r.publish_call_p99_ms
            ),
            r.warmup_records.to_string(),
            format!("{:.2} → {:.2}", r.load.before[0], r.load.after[0]),
        ]);
    }
    let rate = report.runs.first().map(|r| r.rate_per_s).unwrap_or(0.0);
    let target = report
        .runs
        .iter()
        .find(|r| r.nodes >= report.target_nodes)
        .map(|r| {
            format!(
                "p99 at {} nodes: {:.0} ms — target ≤ {:.0} ms: {}",
                r.nodes,
                r.p99_ms,
                report.target_p99_ms,
                if report.target_met { "PASS" } else { "MISS" }
            )
        })
        .unwrap_or_else(|| {
            format!(
                "target (p99 ≤ {:.0} ms at {} nodes): not run",
                report.target_p99_ms, report.target_nodes
            )
        });
    format!(
        "\npropagate — records published at node 0 at {rate} / s; latency = publish call → visible on every node\n\n{}\n{target}",
        t.render()
    )
}
