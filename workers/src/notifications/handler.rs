//! The `reminder.due` handler: decode, skip duplicates, log the notification.
//!
//! | what arrived | answer |
//! |---|---|
//! | not JSON, not an event, body over 256 KiB, unknown `schema_version`, another event type, fields of the wrong shape | `DROP` (dead-lettered to `reminders-dlq`) |
//! | `user_id` missing, empty, malformed or not a string | `RETRY` for 7 s from its first delivery, then `DROP` (dead-lettered; `http::RetryBudget`) |
//! | an event already logged (idempotency key) | `SUCCESS`, not logged again |
//! | its task no longer due at that time: completed, deleted, moved, of another user, or its account deleted (read from the tasks database) | `SUCCESS`, not logged (one info line says why) |
//! | anything else (also when the database cannot answer: a reminder is never lost to that) | one notification, then `SUCCESS` |
//!
//! The order is check, log, remember (as in `recurring-tasks`), not claim-then-log: logging
//! cannot be undone or retried by anyone else, so a key written first and then not followed
//! by the line (a crash in between) would lose the reminder for good, while a line written
//! and then not remembered only risks a second line when the event is redelivered. A lost
//! reminder is the worse failure (nothing may be lost; a redelivery must be handled
//! idempotently). Duplicates reach this service one after the other (same key, same
//! partition, one message in flight per partition), so the check sees the earlier delivery's
//! key; only a crash between the line and the key, or a state store that cannot be reached,
//! can let a duplicate through.

use axum::{body::Body, extract::State};
use chrono::Utc;
use service_kit::{IdempotencyStore, SubscriptionOutcome};
use todo_domain::{EventType, REMINDER_SCHEMA_VERSION, ReminderEvent};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{AppState, IDEMPOTENCY_TTL};
use crate::{
    envelope::{self, Rejected},
    http,
};

/// `notifications_logged_total`: notifications this process logged.
static LOGGED: std::sync::LazyLock<service_kit::metrics::prometheus::IntCounter> =
    std::sync::LazyLock::new(|| {
        service_kit::metrics::counter(
            "notifications_logged_total",
            "Notifications this process logged (one line each).",
        )
    });

/// `POST /events/reminder`; each answer is counted (`subscription_outcomes_total`).
pub async fn reminder_due<I: IdempotencyStore>(
    State(state): State<AppState<I>>,
    body: Body,
) -> SubscriptionOutcome {
    std::sync::LazyLock::force(&LOGGED);
    service_kit::metrics::count_outcome(todo_domain::topics::REMINDERS, receive(&state, body).await)
}

async fn receive<I: IdempotencyStore>(state: &AppState<I>, body: Body) -> SubscriptionOutcome {
    let (event, parent) = match http::receive(body, "reminder", decode_delivery).await {
        Ok(received) => received,
        Err(outcome) => return outcome,
    };
    let span = tracing::info_span!(
        "reminder",
        trace_id = tracing::field::Empty,
        event_id = %event.event_id,
        user_id = %event.user_id,
        task_id = %event.task_id,
    );
    service_kit::trace::start(&span, parent);
    handle(state, &event).instrument(span).await
}

/// Handles one decoded reminder: logs it unless it was logged before.
pub async fn handle<I: IdempotencyStore>(
    state: &AppState<I>,
    event: &ReminderEvent,
) -> SubscriptionOutcome {
    let key = idempotency_key(event.event_id);
    match state.idempotency.seen(&key).await {
        Ok(true) => {
            tracing::info!("duplicate delivery; this notification was logged before");
            return SubscriptionOutcome::Success;
        }
        Ok(false) => {}
        // Nothing lost rather than nothing twice: log it, at the risk of a second line.
        Err(e) => {
            tracing::warn!(error = %e, "idempotency store unavailable; notifying without duplicate check")
        }
    }
    if let Some(tasks) = &state.tasks {
        match tasks
            .still_due(&event.user_id, event.task_id, event.due_at)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    "reminder skipped: its task is no longer due at this time (completed, deleted or moved since, or its account deleted)"
                );
                return SubscriptionOutcome::Success;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the task in the database; notifying anyway")
            }
        }
    }
    state.sink.notify(event, Utc::now());
    LOGGED.inc();
    if let Err(e) = state.idempotency.remember(&key, IDEMPOTENCY_TTL).await {
        tracing::warn!(error = %e, "cannot remember the notification; a redelivery would log it again");
    }
    SubscriptionOutcome::Success
}

/// The state-store key recording that the reminder `event_id` was logged. (daprd prefixes
/// keys with the app id, so other services' keys never collide with these.)
pub fn idempotency_key(event_id: Uuid) -> String {
    format!("reminder-logged:{event_id}")
}

/// An unwrapped delivery as the event, or why not.
pub fn decode_delivery(delivery: envelope::Delivery) -> Result<ReminderEvent, Rejected> {
    let data = delivery.data;
    envelope::check_versioned(&data, REMINDER_SCHEMA_VERSION, EventType::ReminderDue)?;
    serde_json::from_value(data).map_err(|e| Rejected::drop(format!("not a reminder event: {e}")))
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use serde_json::{Value, json};
    use todo_domain::{Priority, TimeZone};

    use super::*;

    /// A delivered body as a `reminder.due` event, or why not.
    fn decode(body: &[u8]) -> Result<ReminderEvent, Rejected> {
        envelope::unwrap(body)
            .map_err(|e| Rejected::drop(e.to_string()))
            .and_then(decode_delivery)
    }
    use crate::envelope::testing::{self, json_of};

    fn reminder() -> ReminderEvent {
        let at = DateTime::parse_from_rfc3339("2026-06-01T14:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        ReminderEvent {
            event_id: ReminderEvent::id_for(Uuid::nil(), at),
            event_type: EventType::ReminderDue,
            schema_version: REMINDER_SCHEMA_VERSION,
            occurred_at: at,
            user_id: "alice".into(),
            task_id: Uuid::nil(),
            title: "Pay rent".into(),
            description: String::new(),
            priority: Priority::High,
            tags: vec!["home".into()],
            due_at: at,
            due_date: None,
            time_zone: TimeZone::UTC,
            window_seconds: 86_400,
            offset: None,
            fires_at: None,
        }
    }

    fn cloud_event(data: Value) -> Vec<u8> {
        testing::cloud_event("reminder.due", data)
    }

    fn outcome(body: &[u8]) -> SubscriptionOutcome {
        testing::outcome(decode(body))
    }

    #[test]
    fn a_reminder_in_a_cloud_event_or_raw_decodes() {
        let r = reminder();
        assert_eq!(decode(&cloud_event(json_of(&r))), Ok(r.clone()));
        let raw = serde_json::to_vec(&r).unwrap_or_default();
        assert_eq!(decode(&raw), Ok(r));
    }

    #[test]
    fn undecodable_bodies_unknown_versions_and_other_types_are_dropped() {
        assert_eq!(outcome(b"not json"), SubscriptionOutcome::Drop);
        assert_eq!(outcome(b"[1]"), SubscriptionOutcome::Drop);
        for (field, value) in [
            ("schema_version", json!(REMINDER_SCHEMA_VERSION + 1)),
            ("schema_version", json!(0)),
            ("schema_version", Value::Null),
            ("event_type", json!("task.completed")),
            ("priority", json!("whenever")),
            ("due_at", json!("tomorrow")),
            ("time_zone", json!("Mars/Base")),
            ("task_id", json!(7)),
        ] {
            let mut e = json_of(&reminder());
            e[field] = value.clone();
            assert_eq!(
                outcome(&cloud_event(e)),
                SubscriptionOutcome::Drop,
                "{field} = {value}"
            );
        }
    }

    #[test]
    fn a_missing_or_malformed_user_id_is_retried() {
        for user in [Value::Null, json!(""), json!("a/b"), json!(42)] {
            let mut e = json_of(&reminder());
            e["user_id"] = user.clone();
            assert_eq!(
                outcome(&cloud_event(e)),
                SubscriptionOutcome::Retry,
                "user_id {user}"
            );
        }
        let mut e = json_of(&reminder());
        e.as_object_mut().map(|o| o.remove("user_id"));
        assert_eq!(outcome(&cloud_event(e)), SubscriptionOutcome::Retry);
    }
}
