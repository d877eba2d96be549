//! Settings of `notifications`, from the environment (read, never written).

use std::net::{IpAddr, Ipv4Addr};

use service_kit::{Secret, env_opt, env_or, state::STATE_STORE_NAME};

pub const DEFAULT_PORT: u16 = 3002;
/// The sidecar's gRPC port in `dapr.yaml` (daprd sets `DAPR_GRPC_PORT` for the app anyway).
pub const DEFAULT_DAPR_GRPC_PORT: u16 = 50003;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `APP_HOST` (default 127.0.0.1; 0.0.0.0 in containers).
    pub host: IpAddr,
    /// `APP_PORT` (default 3002; 0 picks a free port).
    pub port: u16,
    /// `DAPR_GRPC_PORT` (set by daprd; default 50003).
    pub dapr_grpc_port: u16,
    /// `DAPR_API_TOKEN`: sent on calls to the sidecar when set.
    pub dapr_api_token: Option<Secret>,
    /// `APP_API_TOKEN`: when set, the event route requires it in `dapr-api-token`.
    pub app_api_token: Option<Secret>,
    /// `STATE_STORE_NAME` (default `statestore`): where idempotency keys live.
    pub state_store: String,
    /// `DATABASE_URL` (optional; `cargo xtask up` and the Kubernetes manifests set it): the
    /// tasks database, read to skip reminders of tasks completed, deleted or moved since
    /// the reminder was published, and of deleted accounts. Unset: every reminder is
    /// logged, with a warning at start.
    pub database_url: Option<Secret>,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            host: env_or("APP_HOST", IpAddr::V4(Ipv4Addr::LOCALHOST))?,
            port: env_or("APP_PORT", DEFAULT_PORT)?,
            dapr_grpc_port: env_or("DAPR_GRPC_PORT", DEFAULT_DAPR_GRPC_PORT)?,
            dapr_api_token: env_opt::<String>("DAPR_API_TOKEN")?.map(Secret::new),
            app_api_token: env_opt::<String>("APP_API_TOKEN")?.map(Secret::new),
            state_store: env_or("STATE_STORE_NAME", STATE_STORE_NAME.to_owned())?,
            database_url: env_opt::<String>("DATABASE_URL")?
                .filter(|url| !url.is_empty())
                .map(Secret::new),
        })
    }
}
