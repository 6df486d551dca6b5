//! `hubcat-bench adversary`: a three-founder federation under attack by hostile libp2p peers
//! (the harness in `hubcat_tests::adversary`, which the test `tests/tests/adversary.rs` runs
//! too). Prints the inputs sent per kind, what got in (must be nothing), which senders were
//! graylisted or banned, and the honest search latency on one node — quiet, then under
//! attack, in the same run. Target: under attack, p50 and p99 within 2× of quiet.

use std::time::Duration;

use hubcat_tests::adversary::{self, Federation, KINDS};
use serde::Serialize;

use super::{group, round, Console, Machine, Table};

#[derive(Debug, clap::Args)]
pub struct AdversaryArgs {
    /// Print one JSON object on stdout; the table goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Records each honest hub publishes before the attack.
    #[arg(long, default_value_t = 200)]
    pub records: usize,
    /// Seconds of quiet queries before the attack.
    #[arg(long, default_value_t = 5)]
    pub quiet_secs: u64,
    /// Exit with status 2 when a target is missed.
    #[arg(long)]
    pub require_target: bool,
}

#[derive(Debug, Serialize)]
struct Output {
    machine: Machine,
    records_per_hub: usize,
    report: adversary::Report,
    p50_ratio: f64,
    p99_ratio: f64,
    target_met: bool,
}

pub fn run(args: &AdversaryArgs) -> anyhow::Result<bool> {
    let console = Console { json: args.json };
    console.progress(&format!(
        "starting 3 founders with {} records each",
        args.records
    ));
    let fed = Federation::start(args.records)?;
    console.progress("attacking");
    let report = adversary::run(&fed, Duration::from_secs(args.quiet_secs))?;
    let ratio = |a: f64, q: f64| if q > 0.0 { a / q } else { 0.0 };
    let p50_ratio = ratio(report.attack.p50_ms, report.quiet.p50_ms);
    let p99_ratio = ratio(report.attack.p99_ms, report.quiet.p99_ms);
    let nothing_in = report.accepted.iter().all(|n| *n == 0) && report.unchanged.iter().all(|u| *u);
    let target_met = nothing_in && p50_ratio <= 2.0 && p99_ratio <= 2.0;

    let mut t = Table::default();
    t.row([
        "kind",
        "inputs sent",
        "graylisted on",
        "banned on",
        "queries",
        "p50 ms",
        "max ms",
    ]);
    for kind in KINDS {
        let lat = &report.attack_by_kind[kind];
        t.row([
            kind.to_string(),
            group(report.sent[kind] as f64),
            format!("{} of 3", report.graylisted[kind]),
            format!("{} of 3", report.banned[kind]),
            lat.queries.to_string(),
            format!("{:.2}", lat.p50_ms),
            format!("{:.2}", lat.max_ms),
        ]);
    }
    t.row([
        "all".to_string(),
        group(report.total_sent as f64),
        String::new(),
        String::new(),
    ]);
    console.say(&t.render());
    let mut l = Table::default();
    l.row(["honest search", "queries", "p50 ms", "p99 ms"]);
    for (phase, lat) in [("quiet", &report.quiet), ("under attack", &report.attack)] {
        l.row([
            phase.to_string(),
            lat.queries.to_string(),
            format!("{:.2}", lat.p50_ms),
            format!("{:.2}", lat.p99_ms),
        ]);
    }
    l.row([
        "ratio (target ≤ 2)".to_string(),
        String::new(),
        format!("{p50_ratio:.2}"),
        format!("{p99_ratio:.2}"),
    ]);
    console.say(&l.render());
    console.say(&format!(
        "accepted under attack per honest node: {:?}; served catalogue unchanged: {:?}; held changes: {:?}; connections dropped before their handshake: {:?}; {:.1} s",
        report.accepted, report.unchanged, report.held, report.dropped_before_handshake, report.seconds
    ));
    console.say(&format!(
        "target (nothing in, latency within 2×): {}",
        if target_met { "met" } else { "MISSED" }
    ));
    if args.json {
        let out = Output {
            machine: Machine::probe(),
            records_per_hub: args.records,
            p50_ratio: round(p50_ratio, 2),
            p99_ratio: round(p99_ratio, 2),
            report,
            target_met,
        };
        println!("{}", serde_json::to_string(&out)?);
    }
    Ok(target_met)
}
