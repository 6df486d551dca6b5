//! The HTTP JSON API (axum). Thin handlers; errors become `{error, field?, detail}` with their
//! status code in one place ([`ApiError`]). Reads are open; writes need the bearer token.
//! Engine calls block (sled, Automerge), so they run on the blocking pool.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hubcat_protocol::{HubId, Record, RecordKind};
use serde::{Deserialize, Serialize};

use crate::engine::{Catalogue, EngineError, ListFilter};

mod query;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub catalogue: Arc<Catalogue>,
    /// The bearer token for writes.
    pub token: Arc<String>,
    pub hub_name: Arc<String>,
    pub started: Instant,
    pub net: Option<crate::net::NetHandle>,
    /// The search index over the whole catalogue (search, gaps, duplicates, match).
    pub search: Arc<crate::search::SearchIndex>,
}

/// An API error: status, a stable machine-readable kind, the field to blame and a detail.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub field: Option<String>,
    pub detail: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    detail: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error,
            field: self.field.as_deref(),
            detail: &self.detail,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The unread body is still on the wire: the connection cannot be reused.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            field: None,
            detail: detail.into(),
        }
    }

    fn bad_field(field: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            field: Some(field.to_owned()),
            detail: detail.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let detail = e.to_string();
        match e {
            EngineError::Invalid(r) => ApiError {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_record",
                field: r.field.clone(),
                detail: r.detail,
            },
            EngineError::Refused(c) => {
                ApiError::new(StatusCode::BAD_REQUEST, "refused_change", c.to_string())
            }
            EngineError::Conflict(_) => ApiError {
                status: StatusCode::CONFLICT,
                error: "conflict",
                field: Some("id".into()),
                detail,
            },
            EngineError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", detail),
            EngineError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail),
            EngineError::Store(_) | EngineError::Internal(_) => {
                tracing::error!(error = %detail, "internal error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
            }
        }
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "payload_too_large",
            "request body is larger than api.max_body_bytes",
        )
    } else {
        ApiError::new(status, "bad_body", e.body_text())
    }
}

/// Run a blocking engine call off the async runtime.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, EngineError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

/// Constant-time comparison of the presented token with ours.
fn authorised(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let a = presented.as_bytes();
    let b = token.as_bytes();
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    if diff == 0 && !b.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorised",
            "writes need `Authorization: Bearer <token>` with the token from the data directory's api.token",
        ))
    }
}

pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/records", get(list_records).post(publish))
        .route("/v1/records/{id}", get(get_record).delete(withdraw))
        .route("/v1/export", get(export))
        .merge(query::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /v1/status, /v1/peers, /v1/records, /v1/search",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

#[derive(Serialize)]
pub struct StatusBody {
    pub did: String,
    pub name: String,
    pub records: std::collections::BTreeMap<RecordKind, usize>,
    pub documents: usize,
    pub changes: usize,
    pub digest: String,
    /// Connected peers.
    pub peers: usize,
    /// This node's libp2p peer id (the hub key) and listen addresses.
    pub peer_id: Option<String>,
    /// The federation this node talks in: its genesis id, or `p2p.federation`.
    pub federation: Option<String>,
    pub listen: Vec<String>,
    /// Last sync per peer, unix ms.
    pub sync: Vec<PeerSync>,
    pub store_bytes: u64,
    pub changes_accepted: u64,
    pub changes_refused: u64,
    pub uptime_secs: u64,
    pub version: &'static str,
}

#[derive(Serialize)]
pub struct PeerSync {
    pub peer_id: String,
    pub name: Option<String>,
    pub connected: bool,
    pub last_sync: Option<i64>,
}

async fn network(s: &ApiState) -> Result<(Vec<crate::net::PeerInfo>, Vec<String>), ApiError> {
    let Some(net) = &s.net else {
        return Ok((Vec::new(), Vec::new()));
    };
    let unavailable =
        |e: anyhow::Error| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "network", e.to_string());
    let peers = net.peers().await.map_err(unavailable)?;
    let listen = net
        .listen_addrs()
        .await
        .map_err(unavailable)?
        .iter()
        .map(|a| a.to_string())
        .collect();
    Ok((peers, listen))
}

async fn peers(State(s): State<ApiState>) -> Result<Json<Vec<crate::net::PeerInfo>>, ApiError> {
    Ok(Json(network(&s).await?.0))
}

async fn status(State(s): State<ApiState>) -> Result<Json<StatusBody>, ApiError> {
    let c = s.catalogue.clone();
    let st = blocking(move || Ok(c.status())).await?;
    let (peer_list, listen) = network(&s).await?;
    Ok(Json(StatusBody {
        did: st.did,
        name: s.hub_name.to_string(),
        records: st.records,
        documents: st.documents,
        changes: st.changes,
        digest: st.digest,
        peers: peer_list.iter().filter(|p| p.connected).count(),
        peer_id: s.net.as_ref().map(|n| n.peer_id.to_string()),
        federation: s.net.as_ref().map(|n| n.shared().config.federation.clone()),
        listen,
        sync: peer_list
            .into_iter()
            .map(|p| PeerSync {
                peer_id: p.peer_id,
                name: p.name,
                connected: p.connected,
                last_sync: p.last_sync,
            })
            .collect(),
        store_bytes: st.store_bytes,
        changes_accepted: st.changes_accepted,
        changes_refused: st.changes_refused,
        uptime_secs: s.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    }))
}

/// Parse a record body: JSON, or TOML when the content type says so.
fn parse_record(headers: &HeaderMap, body: &[u8]) -> Result<Record, ApiError> {
    let is_toml = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("toml"));
    let parsed = if is_toml {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_field("body", "TOML body is not UTF-8"))?;
        Record::from_toml(text)
    } else {
        Record::from_json(body)
    };
    parsed.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_record",
        field: e.field.clone(),
        detail: e.detail,
    })
}

async fn publish(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorised(&headers, &s.token)?;
    let body = body.map_err(body_error)?;
    let record = parse_record(&headers, &body)?;
    let c = s.catalogue.clone();
    let view = blocking(move || c.publish(&record)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn get_record(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let c = s.catalogue.clone();
    Ok(Json(blocking(move || c.get(&id)).await?))
}

async fn withdraw(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorised(&headers, &s.token)?;
    let c = s.catalogue.clone();
    let id = blocking(move || c.withdraw(&id)).await?;
    Ok(Json(serde_json::json!({"withdrawn": id})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    kind: Option<String>,
    publisher: Option<String>,
    country: Option<String>,
    category: Option<String>,
}

fn query_error(e: QueryRejection) -> ApiError {
    let detail = e.body_text();
    let field = detail
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_else(|| "query".into());
    ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_request",
        field: Some(field),
        detail,
    }
}

impl ListParams {
    fn filter(self) -> Result<ListFilter, ApiError> {
        let kind = match self.kind.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => {
                Some(RecordKind::parse(k).map_err(|e| ApiError::bad_field("kind", e.detail))?)
            }
            None => None,
        };
        let publisher = match self.publisher.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(
                HubId::from_did(p).map_err(|e| ApiError::bad_field("publisher", e.to_string()))?,
            ),
            None => None,
        };
        if let Some(c) = self.country.as_deref().filter(|c| !c.is_empty()) {
            if !hubcat_protocol::vocab::is_country(c) {
                return Err(ApiError::bad_field(
                    "country",
                    format!(
                        "unknown country `{c}`; valid: ISO 3166-1 alpha-2 codes (SE, ES, GR …)"
                    ),
                ));
            }
        }
        if let Some(c) = self.category.as_deref().filter(|c| !c.is_empty()) {
            let v = &hubcat_protocol::vocab::CATEGORIES;
            if !v.contains(c) {
                return Err(ApiError::bad_field(
                    "category",
                    format!("unknown category `{c}`; valid: {}", v.choices()),
                ));
            }
        }
        Ok(ListFilter {
            kind,
            publisher,
            country: self.country.filter(|c| !c.is_empty()),
            category: self.category.filter(|c| !c.is_empty()),
        })
    }
}

async fn list_records(
    State(s): State<ApiState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let filter = params.filter()?;
    let c = s.catalogue.clone();
    let records = blocking(move || Ok(c.list(&filter))).await?;
    Ok(Json(
        serde_json::json!({"count": records.len(), "records": records}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    format: Option<String>,
}

async fn export(
    State(s): State<ApiState>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    match params.format.as_deref().unwrap_or("bundle") {
        "bundle" => {
            let c = s.catalogue.clone();
            Ok(Json(blocking(move || c.export_bundle()).await?))
        }
        other => Err(ApiError::bad_field(
            "format",
            format!("unknown export format `{other}`; valid: bundle"),
        )),
    }
}
