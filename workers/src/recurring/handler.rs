//! The `task.completed` handler: decode, skip duplicates, create the next instance.
//!
//! The event names the completion (task, user, version, completion time); the next instance
//! is built from the database's row of that task, never from the event's snapshot.
//!
//! | what arrived | answer |
//! |---|---|
//! | not JSON, not an event, unknown `schema_version`, another event type, a snapshot that breaks the task rules | published to `task-events-dlq`, then `DROP` (`RETRY` while that fails) |
//! | `user_id` missing, empty, malformed, or not the task's owner | `RETRY` for 7 s from its first delivery, then as above (`http::RetryBudget`) |
//! | a task that does not recur | `SUCCESS`, nothing created |
//! | an event already handled (idempotency key) | `SUCCESS` |
//! | a deleted user, an unknown task, a completion since undone by a reopen | `SUCCESS`, logged, nothing created |
//! | a completion the database does not bear out (a version the task never had, a completion it never recorded: forged) | `SUCCESS`, warned, nothing created |
//! | the next instance exists already (unique key) | `SUCCESS` |
//! | the database fails | `RETRY` |
//! | the next instance is created | `SUCCESS` |

use axum::{body::Body, extract::State};
use chrono::Utc;
use serde_json::Value;
use service_kit::{IdempotencyStore, SubscriptionOutcome};
use todo_domain::{EventType, TASK_EVENT_SCHEMA_VERSION, TaskEvent};
use todo_store::NextInstance;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{AppState, IDEMPOTENCY_TTL};
use crate::{
    envelope::{self, Rejected},
    http,
};

/// `POST /events/task-completed`; each answer is counted (`subscription_outcomes_total`).
pub async fn task_completed<I: IdempotencyStore>(
    State(state): State<AppState<I>>,
    body: Body,
) -> SubscriptionOutcome {
    service_kit::metrics::count_outcome(
        todo_domain::topics::TASK_EVENTS,
        receive(&state, body).await,
    )
}

async fn receive<I: IdempotencyStore>(state: &AppState<I>, body: Body) -> SubscriptionOutcome {
    let Some(bytes) = http::read_body(body).await else {
        // Nothing to keep: only a body over the size limit, which no relay publishes.
        return SubscriptionOutcome::Drop;
    };
    let (event, parent) = match http::decode_body(&bytes, "task.completed", decode_delivery) {
        Ok(received) => received,
        Err(SubscriptionOutcome::Drop) => return dead_letter(state, &bytes).await,
        Err(outcome) => return outcome,
    };
    let span = tracing::info_span!(
        "task_completed",
        trace_id = tracing::field::Empty,
        event_id = %event.event_id,
        user_id = %event.user_id,
        task_id = %event.task.id,
    );
    let trace = service_kit::trace::start(&span, parent);
    // The next instance's `task.created` continues the completion's trace.
    todo_store::trace::scope(Some(trace.to_string()), handle(state, &event))
        .instrument(span)
        .await
}

/// Any other route: as [`http::fallback`], and a delivery (`POST`) is dead-lettered here
/// first, since daprd does not for this subscription. Only from daprd: a fallback is not
/// behind the event routes' token check, so it checks `dapr-api-token` itself (a body
/// posted by anyone else must never reach the dead-letter topic, which can be replayed).
pub async fn misrouted<I: IdempotencyStore>(
    State(state): State<AppState<I>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: Body,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if method != axum::http::Method::POST {
        return http::fallback(method, uri).await;
    }
    if !service_kit::subscription::dapr_token_ok(state.app_api_token.as_ref(), &headers) {
        return service_kit::subscription::unauthorized();
    }
    tracing::warn!(path = %uri.path(), "delivery to an unknown route; dead-lettering it");
    match http::read_body(body).await {
        Some(bytes) => dead_letter(&state, &bytes).await.into_response(),
        None => SubscriptionOutcome::Drop.into_response(),
    }
}

/// A delivery this handler drops goes to `task-events-dlq` first (the subscription has no
/// dead-letter topic in daprd: [`crate::dead_letters`]); `RETRY` while that fails.
async fn dead_letter<I>(state: &AppState<I>, body: &[u8]) -> SubscriptionOutcome {
    match state.dead_letters.send(body).await {
        Ok(()) => SubscriptionOutcome::Drop,
        Err(e) => {
            tracing::warn!(error = %e, "cannot dead-letter a dropped event yet; daprd delivers it again");
            SubscriptionOutcome::Retry
        }
    }
}

/// Handles one decoded completion. Idempotent: any number of deliveries of the same event,
/// in any order with other events, create at most one next instance.
pub async fn handle<I: IdempotencyStore>(
    state: &AppState<I>,
    event: &TaskEvent,
) -> SubscriptionOutcome {
    if event.task.recurrence.is_none() {
        tracing::debug!("task does not recur; nothing to do");
        return SubscriptionOutcome::Success;
    }
    let key = idempotency_key(event.event_id);
    match state.idempotency.seen(&key).await {
        Ok(true) => {
            tracing::info!("completion already handled (duplicate delivery)");
            return SubscriptionOutcome::Success;
        }
        Ok(false) => {}
        // The database's unique key still guarantees one instance; only the shortcut is lost.
        Err(e) => {
            tracing::warn!(error = %e, "idempotency store unavailable; relying on the database")
        }
    }
    let started = std::time::Instant::now();
    match state
        .tasks
        .create_next_instance(&event.task, Utc::now())
        .await
    {
        Ok(NextInstance::Created(next)) => {
            let recurrence = next.recurrence.as_ref();
            tracing::info!(
                next_task_id = %next.id,
                series_id = ?recurrence.map(|r| r.series_id),
                occurrence = recurrence.map(|r| r.occurrence),
                due_at = ?next.due_at,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "created the next instance"
            );
        }
        Ok(NextInstance::AlreadyExists) => tracing::info!("next instance exists already"),
        Ok(NextInstance::NotRecurring) => tracing::debug!("task does not recur; nothing to do"),
        Ok(NextInstance::Superseded) => {
            tracing::info!("task was reopened after this completion; no next instance for it")
        }
        Ok(NextInstance::UnknownTask) => {
            tracing::warn!("no such task of this user in the database; skipping")
        }
        Ok(NextInstance::UserDeleted) => tracing::info!("user was deleted; skipping"),
        Ok(NextInstance::Unconfirmed) => tracing::warn!(
            version = event.task.version,
            "the database does not bear this completion out (a version or a completion it never recorded); nothing created"
        ),
        Err(e) => {
            tracing::error!(error = %e, transient = e.is_transient(), "cannot create the next instance; will retry");
            return SubscriptionOutcome::Retry;
        }
    }
    // Only now that the effect is done (or known to be unnecessary) is the key written.
    if let Err(e) = state.idempotency.remember(&key, IDEMPOTENCY_TTL).await {
        tracing::warn!(error = %e, "cannot remember the event; a redelivery will hit the database's unique key");
    }
    SubscriptionOutcome::Success
}

/// The state-store key recording that `event_id` was handled by this service. (Dapr prefixes
/// keys with the app id, so other consumers' keys never collide with these.)
pub fn idempotency_key(event_id: Uuid) -> String {
    format!("task-completed:{event_id}")
}

/// An unwrapped delivery as the event, or why not.
pub fn decode_delivery(delivery: envelope::Delivery) -> Result<TaskEvent, Rejected> {
    let data = delivery.data;
    let user_id =
        envelope::check_versioned(&data, TASK_EVENT_SCHEMA_VERSION, EventType::TaskCompleted)?;
    let owner = data
        .get("task")
        .and_then(|t| t.get("user_id"))
        .and_then(Value::as_str);
    if owner != Some(user_id.as_str()) {
        return Err(Rejected::retry("user_id does not match the task's owner"));
    }
    let event: TaskEvent = serde_json::from_value(data)
        .map_err(|e| Rejected::drop(format!("not a task event: {e}")))?;
    check_snapshot(&event).map_err(Rejected::drop)?;
    Ok(event)
}

/// What the handler relies on of the snapshot: a completed task with an occurrence that has
/// a next. (Its title, description and tags are not read: the next instance is made from
/// the task as the database holds it.)
fn check_snapshot(event: &TaskEvent) -> Result<(), String> {
    let task = &event.task;
    if !task.completed {
        return Err("a task.completed event whose task is not completed".into());
    }
    if let Some(r) = &task.recurrence
        && i32::try_from(r.occurrence).map_or(true, |o| o == i32::MAX)
    {
        return Err(format!("occurrence {} out of range", r.occurrence));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivered body as a `task.completed` event, or why not.
    fn decode(body: &[u8]) -> Result<TaskEvent, Rejected> {
        envelope::unwrap(body)
            .map_err(|e| Rejected::drop(e.to_string()))
            .and_then(decode_delivery)
    }
    use crate::envelope::testing::{self, json_of};
    use chrono::{DateTime, NaiveDateTime};
    use serde_json::json;
    use todo_domain::{Frequency, Priority, Recurrence, TaskSnapshot, TimeZone};

    fn completed_event() -> TaskEvent {
        let at = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let task = TaskSnapshot {
            id: Uuid::nil(),
            user_id: "alice".into(),
            title: "Water plants".into(),
            description: String::new(),
            priority: Priority::High,
            tags: vec!["home".into()],
            due_at: Some(at),
            due_date: None,
            reminders: vec![],
            time_zone: TimeZone::UTC,
            recurrence: Some(Recurrence {
                frequency: Frequency::Daily,
                series_id: Uuid::nil(),
                anchor: NaiveDateTime::parse_from_str("2026-03-01 10:00", "%Y-%m-%d %H:%M").ok(),
                occurrence: 0,
            }),
            completed: true,
            completed_at: Some(at),
            version: 2,
            created_at: at,
            updated_at: at,
        };
        TaskEvent::new(EventType::TaskCompleted, task, vec![], Uuid::nil(), at)
    }

    fn cloud_event(data: Value) -> Vec<u8> {
        testing::cloud_event("task.completed", data)
    }

    fn outcome(body: &[u8]) -> SubscriptionOutcome {
        testing::outcome(decode(body))
    }

    #[test]
    fn a_completion_in_a_cloud_event_or_raw_decodes() {
        let event = completed_event();
        assert_eq!(decode(&cloud_event(json_of(&event))), Ok(event.clone()));
        let raw = serde_json::to_vec(&event).unwrap_or_default();
        assert_eq!(decode(&raw), Ok(event));
    }

    #[test]
    fn undecodable_bodies_are_dropped() {
        assert_eq!(outcome(b"not json"), SubscriptionOutcome::Drop);
        assert_eq!(outcome(b"[1,2]"), SubscriptionOutcome::Drop);
        assert_eq!(
            outcome(&cloud_event(json!({"event_id": 1}))),
            SubscriptionOutcome::Drop
        );
        let mut broken = json_of(&completed_event());
        broken["task"]["priority"] = json!("whenever");
        assert_eq!(outcome(&cloud_event(broken)), SubscriptionOutcome::Drop);
    }

    #[test]
    fn unknown_schema_versions_and_other_event_types_are_dropped() {
        for version in [
            json!(0),
            json!(TASK_EVENT_SCHEMA_VERSION + 1),
            json!("1"),
            Value::Null,
        ] {
            let mut e = json_of(&completed_event());
            e["schema_version"] = version;
            assert_eq!(outcome(&cloud_event(e)), SubscriptionOutcome::Drop);
        }
        let mut e = json_of(&completed_event());
        e["event_type"] = json!("task.updated");
        assert_eq!(outcome(&cloud_event(e)), SubscriptionOutcome::Drop);
    }

    #[test]
    fn a_missing_or_malformed_user_id_is_retried() {
        let cases = [
            Value::Null,
            json!(""),
            json!("a/b"),
            json!(42),
            json!("mallory"),
        ];
        for user in cases {
            let mut e = json_of(&completed_event());
            e["user_id"] = user.clone();
            assert_eq!(
                outcome(&cloud_event(e)),
                SubscriptionOutcome::Retry,
                "user_id {user}"
            );
        }
        let mut e = json_of(&completed_event());
        e.as_object_mut().map(|o| o.remove("user_id"));
        assert_eq!(outcome(&cloud_event(e)), SubscriptionOutcome::Retry);
    }

    #[test]
    fn snapshots_the_handler_cannot_use_are_dropped() {
        // The title, description and tags are the database's business, not the event's.
        let mut e = completed_event();
        e.task.title = "x".repeat(500);
        e.task.tags = vec!["Not Normalised".into()];
        assert_eq!(decode(&cloud_event(json_of(&e))), Ok(e));
        let mut e = completed_event();
        e.task.completed = false;
        assert_eq!(
            outcome(&cloud_event(json_of(&e))),
            SubscriptionOutcome::Drop
        );
        let mut e = completed_event();
        if let Some(r) = e.task.recurrence.as_mut() {
            r.occurrence = u32::MAX;
        }
        assert_eq!(
            outcome(&cloud_event(json_of(&e))),
            SubscriptionOutcome::Drop
        );
    }
}
