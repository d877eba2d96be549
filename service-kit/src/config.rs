//! The settings every service reads alike from the environment ([`ServiceSettings`],
//! [`state_store_from_env`]), and what they build: the listener, the publisher and the
//! idempotency store.

use std::net::{IpAddr, Ipv4Addr};

use crate::{DaprIdempotencyStore, DaprPublisher, Listener, Secret, env_opt, env_or};

/// What every service reads the same way: where it listens, and how it reaches its sidecar
/// and is reached by it.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// `APP_HOST` (default 127.0.0.1; 0.0.0.0 in containers).
    pub host: IpAddr,
    /// `APP_PORT` (default: the service's port in `dapr.yaml`; 0 picks a free port).
    pub port: u16,
    /// `DAPR_GRPC_PORT` (set by daprd; default: the service's sidecar's in `dapr.yaml`).
    pub dapr_grpc_port: u16,
    /// `DAPR_API_TOKEN`: sent on calls to the sidecar when set.
    pub dapr_api_token: Option<Secret>,
    /// `APP_API_TOKEN`: when set, the routes daprd calls (deliveries, bindings) require it
    /// in `dapr-api-token`.
    pub app_api_token: Option<Secret>,
}

impl ServiceSettings {
    /// Reads them, defaulting the ports to this service's in `dapr.yaml`.
    pub fn from_env(default_port: u16, default_dapr_grpc_port: u16) -> anyhow::Result<Self> {
        Ok(Self {
            host: env_or("APP_HOST", IpAddr::V4(Ipv4Addr::LOCALHOST))?,
            port: env_or("APP_PORT", default_port)?,
            dapr_grpc_port: env_or("DAPR_GRPC_PORT", default_dapr_grpc_port)?,
            dapr_api_token: env_opt::<String>("DAPR_API_TOKEN")?.map(Secret::new),
            app_api_token: env_opt::<String>("APP_API_TOKEN")?.map(Secret::new),
        })
    }

    /// For in-process tests: loopback, a free port, no sidecar (port 1), no tokens.
    #[cfg(feature = "testing")]
    pub fn for_tests() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            dapr_grpc_port: 1,
            dapr_api_token: None,
            app_api_token: None,
        }
    }

    /// Binds the service's listener.
    pub async fn listen(&self) -> anyhow::Result<Listener> {
        Listener::bind(self.host, self.port).await
    }

    /// Publishing through the sidecar.
    pub fn publisher(&self) -> DaprPublisher {
        DaprPublisher::new(self.dapr_grpc_port, self.dapr_api_token.clone())
    }

    /// Idempotency keys in the sidecar's state store `store`.
    pub fn idempotency_store(&self, store: &str) -> DaprIdempotencyStore {
        DaprIdempotencyStore::new(self.dapr_grpc_port, self.dapr_api_token.clone(), store)
    }
}

/// `STATE_STORE_NAME` (default [`crate::state::STATE_STORE_NAME`]): the state store
/// component the consumers keep their keys in.
pub fn state_store_from_env() -> anyhow::Result<String> {
    env_or(
        "STATE_STORE_NAME",
        crate::state::STATE_STORE_NAME.to_owned(),
    )
}
