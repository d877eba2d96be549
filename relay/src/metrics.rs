//! The relay's metrics, served with the rest of chat-api's on `/metrics`
//! ([`service_kit::metrics`]).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `relay_backlog_events` | gauge | unpublished events in the outbox (parked ones included), read at scrape time ([`observe_backlog`]) |
//! | `relay_oldest_pending_age_seconds` | gauge | age of the oldest unpublished event (0 when none) |
//! | `relay_parked_events` | gauge | events parked after the broker refused them every time |
//! | `relay_published_events_total` | counter | events this process's relay published |
//! | `relay_publish_failures_total` | counter | publishes that failed (each is retried) |
//! | `relay_parked_total` | counter | events this process's relay parked |

use std::sync::LazyLock;

use chrono::Utc;
use service_kit::metrics::{
    counter, gauge,
    prometheus::{IntCounter, IntGauge},
};

use crate::OutboxStore;

pub static PUBLISHED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "relay_published_events_total",
        "Events this process's relay published.",
    )
});
pub static PUBLISH_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "relay_publish_failures_total",
        "Publishes by this process's relay that failed (each is retried).",
    )
});
pub static PARKED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("relay_parked_total", "Events this process's relay parked."));
static BACKLOG: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "relay_backlog_events",
        "Unpublished events in the outbox, parked ones included.",
    )
});
static OLDEST_AGE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "relay_oldest_pending_age_seconds",
        "Age of the oldest unpublished event; 0 when there is none.",
    )
});
static PARKED_NOW: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "relay_parked_events",
        "Events parked after the broker refused them every time.",
    )
});

/// Reads the outbox's backlog into the gauges (and registers the counters, so they show
/// before the first event). A database that cannot answer leaves the gauges at their last
/// value (the request metrics say so).
pub async fn observe_backlog(outbox: &OutboxStore) {
    for c in [&PUBLISHED, &PUBLISH_FAILURES, &PARKED] {
        LazyLock::force(c);
    }
    match outbox.backlog().await {
        Ok(backlog) => {
            BACKLOG.set(i64::try_from(backlog.pending).unwrap_or(i64::MAX));
            PARKED_NOW.set(i64::try_from(backlog.parked).unwrap_or(i64::MAX));
            OLDEST_AGE.set(
                backlog
                    .oldest_created_at
                    .map_or(0, |t| (Utc::now() - t).num_seconds().max(0)),
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the outbox backlog for /metrics"),
    }
}
