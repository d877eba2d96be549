//! Prometheus metrics: every service serves `GET /metrics` (the text exposition format, from
//! the `prometheus` crate's default registry) and counts its HTTP requests through
//! [`track`]. The metrics shared by several services live here; each service registers
//! its own beside them.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `route` (the matched route, `unmatched` otherwise), `method`, `status` |
//! | `http_request_duration_seconds` | histogram | `route`, `method` |
//! | `subscription_outcomes_total` | counter | `topic`, `outcome` (`SUCCESS`, `RETRY`, `DROP`) |

use std::{sync::LazyLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
pub use prometheus;
use prometheus::{
    Encoder as _, HistogramVec, IntCounter, IntCounterVec, IntGauge, TextEncoder,
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
};

use crate::SubscriptionOutcome;

/// Where every service serves its metrics.
pub const METRICS_PATH: &str = "/metrics";

/// A counter in the default registry. Each name is registered once, from a `LazyLock`; a
/// second registration is a bug, hence the panic.
pub fn counter(name: &str, help: &str) -> IntCounter {
    register_int_counter!(name, help).expect("each counter is registered once")
}

/// A counter with labels in the default registry (see [`counter`]).
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register_int_counter_vec!(name, help, labels).expect("each counter is registered once")
}

/// A gauge in the default registry (see [`counter`]).
pub fn gauge(name: &str, help: &str) -> IntGauge {
    register_int_gauge!(name, help).expect("each gauge is registered once")
}

static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "http_requests_total",
        "HTTP requests answered, by route, method and status.",
        &["route", "method", "status"],
    )
});

static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "http_request_duration_seconds",
        "Time from a request's arrival to its answer, by route and method.",
        &["route", "method"],
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
        ]
    )
    .expect("http_request_duration_seconds registers once")
});

static SUBSCRIPTION_OUTCOMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "subscription_outcomes_total",
        "Events delivered by daprd to a subscription route, by topic and the answer given.",
        &["topic", "outcome"],
    )
});

/// Middleware: counts each request and times it, labelled by its matched route (so ids in
/// paths do not make a label value each).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    HTTP_DURATION
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    HTTP_REQUESTS
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Counts the answer a subscription route gave daprd for an event of `topic`.
pub fn count_outcome(topic: &str, outcome: SubscriptionOutcome) -> SubscriptionOutcome {
    SUBSCRIPTION_OUTCOMES
        .with_label_values(&[topic, outcome.as_str()])
        .inc();
    outcome
}

/// `GET /metrics`: every registered metric in the text format.
pub async fn serve() -> Response {
    // Touch the shared metrics so they are listed (at zero) before their first use.
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_DURATION);
    LazyLock::force(&SUBSCRIPTION_OUTCOMES);
    let mut body = Vec::new();
    match TextEncoder::new().encode(&prometheus::gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
