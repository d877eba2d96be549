//! The reminder scanner's queries, read-only, a page at a time: live, incomplete tasks due in
//! a time range that have no reminders of their own (the default reminder; `ix_tasks_due`),
//! and the reminders users set whose time has come (`ix_task_reminders_fires`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use todo_domain::TaskSnapshot;
use uuid::Uuid;

use crate::{
    StoreError,
    entity::{task_reminders, tasks},
    tasks::{TaskStore, to_snapshot},
};

/// A position in the (due time, id) order: a page continues after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueCursor {
    pub due_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page of due tasks.
#[derive(Debug, Clone)]
pub struct DuePage {
    pub tasks: Vec<TaskSnapshot>,
    /// Where the next page starts; `None` when this was the last one.
    pub next: Option<DueCursor>,
}

impl TaskStore {
    /// True while `user`'s task `id` is still live, incomplete and due at `due_at`. The
    /// scanner asks again just before it publishes, and `notifications` before it logs, so a
    /// task completed, deleted or moved since (or one whose account was deleted, which
    /// deletes its tasks) is not reminded.
    pub async fn still_due(
        &self,
        user: &str,
        id: Uuid,
        due_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(tasks::Entity::find_by_id(id)
            .filter(tasks::Column::UserId.eq(user))
            .filter(tasks::Column::DeletedAt.is_null())
            .filter(tasks::Column::Completed.eq(false))
            .filter(tasks::Column::DueAt.eq(due_at))
            .one(self.db())
            .await?
            .is_some())
    }

    /// Tasks that are neither completed nor deleted, have no reminders of their own, and are
    /// due in `[from, to]` (both ends included), in (due time, id) order, at most `limit` of them, after `after`.
    ///
    /// Keyset paging: a page costs the same however deep into the backlog it is, and rows
    /// written between pages neither repeat nor shift the ones after them. A row that breaks
    /// the task rules (a manual edit) is logged and skipped, never allowed to stop the scan.
    pub async fn due_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<DueCursor>,
        limit: u64,
    ) -> Result<DuePage, StoreError> {
        let limit = limit.max(1);
        let mut cond = Condition::all()
            .add(tasks::Column::DeletedAt.is_null())
            .add(tasks::Column::Completed.eq(false))
            .add(tasks::Column::DueAt.is_not_null())
            .add(tasks::Column::Reminders.is_null())
            .add(tasks::Column::DueAt.gte(from))
            .add(tasks::Column::DueAt.lte(to));
        if let Some(c) = after {
            cond = cond.add(
                Condition::any().add(tasks::Column::DueAt.gt(c.due_at)).add(
                    Condition::all()
                        .add(tasks::Column::DueAt.eq(c.due_at))
                        .add(tasks::Column::Id.gt(c.id)),
                ),
            );
        }
        let rows = tasks::Entity::find()
            .filter(cond)
            .order_by_asc(tasks::Column::DueAt)
            .order_by_asc(tasks::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?;
        let next = if rows.len() as u64 == limit {
            rows.last()
                .and_then(|r| r.due_at.map(|due_at| DueCursor { due_at, id: r.id }))
        } else {
            None
        };
        let tasks = rows
            .iter()
            .filter_map(|row| match to_snapshot(row) {
                Ok(task) => Some(task),
                Err(e) => {
                    tracing::warn!(task_id = %row.id, error = %e, "skipping a task row that breaks the task rules");
                    None
                }
            })
            .collect();
        Ok(DuePage { tasks, next })
    }
}

/// A position in the (fires_at, task id, reminder) order of the users' reminders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringCursor {
    pub fires_at: DateTime<Utc>,
    pub task_id: Uuid,
    pub reminder: String,
}

/// A reminder a user set whose time has come, with its task as it is now.
#[derive(Debug, Clone)]
pub struct Firing {
    pub task: TaskSnapshot,
    /// Canonical spelling (`15m`, `-1d 18:00`).
    pub reminder: String,
    pub fires_at: DateTime<Utc>,
}

/// One page of firing reminders.
#[derive(Debug, Clone)]
pub struct FiringPage {
    pub firings: Vec<Firing>,
    /// Where the next page starts; `None` when this was the last one.
    pub next: Option<FiringCursor>,
}

impl TaskStore {
    /// The reminders users set that fire in `[from, to]`, in (fires_at, task, reminder)
    /// order, at most `limit` rows a page, after `after`. Rows whose task is no longer live,
    /// incomplete and due at the time the row was computed for are left out (a row is
    /// rewritten with every write of its task, so that is only a write in flight).
    pub async fn reminders_firing(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<FiringCursor>,
        limit: u64,
    ) -> Result<FiringPage, StoreError> {
        let limit = limit.max(1);
        let mut cond = Condition::all()
            .add(task_reminders::Column::FiresAt.gte(from))
            .add(task_reminders::Column::FiresAt.lte(to));
        if let Some(c) = &after {
            let same_time = task_reminders::Column::FiresAt.eq(c.fires_at);
            cond = cond.add(
                Condition::any()
                    .add(task_reminders::Column::FiresAt.gt(c.fires_at))
                    .add(
                        Condition::all()
                            .add(same_time.clone())
                            .add(task_reminders::Column::TaskId.gt(c.task_id)),
                    )
                    .add(
                        Condition::all()
                            .add(same_time)
                            .add(task_reminders::Column::TaskId.eq(c.task_id))
                            .add(task_reminders::Column::Reminder.gt(c.reminder.as_str())),
                    ),
            );
        }
        let rows = task_reminders::Entity::find()
            .filter(cond)
            .order_by_asc(task_reminders::Column::FiresAt)
            .order_by_asc(task_reminders::Column::TaskId)
            .order_by_asc(task_reminders::Column::Reminder)
            .limit(limit)
            .all(self.db())
            .await?;
        let next = (rows.len() as u64 == limit)
            .then(|| rows.last())
            .flatten()
            .map(|r| FiringCursor {
                fires_at: r.fires_at,
                task_id: r.task_id,
                reminder: r.reminder.clone(),
            });
        let ids: HashSet<Uuid> = rows.iter().map(|r| r.task_id).collect();
        // Each task once, however many of its reminders fire in this page.
        let tasks: HashMap<Uuid, TaskSnapshot> = tasks::Entity::find()
            .filter(tasks::Column::Id.is_in(ids))
            .filter(tasks::Column::DeletedAt.is_null())
            .filter(tasks::Column::Completed.eq(false))
            .all(self.db())
            .await?
            .iter()
            .filter_map(|model| match to_snapshot(model) {
                Ok(task) => Some((task.id, task)),
                Err(e) => {
                    tracing::warn!(task_id = %model.id, error = %e, "skipping a task row that breaks the task rules");
                    None
                }
            })
            .collect();
        let firings = rows
            .into_iter()
            .filter_map(|row| {
                let task = tasks
                    .get(&row.task_id)
                    .filter(|t| t.due_at == Some(row.due_at))?;
                Some(Firing {
                    task: task.clone(),
                    reminder: row.reminder,
                    fires_at: row.fires_at,
                })
            })
            .collect();
        Ok(FiringPage { firings, next })
    }

    /// True while `user`'s task `id` is live, incomplete, due at `due_at` and still has the
    /// reminder `reminder`: asked again just before that reminder is published. One row
    /// answers it all: every write of a task rewrites its rows in the same transaction, and
    /// a completed or deleted task (or a deleted account) has none.
    pub async fn still_reminded(
        &self,
        user: &str,
        id: Uuid,
        due_at: DateTime<Utc>,
        reminder: &str,
    ) -> Result<bool, StoreError> {
        let row = task_reminders::Entity::find_by_id((id, reminder.to_owned()))
            .filter(task_reminders::Column::UserId.eq(user))
            .filter(task_reminders::Column::DueAt.eq(due_at))
            .one(self.db())
            .await?;
        Ok(row.is_some())
    }
}
