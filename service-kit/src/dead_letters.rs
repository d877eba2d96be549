//! Replaying a dead-letter topic: every event in it is published again to the topic it came
//! from, with its CloudEvent id, type and partition key (the event's `user_id`), so the
//! consumer's idempotency keeps a replay safe and per-user order holds among the replayed.
//!
//! It reads the dead-letter topic through the sidecar's streaming subscription
//! (`SubscribeTopicEventsAlpha1`, no app port needed) in the sidecar's consumer group, so an
//! event is replayed once: its offset is committed only after its copy is on the target
//! topic. It stops when nothing has arrived for `idle`. A copy that cannot be published stops
//! the replay with an error; that event and the ones after it stay in the dead-letter topic
//! for the next run.

use std::{collections::HashMap, time::Duration};

use dapr::dapr::proto::runtime::v1::{
    self as dapr_v1, subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType,
    subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType,
    topic_event_response::TopicEventResponseStatus,
};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use crate::{DaprPublisher, Secret, publish::PUBSUB_NAME};

/// How long one publish may take before the replay gives up.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Events published again to the target topic.
    pub republished: u64,
    /// Event types seen, with their counts.
    pub by_type: HashMap<String, u64>,
}

/// Publishes every event of `dead_letters` to `target`, through the sidecar whose gRPC port
/// is `grpc_port`, until no event has arrived for `idle`.
pub async fn replay(
    grpc_port: u16,
    api_token: Option<Secret>,
    dead_letters: &str,
    target: &str,
    idle: Duration,
) -> anyhow::Result<Replayed> {
    use anyhow::Context as _;

    let publisher = DaprPublisher::new(grpc_port, api_token);
    let mut client = publisher
        .client()
        .await
        .context("cannot reach the sidecar (DAPR_GRPC_PORT)")?;
    let (requests, outgoing) = tokio::sync::mpsc::channel(16);
    let initial = dapr_v1::SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(SubscribeTopicEventsRequestType::InitialRequest(
            dapr_v1::SubscribeTopicEventsRequestInitialAlpha1 {
                pubsub_name: PUBSUB_NAME.to_owned(),
                topic: dead_letters.to_owned(),
                metadata: HashMap::new(),
                dead_letter_topic: None,
            },
        )),
    };
    requests.send(initial).await.context("subscribing")?;
    let mut incoming = client
        .subscribe_topic_events_alpha1(ReceiverStream::new(outgoing))
        .await
        .with_context(|| format!("the sidecar refused a subscription to {dead_letters}"))?
        .into_inner();

    let mut done = Replayed::default();
    loop {
        let message = match tokio::time::timeout(idle, incoming.message()).await {
            Err(_) => break,
            Ok(message) => message.context("the subscription stream failed")?,
        };
        let Some(message) = message else { break };
        let Some(SubscribeTopicEventsResponseType::EventMessage(event)) =
            message.subscribe_topic_events_response_type
        else {
            continue;
        };
        let key = partition_key(&event.data).unwrap_or_else(|| event.id.clone());
        let request = dapr_v1::PublishEventRequest {
            pubsub_name: PUBSUB_NAME.to_owned(),
            topic: target.to_owned(),
            data: event.data.clone(),
            data_content_type: if event.data_content_type.is_empty() {
                "application/json".to_owned()
            } else {
                event.data_content_type.clone()
            },
            metadata: HashMap::from([
                ("partitionKey".to_owned(), key),
                ("cloudevent.id".to_owned(), event.id.clone()),
                ("cloudevent.type".to_owned(), event.r#type.clone()),
            ]),
        };
        tokio::time::timeout(PUBLISH_DEADLINE, client.publish_event(request))
            .await
            .map_err(|_| anyhow::anyhow!("no answer from the sidecar in {PUBLISH_DEADLINE:?}"))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| format!("publishing event {} to {target}", event.id))?;
        let processed = dapr_v1::SubscribeTopicEventsRequestAlpha1 {
            subscribe_topic_events_request_type: Some(
                SubscribeTopicEventsRequestType::EventProcessed(
                    dapr_v1::SubscribeTopicEventsRequestProcessedAlpha1 {
                        id: event.id.clone(),
                        status: Some(dapr_v1::TopicEventResponse {
                            status: TopicEventResponseStatus::Success as i32,
                        }),
                    },
                ),
            ),
        };
        requests
            .send(processed)
            .await
            .context("acknowledging a replayed event")?;
        done.republished += 1;
        *done.by_type.entry(event.r#type).or_default() += 1;
        tracing::info!(event_id = %event.id, target, "dead letter published again");
    }
    // Closing the request stream ends the subscription after the last acknowledgement.
    drop(requests);
    Ok(done)
}

/// The `user_id` of an event's JSON data: its partition key when it was first published.
fn partition_key(data: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    value
        .get("user_id")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_key_is_the_events_user_or_nothing() {
        assert_eq!(
            partition_key(br#"{"user_id":"alice","task":{}}"#),
            Some("alice".to_owned())
        );
        assert_eq!(partition_key(br#"{"user_id":""}"#), None);
        assert_eq!(partition_key(br#"{"user_id":7}"#), None);
        assert_eq!(partition_key(b"not json"), None);
    }
}
