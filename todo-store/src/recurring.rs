//! The next instance of a recurring series: the `recurring-tasks` worker's one write (the
//! spec's single exception to "only `chat-api` writes tasks").
//!
//! Exactly once, whatever the delivery: the unique index on `(series_id, occurrence)` makes a
//! second instance of the same occurrence impossible, so a duplicated, concurrent or replayed
//! completion event (or one whose idempotency key was lost) finds the instance already there.
//! The instance and its `task.created` event are committed in one transaction, so the relay
//! in `chat-api` publishes it like any other change and the chain continues.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, SqlErr, sea_query::OnConflict};
use todo_domain::{EventType, TaskSnapshot, next_occurrence};
use uuid::Uuid;

use crate::{
    StoreError, TaskStore,
    entity::tasks,
    tasks::{SeriesPlace, TaskContent, append_event, new_row, sync_reminders, to_snapshot},
};

/// What became of a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextInstance {
    /// The next instance was created, with its `task.created` event in the outbox.
    Created(Box<TaskSnapshot>),
    /// The next occurrence of the series already exists (a duplicate or concurrent delivery).
    AlreadyExists,
    /// The task does not recur: nothing to do.
    NotRecurring,
    /// The completion no longer stands: the task was reopened after it (and perhaps completed
    /// again, in which case that later completion's own event continues the series).
    Superseded,
    /// No such task of this user in the database.
    UnknownTask,
    /// The database does not bear the event out: the task never had that version, or was
    /// not completed at it (a forged or corrupted event).
    Unconfirmed,
    /// The user's account was deleted: nothing more is written for them.
    UserDeleted,
}

impl TaskStore {
    /// Creates the instance that follows the completion that `completed` (the snapshot of a
    /// `task.completed` event) reports, unless it exists already.
    ///
    /// The event only says which task of which user completed, at which version and when;
    /// what the task is comes from the database's own row. An event the database does not
    /// bear out (a version the task never had, or a completion it never recorded) creates
    /// nothing: [`NextInstance::Unconfirmed`]. So a forged event can at most ask for an
    /// instance the real completion creates anyway.
    ///
    /// The new instance keeps title, description, priority, tags, time zone, reminders and
    /// recurrence (an all-day series stays all-day, stepping by date),
    /// takes the next occurrence number and the next due time from the series' anchor (see
    /// [`next_due`]: the first occurrence after both the due time and the completion), or
    /// one period after the completion when the completed instance had no due time, and
    /// starts incomplete at version 1.
    ///
    /// A stale event (the stored task has a newer version) still creates the instance when
    /// its completion stands: the task is still completed from that same completion, only
    /// edited or deleted since. So the result never depends on how late the event arrives.
    /// If the task was reopened since, the completion is [`NextInstance::Superseded`].
    pub async fn create_next_instance(
        &self,
        completed: &TaskSnapshot,
        now: DateTime<Utc>,
    ) -> Result<NextInstance, StoreError> {
        // Checks outside the transaction: on SQLite its first statement must be the write,
        // or a concurrent writer makes the upgrade from reader to writer fail.
        let Some(stored) = tasks::Entity::find_by_id(completed.id)
            .filter(tasks::Column::UserId.eq(completed.user_id.as_str()))
            .one(self.db())
            .await?
        else {
            return Ok(NextInstance::UnknownTask);
        };
        if crate::users::is_deleted(self.db(), &completed.user_id, false).await? {
            return Ok(NextInstance::UserDeleted);
        }
        let stands = completion_stands(&stored, completed);
        if stored.version < completed.version || (stored.version == completed.version && !stands) {
            return Ok(NextInstance::Unconfirmed);
        }
        if !stands {
            return Ok(NextInstance::Superseded);
        }
        let task = to_snapshot(&stored)?;
        let Some(next) = next_occurrence(&task) else {
            return Ok(NextInstance::NotRecurring);
        };
        let occurrence = i32::try_from(next.occurrence)
            .ok()
            .filter(|_| {
                task.recurrence
                    .as_ref()
                    .is_some_and(|r| r.occurrence < next.occurrence)
            })
            .ok_or_else(|| {
                StoreError::Corrupt(format!("task {}: occurrence out of range", task.id))
            })?;
        let id = Uuid::now_v7();
        let row = new_row(
            id,
            TaskContent {
                user_id: &task.user_id,
                title: &task.title,
                description: &task.description,
                priority: task.priority,
                tags: &task.tags,
                due: Some(next.due),
                reminders: stored.reminders.clone(),
                time_zone: &task.time_zone,
                recurrence: Some(next.frequency),
            },
            Some(SeriesPlace {
                series_id: next.series_id,
                anchor: Some(next.anchor),
                occurrence,
            }),
            now,
        );

        let txn = crate::db::begin_write(self.db()).await?;
        let inserted = tasks::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([tasks::Column::SeriesId, tasks::Column::Occurrence])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await;
        match inserted {
            Ok(1) => {}
            Ok(_) | Err(DbErr::RecordNotInserted) => {
                txn.rollback().await?;
                return Ok(NextInstance::AlreadyExists);
            }
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                txn.rollback().await?;
                return Ok(NextInstance::AlreadyExists);
            }
            Err(e) => return Err(e.into()),
        }
        // Again inside, holding the user row, so an account deleted meanwhile gets nothing.
        if crate::users::is_deleted(&txn, &completed.user_id, true).await? {
            txn.rollback().await?;
            return Ok(NextInstance::UserDeleted);
        }
        let model = tasks::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("task {id} vanished after insert")))?;
        sync_reminders(&txn, &model).await?;
        let snapshot = to_snapshot(&model)?;
        append_event(&txn, EventType::TaskCreated, &snapshot, Vec::new(), now).await?;
        txn.commit().await?;
        Ok(NextInstance::Created(Box::new(snapshot)))
    }
}

/// The stored task is still completed from the completion in `event` (not reopened since).
///
/// The times are compared to the millisecond: the event carries the time as written, the
/// database what it kept of it (PostgreSQL keeps microseconds). Mistaking a re-completion
/// within the same millisecond for the original is harmless: both name the same next
/// occurrence, which the unique key lets exist once.
fn completion_stands(stored: &tasks::Model, event: &TaskSnapshot) -> bool {
    match (stored.completed_at, event.completed_at) {
        (Some(kept), Some(sent)) if stored.completed => (kept - sent)
            .num_microseconds()
            .is_some_and(|d| d.abs() < 1_000),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewTask, TaskPatch};
    use todo_domain::{Description, Frequency, Priority, Tags, TimeZone, Title, UserId};

    async fn store() -> TaskStore {
        // One connection: every connection to `:memory:` is a database of its own.
        let db = crate::connect("sqlite::memory:", 1).await.expect("sqlite");
        crate::migrate(&db).await.expect("migrations");
        TaskStore::new(db)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    async fn completed(store: &TaskStore, recurrence: Option<Frequency>) -> TaskSnapshot {
        let user = UserId::parse("alice").expect("user");
        let new = NewTask {
            title: Title::parse("Water plants").expect("title"),
            description: Description::default(),
            priority: Priority::Low,
            tags: Tags::default(),
            due: None,
            time_zone: TimeZone::UTC,
            recurrence,
            reminders: todo_domain::Reminders::default(),
        };
        let task = store
            .create(&user, new, at("2026-01-01T00:00:00Z"))
            .await
            .expect("create");
        let done = TaskPatch {
            completed: Some(true),
            ..TaskPatch::default()
        };
        store
            .update(&user, task.id, done, at("2026-01-02T12:00:00Z"))
            .await
            .expect("complete")
            .0
    }

    #[tokio::test]
    async fn the_next_instance_is_created_once_and_then_found_to_exist() {
        let store = store().await;
        let done = completed(&store, Some(Frequency::Weekly)).await;
        let NextInstance::Created(next) = store
            .create_next_instance(&done, at("2026-01-02T12:00:01Z"))
            .await
            .expect("first")
        else {
            panic!("expected the instance to be created");
        };
        assert_eq!(next.due_at, Some(at("2026-01-09T12:00:00Z")));
        assert_eq!(
            next.recurrence
                .as_ref()
                .map(|r| (r.series_id, r.occurrence)),
            Some((done.id, 1))
        );
        let again = store
            .create_next_instance(&done, at("2026-01-02T12:00:02Z"))
            .await
            .expect("second");
        assert_eq!(again, NextInstance::AlreadyExists);
    }

    #[tokio::test]
    async fn tasks_that_do_not_recur_or_do_not_exist_get_no_next_instance() {
        let store = store().await;
        let done = completed(&store, None).await;
        assert_eq!(
            store
                .create_next_instance(&done, done.updated_at)
                .await
                .expect("ok"),
            NextInstance::NotRecurring
        );
        let mut stranger = completed(&store, Some(Frequency::Daily)).await;
        stranger.id = Uuid::now_v7();
        assert_eq!(
            store
                .create_next_instance(&stranger, stranger.updated_at)
                .await
                .expect("ok"),
            NextInstance::UnknownTask
        );
    }
}
