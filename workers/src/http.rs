//! HTTP pieces every consumer shares: probes, reading a delivered body, the panic guard and
//! the fallback.
//!
//! daprd reads a 404 from a subscription route as "drop without dead-lettering" and any other
//! non-2xx as "retry", so nothing here lets either happen by accident: an unknown route
//! answers `DROP` (the event lands in the dead-letter topic, where it can be seen) and a
//! panicking handler answers `RETRY` (bounded by the inbound resiliency policy).

use std::any::Any;

use axum::{
    Json,
    body::{Body, Bytes},
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use service_kit::SubscriptionOutcome;

/// Largest delivered body accepted. Events are a few KiB; anything this big is not ours.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Liveness: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database answers and has the schema (`chat-api` migrates it).
pub async fn database_ready(db: &DatabaseConnection) -> Response {
    match db
        .execute_unprepared("SELECT 1 FROM tasks WHERE 1 = 0")
        .await
    {
        Ok(_) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unavailable or not migrated");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "reason": "database" })),
            )
                .into_response()
        }
    }
}

/// The body of a delivery, or `None` when it is too large or cannot be read (then the
/// caller answers `DROP`: the same bytes would fail again).
async fn read_body(body: Body) -> Option<Bytes> {
    match axum::body::to_bytes(body, MAX_EVENT_BYTES).await {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, limit_bytes = MAX_EVENT_BYTES, "cannot read delivered body; dropping it");
            None
        }
    }
}

/// Reads a delivery and decodes its event with `decode`. A body that cannot be read or
/// decoded gives the outcome to answer daprd (logged as a rejected `what` event).
pub async fn receive<T>(
    body: Body,
    what: &str,
    decode: impl FnOnce(&[u8]) -> Result<T, crate::envelope::Rejected>,
) -> Result<T, SubscriptionOutcome> {
    let Some(bytes) = read_body(body).await else {
        return Err(SubscriptionOutcome::Drop);
    };
    decode(&bytes).map_err(|rejected| {
        tracing::warn!(
            outcome = rejected.outcome.as_str(),
            reason = %rejected.reason,
            "{what} event rejected"
        );
        rejected.outcome
    })
}

/// Routes subscriptions for event types a consumer does not handle: acknowledged.
pub async fn ignored() -> SubscriptionOutcome {
    SubscriptionOutcome::Success
}

/// Any other route. A delivery to a path nobody serves is a subscription misconfiguration:
/// dead-letter it rather than let a 404 drop it silently.
pub async fn fallback(method: Method, uri: Uri) -> Response {
    if method == Method::POST {
        tracing::warn!(path = %uri.path(), "delivery to an unknown route; dead-lettering it");
        return SubscriptionOutcome::Drop.into_response();
    }
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": {"code": "not_found", "message": "no such route"}})),
    )
        .into_response()
}

/// For `CatchPanicLayer`: a handler that panicked answers `RETRY`, once logged.
pub fn panic_to_retry(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "handler panicked; asking daprd to retry");
    SubscriptionOutcome::Retry.into_response()
}
