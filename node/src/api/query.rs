//! Query routes: search, gap analysis, duplicates, matchmaking, confirming records and
//! rebuilding the index. Thin handlers over [`crate::search::SearchIndex`]; a bad parameter
//! is a 400 `{error, field, detail}` naming it, checked before anything is searched or
//! signed.
//!
//! | route | |
//! |---|---|
//! | `GET /v1/search?q=&kind=&category=&…` | ranked, paginated hits with facets |
//! | `GET /v1/gaps?by=country\|region&category=&technology=` | category × area matrix, empty cells |
//! | `GET /v1/duplicates` | profiles of different publishers that look like one organisation |
//! | `POST /v1/match` | services for a need, with reasons |
//! | `POST /v1/records/{id}/confirm` | re-sign one own record with a new `last_confirmed` (token) |
//! | `POST /v1/confirm` | the same for every own record (token) |
//! | `POST /v1/reindex` | rebuild the search index from the catalogue (token) |

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{authorised, blocking, body_error, query_error, ApiError, ApiState, ErrorBody};
use crate::search::insight::{DuplicateGroup, Gaps, MatchResult};
use crate::search::params::{GapsParams, MatchParams};
use crate::search::{ParamError, SearchError, SearchParams, SearchResults};

/// The query routes, merged into the API router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/search", get(search))
        .route("/v1/gaps", get(gaps))
        .route("/v1/duplicates", get(duplicates))
        .route("/v1/match", post(match_services))
        .route("/v1/records/{id}/confirm", post(confirm))
        .route("/v1/confirm", post(confirm_all))
        .route("/v1/reindex", post(reindex))
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::bad_field(e.field, e.detail)
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        tracing::error!(error = %e, "search failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

/// Run a blocking index call off the async runtime.
async fn blocking_index<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, SearchError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

/// Full-text search over the whole federated catalogue, with filters, facets and pages.
#[utoipa::path(get, path = "/v1/search", tag = "query",
    params(
        ("q" = Option<String>, Query, description = "Words to find, in any language"),
        ("kind" = Option<String>, Query, description = "profile, service or practice"),
        ("category" = Option<String>, Query, description = "EDIH service category slug"),
        ("technology" = Option<String>, Query, description = "Technology slug"),
        ("sector" = Option<String>, Query, description = "Sector slug"),
        ("country" = Option<String>, Query, description = "ISO 3166-1 alpha-2: records serving the country or a region in it"),
        ("region" = Option<String>, Query, description = "NUTS code; matches its sub-regions"),
        ("language" = Option<String>, Query, description = "ISO 639-1: records served in it, ranked first"),
        ("maturity" = Option<String>, Query, description = "Practice maturity"),
        ("practice_type" = Option<String>, Query, description = "Practice type"),
        ("hub_type" = Option<String>, Query, description = "Hub type of profiles"),
        ("publisher" = Option<String>, Query, description = "Publisher did"),
        ("open_to_twinning" = Option<String>, Query, description = "true or false"),
        ("fresh" = Option<String>, Query, description = "true: confirmed recently; false: stale"),
        ("lang" = Option<String>, Query, description = "Language for titles in the results"),
        ("page" = Option<String>, Query, description = "Page number, from 1"),
        ("per_page" = Option<String>, Query, description = "Results per page"),
    ),
    responses(
        (status = 200, description = "Ranked results with facet counts", body = Object),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ))]
async fn search(
    State(s): State<ApiState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<SearchResults>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let query = params.validate()?;
    let index = s.search.clone();
    Ok(Json(blocking_index(move || index.search(&query)).await?))
}

/// Gap analysis: category × country (or NUTS region) → services and hubs, and empty cells.
#[utoipa::path(get, path = "/v1/gaps", tag = "query",
    params(
        ("by" = Option<String>, Query, description = "country (default) or region"),
        ("category" = Option<String>, Query, description = "Only this category"),
        ("technology" = Option<String>, Query, description = "Only services with this technology"),
    ),
    responses(
        (status = 200, description = "The matrix and its empty cells", body = Object),
        (status = 400, description = "A bad parameter (named)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ))]
async fn gaps(
    State(s): State<ApiState>,
    params: Result<Query<GapsParams>, QueryRejection>,
) -> Result<Json<Gaps>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let query = params.validate()?;
    let index = s.search.clone();
    Ok(Json(blocking_index(move || index.gaps(&query)).await?))
}

/// `GET /v1/duplicates` takes no parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

#[derive(Debug, Serialize)]
pub struct DuplicatesBody {
    pub count: usize,
    pub groups: Vec<DuplicateGroup>,
}

/// Profiles of different publishers that look like the same organisation.
#[utoipa::path(get, path = "/v1/duplicates", tag = "query",
    responses(
        (status = 200, description = "Groups of look-alike profiles", body = Object),
        (status = 400, description = "An unexpected parameter", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ))]
async fn duplicates(
    State(s): State<ApiState>,
    params: Result<Query<NoParams>, QueryRejection>,
) -> Result<Json<DuplicatesBody>, ApiError> {
    params.map_err(query_error)?;
    let index = s.search.clone();
    let groups = blocking_index(move || index.duplicates()).await?;
    Ok(Json(DuplicatesBody {
        count: groups.len(),
        groups,
    }))
}

#[derive(Debug, Serialize)]
pub struct MatchBody {
    pub count: usize,
    pub results: Vec<MatchResult>,
}

/// The field a JSON deserialisation error names (`unknown field `x``, `missing field `x``),
/// else `body`.
fn json_error(e: serde_json::Error) -> ApiError {
    let detail = e.to_string();
    let field = detail
        .split('`')
        .nth(1)
        .filter(|_| detail.contains("field"))
        .unwrap_or("body")
        .to_owned();
    ApiError::bad_field(&field, detail)
}

/// Matchmaking: services ranked for a need, each with why it matched.
#[utoipa::path(post, path = "/v1/match", tag = "query",
    request_body(description = "A need to find services for", content = crate::search::params::MatchParams),
    responses(
        (status = 200, description = "Ranked services with reasons", body = Object),
        (status = 400, description = "A bad field (named)", body = ErrorBody),
        (status = 413, description = "Body over api.max_body_bytes", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ))]
async fn match_services(
    State(s): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MatchBody>, ApiError> {
    let body = body.map_err(body_error)?;
    let params: MatchParams = serde_json::from_slice(&body).map_err(json_error)?;
    let request = params.validate()?;
    let index = s.search.clone();
    let results = blocking_index(move || index.match_services(&request)).await?;
    Ok(Json(MatchBody {
        count: results.len(),
        results,
    }))
}

/// Re-sign one of this hub's records with only `last_confirmed` changed.
#[utoipa::path(post, path = "/v1/records/{id}/confirm", tag = "records",
    params(("id" = String, Path, description = "Record id, `slug@z6Mk…` or a bare slug")),
    responses(
        (status = 200, description = "The confirmed record", body = Object),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "Another hub's record", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 409, description = "Ambiguous bare slug", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn confirm(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorised(&headers, &s.token)?;
    let c = s.catalogue.clone();
    Ok(Json(blocking(move || c.confirm(&id)).await?))
}

#[derive(Debug, Serialize)]
pub struct ConfirmedBody {
    pub count: usize,
    pub confirmed: Vec<String>,
}

/// Re-sign every one of this hub's records with only `last_confirmed` changed.
#[utoipa::path(post, path = "/v1/confirm", tag = "records",
    responses(
        (status = 200, description = "How many records were confirmed", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn confirm_all(
    State(s): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<ConfirmedBody>, ApiError> {
    authorised(&headers, &s.token)?;
    let c = s.catalogue.clone();
    let confirmed = blocking(move || c.confirm_all()).await?;
    Ok(Json(ConfirmedBody {
        count: confirmed.len(),
        confirmed,
    }))
}

#[derive(Debug, Serialize)]
pub struct ReindexBody {
    pub indexed: usize,
    pub took_ms: u64,
}

/// Rebuild the search index from the catalogue.
#[utoipa::path(post, path = "/v1/reindex", tag = "query",
    responses(
        (status = 200, description = "Records indexed and the time it took", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn reindex(
    State(s): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<ReindexBody>, ApiError> {
    authorised(&headers, &s.token)?;
    let index = s.search.clone();
    let start = Instant::now();
    let indexed = blocking_index(move || index.rebuild()).await?;
    Ok(Json(ReindexBody {
        indexed,
        took_ms: start.elapsed().as_millis() as u64,
    }))
}
