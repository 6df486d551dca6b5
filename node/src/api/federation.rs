//! Federation membership routes: who belongs, and this hub's votes.
//!
//! | route | |
//! |---|---|
//! | `GET /v1/federation/members` | members, candidates with their endorsements, suspended hubs |
//! | `POST /v1/federation/votes` | endorse a hub, vote to suspend or reinstate one, or to recover its key (token) |
//! | `POST /v1/key/rotate` | hand this hub's signing over to a new key (token) |

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hubcat_protocol::membership::Action;
use hubcat_protocol::{HubId, HubKey};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{authorised, blocking, body_error, ApiError, ApiState, ErrorBody};

/// The membership routes, merged into the API router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/federation/members", get(members))
        .route("/v1/federation/votes", post(vote))
        .route("/v1/key/rotate", post(rotate))
}

/// Parse a JSON body; the error names the field serde names (`unknown field `x``, `missing
/// field `x``), else the body.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let detail = e.to_string();
        let field = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| detail.strip_prefix(p)?.split('`').next())
            .unwrap_or("body")
            .to_owned();
        ApiError::bad_field(&field, format!("not {what}: {detail}"))
    })
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
    /// `endorse` (admit a hub), `suspend`, `reinstate`, or `recover` (give a hub that lost
    /// its key, or whose key leaked, the new key `key`).
    pub action: String,
    /// The hub voted on: `did:key:z6Mk…`.
    pub target: String,
    /// Why (at most 500 characters; kept in the signed vote for everyone to read).
    #[serde(default)]
    pub reason: String,
    /// For `recover` only: the hub's new key, `did:key:z6Mk…`.
    #[serde(default)]
    pub key: Option<String>,
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
    let input: VoteInput = parse_body(&body, "a vote")?;
    let action = match input.action.as_str() {
        "endorse" => Action::Endorse,
        "suspend" => Action::Suspend,
        "reinstate" => Action::Reinstate,
        "recover" => Action::Recover,
        other => {
            return Err(ApiError::bad_field(
                "action",
                format!(
                    "`{}`: valid actions are endorse, suspend, reinstate, recover",
                    other.chars().take(40).collect::<String>()
                ),
            ))
        }
    };
    let target = HubId::from_did(&input.target)
        .map_err(|e| ApiError::bad_field("target", format!("not a hub did: {e}")))?;
    let key = match (&input.key, action) {
        (Some(k), Action::Recover) => Some(
            HubId::from_did(k)
                .map_err(|e| ApiError::bad_field("key", format!("not a did: {e}")))?,
        ),
        (None, Action::Recover) => {
            return Err(ApiError::bad_field(
                "key",
                "recover needs the hub's new key (`did:key:z6Mk…`)",
            ))
        }
        (Some(_), _) => return Err(ApiError::bad_field("key", "only recover names a key")),
        (None, _) => None,
    };
    let c = s.catalogue.clone();
    let votes = match blocking(move || {
        if c.members().is_none() {
            return Ok(None);
        }
        match key {
            Some(key) => c
                .recover_key(&target, &key, &input.reason)
                .map(|v| Some(vec![v])),
            None => c.vote(action, &target, &input.reason).map(Some),
        }
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

/// A key handover to ask for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateInput {
    /// Why (kept in the signed rotation).
    #[serde(default)]
    pub reason: String,
}

/// Rotate this hub's key.
///
/// The node makes a new key, writes it to the data directory (`hub.key.next`, 0600), signs a
/// rotation naming it with the current key into the federation's membership document, and
/// from then on signs with the new key (`hub.key`; `hub.did` keeps naming the hub). Every
/// node then refuses new changes signed with the old key; the hub's records stay valid. The
/// node's libp2p peer id follows the new key at the next start.
#[utoipa::path(post, path = "/v1/key/rotate", tag = "federation",
    request_body(content = RotateInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The rotation, signed and stored; the node signs with the new key", body = Object,
            example = json!({"did": "did:key:z6Mk…", "key": "did:key:z6Mk…", "step": 1})),
        (status = 400, description = "Bad body (names the field)", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "This hub is not a member", body = ErrorBody),
        (status = 404, description = "This node belongs to no federation", body = ErrorBody),
        (status = 409, description = "A contradicting rotation at the same step: only a recovery settles it", body = ErrorBody),
        (status = 413, description = "Body over api.max_body_bytes", body = ErrorBody),
        (status = 500, description = "Internal error (key file, storage)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(crate) async fn rotate(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorised(&headers, &s.token)?;
    let body = body.map_err(body_error)?;
    let input: RotateInput = if body.is_empty() {
        RotateInput::default()
    } else {
        parse_body(&body, "a rotation request")?
    };
    let c = s.catalogue.clone();
    let dd = s.data_dir.clone();
    let vote = blocking(move || {
        if c.members().is_none() {
            return Ok(None);
        }
        let internal = |e: String| crate::engine::EngineError::Internal(e);
        let next = HubKey::generate().map_err(|e| internal(e.to_string()))?;
        let again = HubKey::from_secret_bytes(next.secret_bytes().as_ref())
            .map_err(|e| internal(e.to_string()))?;
        dd.write_next_key(&next)
            .map_err(|e| internal(e.to_string()))?;
        match c.rotate_key(again, &input.reason) {
            Ok(vote) => {
                dd.install_next_key(&c.hub_id())
                    .map_err(|e| internal(e.to_string()))?;
                Ok(Some(vote))
            }
            Err(e) => {
                // Nothing was handed over: the new key is not needed.
                let _ = dd.discard_next_key();
                Err(e)
            }
        }
    })
    .await?
    .ok_or_else(no_federation)?;
    let key = vote.successor.as_ref().map(|n| n.key.to_did());
    Ok(Json(serde_json::json!({
        "did": vote.target.to_did(),
        "key": key,
        "step": vote.case,
    })))
}
