use sea_orm::DbErr;

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
    /// A stored row that the domain rules reject: a bug or a manual edit, never user input.
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl StoreError {
    /// True when retrying later may succeed (connection lost, pool exhausted, database down).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Db(e) => matches!(
                e,
                DbErr::Conn(_) | DbErr::ConnectionAcquire(_) | DbErr::Exec(_) | DbErr::Query(_)
            ),
            Self::Conflict => true,
            _ => false,
        }
    }
}
