//! The copies of dead letters that `chat-api` keeps (it subscribes to the dead-letter
//! topics): what each dead-letter topic holds, and what is left to replay.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};

use crate::{StoreError, entity::dead_letters};

/// One dead letter not replayed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    pub event_id: String,
    pub event_type: String,
    pub partition_key: String,
    /// The event's data, as delivered (JSON for this system's events).
    pub payload: String,
    pub received_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct DeadLetterStore {
    db: DatabaseConnection,
}

#[derive(FromQueryResult)]
struct TopicCount {
    topic: String,
    n: i64,
}

impl DeadLetterStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Keeps a dead letter. The same event arriving again (a redelivery, or dead-lettered
    /// again after a replay) is one row, held again.
    pub async fn record(
        &self,
        topic: &str,
        event_id: &str,
        event_type: &str,
        partition_key: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // An update, then an insert when there was nothing to update, in one write
        // transaction, rather than INSERT ... ON CONFLICT (topic, event_id): SQLite now and
        // then refused that upsert right after the migration that created its unique index
        // ("ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint"). Two
        // deliveries of one new dead letter at once on PostgreSQL: the second insert fails
        // on the unique index, and daprd delivers it again, which then updates.
        let txn = crate::db::begin_write(&self.db).await?;
        let updated = dead_letters::Entity::update_many()
            .col_expr(dead_letters::Column::Payload, Expr::value(payload))
            .col_expr(dead_letters::Column::ReceivedAt, Expr::value(now))
            .col_expr(
                dead_letters::Column::ReplayedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(dead_letters::Column::Topic.eq(topic))
            .filter(dead_letters::Column::EventId.eq(event_id))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            dead_letters::Entity::insert(dead_letters::ActiveModel {
                topic: Set(topic.to_owned()),
                event_id: Set(event_id.to_owned()),
                event_type: Set(event_type.to_owned()),
                partition_key: Set(partition_key.to_owned()),
                payload: Set(payload.to_owned()),
                received_at: Set(now),
                replayed_at: Set(None),
                ..Default::default()
            })
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// How many dead letters each dead-letter topic holds that were not replayed.
    pub async fn held(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = dead_letters::Entity::find()
            .select_only()
            .column(dead_letters::Column::Topic)
            .column_as(dead_letters::Column::Id.count(), "n")
            .filter(dead_letters::Column::ReplayedAt.is_null())
            .group_by(dead_letters::Column::Topic)
            .order_by_asc(dead_letters::Column::Topic)
            .into_model::<TopicCount>()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.topic, u64::try_from(r.n).unwrap_or_default()))
            .collect())
    }

    /// Up to `limit` dead letters of `topic` not replayed yet with an id in `(after, up_to]`,
    /// oldest first. A replay pages through them with `after` = the last id it saw and a
    /// fixed `up_to`, so it ends even while events are dead-lettered again meanwhile.
    pub async fn pending(
        &self,
        topic: &str,
        after: i64,
        up_to: i64,
        limit: u64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(dead_letters::Entity::find()
            .filter(dead_letters::Column::Topic.eq(topic))
            .filter(dead_letters::Column::ReplayedAt.is_null())
            .filter(dead_letters::Column::Id.gt(after))
            .filter(dead_letters::Column::Id.lte(up_to))
            .order_by_asc(dead_letters::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| DeadLetter {
                id: m.id,
                topic: m.topic,
                event_id: m.event_id,
                event_type: m.event_type,
                partition_key: m.partition_key,
                payload: m.payload,
                received_at: m.received_at,
            })
            .collect())
    }

    /// The newest id a replay of `topic` starting now has to reach (0 when none is held).
    pub async fn newest_id(&self, topic: &str) -> Result<i64, StoreError> {
        // The id alone: the newest row's payload may be megabytes.
        Ok(dead_letters::Entity::find()
            .select_only()
            .column(dead_letters::Column::Id)
            .filter(dead_letters::Column::Topic.eq(topic))
            .order_by_desc(dead_letters::Column::Id)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .unwrap_or(0))
    }

    /// Marks `letter` as published again to its topic, unless it was dead-lettered again
    /// since it was read (then it stays held, for the next replay). True when marked.
    pub async fn mark_replayed(
        &self,
        letter: &DeadLetter,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = dead_letters::Entity::update_many()
            .col_expr(
                dead_letters::Column::ReplayedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(dead_letters::Column::Id.eq(letter.id))
            .filter(dead_letters::Column::ReceivedAt.eq(letter.received_at))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }
}
