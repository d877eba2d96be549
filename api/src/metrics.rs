//! chat-api's metrics: the shared ones of [`service_kit::metrics`] and the relay's
//! ([`relay::metrics`], whose table lists them).

use axum::response::Response;
use relay::OutboxStore;

/// Every metric of the process in the Prometheus text format, the outbox gauges read from
/// `outbox` now.
pub async fn render(outbox: &OutboxStore) -> Response {
    relay::metrics::observe_backlog(outbox).await;
    service_kit::metrics::serve().await
}
