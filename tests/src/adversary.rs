//! The adversary harness: a three-founder federation under attack by hostile libp2p peers.
//!
//! Each kind of bad input is sent by its own hostile peer — a real hubcat node that joined
//! the federation's genesis but is no member, talking to the honest nodes over libp2p (sync
//! requests and gossip) with messages it forges — so each kind is judged on its own, not
//! turned away at the door because an earlier kind already got its sender graylisted. Honest
//! queries run against one honest node throughout, quiet first, then under attack. The honest
//! side runs on one CPU and the attackers on another (see [`HONEST_CPU`]).
//!
//! [`run`] returns what happened: inputs sent per kind, changes accepted on each honest node
//! (must stay 0), which hostile peers each honest node graylisted or banned, and the query
//! latency quiet and under attack. The test `tests/tests/adversary.rs` asserts on it; the
//! bench `hubcat-bench adversary` prints it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubcat_node::federation;
use hubcat_protocol::change::{self, SignedChange, MAX_CHANGE_BYTES};
use hubcat_protocol::genesis::Genesis;
use hubcat_protocol::membership::{Action, MembershipDoc, Vote};
use hubcat_protocol::sync::{
    self as wire, DocChanges, Gossip, RangeFingerprint, SyncRequest, Want, WireChange,
};
use hubcat_protocol::{CatalogueDoc, DocId, HubKey, Record};
use libp2p::PeerId;
use serde::Serialize;
use serde_json::Value;

use crate::{genesis_federation, percentile, pin_to_cpu, wait_until, TestHub};

/// The honest nodes and the honest client run on one CPU, the hostile nodes on another: the
/// attackers' own work (forging, sending, encrypting) takes a CPU of its own, as it would on
/// another machine, so the latency measured is what the attack makes the honest side do. On a
/// one-CPU machine everything shares it.
const HONEST_CPU: usize = 0;
const HOSTILE_CPU: usize = 1;

/// Bad changes in one pushed message (each judged on its own by the receiving node).
const CHANGES_PER_PUSH: usize = 300;
/// Bad changes in one gossip message, and gossip messages per change kind.
const CHANGES_PER_GOSSIP: usize = 10;
const GOSSIPS_PER_KIND: usize = 10;
/// Frames per honest peer for the frame kinds.
const FRAMES_PER_PEER: usize = 300;
/// Poisoned reconciliation requests per honest peer: fewer than the per-peer burst of sync
/// requests, so they are judged on their content, not cut by the rate limit.
const POISONED_PER_PEER: usize = 150;
/// Sync requests per honest peer in the flood (sent all at once).
const FLOOD_PER_PEER: usize = 1_000;

/// The kinds of bad input, in the order they are sent.
pub const KINDS: [&str; 13] = [
    "forged_signature",
    "wrong_author",
    "altered_change",
    "replayed_change",
    "future_timestamp",
    "non_member_document",
    "non_member_endorsement",
    "forged_membership_vote",
    "oversized_message",
    "truncated_frame",
    "garbage_frame",
    "poisoned_sync",
    "flood",
];

/// Query latency in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub queries: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What one attack run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Inputs sent, per kind.
    pub sent: BTreeMap<&'static str, usize>,
    pub total_sent: usize,
    /// Changes accepted during the attack, per honest node.
    pub accepted: Vec<u64>,
    /// Records, members and digest of each honest node unchanged by the attack.
    pub unchanged: Vec<bool>,
    /// Per kind: on how many honest nodes its sender ended graylisted (or banned), and banned.
    pub graylisted: BTreeMap<&'static str, usize>,
    pub banned: BTreeMap<&'static str, usize>,
    /// Held changes (by non-members) on each honest node after the attack.
    pub held: Vec<u64>,
    /// Per honest node: inbound connections dropped before their handshake (their address had
    /// opened too many — the redials of banned hostile peers).
    pub dropped_before_handshake: Vec<u64>,
    pub quiet: Latency,
    pub attack: Latency,
    /// Honest query latency while each kind was sent.
    pub attack_by_kind: BTreeMap<&'static str, Latency>,
    pub seconds: f64,
}

/// The honest federation: three founders, quorum 2, each with a few records.
pub struct Federation {
    pub hubs: Vec<TestHub>,
    genesis: Genesis,
    id: String,
    keys: Vec<HubKey>,
}

impl Federation {
    pub fn start(records_per_hub: usize) -> anyhow::Result<Federation> {
        let (hubs, _, genesis, id) = genesis_federation(
            &[("HDS", "SE"), ("GAL", "ES"), ("THESS", "GR")],
            &[],
            2,
            Some(HONEST_CPU),
        )?;
        let keys: Vec<HubKey> = hubs
            .iter()
            .map(|h| h.data_dir.load_key())
            .collect::<Result<_, _>>()?;
        for (i, h) in hubs.iter().enumerate() {
            for r in 0..records_per_hub {
                h.publish_ok(
                    &serde_json::json!({"kind": "service", "id": format!("lab-{i}-{r}"),
                    "title": {"en": format!("Robotics testbed {i} {r}")},
                    "description": {"en": "Test robotics before you invest."},
                    "category": "test-before-invest"}),
                );
            }
        }
        let want = (records_per_hub * hubs.len()) as u64;
        anyhow::ensure!(
            wait_until(Duration::from_secs(60), || hubs.iter().all(|h| h
                .list("kind=service")
                .1["count"]
                .as_u64()
                == Some(want))),
            "the honest federation did not converge"
        );
        Ok(Federation {
            hubs,
            genesis,
            id,
            keys,
        })
    }

    /// A hostile node: joined to the genesis (so it speaks the federation's protocols), no
    /// member, connected to every honest node.
    fn hostile(&self) -> anyhow::Result<TestHub> {
        let p = TestHub::prepare("HOSTILE", "SE")?.on_cpu(HOSTILE_CPU);
        federation::adopt(&p.data_dir, &self.genesis, &self.id)?;
        let boot: Vec<String> = self.hubs.iter().map(|h| h.p2p_addr()).collect();
        let h = p.start_configured(&boot, &[])?;
        let honest: Vec<PeerId> = self.hubs.iter().map(|h| h.peer_id()).collect();
        anyhow::ensure!(
            wait_until(Duration::from_secs(30), || {
                let peers = h.peers();
                honest.iter().all(|p| {
                    peers
                        .iter()
                        .any(|x| x["peer_id"] == p.to_string() && x["connected"] == true)
                })
            }),
            "the hostile node did not reach every honest node"
        );
        // Let gossipsub take it into the mesh (heartbeats every 500 ms).
        std::thread::sleep(Duration::from_millis(1_500));
        Ok(h)
    }
}

fn service(slug: &str) -> Record {
    // A fixed, valid record.
    Record::from_value(serde_json::json!({"kind": "service", "id": slug,
        "title": {"en": "Cheap pills"}, "description": {"en": "Buy now."},
        "category": "test-before-invest"}))
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn suffix(n: usize) -> [u8; 16] {
    let mut s = [7u8; 16];
    s[..8].copy_from_slice(&(n as u64).to_le_bytes());
    s
}

/// `n` bad changes of `kind` made by `hostile` (key) against the federation.
fn changes(
    kind: &str,
    n: usize,
    hostile: &HubKey,
    victim: &HubKey,
    membership: &DocId,
    genuine: &[SignedChange],
) -> Vec<SignedChange> {
    let now = hubcat_protocol::now_ms();
    (0..n)
        .map(|i| {
            let slug = format!("spam-{i}");
            match kind {
                "forged_signature" => {
                    // A change in the victim's document, under the victim's name, signed by
                    // the hostile key.
                    let mut doc = CatalogueDoc::new(victim.id(), suffix(i));
                    let c = doc
                        .upsert(&service(&slug), now)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let mut env = change::sign(hostile, doc.id(), &c);
                    env.author = *victim.id().as_bytes();
                    env
                }
                "wrong_author" => {
                    // A change written as the victim (its actor), signed and sent under the
                    // hostile key.
                    let mut doc = CatalogueDoc::new(victim.id(), suffix(i));
                    let c = doc
                        .upsert(&service(&slug), now)
                        .unwrap_or_else(|e| panic!("{e}"));
                    change::sign(hostile, doc.id(), &c)
                }
                "altered_change" => {
                    let mut doc = CatalogueDoc::new(hostile.id(), suffix(i));
                    let c = doc
                        .upsert(&service(&slug), now)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let mut env = change::sign(hostile, doc.id(), &c);
                    let at = env.change.len() / 2 + i % 7;
                    env.change[at] ^= 0x5a;
                    env
                }
                "replayed_change" => genuine[i % genuine.len()].clone(),
                "future_timestamp" => {
                    let mut doc = CatalogueDoc::new(hostile.id(), suffix(i));
                    let c = doc
                        .upsert(&service(&slug), now + 86_400_000)
                        .unwrap_or_else(|e| panic!("{e}"));
                    change::sign(hostile, doc.id(), &c)
                }
                "non_member_document" => {
                    let mut doc = CatalogueDoc::new(hostile.id(), suffix(i));
                    let c = doc
                        .upsert(&service(&slug), now)
                        .unwrap_or_else(|e| panic!("{e}"));
                    change::sign(hostile, doc.id(), &c)
                }
                "non_member_endorsement" => {
                    let friend = HubKey::from_secret_bytes(&[(i % 200) as u8 + 20; 32])
                        .unwrap_or_else(|e| panic!("{e}"));
                    let vote = Vote::new(Action::Endorse, friend.id(), 0, hostile.id(), "", now);
                    let c = MembershipDoc::new()
                        .cast(&vote, suffix(i), now)
                        .unwrap_or_else(|e| panic!("{e}"));
                    change::sign(hostile, membership, &c)
                }
                "forged_membership_vote" => {
                    // An endorsement of the hostile hub in a founder's name.
                    let vote = Vote::new(Action::Endorse, hostile.id(), 0, victim.id(), "", now);
                    let c = MembershipDoc::new()
                        .cast(&vote, suffix(i), now)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let mut env = change::sign(hostile, membership, &c);
                    env.author = *victim.id().as_bytes();
                    env
                }
                other => panic!("{other} is not a change kind"),
            }
        })
        .collect()
}

fn push(changes: &[SignedChange]) -> Vec<u8> {
    let mut docs: Vec<DocChanges> = Vec::new();
    for c in changes {
        match docs.last_mut().filter(|d| d.doc == c.doc) {
            Some(d) => d.changes.push(WireChange::of(c)),
            None => docs.push(DocChanges {
                doc: c.doc.clone(),
                changes: vec![WireChange::of(c)],
            }),
        }
    }
    wire::encode(&SyncRequest::Push { docs })
}

fn gossip(changes: &[SignedChange]) -> Vec<u8> {
    wire::encode(&Gossip::Announce {
        doc: changes[0].doc.clone(),
        heads: Vec::new(),
        changes: changes.iter().map(WireChange::of).collect(),
    })
}

/// Pseudo-random bytes (xorshift), reproducible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One message of an attack, made before the attack starts (an attacker forges in advance;
/// the time it takes is not part of what the honest nodes suffer).
enum Shot {
    /// A sync request to one honest peer, carrying `inputs` bad inputs.
    Request(PeerId, Vec<u8>, usize),
    /// A gossip message carrying `inputs` bad inputs.
    Gossip(Vec<u8>, usize),
    /// `count` copies of one request to one honest peer, all at once.
    Flood(PeerId, Vec<u8>, usize),
}

/// The messages of one kind from `h` to the honest peers.
fn aim(kind: &'static str, h: &TestHub, fed: &Federation, genuine: &[SignedChange]) -> Vec<Shot> {
    let net = h.net();
    let honest: Vec<PeerId> = fed.hubs.iter().map(|x| x.peer_id()).collect();
    let hostile_key = h.data_dir.load_key().unwrap_or_else(|e| panic!("{e}"));
    let membership = DocId::Membership(fed.id.clone());
    let max_message = net.max_message_bytes();
    let mut shots = Vec::new();
    match kind {
        "oversized_message" => {
            // Frames over the message limit (dropped unread) …
            let big = noise(1, max_message + 4096);
            // … and changes over the change limit inside a frame that fits (refused on their
            // size before anything else is read).
            let huge = push(&[SignedChange {
                doc: DocId::Hub(hostile_key.id()),
                author: *hostile_key.id().as_bytes(),
                signature: vec![0; 64],
                change: noise(2, MAX_CHANGE_BYTES + 1024),
            }]);
            for p in &honest {
                for _ in 0..20 {
                    shots.push(Shot::Request(*p, big.clone(), 1));
                    shots.push(Shot::Request(*p, huge.clone(), 1));
                }
            }
        }
        "truncated_frame" | "garbage_frame" => {
            let valid = push(&changes(
                "non_member_document",
                4,
                &hostile_key,
                &fed.keys[0],
                &membership,
                genuine,
            ));
            for (pi, p) in honest.iter().enumerate() {
                for i in 0..FRAMES_PER_PEER {
                    let frame = if kind == "truncated_frame" {
                        valid[..(i * 37 + pi) % (valid.len() - 1) + 1].to_vec()
                    } else {
                        noise((i * 3 + pi) as u64, 16 + i % 512)
                    };
                    shots.push(Shot::Request(*p, frame, 1));
                }
            }
            if kind == "garbage_frame" {
                for i in 0..100 {
                    shots.push(Shot::Gossip(noise(10_000 + i, 64 + i as usize), 1));
                }
            }
        }
        "poisoned_sync" => {
            // Range fingerprints that never match (forcing splits), paths out of range, counts
            // that lie; wants for documents nobody has, with absurd clocks.
            for (pi, p) in honest.iter().enumerate() {
                for i in 0..POISONED_PER_PEER {
                    let request = if i % 2 == 0 {
                        SyncRequest::Reconcile {
                            name: None,
                            ranges: (0..200)
                                .map(|r| RangeFingerprint {
                                    path: noise((i * 1000 + r + pi) as u64, r % 24),
                                    count: u32::MAX - r as u32,
                                    fingerprint: [r as u8; 8],
                                })
                                .collect(),
                        }
                    } else {
                        SyncRequest::Exchange {
                            wants: (0..200)
                                .map(|w| Want {
                                    key: (w as u64).wrapping_mul(0x9e37_79b9) ^ i as u64,
                                    heads: vec![[w as u8; 32]],
                                    clock: vec![wire::ActorSeq {
                                        actor: noise(w as u64, 48),
                                        seq: u64::MAX,
                                    }],
                                })
                                .collect(),
                        }
                    };
                    shots.push(Shot::Request(*p, wire::encode(&request), 1));
                }
            }
        }
        "flood" => {
            let ping = wire::encode(&SyncRequest::Reconcile {
                name: None,
                ranges: Vec::new(),
            });
            for p in &honest {
                shots.push(Shot::Flood(*p, ping.clone(), FLOOD_PER_PEER));
            }
        }
        change_kind => {
            let bad = changes(
                change_kind,
                CHANGES_PER_PUSH,
                &hostile_key,
                &fed.keys[0],
                &membership,
                genuine,
            );
            let body = push(&bad);
            for p in &honest {
                shots.push(Shot::Request(*p, body.clone(), bad.len()));
            }
            for g in bad.chunks(CHANGES_PER_GOSSIP).take(GOSSIPS_PER_KIND) {
                shots.push(Shot::Gossip(gossip(g), g.len()));
            }
        }
    }
    shots
}

/// Send `shots` from `h`; returns the inputs sent.
fn fire(h: &TestHub, shots: Vec<Shot>) -> usize {
    let net = h.net().clone();
    h.block_on(async move {
        let mut sent = 0;
        for shot in shots {
            match shot {
                Shot::Request(p, body, inputs) => {
                    let _ = net.request(p, body).await;
                    sent += inputs;
                }
                Shot::Gossip(body, inputs) => {
                    net.publish_raw(body).await;
                    sent += inputs;
                }
                Shot::Flood(p, body, count) => {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..count {
                        let (net, body) = (net.clone(), body.clone());
                        set.spawn(async move {
                            let _ = net.request(p, body).await;
                        });
                    }
                    while set.join_next().await.is_some() {}
                    sent += count;
                }
            }
        }
        sent
    })
}

/// Honest query latencies (ms): quiet, then per kind while it was sent.
type Samples = (Vec<f64>, Vec<Vec<f64>>);

/// Phases of the honest queries: before any attack, while a kind is sent, while the next
/// hostile node starts (not counted).
const QUIET: u8 = 0;
const SETUP: u8 = 1;
/// `ATTACK + i` while kind `KINDS[i]` is sent.
const ATTACK: u8 = 2;

fn latency(samples: &[f64]) -> Latency {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    Latency {
        queries: s.len(),
        p50_ms: percentile(&s, 0.50),
        p99_ms: percentile(&s, 0.99),
        max_ms: s.last().copied().unwrap_or(0.0),
    }
}

/// What an honest node shows that the attack must not change.
fn fingerprint(h: &TestHub) -> (String, Value, Value) {
    let (_, members) = h.request(reqwest::Method::GET, "/v1/federation/members", None, None);
    (
        h.digest(),
        h.list("").1,
        serde_json::json!([
            members["members"],
            members["candidates"],
            members["suspended"]
        ]),
    )
}

fn accepted(h: &TestHub) -> u64 {
    h.status().1["changes_accepted"].as_u64().unwrap_or(0)
}

/// Run the whole attack against `fed` (see the module doc).
pub fn run(fed: &Federation, quiet_for: Duration) -> anyhow::Result<Report> {
    let started = Instant::now();
    // Genuine changes of a founder, for the replay.
    let genuine = fed.hubs[1]
        .catalogue()
        .changes_since(&DocId::Hub(fed.keys[0].id()), &[], &[], 1 << 20)
        .map(|c| c.changes)
        .unwrap_or_default();
    anyhow::ensure!(!genuine.is_empty(), "no genuine change to replay");
    let before: Vec<_> = fed.hubs.iter().map(fingerprint).collect();
    let accepted_before: Vec<u64> = fed.hubs.iter().map(accepted).collect();

    // Honest queries against the first node, all along.
    let url = format!("{}/v1/search?q=robotics", fed.hubs[0].url());
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(QUIET));
    // Quiet samples, and per kind the samples while it was sent.
    let samples: Arc<Mutex<Samples>> =
        Arc::new(Mutex::new((Vec::new(), vec![Vec::new(); KINDS.len()])));
    let querier = {
        let (stop, phase, samples) = (stop.clone(), phase.clone(), samples.clone());
        std::thread::spawn(move || {
            pin_to_cpu(HONEST_CPU);
            let http = reqwest::blocking::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let before = phase.load(Ordering::Relaxed);
                let t = Instant::now();
                let ok = http.get(&url).send().is_ok_and(|r| r.status().is_success());
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                // A query that straddled two phases counts in neither.
                if ok && phase.load(Ordering::Relaxed) == before {
                    let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
                    match before {
                        QUIET => s.0.push(ms),
                        SETUP => {}
                        k => {
                            if let Some(v) = s.1.get_mut((k - ATTACK) as usize) {
                                v.push(ms);
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(quiet_for);
    phase.store(SETUP, Ordering::Relaxed);

    // The attackers' driver — forging the inputs, starting the hostile nodes, handing the
    // inputs to them — runs on the attackers' CPU too.
    let attack = || -> anyhow::Result<_> {
        pin_to_cpu(HOSTILE_CPU);
        let mut sent = BTreeMap::new();
        let mut senders = Vec::new();
        for (i, kind) in KINDS.into_iter().enumerate() {
            let h = fed.hostile()?;
            let shots = aim(kind, &h, fed, &genuine);
            phase.store(ATTACK + i as u8, Ordering::Relaxed);
            let n = fire(&h, shots);
            phase.store(SETUP, Ordering::Relaxed);
            sent.insert(kind, n);
            senders.push((kind, h));
        }
        Ok((sent, senders))
    };
    let (sent, senders) = std::thread::scope(|s| s.spawn(attack).join())
        .map_err(|_| anyhow::anyhow!("the attack panicked"))??;
    stop.store(true, Ordering::Relaxed);
    let _ = querier.join();
    // Let whatever the attack left in flight land: gossip is fire-and-forget, so the honest
    // hubs score the last shots while they process them.
    std::thread::sleep(Duration::from_secs(2));
    // How many honest hubs (graylisted or banned, banned) hold each sender.
    let scores = |h: &TestHub| {
        let id = h.peer_id().to_string();
        let (mut g, mut b) = (0, 0);
        for honest in &fed.hubs {
            if let Some(p) = honest.peers().iter().find(|p| p["peer_id"] == id) {
                g += usize::from(p["graylisted"] == true || p["banned"] == true);
                b += usize::from(p["banned"] == true);
            }
        }
        (g, b)
    };
    wait_until(Duration::from_secs(30), || {
        senders
            .iter()
            .filter(|(kind, _)| penalised(kind))
            .all(|(_, h)| scores(h).0 > 0)
    });
    let mut graylisted = BTreeMap::new();
    let mut banned = BTreeMap::new();
    for (kind, h) in &senders {
        let (g, b) = scores(h);
        graylisted.insert(*kind, g);
        banned.insert(*kind, b);
    }
    let after: Vec<_> = fed.hubs.iter().map(fingerprint).collect();
    let held = fed
        .hubs
        .iter()
        .map(|h| {
            let (_, m) = h.request(reqwest::Method::GET, "/v1/federation/members", None, None);
            m["held_changes"].as_u64().unwrap_or(0)
        })
        .collect();
    let (quiet, attacked, by_kind) = {
        let s = samples.lock().unwrap_or_else(|p| p.into_inner());
        let all: Vec<f64> = s.1.iter().flatten().copied().collect();
        let by_kind: BTreeMap<&'static str, Latency> = KINDS
            .iter()
            .zip(&s.1)
            .map(|(k, v)| (*k, latency(v)))
            .collect();
        (latency(&s.0), latency(&all), by_kind)
    };
    Ok(Report {
        total_sent: sent.values().sum(),
        sent,
        accepted: fed
            .hubs
            .iter()
            .zip(&accepted_before)
            .map(|(h, b)| accepted(h).saturating_sub(*b))
            .collect(),
        unchanged: before.iter().zip(&after).map(|(b, a)| b == a).collect(),
        graylisted,
        banned,
        held,
        dropped_before_handshake: fed.hubs.iter().map(|h| h.net().inbound_refused()).collect(),
        quiet,
        attack: attacked,
        attack_by_kind: by_kind,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Kinds whose inputs are refused (and cost their sender): the others — replays of genuine
/// changes, a non-member's own document and votes, poisoned reconciliation — are held,
/// ignored as duplicates or answered with nothing new, and cost nothing (an honest peer can
/// send them too: a relayed change of a hub not yet admitted, a stale range).
pub fn penalised(kind: &str) -> bool {
    !matches!(
        kind,
        "replayed_change" | "non_member_document" | "non_member_endorsement" | "poisoned_sync"
    )
}
