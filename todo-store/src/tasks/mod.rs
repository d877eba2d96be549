//! Task writes, each committed together with its event in the outbox, and task queries.

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    Order, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Func},
};
use todo_domain::{
    Description, Due, EventType, Frequency, Priority, Recurrence, Reminders, Tags, TaskEvent,
    TaskSnapshot, TimeZone, Title, UserId, time::to_local, topics,
};
use uuid::Uuid;

use crate::{
    StoreError,
    entity::{outbox, task_reminders, tasks, users},
    users::ensure_active_user,
};

mod rows;
mod write;

pub use rows::to_snapshot;
use rows::*;
pub(crate) use rows::{SeriesPlace, TaskContent, encode_reminders, new_row};
use write::*;
pub(crate) use write::{append_event, sync_reminders};

/// Local anchor times are stored as text in this format.
const ANCHOR_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
/// How often a write is retried when another writer got in between.
const CONFLICT_RETRIES: usize = 5;
pub const LIST_LIMIT_MAX: u64 = 200;
pub const LIST_LIMIT_DEFAULT: u64 = 50;

/// A validated task to create.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub title: Title,
    pub description: Description,
    pub priority: Priority,
    pub tags: Tags,
    /// When it is due (at a time, or on a day in `time_zone`).
    pub due: Option<Due>,
    pub time_zone: TimeZone,
    pub recurrence: Option<Frequency>,
    /// Must fit `due` ([`Reminders::check_fits`]); empty for the default reminder.
    pub reminders: Reminders,
}

/// A validated change. `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub priority: Option<Priority>,
    pub tags: Option<Tags>,
    pub due: Option<Option<Due>>,
    pub time_zone: Option<TimeZone>,
    pub recurrence: Option<Option<Frequency>>,
    /// Empty clears them. The task after the change must have reminders that fit its due.
    pub reminders: Option<Reminders>,
    pub completed: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    #[default]
    All,
    Pending,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Created,
    Due,
    Priority,
    Title,
}

/// Filters, sort and page of a task listing. Everything is scoped to one user by the caller.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub search: Option<String>,
    pub status: StatusFilter,
    pub priority: Option<Priority>,
    pub tag: Option<String>,
    pub due_before: Option<DateTime<Utc>>,
    pub due_after: Option<DateTime<Utc>>,
    pub overdue_at: Option<DateTime<Utc>>,
    pub recurring: Option<bool>,
    pub sort: SortKey,
    pub descending: bool,
    /// Start just after this task (decoded from the opaque cursor by the API); its sort
    /// value must be of `sort`.
    pub after: Option<After>,
    pub limit: u64,
}

/// A position in a listing: the sort value and id of the last task of a page. The next page
/// starts just after it, wherever it now is, so tasks created, changed or deleted between
/// two pages never make the next page skip or repeat one (keyset pagination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub key: SortValue,
    pub id: Uuid,
}

/// A task's value of a sort key, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    Created(DateTime<Utc>),
    /// `None`: no due time (those come last in either direction).
    Due(Option<DateTime<Utc>>),
    Priority(Priority),
    /// The title as stored; compared case-insensitively, as the listing sorts.
    Title(String),
}

impl SortValue {
    pub fn of(sort: SortKey, task: &TaskSnapshot) -> SortValue {
        match sort {
            SortKey::Created => SortValue::Created(task.created_at),
            SortKey::Due => SortValue::Due(task.due_at),
            SortKey::Priority => SortValue::Priority(task.priority),
            SortKey::Title => SortValue::Title(task.title.clone()),
        }
    }

    pub fn sort_key(&self) -> SortKey {
        match self {
            SortValue::Created(_) => SortKey::Created,
            SortValue::Due(_) => SortKey::Due,
            SortValue::Priority(_) => SortKey::Priority,
            SortValue::Title(_) => SortKey::Title,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<TaskSnapshot>,
    /// Where the next page starts, when there is one.
    pub next: Option<After>,
}

/// Task reads and writes. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct TaskStore {
    db: DatabaseConnection,
}

impl TaskStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Creates a task and its `task.created` event in one transaction.
    pub async fn create(
        &self,
        user: &UserId,
        new: NewTask,
        now: DateTime<Utc>,
    ) -> Result<TaskSnapshot, StoreError> {
        new.reminders
            .check_fits(new.due.as_ref())
            .map_err(StoreError::Invalid)?;
        let txn = crate::db::begin_write(&self.db).await?;
        ensure_active_user(&txn, user, now).await?;
        let id = Uuid::now_v7();
        // The first instance of a series: the series is named after it, anchored at its due.
        let series = new.recurrence.map(|_| SeriesPlace {
            series_id: id,
            anchor: new.due.map(|d| d.local),
            occurrence: 0,
        });
        let model = new_row(
            id,
            TaskContent {
                user_id: user.as_str(),
                title: new.title.as_str(),
                description: new.description.as_str(),
                priority: new.priority,
                tags: new.tags.as_slice(),
                due: new.due,
                reminders: encode_reminders(&new.reminders),
                time_zone: &new.time_zone,
                recurrence: new.recurrence,
            },
            series,
            now,
        )
        .insert(&txn)
        .await?;
        sync_reminders(&txn, &model).await?;
        let snapshot = to_snapshot(&model)?;
        append_event(&txn, EventType::TaskCreated, &snapshot, Vec::new(), now).await?;
        txn.commit().await?;
        Ok(snapshot)
    }

    /// The user's task, unless deleted.
    pub async fn get(&self, user: &UserId, id: Uuid) -> Result<TaskSnapshot, StoreError> {
        let model = find_live(&self.db, user, id).await?;
        to_snapshot(&model)
    }

    /// Applies a change. Returns the task and whether anything changed; an unchanged task
    /// writes nothing and publishes nothing. Completing publishes `task.completed`, any other
    /// change (reopening included) `task.updated` with the changed field names.
    pub async fn update(
        &self,
        user: &UserId,
        id: Uuid,
        patch: TaskPatch,
        now: DateTime<Utc>,
    ) -> Result<(TaskSnapshot, bool), StoreError> {
        for _ in 0..CONFLICT_RETRIES {
            let txn = crate::db::begin_write(&self.db).await?;
            ensure_active_user(&txn, user, now).await?;
            let current = find_live(&txn, user, id).await?;
            let (next, changed) = match apply_patch(&current, &patch, now) {
                Ok(applied) => applied,
                Err(e) => {
                    txn.rollback().await?;
                    return Err(e);
                }
            };
            if changed.is_empty() {
                txn.rollback().await?;
                return Ok((to_snapshot(&current)?, false));
            }
            let completing = !current.completed && next.completed;
            let Some(saved) = save_if_version(&txn, &next, current.version).await? else {
                txn.rollback().await?;
                continue;
            };
            sync_reminders(&txn, &saved).await?;
            let snapshot = to_snapshot(&saved)?;
            let event_type = if completing {
                EventType::TaskCompleted
            } else {
                EventType::TaskUpdated
            };
            append_event(&txn, event_type, &snapshot, changed, now).await?;
            txn.commit().await?;
            return Ok((snapshot, true));
        }
        Err(StoreError::Conflict)
    }

    /// Deletes a task (kept as a tombstone so a series never reuses an occurrence) and
    /// publishes `task.deleted` with its last state.
    pub async fn delete(
        &self,
        user: &UserId,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<TaskSnapshot, StoreError> {
        for _ in 0..CONFLICT_RETRIES {
            let txn = crate::db::begin_write(&self.db).await?;
            ensure_active_user(&txn, user, now).await?;
            let current = find_live(&txn, user, id).await?;
            let next = tombstone(current.clone(), now);
            let Some(saved) = save_if_version(&txn, &next, current.version).await? else {
                txn.rollback().await?;
                continue;
            };
            sync_reminders(&txn, &saved).await?;
            let snapshot = to_snapshot(&saved)?;
            append_event(&txn, EventType::TaskDeleted, &snapshot, Vec::new(), now).await?;
            txn.commit().await?;
            return Ok(snapshot);
        }
        Err(StoreError::Conflict)
    }

    /// Deletes every task of the user (one `task.deleted` each) and marks the user deleted,
    /// all in one transaction. Returns how many tasks were deleted.
    pub async fn delete_user(&self, user: &UserId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let txn = crate::db::begin_write(&self.db).await?;
        // Exclusive: a next instance being created meanwhile (it holds the row shared)
        // either commits first and is deleted here, or sees the account deleted.
        let Some(row) = users::Entity::find_by_id(user.as_str())
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            txn.rollback().await?;
            return Ok(0);
        };
        if row.deleted_at.is_some() {
            txn.rollback().await?;
            return Ok(0);
        }
        let live = tasks::Entity::find()
            .filter(tasks::Column::UserId.eq(user.as_str()))
            .filter(tasks::Column::DeletedAt.is_null())
            .order_by_asc(tasks::Column::CreatedAt)
            .order_by_asc(tasks::Column::Id)
            .all(&txn)
            .await?;
        let count = live.len() as u64;
        // One statement for every task, not one per task (an account of 10,000 tasks took
        // 20,000 statements): every write of the user's tasks holds the user's row shared
        // until it commits, so none can change or add one of these rows meanwhile; the
        // count says so. The same change as [`tombstone`], in SQL.
        let updated = tasks::Entity::update_many()
            .col_expr(tasks::Column::DeletedAt, Expr::value(now))
            .col_expr(tasks::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                tasks::Column::Version,
                Expr::col(tasks::Column::Version).add(1),
            )
            .filter(tasks::Column::UserId.eq(user.as_str()))
            .filter(tasks::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        if updated.rows_affected != count {
            txn.rollback().await?;
            return Err(StoreError::Conflict);
        }
        let snapshots = live
            .into_iter()
            .map(|task| to_snapshot(&tombstone(task, now)))
            .collect::<Result<Vec<_>, _>>()?;
        append_events(&txn, EventType::TaskDeleted, &snapshots, now).await?;
        task_reminders::Entity::delete_many()
            .filter(task_reminders::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        crate::conversations::delete_all(&txn, user).await?;
        let mut user_row: users::ActiveModel = row.into();
        user_row.deleted_at = Set(Some(now));
        user_row.update(&txn).await?;
        txn.commit().await?;
        Ok(count)
    }

    /// True when the user exists and was deleted (consumers skip their late events).
    pub async fn is_user_deleted(&self, user: &str) -> Result<bool, StoreError> {
        crate::users::is_deleted(&self.db, user, false).await
    }

    /// One page of the user's tasks.
    pub async fn list(&self, user: &UserId, q: &ListQuery) -> Result<Page, StoreError> {
        let limit = q.limit.clamp(1, LIST_LIMIT_MAX);
        let mut cond = Condition::all()
            .add(tasks::Column::UserId.eq(user.as_str()))
            .add(tasks::Column::DeletedAt.is_null());
        match q.status {
            StatusFilter::All => {}
            StatusFilter::Pending => cond = cond.add(tasks::Column::Completed.eq(false)),
            StatusFilter::Completed => cond = cond.add(tasks::Column::Completed.eq(true)),
        }
        if let Some(p) = q.priority {
            cond = cond.add(tasks::Column::Priority.eq(p.rank()));
        }
        if let Some(tag) = &q.tag {
            // Exactly this tag: `_` and `%` in it are characters, not wildcards.
            let pattern = format!("%,{},%", escape_like(tag));
            cond = cond.add(
                Expr::col(tasks::Column::Tags)
                    .like(sea_orm::sea_query::LikeExpr::new(&pattern).escape('\\')),
            );
        }
        if let Some(before) = q.due_before {
            cond = cond.add(tasks::Column::DueAt.lt(before));
        }
        if let Some(after) = q.due_after {
            cond = cond.add(tasks::Column::DueAt.gte(after));
        }
        if let Some(now) = q.overdue_at {
            cond = cond
                .add(tasks::Column::DueAt.lt(now))
                .add(tasks::Column::Completed.eq(false));
        }
        match q.recurring {
            Some(true) => cond = cond.add(tasks::Column::Recurrence.is_not_null()),
            Some(false) => cond = cond.add(tasks::Column::Recurrence.is_null()),
            None => {}
        }
        if let Some(text) = q.search.as_deref().filter(|s| !s.is_empty()) {
            // Folded by the application on both sides, so every database agrees (their own
            // `lower()` folds ASCII only on SQLite, and per locale on PostgreSQL).
            let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
            cond = cond.add(
                Expr::col(tasks::Column::SearchText)
                    .like(sea_orm::sea_query::LikeExpr::new(&pattern).escape('\\')),
            );
        }
        if let Some(after) = &q.after {
            if after.key.sort_key() != q.sort {
                return Err(StoreError::BadCursor(
                    "the cursor belongs to a listing in another sort order".into(),
                ));
            }
            cond = cond.add(beyond(after, q.descending));
        }
        let order = if q.descending {
            Order::Desc
        } else {
            Order::Asc
        };
        let mut select = tasks::Entity::find().filter(cond);
        select = match q.sort {
            SortKey::Created => select.order_by(tasks::Column::CreatedAt, order.clone()),
            SortKey::Due => {
                // Tasks without a due time come last in either direction.
                select
                    .order_by(Expr::col(tasks::Column::DueAt).is_null(), Order::Asc)
                    .order_by(tasks::Column::DueAt, order.clone())
            }
            SortKey::Priority => select.order_by(tasks::Column::Priority, order.clone()),
            SortKey::Title => select.order_by(
                Expr::expr(Func::lower(Expr::col(tasks::Column::Title))),
                order.clone(),
            ),
        };
        let rows = select
            .order_by(tasks::Column::Id, order)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let has_more = rows.len() as u64 > limit;
        let items = rows
            .iter()
            .take(limit as usize)
            .map(to_snapshot)
            .collect::<Result<Vec<_>, _>>()?;
        let next = items.last().filter(|_| has_more).map(|last| After {
            key: SortValue::of(q.sort, last),
            id: last.id,
        });
        Ok(Page { items, next })
    }

    /// Number of live tasks of a user.
    #[cfg(feature = "testing")]
    pub async fn count(&self, user: &UserId) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait as _;
        Ok(tasks::Entity::find()
            .filter(tasks::Column::UserId.eq(user.as_str()))
            .filter(tasks::Column::DeletedAt.is_null())
            .count(&self.db)
            .await?)
    }
}
