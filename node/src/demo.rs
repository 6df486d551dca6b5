//! `hubcat demo`: a small federation on this machine. One node per hub (Health Data Sweden,
//! Health Innovation of Sweden, the Galician health cluster's living lab, Thessaloniki's
//! innovation ecosystem), each with its own key, store, API and libp2p identity on loopback.
//! Each hub publishes its own records on its own node; gossip and anti-entropy bring every
//! record to every node. With the real EC EDIH catalogue export at hand (`--data`, by default
//! `../shared/data/edih_catalogue.json`), the hubs' profiles carry its descriptions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use hubcat_protocol::Record;
use serde::Deserialize;

use crate::datadir::{DataDir, InitOptions};
use crate::node::{self, RunningNode};

/// Seed records about real hubs, shipped with the binary.
const SEED: &str = include_str!("../demo/seed.json");
/// Where the real hub data usually is, relative to a checkout.
const DEFAULT_DATA: &str = "../shared/data/edih_catalogue.json";
/// How long the demo waits for every node to hold every record.
const CONVERGE: Duration = Duration::from_secs(60);

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the demo hubs keep their data (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// API port of the first hub; the others take the next ports (0: any free port).
    #[arg(long, default_value_t = 7070)]
    pub port: u16,
    /// The EC EDIH catalogue export to take real hub descriptions from, when present.
    #[arg(long, default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// Load the records, wait for the federation to converge, print the summary and stop
    /// instead of serving until Ctrl-C.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Deserialize)]
pub struct SeedHub {
    pub name: String,
    pub country: String,
    /// The hub's name in the EDIH catalogue export, when it is listed there.
    #[serde(default)]
    pub edih: Option<String>,
    pub records: Vec<serde_json::Value>,
}

/// The seed hubs and their records.
pub fn seed() -> anyhow::Result<Vec<SeedHub>> {
    serde_json::from_str(SEED).context("demo seed does not parse")
}

#[derive(Debug, Deserialize)]
struct CatalogueEntry {
    name: String,
    #[serde(default)]
    website: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Put the real catalogue's description and website into the seed profiles; returns the hubs
/// it enriched.
fn enrich(hubs: &mut [SeedHub], data: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(data)?;
    let entries: Vec<CatalogueEntry> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the EDIH catalogue export", data.display()))?;
    let mut enriched = Vec::new();
    for hub in hubs.iter_mut() {
        let Some(entry) = hub
            .edih
            .as_ref()
            .and_then(|n| entries.iter().find(|e| &e.name == n))
        else {
            continue;
        };
        let Some(profile) = hub.records.iter_mut().find(|r| r["kind"] == "profile") else {
            continue;
        };
        if let Some(d) = entry.description.as_ref().filter(|d| !d.trim().is_empty()) {
            profile["description"]["en"] = serde_json::Value::String(d.trim().to_owned());
        }
        if let Some(w) = entry.website.as_ref().filter(|w| w.starts_with("http")) {
            profile["website"] = serde_json::Value::String(w.clone());
        }
        enriched.push(hub.name.clone());
    }
    Ok(enriched)
}

pub async fn run(args: DemoArgs, json: bool) -> anyhow::Result<()> {
    crate::cli::init_logging(&hubcat_config::LogSection {
        filter: "warn".into(),
        format: hubcat_config::LogFormat::Human,
    });
    let (root, _temp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("hubcat-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut hubs = seed()?;
    let data_note = match enrich(&mut hubs, &args.data) {
        Ok(names) => format!(
            "real hub data from {}: {}",
            args.data.display(),
            names.join(", ")
        ),
        Err(e) => format!(
            "real hub data not used ({}: {e}); the built-in seed is complete without it",
            args.data.display()
        ),
    };

    // Start every node; each bootstraps from the nodes started before it.
    let mut nodes: Vec<(SeedHub, DataDir, RunningNode)> = Vec::new();
    let mut bootstrap: Vec<String> = Vec::new();
    for (i, hub) in hubs.into_iter().enumerate() {
        let dd = DataDir::new(root.join(hub.name.to_lowercase().replace(['!', ' '], "")));
        if !dd.key_path().exists() {
            dd.init(&InitOptions {
                name: hub.name.clone(),
                country: hub.country.clone(),
                api: Some(format!("127.0.0.1:{}", pick_port(args.port, i))),
                listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
                bootstrap: vec![],
            })?;
        }
        // Peers' ports change from run to run: give the bootstrap list as a flag, not in the file.
        let flags = vec![(
            "p2p.bootstrap",
            toml::Value::Array(bootstrap.iter().cloned().map(toml::Value::String).collect()),
        )];
        let config = dd.load_config(Default::default(), flags)?.config;
        let node = node::start(&dd, &config).await?;
        if let Some(net) = &node.net {
            bootstrap.extend(listen_addrs(net).await?.into_iter().take(1));
        }
        nodes.push((hub, dd, node));
    }

    // Each hub publishes its own records on its own node.
    let started = Instant::now();
    for (hub, _, node) in &nodes {
        for value in hub.records.clone() {
            let record = Record::from_value(value)
                .with_context(|| format!("demo seed record of {} is invalid", hub.name))?;
            let c = node.catalogue.clone();
            tokio::task::spawn_blocking(move || c.publish(&record)).await??;
        }
    }
    let total: usize = nodes.iter().map(|(h, _, _)| h.records.len()).sum();
    let converged = wait_converged(&nodes, total).await;
    let took = started.elapsed();

    let summary: Vec<serde_json::Value> = nodes
        .iter()
        .map(|(hub, dd, n)| {
            serde_json::json!({
                "hub": hub.name,
                "did": n.catalogue.hub_id().to_did(),
                "api": n.api_url(),
                "peer_id": n.net.as_ref().map(|h| h.peer_id.to_string()),
                "data_dir": dd.root(),
                "published": hub.records.len(),
                "records": n.catalogue.record_count(),
                "digest": n.catalogue.status().digest,
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "hubs": summary,
                "records": total,
                "converged": converged,
                "converge_ms": took.as_millis() as u64,
                "data": data_note,
            }))?
        );
    } else {
        println!(
            "hubcat demo: a federation of {} hub nodes on this machine, each with its own key, store and API",
            nodes.len()
        );
        println!("{data_note}\n");
        for (hub, dd, n) in &nodes {
            println!(
                "  {:<16} {}  published {:>2}, holds {:>2} records  data {}",
                hub.name,
                n.api_url(),
                hub.records.len(),
                n.catalogue.record_count(),
                dd.root().display()
            );
        }
        if converged {
            println!(
                "\nEvery node holds all {total} records ({} ms after the first publish); digests agree.",
                took.as_millis()
            );
        } else {
            println!("\nWARNING: the nodes did not converge within {CONVERGE:?}.");
        }
        if let Some((_, dd, n)) = nodes.last() {
            println!("\nQuery any node for the whole federated catalogue, e.g. the last one:");
            println!("  curl {}/v1/records", n.api_url());
            println!(
                "  curl '{}/v1/records?kind=service&country=SE'",
                n.api_url()
            );
            println!("  curl {}/v1/status", n.api_url());
            println!("  curl {}/v1/peers", n.api_url());
            println!("  hubcat list --data-dir {}", dd.root().display());
            println!("  hubcat peers --data-dir {}", dd.root().display());
            println!(
                "  hubcat show --data-dir {} health-data-testbed",
                dd.root().display()
            );
        }
    }
    if !args.no_wait {
        println!("\nCtrl-C stops the demo.");
        node::shutdown_signal().await;
    }
    for (_, _, n) in nodes {
        n.shutdown().await?;
    }
    anyhow::ensure!(
        converged,
        "the demo federation did not converge within {CONVERGE:?}"
    );
    Ok(())
}

async fn listen_addrs(net: &crate::net::NetHandle) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let addrs = net.listen_addrs().await?;
        if !addrs.is_empty() {
            return Ok(addrs.iter().map(|a| a.to_string()).collect());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "a demo node did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until every node holds `total` records and all digests agree.
async fn wait_converged(nodes: &[(SeedHub, DataDir, RunningNode)], total: usize) -> bool {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let digests: Vec<String> = nodes
            .iter()
            .map(|(_, _, n)| n.catalogue.status().digest)
            .collect();
        let all_there = nodes
            .iter()
            .all(|(_, _, n)| n.catalogue.record_count() == total);
        if all_there && digests.windows(2).all(|w| w[0] == w[1]) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first hub's port plus `i`, or 0 (any free port) when that port is taken.
fn pick_port(first: u16, i: usize) -> u16 {
    if first == 0 {
        return 0;
    }
    let port = first.saturating_add(i as u16);
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => 0,
    }
}
