//! The chat's conversations: each one a user's, its messages in order, so that any replica
//! of `chat-api` can answer the next turn. A turn holds its conversation with a lease
//! ([`ConversationStore::begin_turn`]), so two turns of one conversation never run at once,
//! on any replica; it appends its messages as they happen, each append in one transaction
//! under a lock on the conversation's row. Deleting the account deletes them
//! (`TaskStore::delete_user`).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Query,
};
use serde_json::Value;
use todo_domain::UserId;
use uuid::Uuid;

use crate::{
    StoreError,
    entity::{conversation_messages, conversations},
    users::ensure_active_user,
};

/// One stored message: `role` is `user`, `assistant` or `tool`; `body` is what the chat
/// needs to send it to the model again.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub seq: i32,
    pub role: String,
    pub body: Value,
    pub created_at: DateTime<Utc>,
}

/// A message to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub role: String,
    pub body: Value,
}

/// A whole conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub messages: Vec<StoredMessage>,
}

/// A conversation without its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationSummary {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub message_count: i32,
}

/// Where a turn's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A conversation the user already has.
    Existing(Uuid),
    /// A new conversation with this id, created with the turn's messages.
    New(Uuid),
}

#[derive(Clone)]
pub struct ConversationStore {
    db: DatabaseConnection,
}

impl ConversationStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    async fn owned(&self, user: &UserId, id: Uuid) -> Result<conversations::Model, StoreError> {
        conversations::Entity::find_by_id(id)
            .filter(conversations::Column::UserId.eq(user.as_str()))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The last `limit` messages of the user's conversation `id`, oldest first, and before
    /// them those back to the user message that began the turn the first of them belongs
    /// to (so a long turn never leaves only its tail); [`StoreError::NotFound`] when the
    /// user has no such conversation.
    pub async fn recent(
        &self,
        user: &UserId,
        id: Uuid,
        limit: u64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.owned(user, id).await?;
        let in_conversation = conversation_messages::Column::ConversationId.eq(id);
        let mut rows = conversation_messages::Entity::find()
            .filter(in_conversation.clone())
            .order_by_desc(conversation_messages::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.reverse();
        if let Some(first) = rows.first().filter(|m| m.role != "user") {
            let turn_start = conversation_messages::Entity::find()
                .filter(in_conversation.clone())
                .filter(conversation_messages::Column::Role.eq("user"))
                .filter(conversation_messages::Column::Seq.lt(first.seq))
                .order_by_desc(conversation_messages::Column::Seq)
                .one(&self.db)
                .await?;
            if let Some(start) = turn_start {
                let mut earlier = conversation_messages::Entity::find()
                    .filter(in_conversation)
                    .filter(conversation_messages::Column::Seq.gte(start.seq))
                    .filter(conversation_messages::Column::Seq.lt(first.seq))
                    .order_by_asc(conversation_messages::Column::Seq)
                    .all(&self.db)
                    .await?;
                earlier.append(&mut rows);
                rows = earlier;
            }
        }
        rows.into_iter().map(to_message).collect()
    }

    /// Takes the user's conversation `id` for a turn until `until` (or until
    /// [`ConversationStore::end_turn`]): [`StoreError::Conflict`] while another turn holds
    /// it, [`StoreError::NotFound`] when the user has no such conversation.
    pub async fn begin_turn(
        &self,
        user: &UserId,
        id: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let taken = conversations::Entity::update_many()
            .col_expr(
                conversations::Column::TurnUntil,
                sea_orm::sea_query::Expr::value(Some(until)),
            )
            .filter(conversations::Column::Id.eq(id))
            .filter(conversations::Column::UserId.eq(user.as_str()))
            .filter(
                sea_orm::Condition::any()
                    .add(conversations::Column::TurnUntil.is_null())
                    .add(conversations::Column::TurnUntil.lt(now)),
            )
            .exec(&self.db)
            .await?
            .rows_affected;
        if taken == 1 {
            return Ok(());
        }
        self.owned(user, id).await?;
        Err(StoreError::Conflict)
    }

    /// Ends the turn on the user's conversation `id` (a new one may start).
    pub async fn end_turn(&self, user: &UserId, id: Uuid) -> Result<(), StoreError> {
        conversations::Entity::update_many()
            .col_expr(
                conversations::Column::TurnUntil,
                sea_orm::sea_query::Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(conversations::Column::Id.eq(id))
            .filter(conversations::Column::UserId.eq(user.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The user's conversation `id` with up to `limit` of its messages, those after `after`
    /// (a `seq`; all when `None`), oldest first, and whether more follow.
    pub async fn get(
        &self,
        user: &UserId,
        id: Uuid,
        after: Option<i32>,
        limit: u64,
    ) -> Result<(Conversation, bool), StoreError> {
        let row = self.owned(user, id).await?;
        let mut query = conversation_messages::Entity::find()
            .filter(conversation_messages::Column::ConversationId.eq(id));
        if let Some(after) = after {
            query = query.filter(conversation_messages::Column::Seq.gt(after));
        }
        let mut rows = query
            .order_by_asc(conversation_messages::Column::Seq)
            .limit(limit.saturating_add(1))
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let messages = rows.into_iter().map(to_message).collect::<Result<_, _>>()?;
        Ok((
            Conversation {
                id: row.id,
                created_at: row.created_at,
                updated_at: row.updated_at,
                messages,
            },
            more,
        ))
    }

    /// The user's conversations, the most recently updated first, at most `limit`.
    pub async fn list(
        &self,
        user: &UserId,
        limit: u64,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        Ok(conversations::Entity::find()
            .filter(conversations::Column::UserId.eq(user.as_str()))
            .order_by_desc(conversations::Column::UpdatedAt)
            .order_by_desc(conversations::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| ConversationSummary {
                id: row.id,
                created_at: row.created_at,
                updated_at: row.updated_at,
                message_count: row.message_count,
            })
            .collect())
    }

    /// Appends `messages` to `target` in one transaction. A new conversation is created
    /// held by its turn until `turn_until`. A deleted account gets
    /// [`StoreError::UserDeleted`]; an existing conversation the user does not have (or
    /// that was deleted meanwhile) [`StoreError::NotFound`]; a new id that exists
    /// [`StoreError::Conflict`].
    pub async fn append(
        &self,
        user: &UserId,
        target: Target,
        messages: Vec<NewMessage>,
        now: DateTime<Utc>,
        turn_until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let txn = crate::db::begin_write(&self.db).await?;
        ensure_active_user(&txn, user, now).await?;
        let (id, first) = match target {
            Target::New(id) => {
                if conversations::Entity::find_by_id(id)
                    .one(&txn)
                    .await?
                    .is_some()
                {
                    return Err(StoreError::Conflict);
                }
                conversations::ActiveModel {
                    id: Set(id),
                    user_id: Set(user.as_str().to_owned()),
                    message_count: Set(0),
                    turn_until: Set(turn_until),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await?;
                (id, 0)
            }
            Target::Existing(id) => {
                let row = conversations::Entity::find_by_id(id)
                    .filter(conversations::Column::UserId.eq(user.as_str()))
                    .lock_exclusive()
                    .one(&txn)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                (id, row.message_count)
            }
        };
        let count = i32::try_from(messages.len())
            .map_err(|_| StoreError::Corrupt("too many messages in one turn".into()))?;
        let rows: Vec<conversation_messages::ActiveModel> = messages
            .into_iter()
            .zip(first..)
            .map(|(m, seq)| conversation_messages::ActiveModel {
                conversation_id: Set(id),
                seq: Set(seq),
                role: Set(m.role),
                body: Set(m.body.to_string()),
                created_at: Set(now),
                ..Default::default()
            })
            .collect();
        if !rows.is_empty() {
            conversation_messages::Entity::insert_many(rows)
                .exec(&txn)
                .await?;
        }
        conversations::Entity::update_many()
            .col_expr(
                conversations::Column::MessageCount,
                sea_orm::sea_query::Expr::value(first + count),
            )
            .col_expr(
                conversations::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(conversations::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Deletes the user's conversation `id` and its messages.
    pub async fn delete(&self, user: &UserId, id: Uuid) -> Result<(), StoreError> {
        let txn = crate::db::begin_write(&self.db).await?;
        let found = conversations::Entity::find_by_id(id)
            .filter(conversations::Column::UserId.eq(user.as_str()))
            .lock_exclusive()
            .one(&txn)
            .await?
            .is_some();
        if !found {
            txn.rollback().await?;
            return Err(StoreError::NotFound);
        }
        conversation_messages::Entity::delete_many()
            .filter(conversation_messages::Column::ConversationId.eq(id))
            .exec(&txn)
            .await?;
        conversations::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }
}

/// Deletes every conversation of `user`, inside the account deletion's transaction.
pub(crate) async fn delete_all<C: sea_orm::ConnectionTrait>(
    txn: &C,
    user: &UserId,
) -> Result<(), StoreError> {
    conversation_messages::Entity::delete_many()
        .filter(
            conversation_messages::Column::ConversationId.in_subquery(
                Query::select()
                    .column(conversations::Column::Id)
                    .from(conversations::Entity)
                    .and_where(conversations::Column::UserId.eq(user.as_str()))
                    .to_owned(),
            ),
        )
        .exec(txn)
        .await?;
    conversations::Entity::delete_many()
        .filter(conversations::Column::UserId.eq(user.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}

fn to_message(row: conversation_messages::Model) -> Result<StoredMessage, StoreError> {
    let body = serde_json::from_str(&row.body).map_err(|e| {
        StoreError::Corrupt(format!(
            "conversation {} message {}: {e}",
            row.conversation_id, row.seq
        ))
    })?;
    Ok(StoredMessage {
        seq: row.seq,
        role: row.role,
        body,
        created_at: row.created_at,
    })
}
