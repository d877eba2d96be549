//! The frame every service daprd calls is served in: the probes, the metrics, the routes
//! daprd calls behind the app token it sends, a panic guard, the request metrics and the
//! trace layer. `recurring-tasks`, `notifications` and `reminder-cron` differ only in their
//! own routes, their readiness and what a panic answers (a subscription asks daprd to
//! retry; the cron binding answers 200 and waits for the next tick).

use std::any::Any;

use axum::{
    Json, Router, middleware,
    response::Response,
    routing::{MethodRouter, get},
};
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

use crate::{Secret, metrics, subscription::require_dapr_token};

/// What a handler that panicked answers instead of a dropped connection.
pub type PanicAnswer = fn(Box<dyn Any + Send + 'static>) -> Response;

/// A service's router: `/healthz`, `/metrics` and `readyz` at `/readyz`, then
/// `dapr_routes` (with their fallback, if any), each of which requires `app_api_token` in
/// `dapr-api-token` when one is set; every request is guarded by `on_panic`, counted in
/// the metrics and traced.
pub fn router<S: Clone + Send + Sync + 'static>(
    readyz: MethodRouter<S>,
    dapr_routes: Router<S>,
    app_api_token: Option<Secret>,
    on_panic: PanicAnswer,
) -> Router<S> {
    let dapr_routes = dapr_routes.route_layer(middleware::from_fn_with_state(
        app_api_token,
        require_dapr_token,
    ));
    Router::new()
        .route("/healthz", get(healthz))
        .route(metrics::METRICS_PATH, get(metrics::serve))
        .route("/readyz", readyz)
        .merge(dapr_routes)
        .layer(CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
}

/// Liveness: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The message a panic carried, for the log.
pub fn panic_message<'a>(panic: &'a (dyn Any + Send + 'static)) -> &'a str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}
