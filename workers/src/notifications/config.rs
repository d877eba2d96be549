//! Settings of `notifications`, from the environment (read, never written).

use service_kit::{Secret, ServiceSettings, env_opt, state_store_from_env};

pub const DEFAULT_PORT: u16 = 3002;
/// The sidecar's gRPC port in `dapr.yaml` (daprd sets `DAPR_GRPC_PORT` for the app anyway).
pub const DEFAULT_DAPR_GRPC_PORT: u16 = 3512;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Host, ports and tokens (defaults: port 3002, the sidecar's gRPC port 3512).
    pub service: ServiceSettings,
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
            service: ServiceSettings::from_env(DEFAULT_PORT, DEFAULT_DAPR_GRPC_PORT)?,
            state_store: state_store_from_env()?,
            database_url: env_opt::<String>("DATABASE_URL")?
                .filter(|url| !url.is_empty())
                .map(Secret::new),
        })
    }
}
