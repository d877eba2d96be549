//! Task writes, each committed together with its event in the outbox, and task queries.

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    Order, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Func},
};
use todo_domain::{
    Description, EventType, Frequency, Priority, Recurrence, Tags, TaskEvent, TaskSnapshot,
    TimeZone, Title, UserId, time::to_local, topics,
};
use uuid::Uuid;

use crate::{
    StoreError,
    entity::{outbox, tasks, users},
};

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
    pub due_at: Option<DateTime<Utc>>,
    /// The local due time as the user meant it (anchor of a recurring series).
    pub due_local: Option<NaiveDateTime>,
    pub time_zone: TimeZone,
    pub recurrence: Option<Frequency>,
}

/// A validated change. `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub priority: Option<Priority>,
    pub tags: Option<Tags>,
    pub due: Option<Option<(DateTime<Utc>, NaiveDateTime)>>,
    pub time_zone: Option<TimeZone>,
    pub recurrence: Option<Option<Frequency>>,
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
        let txn = crate::db::begin_write(&self.db).await?;
        ensure_active_user(&txn, user, now).await?;
        let id = Uuid::now_v7();
        let recurring = new.recurrence.is_some();
        let model = tasks::ActiveModel {
            id: Set(id),
            user_id: Set(user.as_str().to_owned()),
            search_text: Set(search_text(new.title.as_str(), new.description.as_str())),
            title: Set(new.title.into_inner()),
            description: Set(new.description.into_inner()),
            priority: Set(new.priority.rank()),
            tags: Set(encode_tags(new.tags.as_slice())),
            due_at: Set(new.due_at),
            time_zone: Set(new.time_zone.name().to_owned()),
            recurrence: Set(new.recurrence.map(|f| f.as_str().to_owned())),
            series_id: Set(recurring.then_some(id)),
            anchor_local: Set(if recurring {
                new.due_local.map(encode_anchor)
            } else {
                None
            }),
            occurrence: Set(0),
            completed: Set(false),
            completed_at: Set(None),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        }
        .insert(&txn)
        .await?;
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
            let (next, changed) = apply_patch(&current, &patch, now);
            if changed.is_empty() {
                txn.rollback().await?;
                return Ok((to_snapshot(&current)?, false));
            }
            let completing = !current.completed && next.completed;
            let Some(saved) = save_if_version(&txn, &next, current.version).await? else {
                txn.rollback().await?;
                continue;
            };
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
            let mut next = current.clone();
            next.deleted_at = Some(now);
            next.version = current.version + 1;
            next.updated_at = now;
            let Some(saved) = save_if_version(&txn, &next, current.version).await? else {
                txn.rollback().await?;
                continue;
            };
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
            .all(&txn)
            .await?;
        let count = live.len() as u64;
        for current in live {
            let mut next = current.clone();
            next.deleted_at = Some(now);
            next.version = current.version + 1;
            next.updated_at = now;
            let saved = save_if_version(&txn, &next, current.version)
                .await?
                .ok_or(StoreError::Conflict)?;
            append_event(
                &txn,
                EventType::TaskDeleted,
                &to_snapshot(&saved)?,
                Vec::new(),
                now,
            )
            .await?;
        }
        let mut user_row: users::ActiveModel = row.into();
        user_row.deleted_at = Set(Some(now));
        user_row.update(&txn).await?;
        txn.commit().await?;
        Ok(count)
    }

    /// True when the user exists and was deleted (consumers skip their late events).
    pub async fn is_user_deleted(&self, user: &str) -> Result<bool, StoreError> {
        Ok(users::Entity::find_by_id(user)
            .one(&self.db)
            .await?
            .is_some_and(|u| u.deleted_at.is_some()))
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

    /// Number of live tasks of a user (tests and diagnostics).
    pub async fn count(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(tasks::Entity::find()
            .filter(tasks::Column::UserId.eq(user.as_str()))
            .filter(tasks::Column::DeletedAt.is_null())
            .count(&self.db)
            .await?)
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Records the user on first use; refuses a deleted user.
/// Fails with [`StoreError::UserDeleted`] when the user's account was deleted; creates the
/// user row on first use. The row stays locked (shared) until the write commits, so an
/// account deletion (which locks it exclusively) waits for writes in flight and deletes what
/// they wrote, and writes that come after it see the account deleted. (SQLite serialises
/// write transactions, which gives the same order.)
async fn ensure_active_user<C: ConnectionTrait>(
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

async fn find_live<C: ConnectionTrait>(
    db: &C,
    user: &UserId,
    id: Uuid,
) -> Result<tasks::Model, StoreError> {
    tasks::Entity::find_by_id(id)
        .filter(tasks::Column::UserId.eq(user.as_str()))
        .filter(tasks::Column::DeletedAt.is_null())
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Writes `next` only if the row still has `expected_version`; `None` when someone else won.
async fn save_if_version(
    txn: &DatabaseTransaction,
    next: &tasks::Model,
    expected_version: i64,
) -> Result<Option<tasks::Model>, StoreError> {
    let active: tasks::ActiveModel = next.clone().into();
    let mut active = active.reset_all();
    active.id = sea_orm::ActiveValue::Unchanged(next.id);
    let result = tasks::Entity::update_many()
        .set(active)
        .filter(tasks::Column::Id.eq(next.id))
        .filter(tasks::Column::Version.eq(expected_version))
        .exec(txn)
        .await?;
    Ok((result.rows_affected == 1).then(|| next.clone()))
}

/// The row after `patch`, and the names of the fields that really changed.
fn apply_patch(
    current: &tasks::Model,
    patch: &TaskPatch,
    now: DateTime<Utc>,
) -> (tasks::Model, Vec<String>) {
    let mut next = current.clone();
    let mut changed = Vec::new();
    let mut note = |name: &str, differs: bool| {
        if differs {
            changed.push(name.to_owned());
        }
    };
    if let Some(title) = &patch.title {
        note("title", next.title != title.as_str());
        next.title = title.as_str().to_owned();
    }
    if let Some(d) = &patch.description {
        note("description", next.description != d.as_str());
        next.description = d.as_str().to_owned();
    }
    next.search_text = search_text(&next.title, &next.description);
    if let Some(p) = patch.priority {
        note("priority", next.priority != p.rank());
        next.priority = p.rank();
    }
    if let Some(tags) = &patch.tags {
        let encoded = encode_tags(tags.as_slice());
        note("tags", next.tags != encoded);
        next.tags = encoded;
    }
    if let Some(tz) = patch.time_zone {
        note("time_zone", next.time_zone != tz.name());
        next.time_zone = tz.name().to_owned();
    }
    // When the task is due, as an instant and as the local wall time the user meant.
    let mut due_local = None;
    let mut due_moved = false;
    if let Some(due) = &patch.due {
        let new_at = due.map(|(at, _)| at);
        note("due_at", next.due_at != new_at);
        // Moved: another instant, or (with a new zone) another local wall time. Restating
        // the due time an instance already has (a PUT, a patch naming its own zone) is not.
        let was_local = current
            .due_at
            .zip(TimeZone::parse(&current.time_zone).ok())
            .map(|(at, tz)| to_local(tz.tz(), at));
        due_local = due.map(|(_, local)| local);
        due_moved = current.due_at != new_at
            || (current.time_zone != next.time_zone && due_local != was_local);
        next.due_at = new_at;
    }
    if let Some(rec) = patch.recurrence {
        let new_rec = rec.map(|f| f.as_str().to_owned());
        note("recurrence", next.recurrence != new_rec);
        next.recurrence = new_rec;
    }
    // A series is anchored where its instance is due when it starts recurring, when its
    // frequency changes, and when the user moves the instance's due time; plain edits of an
    // instance keep the anchor (and so the anchor day of a monthly series). A task that
    // stops recurring leaves its series.
    if next.recurrence.is_some() {
        if next.series_id.is_none() {
            next.series_id = Some(next.id);
            next.occurrence = 0;
        }
        if due_moved || next.recurrence != current.recurrence {
            let local_now = due_local.or_else(|| {
                next.due_at
                    .zip(TimeZone::parse(&next.time_zone).ok())
                    .map(|(at, tz)| to_local(tz.tz(), at))
            });
            next.anchor_local = local_now.map(encode_anchor);
        }
    } else {
        next.anchor_local = None;
    }
    if let Some(done) = patch.completed {
        note("completed", next.completed != done);
        if next.completed != done {
            next.completed = done;
            next.completed_at = done.then_some(now);
        }
    }
    // The anchor is part of the recurrence a consumer sees.
    if next.recurrence.is_some()
        && next.anchor_local != current.anchor_local
        && !changed.iter().any(|c| c == "recurrence")
    {
        changed.push("recurrence".to_owned());
    }
    if !changed.is_empty() {
        next.version = current.version + 1;
        next.updated_at = now;
    }
    (next, changed)
}

pub(crate) async fn append_event<C: ConnectionTrait>(
    db: &C,
    event_type: EventType,
    snapshot: &TaskSnapshot,
    changed_fields: Vec<String>,
    now: DateTime<Utc>,
) -> Result<TaskEvent, StoreError> {
    let event = TaskEvent::new(
        event_type,
        snapshot.clone(),
        changed_fields,
        Uuid::now_v7(),
        now,
    );
    let payload = serde_json::to_string(&event)
        .map_err(|e| StoreError::Corrupt(format!("event does not serialise: {e}")))?;
    outbox::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        event_id: Set(event.event_id),
        user_id: Set(event.user_id.clone()),
        topic: Set(topics::TASK_EVENTS.to_owned()),
        event_type: Set(event_type.as_str().to_owned()),
        payload: Set(payload),
        created_at: Set(now),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        parked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(event)
}

/// What `q` searches: title and description folded to lower case here, in Rust, so that
/// SQLite and PostgreSQL (whatever its locale) agree on every letter.
pub(crate) fn search_text(title: &str, description: &str) -> String {
    format!("{}\n{}", title.to_lowercase(), description.to_lowercase())
}

pub(crate) fn encode_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(",{},", tags.join(","))
    }
}

fn decode_tags(raw: &str) -> Vec<String> {
    raw.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn encode_anchor(local: NaiveDateTime) -> String {
    local.format(ANCHOR_FORMAT).to_string()
}

/// The rows after `after` in the listing's order (sort value, then id, both ascending or
/// both descending; tasks without a due time last in either direction).
fn beyond(after: &After, descending: bool) -> Condition {
    let past = |left: Expr, right: Expr| {
        if descending {
            left.lt(right)
        } else {
            left.gt(right)
        }
    };
    let id_past = || past(Expr::col(tasks::Column::Id), Expr::val(after.id));
    let then_id = |left: Expr, right: Expr| {
        Condition::any()
            .add(past(left.clone(), right.clone()))
            .add(Condition::all().add(left.eq(right)).add(id_past()))
    };
    match &after.key {
        SortValue::Created(at) => then_id(Expr::col(tasks::Column::CreatedAt), Expr::val(*at)),
        SortValue::Priority(p) => then_id(Expr::col(tasks::Column::Priority), Expr::val(p.rank())),
        SortValue::Title(title) => then_id(
            Func::lower(Expr::col(tasks::Column::Title)).into(),
            Func::lower(Expr::val(title.as_str())).into(),
        ),
        SortValue::Due(Some(at)) => Condition::any()
            .add(
                Condition::all()
                    .add(tasks::Column::DueAt.is_not_null())
                    .add(then_id(Expr::col(tasks::Column::DueAt), Expr::val(*at))),
            )
            .add(tasks::Column::DueAt.is_null()),
        SortValue::Due(None) => Condition::all()
            .add(tasks::Column::DueAt.is_null())
            .add(id_past()),
    }
}

/// The event-and-API view of a stored row.
pub fn to_snapshot(m: &tasks::Model) -> Result<TaskSnapshot, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("task {}: {what}", m.id));
    let priority = Priority::from_rank(m.priority).ok_or_else(|| corrupt("priority"))?;
    let time_zone = TimeZone::parse(&m.time_zone).map_err(|_| corrupt("time zone"))?;
    let recurrence = match (&m.recurrence, m.series_id) {
        (Some(freq), Some(series_id)) => Some(Recurrence {
            frequency: freq.parse().map_err(|_| corrupt("recurrence"))?,
            series_id,
            anchor: m
                .anchor_local
                .as_deref()
                .map(|a| NaiveDateTime::parse_from_str(a, ANCHOR_FORMAT))
                .transpose()
                .map_err(|_| corrupt("anchor"))?,
            occurrence: u32::try_from(m.occurrence).map_err(|_| corrupt("occurrence"))?,
        }),
        (None, _) => None,
        (Some(_), None) => return Err(corrupt("recurring task without series")),
    };
    Ok(TaskSnapshot {
        id: m.id,
        user_id: m.user_id.clone(),
        title: m.title.clone(),
        description: m.description.clone(),
        priority,
        tags: decode_tags(&m.tags),
        due_at: m.due_at,
        time_zone,
        recurrence,
        completed: m.completed,
        completed_at: m.completed_at,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}
