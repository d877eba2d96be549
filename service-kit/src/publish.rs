//! Publishing events through the Dapr sidecar (gRPC). The sidecar answers only after the
//! broker acknowledged the message, so `Ok` means the event is durably on the topic.

use std::{collections::HashMap, future::Future, time::Duration};

use dapr::client::{ClientOptions, TonicClientWithAuth};
use tokio::sync::RwLock;
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
}

#[derive(Debug, thiserror::Error)]
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
}

/// Publishes through the Dapr sidecar's gRPC API. Connects lazily and keeps retrying to
/// connect, so a service may start before its sidecar.
pub struct DaprPublisher {
    address: String,
    api_token: Option<Secret>,
    pubsub: String,
    client: RwLock<Option<dapr::Client<TonicClientWithAuth>>>,
}

impl DaprPublisher {
    /// `grpc_port`: the sidecar's gRPC port (`DAPR_GRPC_PORT`).
    pub fn new(grpc_port: u16, api_token: Option<Secret>) -> Self {
        Self {
            address: format!("http://127.0.0.1:{grpc_port}"),
            api_token,
            pubsub: PUBSUB_NAME.to_owned(),
            client: RwLock::new(None),
        }
    }

    async fn client(&self) -> Result<dapr::Client<TonicClientWithAuth>, PublishError> {
        if let Some(c) = self.client.read().await.as_ref() {
            return Ok(c.clone());
        }
        let mut slot = self.client.write().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let mut opts = ClientOptions::new()
            .with_address(self.address.clone())
            .with_timeout(Duration::from_secs(2));
        if let Some(token) = &self.api_token {
            opts = opts.with_api_token(token.expose());
        }
        let client = dapr::Client::from_options(opts)
            .await
            .map_err(|e| PublishError::Unavailable(format!("{} ({e})", self.address)))?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

impl Publisher for DaprPublisher {
    async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), PublishError> {
        let mut client = self.client().await?;
        let metadata = HashMap::from([
            ("partitionKey".to_owned(), event.partition_key.to_owned()),
            ("cloudevent.id".to_owned(), event.event_id.to_string()),
            ("cloudevent.type".to_owned(), event.event_type.to_owned()),
        ]);
        client
            .publish_event(
                self.pubsub.as_str(),
                event.topic,
                "application/json",
                event.payload.to_vec(),
                Some(metadata),
            )
            .await
            .map_err(|e| PublishError::Failed(e.to_string()))
    }
}
