//! Settings of `recurring-tasks`, from the environment (read, never written).

use service_kit::{Secret, ServiceSettings, env_or, state_store_from_env};

/// The SQLite file `chat-api` uses by default: a local run shares one database.
pub use todo_store::db::DEFAULT_SQLITE_URL;
pub const DEFAULT_PORT: u16 = 3001;
/// The sidecar's gRPC port in `dapr.yaml` (daprd sets `DAPR_GRPC_PORT` for the app anyway).
pub const DEFAULT_DAPR_GRPC_PORT: u16 = 3511;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Host, ports and tokens (defaults: port 3001, the sidecar's gRPC port 3511).
    pub service: ServiceSettings,
    /// `DATABASE_URL` (default: SQLite file `.data/todo.db`, the one `chat-api` migrates).
    pub database_url: Secret,
    /// `DB_MAX_CONNECTIONS` (default 8).
    pub db_max_connections: u32,
    /// `STATE_STORE_NAME` (default `statestore`): where idempotency keys live.
    pub state_store: String,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            service: ServiceSettings::from_env(DEFAULT_PORT, DEFAULT_DAPR_GRPC_PORT)?,
            database_url: Secret::new(env_or("DATABASE_URL", DEFAULT_SQLITE_URL.to_owned())?),
            db_max_connections: env_or("DB_MAX_CONNECTIONS", 8)?,
            state_store: state_store_from_env()?,
        })
    }
}
