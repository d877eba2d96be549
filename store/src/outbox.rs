//! The transactional outbox: events committed with their task change, waiting to be published.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    StoreError,
    entity::{outbox, relay_lease},
};

/// The lease that makes one relay at a time the outbox's publisher.
pub const OUTBOX_LEASE: &str = "outbox";

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
}

/// How far behind the relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub pending: u64,
    pub oldest_created_at: Option<DateTime<Utc>>,
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
        let rows = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .filter(outbox::Column::Id.gt(after_seq))
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
            })
            .collect())
    }

    /// Marks events published (after the sidecar confirmed the broker acknowledged them).
    pub async fn mark_published(&self, seqs: &[i64], now: DateTime<Utc>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        outbox::Entity::update_many()
            .col_expr(outbox::Column::PublishedAt, Expr::value(now))
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
        Ok(Backlog {
            pending,
            oldest_created_at: oldest,
        })
    }

    /// Takes or renews the lease `name` for `holder` until `now + ttl`. True when `holder`
    /// holds it: it was free, expired, or already `holder`'s. Two relays can never both
    /// get `true` for overlapping periods, whatever the database.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let until = now + ttl;
        relay_lease::Entity::insert(relay_lease::ActiveModel {
            name: sea_orm::ActiveValue::Set(name.to_owned()),
            holder: sea_orm::ActiveValue::Set(holder.to_owned()),
            expires_at: sea_orm::ActiveValue::Set(until),
        })
        .on_conflict_do_nothing_on([relay_lease::Column::Name])
        .exec(&self.db)
        .await?;
        let res = relay_lease::Entity::update_many()
            .col_expr(relay_lease::Column::Holder, Expr::value(holder))
            .col_expr(relay_lease::Column::ExpiresAt, Expr::value(until))
            .filter(relay_lease::Column::Name.eq(name))
            .filter(
                sea_orm::Condition::any()
                    .add(relay_lease::Column::Holder.eq(holder))
                    .add(relay_lease::Column::ExpiresAt.lt(now)),
            )
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Who holds the lease `name` at `now`, if anyone (an expired lease is held by no one).
    pub async fn lease_holder(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let lease = relay_lease::Entity::find_by_id(name.to_owned())
            .one(&self.db)
            .await?;
        Ok(lease.filter(|l| l.expires_at >= now).map(|l| l.holder))
    }

    /// Gives the lease up (at shutdown), so another relay takes over at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        relay_lease::Entity::delete_many()
            .filter(relay_lease::Column::Name.eq(name))
            .filter(relay_lease::Column::Holder.eq(holder))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes published events older than `before`. Returns how many were removed.
    pub async fn purge_published(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = outbox::Entity::delete_many()
            .filter(outbox::Column::PublishedAt.is_not_null())
            .filter(outbox::Column::PublishedAt.lt(before))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }
}
