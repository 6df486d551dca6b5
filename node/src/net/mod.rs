//! The libp2p network: one task owns the `Swarm`; the rest of the node talks to it through a
//! cloneable [`NetHandle`] over a bounded channel.
//!
//! - Transports: TCP and QUIC, Noise, Yamux. The libp2p identity *is* the hub key, so a peer's
//!   `PeerId` and its hub `did:key` name the same key.
//! - Discovery: bootstrap peers from the config (redialled when lost), identify, Kademlia
//!   (server mode), mDNS when enabled.
//! - Gossipsub on `hubcat/<federation>/changes/1` carries announcements of new signed changes
//!   (see [`hubcat_protocol::sync::Gossip`]). Messages are validated by the node — the hub
//!   signatures and the write rule, through the same ingest path as a local publish — before
//!   they are accepted and forwarded; rejected ones lower the sender's peer score.
//! - Request-response on `/hubcat/<federation>/sync/2` runs anti-entropy (see [`sync`]).
//! - At most `p2p.max_peers` peers (not connections) at once, bootstrap peers always admitted
//!   (see [`peer_limit`]); new inbound connections from one IP address beyond a burst and a
//!   rate are dropped before the handshake (see [`inbound`]).
//!
//! Every protocol name carries the federation name, so two federations never mix.

mod codec;
pub mod guard;
mod inbound;
mod ingest;
mod peer_limit;
mod runtime;
pub mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context as _};
use futures::StreamExt;
use hubcat_config::Config;
use hubcat_protocol::sync::{Gossip, WireChange};
use hubcat_protocol::{HubId, HubKey};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, kad, mdns, noise, ping,
    request_response, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::engine::Catalogue;
use codec::SyncCodec;

/// Changes up to this size are carried inside the gossip announcement.
const INLINE_GOSSIP_BYTES: usize = 64 * 1024;
/// Most sync sessions this node runs at once as a client.
const MAX_SESSIONS: usize = 4;
/// Commands queued for the swarm task before senders wait.
const COMMAND_QUEUE: usize = 1024;
/// Version of the sync protocol (2: wants carry the client's clock, names once per connection).
const SYNC_VERSION: u32 = 2;
/// How often a connection is pinged, and how long an answer may take before the connection
/// is closed as dead.
const PING_INTERVAL: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dial of an unpinned bootstrap address may stay unanswered before it is retried.
const UNPINNED_REDIAL: Duration = Duration::from_secs(15);

/// The network's part of the configuration, parsed.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Bootstrap addresses without a peer id (`p2p.bootstrap_unpinned`): dialled as they are,
    /// the peer's id learned from its key in the handshake.
    pub bootstrap_unpinned: Vec<Multiaddr>,
    pub federation: String,
    pub mdns: bool,
    pub sync_interval: Duration,
    pub max_peers: u32,
    pub max_message_bytes: usize,
    pub max_response_bytes: usize,
    pub timeout: Duration,
    pub hub_name: String,
}

impl NetConfig {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let listen = config
            .p2p
            .listen
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .map_err(|e| anyhow!("p2p.listen: `{a}` is not a valid multiaddr: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut bootstrap = Vec::new();
        let mut bootstrap_unpinned = Vec::new();
        for a in &config.p2p.bootstrap {
            let addr: Multiaddr = a
                .parse()
                .map_err(|e| anyhow!("p2p.bootstrap: `{a}` is not a valid multiaddr: {e}"))?;
            let pinned = matches!(
                addr.iter().last(),
                Some(libp2p::multiaddr::Protocol::P2p(_))
            );
            if pinned || !config.p2p.bootstrap_unpinned {
                bootstrap.push(parse_peer_addr(a).map_err(|e| anyhow!("p2p.bootstrap: {e}"))?);
            } else {
                bootstrap_unpinned.push(addr);
            }
        }
        Ok(NetConfig {
            listen,
            bootstrap,
            bootstrap_unpinned,
            federation: config.p2p.federation.clone(),
            mdns: config.p2p.mdns,
            sync_interval: Duration::from_secs(config.sync.interval_secs),
            max_peers: u32::try_from(config.p2p.max_peers).unwrap_or(u32::MAX),
            max_message_bytes: usize::try_from(config.p2p.max_message_bytes).unwrap_or(usize::MAX),
            max_response_bytes: usize::try_from(config.sync.max_response_bytes)
                .unwrap_or(usize::MAX),
            timeout: Duration::from_secs(config.sync.timeout_secs),
            hub_name: config.hub.name.clone(),
        })
    }

    /// Whether any bootstrap peer is configured (pinned or not).
    pub fn has_bootstrap(&self) -> bool {
        !self.bootstrap.is_empty() || !self.bootstrap_unpinned.is_empty()
    }

    /// The largest sync response we read: the configured change budget plus one change that
    /// may overshoot it, plus framing.
    pub fn response_limit(&self) -> usize {
        self.max_response_bytes + hubcat_protocol::change::MAX_CHANGE_BYTES + 64 * 1024
    }

    fn topic(&self) -> gossipsub::IdentTopic {
        gossipsub::IdentTopic::new(format!("hubcat/{}/changes/1", self.federation))
    }

    fn protocol(&self, what: &str, version: u32) -> anyhow::Result<StreamProtocol> {
        StreamProtocol::try_from_owned(format!("/hubcat/{}/{what}/{version}", self.federation))
            .map_err(|e| anyhow!("protocol name for federation {}: {e}", self.federation))
    }
}

/// A multiaddr that ends in `/p2p/<peer-id>`, split into the peer and the address.
pub fn parse_peer_addr(s: &str) -> anyhow::Result<(PeerId, Multiaddr)> {
    let addr: Multiaddr = s
        .parse()
        .map_err(|e| anyhow!("`{s}` is not a valid multiaddr: {e}"))?;
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Ok((peer, addr)),
        _ => Err(anyhow!(
            "`{s}` does not end in /p2p/<peer-id> (e.g. /ip4/10.0.0.2/tcp/7071/p2p/12D3KooW…)"
        )),
    }
}

/// The libp2p identity of a hub key.
pub fn keypair(key: &HubKey) -> anyhow::Result<libp2p::identity::Keypair> {
    let mut secret = *key.secret_bytes();
    libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|e| anyhow!("hub key as libp2p identity: {e}"))
}

/// The `PeerId` of a hub.
pub fn peer_id_of(hub: &HubId) -> anyhow::Result<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(hub.as_bytes())
        .map_err(|e| anyhow!("hub key as libp2p key: {e}"))?;
    Ok(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
        pk,
    )))
}

/// The hub a peer id names (every hubcat peer id is an ed25519 key inlined in the id).
pub fn hub_of(peer: &PeerId) -> Option<HubId> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    let ed = pk.try_into_ed25519().ok()?;
    HubId::from_bytes(&ed.to_bytes()).ok()
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// First: a connection over its address's budget is dropped before any other behaviour
    /// counts it.
    peer_limit: peer_limit::PeerLimit,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// What the node knows about one peer, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    /// The peer's hub, from its key.
    pub did: Option<String>,
    /// The hub name the peer gives in sync (self-declared).
    pub name: Option<String>,
    pub addresses: Vec<String>,
    pub connected: bool,
    /// Unix ms of the current connection's start.
    pub connected_since: Option<i64>,
    /// Unix ms of the last completed sync round with this peer (either side started it).
    pub last_sync: Option<i64>,
    pub sync_rounds: u64,
    /// Sync and gossip bytes received from / sent to this peer.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Gossipsub score (negative after rejected messages).
    pub score: Option<f64>,
    /// Offences counted against the peer (see [`guard`]) and where they left it.
    pub offences: u64,
    pub graylisted: bool,
    pub banned: bool,
    pub agent: Option<String>,
}

#[derive(Debug, Default)]
struct PeerState {
    addresses: Vec<Multiaddr>,
    connections: usize,
    connected_since: Option<SystemTime>,
    last_sync: Option<SystemTime>,
    sync_rounds: u64,
    bytes_in: u64,
    bytes_out: u64,
    name: Option<String>,
    agent: Option<String>,
    in_session: bool,
}

/// What the rest of the node can ask of the network task.
enum Command {
    Request {
        peer: PeerId,
        body: Vec<u8>,
        reply: oneshot::Sender<anyhow::Result<Vec<u8>>>,
    },
    Respond {
        channel: request_response::ResponseChannel<Vec<u8>>,
        peer: PeerId,
        body: Vec<u8>,
    },
    Validated {
        id: gossipsub::MessageId,
        source: PeerId,
        acceptance: gossipsub::MessageAcceptance,
    },
    SessionDone {
        peer: PeerId,
        name: Option<String>,
        ok: bool,
    },
    /// A peer ran a reconcile round against us (giving its name on a connection's first).
    Served {
        peer: PeerId,
        name: Option<String>,
    },
    Penalise {
        peer: PeerId,
        refused: usize,
    },
    StartSync {
        peer: Option<PeerId>,
        reply: oneshot::Sender<Option<PeerId>>,
    },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Addrs(oneshot::Sender<Vec<Multiaddr>>),
    Block(PeerId),
    Unblock(PeerId),
    Dial(Multiaddr),
    PublishRaw(Vec<u8>),
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle to the network task.
#[derive(Clone)]
pub struct NetHandle {
    tx: mpsc::Sender<Command>,
    pub peer_id: PeerId,
    shared: Arc<Shared>,
}

/// What sync handlers and sessions need besides the handle.
pub(crate) struct Shared {
    pub catalogue: Arc<Catalogue>,
    pub config: NetConfig,
    /// Peers told our hub name on their current connection (it travels once per connection).
    named: std::sync::Mutex<HashSet<PeerId>>,
    /// Per-peer rate limits and scores.
    pub guard: guard::Guard,
    /// Verifies and stores what peers send, at a lower CPU priority (see [`ingest`]).
    pub ingest: ingest::IngestWorker,
    /// Inbound connections dropped before their handshake (see [`inbound`]).
    inbound_refused: Arc<std::sync::atomic::AtomicU64>,
}

impl Shared {
    /// Our hub name, if `peer` has not had it on this connection yet.
    pub(crate) fn name_for(&self, peer: PeerId) -> Option<String> {
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        named.insert(peer).then(|| self.config.hub_name.clone())
    }

    fn forget_name(&self, peer: &PeerId) {
        self.named
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer);
    }
}

impl NetHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| anyhow!("the network task has stopped"))?;
        rx.await
            .map_err(|_| anyhow!("the network task has stopped"))
    }

    async fn send(&self, cmd: Command) {
        // The task stopping is the only failure, and then there is nobody to tell.
        let _ = self.tx.send(cmd).await;
    }

    /// Inbound connections dropped before their handshake: their address had opened too many.
    pub fn inbound_refused(&self) -> u64 {
        self.shared
            .inbound_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The largest gossip message or sync request this node takes (`p2p.max_message_bytes`).
    pub fn max_message_bytes(&self) -> usize {
        self.shared.config.max_message_bytes
    }

    /// Send one sync request to a peer and wait for its response (bounded by the timeout).
    pub async fn request(&self, peer: PeerId, body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        self.ask(|reply| Command::Request { peer, body, reply })
            .await?
    }

    /// Every peer this node knows, connected or not.
    pub async fn peers(&self) -> anyhow::Result<Vec<PeerInfo>> {
        self.ask(Command::Peers).await
    }

    /// The addresses this node listens on, each ending in `/p2p/<peer-id>`.
    pub async fn listen_addrs(&self) -> anyhow::Result<Vec<Multiaddr>> {
        self.ask(Command::Addrs).await
    }

    /// Start a sync round now (with `peer`, or a random connected peer); returns the peer.
    pub async fn sync_now(&self, peer: Option<PeerId>) -> anyhow::Result<Option<PeerId>> {
        self.ask(|reply| Command::StartSync { peer, reply }).await
    }

    /// Run one anti-entropy session with `peer` now and report what it moved (bytes, round
    /// trips, changes). Used by operators' tooling and the benchmarks.
    pub async fn sync_with(&self, peer: PeerId) -> anyhow::Result<sync::SessionReport> {
        sync::run_session(self, peer).await
    }

    /// Refuse and close every connection with `peer` (operators banning a peer; tests cutting
    /// the network).
    pub async fn block(&self, peer: PeerId) {
        self.send(Command::Block(peer)).await
    }

    pub async fn unblock(&self, peer: PeerId) {
        self.send(Command::Unblock(peer)).await
    }

    pub async fn dial(&self, addr: Multiaddr) {
        self.send(Command::Dial(addr)).await
    }

    /// Publish raw bytes on the federation topic, bypassing every check. Only for tests that
    /// play a hostile peer.
    #[doc(hidden)]
    pub async fn publish_raw(&self, bytes: Vec<u8>) {
        self.send(Command::PublishRaw(bytes)).await
    }

    /// Stop the network task: close connections and return once the swarm is dropped.
    pub async fn shutdown(&self) {
        if let Ok(()) = self.ask(Command::Shutdown).await {
            tracing::debug!("network stopped");
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) async fn session_done(&self, peer: PeerId, name: Option<String>, ok: bool) {
        self.send(Command::SessionDone { peer, name, ok }).await
    }

    pub(crate) async fn penalise(&self, peer: PeerId, refused: usize) {
        self.send(Command::Penalise { peer, refused }).await
    }
}

/// Start the network task for `catalogue`, listening and dialling as `config` says. The swarm
/// and everything it starts run on a runtime of their own at lower CPU priority (see
/// [`runtime`]); the returned task ends when the network has stopped.
pub async fn spawn(
    keypair: libp2p::identity::Keypair,
    catalogue: Arc<Catalogue>,
    config: NetConfig,
) -> anyhow::Result<(NetHandle, tokio::task::JoinHandle<()>)> {
    let runtime = runtime::NetRuntime::new().context("cannot start the network's threads")?;
    let Some(on) = runtime.handle() else {
        anyhow::bail!("the network's runtime is gone");
    };
    let (ready, started) = oneshot::channel();
    // Built inside its runtime, so its sockets are driven there.
    let task = on.spawn(async move {
        match start(keypair, catalogue, config) {
            Ok((task, handle, rx)) => {
                let _ = ready.send(Ok(handle));
                task.run(rx).await;
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    });
    let handle = started
        .await
        .map_err(|_| anyhow!("the network stopped while starting"))??;
    let join = tokio::spawn(async move {
        let _ = task.await;
        // Sessions and handlers still running stop with the runtime (dropping it waits until
        // they are gone: they hold the catalogue).
        drop(runtime);
    });
    Ok((handle, join))
}

/// Build the swarm, listen, subscribe and dial: the network task, not yet running.
fn start(
    keypair: libp2p::identity::Keypair,
    catalogue: Arc<Catalogue>,
    config: NetConfig,
) -> anyhow::Result<(NetTask, NetHandle, mpsc::Receiver<Command>)> {
    let local_peer = keypair.public().to_peer_id();
    let inbound_refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut swarm = build_swarm(keypair, &config, inbound_refused.clone())?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("p2p.listen: cannot listen on {addr}"))?;
    }
    let topic = config.topic();
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| anyhow!("subscribing to {topic}: {e}"))?;
    for (peer, addr) in &config.bootstrap {
        swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }
    let unpinned = config
        .bootstrap_unpinned
        .iter()
        .map(|addr| UnpinnedBootstrap {
            addr: addr.clone(),
            peer: None,
            dialing: None,
        })
        .collect();
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let shared = Arc::new(Shared {
        catalogue: catalogue.clone(),
        config: config.clone(),
        named: std::sync::Mutex::new(HashSet::new()),
        guard: guard::Guard::new(),
        ingest: ingest::IngestWorker::spawn(&catalogue)?,
        inbound_refused,
    });
    let handle = NetHandle {
        tx,
        peer_id: local_peer,
        shared,
    };
    let task = NetTask {
        swarm,
        handle: handle.clone(),
        topic,
        peers: HashMap::new(),
        pending: HashMap::new(),
        sessions: 0,
        local: catalogue.subscribe_local(),
        listen: Vec::new(),
        unpinned,
    };
    Ok((task, handle, rx))
}

fn build_swarm(
    keypair: libp2p::identity::Keypair,
    config: &NetConfig,
    inbound_refused: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Swarm<Behaviour>> {
    let max_message = config.max_message_bytes;
    let response_limit = config.response_limit();
    let sync_protocol = config.protocol("sync", SYNC_VERSION)?;
    let kad_protocol = config.protocol("kad", 1)?;
    let federation = config.federation.clone();
    let timeout = config.timeout;
    let mdns_on = config.mdns;
    // Serve the DHT only when peers can reach us.
    let kad_mode = if config.listen.is_empty() {
        kad::Mode::Client
    } else {
        kad::Mode::Server
    };
    let max_peers = config.max_peers;
    let bootstrap_peers: Vec<PeerId> = config.bootstrap.iter().map(|(p, _)| *p).collect();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_dns()?
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(max_message)
                .heartbeat_interval(Duration::from_millis(500))
                .message_id_fn(|m: &gossipsub::Message| {
                    use sha2::Digest;
                    gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
                })
                .build()
                .map_err(|e| anyhow!("gossipsub config: {e}"))?;
            let mut gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(|e| anyhow!("gossipsub: {e}"))?;
            let (params, thresholds) = score_params(&format!("hubcat/{federation}/changes/1"));
            gossipsub
                .with_peer_score(params, thresholds)
                .map_err(|e| anyhow!("gossipsub scoring: {e}"))?;
            let mut kad_config = kad::Config::new(kad_protocol);
            kad_config.set_query_timeout(Duration::from_secs(30));
            let mut kad =
                kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), kad_config);
            kad.set_mode(Some(kad_mode));
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
            } else {
                None
            };
            Ok(Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established_per_peer(Some(2))
                        .with_max_pending_incoming(Some(max_peers)),
                ),
                peer_limit: peer_limit::PeerLimit::new(
                    max_peers as usize,
                    bootstrap_peers,
                    inbound_refused,
                ),
                identify: identify::Behaviour::new(
                    identify::Config::new(format!("/hubcat/{federation}/1"), key.public())
                        .with_agent_version(format!("hubcat/{}", env!("CARGO_PKG_VERSION"))),
                ),
                // A peer that stops answering (a cut network, a killed host) is noticed within
                // about 15 s and its connection closed, so it is redialled once reachable.
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(PING_INTERVAL)
                        .with_timeout(PING_TIMEOUT),
                ),
                kad,
                gossipsub,
                sync: request_response::Behaviour::with_codec(
                    SyncCodec {
                        max_request: max_message,
                        max_response: response_limit,
                    },
                    [(sync_protocol, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(timeout),
                ),
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| anyhow!("building the network behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

/// Peer scoring: a rejected message (a forged or unauthorised change) costs a lot and decays
/// slowly; a quiet catalogue topic must not penalise honest peers for delivering little.
fn score_params(topic: &str) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic_params = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: 0.99,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        ..Default::default()
    };
    let mut params = gossipsub::PeerScoreParams {
        // Hubs behind one NAT or on one host are normal here; membership handles Sybils.
        ip_colocation_factor_weight: 0.0,
        app_specific_weight: 1.0,
        ..Default::default()
    };
    params
        .topics
        .insert(gossipsub::IdentTopic::new(topic).hash(), topic_params);
    (params, gossipsub::PeerScoreThresholds::default())
}

/// Where the response to one of our sync requests goes.
type ReplyTo = oneshot::Sender<anyhow::Result<Vec<u8>>>;

struct NetTask {
    swarm: Swarm<Behaviour>,
    handle: NetHandle,
    topic: gossipsub::IdentTopic,
    peers: HashMap<PeerId, PeerState>,
    pending: HashMap<request_response::OutboundRequestId, (PeerId, ReplyTo)>,
    sessions: usize,
    local: tokio::sync::broadcast::Receiver<hubcat_protocol::SignedChange>,
    listen: Vec<Multiaddr>,
    unpinned: Vec<UnpinnedBootstrap>,
}

/// A bootstrap address without a peer id, and what dialling it taught us.
struct UnpinnedBootstrap {
    addr: Multiaddr,
    /// The peer that answered last time.
    peer: Option<PeerId>,
    /// The dial in flight and when it began (a SYN to an address that went away can hang for
    /// minutes: after [`UNPINNED_REDIAL`] the address is dialled again).
    dialing: Option<(libp2p::swarm::ConnectionId, std::time::Instant)>,
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl NetTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        self.dial_unpinned();
        let interval = self.handle.shared.config.sync_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut kad_tick = tokio::time::interval(Duration::from_secs(60));
        kad_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                cmd = rx.recv() => match cmd {
                    Some(Command::Shutdown(done)) => {
                        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                        for p in connected {
                            let _ = self.swarm.disconnect_peer_id(p);
                        }
                        drop(self.swarm);
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                local = self.local.recv() => self.on_local(local),
                _ = tick.tick() => self.on_tick(),
                _ = kad_tick.tick() => {
                    if self.swarm.connected_peers().next().is_some() {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
        }
    }

    fn peer(&mut self, peer: PeerId) -> &mut PeerState {
        self.peers.entry(peer).or_default()
    }

    /// Dial the unpinned bootstrap addresses whose peer is not connected and not being dialled.
    fn dial_unpinned(&mut self) {
        for i in 0..self.unpinned.len() {
            let entry = &self.unpinned[i];
            let up = entry.peer.is_some_and(|p| self.swarm.is_connected(&p));
            let in_flight = entry
                .dialing
                .is_some_and(|(_, since)| since.elapsed() < UNPINNED_REDIAL);
            if up || in_flight {
                continue;
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::unknown_peer_id()
                .address(entry.addr.clone())
                .build();
            let id = opts.connection_id();
            let addr = entry.addr.clone();
            match self.swarm.dial(opts) {
                Ok(()) => self.unpinned[i].dialing = Some((id, std::time::Instant::now())),
                Err(e) => tracing::debug!(%addr, error = %e, "dial of bootstrap address failed"),
            }
        }
    }

    /// A dial of an unpinned bootstrap address ended: remember who answered.
    fn unpinned_dial_done(
        &mut self,
        connection: libp2p::swarm::ConnectionId,
        peer: Option<PeerId>,
    ) {
        let mut learned = None;
        for entry in &mut self.unpinned {
            if entry.dialing.is_some_and(|(id, _)| id == connection) {
                entry.dialing = None;
                if let Some(p) = peer {
                    if entry.peer != Some(p) {
                        tracing::info!(addr = %entry.addr, peer = %p, "bootstrap address answered");
                    }
                    entry.peer = Some(p);
                    learned = Some((p, entry.addr.clone()));
                }
            }
        }
        if let Some((p, addr)) = learned {
            self.swarm.behaviour_mut().kad.add_address(&p, addr);
        }
    }

    fn on_tick(&mut self) {
        for peer in self.handle.shared.guard.expired_bans() {
            tracing::info!(%peer, "ban ended");
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            let score = self.handle.shared.guard.score(&peer);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .set_application_score(&peer, score);
        }
        self.dial_unpinned();
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        for (peer, addr) in self.handle.shared.config.bootstrap.clone() {
            if !connected.contains(&peer)
                && !self
                    .swarm
                    .behaviour()
                    .blocked
                    .blocked_peers()
                    .contains(&peer)
            {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::debug!(%addr, error = %e, "redial of bootstrap peer failed");
                }
            }
        }
        self.start_session(None);
    }

    /// Start a sync session with `peer` or a random connected peer not already in one.
    fn start_session(&mut self, peer: Option<PeerId>) -> Option<PeerId> {
        if self.sessions >= MAX_SESSIONS {
            return None;
        }
        let candidates: Vec<PeerId> = match peer {
            Some(p) => vec![p],
            None => self
                .swarm
                .connected_peers()
                .filter(|p| !self.peers.get(p).is_some_and(|s| s.in_session))
                .copied()
                .collect(),
        };
        if candidates.is_empty() {
            return None;
        }
        let peer = candidates[random_index(candidates.len())];
        if !self.swarm.is_connected(&peer) {
            return None;
        }
        let state = self.peer(peer);
        if state.in_session {
            return None;
        }
        state.in_session = true;
        self.sessions += 1;
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let outcome = sync::run_session(&handle, peer).await;
            let (name, ok) = match outcome {
                Ok(report) => {
                    tracing::debug!(%peer, ?report, "sync round done");
                    (report.peer_name, true)
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "sync round failed");
                    (None, false)
                }
            };
            handle.session_done(peer, name, ok).await;
        });
        Some(peer)
    }

    fn on_local(
        &mut self,
        received: Result<hubcat_protocol::SignedChange, tokio::sync::broadcast::error::RecvError>,
    ) {
        let first = match received {
            Ok(c) => c,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "announcements lagged; anti-entropy will carry the changes"
                );
                return;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        // Gather what else is queued for the same document into one announcement.
        let mut changes = vec![first];
        while let Ok(next) = self.local.try_recv() {
            changes.push(next);
            if changes.len() >= 64 {
                break;
            }
        }
        let mut by_doc: Vec<(hubcat_protocol::DocId, Vec<WireChange>, Vec<[u8; 32]>)> = Vec::new();
        for c in changes {
            let hash = match automerge::Change::from_bytes(c.change.clone()) {
                Ok(ch) => ch.hash().0,
                Err(_) => continue,
            };
            match by_doc.last_mut() {
                Some((doc, list, heads)) if *doc == c.doc => {
                    list.push(WireChange::of(&c));
                    *heads = vec![hash];
                }
                _ => by_doc.push((c.doc.clone(), vec![WireChange::of(&c)], vec![hash])),
            }
        }
        for (doc, changes, heads) in by_doc {
            let size: usize = changes.iter().map(|c| c.change.len() + 100).sum();
            let changes = if size <= INLINE_GOSSIP_BYTES {
                changes
            } else {
                Vec::new()
            };
            let bytes = hubcat_protocol::sync::encode(&Gossip::Announce {
                doc,
                heads,
                changes,
            });
            self.publish(bytes);
        }
    }

    fn publish(&mut self, bytes: Vec<u8>) {
        let len = bytes.len() as u64;
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes)
        {
            Ok(_) => {
                let mesh: Vec<PeerId> = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .map(|(p, _)| *p)
                    .collect();
                for p in mesh {
                    self.peer(p).bytes_out += len;
                }
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                tracing::debug!("no peer to gossip to yet; anti-entropy will carry the change");
            }
            Err(e) => tracing::warn!(error = %e, "gossip publish failed"),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { peer, body, reply } => {
                self.peer(peer).bytes_out += codec::framed_len(body.len());
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, body);
                self.pending.insert(id, (peer, reply));
            }
            Command::Respond {
                channel,
                peer,
                body,
            } => {
                self.peer(peer).bytes_out += codec::framed_len(body.len());
                if self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, body)
                    .is_err()
                {
                    tracing::debug!(%peer, "peer went away before the sync response");
                }
            }
            Command::Validated {
                id,
                source,
                acceptance,
            } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Command::SessionDone { peer, name, ok } => {
                self.sessions = self.sessions.saturating_sub(1);
                let state = self.peer(peer);
                state.in_session = false;
                if ok {
                    state.last_sync = Some(SystemTime::now());
                    state.sync_rounds += 1;
                }
                if name.is_some() {
                    state.name = name;
                }
            }
            Command::Served { peer, name } => {
                let state = self.peer(peer);
                state.last_sync = Some(SystemTime::now());
                state.sync_rounds += 1;
                if name.is_some() {
                    state.name = name;
                }
            }
            Command::Penalise { peer, refused } => {
                let verdict = self.handle.shared.guard.penalise(peer, refused);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, verdict.score);
                tracing::warn!(%peer, offences = refused, score = verdict.score, "peer sent input that was refused");
                if verdict.ban {
                    tracing::warn!(%peer, score = verdict.score, ban_secs = guard::BAN_FOR.as_secs(), "banning the peer: every connection refused");
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                }
            }
            Command::StartSync { peer, reply } => {
                let _ = reply.send(self.start_session(peer));
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::Addrs(reply) => {
                let me = *self.swarm.local_peer_id();
                let addrs = self
                    .listen
                    .iter()
                    .map(|a| a.clone().with(libp2p::multiaddr::Protocol::P2p(me)))
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::Block(peer) => {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            Command::Unblock(peer) => {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                if let Some(addr) = self
                    .peers
                    .get(&peer)
                    .and_then(|s| s.addresses.first().cloned())
                {
                    let _ = self
                        .swarm
                        .dial(addr.with(libp2p::multiaddr::Protocol::P2p(peer)));
                }
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, error = %e, "dial failed");
                }
            }
            Command::PublishRaw(bytes) => self.publish(bytes),
            Command::Shutdown(_) => {}
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let gossip = &self.swarm.behaviour().gossipsub;
        let guard = &self.handle.shared.guard;
        let mut out: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(peer, s)| {
                s.connections > 0
                    || s.last_sync.is_some()
                    || s.connected_since.is_some()
                    || guard.offences(peer) > 0
            })
            .map(|(peer, s)| PeerInfo {
                peer_id: peer.to_string(),
                did: hub_of(peer).map(|h| h.to_did()),
                name: s.name.clone(),
                addresses: s.addresses.iter().map(|a| a.to_string()).collect(),
                connected: s.connections > 0,
                connected_since: s.connected_since.filter(|_| s.connections > 0).map(unix_ms),
                last_sync: s.last_sync.map(unix_ms),
                sync_rounds: s.sync_rounds,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                score: gossip.peer_score(peer),
                offences: guard.offences(peer),
                graylisted: guard.is_graylisted(peer),
                banned: guard.is_banned(peer),
                agent: s.agent.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening for peers");
                self.listen.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen.retain(|a| *a != address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                connection_id,
                ..
            } => {
                self.unpinned_dial_done(connection_id, Some(peer_id));
                let addr = endpoint.get_remote_address().clone();
                let state = self.peer(peer_id);
                state.connections = num_established.get() as usize;
                if num_established.get() == 1 {
                    state.connected_since = Some(SystemTime::now());
                    tracing::info!(peer = %peer_id, %addr, "peer connected");
                    if endpoint.is_dialer() {
                        if !state.addresses.contains(&addr) {
                            state.addresses.push(addr);
                        }
                        // Catch up with a new peer at once. Only the dialer starts: were both
                        // sides to, the one that has more would push whole documents while
                        // the other pulls them, and every change would cross twice.
                        self.start_session(Some(peer_id));
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                let state = self.peer(peer_id);
                state.connections = num_established as usize;
                if num_established == 0 {
                    tracing::info!(peer = %peer_id, cause = ?cause, "peer disconnected");
                    self.handle.shared.forget_name(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                error,
                connection_id,
            } => {
                self.unpinned_dial_done(connection_id, None);
                tracing::debug!(peer = ?peer_id, error = %error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            }) => {
                tracing::info!(%peer, %error, "peer stopped answering pings; closing the connection");
                self.swarm.close_connection(connection);
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let kad_protocol = self.handle.shared.config.protocol("kad", 1).ok();
                let speaks_kad = kad_protocol.is_some_and(|k| info.protocols.contains(&k));
                let state = self.peer(peer_id);
                state.agent = Some(info.agent_version.clone());
                for addr in &info.listen_addrs {
                    if !state.addresses.contains(addr) {
                        state.addresses.push(addr.clone());
                    }
                }
                state.addresses.truncate(8);
                if speaks_kad {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                let connected = self.swarm.connected_peers().count() as u32;
                if !self.swarm.is_connected(&peer)
                    && connected < self.handle.shared.config.max_peers
                    && peer != *self.swarm.local_peer_id()
                {
                    let addr = addresses.first().clone();
                    let _ = self
                        .swarm
                        .dial(addr.with(libp2p::multiaddr::Protocol::P2p(peer)));
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self
                            .swarm
                            .dial(addr.with(libp2p::multiaddr::Protocol::P2p(peer)));
                    }
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                self.peer(propagation_source).bytes_in += message.data.len() as u64;
                let handle = self.handle.clone();
                tokio::spawn(async move {
                    let acceptance =
                        sync::on_gossip(&handle, propagation_source, &message.data).await;
                    handle
                        .send(Command::Validated {
                            id: message_id,
                            source: propagation_source,
                            acceptance,
                        })
                        .await;
                });
            }
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        self.peer(peer).bytes_in += codec::framed_len(request.len());
                        let handle = self.handle.clone();
                        tokio::spawn(async move {
                            let (body, served) = sync::serve(&handle, peer, &request).await;
                            if let Some(name) = served {
                                // The peer ran a round with us: that is a sync too.
                                handle.served(peer, name).await;
                            }
                            handle
                                .send(Command::Respond {
                                    channel,
                                    peer,
                                    body,
                                })
                                .await;
                        });
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        self.peer(peer).bytes_in += codec::framed_len(response.len());
                        if let Some((_, reply)) = self.pending.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            }) => {
                if let Some((_, reply)) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(anyhow!("sync request to {peer} failed: {error}")));
                }
            }
            BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            _ => {}
        }
    }
}

impl NetHandle {
    pub(crate) async fn served(&self, peer: PeerId, name: Option<String>) {
        self.send(Command::Served { peer, name }).await
    }
}

/// A uniformly random index below `n` (n > 0).
fn random_index(n: usize) -> usize {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0;
    }
    (u64::from_le_bytes(b) % n as u64) as usize
}
