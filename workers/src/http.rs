//! HTTP pieces every consumer shares: the database readiness probe, reading a delivered
//! body, what a panic answers and the fallback.
//!
//! daprd reads a 404 from a subscription route as "drop without dead-lettering" and any other
//! non-2xx as "retry", so nothing here lets either happen by accident: an unknown route
//! answers `DROP` (the event lands in the dead-letter topic, where it can be seen) and a
//! panicking handler answers `RETRY`.
//!
//! Who decides what reaches a dead-letter topic: the consumer, never a timer in daprd. The
//! inbound resiliency policy retries a `RETRY` for ever (a database outage holds the
//! partition until it is back, and the app health check pauses the subscription meanwhile),
//! so a well-formed event is never dead-lettered for a transient fault. An event with a
//! missing or malformed `user_id` is answered `RETRY` for
//! [`INVALID_EVENT_RETRY`] from its first delivery ([`RetryBudget`]), then `DROP`: bounded,
//! then dead-lettered.

use std::{
    any::Any,
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json,
    body::{Body, Bytes},
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use service_kit::{SubscriptionOutcome, TraceContext};

use crate::envelope::{self, Delivery, Rejected};

/// Largest delivered body accepted. Events are a few KiB; anything this big is not ours.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Readiness: the database takes a write like the handler's (`chat-api` migrates the
/// schema). A probe row is inserted into `users` inside a transaction that is rolled back:
/// a read-only replica, a role without write rights, a missing schema or a database that
/// cannot take the write lock all answer 503, so daprd pauses the subscription instead of
/// delivering events that would only be retried.
pub async fn database_ready(db: &DatabaseConnection) -> Response {
    let probe = async {
        let txn = todo_store::db::begin_write(db).await?;
        // A key of this process's own, so replicas probing at once never wait on each
        // other's row; `~` is never in a user id.
        txn.execute_unprepared(&format!(
            "INSERT INTO users (id, created_at, deleted_at) \
             VALUES ('~readiness-probe-{}', CURRENT_TIMESTAMP, NULL)",
            *PROBE_ID
        ))
        .await?;
        txn.rollback().await
    };
    match probe.await {
        Ok(_) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the database cannot take a write (down, read only or not migrated)");
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
/// The delivered body, or `None` (logged) when it cannot be read or is over [`MAX_EVENT_BYTES`].
pub async fn read_body(body: Body) -> Option<Bytes> {
    match axum::body::to_bytes(body, MAX_EVENT_BYTES).await {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, limit_bytes = MAX_EVENT_BYTES, "cannot read delivered body; dropping it");
            None
        }
    }
}

/// Reads a delivery and decodes its event with `decode`, with the trace context its
/// CloudEvent carries (`traceparent`), if valid. A body that cannot be read or decoded gives
/// the outcome to answer daprd (logged as a rejected `what` event).
pub async fn receive<T>(
    body: Body,
    what: &str,
    decode: impl FnOnce(Delivery) -> Result<T, Rejected>,
) -> Result<(T, Option<TraceContext>), SubscriptionOutcome> {
    let Some(bytes) = read_body(body).await else {
        return Err(SubscriptionOutcome::Drop);
    };
    decode_body(&bytes, what, decode)
}

/// As [`receive`], for a body already read.
pub fn decode_body<T>(
    bytes: &[u8],
    what: &str,
    decode: impl FnOnce(Delivery) -> Result<T, Rejected>,
) -> Result<(T, Option<TraceContext>), SubscriptionOutcome> {
    let delivery = envelope::unwrap(bytes).map_err(|e| Rejected::drop(e.to_string()));
    let trace = delivery
        .as_ref()
        .ok()
        .and_then(|d| d.traceparent.as_deref())
        .and_then(TraceContext::parse);
    delivery
        .and_then(decode)
        .map(|event| (event, trace))
        .map_err(|rejected| {
            let outcome = match rejected.outcome {
                SubscriptionOutcome::Retry => INVALID_EVENTS.outcome(bytes, Instant::now()),
                other => other,
            };
            if outcome == SubscriptionOutcome::Drop
                && rejected.outcome == SubscriptionOutcome::Retry
            {
                tracing::error!(
                    reason = %rejected.reason,
                    retried_for_seconds = INVALID_EVENT_RETRY.as_secs(),
                    "{what} event still invalid after its retries; dead-lettering it"
                );
            } else {
                tracing::warn!(
                    outcome = outcome.as_str(),
                    reason = %rejected.reason,
                    "{what} event rejected"
                );
            }
            outcome
        })
}

/// How long an event with a missing or malformed `user_id` is retried before it is
/// dead-lettered: retried, but never for ever.
pub const INVALID_EVENT_RETRY: Duration = Duration::from_secs(7);

static PROBE_ID: LazyLock<uuid::Uuid> = LazyLock::new(uuid::Uuid::new_v4);

static INVALID_EVENTS: LazyLock<RetryBudget> =
    LazyLock::new(|| RetryBudget::new(INVALID_EVENT_RETRY));

/// Remembers when each retried delivery (by its bytes: a redelivery is the same bytes) was
/// first seen, and answers `RETRY` until `window` has passed since, then `DROP`. Per
/// process: a restart starts the window again, which only lengthens a bounded wait.
pub struct RetryBudget {
    window: Duration,
    first_seen: Mutex<HashMap<u64, Instant>>,
}

/// Entries kept at most; older ones than a few windows are forgotten first.
const RETRY_BUDGET_ENTRIES: usize = 10_000;

impl RetryBudget {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            first_seen: Mutex::new(HashMap::new()),
        }
    }

    /// What to answer for a delivery of `body` that asks to be retried, at `now`.
    pub fn outcome(&self, body: &[u8], now: Instant) -> SubscriptionOutcome {
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let key = hasher.finish();
        let mut seen = self
            .first_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= RETRY_BUDGET_ENTRIES {
            let horizon = self.window * 4;
            seen.retain(|_, first| now.saturating_duration_since(*first) < horizon);
            if seen.len() >= RETRY_BUDGET_ENTRIES {
                seen.clear();
            }
        }
        let first = *seen.entry(key).or_insert(now);
        if now.saturating_duration_since(first) < self.window {
            SubscriptionOutcome::Retry
        } else {
            seen.remove(&key);
            SubscriptionOutcome::Drop
        }
    }
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
    let message = service_kit::skeleton::panic_message(&*panic);
    tracing::error!(panic = message, "handler panicked; asking daprd to retry");
    SubscriptionOutcome::Retry.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_retried_for_the_window_then_dropped_and_others_keep_their_own_clock() {
        let budget = RetryBudget::new(Duration::from_secs(7));
        let t0 = Instant::now();
        assert_eq!(budget.outcome(b"a", t0), SubscriptionOutcome::Retry);
        assert_eq!(
            budget.outcome(b"a", t0 + Duration::from_secs(6)),
            SubscriptionOutcome::Retry
        );
        // Another event first seen late gets its own window.
        assert_eq!(
            budget.outcome(b"b", t0 + Duration::from_secs(6)),
            SubscriptionOutcome::Retry
        );
        assert_eq!(
            budget.outcome(b"a", t0 + Duration::from_secs(7)),
            SubscriptionOutcome::Drop
        );
        assert_eq!(
            budget.outcome(b"b", t0 + Duration::from_secs(8)),
            SubscriptionOutcome::Retry
        );
        assert_eq!(
            budget.outcome(b"b", t0 + Duration::from_secs(13)),
            SubscriptionOutcome::Drop
        );
    }

    #[test]
    fn the_memory_is_bounded() {
        let budget = RetryBudget::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..(RETRY_BUDGET_ENTRIES as u32 + 10) {
            budget.outcome(&i.to_le_bytes(), t0);
        }
        let len = budget
            .first_seen
            .lock()
            .map(|m| m.len())
            .unwrap_or(usize::MAX);
        assert!(len <= RETRY_BUDGET_ENTRIES, "{len} entries");
    }
}
