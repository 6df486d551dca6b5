//! `hubcat demo`: hub nodes on this machine, each with its own key, store and API, loaded with
//! records about real hubs (Health Data Sweden, the Galician health cluster's living lab,
//! Thessaloniki's innovation ecosystem), then serving until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use hubcat_protocol::Record;
use serde::Deserialize;

use crate::datadir::{DataDir, InitOptions};
use crate::node::{self, RunningNode};

/// Seed records about real hubs, shipped with the binary.
const SEED: &str = include_str!("../demo/seed.json");

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the demo hubs keep their data (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// API port of the first hub; the others take the next ports (0: any free port).
    #[arg(long, default_value_t = 7070)]
    pub port: u16,
    /// Load the records, print the summary and stop instead of serving until Ctrl-C.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Deserialize)]
pub struct SeedHub {
    pub name: String,
    pub country: String,
    pub records: Vec<serde_json::Value>,
}

/// The seed hubs and their records.
pub fn seed() -> anyhow::Result<Vec<SeedHub>> {
    serde_json::from_str(SEED).context("demo seed does not parse")
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
    let mut nodes: Vec<(String, DataDir, RunningNode)> = Vec::new();
    for (i, hub) in seed()?.into_iter().enumerate() {
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
        let config = dd.load_config(Default::default(), vec![])?.config;
        let node = node::start(&dd, &config).await?;
        for value in hub.records {
            let record = Record::from_value(value)
                .with_context(|| format!("demo seed record of {} is invalid", hub.name))?;
            let c = node.catalogue.clone();
            tokio::task::spawn_blocking(move || c.publish(&record)).await??;
        }
        nodes.push((hub.name, dd, node));
    }

    let summary: Vec<serde_json::Value> = nodes
        .iter()
        .map(|(name, dd, n)| {
            serde_json::json!({
                "hub": name,
                "did": n.catalogue.hub_id().to_did(),
                "api": n.api_url(),
                "data_dir": dd.root(),
                "records": n.catalogue.record_count(),
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "hubcat demo: {} hub nodes on this machine, each with its own key and store\n",
            nodes.len()
        );
        for (name, dd, n) in &nodes {
            println!(
                "  {name:<22} {}  {} records  data {}",
                n.api_url(),
                n.catalogue.record_count(),
                dd.root().display()
            );
        }
        if let Some((_, dd, n)) = nodes.first() {
            println!("\nQuery a node:");
            println!("  curl {}/v1/records", n.api_url());
            println!(
                "  curl '{}/v1/records?kind=service&country=SE'",
                n.api_url()
            );
            println!("  curl {}/v1/status", n.api_url());
            println!("  hubcat list --data-dir {}", dd.root().display());
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
    Ok(())
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
