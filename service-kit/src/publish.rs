//! Publishing events through the Dapr sidecar (gRPC). The sidecar answers only after the
//! broker acknowledged the message, so `Ok` means the event is durably on the topic.
//!
//! Single events go through `PublishEvent`; [`Publisher::publish_all`] sends several events
//! of *different* partition keys in one `BulkPublishEvent` call (stable since daprd 1.17;
//! an older sidecar answers it as unimplemented, and then gets `BulkPublishEventAlpha1`,
//! which runs the same code). The Kafka component hands a bulk request to the producer as
//! one batch, which saves the per-call work in the sidecar, but a bulk request is neither
//! ordered nor transactional: two events of one key in one request could swap on a partial
//! failure, hence at most one event per key. daprd (1.16 to 1.18) answers a bulk request to
//! Kafka with an error as soon as any entry failed (some entries may have been written):
//! callers treat every entry of a failed request as not published and publish it again,
//! which consumers absorb by event id.

use std::{collections::HashMap, future::Future, time::Duration};

use dapr::dapr::proto::runtime::v1 as dapr_v1;
use uuid::Uuid;

use crate::Secret;

/// Name of the pub/sub component in `components/`.
pub const PUBSUB_NAME: &str = "pubsub";

/// One event to publish.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingEvent<'a> {
    pub topic: &'a str,
    /// Kafka record key: events with the same key keep their order.
    pub partition_key: &'a str,
    /// Also the CloudEvent id, so a redelivered event is recognisably the same one.
    pub event_id: Uuid,
    pub event_type: &'a str,
    /// JSON.
    pub payload: &'a [u8],
    /// The W3C trace context the event belongs to: daprd puts it into the CloudEvent
    /// (`traceparent`), where the consumers continue the trace.
    pub traceparent: Option<&'a str>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The sidecar could not be reached (not started yet, restarting).
    #[error("dapr sidecar unreachable: {0}")]
    Unavailable(String),
    /// The sidecar answered with an error (broker down, topic missing, ...).
    #[error("publish failed: {0}")]
    Failed(String),
}

/// Something events can be published through. The relay is generic over it so in-process
/// tests can stop at this boundary.
pub trait Publisher: Send + Sync + 'static {
    fn publish(
        &self,
        event: OutgoingEvent<'_>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Publishes `events`, which must all have different partition keys, in one call where
    /// the publisher can, and answers one result per event, in order. No order holds between
    /// them, and a failed call may still have written some of them. The default publishes
    /// them one after another.
    /// Whether the sidecar answers a call that publishes nothing, within a short time. After
    /// calls that got no answer, the caller asks this before it publishes again, so it does
    /// not queue publishes in a sidecar that is frozen (which would write them whenever it
    /// resumes, possibly after another replica published newer events). Default: yes.
    fn answers(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }

    fn publish_all(
        &self,
        events: &[OutgoingEvent<'_>],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        async move {
            let mut results = Vec::with_capacity(events.len());
            for event in events {
                results.push(self.publish(*event).await);
            }
            results
        }
    }
}

use crate::sidecar::{CONNECT_TIMEOUT, GrpcClient, SidecarClient};

/// How long one publish call may take before it counts as unanswered. daprd bounds its own
/// broker call (`components/resiliency.yaml`: 10 s) and answers with an error after it, so
/// a call still open after this means the sidecar itself is stuck (frozen, overloaded): the
/// caller must not wait for it, and treats it as unreachable.
pub const CALL_DEADLINE: Duration = Duration::from_secs(12);

/// `call`, or [`PublishError::Unavailable`] when it has not answered within [`CALL_DEADLINE`].
async fn within_deadline<T>(
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, PublishError> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(answer) => answer.map_err(|s| call_error(&s)),
        Err(_) => Err(deadline_passed()),
    }
}

fn deadline_passed() -> PublishError {
    PublishError::Unavailable(format!(
        "the sidecar did not answer within {} s",
        CALL_DEADLINE.as_secs()
    ))
}

/// Publishes through the Dapr sidecar's gRPC API. Connects lazily and keeps retrying to
/// connect, so a service may start before its sidecar. All calls share one HTTP/2
/// connection.
pub struct DaprPublisher {
    sidecar: SidecarClient,
    pubsub: String,
    /// Set once the sidecar answered `BulkPublishEvent` as unimplemented (daprd before
    /// 1.17): bulk calls then use `BulkPublishEventAlpha1`, which it serves with the same
    /// code.
    bulk_alpha: std::sync::atomic::AtomicBool,
}

impl DaprPublisher {
    /// `grpc_port`: the sidecar's gRPC port (`DAPR_GRPC_PORT`).
    pub fn new(grpc_port: u16, api_token: Option<Secret>) -> Self {
        Self {
            sidecar: SidecarClient::new(grpc_port, api_token),
            pubsub: PUBSUB_NAME.to_owned(),
            bulk_alpha: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn client(&self) -> Result<GrpcClient, PublishError> {
        self.sidecar
            .client()
            .await
            .map_err(PublishError::Unavailable)
    }

    /// One `PublishEvent` call: `data` to `topic` with `metadata` (partition key, CloudEvent
    /// id and type), answered within [`CALL_DEADLINE`]. `Ok` once the broker has it.
    pub async fn publish_event(
        &self,
        topic: &str,
        data: Vec<u8>,
        content_type: &str,
        metadata: HashMap<String, String>,
    ) -> Result<(), PublishError> {
        let mut client = self.client().await?;
        let request = dapr_v1::PublishEventRequest {
            pubsub_name: self.pubsub.clone(),
            topic: topic.to_owned(),
            data,
            data_content_type: content_type.to_owned(),
            metadata,
        };
        within_deadline(client.publish_event(request))
            .await
            .map(drop)
    }

    /// The deprecated bulk call, for daprd before 1.17.
    async fn bulk_alpha1(
        client: &mut GrpcClient,
        request: dapr_v1::BulkPublishRequest,
    ) -> Result<tonic::Response<dapr_v1::BulkPublishResponse>, PublishError> {
        #[allow(deprecated)]
        within_deadline(client.bulk_publish_event_alpha1(request)).await
    }

    fn metadata(event: &OutgoingEvent<'_>) -> HashMap<String, String> {
        let mut metadata = HashMap::from([
            ("partitionKey".to_owned(), event.partition_key.to_owned()),
            ("cloudevent.id".to_owned(), event.event_id.to_string()),
            ("cloudevent.type".to_owned(), event.event_type.to_owned()),
        ]);
        if let Some(traceparent) = event.traceparent {
            metadata.insert(
                crate::trace::CLOUDEVENT_TRACEPARENT.to_owned(),
                traceparent.to_owned(),
            );
        }
        metadata
    }
}

fn call_error(status: &tonic::Status) -> PublishError {
    match status.code() {
        tonic::Code::Unavailable => PublishError::Unavailable(status.message().to_owned()),
        _ => PublishError::Failed(format!("{:?}: {}", status.code(), status.message())),
    }
}

impl Publisher for DaprPublisher {
    async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), PublishError> {
        self.publish_event(
            event.topic,
            event.payload.to_vec(),
            "application/json",
            Self::metadata(&event),
        )
        .await
    }

    async fn answers(&self) -> bool {
        let Ok(mut client) = self.client().await else {
            return false;
        };
        matches!(
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                client.get_metadata(dapr_v1::GetMetadataRequest {})
            )
            .await,
            Ok(Ok(_))
        )
    }

    async fn publish_all(&self, events: &[OutgoingEvent<'_>]) -> Vec<Result<(), PublishError>> {
        if events.len() == 1 {
            return vec![self.publish(events[0]).await];
        }
        let mut by_topic: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            by_topic.entry(event.topic).or_default().push(i);
        }
        let mut results: Vec<Result<(), PublishError>> = vec![Ok(()); events.len()];
        let mut client = match self.client().await {
            Ok(c) => c,
            Err(e) => return vec![Err(e); events.len()],
        };
        for (topic, indices) in by_topic {
            let request = dapr_v1::BulkPublishRequest {
                pubsub_name: self.pubsub.clone(),
                topic: topic.to_owned(),
                entries: indices
                    .iter()
                    .map(|&i| dapr_v1::BulkPublishRequestEntry {
                        // Unique within the request; daprd reports failed entries by it.
                        entry_id: i.to_string(),
                        event: events[i].payload.to_vec(),
                        content_type: "application/json".to_owned(),
                        metadata: Self::metadata(&events[i]),
                    })
                    .collect(),
                // Nothing request-wide: the Kafka component copies request metadata over
                // each entry's, which would give every entry the same key.
                metadata: HashMap::new(),
            };
            let answer = if self.bulk_alpha.load(std::sync::atomic::Ordering::Relaxed) {
                Self::bulk_alpha1(&mut client, request).await
            } else {
                match tokio::time::timeout(
                    CALL_DEADLINE,
                    client.bulk_publish_event(request.clone()),
                )
                .await
                {
                    Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                        self.bulk_alpha
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        Self::bulk_alpha1(&mut client, request).await
                    }
                    Ok(answer) => answer.map_err(|s| call_error(&s)),
                    Err(_) => Err(deadline_passed()),
                }
            };
            match answer {
                Ok(response) => {
                    for failed in response.into_inner().failed_entries {
                        if let Some(i) = failed
                            .entry_id
                            .parse::<usize>()
                            .ok()
                            .filter(|i| indices.contains(i))
                        {
                            results[i] = Err(PublishError::Failed(failed.error));
                        }
                    }
                }
                Err(error) => {
                    for &i in &indices {
                        results[i] = Err(error.clone());
                    }
                }
            }
        }
        results
    }
}
