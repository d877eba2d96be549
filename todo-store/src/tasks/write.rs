//! The write path's pieces: the live row, the version check, a patch applied to a row,
//! and the event appended to the outbox in the same transaction.

use super::*;

pub(super) async fn find_live<C: ConnectionTrait>(
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
pub(super) async fn save_if_version(
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

/// `task` deleted at `now`: its next version, kept as a tombstone.
pub(super) fn tombstone(mut task: tasks::Model, now: DateTime<Utc>) -> tasks::Model {
    task.deleted_at = Some(now);
    task.version += 1;
    task.updated_at = now;
    task
}

/// The row after `patch`, and the names of the fields that really changed; an error when
/// the task after it would break a rule ([`StoreError::Invalid`]).
pub(super) fn apply_patch(
    current: &tasks::Model,
    patch: &TaskPatch,
    now: DateTime<Utc>,
) -> Result<(tasks::Model, Vec<String>), StoreError> {
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
        let new_at = due.map(|d| d.at);
        let new_date = due.and_then(|d| d.date());
        note("due_at", next.due_at != new_at || next.due_date != new_date);
        // Moved: another instant or day, or (with a new zone) another local wall time.
        // Restating the due time an instance already has (a PUT, a patch naming its own
        // zone) is not.
        let was_local = current
            .due_at
            .zip(TimeZone::parse(&current.time_zone).ok())
            .map(|(at, tz)| to_local(tz.tz(), at));
        due_local = due.map(|d| d.local);
        due_moved = current.due_at != new_at
            || current.due_date != new_date
            || (current.time_zone != next.time_zone
                && new_date.is_none()
                && due_local != was_local);
        next.due_at = new_at;
        next.due_date = new_date;
    }
    if let Some(reminders) = &patch.reminders {
        let encoded = encode_reminders(reminders);
        note("reminders", next.reminders != encoded);
        next.reminders = encoded;
    }
    // Checked on the task as it would be: a patch of the due time alone can make the
    // reminders it keeps unfit (a time of day on a task now due at a time).
    decode_reminders(&next)?
        .check_fits(due_of(&next).as_ref())
        .map_err(StoreError::Invalid)?;
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
            let local_now = due_local.or_else(|| due_of(&next).map(|d| d.local));
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
    Ok((next, changed))
}

/// Rewrites the reminder rows of the task `row` as it now is: one per reminder with its
/// firing time while the task is live, incomplete and due; none otherwise. So a moved due
/// time or changed reminders re-arm them, and a completed or deleted task has none.
pub(crate) async fn sync_reminders<C: ConnectionTrait>(
    db: &C,
    row: &tasks::Model,
) -> Result<(), StoreError> {
    task_reminders::Entity::delete_many()
        .filter(task_reminders::Column::TaskId.eq(row.id))
        .exec(db)
        .await?;
    if row.completed || row.deleted_at.is_some() || row.reminders.is_none() {
        return Ok(());
    }
    let (Some(due), Ok(tz)) = (due_of(row), TimeZone::parse(&row.time_zone)) else {
        return Ok(());
    };
    let rows: Vec<task_reminders::ActiveModel> = decode_reminders(row)?
        .firing(&due, tz.tz())
        .into_iter()
        .map(|(reminder, fires_at)| task_reminders::ActiveModel {
            task_id: Set(row.id),
            reminder: Set(reminder.to_string()),
            user_id: Set(row.user_id.clone()),
            due_at: Set(due.at),
            fires_at: Set(fires_at),
        })
        .collect();
    if !rows.is_empty() {
        task_reminders::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

pub(crate) async fn append_event<C: ConnectionTrait>(
    db: &C,
    event_type: EventType,
    snapshot: &TaskSnapshot,
    changed_fields: Vec<String>,
    now: DateTime<Utc>,
) -> Result<TaskEvent, StoreError> {
    let (event, row) = outbox_row(event_type, snapshot, changed_fields, now)?;
    row.insert(db).await?;
    Ok(event)
}

/// Outbox rows per statement in [`append_events`]: 11 parameters a row stays under
/// SQLite's 32,766 (PostgreSQL's limit is 65,535).
const APPEND_CHUNK: usize = 1_000;

/// [`append_event`] for many tasks at once (no changed fields), in `snapshots`' order,
/// a statement per [`APPEND_CHUNK`] rows instead of one per event.
pub(super) async fn append_events<C: ConnectionTrait>(
    db: &C,
    event_type: EventType,
    snapshots: &[TaskSnapshot],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for chunk in snapshots.chunks(APPEND_CHUNK) {
        let rows = chunk
            .iter()
            .map(|s| outbox_row(event_type, s, Vec::new(), now).map(|(_, row)| row))
            .collect::<Result<Vec<_>, _>>()?;
        outbox::Entity::insert_many(rows).exec(db).await?;
    }
    Ok(())
}

/// The event of one change and its outbox row.
fn outbox_row(
    event_type: EventType,
    snapshot: &TaskSnapshot,
    changed_fields: Vec<String>,
    now: DateTime<Utc>,
) -> Result<(TaskEvent, outbox::ActiveModel), StoreError> {
    let event = TaskEvent::new(
        event_type,
        snapshot.clone(),
        changed_fields,
        Uuid::now_v7(),
        now,
    );
    let payload = serde_json::to_string(&event)
        .map_err(|e| StoreError::Corrupt(format!("event does not serialise: {e}")))?;
    let row = outbox::ActiveModel {
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
        traceparent: Set(crate::trace::current()),
    };
    Ok((event, row))
}
