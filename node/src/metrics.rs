//! Prometheus metrics (`GET /metrics`, OpenMetrics text, which Prometheus scrapes as is).
//!
//! Two kinds of values:
//! - **events** counted as they happen: API requests by route, method and status (an axum
//!   middleware, [`track_requests`]) and the propagation delay of every change from another
//!   hub (a task reading [`Catalogue::subscribe_applied`], [`spawn_propagation`]);
//! - **state** read at scrape time from the catalogue and the network task: peers, records by
//!   kind, publishers, changes applied and refused by reason, sync rounds and bytes per peer,
//!   store size. They live in a [`Scraped`] snapshot that a collector encodes, so nothing is
//!   counted twice and a peer that is gone disappears from the output.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hubcat_protocol::DocId;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::Catalogue;
use crate::net::NetHandle;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Propagation delays, seconds: a gossip wave takes tens of milliseconds, a change carried by
/// anti-entropy after a partition can take minutes.
const PROPAGATION_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];
/// API latencies, seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route pattern (`/v1/records/{id}`), never the raw path: one series per route.
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// State read from the node at scrape time.
#[derive(Debug, Default, Clone)]
struct Scraped {
    peers_connected: i64,
    peers_known: i64,
    inbound_refused: u64,
    records: Vec<(String, i64)>,
    publishers: i64,
    documents: i64,
    changes_stored: i64,
    changes_applied: u64,
    refused: Vec<(String, u64)>,
    /// (peer id, hub name, sync rounds, bytes in, bytes out, connected)
    peers: Vec<PeerRow>,
    store_bytes: i64,
    uptime_secs: i64,
}

#[derive(Debug, Clone)]
struct PeerRow {
    peer: String,
    name: String,
    sync_rounds: u64,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Debug, Default)]
struct StateCollector {
    scraped: Mutex<Scraped>,
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self
            .scraped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        gauge(
            &mut encoder,
            "hubcat_peers_connected",
            "Peers with an open connection.",
            s.peers_connected,
        )?;
        counter(
            &mut encoder,
            "hubcat_p2p_inbound_refused",
            "Inbound connections dropped before their handshake: their address had opened too many.",
            s.inbound_refused,
        )?;
        gauge(
            &mut encoder,
            "hubcat_peers_known",
            "Peers this node has been connected to or synced with since it started.",
            s.peers_known,
        )?;
        {
            let mut m = encoder.encode_descriptor(
                "hubcat_records",
                "Records in the federated catalogue, by kind.",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (kind, n) in &s.records {
                let labels = [("kind", kind.as_str())];
                ConstGauge::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "hubcat_publishers",
            "Hubs whose catalogue document this node holds.",
            s.publishers,
        )?;
        gauge(
            &mut encoder,
            "hubcat_documents",
            "Catalogue documents held.",
            s.documents,
        )?;
        gauge(
            &mut encoder,
            "hubcat_changes_stored",
            "Signed changes in the catalogue's history.",
            s.changes_stored,
        )?;
        counter(
            &mut encoder,
            "hubcat_changes_applied",
            "Signed changes verified and applied since the node started (local and from peers).",
            s.changes_applied,
        )?;
        {
            let mut m = encoder.encode_descriptor(
                "hubcat_changes_refused",
                "Changes refused since the node started, by reason.",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (reason, n) in &s.refused {
                let labels = [("reason", reason.as_str())];
                ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, pick) in [
            (
                "hubcat_peer_sync_rounds",
                "Completed anti-entropy rounds with a peer (either side started it).",
                (|p: &PeerRow| p.sync_rounds) as fn(&PeerRow) -> u64,
            ),
            (
                "hubcat_peer_received_bytes",
                "Sync and gossip bytes received from a peer.",
                |p: &PeerRow| p.bytes_in,
            ),
            (
                "hubcat_peer_sent_bytes",
                "Sync and gossip bytes sent to a peer.",
                |p: &PeerRow| p.bytes_out,
            ),
        ] {
            let mut m = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for p in &s.peers {
                let labels = [("peer", p.peer.as_str()), ("hub", p.name.as_str())];
                ConstCounter::new(pick(p)).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "hubcat_store_bytes",
            "Size of the sled store on disk.",
            s.store_bytes,
        )?;
        gauge(
            &mut encoder,
            "hubcat_uptime_seconds",
            "Seconds since the node started.",
            s.uptime_secs,
        )?;
        Ok(())
    }
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    propagation: Histogram,
    state: Arc<StateCollector>,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "hubcat_api_requests",
            "HTTP API requests answered, by route, method and status.",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        registry.register(
            "hubcat_api_request_duration_seconds",
            "Time to answer an HTTP API request, by route.",
            latency.clone(),
        );
        let propagation = Histogram::new(PROPAGATION_BUCKETS);
        registry.register(
            "hubcat_change_propagation_seconds",
            "Delay from a change being signed by its hub to it being applied here, for changes from other hubs (gossip, or anti-entropy after a partition).",
            propagation.clone(),
        );
        let info = prometheus_client::metrics::info::Info::new(vec![(
            "version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )]);
        registry.register("hubcat_build", "The running hubcat version.", info);
        let state = Arc::new(StateCollector::default());
        registry.register_collector(Box::new(state.clone()));
        Metrics {
            registry,
            requests,
            latency,
            propagation,
            state,
            started: Instant::now(),
        }
    }

    /// Count one answered API request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Read the node's state and render every metric as OpenMetrics text.
    pub async fn render(
        &self,
        catalogue: &Arc<Catalogue>,
        net: Option<&NetHandle>,
    ) -> anyhow::Result<String> {
        let c = catalogue.clone();
        let (status, refusals, publishers) = tokio::task::spawn_blocking(move || {
            let publishers = c
                .doc_heads()
                .iter()
                .filter(|(d, _)| matches!(d, DocId::Hub(_)))
                .count();
            (c.status(), c.refusals(), publishers)
        })
        .await?;
        let peers = match net {
            Some(n) => n.peers().await?,
            None => Vec::new(),
        };
        let scraped = Scraped {
            peers_connected: peers.iter().filter(|p| p.connected).count() as i64,
            peers_known: peers.len() as i64,
            inbound_refused: net.map_or(0, NetHandle::inbound_refused),
            records: status
                .records
                .iter()
                .map(|(k, n)| (k.to_string(), *n as i64))
                .collect(),
            publishers: publishers as i64,
            documents: status.documents as i64,
            changes_stored: status.changes as i64,
            changes_applied: status.changes_accepted,
            refused: refusals
                .into_iter()
                .map(|(r, n)| (r.to_owned(), n))
                .collect(),
            peers: peers
                .iter()
                .map(|p| PeerRow {
                    peer: p.peer_id.clone(),
                    name: p.name.clone().unwrap_or_default(),
                    sync_rounds: p.sync_rounds,
                    bytes_in: p.bytes_in,
                    bytes_out: p.bytes_out,
                })
                .collect(),
            store_bytes: i64::try_from(status.store_bytes).unwrap_or(i64::MAX),
            uptime_secs: self.started.elapsed().as_secs() as i64,
        };
        *self.state.scraped.lock().unwrap_or_else(|p| p.into_inner()) = scraped;
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Axum middleware counting every request by matched route (or `unmatched`), method and status.
pub async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    metrics.observe_request(
        &route,
        &method,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// Observe the propagation delay of every change from another hub as it is applied. The task
/// ends when the catalogue is dropped; abort it to stop earlier.
pub fn spawn_propagation(
    metrics: Arc<Metrics>,
    catalogue: &Catalogue,
) -> tokio::task::JoinHandle<()> {
    let own = DocId::Hub(catalogue.hub_id());
    let mut applied = catalogue.subscribe_applied();
    tokio::spawn(async move {
        loop {
            match applied.recv().await {
                Ok(a) if a.doc != own => {
                    let delay_ms = (a.applied_ms - a.signed_ms).max(0);
                    metrics.propagation.observe(delay_ms as f64 / 1000.0);
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "propagation metrics lagged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_and_state_render_as_openmetrics() {
        let m = Metrics::new();
        m.observe_request("/v1/records", "POST", 201, 0.003);
        m.observe_request("/v1/records", "POST", 201, 0.004);
        m.observe_request("unmatched", "GET", 404, 0.0001);
        *m.state.scraped.lock().expect("lock") = Scraped {
            records: vec![("service".into(), 3), ("practice".into(), 1)],
            refused: vec![("signature".into(), 2)],
            peers: vec![PeerRow {
                peer: "12D3KooWabc".into(),
                name: "HDS".into(),
                sync_rounds: 5,
                bytes_in: 100,
                bytes_out: 200,
            }],
            ..Default::default()
        };
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).expect("encode");
        for line in [
            "hubcat_api_requests_total{route=\"/v1/records\",method=\"POST\",status=\"201\"} 2",
            "hubcat_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
            "hubcat_records{kind=\"service\"} 3",
            "hubcat_changes_refused_total{reason=\"signature\"} 2",
            "hubcat_peer_sync_rounds_total{peer=\"12D3KooWabc\",hub=\"HDS\"} 5",
            "hubcat_peer_sent_bytes_total{peer=\"12D3KooWabc\",hub=\"HDS\"} 200",
            "# TYPE hubcat_change_propagation_seconds histogram",
        ] {
            assert!(out.contains(line), "missing `{line}` in:\n{out}");
        }
        assert!(out.ends_with("# EOF\n"));
    }
}
