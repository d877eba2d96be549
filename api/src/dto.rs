//! Request and response bodies, and their parsing into domain values at the edge.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use todo_domain::{
    time::{resolve_local, to_local},
    Description, Frequency, Priority, Tags, TaskSnapshot, TimeZone, Title,
};
use todo_store::{ListQuery, NewTask, SortKey, StatusFilter, TaskPatch};

use crate::error::ApiError;

/// Body of `POST /api/{user_id}/tasks` and `PUT /api/{user_id}/tasks/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// RFC 3339 with an offset (`2026-12-01T09:00:00Z`) or a local time in `time_zone`
    /// (`2026-12-01T09:00`).
    #[serde(default)]
    pub due_at: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub recurrence: Option<String>,
    /// Only for PUT.
    #[serde(default)]
    pub completed: Option<bool>,
}

/// Body of `PATCH /api/{user_id}/tasks/{id}`: every field optional; `null` clears
/// `due_at` and `recurrence`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPatchInput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub due_at: Option<Option<String>>,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub recurrence: Option<Option<String>>,
    #[serde(default)]
    pub completed: Option<bool>,
}

/// Distinguishes a field set to `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn parse_priority(raw: Option<&str>) -> Result<Priority, ApiError> {
    raw.map_or(Ok(Priority::default()), |p| p.parse().map_err(ApiError::from))
}

fn parse_recurrence(raw: Option<&str>) -> Result<Option<Frequency>, ApiError> {
    raw.map(|r| r.parse::<Frequency>().map_err(ApiError::from)).transpose()
}

fn parse_time_zone(raw: Option<&str>) -> Result<TimeZone, ApiError> {
    raw.map_or(Ok(TimeZone::UTC), |tz| TimeZone::parse(tz).map_err(ApiError::from))
}

/// A due time as an instant and as the local wall-clock time the user meant.
pub fn parse_due(raw: &str, tz: TimeZone) -> Result<(DateTime<Utc>, NaiveDateTime), ApiError> {
    let raw = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        let at = at.with_timezone(&Utc);
        return Ok((at, to_local(tz.tz(), at)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok((resolve_local(tz.tz(), local), local));
        }
    }
    Err(ApiError::invalid(
        "due_at",
        format!("due_at {raw:?} must be RFC 3339 (2026-12-01T09:00:00Z) or a local time in time_zone (2026-12-01T09:00)"),
    ))
}

impl TaskInput {
    pub fn into_new_task(self) -> Result<NewTask, ApiError> {
        let time_zone = parse_time_zone(self.time_zone.as_deref())?;
        let due = self.due_at.as_deref().map(|d| parse_due(d, time_zone)).transpose()?;
        Ok(NewTask {
            title: Title::parse(&self.title)?,
            description: Description::parse(self.description.as_deref().unwrap_or(""))?,
            priority: parse_priority(self.priority.as_deref())?,
            tags: Tags::parse(self.tags.as_deref().unwrap_or(&[]))?,
            due_at: due.map(|(at, _)| at),
            due_local: due.map(|(_, local)| local),
            time_zone,
            recurrence: parse_recurrence(self.recurrence.as_deref())?,
        })
    }

    /// A full replacement: absent optional fields take their defaults.
    pub fn into_replacement(self) -> Result<TaskPatch, ApiError> {
        let completed = self.completed;
        let new = self.into_new_task()?;
        Ok(TaskPatch {
            title: Some(new.title),
            description: Some(new.description),
            priority: Some(new.priority),
            tags: Some(new.tags),
            due: Some(new.due_at.zip(new.due_local)),
            time_zone: Some(new.time_zone),
            recurrence: Some(new.recurrence),
            completed,
        })
    }
}

impl TaskPatchInput {
    /// `current_tz`/`current_due`: the task as stored, so a local `due_at` is read in the
    /// right zone and a zone change keeps the due instant with its new local time.
    pub fn into_patch(
        self,
        current_tz: TimeZone,
        current_due: Option<DateTime<Utc>>,
    ) -> Result<TaskPatch, ApiError> {
        let time_zone = self.time_zone.as_deref().map(TimeZone::parse).transpose()?;
        let tz = time_zone.unwrap_or(current_tz);
        let due = match self.due_at {
            Some(Some(raw)) => Some(Some(parse_due(&raw, tz)?)),
            Some(None) => Some(None),
            None if time_zone.is_some() => current_due.map(|at| Some((at, to_local(tz.tz(), at)))),
            None => None,
        };
        Ok(TaskPatch {
            title: self.title.as_deref().map(Title::parse).transpose()?,
            description: self.description.as_deref().map(Description::parse).transpose()?,
            priority: self.priority.as_deref().map(str::parse::<Priority>).transpose()?,
            tags: self.tags.as_deref().map(Tags::parse).transpose()?,
            due,
            time_zone,
            recurrence: match self.recurrence {
                Some(r) => Some(parse_recurrence(r.as_deref())?),
                None => None,
            },
            completed: self.completed,
        })
    }
}

/// Query of `GET /api/{user_id}/tasks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Text searched in title and description (case-insensitive).
    pub q: Option<String>,
    /// `all` (default), `pending` or `completed`.
    pub status: Option<String>,
    pub priority: Option<String>,
    pub tag: Option<String>,
    pub due_before: Option<String>,
    pub due_after: Option<String>,
    pub overdue: Option<bool>,
    pub recurring: Option<bool>,
    /// `created` (default), `due`, `priority` or `title`.
    pub sort: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

pub const SEARCH_MAX_CHARS: usize = 200;

impl ListParams {
    pub fn into_query(self, now: DateTime<Utc>) -> Result<ListQuery, ApiError> {
        let status = match self.status.as_deref() {
            None | Some("all") => StatusFilter::All,
            Some("pending") => StatusFilter::Pending,
            Some("completed") => StatusFilter::Completed,
            Some(_) => return Err(ApiError::invalid("status", "status must be one of: all, pending, completed")),
        };
        let sort = match self.sort.as_deref() {
            None | Some("created") => SortKey::Created,
            Some("due") => SortKey::Due,
            Some("priority") => SortKey::Priority,
            Some("title") => SortKey::Title,
            Some(_) => return Err(ApiError::invalid("sort", "sort must be one of: created, due, priority, title")),
        };
        let descending = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(ApiError::invalid("order", "order must be asc or desc")),
        };
        let instant = |field: &str, raw: Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
            raw.map(|r| {
                DateTime::parse_from_rfc3339(&r)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|_| ApiError::invalid(field, format!("{field} must be an RFC 3339 time such as 2026-12-01T09:00:00Z")))
            })
            .transpose()
        };
        let limit = self.limit.unwrap_or(todo_store::tasks::LIST_LIMIT_DEFAULT);
        if limit == 0 || limit > todo_store::tasks::LIST_LIMIT_MAX {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be between 1 and {}", todo_store::tasks::LIST_LIMIT_MAX),
            ));
        }
        if let Some(q) = &self.q {
            if q.chars().count() > SEARCH_MAX_CHARS {
                return Err(ApiError::invalid("q", format!("q must be at most {SEARCH_MAX_CHARS} characters")));
            }
        }
        let tag = self
            .tag
            .map(|t| Tags::parse(&[t]).map(|tags| tags.into_inner().remove(0)))
            .transpose()
            .map_err(|e| ApiError::invalid("tag", e.message))?;
        Ok(ListQuery {
            search: self.q.map(|q| q.trim().to_owned()),
            status,
            priority: self.priority.as_deref().map(str::parse::<Priority>).transpose()?,
            tag,
            due_before: instant("due_before", self.due_before)?,
            due_after: instant("due_after", self.due_after)?,
            overdue_at: self.overdue.unwrap_or(false).then_some(now),
            recurring: self.recurring,
            sort,
            descending,
            offset: self.cursor.as_deref().map(decode_cursor).transpose()?.unwrap_or(0),
            limit,
        })
    }
}

/// Cursors are opaque to clients; today they carry a position.
pub fn encode_cursor(offset: u64) -> String {
    format!("c{offset:x}")
}

fn decode_cursor(raw: &str) -> Result<u64, ApiError> {
    raw.strip_prefix('c')
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| ApiError::invalid("cursor", "cursor is not one this API returned"))
}

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: TaskSnapshot,
    /// The due time in the task's own time zone, for display.
    pub due_local: Option<String>,
}

impl From<TaskSnapshot> for TaskView {
    fn from(task: TaskSnapshot) -> Self {
        let due_local = task
            .due_at
            .map(|at| at.with_timezone(&task.time_zone.tz()).to_rfc3339());
        Self { task, due_local }
    }
}

#[derive(Debug, Serialize)]
pub struct TaskPageView {
    pub items: Vec<TaskView>,
    pub next_cursor: Option<String>,
}
