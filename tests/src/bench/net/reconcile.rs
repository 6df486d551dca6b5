//! `idle` and `diff`: what one anti-entropy session costs between two nodes, in sync and one
//! record apart.
//!
//! Two nodes (A and B, B bootstrapped from A, a one-hour anti-entropy interval so only the
//! sessions the bench starts run) are loaded with the same signed changes: N records
//! round-robin over `--publishers` publishers, i.e. one Automerge document per publisher. The
//! pair grows from the smallest record count to the largest (the changes are produced once; a
//! prefix of them is causally complete per document), so `net` measures idle at every size and
//! diff at 100 000 on the same two nodes.
//!
//! - **idle**: with both nodes holding the same (document, heads) pairs, `--rounds` sessions
//!   `B.sync_with(A)`; bytes per round = request + response bodies with their 4-byte frames,
//!   both ways (`SessionReport::bytes_sent + bytes_received`).
//! - **diff**: the next change of one publisher (a new record) is ingested on one side only,
//!   then one session `B.sync_with(A)`. Both directions: the extra record on the server side
//!   (A; B fetches it) and on the client side (B; B must push it). Reported: bytes and round
//!   trips of the session, next to Automerge's own sync protocol (`automerge::sync::SyncDoc`)
//!   run cold (`sync::State::new()` on both sides) over the same 500 document pairs, the
//!   client sending first, message after message until both sides return `None`. Automerge
//!   bytes are the encoded sync messages alone — no framing, no document names, so a lower
//!   bound for a real transport; its round trips are the most any one document needed
//!   (⌈messages ÷ 2⌉), the documents running side by side.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{ensure, Context};
use automerge::sync::{Message, State, SyncDoc};
use automerge::{Automerge, Change};
use hubcat_node::net::sync::SessionReport;
use hubcat_protocol::SignedChange;
use hubcat_tests::TestHub;
use serde::Serialize;

use super::super::corpus::Corpus;
use super::super::{round, Console, Table};
use super::{
    bytes, connected, preload, produce, same_heads, start_hub, wait_for, Load, NetArgs,
    QUIET_SYNC_SECS,
};

pub const TARGET_DIFF_BYTES: u64 = 3 * 1024;
pub const TARGET_DIFF_ROUND_TRIPS: usize = 3;
pub const TARGET_IDLE_BYTES: f64 = 300.0;
/// "Flat": the largest bytes per round at most this factor above the smallest.
pub const FLAT_FACTOR: f64 = 1.1;
const FULL_IDLE: [usize; 3] = [1_000, 10_000, 100_000];
const QUICK_IDLE: [usize; 2] = [1_000, 10_000];
const FULL_DIFF: usize = 100_000;
const QUICK_DIFF: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct IdleRun {
    pub records: usize,
    pub documents: usize,
    pub rounds: usize,
    pub bytes_per_round: f64,
    pub min_bytes: u64,
    pub max_bytes: u64,
    pub round_trips_per_round: f64,
    /// Wall time of one session, mean.
    pub ms_per_round: f64,
    pub load_1m: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub publishers: usize,
    pub target_bytes_per_round: f64,
    pub flat_factor: f64,
    pub target_met: bool,
    pub runs: Vec<IdleRun>,
    pub load: Load,
}

/// Automerge's sync protocol over every document pair, cold.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AutomergeSync {
    pub bytes: u64,
    pub messages: usize,
    pub round_trips: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffDirection {
    /// `server`: the extra record is on A (B fetches it); `client`: on B (B pushes it).
    pub extra_on: &'static str,
    pub bytes: u64,
    pub round_trips: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub received: usize,
    pub duplicates: usize,
    pub pushed: usize,
    pub ms: f64,
    pub automerge_cold: AutomergeSync,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub records: usize,
    pub publishers: usize,
    /// The worse of the two directions.
    pub bytes: u64,
    pub round_trips: usize,
    pub automerge_cold_bytes: u64,
    pub automerge_cold_round_trips: usize,
    /// The differing record's signed change (raw change + signature): the least any protocol
    /// must move.
    pub record_bytes: u64,
    pub directions: Vec<DiffDirection>,
    pub target_bytes: u64,
    pub target_round_trips: usize,
    pub target_met: bool,
    pub load: Load,
}

/// Two connected nodes holding the first `loaded` changes.
struct Pair {
    a: TestHub,
    b: TestHub,
    loaded: usize,
}

impl Pair {
    fn new() -> anyhow::Result<Pair> {
        let a = start_hub("SYNC-A", "SE", &[], QUIET_SYNC_SECS)?;
        let b = start_hub("SYNC-B", "ES", &[a.p2p_addr()], QUIET_SYNC_SECS)?;
        let linked = wait_for(std::time::Duration::from_secs(20), || {
            Ok(connected(&a)? > 0 && connected(&b)? > 0)
        })?;
        ensure!(linked, "the two nodes did not connect within 20 s");
        // The sessions each side starts on connect (both empty) finish at once.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(Pair { a, b, loaded: 0 })
    }

    fn grow_to(
        &mut self,
        changes: &[(usize, SignedChange)],
        n: usize,
        console: Console,
    ) -> anyhow::Result<()> {
        if n <= self.loaded {
            return Ok(());
        }
        let more = &changes[self.loaded..n];
        console.progress(&format!(
            "loading {} more records into both nodes ({} → {n})",
            more.len(),
            self.loaded
        ));
        preload(&self.a.catalogue(), more)?;
        preload(&self.b.catalogue(), more)?;
        self.loaded = n;
        ensure!(
            same_heads(&self.a.catalogue(), &self.b.catalogue()),
            "the two nodes differ after loading the same changes"
        );
        Ok(())
    }

    /// One session B → A.
    fn session(&self) -> anyhow::Result<(SessionReport, f64)> {
        let t = Instant::now();
        let r = self
            .b
            .block_on(self.b.net().sync_with(self.a.peer_id()))
            .context("sync session B → A")?;
        Ok((r, t.elapsed().as_secs_f64() * 1e3))
    }
}

fn total(r: &SessionReport) -> u64 {
    r.bytes_sent + r.bytes_received
}

/// Run idle (when `idle`) and diff (when `diff`) on one growing pair of nodes.
pub fn run(
    idle: bool,
    diff: bool,
    args: &NetArgs,
    console: Console,
) -> anyhow::Result<(Option<IdleReport>, Option<DiffReport>)> {
    let before = Load::now();
    let mut idle_sizes: Vec<usize> = if !idle {
        Vec::new()
    } else if !args.idle_records.is_empty() {
        args.idle_records.clone()
    } else if args.quick {
        QUICK_IDLE.to_vec()
    } else {
        FULL_IDLE.to_vec()
    };
    idle_sizes.sort_unstable();
    idle_sizes.dedup();
    ensure!(
        idle_sizes.iter().all(|n| *n > 0),
        "--idle-records: every count must be at least 1"
    );
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let diff_n = diff.then(|| {
        args.diff_records
            .unwrap_or(if args.quick { QUICK_DIFF } else { FULL_DIFF })
    });
    if let Some(n) = diff_n {
        ensure!(n > 0, "--diff-records must be at least 1");
    }
    // Diff uses changes n and n + 1 (the next record of two publishers) as the extra records.
    let needed = idle_sizes
        .iter()
        .copied()
        .chain(diff_n.map(|n| n + 2))
        .max()
        .unwrap_or(0);
    console.progress(&format!(
        "producing {needed} signed changes over {} publishers",
        args.publishers
    ));
    let corpus = Corpus::load(args.publishers, &args.data_file())?;
    let changes = produce(&corpus, needed)?;

    let mut pair = Pair::new()?;
    let mut idle_runs = Vec::new();
    let mut diff_dirs = None;
    let mut pending_idle = idle_sizes.iter().copied().peekable();
    let mut pending_diff = diff_n;
    loop {
        match (pending_idle.peek().copied(), pending_diff) {
            (None, None) => break,
            (Some(s), Some(d)) if s > d => {
                diff_dirs = Some(diff_at(&mut pair, &changes, d, console)?);
                pending_diff = None;
            }
            (Some(s), _) => {
                pending_idle.next();
                idle_runs.push(idle_at(&mut pair, &changes, s, args.rounds, console)?);
            }
            (None, Some(d)) => {
                diff_dirs = Some(diff_at(&mut pair, &changes, d, console)?);
                pending_diff = None;
            }
        }
    }
    drop(pair);

    let idle_report = idle.then(|| {
        let max = idle_runs
            .iter()
            .map(|r| r.bytes_per_round)
            .fold(0.0, f64::max);
        let min = idle_runs
            .iter()
            .map(|r| r.bytes_per_round)
            .fold(f64::INFINITY, f64::min);
        IdleReport {
            publishers: args.publishers,
            target_bytes_per_round: TARGET_IDLE_BYTES,
            flat_factor: FLAT_FACTOR,
            target_met: !idle_runs.is_empty()
                && max <= TARGET_IDLE_BYTES
                && max <= min * FLAT_FACTOR,
            runs: idle_runs,
            load: Load {
                before,
                after: Load::now(),
            },
        }
    });

    let diff_report = match (diff_n, diff_dirs) {
        (Some(n), Some(mut dirs)) => {
            console.progress("Automerge sync, cold, over the same documents");
            let cold = automerge_cold(&changes, n, args.publishers)?;
            for (d, c) in dirs.iter_mut().zip(cold) {
                d.automerge_cold = c;
            }
            let record_bytes = (changes[n].1.change.len() + changes[n].1.signature.len()) as u64;
            let bytes = dirs.iter().map(|d| d.bytes).max().unwrap_or(0);
            let round_trips = dirs.iter().map(|d| d.round_trips).max().unwrap_or(0);
            Some(DiffReport {
                records: n,
                publishers: args.publishers,
                bytes,
                round_trips,
                automerge_cold_bytes: dirs
                    .iter()
                    .map(|d| d.automerge_cold.bytes)
                    .max()
                    .unwrap_or(0),
                automerge_cold_round_trips: dirs
                    .iter()
                    .map(|d| d.automerge_cold.round_trips)
                    .max()
                    .unwrap_or(0),
                record_bytes,
                target_bytes: TARGET_DIFF_BYTES,
                target_round_trips: TARGET_DIFF_ROUND_TRIPS,
                target_met: bytes <= TARGET_DIFF_BYTES && round_trips <= TARGET_DIFF_ROUND_TRIPS,
                directions: dirs,
                load: Load {
                    before,
                    after: Load::now(),
                },
            })
        }
        _ => None,
    };
    Ok((idle_report, diff_report))
}

fn idle_at(
    pair: &mut Pair,
    changes: &[(usize, SignedChange)],
    n: usize,
    rounds: usize,
    console: Console,
) -> anyhow::Result<IdleRun> {
    pair.grow_to(changes, n, console)?;
    console.progress(&format!("idle: {rounds} sessions at {n} records"));
    let load_1m = Load::now()[0];
    let mut sizes = Vec::with_capacity(rounds);
    let mut trips = 0;
    let mut ms = 0.0;
    for _ in 0..rounds {
        let (r, t) = pair.session()?;
        ensure!(
            r.received == 0 && r.pushed == 0 && r.duplicates == 0 && r.refused == 0,
            "an idle session moved changes: {r:?}"
        );
        sizes.push(total(&r));
        trips += r.round_trips;
        ms += t;
    }
    let documents = pair.a.catalogue().doc_heads().len();
    Ok(IdleRun {
        records: n,
        documents,
        rounds,
        bytes_per_round: round(sizes.iter().sum::<u64>() as f64 / rounds as f64, 1),
        min_bytes: sizes.iter().copied().min().unwrap_or(0),
        max_bytes: sizes.iter().copied().max().unwrap_or(0),
        round_trips_per_round: round(trips as f64 / rounds as f64, 2),
        ms_per_round: round(ms / rounds as f64, 2),
        load_1m,
    })
}

fn diff_at(
    pair: &mut Pair,
    changes: &[(usize, SignedChange)],
    n: usize,
    console: Console,
) -> anyhow::Result<Vec<DiffDirection>> {
    pair.grow_to(changes, n, console)?;
    // Settle: one idle session so nothing is pending.
    let (r, _) = pair.session()?;
    ensure!(
        r.received == 0 && r.pushed == 0,
        "the nodes were not in sync before diff: {r:?}"
    );
    let mut out = Vec::with_capacity(2);
    for (k, extra_on) in [(n, "server"), (n + 1, "client")] {
        console.progress(&format!("diff: one extra record on the {extra_on} side"));
        let target = if extra_on == "server" {
            &pair.a
        } else {
            &pair.b
        };
        let ingest = target
            .catalogue()
            .ingest(vec![changes[k].1.clone()], hubcat_protocol::now_ms())?;
        ensure!(
            ingest.accepted == 1,
            "the extra record was not accepted: {ingest:?}"
        );
        let (r, ms) = pair.session()?;
        ensure!(
            same_heads(&pair.a.catalogue(), &pair.b.catalogue()),
            "one session did not converge the nodes ({extra_on} side): {r:?}"
        );
        out.push(DiffDirection {
            extra_on,
            bytes: total(&r),
            round_trips: r.round_trips,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            received: r.received,
            duplicates: r.duplicates,
            pushed: r.pushed,
            ms: round(ms, 2),
            automerge_cold: AutomergeSync::default(),
        });
    }
    pair.loaded = n + 2;
    Ok(out)
}

/// Automerge's sync, cold, for both diff directions on the same documents as the nodes: the
/// first `n` changes per publisher on both sides, then change `n` on the server side only;
/// after that sync, change `n + 1` on the client side only.
fn automerge_cold(
    changes: &[(usize, SignedChange)],
    n: usize,
    publishers: usize,
) -> anyhow::Result<[AutomergeSync; 2]> {
    let decode = |c: &SignedChange| {
        Change::from_bytes(c.change.clone()).map_err(|e| anyhow::anyhow!("change: {e}"))
    };
    let mut by_doc: BTreeMap<usize, Vec<Change>> = BTreeMap::new();
    for (p, c) in &changes[..n] {
        by_doc.entry(*p).or_default().push(decode(c)?);
    }
    let mut client: Vec<Automerge> = Vec::with_capacity(publishers);
    for p in 0..publishers {
        let mut doc = Automerge::new();
        doc.apply_changes(by_doc.remove(&p).unwrap_or_default())?;
        client.push(doc);
    }
    let mut server = client.clone();
    let (p0, x0) = &changes[n];
    server
        .get_mut(*p0)
        .context("publisher of the extra record")?
        .apply_changes([decode(x0)?])?;
    let first = sync_cold(&mut client, &mut server)?;
    let (p1, x1) = &changes[n + 1];
    client
        .get_mut(*p1)
        .context("publisher of the extra record")?
        .apply_changes([decode(x1)?])?;
    let second = sync_cold(&mut client, &mut server)?;
    Ok([first, second])
}

/// Sync every document pair with fresh `sync::State`s, the client speaking first; fails unless
/// every pair ends with equal heads.
fn sync_cold(client: &mut [Automerge], server: &mut [Automerge]) -> anyhow::Result<AutomergeSync> {
    let start = Instant::now();
    let mut out = AutomergeSync::default();
    for (c, s) in client.iter_mut().zip(server.iter_mut()) {
        let (mut cs, mut ss) = (State::new(), State::new());
        let mut messages = 0usize;
        loop {
            let mut moved = false;
            if let Some(m) = c.generate_sync_message(&mut cs) {
                let wire = m.encode();
                out.bytes += wire.len() as u64;
                messages += 1;
                s.receive_sync_message(&mut ss, Message::decode(&wire)?)?;
                moved = true;
            }
            if let Some(m) = s.generate_sync_message(&mut ss) {
                let wire = m.encode();
                out.bytes += wire.len() as u64;
                messages += 1;
                c.receive_sync_message(&mut cs, Message::decode(&wire)?)?;
                moved = true;
            }
            if !moved {
                break;
            }
            ensure!(messages < 200, "Automerge sync does not terminate");
        }
        out.messages += messages;
        out.round_trips = out.round_trips.max(messages.div_ceil(2));
        let (mut hc, mut hs) = (c.get_heads(), s.get_heads());
        hc.sort();
        hs.sort();
        ensure!(hc == hs, "Automerge sync left a document pair apart");
    }
    out.seconds = round(start.elapsed().as_secs_f64(), 3);
    Ok(out)
}

pub fn render_idle(r: &IdleReport) -> String {
    let mut t = Table::default();
    t.row([
        "records",
        "documents",
        "rounds",
        "bytes/round",
        "min–max",
        "round trips",
        "ms/round",
        "load 1m",
    ]);
    for run in &r.runs {
        t.row([
            bytes(run.records as u64),
            run.documents.to_string(),
            run.rounds.to_string(),
            format!("{:.0}", run.bytes_per_round),
            format!("{}–{}", run.min_bytes, run.max_bytes),
            format!("{:.1}", run.round_trips_per_round),
            format!("{:.2}", run.ms_per_round),
            format!("{:.2}", run.load_1m),
        ]);
    }
    let max = r.runs.iter().map(|x| x.bytes_per_round).fold(0.0, f64::max);
    format!(
        "\nidle — one anti-entropy session between two nodes in sync (request + response, frames included)\n\n{}\n\
         largest {:.0} B/round — target ≤ {:.0} B and flat (largest ≤ {:.1} × smallest): {}",
        t.render(),
        max,
        r.target_bytes_per_round,
        r.flat_factor,
        if r.target_met { "PASS" } else { "MISS" }
    )
}

pub fn render_diff(r: &DiffReport) -> String {
    let mut t = Table::default();
    t.row([
        "extra record on",
        "hubcat bytes",
        "round trips",
        "sent / received",
        "received / dup / pushed",
        "ms",
        "Automerge cold bytes",
        "messages",
        "round trips",
    ]);
    for d in &r.directions {
        t.row([
            d.extra_on.to_owned(),
            bytes(d.bytes),
            d.round_trips.to_string(),
            format!("{} / {}", bytes(d.bytes_sent), bytes(d.bytes_received)),
            format!("{} / {} / {}", d.received, d.duplicates, d.pushed),
            format!("{:.1}", d.ms),
            bytes(d.automerge_cold.bytes),
            d.automerge_cold.messages.to_string(),
            d.automerge_cold.round_trips.to_string(),
        ]);
    }
    format!(
        "\ndiff — two nodes with {} records over {} publishers, one record apart; one session B → A (B is the client)\n\
         the differing record's signed change: {} B\n\n{}\n\
         worst direction: {} B in {} round trips — target ≤ {} B and ≤ {} round trips: {}",
        bytes(r.records as u64),
        r.publishers,
        bytes(r.record_bytes),
        t.render(),
        bytes(r.bytes),
        r.round_trips,
        bytes(r.target_bytes),
        r.target_round_trips,
        if r.target_met { "PASS" } else { "MISS" }
    )
}
