//! `catchup`: a node that missed 10 000 records joins and catches up.
//!
//! Node A holds `--missing` records from `--publishers` publishers (ingested as signed changes
//! before B exists, so no gossip is involved). Node B starts empty with A as its bootstrap
//! peer; both run with a one-hour anti-entropy interval, so what moves is what the node does
//! on connect (each side starts a session with the new peer) plus, if B stalls short of A's
//! state, sessions the bench starts with `NetHandle::sync_with` (counted in the report).
//!
//! - `seconds`: from the call that starts B (data dir, store, network: `start_seconds` of it)
//!   until B holds exactly A's (document, heads) pairs — what the status digest hashes.
//! - `bytes`: sync bytes both ways between A and B by B's per-peer counters, read once the
//!   counters stopped moving (every session the join started has finished);
//!   `bytes_at_convergence` is the same counter when B had converged.
//! - `minimum_bytes`: Σ over the missing changes of (raw Automerge change + 64-byte
//!   signature); `bytes_over_minimum` = bytes ÷ minimum_bytes.
//!
//! Target: ≤ 2 s and bytes ≤ 1.2 × minimum + 2 KB, for the join above.
//!
//! For comparison, **pull only**: a fresh pair A′, B′ connected while both are empty (their
//! on-connect sessions move nothing), then A′ ingests the same changes and the bench runs
//! `B′.sync_with(A′)` back to back until B′ has converged: the anti-entropy pull alone, with
//! no session from the other side. Reported: sessions, seconds, bytes (Σ `SessionReport`).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde::Serialize;

use super::super::corpus::Corpus;
use super::super::{round, Console, Table};
use super::{
    bytes, bytes_with, connected, minimum_bytes, preload, produce, same_heads, start_hub, wait_for,
    Load, NetArgs, QUIET_SYNC_SECS,
};

pub const TARGET_SECONDS: f64 = 2.0;
pub const TARGET_RATIO: f64 = 1.2;
pub const TARGET_SLACK_BYTES: u64 = 2048;
const FULL_MISSING: usize = 10_000;
const QUICK_MISSING: usize = 1_000;
/// B must converge within this long, or the bench fails.
const LIMIT: Duration = Duration::from_secs(120);
/// B making no progress this long: the bench runs a session itself.
const STALL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize)]
pub struct CatchupReport {
    pub records: usize,
    pub publishers: usize,
    pub seconds: f64,
    /// Part of `seconds` spent starting node B (before it could dial A).
    pub start_seconds: f64,
    pub bytes: u64,
    pub bytes_at_convergence: u64,
    pub minimum_bytes: u64,
    pub bytes_over_minimum: f64,
    /// Sessions the bench started because B stalled (0: the node caught up on its own).
    pub explicit_sessions: usize,
    /// Sync bytes B received from A / sent to A (final counters).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub target_seconds: f64,
    pub target_ratio: f64,
    pub target_slack_bytes: u64,
    pub target_met: bool,
    /// B′'s own sessions alone (see the module doc).
    pub pull_only: PullOnly,
    pub load: Load,
}

#[derive(Debug, Clone, Serialize)]
pub struct PullOnly {
    pub sessions: usize,
    pub seconds: f64,
    pub bytes: u64,
    pub bytes_over_minimum: f64,
    pub round_trips: usize,
    /// Changes received per session, in order.
    pub received_per_session: Vec<usize>,
}

/// A′ and B′ connected while empty; A′ takes `changes`; B′ pulls with back-to-back sessions.
fn pull_only(
    changes: &[(usize, hubcat_protocol::SignedChange)],
    minimum: u64,
) -> anyhow::Result<PullOnly> {
    let a = start_hub("PULL-A", "SE", &[], QUIET_SYNC_SECS)?;
    let b = start_hub("PULL-B", "ES", &[a.p2p_addr()], QUIET_SYNC_SECS)?;
    let linked = wait_for(Duration::from_secs(20), || {
        Ok(connected(&a)? > 0 && connected(&b)? > 0)
    })?;
    ensure!(linked, "A′ and B′ did not connect within 20 s");
    std::thread::sleep(Duration::from_millis(300));
    preload(&a.catalogue(), changes)?;
    let (a_cat, b_cat) = (a.catalogue(), b.catalogue());
    let mut out = PullOnly {
        sessions: 0,
        seconds: 0.0,
        bytes: 0,
        bytes_over_minimum: 0.0,
        round_trips: 0,
        received_per_session: Vec::new(),
    };
    let t0 = Instant::now();
    while !same_heads(&a_cat, &b_cat) {
        ensure!(
            out.sessions < 100,
            "B′ has not converged after 100 sessions"
        );
        let r = b
            .block_on(b.net().sync_with(a.peer_id()))
            .context("pull session B′ → A′")?;
        out.sessions += 1;
        out.bytes += r.bytes_sent + r.bytes_received;
        out.round_trips += r.round_trips;
        out.received_per_session.push(r.received);
    }
    out.seconds = round(t0.elapsed().as_secs_f64(), 3);
    drop((a_cat, b_cat));
    drop(b);
    drop(a);
    out.bytes_over_minimum = round(out.bytes as f64 / minimum.max(1) as f64, 3);
    Ok(out)
}

pub fn run(args: &NetArgs, console: Console) -> anyhow::Result<CatchupReport> {
    let before = Load::now();
    let n = args.missing.unwrap_or(if args.quick {
        QUICK_MISSING
    } else {
        FULL_MISSING
    });
    ensure!(n > 0, "--missing must be at least 1");
    console.progress(&format!(
        "catchup: producing {n} signed changes over {} publishers",
        args.publishers
    ));
    let corpus = Corpus::load(args.publishers, &args.data_file())?;
    let changes = produce(&corpus, n)?;
    let minimum = minimum_bytes(&changes);

    let a = start_hub("CATCH-A", "SE", &[], QUIET_SYNC_SECS)?;
    console.progress("catchup: preloading node A");
    preload(&a.catalogue(), &changes)?;
    let records = a.catalogue().record_count();
    ensure!(
        records == n,
        "node A lists {records} records after the preload, expected {n}"
    );
    let a_cat = a.catalogue();
    let a_addr = a.p2p_addr();

    console.progress("catchup: node B joins");
    let t0 = Instant::now();
    let b = start_hub("CATCH-B", "ES", &[a_addr], QUIET_SYNC_SECS)?;
    let start_seconds = t0.elapsed().as_secs_f64();
    let b_cat = b.catalogue();
    let mut explicit_sessions = 0;
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    let converged = loop {
        let count = b_cat.record_count();
        if count == records && same_heads(&a_cat, &b_cat) {
            break Some(t0.elapsed());
        }
        if t0.elapsed() > LIMIT {
            break None;
        }
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL && connected(&b)? > 0 {
            explicit_sessions += 1;
            console.progress(&format!(
                "catchup: B stalled at {count} of {records} records; running a session"
            ));
            b.block_on(b.net().sync_with(a.peer_id()))
                .context("catch-up session B → A")?;
            last_progress = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = converged.with_context(|| {
        format!(
            "B did not converge with A within {LIMIT:?} ({} of {records} records)",
            b_cat.record_count()
        )
    })?;
    let bytes_at_convergence = bytes_with(&b, &a)?;
    // Let every session the join started finish, then read the counters.
    let mut last = bytes_at_convergence;
    let mut stable_since = Instant::now();
    wait_for(Duration::from_secs(60), || {
        let now = bytes_with(&b, &a)?;
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        Ok(stable_since.elapsed() >= Duration::from_secs(1))
    })?;
    let id = a.peer_id().to_string();
    let peer = b
        .block_on(b.net().peers())?
        .into_iter()
        .find(|p| p.peer_id == id)
        .context("node B does not list node A as a peer")?;
    let total = peer.bytes_in + peer.bytes_out;
    let seconds = elapsed.as_secs_f64();
    let ratio = total as f64 / minimum.max(1) as f64;
    let target_met = seconds <= TARGET_SECONDS
        && (total as f64) <= TARGET_RATIO * minimum as f64 + TARGET_SLACK_BYTES as f64;
    // Catalogue handles first: a store must not outlive its hub's temporary directory.
    drop((a_cat, b_cat));
    drop(b);
    drop(a);
    console.progress("catchup: pull only (B′'s own sessions)");
    let pull_only = pull_only(&changes, minimum)?;
    Ok(CatchupReport {
        records: n,
        publishers: args.publishers,
        seconds: round(seconds, 3),
        start_seconds: round(start_seconds, 3),
        bytes: total,
        bytes_at_convergence,
        minimum_bytes: minimum,
        bytes_over_minimum: round(ratio, 3),
        explicit_sessions,
        bytes_in: peer.bytes_in,
        bytes_out: peer.bytes_out,
        target_seconds: TARGET_SECONDS,
        target_ratio: TARGET_RATIO,
        target_slack_bytes: TARGET_SLACK_BYTES,
        target_met,
        pull_only,
        load: Load {
            before,
            after: Load::now(),
        },
    })
}

pub fn render(r: &CatchupReport) -> String {
    let p = &r.pull_only;
    let mut t = Table::default();
    t.row(["", "join (node on its own)", "pull only (B′ sessions)"]);
    t.row([
        "time to converge s".to_owned(),
        format!("{:.3}", r.seconds),
        format!("{:.3}", p.seconds),
    ]);
    t.row([
        "  of which starting node B s".to_owned(),
        format!("{:.3}", r.start_seconds),
        String::new(),
    ]);
    t.row([
        "bytes (both ways)".to_owned(),
        bytes(r.bytes),
        bytes(p.bytes),
    ]);
    t.row([
        "  B in / out".to_owned(),
        format!("{} / {}", bytes(r.bytes_in), bytes(r.bytes_out)),
        String::new(),
    ]);
    t.row([
        "  at convergence".to_owned(),
        bytes(r.bytes_at_convergence),
        String::new(),
    ]);
    t.row([
        "bytes / minimum".to_owned(),
        format!("{:.3}", r.bytes_over_minimum),
        format!("{:.3}", p.bytes_over_minimum),
    ]);
    t.row([
        "sessions started by the bench".to_owned(),
        r.explicit_sessions.to_string(),
        p.sessions.to_string(),
    ]);
    t.row([
        "changes received per session".to_owned(),
        String::new(),
        p.received_per_session
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" + "),
    ]);
    t.row([
        "round trips".to_owned(),
        String::new(),
        p.round_trips.to_string(),
    ]);
    let allowed = r.target_ratio * r.minimum_bytes as f64 + r.target_slack_bytes as f64;
    format!(
        "\ncatchup — a node that missed {} records over {} publishers joins; bytes: sync bodies + 4-byte frames\n\
         minimum bytes (Σ raw change + 64-byte signature): {}; load 1m {:.2} → {:.2}\n\n{}\n\
         join: time {:.3} s — target ≤ {:.0} s: {}; bytes {} — target ≤ {:.1} × minimum + {} = {}: {}",
        bytes(r.records as u64),
        r.publishers,
        bytes(r.minimum_bytes),
        r.load.before[0],
        r.load.after[0],
        t.render(),
        r.seconds,
        r.target_seconds,
        if r.seconds <= r.target_seconds {
            "PASS"
        } else {
            "MISS"
        },
        bytes(r.bytes),
        r.target_ratio,
        bytes(r.target_slack_bytes),
        bytes(allowed as u64),
        if (r.bytes as f64) <= allowed {
            "PASS"
        } else {
            "MISS"
        },
    )
}
