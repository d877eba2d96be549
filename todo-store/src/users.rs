//! The users' account rows: a user's row is created on their first write, and once their
//! account is deleted (`TaskStore::delete_user`) their writes are refused.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QuerySelect};
use todo_domain::UserId;

use crate::{StoreError, entity::users};

/// Records the user on first use; refuses a deleted user.
/// Fails with [`StoreError::UserDeleted`] when the user's account was deleted; creates the
/// user row on first use. The row stays locked (shared) until the write commits, so an
/// account deletion (which locks it exclusively) waits for writes in flight and deletes what
/// they wrote, and writes that come after it see the account deleted. (SQLite serialises
/// write transactions, which gives the same order.)
pub(crate) async fn ensure_active_user<C: ConnectionTrait>(
    db: &C,
    user: &UserId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let locked = || users::Entity::find_by_id(user.as_str()).lock_shared();
    let row = match locked().one(db).await? {
        Some(row) => row,
        None => {
            users::Entity::insert(users::ActiveModel {
                id: Set(user.as_str().to_owned()),
                created_at: Set(now),
                deleted_at: Set(None),
            })
            .on_conflict_do_nothing_on([users::Column::Id])
            .exec(db)
            .await?;
            locked()
                .one(db)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("user {user} vanished after insert")))?
        }
    };
    if row.deleted_at.is_some() {
        return Err(StoreError::UserDeleted);
    }
    Ok(())
}

/// True when the user's account was deleted (a user never seen is not). With `lock`, the
/// row stays locked (shared) until the transaction ends, so a deletion cannot slip in
/// before the caller's write commits.
pub(crate) async fn is_deleted<C: ConnectionTrait>(
    db: &C,
    user: &str,
    lock: bool,
) -> Result<bool, StoreError> {
    let mut query = users::Entity::find_by_id(user);
    if lock {
        query = query.lock_shared();
    }
    Ok(query.one(db).await?.is_some_and(|u| u.deleted_at.is_some()))
}
