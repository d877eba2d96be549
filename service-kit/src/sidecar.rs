//! The sidecar's gRPC API, shared by everything a service calls daprd for (publishing,
//! the Conversation API): one lazily opened HTTP/2 connection with the API token attached.

use std::time::Duration;

use dapr::{client::ApiTokenInterceptor, dapr::proto::runtime::v1::dapr_client::DaprClient};
use tokio::sync::RwLock;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::Secret;

pub type GrpcClient = DaprClient<InterceptedService<Channel, ApiTokenInterceptor>>;

/// How long connecting to the sidecar may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the sidecar at `127.0.0.1:<grpc port>`, opened on first use and again
/// after it failed to open, so a service may start before its sidecar.
pub struct SidecarClient {
    address: String,
    api_token: Option<Secret>,
    client: RwLock<Option<GrpcClient>>,
}

impl SidecarClient {
    /// `grpc_port`: the sidecar's gRPC port (`DAPR_GRPC_PORT`).
    pub fn new(grpc_port: u16, api_token: Option<Secret>) -> Self {
        Self {
            address: format!("http://127.0.0.1:{grpc_port}"),
            api_token,
            client: RwLock::new(None),
        }
    }

    /// The client; `Err` says why the sidecar cannot be reached (address and cause). The
    /// connection is opened without holding the slot, so callers never queue behind one
    /// another's connection attempts to a sidecar that is down.
    pub async fn client(&self) -> Result<GrpcClient, String> {
        if let Some(c) = self.client.read().await.as_ref() {
            return Ok(c.clone());
        }
        let unavailable = |e: &dyn std::fmt::Display| format!("{} ({e})", self.address);
        let endpoint = Channel::from_shared(self.address.clone())
            .map_err(|e| unavailable(&e))?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect())
            .await
            .map_err(|e| unavailable(&e))?
            .map_err(|e| unavailable(&e))?;
        let token = self.api_token.as_ref().map(|t| t.expose().to_owned());
        let client = DaprClient::with_interceptor(channel, ApiTokenInterceptor::new(token));
        let mut slot = self.client.write().await;
        // Another caller may have connected meanwhile: keep one connection.
        Ok(slot.get_or_insert(client).clone())
    }
}
