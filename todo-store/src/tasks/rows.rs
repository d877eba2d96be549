//! Rows and domain values: how a task is stored (tags, anchor, search text), read back
//! into a snapshot, and how list queries are built (keyset condition, LIKE escaping).

use super::*;

/// What a new task holds.
pub(crate) struct TaskContent<'a> {
    pub user_id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub priority: Priority,
    pub tags: &'a [String],
    pub due: Option<Due>,
    /// As stored ([`encode_reminders`]).
    pub reminders: Option<String>,
    pub time_zone: &'a TimeZone,
    pub recurrence: Option<Frequency>,
}

/// Where a new task stands in its series.
pub(crate) struct SeriesPlace {
    pub series_id: Uuid,
    pub anchor: Option<NaiveDateTime>,
    pub occurrence: i32,
}

/// The row of a new task (open, live, version 1): a task created, or the next instance of a
/// series. Without `series` the task is in none (occurrence 0).
pub(crate) fn new_row(
    id: Uuid,
    content: TaskContent<'_>,
    series: Option<SeriesPlace>,
    now: DateTime<Utc>,
) -> tasks::ActiveModel {
    tasks::ActiveModel {
        id: Set(id),
        user_id: Set(content.user_id.to_owned()),
        search_text: Set(search_text(content.title, content.description)),
        title: Set(content.title.to_owned()),
        description: Set(content.description.to_owned()),
        priority: Set(content.priority.rank()),
        tags: Set(encode_tags(content.tags)),
        due_at: Set(content.due.map(|d| d.at)),
        due_date: Set(content.due.and_then(|d| d.date())),
        reminders: Set(content.reminders),
        time_zone: Set(content.time_zone.name().to_owned()),
        recurrence: Set(content.recurrence.map(|f| f.as_str().to_owned())),
        series_id: Set(series.as_ref().map(|s| s.series_id)),
        anchor_local: Set(series.as_ref().and_then(|s| s.anchor).map(encode_anchor)),
        occurrence: Set(series.map_or(0, |s| s.occurrence)),
        completed: Set(false),
        completed_at: Set(None),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    }
}

pub(super) fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
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

pub(super) fn decode_tags(raw: &str) -> Vec<String> {
    raw.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The user's reminders as stored: canonical spellings joined by `,`; `None` when none.
pub(crate) fn encode_reminders(reminders: &Reminders) -> Option<String> {
    (!reminders.is_empty()).then(|| reminders.to_strings().join(","))
}

pub(crate) fn decode_reminders(m: &tasks::Model) -> Result<Reminders, StoreError> {
    let list: Vec<&str> = m
        .reminders
        .as_deref()
        .map(|r| r.split(',').collect())
        .unwrap_or_default();
    Reminders::parse(&list)
        .map_err(|e| StoreError::Corrupt(format!("task {}: reminders: {}", m.id, e.message)))
}

/// When the stored task is due, as the user gave it (a day, or a time).
pub(crate) fn due_of(m: &tasks::Model) -> Option<Due> {
    let tz = TimeZone::parse(&m.time_zone).ok()?.tz();
    match (m.due_date, m.due_at) {
        (Some(date), _) => Some(Due::on_day(tz, date)),
        (None, Some(at)) => Some(Due::at(at, to_local(tz, at))),
        (None, None) => None,
    }
}

pub(crate) fn encode_anchor(local: NaiveDateTime) -> String {
    local.format(ANCHOR_FORMAT).to_string()
}

/// The rows after `after` in the listing's order (sort value, then id, both ascending or
/// both descending; tasks without a due time last in either direction).
pub(super) fn beyond(after: &After, descending: bool) -> Condition {
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
        due_date: m.due_date,
        reminders: decode_reminders(m)?.to_strings(),
        time_zone,
        recurrence,
        completed: m.completed,
        completed_at: m.completed_at,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}
