use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, sqlx, sqlx::Connection as _};
use sea_orm_migration::MigratorTrait;

/// Where the services keep their tasks unless `DATABASE_URL` says otherwise: a SQLite file
/// in the checkout's `.data/` (the local system's default; `chat-api` migrates it).
pub const DEFAULT_SQLITE_URL: &str = "sqlite://.data/todo.db";

/// Opens a pool. SQLite URLs get `mode=rwc` (create the file) and WAL with a busy timeout so
/// readers never block the writer; PostgreSQL gets a bounded pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    open(url, max_connections, Role::ReadWrite).await
}

/// Connections the outbox relay uses: reading a batch while marking the previous one.
pub const RELAY_POOL_SIZE: u32 = 2;

/// How long a relay statement waits for a row lock (PostgreSQL `lock_timeout`), and how long
/// it may run at all (`statement_timeout`): a relay statement that cannot proceed fails and
/// is retried, so nobody else's transaction can hold the relay indefinitely.
pub const RELAY_LOCK_TIMEOUT: Duration = Duration::from_secs(2);
pub const RELAY_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the outbox relay's own small pool ([`RELAY_POOL_SIZE`]): requests never wait for
/// the relay's connections and the relay never waits for theirs, and on PostgreSQL its
/// statements give up on locks after [`RELAY_LOCK_TIMEOUT`].
///
/// The relay runs single statements only, never a transaction, so on PostgreSQL:
/// - a connection coming back is checked by the driver's own count alone, without the
///   round trip of [`released_cleanly`] (which would double the relay's statements): no
///   `BEGIN` is ever sent on it;
/// - its commits do not wait for the WAL flush (`synchronous_commit=off`): what it writes
///   is the removal of published events and the score of failed ones. A server crash can
///   lose the last few hundred milliseconds of them, never out of order (the WAL is flushed
///   in order, so what is lost is everything after some point): those events are
///   published again, in their order, and the consumers skip them by event id, as after a
///   crash of the relay between a publish and its mark.
pub async fn connect_relay(url: &str) -> Result<DatabaseConnection, DbErr> {
    open(url, RELAY_POOL_SIZE, Role::Relay).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    ReadWrite,
    ReadOnly,
    Relay,
}

/// How long PostgreSQL lets a session sit idle inside a transaction before it ends the
/// session (`idle_in_transaction_session_timeout`). The pool never hands out a connection
/// it finds inside a transaction; this is the server's backstop for a transaction whose
/// owner went away without the pool noticing, so it cannot hold row locks for long.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a pool that cannot write, for services that only read tasks (`reminder-cron`):
/// PostgreSQL sessions start with `default_transaction_read_only=on`, SQLite connections
/// with `PRAGMA query_only`. A deployment should give such a service a read-only role as
/// well; this makes a stray write fail even where it has not.
pub async fn connect_read_only(
    url: &str,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    open(url, max_connections, Role::ReadOnly).await
}

async fn open(url: &str, max_connections: u32, role: Role) -> Result<DatabaseConnection, DbErr> {
    let read_only = role == Role::ReadOnly;
    let is_sqlite = url.starts_with("sqlite:");
    let url = if is_sqlite && !url.contains("mode=") && !url.contains(":memory:") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_owned()
    };
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(if is_sqlite {
        1.max(max_connections.min(4))
    } else {
        max_connections
    })
    .min_connections(1)
    .connect_timeout(Duration::from_secs(5))
    .acquire_timeout(Duration::from_secs(5))
    .sqlx_logging(false);
    if is_sqlite {
        // Per connection, not once per pool: every connection must wait for the writer
        // instead of failing with "database is locked".
        opts.map_sqlx_sqlite_opts(move |o| {
            let o = o
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
            // After the journal mode: switching a fresh file to WAL is itself a write.
            if read_only {
                o.pragma("query_only", "ON")
            } else {
                o
            }
        });
        // A connection still inside a transaction (one whose owner was dropped halfway) is
        // closed instead of going back to the pool, where the next user would run its
        // statements inside that transaction.
        opts.map_sqlx_sqlite_pool_opts(|p| {
            p.after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
        });
    } else {
        let mut settings = vec![(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis().to_string(),
        )];
        match role {
            Role::ReadOnly => settings.push(("default_transaction_read_only", "on".to_owned())),
            Role::Relay => {
                settings.push(("synchronous_commit", "off".to_owned()));
                settings.push(("lock_timeout", RELAY_LOCK_TIMEOUT.as_millis().to_string()));
                settings.push((
                    "statement_timeout",
                    RELAY_STATEMENT_TIMEOUT.as_millis().to_string(),
                ));
            }
            Role::ReadWrite => {}
        }
        opts.map_sqlx_postgres_opts(move |o| o.options(settings.clone()));
        if role == Role::Relay {
            opts.map_sqlx_postgres_pool_opts(|p| {
                p.after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            });
        } else {
            opts.map_sqlx_postgres_pool_opts(|p| {
                p.after_release(|conn, _| Box::pin(async move { released_cleanly(conn).await }))
            });
        }
    }
    Database::connect(opts).await
}

/// Whether a PostgreSQL connection coming back to the pool is outside any transaction. The
/// driver's own count misses one case: a `BEGIN` whose future was dropped after it was sent
/// but before its answer arrived leaves the session inside a transaction with a count of
/// zero. The server knows: inside an open transaction, `now()` (the transaction's start) is
/// earlier than the current statement's start; outside one, the check (a simple query) is
/// its own transaction and both are equal. One round trip, on the release path only.
async fn released_cleanly(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Row as _;
    if conn.is_in_transaction() {
        return Ok(false);
    }
    // The simple query protocol: one message, so outside a transaction block the statement
    // and its implicit transaction start at the same instant (with a prepared statement
    // they would not).
    let clean: bool = sqlx::raw_sql("SELECT now() = statement_timestamp()")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if !clean {
        tracing::warn!("a pooled connection came back inside a transaction; closing it");
    }
    Ok(clean)
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    sea_migrations::Migrator::up(db, None).await
}

/// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (IMMEDIATE), so concurrent writers wait for each other (busy timeout) instead of one
/// failing at once when its read snapshot turns stale; elsewhere it is a plain `BEGIN`.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: (db.get_database_backend() == sea_orm::DbBackend::Sqlite)
            .then_some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}
