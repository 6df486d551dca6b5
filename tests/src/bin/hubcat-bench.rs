//! `hubcat-bench`: the node's performance benchmarks, one subcommand per bench.
//!
//! ```text
//! cargo run --release -p hubcat-tests --bin hubcat-bench -- ingest [--json] [--quick]
//!     [--records 10000,100000] [--publishers 500]
//! ```
//!
//! Each bench lives in its own module under `tests/src/bench/` and prints a human table, or
//! with `--json` one JSON object on stdout (the table then goes to stderr). Later benches
//! (propagate, catchup, diff, idle, query) join the `match` below.

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
}

/// Exit status when a bench ran but missed its target (and the caller asked to fail on it).
const EXIT_MISSED_TARGET: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Ingest(args) => bench::ingest::run(args).map(|met| met || !args.require_target),
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
