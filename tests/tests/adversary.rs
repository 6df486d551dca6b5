//! The adversary harness against a three-founder federation (see
//! `hubcat_tests::adversary`): over 10 000 bad inputs of 13 kinds from hostile libp2p peers,
//! none accepted on any honest node, nothing an honest node serves changed, every sender of
//! refused input graylisted, and honest queries still answered — their latency quiet and
//! under attack printed (the release figures are in BENCHMARKS.md, `hubcat-bench adversary`).

use std::time::Duration;

use hubcat_tests::adversary::{self, Federation, KINDS};

#[test]
fn hostile_peers_get_nothing_in_and_end_graylisted_while_honest_queries_are_answered() {
    let fed = Federation::start(5).expect("honest federation");
    let report = adversary::run(&fed, Duration::from_secs(3)).expect("attack");
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&report).expect("report serialises")
    );
    assert!(report.total_sent >= 10_000, "sent {}", report.total_sent);
    assert_eq!(report.sent.len(), KINDS.len());
    assert!(report.sent.values().all(|n| *n > 0));
    assert!(
        report.accepted.iter().all(|n| *n == 0),
        "changes accepted under attack: {:?}",
        report.accepted
    );
    assert!(
        report.unchanged.iter().all(|u| *u),
        "an honest node's records, members or digest changed: {:?}",
        report.unchanged
    );
    for kind in KINDS.iter().filter(|k| adversary::penalised(k)) {
        assert!(
            report.graylisted[kind] >= 1,
            "the sender of {kind} was graylisted nowhere: {:?}",
            report.graylisted
        );
    }
    assert!(report.quiet.queries > 0 && report.attack.queries > 0);
    eprintln!(
        "honest search latency: quiet p50 {:.1} ms p99 {:.1} ms ({} queries); under attack p50 {:.1} ms p99 {:.1} ms ({} queries)",
        report.quiet.p50_ms,
        report.quiet.p99_ms,
        report.quiet.queries,
        report.attack.p50_ms,
        report.attack.p99_ms,
        report.attack.queries
    );
}
