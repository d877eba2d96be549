//! What a handler of daprd's calls (subscriptions, cron bindings) answers, and the check that
//! only the sidecar may call those endpoints.

use axum::{
    Json,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::Secret;

/// The only answers daprd understands for a delivered message. Anything else is retried
/// forever, so handlers return exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionOutcome {
    /// Processed (or a duplicate): commit the offset.
    Success,
    /// Transient failure: deliver again (the inbound resiliency policy retries for ever; a
    /// consumer that wants a bound counts it itself and answers `Drop`).
    Retry,
    /// Poison: never processable; acknowledged and sent to the dead-letter topic.
    Drop,
}

impl SubscriptionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Retry => "RETRY",
            Self::Drop => "DROP",
        }
    }
}

impl IntoResponse for SubscriptionOutcome {
    fn into_response(self) -> Response {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": self.as_str() })),
        )
            .into_response()
    }
}

/// Middleware: when an app token is configured, requests must carry it in `dapr-api-token`
/// (daprd sends it on every call to the app when `APP_API_TOKEN` is set).
pub async fn require_dapr_token(
    State(token): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    if !dapr_token_ok(token.as_ref(), request.headers()) {
        return unauthorized();
    }
    next.run(request).await
}

/// Whether `headers` carry the expected `dapr-api-token` (any request does when `expected`
/// is `None`), for a handler the middleware does not cover (a router's fallback).
pub fn dapr_token_ok(expected: Option<&Secret>, headers: &axum::http::HeaderMap) -> bool {
    expected.is_none_or(|expected| {
        headers.get("dapr-api-token").and_then(|v| v.to_str().ok()) == Some(expected.expose())
    })
}

/// The answer to a request without the right `dapr-api-token`.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"error": {"code": "unauthorized", "message": "missing or wrong dapr-api-token"}})),
    )
        .into_response()
}
