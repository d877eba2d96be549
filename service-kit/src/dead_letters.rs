//! Publishing a dead letter again to the topic it came from, with its CloudEvent id, type
//! and partition key, so the consumer's idempotency keeps a replay safe and the user's
//! events stay on one partition.

use std::collections::HashMap;

use crate::{DaprPublisher, PublishError};

/// One event to publish again, as it was kept.
#[derive(Debug, Clone, Copy)]
pub struct Republish<'a> {
    pub topic: &'a str,
    pub partition_key: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    /// The event's data (JSON for this system's events).
    pub payload: &'a str,
}

/// Publishes `event` through `publisher`'s sidecar, within the same deadline as every
/// publish ([`crate::publish::CALL_DEADLINE`]); `Ok` once the broker has it.
pub async fn republish(
    publisher: &DaprPublisher,
    event: Republish<'_>,
) -> Result<(), PublishError> {
    let content_type = if serde_json::from_str::<serde_json::Value>(event.payload).is_ok() {
        "application/json"
    } else {
        "text/plain"
    };
    let mut metadata = HashMap::from([
        ("partitionKey".to_owned(), event.partition_key.to_owned()),
        ("cloudevent.id".to_owned(), event.event_id.to_owned()),
    ]);
    if !event.event_type.is_empty() {
        metadata.insert("cloudevent.type".to_owned(), event.event_type.to_owned());
    }
    publisher
        .publish_event(
            event.topic,
            event.payload.as_bytes().to_vec(),
            content_type,
            metadata,
        )
        .await
}
