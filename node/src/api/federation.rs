//! Federation membership routes: who belongs, and this hub's votes.
//!
//! | route | |
//! |---|---|
//! | `GET /v1/federation/members` | members, candidates with their endorsements, suspended hubs |
//! | `POST /v1/federation/votes` | endorse a hub, or vote to suspend or reinstate one (token) |

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hubcat_protocol::membership::Action;
use hubcat_protocol::HubId;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{authorised, blocking, body_error, ApiError, ApiState, ErrorBody};

/// The membership routes, merged into the API router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/federation/members", get(members))
        .route("/v1/federation/votes", post(vote))
}

fn no_federation() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_federation",
        "this node belongs to no federation (no genesis); join one with `hubcat federation join`",
    )
}

/// The federation's members.
///
/// Members (founders and admitted hubs), candidates with the endorsements they have, and
/// suspended hubs — each with every vote on it: who cast it, when, and why.
#[utoipa::path(get, path = "/v1/federation/members", tag = "federation",
    responses(
        (status = 200, description = "Members, candidates and suspended hubs with their votes", body = Object,
            example = json!({"federation": "health-hubs-5f0c…", "quorum": 2,
                "members": [{"did": "did:key:z6Mk…", "standing": "founder", "votes": []}],
                "candidates": [{"did": "did:key:z6Mk…", "standing": "candidate", "votes": [
                    {"action": "endorse", "case": 0, "voter": "did:key:z6Mk…", "reason": "", "at": "2026-12-02T10:00:00Z"}]}],
                "suspended": [], "held_changes": 3})),
        (status = 404, description = "This node belongs to no federation", body = ErrorBody),
    ))]
pub(crate) async fn members(State(s): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let c = s.catalogue.clone();
    let report = blocking(move || Ok(c.members())).await?;
    report.map(Json).ok_or_else(no_federation)
}

/// A vote to cast.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteInput {
    /// `endorse` (admit a hub), `suspend` or `reinstate`.
    pub action: String,
    /// The hub voted on: `did:key:z6Mk…`.
    pub target: String,
    /// Why (at most 500 characters; kept in the signed vote for everyone to read).
    #[serde(default)]
    pub reason: String,
}

/// Cast a vote.
///
/// This hub's signed vote in the federation's membership document: endorse a candidate (it is
/// admitted once the quorum of members endorsed it), or vote to suspend or reinstate a member
/// (in effect once the quorum voted so). Only members vote.
#[utoipa::path(post, path = "/v1/federation/votes", tag = "federation",
    request_body(content = VoteInput, content_type = "application/json"),
    responses(
        (status = 201, description = "The votes cast, signed and stored", body = Object,
            example = json!({"votes": [{"action": "endorse", "target": "did:key:z6Mk…", "case": 0,
                "voter": "did:key:z6Mk…", "reason": "EDIH in good standing", "at": "2026-12-02T10:00:00Z"}]})),
        (status = 400, description = "Bad action, target or reason (names the field)", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "This hub is not a member: only members vote", body = ErrorBody),
        (status = 404, description = "This node belongs to no federation", body = ErrorBody),
        (status = 409, description = "Already voted so, or the target's standing does not allow it", body = ErrorBody),
        (status = 413, description = "Body over api.max_body_bytes", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn vote(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorised(&headers, &s.token)?;
    let body = body.map_err(body_error)?;
    let input: VoteInput = serde_json::from_slice(&body).map_err(|e| {
        let detail = e.to_string();
        // `unknown field `x`, expected …` and `missing field `x`` name the field.
        let field = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| detail.strip_prefix(p)?.split('`').next())
            .unwrap_or("body")
            .to_owned();
        ApiError::bad_field(&field, format!("not a vote: {detail}"))
    })?;
    let action = match input.action.as_str() {
        "endorse" => Action::Endorse,
        "suspend" => Action::Suspend,
        "reinstate" => Action::Reinstate,
        other => {
            return Err(ApiError::bad_field(
                "action",
                format!(
                    "`{}`: valid actions are endorse, suspend, reinstate",
                    other.chars().take(40).collect::<String>()
                ),
            ))
        }
    };
    let target = HubId::from_did(&input.target)
        .map_err(|e| ApiError::bad_field("target", format!("not a hub did: {e}")))?;
    let c = s.catalogue.clone();
    let votes = match blocking(move || {
        if c.members().is_none() {
            return Ok(None);
        }
        c.vote(action, &target, &input.reason).map(Some)
    })
    .await
    {
        Ok(Some(votes)) => votes,
        Ok(None) => return Err(no_federation()),
        Err(mut e) => {
            if e.status == StatusCode::CONFLICT {
                e.field = Some("target".into());
            }
            return Err(e);
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "votes": votes })),
    ))
}
