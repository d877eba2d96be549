//! Publishing a dead letter again to the topic it came from, with its CloudEvent id, type
//! and partition key, so the consumer's idempotency keeps a replay safe and the user's
//! events stay on one partition.

use std::{collections::HashMap, time::Duration};

use dapr::dapr::proto::runtime::v1 as dapr_v1;

use crate::{DaprPublisher, PublishError, publish::PUBSUB_NAME};

/// How long one publish may take before the replay gives up.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);

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

/// Publishes `event` through `publisher`'s sidecar; `Ok` once the broker has it.
pub async fn republish(
    publisher: &DaprPublisher,
    event: Republish<'_>,
) -> Result<(), PublishError> {
    let mut client = publisher.client().await?;
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
    let request = dapr_v1::PublishEventRequest {
        pubsub_name: PUBSUB_NAME.to_owned(),
        topic: event.topic.to_owned(),
        data: event.payload.as_bytes().to_vec(),
        data_content_type: content_type.to_owned(),
        metadata,
    };
    match tokio::time::timeout(PUBLISH_DEADLINE, client.publish_event(request)).await {
        Err(_) => Err(PublishError::Unavailable(format!(
            "no answer from the sidecar in {PUBLISH_DEADLINE:?}"
        ))),
        Ok(Err(status)) => Err(PublishError::Failed(status.message().to_owned())),
        Ok(Ok(_)) => Ok(()),
    }
}
