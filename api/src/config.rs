//! Settings from the environment. Every variable is documented in the README.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::bail;
use service_kit::{Secret, env_opt, env_or};

use crate::relay::RelayConfig;

/// Shortest JWT secret accepted (HS256 wants at least 256 bits of key).
pub const JWT_SECRET_MIN_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `APP_HOST` (default 127.0.0.1; 0.0.0.0 in containers).
    pub host: IpAddr,
    /// `APP_PORT` (default 3000; 0 picks a free port).
    pub port: u16,
    /// `DATABASE_URL` (default: SQLite file `.data/todo.db`).
    pub database_url: Secret,
    /// `DB_MAX_CONNECTIONS` (default 16).
    pub db_max_connections: u32,
    /// `MIGRATE_ON_START` (default false): apply migrations before serving.
    pub migrate: bool,
    /// `JWT_SECRET` (required, at least 32 bytes).
    pub jwt_secret: Secret,
    /// `DAPR_GRPC_PORT` (set by daprd; default 50001).
    pub dapr_grpc_port: u16,
    /// `DAPR_API_TOKEN`: sent on calls to the sidecar when set.
    pub dapr_api_token: Option<Secret>,
    /// `RELAY_ENABLED` (default true).
    pub relay_enabled: bool,
    pub relay: RelayConfig,
}

pub const DEFAULT_SQLITE_URL: &str = "sqlite://.data/todo.db";

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
        let defaults = RelayConfig::default();
        Ok(Self {
            host: env_or("APP_HOST", IpAddr::V4(Ipv4Addr::LOCALHOST))?,
            port: env_or("APP_PORT", 3000)?,
            database_url: database_url_from_env()?,
            db_max_connections: env_or("DB_MAX_CONNECTIONS", 16)?,
            migrate: env_or("MIGRATE_ON_START", false)?,
            jwt_secret: Secret::new(jwt_secret),
            dapr_grpc_port: env_or("DAPR_GRPC_PORT", 50001)?,
            dapr_api_token: env_opt::<String>("DAPR_API_TOKEN")?.map(Secret::new),
            relay_enabled: env_or("RELAY_ENABLED", true)?,
            relay: RelayConfig {
                batch_size: env_or("RELAY_BATCH_SIZE", defaults.batch_size)?,
                concurrency: env_or("RELAY_CONCURRENCY", defaults.concurrency)?,
                bulk_size: env_or("RELAY_BULK_SIZE", defaults.bulk_size)?,
                ..defaults
            },
        })
    }
}
