//! `hubcat-bench import`: bulk import throughput, rows per second.
//!
//! The path a hub's staff use: `hubcat import FILE` (the CLI parses the file, posts batches
//! to the running node's `POST /v1/import`, the node validates, signs one change per row and
//! stores each batch with one durable write), timed as a whole process for a JSON lines and a
//! CSV file of the same rows, each into a fresh node. Beside it, the engine alone
//! (`Catalogue::publish_batch`, no HTTP) and the one-record-per-call path
//! (`Catalogue::publish`, what `POST /v1/records` does per row) show where the time goes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hubcat_node::engine::Catalogue;
use hubcat_node::store::SledStore;
use hubcat_protocol::{HubKey, Record};
use serde::Serialize;
use serde_json::Value;

use super::corpus::{self, Corpus};
use super::{group, rate, round, Console, Machine, Table};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Print one JSON object on stdout; the table goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// 1 000 rows instead of 10 000.
    #[arg(long)]
    pub quick: bool,
    /// Rows to import (overrides --quick).
    #[arg(long)]
    pub rows: Option<usize>,
    /// Rows per request (`hubcat import --batch`) and per engine batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Rows published one by one for the per-record comparison (it is slow).
    #[arg(long, default_value_t = 2000)]
    pub single: usize,
    /// Directory for the data directories (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Measure {
    path: &'static str,
    rows: usize,
    seconds: f64,
    rows_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    rows: usize,
    batch: usize,
    text: String,
    file_bytes: Vec<(&'static str, usize)>,
    results: Vec<Measure>,
}

/// The `hubcat` binary beside this one (`cargo build --release -p hubcat-node` builds it).
fn hubcat() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no directory for the bench binary")?;
    let bin = dir.join(format!("hubcat{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        bail!(
            "{} is missing; build it first: cargo build --release -p hubcat-node",
            bin.display()
        );
    }
    Ok(bin)
}

fn hubcat_cmd(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("HUBCAT_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("the bench needs UTF-8 paths")
}

/// A node process that is stopped (SIGTERM, then kill) when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(bin: &Path, dir: &Path) -> anyhow::Result<Node> {
    let d = path_str(dir)?;
    let out = hubcat_cmd(
        bin,
        &[
            "init",
            "--data-dir",
            d,
            "--name",
            "BENCH",
            "--country",
            "SE",
            "--api",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    )
    .output()?;
    if !out.status.success() {
        bail!("hubcat init: {}", String::from_utf8_lossy(&out.stderr));
    }
    let child = hubcat_cmd(bin, &["run", "--data-dir", d])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let node = Node(child);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(addr) = std::fs::read_to_string(dir.join("api.addr")) {
            let ok = http
                .get(format!("http://{}/healthz", addr.trim()))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(node);
            }
        }
        if Instant::now() > deadline {
            bail!("the node in {} did not start", dir.display());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Time `hubcat import FILE` into a fresh node; checks every row was published.
fn cli_import(
    bin: &Path,
    root: &Path,
    name: &str,
    file: &Path,
    rows: usize,
    batch: usize,
) -> anyhow::Result<Duration> {
    let dir = root.join(name);
    let _node = start_node(bin, &dir)?;
    let start = Instant::now();
    let batch = batch.to_string();
    let out = hubcat_cmd(
        bin,
        &[
            "import",
            "--json",
            "--batch",
            &batch,
            "--data-dir",
            path_str(&dir)?,
            path_str(file)?,
        ],
    )
    .output()?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "hubcat import {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout)?;
    if report["published"].as_u64() != Some(rows as u64) {
        bail!(
            "hubcat import published {} of {rows} rows",
            report["published"]
        );
    }
    Ok(elapsed)
}

pub fn run(args: &ImportArgs) -> anyhow::Result<bool> {
    let console = Console { json: args.json };
    let rows = args.rows.unwrap_or(if args.quick { 1_000 } else { 10_000 });
    let bin = hubcat()?;
    let data = corpus::shared_data_file();
    let corpus = Corpus::load(1, &data)?;
    console.progress(&format!(
        "{rows} records, text from {}",
        corpus.source.describe()
    ));
    let records: Vec<Record> = corpus.records(rows)?.into_iter().map(|(_, r)| r).collect();
    let values: Vec<Value> = records
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let jsonl: String = values.iter().map(|v| format!("{v}\n")).collect();
    let csv = hubcat_node::import::records_to_csv(&values)?;
    let jsonl_file = tmp.path().join("rows.jsonl");
    let csv_file = tmp.path().join("rows.csv");
    std::fs::write(&jsonl_file, &jsonl)?;
    std::fs::write(&csv_file, &csv)?;

    let mut results = Vec::new();
    let mut measure = |path: &'static str, n: usize, d: Duration| {
        results.push(Measure {
            path,
            rows: n,
            seconds: round(d.as_secs_f64(), 3),
            rows_per_sec: round(rate(n, d), 0),
        });
    };
    console.progress("hubcat import rows.jsonl");
    let d = cli_import(&bin, tmp.path(), "cli-jsonl", &jsonl_file, rows, args.batch)?;
    measure("hubcat import (JSON lines) → API → engine", rows, d);
    console.progress("hubcat import rows.csv");
    let d = cli_import(&bin, tmp.path(), "cli-csv", &csv_file, rows, args.batch)?;
    measure("hubcat import (CSV) → API → engine", rows, d);

    console.progress("engine: Catalogue::publish_batch");
    let seed = corpus::secret_for(9, 0);
    {
        let store = Arc::new(SledStore::open(&tmp.path().join("engine-batch"))?);
        let catalogue = Catalogue::open(store, HubKey::from_secret_bytes(&seed)?)?;
        let start = Instant::now();
        for chunk in records.chunks(args.batch.max(1)) {
            let out = catalogue.publish_batch(chunk, false)?;
            if let Some(Err(e)) = out.iter().find(|r| r.is_err()) {
                bail!("publish_batch refused a generated row: {e}");
            }
        }
        measure("engine: publish_batch", rows, start.elapsed());
    }
    let single = args.single.min(rows);
    console.progress("engine: Catalogue::publish, one by one");
    {
        let store = Arc::new(SledStore::open(&tmp.path().join("engine-single"))?);
        let catalogue = Catalogue::open(store, HubKey::from_secret_bytes(&seed)?)?;
        let start = Instant::now();
        for r in &records[..single] {
            catalogue.publish(r)?;
        }
        measure(
            "engine: publish, one record per call",
            single,
            start.elapsed(),
        );
    }

    let report = Report {
        machine: Machine::probe(),
        rows,
        batch: args.batch,
        text: corpus.source.describe(),
        file_bytes: vec![("jsonl", jsonl.len()), ("csv", csv.len())],
        results,
    };
    let mut table = Table::default();
    table.row(["path", "rows", "seconds", "rows/s"]);
    for m in &report.results {
        table.row([
            m.path.to_owned(),
            group(m.rows as f64),
            format!("{:.2}", m.seconds),
            group(m.rows_per_sec),
        ]);
    }
    console.say(&format!(
        "import: {rows} rows, batches of {}, {} build, {} cpus\n",
        args.batch, report.machine.build, report.machine.cpus
    ));
    console.say(&table.render());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(true)
}
