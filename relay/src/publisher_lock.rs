//! The outbox's publisher lock: of several `chat-api` replicas on one database, only the
//! holder's relay publishes, so one user's events are never in flight from two relays.
//!
//! The lock dies with its holder, so a crashed replica's successor publishes at once rather
//! than after a lease term, and no replica's clock is consulted:
//! - PostgreSQL: a session advisory lock on a connection of its own. The server releases it
//!   when that session ends: the process died (the kernel closes its socket) or went silent
//!   for longer than the session's `idle_session_timeout` (a frozen process), which a keeper
//!   task prevents by pinging the session every second while the holder is alive.
//! - SQLite: an exclusive `flock` on a file beside the database, released by the kernel when
//!   the process exits. SQLite serves processes on one machine, and a frozen holder keeps
//!   its lock (there is no session to time out).

use std::{
    path::PathBuf,
    str::FromStr as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, Statement,
    sqlx::{self, Connection as _, postgres::PgConnectOptions},
};
use tokio::sync::Mutex;

use todo_store::StoreError;

/// The advisory lock's two keys (`pg_try_advisory_lock(int4, int4)`): "todo" and 1.
const LOCK_CLASS: i32 = 0x746F_646F;
const LOCK_OBJECT: i32 = 1;

/// How often the keeper pings the lock's session, and how long one ping may take.
const KEEP_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The lock counts as confirmed for this long after a successful ping; later, the holder
/// asks the server again before it publishes anything (a process that was frozen longer
/// than the idle timeout has lost its session, and finds out here).
const CONFIRMED_FOR: Duration = Duration::from_secs(2);

/// A held publisher lock. Dropping it releases the lock (the session or file is closed).
pub struct PublisherLock {
    holder: String,
    kind: Kind,
}

enum Kind {
    Postgres {
        session: Arc<Session>,
        keeper: tokio::task::JoinHandle<()>,
    },
    Sqlite {
        _file: Option<std::fs::File>,
    },
}

struct Session {
    conn: Mutex<Option<sqlx::PgConnection>>,
    lost: AtomicBool,
    last_ok: std::sync::Mutex<Instant>,
}

impl Session {
    /// Pings the session; a failure (or silence) means the lock is gone.
    async fn ping(&self) -> bool {
        let mut conn = self.conn.lock().await;
        let Some(c) = conn.as_mut() else {
            return false;
        };
        let ok = matches!(
            tokio::time::timeout(PING_TIMEOUT, sqlx::raw_sql("SELECT 1").execute(&mut *c)).await,
            Ok(Ok(_))
        );
        if ok {
            *self
                .last_ok
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        } else {
            self.lost.store(true, Ordering::SeqCst);
            // Closing it ends the session on the server too, if it was still there.
            conn.take();
        }
        ok
    }

    fn confirmed_recently(&self) -> bool {
        self.last_ok
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
            < CONFIRMED_FOR
    }
}

impl PublisherLock {
    /// Takes the lock for `holder` if nobody holds it. `idle_timeout` (PostgreSQL) is how
    /// long the server keeps a silent holder's session, so a frozen holder loses the lock
    /// after it; it must be well above a second (the keeper's ping interval).
    pub async fn try_acquire(
        database_url: &str,
        holder: &str,
        idle_timeout: Duration,
    ) -> Result<Option<Self>, StoreError> {
        if is_sqlite(database_url) {
            return Ok(try_lock_file(database_url, holder)?.map(|file| Self {
                holder: holder.to_owned(),
                kind: Kind::Sqlite { _file: file },
            }));
        }
        let options = PgConnectOptions::from_str(database_url)
            .map_err(|e| StoreError::Lock(e.to_string()))?
            .application_name(holder)
            .options([("idle_session_timeout", idle_timeout.as_millis().to_string())]);
        let mut conn = tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| StoreError::Lock("connecting for the publisher lock timed out".into()))?
        .map_err(|e| StoreError::Lock(e.to_string()))?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(LOCK_OBJECT)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| StoreError::Lock(e.to_string()))?;
        if !taken {
            let _ = conn.close().await;
            return Ok(None);
        }
        let session = Arc::new(Session {
            conn: Mutex::new(Some(conn)),
            lost: AtomicBool::new(false),
            last_ok: std::sync::Mutex::new(Instant::now()),
        });
        let keeper = tokio::spawn({
            let session = session.clone();
            async move {
                loop {
                    tokio::time::sleep(KEEP_EVERY).await;
                    if !session.ping().await {
                        break;
                    }
                }
            }
        });
        Ok(Some(Self {
            holder: holder.to_owned(),
            kind: Kind::Postgres { session, keeper },
        }))
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether this process still holds the lock, asking the server unless it confirmed
    /// that within the last two seconds. Called before every publish call: false means
    /// another relay may be publishing already, so this one must stop at once.
    pub async fn still_held(&self) -> bool {
        match &self.kind {
            Kind::Sqlite { .. } => true,
            Kind::Postgres { session, .. } => {
                if session.lost.load(Ordering::SeqCst) {
                    return false;
                }
                session.confirmed_recently() || session.ping().await
            }
        }
    }

    /// Gives the lock up now (at shutdown, or to let another replica publish).
    pub async fn release(self) {
        if let Kind::Postgres { session, keeper } = &self.kind {
            keeper.abort();
            if let Some(mut conn) = session.conn.lock().await.take() {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                    .bind(LOCK_CLASS)
                    .bind(LOCK_OBJECT)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        }
    }

    /// The name of the relay holding the lock, if any: on PostgreSQL, the application name
    /// of the session holding the advisory lock in this database; on SQLite, the name the
    /// holder wrote into the lock file.
    pub async fn current_holder(
        db: &DatabaseConnection,
        database_url: &str,
    ) -> Result<Option<String>, StoreError> {
        if is_sqlite(database_url) {
            return file_holder(database_url);
        }
        let sql = format!(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {LOCK_CLASS} \
             AND l.objid = {LOCK_OBJECT} AND l.objsubid = 2 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        );
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await?;
        Ok(row
            .map(|r| r.try_get::<String>("", "application_name"))
            .transpose()?)
    }
}

impl Drop for PublisherLock {
    fn drop(&mut self) {
        if let Kind::Postgres { keeper, .. } = &self.kind {
            keeper.abort();
        }
    }
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// The lock file of a SQLite database, `None` for an in-memory one (one process only).
fn lock_path(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && !path.contains(":memory:"))
        .then(|| PathBuf::from(format!("{path}.relay-lock")))
}

fn open_lock_file(path: &PathBuf) -> Result<std::fs::File, StoreError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::Lock(format!("publisher lock file {}: {e}", path.display())))
}

/// `Ok(Some(None))` for an in-memory database: nothing to lock, the lock is this process's.
#[allow(clippy::option_option)]
fn try_lock_file(url: &str, holder: &str) -> Result<Option<Option<std::fs::File>>, StoreError> {
    use std::io::{Seek as _, Write as _};
    let Some(path) = lock_path(url) else {
        return Ok(Some(None));
    };
    let mut file = open_lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::Lock(format!(
                "publisher lock file {}: {e}",
                path.display()
            )));
        }
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(holder.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write the relay's name into its lock file");
    }
    Ok(Some(Some(file)))
}

fn file_holder(url: &str) -> Result<Option<String>, StoreError> {
    let Some(path) = lock_path(url) else {
        return Ok(None);
    };
    if !path.exists() {
        return Ok(None);
    }
    let file = open_lock_file(&path)?;
    match file.try_lock_shared() {
        // Nobody holds it (the shared lock goes with `file`).
        Ok(()) => Ok(None),
        Err(_) => Ok(std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())),
    }
}
