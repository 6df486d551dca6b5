//! `hubcat-bench`: the node's performance benchmarks, one subcommand per bench.
//!
//! ```text
//! cargo run --release -p hubcat-tests --bin hubcat-bench -- ingest [--json] [--quick]
//!     [--records 10000,100000] [--publishers 500]
//! cargo run --release -p hubcat-tests --bin hubcat-bench -- net [--json] [--quick]
//! cargo run --release -p hubcat-tests --bin hubcat-bench -- propagate|catchup|diff|idle [--json] [--quick]
//! cargo run --release -p hubcat-tests --bin hubcat-bench -- search|query [--json] [--quick]
//!     [--records 10000,100000] [--publishers 500]
//! cargo run --release -p hubcat-tests --bin hubcat-bench -- adversary [--json] [--records 200]
//! cargo build --release -p hubcat-node && \
//!   cargo run --release -p hubcat-tests --bin hubcat-bench -- import [--json] [--quick] [--rows 10000]
//! ```
//!
//! Each bench lives in its own module under `tests/src/bench/` and prints a human table, or
//! with `--json` one JSON object on stdout (the table then goes to stderr). Later benches
//! (query) join the `match` below.

#[path = "../bench/mod.rs"]
mod bench;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The allocator the `hubcat` binary uses, so the bench measures what the node runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "hubcat-bench",
    about = "hubcat performance benchmarks",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest throughput on one core: produce, sign, verify, apply, store, end to end.
    Ingest(bench::ingest::IngestArgs),
    /// Gossip latency: 5, 10, 20 nodes; per record, publish → visible on every node.
    Propagate(bench::net::NetArgs),
    /// A node that missed 10 000 records joins: time and bytes until it has converged.
    Catchup(bench::net::NetArgs),
    /// Two nodes with 100 000 records one record apart: bytes and round trips of one session,
    /// next to Automerge's own sync run cold.
    Diff(bench::net::NetArgs),
    /// Bytes of an anti-entropy session between two nodes in sync, at 1 k, 10 k, 100 k records.
    Idle(bench::net::NetArgs),
    /// propagate, catchup, idle and diff in one run (idle and diff on the same two nodes).
    Net(bench::net::NetArgs),
    /// Search index: build (reindex) time, query p50/p99 per class, memory; 10 k and 100 k;
    /// SQLite FTS5 beside it. Also `query`.
    #[command(alias = "query")]
    Search(bench::search::SearchArgs),
    /// Bulk import: `hubcat import` of 10 000 rows (JSON lines and CSV) through the running
    /// node's API and engine, rows per second; the engine alone beside it.
    Import(bench::import::ImportArgs),
    /// Hostile peers against a 3-founder federation: 13 kinds of bad input, what got in,
    /// who was graylisted, honest query latency quiet and under attack.
    Adversary(bench::adversary::AdversaryArgs),
}

/// Exit status when a bench ran but missed its target (and the caller asked to fail on it).
const EXIT_MISSED_TARGET: u8 = 2;

fn net(which: bench::net::Which, args: &bench::net::NetArgs) -> anyhow::Result<bool> {
    bench::net::run(which, args).map(|met| met || !args.require_target)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Ingest(args) => bench::ingest::run(args).map(|met| met || !args.require_target),
        Command::Propagate(args) => net(bench::net::Which::Propagate, args),
        Command::Catchup(args) => net(bench::net::Which::Catchup, args),
        Command::Diff(args) => net(bench::net::Which::Diff, args),
        Command::Idle(args) => net(bench::net::Which::Idle, args),
        Command::Net(args) => net(bench::net::Which::All, args),
        Command::Search(args) => bench::search::run(args).map(|met| met || !args.require_target),
        Command::Import(args) => bench::import::run(args),
        Command::Adversary(args) => {
            bench::adversary::run(args).map(|met| met || !args.require_target)
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_MISSED_TARGET),
        Err(e) => {
            eprintln!("hubcat-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
