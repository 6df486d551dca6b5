//! `hubcat-bench ingest`: what one core can take in, stage by stage and end to end.
//!
//! For each record count the same realistic records (see [`super::corpus`]) go through:
//! 1. **produce** — `CatalogueDoc::upsert` + `change::sign` on each publisher's own document
//!    (how the input is made; what a bulk import costs locally);
//! 2. **sign** — `change::sign` alone on the prebuilt changes;
//! 3. **verify single** — `change::verify` one envelope at a time;
//! 4. **verify batch** — `change::verify_batch` in batches (decode, layout and record checks,
//!    ed25519 batch verification): the node's verify stage;
//! 5. **ed25519 batch limit** — raw `ed25519_dalek::verify_batch` over the same messages,
//!    signatures and keys: the floor no verify stage can beat;
//! 6. **automerge apply** — the verified changes applied to fresh per-publisher documents,
//!    grouped by document within each batch; **6b** the same changes applied the way the
//!    engine defers them (a document's changes together once enough have gathered);
//! 7. **durable store** — `SledStore::append`, one flush per batch;
//! 8. **end to end** — `Catalogue::ingest` per batch on a fresh store (verify + store + apply +
//!    view), every record accepted or the bench fails, then `Catalogue::settle()` (the Automerge
//!    work the engine deferred) inside the same clock;
//! 9. **disk** — bytes on disk per record after `Catalogue::snapshot()`, next to the raw
//!    envelope bytes per record;
//! 10. **reopen** — `Catalogue::open` on that store again (a restart), every record back.
//!
//! Inputs are cloned before each timer starts, so a rate measures the stage and not the copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use automerge::Change;
use ed25519_dalek::{Signature, VerifyingKey};
use hubcat_node::engine::{self, Catalogue};
use hubcat_node::store::{SledStore, Store};
use hubcat_protocol::change::{self, VerifiedChange};
use hubcat_protocol::{codec, CatalogueDoc, HubKey, SignedChange};
use serde::Serialize;

use super::corpus::{self, Corpus};
use super::{group, rate, round, timed, Console, Machine, Table};

/// The end-to-end rate the node must sustain on one core (records per second).
pub const TARGET_END_TO_END: f64 = 20_000.0;
/// Record counts of a full run, and of `--quick`.
const FULL_SIZES: [usize; 2] = [10_000, 100_000];
const QUICK_SIZES: [usize; 1] = [10_000];
/// Record timestamps start here (2025-10-09T…Z), one millisecond apart: deterministic, and in
/// the past so the future-timestamp check passes.
const BASE_MS: i64 = 1_760_000_000_000;
/// Must match `SIGNING_DOMAIN` in `hubcat_protocol::change` (checked before timing).
const SIGNING_DOMAIN: &[u8] = b"hubcat/change/v1\0";

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Print one JSON object on stdout; the table goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Only 10 000 records (finishes well under a minute in release).
    #[arg(long)]
    pub quick: bool,
    /// Record counts to run, comma separated (default 10000,100000; overrides --quick).
    #[arg(long, value_delimiter = ',')]
    pub records: Vec<usize>,
    /// Publishing hubs the records are spread over.
    #[arg(long, default_value_t = 500)]
    pub publishers: usize,
    /// Changes per verify/apply/store/ingest batch.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Directory for the temporary sled stores (default: the system temp dir). Put it on the
    /// disk the node would use: flush costs depend on it.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Reference data with hub texts (default: `<workspace>/../shared/data/edih_catalogue.json`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Order the changes arrive in: `interleaved` (round-robin over publishers, like fresh
    /// gossip from many hubs) or `by-publisher` (each hub's changes together, like a catch-up).
    #[arg(long, value_enum, default_value_t = Order::Interleaved)]
    pub order: Order,
    /// Exit with status 2 when end to end misses the target.
    #[arg(long)]
    pub require_target: bool,
    /// Run only produce and end to end (for profiling the engine; other stages print 0).
    #[arg(long)]
    pub only_end_to_end: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    Interleaved,
    ByPublisher,
}

/// Rates of one record count, as reported in the JSON `runs` array.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub records: usize,
    pub produce_records_per_s: f64,
    pub sign_records_per_s: f64,
    pub verify_single_records_per_s: f64,
    pub verify_batch_records_per_s: f64,
    pub ed25519_batch_limit_records_per_s: f64,
    /// verify batch ÷ raw ed25519 batch: 1.0 would mean decoding and checks cost nothing.
    pub verify_vs_batch_limit: f64,
    pub automerge_apply_records_per_s: f64,
    /// Automerge apply as the engine does it: each document's changes applied once
    /// `SETTLE_MIN` (or a `SETTLE_FRACTION` of the document) have gathered.
    pub automerge_deferred_apply_records_per_s: f64,
    pub store_append_records_per_s: f64,
    pub end_to_end_records_per_s: f64,
    /// Time of the `Catalogue::snapshot()` after the ingest (not in the end-to-end rate).
    pub final_snapshot_s: f64,
    /// Time to open the catalogue again afterwards (snapshots + log replay + view rebuild).
    pub reopen_s: f64,
    /// CPU time of the whole process (sled's threads included) during end to end, per record:
    /// steadier than the rate when other work shares the machine (0 where not measurable).
    pub end_to_end_cpu_us_per_record: f64,
    /// End-to-end µs per record minus verify batch + deferred apply + store µs per record:
    /// what the engine adds around the stages (duplicate checks, indexing, views, snapshots).
    pub engine_overhead_us_per_record: f64,
    pub disk_bytes_per_record: f64,
    /// Bytes per record of the durable-store stage alone (log + hash index, no snapshots).
    pub store_only_disk_bytes_per_record: f64,
    /// The versioned-codec envelope as stored and sent.
    pub envelope_bytes_per_record: f64,
    /// The raw Automerge change inside the envelope.
    pub change_bytes_per_record: f64,
    pub record_json_bytes_per_record: f64,
    pub text_bytes_per_record: f64,
}

impl Run {
    fn us(rate: f64) -> f64 {
        if rate > 0.0 {
            1e6 / rate
        } else {
            0.0
        }
    }
}

/// The whole report, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub bench: &'static str,
    pub machine: Machine,
    pub publishers: usize,
    pub batch: usize,
    pub order: Order,
    pub text_source: String,
    pub store_dir: String,
    pub target_end_to_end_records_per_s: f64,
    /// End to end for the largest record count.
    pub end_to_end_records_per_s: f64,
    /// verify batch ÷ raw ed25519 batch for the largest record count.
    pub verify_vs_batch_limit: f64,
    pub target_met: bool,
    pub runs: Vec<Run>,
}

/// Run the ingest bench; returns whether the end-to-end target was met.
pub fn run(args: &IngestArgs) -> anyhow::Result<bool> {
    let console = Console { json: args.json };
    ensure!(args.batch > 0, "--batch must be at least 1");
    let sizes: Vec<usize> = if !args.records.is_empty() {
        args.records.clone()
    } else if args.quick {
        QUICK_SIZES.to_vec()
    } else {
        FULL_SIZES.to_vec()
    };
    ensure!(
        sizes.iter().all(|n| *n > 0),
        "--records: every count must be at least 1"
    );
    let machine = Machine::probe();
    if machine.build == "debug" {
        console.say("note: debug build — rates mean nothing; use `cargo run --release`");
    }
    let data = args.data.clone().unwrap_or_else(corpus::shared_data_file);
    let corpus = Corpus::load(args.publishers, &data)?;
    if let corpus::TextSource::Generated { looked_for } = &corpus.source {
        console.say(&format!(
            "note: shared/data not found ({}): using generated text",
            looked_for.display()
        ));
    }
    let store_dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&store_dir)
        .with_context(|| format!("creating {}", store_dir.display()))?;

    let mut runs = Vec::with_capacity(sizes.len());
    for &n in &sizes {
        console.progress(&format!("{n} records over {} publishers", args.publishers));
        runs.push(run_size(&corpus, n, args, &store_dir, console)?);
    }
    let largest = runs
        .iter()
        .max_by_key(|r| r.records)
        .context("no run")?
        .clone();
    let report = Report {
        bench: "ingest",
        machine,
        publishers: args.publishers,
        batch: args.batch,
        order: args.order,
        text_source: corpus.source.describe(),
        store_dir: store_dir.display().to_string(),
        target_end_to_end_records_per_s: TARGET_END_TO_END,
        end_to_end_records_per_s: largest.end_to_end_records_per_s,
        verify_vs_batch_limit: largest.verify_vs_batch_limit,
        target_met: largest.end_to_end_records_per_s >= TARGET_END_TO_END,
        runs,
    };
    console.say(&render(&report));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report.target_met)
}

fn run_size(
    corpus: &Corpus,
    n: usize,
    args: &IngestArgs,
    store_dir: &std::path::Path,
    console: Console,
) -> anyhow::Result<Run> {
    let batch = args.batch;
    let publishers = &corpus.publishers;
    let records = corpus.records(n)?;
    let record_json_bytes = records
        .iter()
        .map(|(_, r)| r.to_canonical_json().len())
        .sum::<usize>() as f64
        / n as f64;
    let text_bytes = records
        .iter()
        .map(|(_, r)| corpus::text_bytes(r))
        .sum::<usize>() as f64
        / n as f64;

    // 1. produce: one change per upsert on the publisher's own document, signed.
    console.progress("produce (upsert + sign)");
    let mut own_docs: Vec<CatalogueDoc> = publishers
        .iter()
        .enumerate()
        .map(|(p, publisher)| {
            let mut suffix = [0u8; 16];
            suffix[..8].copy_from_slice(&(p as u64).to_be_bytes());
            CatalogueDoc::new(publisher.key.id(), suffix)
        })
        .collect();
    let ((mut changes, mut envelopes), produce_t) = timed(|| {
        let mut changes: Vec<(usize, Change)> = Vec::with_capacity(n);
        let mut envelopes: Vec<SignedChange> = Vec::with_capacity(n);
        for (i, (p, record)) in records.iter().enumerate() {
            let doc = &mut own_docs[*p];
            let change = doc
                .upsert(record, BASE_MS + i as i64)
                .with_context(|| format!("upsert of record {i}"))?;
            envelopes.push(change::sign(&publishers[*p].key, doc.id(), &change));
            changes.push((*p, change));
        }
        Ok((changes, envelopes))
    })?;
    drop(own_docs);
    drop(records);
    if args.order == Order::ByPublisher {
        // A stable sort keeps each publisher's changes in causal order.
        let mut paired: Vec<_> = changes.into_iter().zip(envelopes).collect();
        paired.sort_by_key(|((p, _), _)| *p);
        (changes, envelopes) = paired.into_iter().unzip();
    }
    let envelope_bytes = envelopes
        .iter()
        .map(|e| codec::encode(e).len())
        .sum::<usize>() as f64
        / n as f64;
    let change_bytes = envelopes.iter().map(|e| e.change.len()).sum::<usize>() as f64 / n as f64;

    // The clock the verifier compares timestamps against: real time, like the node.
    let now = hubcat_protocol::now_ms();
    let stages = if args.only_end_to_end {
        drop(changes);
        Stages::default()
    } else {
        run_stages(
            changes, &envelopes, publishers, batch, now, store_dir, console,
        )?
    };
    let Stages {
        sign_t,
        verify_single_t,
        verify_batch_t,
        raw_batch_t,
        apply_t,
        deferred_apply_t,
        store_t,
        store_disk,
    } = stages;

    // 8. end to end through the engine.
    console.progress("end to end (Catalogue::ingest)");
    let dir = tempfile::Builder::new()
        .prefix("hubcat-bench-e2e-")
        .tempdir_in(store_dir)?;
    let store = Arc::new(SledStore::open(dir.path())?);
    let node_key = HubKey::from_secret_bytes(&corpus::secret_for(2, 0))?;
    let catalogue = Catalogue::open(store.clone(), node_key)?;
    let input = batches_of(&envelopes, batch);
    let cpu_before = super::process_cpu();
    let ((accepted, duplicates), e2e_t) = timed(|| {
        let (mut accepted, mut duplicates) = (0usize, 0usize);
        for (b, envs) in input.into_iter().enumerate() {
            let report = catalogue
                .ingest(envs, now)
                .with_context(|| format!("ingest of batch {b}"))?;
            if let Some(r) = report.refused.first() {
                bail!(
                    "batch {b}: {} change(s) refused, first at {}: {} ({})",
                    report.refused.len(),
                    r.index,
                    r.reason,
                    r.detail
                );
            }
            accepted += report.accepted;
            duplicates += report.duplicates;
        }
        // Changes that extend their document are visible when `ingest` returns but reach
        // Automerge later, grouped: finish that work inside the clock.
        catalogue.settle();
        Ok((accepted, duplicates))
    })?;
    let e2e_cpu = super::process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    ensure!(
        accepted == n && duplicates == 0,
        "end to end accepted {accepted} and saw {duplicates} duplicates of {n} fresh changes"
    );
    let ((), snapshot_t) = timed(|| Ok(catalogue.snapshot()?))?;
    let listed = catalogue.record_count();
    ensure!(
        listed == n,
        "the catalogue lists {listed} records, expected {n}"
    );
    let disk = store.size_on_disk();
    drop(catalogue);
    drop(store);
    // 10. reopen: load the snapshots, replay the log, rebuild the view (a restart).
    console.progress("reopen");
    let (reopened, reopen_t) = timed(|| {
        let store = Arc::new(SledStore::open(dir.path())?);
        let node_key = HubKey::from_secret_bytes(&corpus::secret_for(2, 0))?;
        Ok(Catalogue::open(store, node_key)?.record_count())
    })?;
    ensure!(
        reopened == n,
        "the reopened catalogue lists {reopened} records, expected {n}"
    );
    drop(dir);

    let verify_batch = rate(n, verify_batch_t);
    let raw_batch = rate(n, raw_batch_t);
    let apply = rate(n, apply_t);
    let deferred_apply = rate(n, deferred_apply_t);
    let store_rate = rate(n, store_t);
    let e2e = rate(n, e2e_t);
    Ok(Run {
        records: n,
        produce_records_per_s: round(rate(n, produce_t), 0),
        sign_records_per_s: round(rate(n, sign_t), 0),
        verify_single_records_per_s: round(rate(n, verify_single_t), 0),
        verify_batch_records_per_s: round(verify_batch, 0),
        ed25519_batch_limit_records_per_s: round(raw_batch, 0),
        verify_vs_batch_limit: round(
            if raw_batch > 0.0 {
                verify_batch / raw_batch
            } else {
                0.0
            },
            3,
        ),
        automerge_apply_records_per_s: round(apply, 0),
        automerge_deferred_apply_records_per_s: round(deferred_apply, 0),
        store_append_records_per_s: round(store_rate, 0),
        end_to_end_records_per_s: round(e2e, 0),
        final_snapshot_s: round(secs(snapshot_t), 3),
        reopen_s: round(secs(reopen_t), 3),
        end_to_end_cpu_us_per_record: round(e2e_cpu.map_or(0.0, |d| secs(d) * 1e6 / n as f64), 1),
        engine_overhead_us_per_record: round(
            Run::us(e2e) - Run::us(verify_batch) - Run::us(deferred_apply) - Run::us(store_rate),
            2,
        ),
        disk_bytes_per_record: round(disk as f64 / n as f64, 0),
        store_only_disk_bytes_per_record: round(store_disk as f64 / n as f64, 0),
        envelope_bytes_per_record: round(envelope_bytes, 0),
        change_bytes_per_record: round(change_bytes, 0),
        record_json_bytes_per_record: round(record_json_bytes, 0),
        text_bytes_per_record: round(text_bytes, 0),
    })
}

/// Stage times of one record count (all zero with `--only-end-to-end`).
#[derive(Debug, Default)]
struct Stages {
    sign_t: Duration,
    verify_single_t: Duration,
    verify_batch_t: Duration,
    raw_batch_t: Duration,
    apply_t: Duration,
    deferred_apply_t: Duration,
    store_t: Duration,
    store_disk: u64,
}

/// Stages 2 to 7: each part of ingest alone, on the same envelopes.
fn run_stages(
    changes: Vec<(usize, Change)>,
    envelopes: &[SignedChange],
    publishers: &[corpus::Publisher],
    batch: usize,
    now: i64,
    store_dir: &std::path::Path,
    console: Console,
) -> anyhow::Result<Stages> {
    let n = envelopes.len();
    // 2. sign alone.
    console.progress("sign");
    let (signed, sign_t) = timed(|| {
        Ok(changes
            .iter()
            .map(|(p, c)| change::sign(&publishers[*p].key, &publishers[*p].doc, c))
            .collect::<Vec<_>>())
    })?;
    ensure!(
        signed.as_slice() == envelopes,
        "signing the same changes twice gave different envelopes"
    );
    drop(signed);
    drop(changes);

    // 3. verify one by one.
    console.progress("verify single");
    let input = envelopes.to_vec();
    let (single, verify_single_t) = timed(|| {
        let mut out = Vec::with_capacity(n);
        for (i, env) in input.into_iter().enumerate() {
            out.push(change::verify(env, now).with_context(|| format!("verify of change {i}"))?);
        }
        Ok(out)
    })?;
    drop(single);

    // 4. verify in batches.
    console.progress("verify batch");
    let input = batches_of(envelopes, batch);
    let (results, verify_batch_t) = timed(|| {
        // One author-key cache for the run, as a node keeps one (`Catalogue` does).
        let authors = change::AuthorCache::new();
        let mut out = Vec::with_capacity(n);
        for b in input {
            out.extend(change::verify_batch_with(b, now, &authors));
        }
        Ok(out)
    })?;
    let verified: Vec<VerifiedChange> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("batch verify refused change {i}")))
        .collect::<anyhow::Result<_>>()?;

    // 5. the raw ed25519 batch floor over the same messages, signatures and keys.
    console.progress("ed25519 batch limit");
    let messages: Vec<Vec<u8>> = verified
        .iter()
        .map(|v| signing_message(&v.envelope.doc.to_string(), &v.hash.0))
        .collect();
    let signatures: Vec<Signature> = verified
        .iter()
        .map(|v| Signature::from_slice(&v.envelope.signature))
        .collect::<Result<_, _>>()
        .context("malformed signature")?;
    let keys: Vec<VerifyingKey> = verified
        .iter()
        .map(|v| VerifyingKey::from_bytes(&v.envelope.author))
        .collect::<Result<_, _>>()
        .context("malformed author key")?;
    if let (Some(m), Some(s), Some(k)) = (messages.first(), signatures.first(), keys.first()) {
        k.verify_strict(m, s).context(
            "the bench's signing message differs from hubcat_protocol::change's: update SIGNING_DOMAIN / signing_message here",
        )?;
    }
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let ((), raw_batch_t) = timed(|| {
        for ((m, s), k) in message_refs
            .chunks(batch)
            .zip(signatures.chunks(batch))
            .zip(keys.chunks(batch))
        {
            ed25519_dalek::verify_batch(m, s, k).context("raw ed25519 batch failed")?;
        }
        Ok(())
    })?;
    drop(message_refs);
    drop((messages, signatures, keys));

    // 6. Automerge apply, grouped by document within each batch.
    console.progress("automerge apply");
    let doc_index: BTreeMap<_, usize> = publishers
        .iter()
        .enumerate()
        .map(|(p, publisher)| (publisher.doc.clone(), p))
        .collect();
    let input: Vec<Vec<(usize, Change)>> = verified
        .chunks(batch)
        .map(|b| {
            b.iter()
                .map(|v| {
                    let p = doc_index
                        .get(&v.envelope.doc)
                        .copied()
                        .unwrap_or(usize::MAX);
                    (p, v.change.clone())
                })
                .collect()
        })
        .collect();
    let mut remote: Vec<CatalogueDoc> = publishers
        .iter()
        .map(|p| CatalogueDoc::remote(p.doc.clone()))
        .collect();
    let ((), apply_t) = timed(|| {
        for b in input {
            let mut by_doc: BTreeMap<usize, Vec<Change>> = BTreeMap::new();
            for (p, c) in b {
                by_doc.entry(p).or_default().push(c);
            }
            for (p, cs) in by_doc {
                let doc = remote
                    .get_mut(p)
                    .context("change for an unknown document")?;
                doc.apply(cs)?;
            }
        }
        Ok(())
    })?;
    let slots: usize = remote.iter().map(|d| d.slots().len()).sum();
    ensure!(
        slots == n,
        "apply: {slots} records in the documents, expected {n}"
    );
    drop(remote);

    // 6b. Automerge apply as the engine does it: a document's changes wait until
    // max(SETTLE_MIN, its changes / SETTLE_FRACTION) have gathered, then go in one call.
    console.progress("automerge apply, deferred");
    let input: Vec<(usize, Change)> = verified
        .iter()
        .map(|v| {
            let p = doc_index
                .get(&v.envelope.doc)
                .copied()
                .unwrap_or(usize::MAX);
            (p, v.change.clone())
        })
        .collect();
    let mut remote: Vec<CatalogueDoc> = publishers
        .iter()
        .map(|p| CatalogueDoc::remote(p.doc.clone()))
        .collect();
    let ((), deferred_apply_t) = timed(|| {
        let mut waiting: Vec<Vec<Change>> = vec![Vec::new(); remote.len()];
        let mut seen = vec![0usize; remote.len()];
        for (p, c) in input {
            let (Some(w), Some(count)) = (waiting.get_mut(p), seen.get_mut(p)) else {
                bail!("change for an unknown document");
            };
            w.push(c);
            *count += 1;
            if w.len() >= engine::SETTLE_MIN.max(*count / engine::SETTLE_FRACTION) {
                if let Some(doc) = remote.get_mut(p) {
                    doc.apply(std::mem::take(w))?;
                }
            }
        }
        for (doc, w) in remote.iter_mut().zip(waiting) {
            if !w.is_empty() {
                doc.apply(w)?;
            }
        }
        Ok(())
    })?;
    let slots: usize = remote.iter().map(|d| d.slots().len()).sum();
    ensure!(
        slots == n,
        "deferred apply: {slots} records in the documents, expected {n}"
    );
    drop(remote);

    // 7. durable store: append with one flush per batch.
    console.progress("durable store");
    let (store_t, store_disk) = {
        let dir = tempfile::Builder::new()
            .prefix("hubcat-bench-store-")
            .tempdir_in(store_dir)?;
        let store = SledStore::open(dir.path())?;
        let ((), t) = timed(|| {
            for b in verified.chunks(batch) {
                let entries: Vec<_> = b.iter().map(|v| (v.hash, &v.envelope)).collect();
                store.append(&entries)?;
            }
            Ok(())
        })?;
        ensure!(
            store.change_count() == n,
            "store holds {} changes, expected {n}",
            store.change_count()
        );
        (t, store.size_on_disk())
    };
    drop(verified);

    Ok(Stages {
        sign_t,
        verify_single_t,
        verify_batch_t,
        raw_batch_t,
        apply_t,
        deferred_apply_t,
        store_t,
        store_disk,
    })
}

/// `SIGNING_DOMAIN || doc || 0 || change hash`, as `hubcat_protocol::change` signs it.
fn signing_message(doc: &str, hash: &[u8; 32]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_DOMAIN.len() + doc.len() + 1 + 32);
    msg.extend_from_slice(SIGNING_DOMAIN);
    msg.extend_from_slice(doc.as_bytes());
    msg.push(0);
    msg.extend_from_slice(hash);
    msg
}

fn batches_of(envelopes: &[SignedChange], batch: usize) -> Vec<Vec<SignedChange>> {
    envelopes
        .chunks(batch)
        .map(<[SignedChange]>::to_vec)
        .collect()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The human report: one column pair per record count.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "hubcat-bench ingest — {} publishers, batches of {}, {} order, one core of {} ({} CPUs, {} build, ed25519 on {})\n\
         text: {}\nstores in: {}\n\n",
        report.publishers,
        report.batch,
        match report.order {
            Order::Interleaved => "interleaved",
            Order::ByPublisher => "by-publisher",
        },
        report.machine.cpu_model,
        report.machine.cpus,
        report.machine.build,
        report.machine.ed25519_backend,
        report.text_source,
        report.store_dir,
    );
    let mut t = Table::default();
    let mut header = vec!["stage".to_owned()];
    let mut units = vec![String::new()];
    for r in &report.runs {
        header.push(format!("{} records", group(r.records as f64)));
        header.push(String::new());
        units.push("rec/s".to_owned());
        units.push("µs/rec".to_owned());
    }
    t.row(header);
    t.row(units);
    type Pick = fn(&Run) -> f64;
    let stages: [(&str, Pick); 9] = [
        ("1 produce (upsert + sign)", |r| r.produce_records_per_s),
        ("2 sign", |r| r.sign_records_per_s),
        ("3 verify single", |r| r.verify_single_records_per_s),
        ("4 verify batch", |r| r.verify_batch_records_per_s),
        ("5 ed25519 batch limit", |r| {
            r.ed25519_batch_limit_records_per_s
        }),
        ("6 automerge apply (per batch)", |r| {
            r.automerge_apply_records_per_s
        }),
        ("6b automerge apply (deferred)", |r| {
            r.automerge_deferred_apply_records_per_s
        }),
        ("7 durable store (sled)", |r| r.store_append_records_per_s),
        ("8 end to end (ingest)", |r| r.end_to_end_records_per_s),
    ];
    for (name, pick) in stages {
        let mut row = vec![name.to_owned()];
        for r in &report.runs {
            let v = pick(r);
            row.push(group(v));
            row.push(format!("{:.1}", Run::us(v)));
        }
        t.row(row);
    }
    type Extra = fn(&Run) -> String;
    let extras: [(&str, Extra); 10] = [
        ("verify batch / ed25519 limit", |r| {
            format!("{:.3}", r.verify_vs_batch_limit)
        }),
        ("end to end CPU µs/rec (process)", |r| {
            format!("{:.1}", r.end_to_end_cpu_us_per_record)
        }),
        ("engine overhead µs/rec", |r| {
            format!("{:.1}", r.engine_overhead_us_per_record)
        }),
        ("final snapshot s", |r| format!("{:.2}", r.final_snapshot_s)),
        ("reopen s", |r| format!("{:.2}", r.reopen_s)),
        ("9 disk bytes/rec (e2e)", |r| group(r.disk_bytes_per_record)),
        ("  disk bytes/rec (store only)", |r| {
            group(r.store_only_disk_bytes_per_record)
        }),
        ("  envelope bytes/rec", |r| {
            group(r.envelope_bytes_per_record)
        }),
        ("  change bytes/rec", |r| group(r.change_bytes_per_record)),
        ("  record JSON / text bytes", |r| {
            format!(
                "{} / {}",
                group(r.record_json_bytes_per_record),
                group(r.text_bytes_per_record)
            )
        }),
    ];
    for (name, pick) in extras {
        let mut row = vec![name.to_owned()];
        for r in &report.runs {
            row.push(pick(r));
            row.push(String::new());
        }
        t.row(row);
    }
    out.push_str(&t.render());
    out.push_str(&format!(
        "\nend to end at {} records: {} records/s — target ≥ {}: {}\n\
         verify batch reaches {:.1} % of the raw ed25519 batch rate (verify_vs_batch_limit = {:.3})",
        group(
            report
                .runs
                .iter()
                .map(|r| r.records)
                .max()
                .unwrap_or(0) as f64
        ),
        group(report.end_to_end_records_per_s),
        group(report.target_end_to_end_records_per_s),
        if report.target_met { "PASS" } else { "MISS" },
        report.verify_vs_batch_limit * 100.0,
        report.verify_vs_batch_limit,
    ));
    out
}
