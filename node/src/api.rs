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
use axum::routing::{get, post};
use axum::{Json, Router};
use hubcat_protocol::{HubId, Record, RecordKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::engine::{Catalogue, EngineError, ListFilter};
use crate::export::{ExportFormat, Exporter};
use crate::import::{CsvOptions, ImportFormat};

pub(crate) mod federation;
pub(crate) mod limits;
pub(crate) mod query;

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
    /// The node's data directory (a key handover writes the new key there).
    pub data_dir: Arc<crate::datadir::DataDir>,
}

/// An API error: status, a stable machine-readable kind, the field to blame and a detail.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub field: Option<String>,
    pub detail: String,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// Stable machine-readable kind: `invalid_request`, `invalid_record`, `unauthorised`,
    /// `forbidden`, `not_found`, `conflict`, `payload_too_large`, `internal` …
    error: &'a str,
    /// The field (or query parameter) to blame, as a path such as `title.en`.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// What was wrong and, for closed lists, the valid choices.
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
        .merge(federation::routes())
        .route("/v1/import", post(import_records))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /openapi.json for every route",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The OpenAPI document of this API (generated from the handlers).
#[utoipa::path(get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "node",
    responses((status = 200, description = "The node is alive", body = Object,
        example = json!({"status": "ok"}))))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    pub did: String,
    pub name: String,
    /// Records by kind (`profile`, `service`, `practice`).
    #[schema(value_type = std::collections::BTreeMap<String, usize>)]
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

#[derive(Serialize, ToSchema)]
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

/// Known peers.
///
/// Every known peer: peer id, hub did and name, addresses, connected since, last sync, sync
/// rounds, bytes in and out, gossip score.
#[utoipa::path(get, path = "/v1/peers", tag = "node",
    responses(
        (status = 200, description = "Known peers", body = Vec<Object>),
        (status = 503, description = "The network task does not answer", body = ErrorBody),
    ))]
async fn peers(State(s): State<ApiState>) -> Result<Json<Vec<crate::net::PeerInfo>>, ApiError> {
    Ok(Json(network(&s).await?.0))
}

/// The node's identity, record counts, catalogue digest, peers and last sync per peer.
#[utoipa::path(get, path = "/v1/status", tag = "node",
    responses(
        (status = 200, description = "Status of the node", body = StatusBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "The network task does not answer", body = ErrorBody),
    ))]
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

/// Publish a record.
///
/// Create or update one of this hub's records (JSON, or TOML with `content-type:
/// application/toml`); acknowledged once durable.
#[utoipa::path(post, path = "/v1/records", tag = "records",
    request_body(description = "A record in the public record layout (RECORDS.md)", content(
        (crate::openapi::RecordInput = "application/json"),
        (String = "application/toml"),
    )),
    responses(
        (status = 201, description = "Signed and stored", body = crate::openapi::RecordViewDoc),
        (status = 400, description = "Invalid record (names the field)", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 409, description = "The id is used by a record of another kind", body = ErrorBody),
        (status = 413, description = "Body over api.max_body_bytes", body = ErrorBody),
        (status = 500, description = "Internal error (storage)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
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

/// One record with its provenance (publisher, change hash, signature, signing time).
#[utoipa::path(get, path = "/v1/records/{id}", tag = "records",
    params(("id" = String, Path, description = "`slug@z6Mk…`, or a bare slug where unambiguous")),
    responses(
        (status = 200, description = "The record", body = crate::openapi::RecordViewDoc),
        (status = 400, description = "Not a valid record id", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 409, description = "A bare slug used by several publishers", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ))]
async fn get_record(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let c = s.catalogue.clone();
    Ok(Json(blocking(move || c.get(&id)).await?))
}

/// Withdraw one of this hub's records (a signed delete).
#[utoipa::path(delete, path = "/v1/records/{id}", tag = "records",
    params(("id" = String, Path, description = "`slug@z6Mk…`, or a bare slug where unambiguous")),
    responses(
        (status = 200, description = "Withdrawn", body = Object, example = json!({"withdrawn": "lab@z6Mk…"})),
        (status = 400, description = "Not a valid record id", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The record belongs to another hub", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 409, description = "A bare slug used by several publishers", body = ErrorBody),
        (status = 500, description = "Internal error (storage)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
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

/// Filters shared by listing and exporting.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `profile`, `service` or `practice`.
    kind: Option<String>,
    /// A publishing hub's did (`did:key:z6Mk…`).
    publisher: Option<String>,
    /// ISO 3166-1 alpha-2: records serving or implemented in that country.
    country: Option<String>,
    /// An EDIH service category (`test-before-invest` …).
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

/// Records of the whole federated catalogue, optionally filtered.
#[utoipa::path(get, path = "/v1/records", tag = "records", params(ListParams),
    responses(
        (status = 200, description = "Matching records with their provenance", body = crate::openapi::RecordListDoc),
        (status = 400, description = "A bad filter (names the parameter)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ))]
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `bundle` (default: every record with its signed changes, verifiable offline), `json`,
    /// `csv` or `dcat-ap` (DCAT-AP 3 JSON-LD).
    format: Option<String>,
    /// Filters as for `GET /v1/records` (json, csv and dcat-ap only).
    kind: Option<String>,
    publisher: Option<String>,
    country: Option<String>,
    category: Option<String>,
}

/// Export the catalogue.
///
/// The federated catalogue, or the part the filters select, in one of the export formats:
/// `bundle` (verifiable offline), `json` and `csv` (import again), `dcat-ap` (JSON-LD).
#[utoipa::path(get, path = "/v1/export", tag = "import-export", params(ExportParams),
    responses(
        (status = 200, description = "The export", content(
            (Object = "application/json"),
            (String = "text/csv"),
            (Object = "application/ld+json"),
        )),
        (status = 400, description = "Unknown format or bad filter (names the parameter)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ))]
async fn export(
    State(s): State<ApiState>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let name = params.format.as_deref().unwrap_or("bundle");
    let format = ExportFormat::parse(name).ok_or_else(|| {
        ApiError::bad_field(
            "format",
            format!(
                "unknown export format `{name}`; valid: {}",
                ExportFormat::CHOICES
            ),
        )
    })?;
    let filtered = [
        &params.kind,
        &params.publisher,
        &params.country,
        &params.category,
    ]
    .iter()
    .any(|p| p.as_deref().is_some_and(|v| !v.is_empty()));
    let filter = ListParams {
        kind: params.kind,
        publisher: params.publisher,
        country: params.country,
        category: params.category,
    }
    .filter()?;
    let c = s.catalogue.clone();
    if format == ExportFormat::Bundle {
        if filtered {
            return Err(ApiError::bad_field(
                "format",
                "a bundle holds the whole catalogue; filters apply to json, csv and dcat-ap",
            ));
        }
        return Ok(Json(blocking(move || c.export_bundle()).await?).into_response());
    }
    let exporter = Exporter {
        did: c.hub_id().to_did(),
        name: s.hub_name.to_string(),
        created: hubcat_protocol::record::format_timestamp(hubcat_protocol::now_ms()),
    };
    let body = blocking(move || {
        let views = c.list(&filter);
        let internal = |e: String| EngineError::Internal(format!("export: {e}"));
        match format {
            ExportFormat::Csv => crate::export::to_csv(&views).map_err(|e| internal(e.to_string())),
            ExportFormat::DcatAp => {
                serde_json::to_string_pretty(&crate::export::to_dcat_ap(&views, &exporter))
                    .map_err(|e| internal(e.to_string()))
            }
            _ => crate::export::to_json(&views).map_err(|e| internal(e.to_string())),
        }
    })
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Check every row and report, but sign and store nothing.
    dry_run: Option<bool>,
    /// Publish records exported by another hub as this hub's own: their `publisher` is
    /// dropped (without it such rows are refused, naming `publisher`).
    rehome: Option<bool>,
    /// Language of bare `title` / `description` CSV columns (ISO 639-1; default `en`).
    lang: Option<String>,
}

/// What became of one row of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRow {
    /// 1-based position of the record in the body.
    pub row: usize,
    /// The line the row starts on (JSON lines and CSV bodies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `published`, `valid` (dry run) or `refused`.
    pub status: &'static str,
    /// The record's id (`slug@z6Mk…`) when published or valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it was refused: the error kind, the field to blame and the detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The outcome of an import, row by row.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    pub rows: usize,
    pub published: usize,
    pub refused: usize,
    pub results: Vec<ImportRow>,
}

impl ImportRow {
    fn refused(
        row: &crate::import::Row,
        error: &'static str,
        field: Option<String>,
        detail: String,
    ) -> Self {
        ImportRow {
            row: row.row,
            line: row.line,
            status: "refused",
            id: None,
            error: Some(error),
            field,
            detail: Some(detail),
        }
    }
}

/// Import many records.
///
/// Publish many of this hub's records: a JSON array (or the API's record views, as `export
/// --format json` writes them), JSON lines (`application/x-ndjson`) or CSV (`text/csv`, the
/// record layout's columns). Each valid row becomes its own signed change; a batch is stored
/// with one durable write. Invalid rows are refused one by one, naming the row and the field;
/// the others are published.
#[utoipa::path(post, path = "/v1/import", tag = "import-export", params(ImportParams),
    request_body(description = "Records: a JSON array, JSON lines (one record per line) or CSV (the record layout's columns)", content(
        (Vec<crate::openapi::RecordInput> = "application/json"),
        (String = "application/x-ndjson"),
        (String = "text/csv"),
    )),
    responses(
        (status = 200, description = "Every row published (or valid, for a dry run) or refused", body = ImportReport),
        (status = 400, description = "The body cannot be read as a whole (not UTF-8, broken JSON array, unknown CSV column), or a bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body over api.max_body_bytes", body = ErrorBody),
        (status = 500, description = "Storing the batch failed; none of it was kept", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn import_records(
    State(s): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<ImportParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    authorised(&headers, &s.token)?;
    let Query(params) = params.map_err(query_error)?;
    let body = body.map_err(body_error)?;
    let format = ImportFormat::from_content_type(
        headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json"),
    );
    let lang = params.lang.unwrap_or_else(|| "en".into());
    if !hubcat_protocol::vocab::is_language(&lang) {
        return Err(ApiError::bad_field(
            "lang",
            format!("unknown language `{lang}`; valid: ISO 639-1 codes (en, sv, es …)"),
        ));
    }
    let dry_run = params.dry_run.unwrap_or(false);
    let rehome = params.rehome.unwrap_or(false);
    let c = s.catalogue.clone();
    tokio::task::spawn_blocking(move || import_rows(&c, format, &body, &lang, dry_run, rehome))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map(Json)
}

fn import_rows(
    c: &Catalogue,
    format: ImportFormat,
    body: &[u8],
    lang: &str,
    dry_run: bool,
    rehome: bool,
) -> Result<ImportReport, ApiError> {
    let options = CsvOptions {
        default_language: lang.to_owned(),
    };
    let rows = crate::import::parse_rows(format, body, &options)
        .map_err(|e| ApiError::bad_field("body", e.to_string()))?;
    let mut results: Vec<Option<ImportRow>> = Vec::with_capacity(rows.len());
    let mut records = Vec::new();
    let mut positions = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let value = match &row.value {
            Ok(v) => v.clone(),
            Err(e) => {
                results.push(Some(ImportRow::refused(
                    row,
                    "invalid_row",
                    e.field.clone(),
                    e.detail.clone(),
                )));
                continue;
            }
        };
        let mut value = value;
        if rehome {
            if let Some(map) = value.as_object_mut() {
                map.remove("publisher");
            }
        }
        match Record::from_value(value) {
            Ok(record) => {
                records.push(record);
                positions.push(i);
                results.push(None);
            }
            Err(e) => results.push(Some(ImportRow::refused(
                row,
                "invalid_record",
                e.field,
                e.detail,
            ))),
        }
    }
    let outcomes = c.publish_batch(&records, dry_run).map_err(ApiError::from)?;
    for (i, outcome) in positions.into_iter().zip(outcomes) {
        let row = &rows[i];
        results[i] = Some(match outcome {
            Ok(id) => ImportRow {
                row: row.row,
                line: row.line,
                status: if dry_run { "valid" } else { "published" },
                id: Some(id),
                error: None,
                field: None,
                detail: None,
            },
            Err(e) => {
                let e = ApiError::from(e);
                ImportRow::refused(row, e.error, e.field, e.detail)
            }
        });
    }
    let results: Vec<ImportRow> = results.into_iter().flatten().collect();
    let refused = results.iter().filter(|r| r.status == "refused").count();
    Ok(ImportReport {
        dry_run,
        rows: results.len(),
        published: results.len() - refused,
        refused,
        results,
    })
}
