use std::time::Duration;

use sea_orm::{sqlx, ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

/// Opens a pool. SQLite URLs get `mode=rwc` (create the file) and WAL with a busy timeout so
/// readers never block the writer; PostgreSQL gets a bounded pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let is_sqlite = url.starts_with("sqlite:");
    let url = if is_sqlite && !url.contains("mode=") && !url.contains(":memory:") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_owned()
    };
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(if is_sqlite { 1.max(max_connections.min(4)) } else { max_connections })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    if is_sqlite {
        // Per connection, not once per pool: every connection must wait for the writer
        // instead of failing with "database is locked".
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        });
    }
    Database::connect(opts).await
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    sea_migrations::Migrator::up(db, None).await
}
