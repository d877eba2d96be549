//! The operations routes: liveness, readiness, the relay's status and the metrics.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use sea_orm::ConnectionTrait;

use crate::{error::ApiResult, openapi::Unavailable, state::AppState};

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: ready when the database answers and the outbox relay is not stuck (a stall
/// its watchdog's restart did not clear).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "The database does not answer, or the outbox relay is stalled", body = Object,
            example = json!({"status": "unavailable", "reason": "database"})),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let unavailable = |reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "reason": reason })),
        )
    };
    if let Err(e) = state.tasks.db().execute_unprepared("SELECT 1").await {
        tracing::warn!(error = %e, "readiness: database unavailable");
        return unavailable("database");
    }
    if state.relay.as_ref().is_some_and(|r| !r.ready()) {
        return unavailable("outbox relay stalled");
    }
    (
        StatusCode::OK,
        Json(serde_json::json!({ "status": "ready" })),
    )
}

/// The relay's backlog (pending events, the oldest one's age, parked events), which
/// replica's relay publishes (the publisher lock's holder, and whether that is this
/// process's), this relay's watchdog (whether it is stalled, and how often it restarted),
/// and how many events each dead-letter topic holds that were not replayed.
#[utoipa::path(
    get,
    path = "/relay/status",
    tag = "operations",
    responses(
        (status = 200, description = "The outbox backlog and the publishing relay", body = Object,
            example = json!({"pending": 0, "oldest_pending_age_ms": null, "parked": 0,
                "publisher": "relay-0192f0c1-e2d3-7b5a-8c7d-6e5f4a3b2c1d", "publishing_here": true,
                "stalled": false, "stalled_for_ms": null, "watchdog_restarts": 0,
                "dead_letters": {"task-events-dlq": 0, "reminders-dlq": 0}})),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn relay_status(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let now = Utc::now();
    let (backlog, publisher, held) = tokio::try_join!(
        state.outbox.backlog(),
        relay::PublisherLock::current_holder(state.tasks.db(), state.database_url.expose()),
        crate::dead_letters::held_per_topic(&state.dead_letters)
    )?;
    let dead_letters: serde_json::Map<String, serde_json::Value> = held
        .into_iter()
        .map(|(dlq, n)| (dlq.to_owned(), n.into()))
        .collect();
    let oldest_age_ms = backlog
        .oldest_created_at
        .map(|t| (now - t).num_milliseconds().max(0));
    let here = state.relay.as_ref().map(|r| r.view());
    Ok(Json(serde_json::json!({
        "pending": backlog.pending,
        "oldest_pending_age_ms": oldest_age_ms,
        "parked": backlog.parked,
        "publisher": publisher,
        "publishing_here": here.as_ref().is_some_and(|h| publisher.as_deref() == Some(h.holder.as_str())),
        "stalled": here.as_ref().is_some_and(|h| h.stalled_for.is_some()),
        "stalled_for_ms": here.as_ref().and_then(|h| h.stalled_for).map(|d| d.as_millis() as u64),
        "watchdog_restarts": here.as_ref().map_or(0, |h| h.restarts),
        "dead_letters": dead_letters,
    })))
}

/// `GET /metrics`: the outbox gauges read now, then every metric of the process. A database
/// that cannot answer leaves the gauges at their last value (the request metrics say so).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Every metric of the process in the Prometheus text format (0.0.4)",
        content_type = "text/plain", body = String)),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    crate::metrics::render(&state.outbox).await
}
