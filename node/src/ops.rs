//! Operating a node: the readiness and metrics endpoints, the `hubcat health` probe (what a
//! container healthcheck or a load balancer runs) and `hubcat run --init-if-missing` (how a
//! fresh container creates its hub on first start).
//!
//! `/healthz` (the process answers) stays in [`crate::api`]; `/readyz` and `/metrics` are
//! here, merged into the API router by [`crate::node::start`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::datadir::{DataDir, DataDirError, InitOptions};
use crate::engine::Catalogue;
use crate::metrics::Metrics;
use crate::net::NetHandle;

/// What the readiness and metrics handlers need.
#[derive(Clone)]
pub struct OpsState {
    pub catalogue: Arc<Catalogue>,
    pub net: Option<NetHandle>,
    /// Bootstrap peers are configured: the node is ready only once it has a peer.
    pub needs_peer: bool,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The readiness report: each check and whether the node is ready.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The store answers (the catalogue was opened from it and reads it now).
    pub store: bool,
    /// The catalogue's records are loaded and queryable.
    pub catalogue: bool,
    pub records: usize,
    /// Connected peers; `peers_required` is 1 when bootstrap peers are configured.
    pub peers: usize,
    pub peers_required: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<&'static str>,
    /// When not ready: `not_ready`, and what it waits for, as in every error body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[utoipa::path(get, path = "/readyz", tag = "node",
    responses(
        (status = 200, description = "Ready: store open, catalogue and search index loaded, a peer connected when bootstrap peers are configured", body = Object),
        (status = 503, description = "Not ready: the error body, plus the readiness fields and what it waits for", body = crate::api::ErrorBody),
    ))]
async fn readyz(State(s): State<OpsState>) -> Response {
    let c = s.catalogue.clone();
    // The store and the view: a status read takes the catalogue lock and asks sled for its
    // size, so a wedged store or engine shows here (bounded, so the probe always answers).
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || (c.status(), c.record_count())),
    )
    .await;
    let (store, records) = match read {
        Ok(Ok((_, records))) => (true, records),
        _ => (false, 0),
    };
    let catalogue = store;
    let peers = match &s.net {
        Some(net) => match tokio::time::timeout(Duration::from_secs(5), net.peers()).await {
            Ok(Ok(p)) => p.iter().filter(|p| p.connected).count(),
            _ => 0,
        },
        None => 0,
    };
    let peers_required = usize::from(s.needs_peer);
    let mut waiting_for = Vec::new();
    if !store {
        waiting_for.push("store");
    }
    if !catalogue {
        waiting_for.push("catalogue");
    }
    if peers < peers_required {
        waiting_for.push("a peer (p2p.bootstrap is set)");
    }
    let ready = waiting_for.is_empty();
    let body = Readiness {
        ready,
        error: (!ready).then_some("not_ready"),
        detail: (!ready).then(|| format!("waiting for: {}", waiting_for.join(", "))),
        store,
        catalogue,
        records,
        peers,
        peers_required,
        waiting_for,
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "node",
    responses(
        (status = 200, description = "Prometheus (OpenMetrics) text", body = String, content_type = "application/openmetrics-text"),
        (status = 503, description = "Metrics could not be gathered", body = crate::api::ErrorBody),
    ))]
async fn metrics(State(s): State<OpsState>) -> Response {
    match s.metrics.render(&s.catalogue, s.net.as_ref()).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "metrics", "detail": e.to_string()})),
        )
            .into_response(),
    }
}

/// The API address of the node running on `dd` (from DIR/api.addr, written at start), as a
/// client on this host reaches it.
pub fn running_api(dd: &DataDir) -> Option<std::net::SocketAddr> {
    let addr = dd.read_api_addr()?;
    Some(if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    })
}

/// `hubcat health`: ask the node in `dir` for `/readyz` (or `/healthz` with `live`). Ok with
/// the node's answer when it is ready (alive); an error naming what it waits for otherwise.
pub async fn probe(dir: &std::path::Path, live: bool) -> anyhow::Result<serde_json::Value> {
    let Some(host) = running_api(&DataDir::new(dir)) else {
        anyhow::bail!(
            "no node is running on {} (no api.addr; it is written when `hubcat run` has started)",
            dir.display()
        );
    };
    let path = if live { "/healthz" } else { "/readyz" };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = http
        .get(format!("http://{host}{path}"))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("the node at {host} does not answer: {e}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        let waiting = body["waiting_for"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        anyhow::bail!(
            "the node at {host} is not ready (HTTP {}){}",
            status.as_u16(),
            if waiting.is_empty() {
                String::new()
            } else {
                format!(": waiting for {waiting}")
            }
        )
    }
}

/// `hubcat run --init-if-missing`: create the hub in `dd` when it has none yet, named and
/// placed by `hub.name` and `hub.country` from the environment (`HUBCAT_HUB_NAME`,
/// `HUBCAT_HUB_COUNTRY`) or the config file. Returns the new hub's did, or `None` when the
/// directory already holds a hub (the key is never touched again, so this is safe on every
/// start).
pub fn init_if_missing(
    dd: &DataDir,
    name: &str,
    country: &str,
) -> Result<Option<String>, DataDirError> {
    if dd.key_path().exists() {
        return Ok(None);
    }
    if name.trim().is_empty() || country.trim().is_empty() {
        return Err(DataDirError::Invalid {
            field: "--init-if-missing".into(),
            detail: format!(
                "{} holds no hub yet and no name/country to create one: set HUBCAT_HUB_NAME and HUBCAT_HUB_COUNTRY (or hub.name and hub.country in the config file)",
                dd.root().display()
            ),
        });
    }
    // Addresses stay where the operator put them (environment, flags, a mounted config file):
    // init writes only the hub's name and country.
    let key = dd.init(&InitOptions {
        name: name.to_owned(),
        country: country.to_owned(),
        ..Default::default()
    })?;
    Ok(Some(key.id().to_did()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_if_missing_creates_once_and_then_leaves_the_hub_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dd = DataDir::new(dir.path().join("hub"));
        let err = init_if_missing(&dd, "", "SE").expect_err("no name");
        assert!(err.to_string().contains("HUBCAT_HUB_NAME"), "{err}");
        assert!(!dd.key_path().exists(), "nothing written on error");

        let did = init_if_missing(&dd, "HDS", "SE")
            .expect("init")
            .expect("created");
        let mode = std::fs::metadata(dd.key_path())
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let key_before = std::fs::read(dd.key_path()).expect("key");
        // A second start, even with another name, keeps the hub as it is.
        assert_eq!(init_if_missing(&dd, "OTHER", "ES").expect("again"), None);
        assert_eq!(std::fs::read(dd.key_path()).expect("key"), key_before);
        assert_eq!(dd.load_key().expect("key").id().to_did(), did);
    }
}
