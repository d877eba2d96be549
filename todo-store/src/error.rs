use sea_orm::{DbErr, RuntimeErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such task for this user (or it was deleted). Never says whether another user has it.
    #[error("task not found")]
    NotFound,
    /// The user's account was deleted; nothing more is written for them.
    #[error("user account was deleted")]
    UserDeleted,
    /// Another writer changed the task between our read and our write, repeatedly.
    #[error("task was changed concurrently")]
    Conflict,
    /// The change would leave the task breaking a rule that spans fields (reminders that do
    /// not fit its due time): nothing was written.
    #[error("{}", .0.message)]
    Invalid(todo_domain::ValidationError),
    /// A listing's cursor (where to start) does not fit its sort order.
    #[error("{0}")]
    BadCursor(String),
    /// A stored row that the domain rules reject: a bug or a manual edit, never user input.
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    /// The outbox's publisher lock could not be taken or checked.
    #[error("publisher lock: {0}")]
    Lock(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl StoreError {
    /// True when retrying later may succeed: the database is unreachable or restarting, the
    /// pool is exhausted, or the database refused for concurrency (serialization failure,
    /// deadlock, SQLite busy). A statement the database rejects for what it says is a bug,
    /// not a reason to retry, and is not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Db(DbErr::Conn(_) | DbErr::ConnectionAcquire(_)) => true,
            Self::Db(
                DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)),
            ) => sqlx_transient(e),
            Self::Conflict => true,
            _ => false,
        }
    }
}

fn sqlx_transient(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Protocol(_) => true,
        E::Database(db) => db.code().is_some_and(|code| {
            // PostgreSQL: serialization failure, deadlock, admin shutdown, cannot connect now.
            // SQLite: SQLITE_BUSY (5) and its extended codes (517 busy snapshot), locked (6).
            matches!(
                code.as_ref(),
                "40001" | "40P01" | "57P01" | "57P03" | "5" | "6" | "517" | "261" | "773"
            )
        }),
        _ => false,
    }
}
