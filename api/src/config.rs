//! Settings from the environment. Every variable is documented in docs/operations.md.

use anyhow::bail;
use std::time::Duration;

use service_kit::{Secret, ServiceSettings, env_in, env_opt, env_or};

use relay::RelayConfig;

pub const DEFAULT_PORT: u16 = 3000;
/// The sidecar's gRPC port in `dapr.yaml` (daprd sets `DAPR_GRPC_PORT` for the app anyway).
pub const DEFAULT_DAPR_GRPC_PORT: u16 = 3510;

/// Shortest JWT secret accepted (HS256 wants at least 256 bits of key).
pub const JWT_SECRET_MIN_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Host, ports and tokens (defaults: port 3000, the sidecar's gRPC port 3510).
    /// `APP_API_TOKEN`, when set, is required on the dead-letter routes (daprd's deliveries).
    pub service: ServiceSettings,
    /// `DATABASE_URL` (default: SQLite file `.data/todo.db`).
    pub database_url: Secret,
    /// `DB_MAX_CONNECTIONS` (default 16, 1 to 1000): the requests' pool (the relay has its own).
    pub db_max_connections: u32,
    /// `MIGRATE_ON_START` (default false): apply migrations before serving.
    pub migrate: bool,
    /// `JWT_SECRET` (required, at least 32 bytes).
    pub jwt_secret: Secret,
    /// `RELAY_ENABLED` (default true).
    pub relay_enabled: bool,
    /// `RELAY_BATCH_SIZE` (1000; 1 to 100000): events read per round.
    /// `RELAY_CONCURRENCY` (32; 1 to 1024): publish calls in flight.
    /// `RELAY_BULK_SIZE` (256; 1 to 1000): events per bulk call, 1 for single publishes.
    /// `RELAY_PER_USER` (32; 1 to the batch size): one user's events per round at most.
    /// `RELAY_PARK_AFTER` (10; 1 to 1000): refusals before an event is parked.
    /// `RELAY_STALL_AFTER_SECONDS` (15; 13 to 3600): no progress this long is a stall; above
    /// the sidecar call's deadline (12 s), so one slow call is not one.
    pub relay: RelayConfig,
    /// `CHAT_COMPONENT`, `CHAT_MAX_STEPS`, `CHAT_TURN_TIMEOUT_SECONDS`,
    /// `CHAT_HISTORY_MESSAGES`: see [`crate::chat_model::ChatSettings`].
    pub chat: crate::chat_model::ChatSettings,
}

pub use todo_store::db::DEFAULT_SQLITE_URL;

/// `DATABASE_URL` (default [`DEFAULT_SQLITE_URL`]); for SQLite, the file's directory is
/// created. All that `chat-api migrate` needs.
pub fn database_url_from_env() -> anyhow::Result<Secret> {
    let database_url: String = env_or("DATABASE_URL", DEFAULT_SQLITE_URL.to_owned())?;
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(parent) = std::path::Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(Secret::new(database_url))
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let jwt_secret: Option<String> = env_opt("JWT_SECRET")?;
        let Some(jwt_secret) = jwt_secret else {
            bail!(
                "JWT_SECRET is not set: set it to a random string of at least {JWT_SECRET_MIN_BYTES} bytes (the secret that signs the API's bearer tokens)"
            );
        };
        if jwt_secret.len() < JWT_SECRET_MIN_BYTES {
            bail!("JWT_SECRET is too short: use at least {JWT_SECRET_MIN_BYTES} bytes");
        }
        Ok(Self {
            service: ServiceSettings::from_env(DEFAULT_PORT, DEFAULT_DAPR_GRPC_PORT)?,
            database_url: database_url_from_env()?,
            db_max_connections: env_in(
                "DB_MAX_CONNECTIONS",
                16,
                1..=1000,
                "connections in the requests' pool",
            )?,
            migrate: env_or("MIGRATE_ON_START", false)?,
            jwt_secret: Secret::new(jwt_secret),
            relay_enabled: env_or("RELAY_ENABLED", true)?,
            relay: relay_from_env()?,
            chat: crate::chat_model::ChatSettings::from_env()?,
        })
    }
}

/// The `RELAY_*` settings (see [`Settings::relay`]), each checked against its range.
fn relay_from_env() -> anyhow::Result<RelayConfig> {
    let defaults = RelayConfig::default();
    let batch_size = env_in(
        "RELAY_BATCH_SIZE",
        defaults.batch_size,
        1..=100_000,
        "events the relay reads from the outbox per round",
    )?;
    let per_user_max = usize::try_from(batch_size).unwrap_or(usize::MAX);
    Ok(RelayConfig {
        batch_size,
        concurrency: env_in(
            "RELAY_CONCURRENCY",
            defaults.concurrency,
            1..=1024,
            "publish calls in flight",
        )?,
        // Bytes are bounded separately (1 MiB per call); this bounds the count, so one call
        // stays well inside the sidecar's 4 MiB gRPC message limit.
        bulk_size: env_in(
            "RELAY_BULK_SIZE",
            defaults.bulk_size,
            1..=1000,
            "events per bulk publish call, 1 for single publishes",
        )?,
        per_user: env_in(
            "RELAY_PER_USER",
            defaults.per_user.min(per_user_max),
            1..=per_user_max,
            "one user's events per round at most, up to RELAY_BATCH_SIZE",
        )?,
        park_after: env_in(
            "RELAY_PARK_AFTER",
            defaults.park_after,
            1..=1000,
            "refusals by the broker before an event is parked",
        )?,
        stall_after: Duration::from_secs(env_in(
            "RELAY_STALL_AFTER_SECONDS",
            defaults.stall_after.as_secs(),
            service_kit::publish::CALL_DEADLINE.as_secs() + 1..=3600,
            "seconds without progress before the watchdog restarts the relay",
        )?),
        ..defaults
    })
}
