//! Anti-entropy sessions (we ask), sync request handling (we answer) and gossip validation.
//! The protocol itself — messages and range reconciliation — is in
//! [`hubcat_protocol::sync`]; this is where it meets the catalogue and the network.
//!
//! Every change that arrives here, in a response, a push or a gossip message, goes through
//! [`Catalogue::ingest`]: the same verification as a local publish, before anything is stored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::{anyhow, bail};
use automerge::ChangeHash;
use hubcat_protocol::sync::{
    self as wire, doc_key, ActorSeq, DocChanges, DocReply, DocSet, Gossip, SyncRequest,
    SyncResponse, Want, WireChange,
};
use hubcat_protocol::{DocId, SignedChange};
use libp2p::gossipsub::MessageAcceptance;
use libp2p::PeerId;
use serde::Serialize;

use super::NetHandle;
use crate::engine::{Catalogue, IngestReport};

/// Reconcile rounds per session before we give up (the range tree is 16 levels deep).
const MAX_RECONCILE_ROUNDS: usize = 20;
/// Exchange rounds per session (each moves up to `sync.max_response_bytes`).
const MAX_EXCHANGE_ROUNDS: usize = 1000;
/// Ranges and wants a peer may ask about in one request.
const MAX_RANGES: usize = 4096;
const MAX_WANTS: usize = 4096;
/// Longest hub name we keep from a peer.
const MAX_NAME: usize = 64;

/// What one anti-entropy session did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SessionReport {
    pub peer_name: Option<String>,
    pub round_trips: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Changes received and accepted / already held / refused.
    pub received: usize,
    pub duplicates: usize,
    pub refused: usize,
    /// Changes pushed to the peer.
    pub pushed: usize,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("background task failed: {e}"))
}

/// Verify and store changes from a peer (on the node's peer-ingest thread: see
/// [`super::ingest`]).
async fn ingest(
    shared: &super::Shared,
    envelopes: Vec<SignedChange>,
) -> anyhow::Result<IngestReport> {
    if envelopes.is_empty() {
        return Ok(IngestReport::default());
    }
    shared.ingest.ingest(envelopes).await
}

async fn doc_set(cat: &Arc<Catalogue>) -> anyhow::Result<DocSet> {
    let cat = cat.clone();
    blocking(move || DocSet::new(cat.doc_heads())).await
}

/// What we ask of `doc`: our heads and our clock (both empty when we lack it).
fn want_of(cat: &Catalogue, doc: &DocId) -> Want {
    Want {
        key: doc_key(doc),
        heads: wire::wire_hashes(&cat.doc_heads_of(doc)),
        clock: cat
            .doc_clock(doc)
            .into_iter()
            .map(|(actor, seq)| ActorSeq { actor, seq })
            .collect(),
    }
}

/// The client's clock from the wire.
fn clock_of(want: &Want) -> Vec<(Vec<u8>, u64)> {
    want.clock
        .iter()
        .map(|a| (a.actor.clone(), a.seq))
        .collect()
}

/// One request and its response, counted in the report.
async fn call(
    handle: &NetHandle,
    peer: PeerId,
    request: &SyncRequest,
    report: &mut SessionReport,
) -> anyhow::Result<SyncResponse> {
    let body = wire::encode(request);
    report.bytes_sent += body.len() as u64 + 4;
    report.round_trips += 1;
    let response = handle.request(peer, body).await?;
    report.bytes_received += response.len() as u64 + 4;
    let limit = handle.shared().config.response_limit();
    let response: SyncResponse = wire::decode(&response, limit)
        .map_err(|e| anyhow!("peer {peer} sent an undecodable sync response: {e}"))?;
    if let SyncResponse::Refused { reason } = &response {
        bail!("peer {peer} refused the sync request: {reason}");
    }
    Ok(response)
}

/// Run one anti-entropy session with `peer`: reconcile, fetch what we lack, push what it lacks.
pub async fn run_session(handle: &NetHandle, peer: PeerId) -> anyhow::Result<SessionReport> {
    let shared = handle.shared().clone();
    let cat = &shared.catalogue;
    let mut report = SessionReport::default();
    let set = doc_set(cat).await?;

    // 1. Find the documents that differ.
    let mut ranges = set.summary();
    let mut wants: Vec<Want> = Vec::new();
    let mut peer_lacks: Vec<DocId> = Vec::new();
    let mut rounds = 0;
    while !ranges.is_empty() {
        rounds += 1;
        if rounds > MAX_RECONCILE_ROUNDS {
            bail!("reconciliation with {peer} did not finish in {MAX_RECONCILE_ROUNDS} rounds");
        }
        let request = SyncRequest::Reconcile {
            name: shared.name_for(peer),
            ranges,
        };
        match call(handle, peer, &request, &mut report).await? {
            SyncResponse::Reconcile { name, replies } => {
                if let Some(name) = name {
                    report.peer_name = Some(name.chars().take(MAX_NAME).collect());
                }
                let cmp = set.compare(&replies);
                ranges = cmp.next;
                wants.extend(cmp.wants);
                peer_lacks.extend(cmp.peer_lacks);
            }
            other => bail!("peer {peer} answered a reconcile with {}", kind(&other)),
        }
    }

    // 2. Fetch what we lack. Wants for documents we have carry our clock, so a peer that does
    //    not know our heads (we hold changes it lacks) still sends only what we lack.
    let cat2 = cat.clone();
    let mut wants = blocking(move || {
        wants
            .into_iter()
            .map(|w| match set.get(w.key) {
                Some((doc, _)) if !w.heads.is_empty() => want_of(&cat2, doc),
                _ => w,
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let mut peer_heads: BTreeMap<DocId, Vec<ChangeHash>> = BTreeMap::new();
    let mut exchanges = 0;
    while !wants.is_empty() {
        exchanges += 1;
        if exchanges > MAX_EXCHANGE_ROUNDS {
            bail!("exchange with {peer} did not finish in {MAX_EXCHANGE_ROUNDS} rounds");
        }
        let asked: HashSet<u64> = wants.iter().map(|w| w.key).collect();
        let response = call(
            handle,
            peer,
            &SyncRequest::Exchange {
                wants: wants.clone(),
            },
            &mut report,
        )
        .await?;
        let SyncResponse::Exchange { docs, more } = response else {
            bail!("peer {peer} answered an exchange with {}", kind(&response));
        };
        let mut envelopes = Vec::new();
        let mut seen = Vec::new();
        for DocReply {
            doc,
            heads,
            changes,
        } in docs
        {
            if !asked.contains(&doc_key(&doc)) {
                bail!("peer {peer} sent document {doc}, which was not asked for");
            }
            peer_heads.insert(doc.clone(), wire::change_hashes(&heads));
            envelopes.extend(wire::envelopes(&doc, changes));
            seen.push(doc);
        }
        let r = ingest(handle.shared(), envelopes).await?;
        account(handle, peer, &r, &mut report).await;
        if !more {
            break;
        }
        // Ask again for the rest: the documents the response reached whose heads still differ
        // from the peer's, from our new heads; then the wants it did not reach, as they were.
        let before: Vec<Want> = std::mem::take(&mut wants);
        let answered: HashSet<u64> = seen.iter().map(doc_key).collect();
        let cat2 = cat.clone();
        let targets: Vec<(DocId, Vec<ChangeHash>)> = seen
            .into_iter()
            .filter_map(|d| peer_heads.get(&d).map(|h| (d, h.clone())))
            .collect();
        let mut next = blocking(move || {
            targets
                .into_iter()
                .map(|(doc, theirs)| (want_of(&cat2, &doc), theirs))
                .filter(|(want, theirs)| !same_set(&wire::change_hashes(&want.heads), theirs))
                .map(|(want, _)| want)
                .collect::<Vec<_>>()
        })
        .await?;
        next.extend(
            before
                .iter()
                .filter(|w| !answered.contains(&w.key))
                .cloned(),
        );
        if next == before {
            bail!("exchange with {peer} makes no progress");
        }
        wants = next;
    }

    // 3. Push what the peer lacks: whole documents it does not have, and changes after its
    //    heads where we know every one of them.
    let budget = shared.config.max_message_bytes / 2;
    let cat2 = cat.clone();
    let pushes = blocking(move || {
        let mut out: Vec<DocChanges> = Vec::new();
        let candidates = peer_lacks
            .into_iter()
            .map(|d| (d, Vec::new()))
            .chain(peer_heads);
        for (doc, heads) in candidates {
            if !cat2.has_all(&doc, &heads) {
                continue;
            }
            if let Some(cs) = cat2.changes_since(&doc, &heads, &[], budget) {
                if !cs.changes.is_empty() {
                    out.push(DocChanges {
                        changes: cs.changes.iter().map(WireChange::of).collect(),
                        doc,
                    });
                }
            }
        }
        out
    })
    .await?;
    for batch in push_batches(pushes, budget) {
        let n: usize = batch.iter().map(|d| d.changes.len()).sum();
        match call(
            handle,
            peer,
            &SyncRequest::Push { docs: batch },
            &mut report,
        )
        .await?
        {
            SyncResponse::Pushed { .. } => report.pushed += n,
            other => bail!("peer {peer} answered a push with {}", kind(&other)),
        }
    }
    Ok(report)
}

fn same_set(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let a: HashSet<&ChangeHash> = a.iter().collect();
    let b: HashSet<&ChangeHash> = b.iter().collect();
    a == b
}

/// Group pushes into requests of about `budget` bytes.
fn push_batches(docs: Vec<DocChanges>, budget: usize) -> Vec<Vec<DocChanges>> {
    let mut out: Vec<Vec<DocChanges>> = Vec::new();
    let mut current: Vec<DocChanges> = Vec::new();
    let mut size = 0;
    for d in docs {
        let n: usize = d.changes.iter().map(|c| c.payload_len() + 40).sum();
        if !current.is_empty() && size + n > budget {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += n;
        current.push(d);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

async fn account(handle: &NetHandle, peer: PeerId, r: &IngestReport, report: &mut SessionReport) {
    report.received += r.accepted;
    report.duplicates += r.duplicates;
    report.refused += r.refused.len();
    if !r.refused.is_empty() {
        handle.penalise(peer, r.refused.len()).await;
    }
}

fn kind(r: &SyncResponse) -> &'static str {
    match r {
        SyncResponse::Reconcile { .. } => "a reconcile reply",
        SyncResponse::Exchange { .. } => "an exchange reply",
        SyncResponse::Pushed { .. } => "a push receipt",
        SyncResponse::Refused { .. } => "a refusal",
    }
}

fn refused(reason: impl Into<String>) -> Vec<u8> {
    wire::encode(&SyncResponse::Refused {
        reason: reason.into(),
    })
}

/// What answering a request tells the network task: for a reconcile, `Some` (the peer ran a
/// round with us) with the hub name the peer gave, if it gave one.
type Served = Option<Option<String>>;

/// Answer one sync request from `peer`. Returns the encoded response and what it tells.
pub async fn serve(handle: &NetHandle, peer: PeerId, body: &[u8]) -> (Vec<u8>, Served) {
    let shared = handle.shared().clone();
    if shared.guard.is_graylisted(&peer) {
        // Asking on regardless is an offence too: a peer that keeps at it is banned, and its
        // connections are closed instead of answered one request at a time.
        handle.penalise(peer, 1).await;
        return (
            refused("graylisted: this peer sent too much refused input"),
            None,
        );
    }
    if !shared.guard.request_allowed(&peer) {
        handle.penalise(peer, 1).await;
        return (refused("rate limit: too many sync requests"), None);
    }
    let request: SyncRequest = match wire::decode(body, shared.config.max_message_bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "undecodable sync request");
            handle.penalise(peer, 1).await;
            return (refused(format!("undecodable request: {e}")), None);
        }
    };
    match answer(handle, peer, request).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "sync request failed");
            (refused(e.to_string()), None)
        }
    }
}

async fn answer(
    handle: &NetHandle,
    peer: PeerId,
    request: SyncRequest,
) -> anyhow::Result<(Vec<u8>, Served)> {
    let shared = handle.shared().clone();
    let cat = &shared.catalogue;
    match request {
        SyncRequest::Reconcile { name, ranges } => {
            if ranges.len() > MAX_RANGES {
                return Ok((refused(format!("more than {MAX_RANGES} ranges")), None));
            }
            let set = doc_set(cat).await?;
            let replies = set.answer(&ranges, MAX_RANGES);
            let body = wire::encode(&SyncResponse::Reconcile {
                name: shared.name_for(peer),
                replies,
            });
            Ok((body, Some(name.map(|n| n.chars().take(MAX_NAME).collect()))))
        }
        SyncRequest::Exchange { wants } => {
            if wants.len() > MAX_WANTS {
                return Ok((
                    refused(format!("more than {MAX_WANTS} documents asked")),
                    None,
                ));
            }
            let cat = cat.clone();
            let budget = shared.config.max_response_bytes;
            let response = blocking(move || {
                let set = DocSet::new(cat.doc_heads());
                let mut docs = Vec::new();
                let mut left = budget;
                let mut more = false;
                for want in wants {
                    let Some((doc, _)) = set.get(want.key) else {
                        continue;
                    };
                    if left == 0 {
                        more = true;
                        break;
                    }
                    let have = wire::change_hashes(&want.heads);
                    if let Some(cs) = cat.changes_since(doc, &have, &clock_of(&want), left) {
                        let size: usize = cs
                            .changes
                            .iter()
                            .map(|c| c.change.len() + c.signature.len())
                            .sum();
                        left = left.saturating_sub(size);
                        more |= cs.more;
                        docs.push(DocReply {
                            doc: doc.clone(),
                            heads: wire::wire_hashes(&cs.heads),
                            changes: cs.changes.iter().map(WireChange::of).collect(),
                        });
                    }
                }
                SyncResponse::Exchange { docs, more }
            })
            .await?;
            Ok((wire::encode(&response), None))
        }
        SyncRequest::Push { docs } => {
            let envelopes: Vec<SignedChange> = docs
                .into_iter()
                .flat_map(|d| wire::envelopes(&d.doc, d.changes))
                .collect();
            let r = ingest(handle.shared(), envelopes).await?;
            if !r.refused.is_empty() {
                handle.penalise(peer, r.refused.len()).await;
            }
            let body = wire::encode(&SyncResponse::Pushed {
                accepted: r.accepted as u32,
                duplicates: r.duplicates as u32,
                refused: r.refused.len() as u32,
            });
            Ok((body, None))
        }
    }
}

/// Validate a gossip message: decode it, put its changes through the ingest path, and fetch
/// from the sender whatever the announced heads need that we lack.
pub async fn on_gossip(handle: &NetHandle, source: PeerId, data: &[u8]) -> MessageAcceptance {
    let shared = handle.shared().clone();
    if shared.guard.is_graylisted(&source) {
        return MessageAcceptance::Ignore;
    }
    if !shared.guard.gossip_allowed(&source) {
        handle.penalise(source, 1).await;
        return MessageAcceptance::Ignore;
    }
    let gossip: Gossip = match wire::decode(data, shared.config.max_message_bytes) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(peer = %source, error = %e, "undecodable gossip message");
            handle.penalise(source, 1).await;
            return MessageAcceptance::Reject;
        }
    };
    let Gossip::Announce {
        doc,
        heads,
        changes,
    } = gossip;
    let cat = &shared.catalogue;
    match ingest(handle.shared(), wire::envelopes(&doc, changes)).await {
        Ok(r) if !r.refused.is_empty() => {
            tracing::warn!(
                peer = %source,
                refused = r.refused.len(),
                first = %r.refused[0].detail,
                "gossip carried changes that failed verification"
            );
            handle.penalise(source, r.refused.len()).await;
            return MessageAcceptance::Reject;
        }
        // Changes of a hub that is not a member: held, neither forwarded nor fetched.
        Ok(r) if r.accepted == 0 && !r.held.is_empty() => return MessageAcceptance::Ignore,
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "storing gossiped changes failed");
            return MessageAcceptance::Ignore;
        }
    }
    let heads = wire::change_hashes(&heads);
    let cat2 = cat.clone();
    let doc2 = doc.clone();
    let complete = blocking(move || cat2.has_all(&doc2, &heads))
        .await
        .unwrap_or(true);
    if !complete {
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(e) = fetch_doc(&handle, source, doc).await {
                tracing::debug!(peer = %source, error = %e, "fetching announced changes failed");
            }
        });
    }
    MessageAcceptance::Accept
}

/// Ask `peer` for what we lack of one document.
async fn fetch_doc(handle: &NetHandle, peer: PeerId, doc: DocId) -> anyhow::Result<()> {
    let cat = handle.shared().catalogue.clone();
    let mut report = SessionReport::default();
    for _ in 0..MAX_EXCHANGE_ROUNDS {
        let cat2 = cat.clone();
        let d = doc.clone();
        let want = blocking(move || want_of(&cat2, &d)).await?;
        let request = SyncRequest::Exchange { wants: vec![want] };
        let SyncResponse::Exchange { docs, more } =
            call(handle, peer, &request, &mut report).await?
        else {
            bail!("peer {peer} answered an exchange with something else");
        };
        let mut envelopes = Vec::new();
        for reply in docs {
            if reply.doc != doc {
                bail!(
                    "peer {peer} sent document {}, which was not asked for",
                    reply.doc
                );
            }
            envelopes.extend(wire::envelopes(&reply.doc, reply.changes));
        }
        let r = ingest(handle.shared(), envelopes).await?;
        account(handle, peer, &r, &mut report).await;
        if !more || r.accepted == 0 {
            return Ok(());
        }
    }
    Ok(())
}
