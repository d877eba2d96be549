//! What reached a dead-letter topic, kept where an operator can see and replay it.
//!
//! chat-api's sidecar delivers everything published to `task-events-dlq` and
//! `reminders-dlq` (`components/subscription-chat-api-dead-letters.yaml`) to
//! `POST /dead-letters/{dead-letter topic}`, which keeps one row per (topic, event id) in
//! `dead_letters` and answers `SUCCESS`. `/relay/status` counts the rows not replayed per
//! topic; `chat-api dlq list` shows them and `chat-api dlq replay` publishes them again to
//! their topic with their CloudEvent id, type and user as the key (consumers skip what they
//! handled before, by id), then marks them replayed.
//!
//! Nothing is lost here: a body that is not a CloudEvent is kept whole under an id derived
//! from its bytes; fields of any length are kept (text columns); a database that cannot
//! take the row answers `RETRY` (retried until it can). Without `APP_API_TOKEN` the routes
//! take deliveries from anyone who reaches the port (a warning at start says so): every
//! deployment this project ships sets it.

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Path, State},
    middleware,
    routing::post,
};
use chrono::Utc;
use serde_json::Value;
use service_kit::{SubscriptionOutcome, require_dapr_token};
use todo_domain::topics;

use crate::state::AppState;

/// The dead-letter topics this service keeps, and the topic each one's events came from.
pub const DEAD_LETTER_TOPICS: [(&str, &str); 2] = [
    (topics::TASK_EVENTS_DLQ, topics::TASK_EVENTS),
    (topics::REMINDERS_DLQ, topics::REMINDERS),
];

/// The largest dead letter kept: above Kafka's default message size, so every message the
/// broker accepted fits.
const MAX_DEAD_LETTER_BYTES: usize = 4 * 1024 * 1024;

/// The topic `dead_letters`' events came from, for a dead-letter topic this service keeps.
pub fn origin_of(dead_letters: &str) -> Option<&'static str> {
    DEAD_LETTER_TOPICS
        .iter()
        .find(|(dlq, _)| *dlq == dead_letters)
        .map(|(_, topic)| *topic)
}

/// Every dead-letter topic this service keeps, with how many of its events are held (not
/// replayed): 0 for a topic with none. For `/relay/status` and `chat-api dlq list`.
pub async fn held_per_topic(
    store: &todo_store::DeadLetterStore,
) -> Result<Vec<(&'static str, u64)>, todo_store::StoreError> {
    let held = store.held().await?;
    Ok(DEAD_LETTER_TOPICS
        .iter()
        .map(|(dlq, _)| {
            let n = held.iter().find(|(t, _)| t == dlq).map_or(0, |(_, n)| *n);
            (*dlq, n)
        })
        .collect())
}

/// `POST /dead-letters/{topic}`, token-checked when `APP_API_TOKEN` is set.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/dead-letters/{topic}", post(receive))
        .layer(DefaultBodyLimit::disable())
        .route_layer(middleware::from_fn_with_state(
            state.app_api_token.clone(),
            require_dapr_token,
        ))
}

/// One dead letter as kept: id, type, partition key and the event's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub event_id: String,
    pub event_type: String,
    pub partition_key: String,
    pub payload: String,
}

/// Reads a delivered dead letter. A CloudEvent gives its id, type and data (the data's
/// `user_id` is the key it was published with); anything else is kept whole.
pub fn parse(body: &[u8]) -> Kept {
    let kept = parse_raw(body);
    // PostgreSQL's text cannot hold NUL; nothing of this system's events has one.
    let clean = |s: String| {
        if s.contains('\0') {
            s.replace('\0', "\u{FFFD}")
        } else {
            s
        }
    };
    Kept {
        event_id: clean(kept.event_id),
        event_type: clean(kept.event_type),
        partition_key: clean(kept.partition_key),
        payload: clean(kept.payload),
    }
}

fn parse_raw(body: &[u8]) -> Kept {
    // Derived from the bytes, so a redelivery of the same body is the same row.
    let generated = || uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, body).to_string();
    let Ok(Value::Object(envelope)) = serde_json::from_slice::<Value>(body) else {
        return Kept {
            event_id: generated(),
            event_type: String::new(),
            partition_key: String::new(),
            payload: String::from_utf8_lossy(body).into_owned(),
        };
    };
    let text = |key: &str| {
        envelope
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let event_id = text("id").unwrap_or_else(generated);
    let data = envelope.get("data");
    let payload = match data {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let partition_key = data
        .and_then(|d| d.get("user_id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map_or_else(|| event_id.clone(), str::to_owned);
    Kept {
        event_type: text("type").unwrap_or_default(),
        event_id,
        partition_key,
        payload,
    }
}

async fn receive(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    body: Body,
) -> SubscriptionOutcome {
    if origin_of(&topic).is_none() {
        tracing::error!(
            topic,
            "a dead letter from a topic this service does not keep; dropped"
        );
        return SubscriptionOutcome::Drop;
    }
    let bytes = match axum::body::to_bytes(body, MAX_DEAD_LETTER_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(topic, error = %e, "a dead letter that cannot be read; dropped");
            return SubscriptionOutcome::Drop;
        }
    };
    let kept = parse(&bytes);
    match state
        .dead_letters
        .record(
            &topic,
            &kept.event_id,
            &kept.event_type,
            &kept.partition_key,
            &kept.payload,
            Utc::now(),
        )
        .await
    {
        Ok(()) => {
            tracing::warn!(
                topic,
                event_id = kept.event_id,
                event_type = kept.event_type,
                "dead letter kept; `chat-api dlq list` shows it, `chat-api dlq replay {topic}` publishes it again"
            );
            SubscriptionOutcome::Success
        }
        Err(e) => {
            tracing::error!(topic, error = %e, "cannot keep a dead letter; will retry");
            SubscriptionOutcome::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_event_gives_its_id_type_data_and_user_key() {
        let body = br#"{"specversion":"1.0","id":"e1","type":"task.completed","topic":"task-events","data":{"user_id":"ann","x":1}}"#;
        let kept = parse(body);
        assert_eq!(kept.event_id, "e1");
        assert_eq!(kept.event_type, "task.completed");
        assert_eq!(kept.partition_key, "ann");
        let data: Value = serde_json::from_str(&kept.payload).unwrap_or_default();
        assert_eq!(data["x"], 1);
    }

    #[test]
    fn anything_else_is_kept_whole_under_a_generated_id() {
        let kept = parse(b"not json at all");
        assert_eq!(kept.payload, "not json at all");
        assert!(uuid::Uuid::parse_str(&kept.event_id).is_ok());
        assert_eq!(
            parse(b"not json at all").event_id,
            kept.event_id,
            "same bytes, same id"
        );
        assert!(!parse(b"nul\0inside").payload.contains('\0'));
        assert_eq!(kept.partition_key, "");
        let no_user = parse(br#"{"id":"e2","data":"plain"}"#);
        assert_eq!(no_user.payload, "plain");
        assert_eq!(no_user.partition_key, "e2");
    }

    #[test]
    fn only_the_known_dead_letter_topics_are_kept() {
        assert_eq!(origin_of("task-events-dlq"), Some("task-events"));
        assert_eq!(origin_of("reminders-dlq"), Some("reminders"));
        assert_eq!(origin_of("task-events"), None);
    }
}
