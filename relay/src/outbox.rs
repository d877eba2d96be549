//! The transactional outbox: events committed with their task change, waiting to be published.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use todo_store::{StoreError, entity::outbox};

/// An event waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// Commit order within the outbox; per user, events are published in this order.
    pub seq: i64,
    pub event_id: Uuid,
    pub user_id: String,
    pub topic: String,
    pub event_type: String,
    /// The event as JSON, exactly as it will be published.
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    /// The trace of the write that appended it (`todo_store::trace`).
    pub traceparent: Option<String>,
}

/// How far behind the relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Unpublished events, parked ones included.
    pub pending: u64,
    pub oldest_created_at: Option<DateTime<Utc>>,
    /// Events the broker refused until the relay parked them (see [`OutboxStore::park`]).
    pub parked: u64,
}

/// An event the relay parked: kept, not published, until [`OutboxStore::retry_parked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub seq: i64,
    pub event_id: Uuid,
    pub user_id: String,
    pub event_type: String,
    pub payload_bytes: usize,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub parked_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct OutboxStore {
    db: DatabaseConnection,
}

impl OutboxStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Up to `limit` unpublished events in commit order, starting after `after_seq`.
    pub async fn pending(
        &self,
        after_seq: i64,
        limit: u64,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.pending_except(after_seq, limit, &[]).await
    }

    /// As [`OutboxStore::pending`], leaving out every event of the users in `except`.
    pub async fn pending_except(
        &self,
        after_seq: i64,
        limit: u64,
        except: &[String],
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.read_pending(after_seq, limit, except, false).await
    }

    /// What the relay may publish: as [`OutboxStore::pending_except`], leaving out as well
    /// every user with a parked event (nothing of theirs goes until it is retried), in the
    /// same statement (the parked rows' partial index answers that part at no cost while
    /// none are parked).
    pub async fn publishable(
        &self,
        after_seq: i64,
        limit: u64,
        except: &[String],
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.read_pending(after_seq, limit, except, true).await
    }

    async fn read_pending(
        &self,
        after_seq: i64,
        limit: u64,
        except: &[String],
        unparked: bool,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let mut query = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .filter(outbox::Column::Id.gt(after_seq));
        if !except.is_empty() {
            query = query.filter(outbox::Column::UserId.is_not_in(except.iter().cloned()));
        }
        if unparked {
            query = query.filter(outbox::Column::UserId.not_in_subquery(parked_users_query()));
        }
        let rows = query
            .order_by_asc(outbox::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| PendingEvent {
                seq: r.id,
                event_id: r.event_id,
                user_id: r.user_id,
                topic: r.topic,
                event_type: r.event_type,
                payload: r.payload,
                created_at: r.created_at,
                attempts: r.attempts,
                traceparent: r.traceparent,
            })
            .collect())
    }

    /// The sequence numbers of the unpublished events of `users` up to `up_to`, in commit
    /// order, with their users: no payloads, only what checks a read for gaps.
    pub async fn pending_seqs(
        &self,
        users: &[String],
        up_to: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        Ok(outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Id)
            .column(outbox::Column::UserId)
            .filter(outbox::Column::PublishedAt.is_null())
            .filter(outbox::Column::Id.lte(up_to))
            .filter(outbox::Column::UserId.is_in(users.iter().cloned()))
            .order_by_asc(outbox::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Removes published events (after the sidecar confirmed the broker acknowledged them):
    /// what is published leaves the outbox. A delete only ends each row, where marking it
    /// wrote a second version of it with new index entries, and kept rows grew the table.
    pub async fn remove_published(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        outbox::Entity::delete_many()
            .filter(outbox::Column::Id.is_in(seqs.iter().copied()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Remembers a failed attempt, for visibility; the event stays pending.
    pub async fn record_failure(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        let error: String = error.chars().take(1_000).collect();
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .col_expr(outbox::Column::LastError, Expr::value(error))
            .filter(outbox::Column::Id.eq(seq))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn backlog(&self) -> Result<Backlog, StoreError> {
        let pending = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .count(&self.db)
            .await?;
        let oldest = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .order_by_asc(outbox::Column::Id)
            .one(&self.db)
            .await?
            .map(|r| r.created_at);
        let parked = outbox::Entity::find()
            .filter(outbox::Column::ParkedAt.is_not_null())
            .filter(outbox::Column::PublishedAt.is_null())
            .count(&self.db)
            .await?;
        Ok(Backlog {
            pending,
            oldest_created_at: oldest,
            parked,
        })
    }

    /// Parks an event the broker keeps refusing: it stays in the outbox, unpublished, and
    /// the relay publishes nothing more of its user (whose later events must not overtake
    /// it) until [`OutboxStore::retry_parked`].
    pub async fn park(&self, seq: i64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let error: String = error.chars().take(1_000).collect();
        outbox::Entity::update_many()
            .col_expr(outbox::Column::ParkedAt, Expr::value(now))
            .col_expr(outbox::Column::LastError, Expr::value(error))
            .filter(outbox::Column::Id.eq(seq))
            .filter(outbox::Column::PublishedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Every parked event, oldest first.
    pub async fn parked(&self) -> Result<Vec<ParkedEvent>, StoreError> {
        let rows = outbox::Entity::find()
            .filter(outbox::Column::ParkedAt.is_not_null())
            .filter(outbox::Column::PublishedAt.is_null())
            .order_by_asc(outbox::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ParkedEvent {
                seq: r.id,
                event_id: r.event_id,
                user_id: r.user_id,
                event_type: r.event_type,
                payload_bytes: r.payload.len(),
                attempts: r.attempts,
                last_error: r.last_error,
                parked_at: r.parked_at.unwrap_or(r.created_at),
            })
            .collect())
    }

    /// Puts every parked event back in line (once the cause is fixed). Returns how many.
    pub async fn retry_parked(&self) -> Result<u64, StoreError> {
        let res = outbox::Entity::update_many()
            .col_expr(
                outbox::Column::ParkedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(outbox::Column::ParkedAt.is_not_null())
            .filter(outbox::Column::PublishedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }

    /// Deletes the rows a relay of an earlier version marked published instead of deleting
    /// them (a replica still running during an upgrade). Returns how many were removed.
    pub async fn purge_marked(&self) -> Result<u64, StoreError> {
        let res = outbox::Entity::delete_many()
            .filter(outbox::Column::PublishedAt.is_not_null())
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }
}

/// The users with a parked event, as a subquery.
fn parked_users_query() -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .column(outbox::Column::UserId)
        .from(outbox::Entity)
        .and_where(outbox::Column::ParkedAt.is_not_null())
        .and_where(outbox::Column::PublishedAt.is_null())
        .to_owned()
}
