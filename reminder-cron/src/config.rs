//! Settings of `reminder-cron`, from the environment (read, never written).

use std::time::Duration;

use anyhow::ensure;
use service_kit::{Secret, ServiceSettings, env_or, state_store_from_env};

/// The SQLite file `chat-api` uses by default: a local run shares one database.
pub use todo_store::db::DEFAULT_SQLITE_URL;
pub const DEFAULT_PORT: u16 = 3003;
/// The sidecar's gRPC port in `dapr.yaml` (daprd sets `DAPR_GRPC_PORT` for the app anyway).
pub const DEFAULT_DAPR_GRPC_PORT: u16 = 3513;
/// The reminder window: tasks due within this much time from now get a reminder.
pub const DEFAULT_WINDOW_SECONDS: u64 = 24 * 3600;
/// How long past its due time a task still gets its reminder (one missed while the service
/// or the broker was down); a task overdue for longer gets none.
pub const DEFAULT_OVERDUE_GRACE_SECONDS: u64 = 3600;
pub const DEFAULT_PAGE_SIZE: u64 = 500;
pub const MAX_PAGE_SIZE: u64 = 10_000;
/// Longest window accepted: the topics keep events for 7 days.
pub const MAX_WINDOW_SECONDS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Host, ports and tokens (defaults: port 3003, the sidecar's gRPC port 3513).
    pub service: ServiceSettings,
    /// `DATABASE_URL` (default: SQLite file `.data/todo.db`, the one `chat-api` migrates).
    /// Only read from; a read-only database role is enough.
    pub database_url: Secret,
    /// `DB_MAX_CONNECTIONS` (default 2: one scan at a time).
    pub db_max_connections: u32,
    /// `STATE_STORE_NAME` (default `statestore`): where reminder claims live.
    pub state_store: String,
    pub scan: ScanSettings,
}

/// What one scan looks at and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanSettings {
    /// `REMINDER_WINDOW_SECONDS` (default 86400): remind of tasks due up to this far ahead.
    pub window: Duration,
    /// `REMINDER_OVERDUE_GRACE_SECONDS` (default 3600): and of tasks overdue by up to this.
    pub overdue_grace: Duration,
    /// `REMINDER_PAGE_SIZE` (default 500): tasks read per query.
    pub page_size: u64,
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(DEFAULT_WINDOW_SECONDS),
            overdue_grace: Duration::from_secs(DEFAULT_OVERDUE_GRACE_SECONDS),
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl ScanSettings {
    /// How long a sent reminder's key is kept: longer than a task can stay in the scanned
    /// range (`overdue_grace` + `window`), plus a day of margin for clock skew between
    /// replicas. A shorter TTL would let a key expire while its task is still in range, and
    /// the task would be reminded a second time.
    pub fn key_ttl(&self) -> Duration {
        self.window + self.overdue_grace + Duration::from_secs(24 * 3600)
    }

    fn check(&self) -> anyhow::Result<()> {
        let window = self.window.as_secs();
        ensure!(
            (1..=MAX_WINDOW_SECONDS).contains(&window),
            "REMINDER_WINDOW_SECONDS={window} must be between 1 and {MAX_WINDOW_SECONDS}"
        );
        let grace = self.overdue_grace.as_secs();
        ensure!(
            grace <= MAX_WINDOW_SECONDS,
            "REMINDER_OVERDUE_GRACE_SECONDS={grace} must be at most {MAX_WINDOW_SECONDS}"
        );
        ensure!(
            (1..=MAX_PAGE_SIZE).contains(&self.page_size),
            "REMINDER_PAGE_SIZE={} must be between 1 and {MAX_PAGE_SIZE}",
            self.page_size
        );
        Ok(())
    }
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let scan = ScanSettings {
            window: Duration::from_secs(env_or("REMINDER_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS)?),
            overdue_grace: Duration::from_secs(env_or(
                "REMINDER_OVERDUE_GRACE_SECONDS",
                DEFAULT_OVERDUE_GRACE_SECONDS,
            )?),
            page_size: env_or("REMINDER_PAGE_SIZE", DEFAULT_PAGE_SIZE)?,
        };
        scan.check()?;
        Ok(Self {
            service: ServiceSettings::from_env(DEFAULT_PORT, DEFAULT_DAPR_GRPC_PORT)?,
            database_url: Secret::new(env_or("DATABASE_URL", DEFAULT_SQLITE_URL.to_owned())?),
            db_max_connections: env_or("DB_MAX_CONNECTIONS", 2)?,
            state_store: state_store_from_env()?,
            scan,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scan_covers_a_day_ahead_and_an_hour_overdue() {
        let s = ScanSettings::default();
        assert!(s.check().is_ok());
        assert_eq!(s.window, Duration::from_secs(86_400));
        assert_eq!(s.overdue_grace, Duration::from_secs(3_600));
        assert_eq!(s.key_ttl(), Duration::from_secs(86_400 + 3_600 + 86_400));
    }

    #[test]
    fn out_of_range_scan_settings_are_refused_with_the_variable_named() {
        let bad = [
            ScanSettings {
                window: Duration::ZERO,
                ..ScanSettings::default()
            },
            ScanSettings {
                window: Duration::from_secs(MAX_WINDOW_SECONDS + 1),
                ..ScanSettings::default()
            },
            ScanSettings {
                page_size: 0,
                ..ScanSettings::default()
            },
            ScanSettings {
                page_size: MAX_PAGE_SIZE + 1,
                ..ScanSettings::default()
            },
            ScanSettings {
                overdue_grace: Duration::from_secs(MAX_WINDOW_SECONDS + 1),
                ..ScanSettings::default()
            },
        ];
        for s in bad {
            let err = s.check().expect_err("refused").to_string();
            assert!(err.starts_with("REMINDER_"), "{err}");
        }
    }
}
