//! The reminder scanner's one query: live, incomplete tasks due in a time range, a page at a
//! time. Read-only; served by the `ix_tasks_due` index.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use todo_domain::TaskSnapshot;
use uuid::Uuid;

use crate::{
    StoreError,
    entity::tasks,
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

    /// Tasks that are neither completed nor deleted and are due in `[from, to]` (both ends
    /// included), in (due time, id) order, at most `limit` of them, after `after`.
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
