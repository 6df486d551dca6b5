//! What keeps the API answering when clients misbehave: a read rate limit per client address,
//! a cap on requests in progress, and a deadline for every request (the body size limit is
//! the router's `DefaultBodyLimit`). Every refusal is an ordinary API error body.
//!
//! - **Rate per client** (`api.read_rate_per_sec`, `api.read_burst`): a token bucket per client
//!   IP address (governor's keyed GCRA limiter). Requests with the write token are exempt, as
//!   are `/healthz`, `/readyz` and `/metrics`, so an operator's probes and the hub's own staff
//!   are never locked out by someone else's flood. Over the limit: 429 `rate_limited` with
//!   `Retry-After`.
//! - **Requests in progress** (`api.max_concurrent_requests`): beyond it a request gets 503
//!   `overloaded` with `Retry-After` at once — shedding load keeps the answers that are given
//!   fast, where a queue would make every client wait.
//! - **Deadline** (`api.request_timeout_secs`): a request not answered in time gets 503
//!   `timeout`; its work is dropped (engine calls already running on the blocking pool finish
//!   on their own, and each of them is bounded).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hubcat_config::ApiSection;
use tokio::sync::Semaphore;

use super::{authorised, ApiError};

/// Paths never rate limited: probes and scrapes by the operator's own tooling.
const UNLIMITED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// Client entries kept by the rate limiter before idle ones are dropped.
const MAX_TRACKED_CLIENTS: usize = 100_000;

pub struct Limits {
    token: Arc<String>,
    timeout: Duration,
    in_progress: Arc<Semaphore>,
    readers: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Limits {
    pub fn new(api: &ApiSection, token: Arc<String>) -> Arc<Limits> {
        let readers = NonZeroU32::new(u32::try_from(api.read_rate_per_sec).unwrap_or(u32::MAX))
            .map(|rate| {
                let burst = NonZeroU32::new(u32::try_from(api.read_burst).unwrap_or(u32::MAX))
                    .unwrap_or(rate);
                RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
            });
        Arc::new(Limits {
            token,
            timeout: Duration::from_secs(api.request_timeout_secs),
            in_progress: Arc::new(Semaphore::new(
                usize::try_from(api.max_concurrent_requests)
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS),
            )),
            readers,
        })
    }

    /// Is this client over its read rate? When it is, how long until it may ask again.
    fn over_rate(&self, request: &Request) -> Option<Duration> {
        let readers = self.readers.as_ref()?;
        if UNLIMITED_PATHS.contains(&request.uri().path())
            || authorised(request.headers(), &self.token).is_ok()
        {
            return None;
        }
        let ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())?;
        if readers.len() > MAX_TRACKED_CLIENTS {
            readers.retain_recent();
        }
        readers
            .check_key(&ip)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

fn with_retry_after(error: ApiError, after: Duration) -> Response {
    let mut response = error.into_response();
    // Whole seconds, at least one.
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    response
}

/// The middleware: rate, then capacity, then the deadline.
pub async fn enforce(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    if let Some(wait) = limits.over_rate(&request) {
        return with_retry_after(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many read requests from this address (api.read_rate_per_sec); retry after the time in Retry-After",
            ),
            wait,
        );
    }
    let Ok(_slot) = limits.in_progress.clone().try_acquire_owned() else {
        return with_retry_after(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the node is answering as many requests as api.max_concurrent_requests allows; retry shortly",
            ),
            Duration::from_secs(1),
        );
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than api.request_timeout_secs ({} s)",
                limits.timeout.as_secs()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::Router;
    use tower::ServiceExt as _;

    fn api(rate: u64, burst: u64, concurrent: u64, timeout: u64) -> ApiSection {
        ApiSection {
            listen: "127.0.0.1:0".parse().expect("addr"),
            max_body_bytes: 1024,
            request_timeout_secs: timeout,
            max_concurrent_requests: concurrent,
            read_rate_per_sec: rate,
            read_burst: burst,
        }
    }

    const SLOW: &str = "/slow";

    /// Every path answers "ok" at once, except [`SLOW`], which answers when the test lets it.
    /// (One fallback handler rather than routes: the OpenAPI test reads the node's route table
    /// from the source.)
    fn app(limits: Arc<Limits>, gate: Arc<tokio::sync::Notify>) -> Router {
        Router::new()
            .fallback(move |request: Request| {
                let gate = gate.clone();
                async move {
                    if request.uri().path() == SLOW {
                        gate.notified().await;
                    }
                    "ok"
                }
            })
            .layer(axum::middleware::from_fn_with_state(limits, enforce))
    }

    fn from(ip: [u8; 4], path: &str, token: Option<&str>) -> Request {
        let mut b = Request::builder().uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let mut r = b.body(Body::empty()).expect("request");
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 4000))));
        r
    }

    async fn error_of(r: Response) -> (StatusCode, serde_json::Value) {
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_client_over_its_read_rate_gets_429_and_others_do_not() {
        let limits = Limits::new(&api(1, 3, 100, 30), Arc::new("secret".into()));
        let app = app(limits, Arc::new(tokio::sync::Notify::new()));
        for _ in 0..3 {
            let r = app
                .clone()
                .oneshot(from([10, 0, 0, 1], "/v1/status", None))
                .await;
            assert_eq!(r.expect("response").status(), StatusCode::OK);
        }
        let r = app
            .clone()
            .oneshot(from([10, 0, 0, 1], "/v1/status", None))
            .await
            .expect("response");
        assert!(r.headers().contains_key("retry-after"));
        let (status, body) = error_of(r).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"], "rate_limited");
        assert!(body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("api.read_rate_per_sec")));

        // Another address, the write token, and the probes are not held back.
        for (ip, path, token) in [
            ([10, 0, 0, 2], "/v1/status", None),
            ([10, 0, 0, 1], "/v1/status", Some("secret")),
            ([10, 0, 0, 1], "/healthz", None),
        ] {
            let r = app.clone().oneshot(from(ip, path, token)).await;
            assert_eq!(
                r.expect("response").status(),
                StatusCode::OK,
                "{ip:?} {path}"
            );
        }
        // A wrong token is no way around the limit.
        let r = app
            .clone()
            .oneshot(from([10, 0, 0, 1], "/v1/status", Some("guess")))
            .await;
        assert_eq!(r.expect("response").status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn requests_beyond_the_cap_are_shed_and_slow_ones_time_out() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let limits = Limits::new(&api(0, 1, 1, 1), Arc::new("secret".into()));
        let app = app(limits, gate.clone());
        let slow = tokio::spawn(app.clone().oneshot(from([10, 0, 0, 1], SLOW, None)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = error_of(
            app.clone()
                .oneshot(from([10, 0, 0, 2], "/v1/status", None))
                .await
                .expect("response"),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "overloaded");

        // The slow request is cut off at the deadline; the slot is free again after it.
        let (status, body) = error_of(slow.await.expect("join").expect("response")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "timeout");
        let r = app.oneshot(from([10, 0, 0, 2], "/v1/status", None)).await;
        assert_eq!(r.expect("response").status(), StatusCode::OK);
    }
}
