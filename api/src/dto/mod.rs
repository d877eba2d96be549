//! Request and response bodies, and their parsing into domain values at the edge.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use todo_domain::{
    Description, Due, Frequency, Priority, Reminders, Tags, TaskSnapshot, TimeZone, Title,
    time::{resolve_local, to_local},
};
use todo_store::{NewTask, TaskPatch};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

mod listing;
pub(crate) mod tool_schema;

pub use listing::{
    ListParams, SEARCH_MAX_CHARS, SORT_KEYS, SORT_ORDERS, STATUS_FILTERS, TaskPageView,
    encode_cursor,
};

use crate::{
    error::ApiError,
    openapi::{self as doc, UserIdSchema},
};

/// Path of the routes under `/api/{user_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The user whose tasks these are; must be the token's subject.
    #[param(value_type = UserIdSchema)]
    pub user_id: String,
}

/// Path of the routes under `/api/{user_id}/tasks/{task_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// The user whose tasks these are; must be the token's subject.
    #[param(value_type = UserIdSchema)]
    pub user_id: String,
    /// The task's id. Parsed by the handler, so a malformed id gets the API's own 400.
    #[param(value_type = Uuid)]
    pub task_id: String,
}

/// A task as a client writes it: the body of `POST /api/{user_id}/tasks` and
/// `PUT /api/{user_id}/tasks/{id}`, and the arguments of the `add_task` tool (without
/// `completed`). Absent optional fields take their defaults (on PUT too: it replaces the
/// whole task). The doc comments are the fields' descriptions in the OpenAPI document and
/// in the tool's JSON Schema alike.
#[derive(Debug, Deserialize, ToSchema, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tool_schema::tidy)]
#[schema(examples(json!({"title": "Water the plants", "priority": "high", "tags": ["home"],
    "due_at": "2026-12-01T09:00", "time_zone": "Europe/Berlin", "recurrence": "weekly"})))]
pub struct TaskInput {
    /// What the task is, e.g. "Water the plants". Surrounding spaces are trimmed; it must
    /// not be empty or contain control characters.
    #[schema(schema_with = doc::title)]
    #[schemars(schema_with = "tool_schema::title")]
    pub title: String,
    /// Longer notes; empty when absent.
    #[serde(default)]
    #[schema(schema_with = doc::description_or_null)]
    #[schemars(schema_with = "tool_schema::description")]
    pub description: Option<String>,
    /// How urgent the task is; `medium` when absent.
    #[serde(default)]
    #[schema(value_type = Option<Priority>)]
    #[schemars(schema_with = "tool_schema::priority")]
    pub priority: Option<String>,
    /// Labels such as ["home", "garden"]; stored in lower case, spaces become `-`,
    /// duplicates are dropped.
    #[serde(default)]
    #[schema(schema_with = doc::tags_or_null)]
    #[schemars(schema_with = "tool_schema::tags")]
    pub tags: Option<Vec<String>>,
    /// When the task is due: an RFC 3339 time with an offset ("2026-12-01T09:00:00Z",
    /// "2026-12-01T09:00:00+01:00"), a local wall-clock time without offset
    /// ("2026-12-01T09:00"), which is read in `time_zone`, or a date alone ("2026-12-01")
    /// for a task due that day with no time (sorted and filtered as due at the day's last
    /// second). No due time when absent.
    #[serde(default)]
    #[schema(schema_with = doc::due_at_or_null)]
    #[schemars(schema_with = "tool_schema::due_at")]
    pub due_at: Option<String>,
    /// The user's IANA time zone name, e.g. "Europe/Berlin", "America/New_York",
    /// "Asia/Tokyo"; `UTC` when absent. A local `due_at` is read in it, and a recurring task
    /// keeps its local time across daylight-saving changes.
    #[serde(default)]
    #[schema(schema_with = doc::time_zone_or_null)]
    #[schemars(schema_with = "tool_schema::time_zone")]
    pub time_zone: Option<String>,
    /// Makes the task repeat: when it is completed, the next instance is created (daily +1
    /// day, weekly +7 days, monthly the same day of the month, capped at the month's end).
    /// No repetition when absent.
    #[serde(default)]
    #[schema(value_type = Option<Frequency>)]
    #[schemars(schema_with = "tool_schema::recurrence")]
    pub recurrence: Option<String>,
    /// When to remind the user. For a task due at a time: offsets before it, such as "15m",
    /// "1h", "1d", "1h30m" or ISO 8601 "PT15M" (a day is a calendar day in `time_zone`), at
    /// most 30 days. For a task due on a date: local times such as "09:00" (on the day) or
    /// "-1d 18:00" (the evening before). At most 5; absent or empty: one reminder within a
    /// day of the due time.
    #[serde(default)]
    #[schema(schema_with = doc::reminders_or_null)]
    #[schemars(schema_with = "tool_schema::reminders")]
    pub reminders: Option<Vec<String>>,
    /// Only for PUT: `true` replaces the task as completed. A new task cannot be created
    /// completed.
    #[serde(default)]
    #[schemars(schema_with = "tool_schema::boolean")]
    pub completed: Option<bool>,
}

/// A change to a task as a client writes it: the body of
/// `PATCH /api/{user_id}/tasks/{id}`, and the arguments of the `update_task` tool (with
/// its `task_id`). Every field is optional, and what is left out stays; `null` clears
/// `due_at`, `recurrence` and `reminders`.
#[derive(Debug, Default, Deserialize, ToSchema, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tool_schema::tidy)]
#[schema(examples(json!({"title": "Water all the plants", "due_at": null})))]
pub struct TaskPatchInput {
    /// New title.
    #[serde(default)]
    #[schema(schema_with = doc::title_or_null)]
    #[schemars(schema_with = "tool_schema::title")]
    pub title: Option<String>,
    /// New notes; "" empties them.
    #[serde(default)]
    #[schema(schema_with = doc::description_or_null)]
    #[schemars(schema_with = "tool_schema::description")]
    pub description: Option<String>,
    /// New priority.
    #[serde(default)]
    #[schema(value_type = Option<Priority>)]
    #[schemars(schema_with = "tool_schema::priority")]
    pub priority: Option<String>,
    /// The new complete list of tags (replaces the old list; [] removes all).
    #[serde(default)]
    #[schema(schema_with = doc::tags_or_null)]
    #[schemars(schema_with = "tool_schema::tags")]
    pub tags: Option<Vec<String>>,
    /// New due time, in the same formats as a new task's: RFC 3339 with an offset
    /// ("2026-12-01T09:00:00Z"), a local time ("2026-12-01T09:00") read in the new
    /// `time_zone` if given, else in the task's, or a date ("2026-12-01"). `null` removes
    /// the due time.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = doc::due_at_or_null)]
    #[schemars(schema_with = "tool_schema::due_at_or_null")]
    pub due_at: Option<Option<String>>,
    /// New IANA time zone name, e.g. "Europe/Berlin". Changing only the zone keeps the due
    /// instant and shows it at the new zone's local time (an all-day task keeps its day).
    #[serde(default)]
    #[schema(schema_with = doc::time_zone_or_null)]
    #[schemars(schema_with = "tool_schema::time_zone")]
    pub time_zone: Option<String>,
    /// New repetition; `null` stops the task repeating.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Frequency>)]
    #[schemars(schema_with = "tool_schema::recurrence_or_null")]
    pub recurrence: Option<Option<String>>,
    /// The new complete list of reminders, in the formats of a new task's (replaces the old
    /// list); `null` or [] removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = doc::reminders_or_null)]
    #[schemars(schema_with = "tool_schema::reminders_or_null")]
    pub reminders: Option<Option<Vec<String>>>,
    /// `true` completes the task; `false` reopens a completed task.
    #[serde(default)]
    #[schemars(schema_with = "tool_schema::boolean")]
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
    raw.map_or(Ok(Priority::default()), |p| {
        p.parse().map_err(ApiError::from)
    })
}

fn parse_recurrence(raw: Option<&str>) -> Result<Option<Frequency>, ApiError> {
    raw.map(|r| r.parse::<Frequency>().map_err(ApiError::from))
        .transpose()
}

pub(crate) fn parse_time_zone(raw: Option<&str>) -> Result<TimeZone, ApiError> {
    raw.map_or(Ok(TimeZone::UTC), |tz| {
        TimeZone::parse(tz).map_err(ApiError::from)
    })
}

/// PostgreSQL text cannot hold NUL, so it is refused at the edge (on SQLite too, so both
/// databases answer alike) instead of failing in the database.
pub(crate) fn text_without_nul(field: &str, raw: &str) -> Result<(), ApiError> {
    if raw.contains('\0') {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not contain NUL (\\u0000) characters"),
        ));
    }
    Ok(())
}

fn parse_description(raw: &str) -> Result<Description, ApiError> {
    text_without_nul("description", raw)?;
    Ok(Description::parse(raw)?)
}

/// The years a due time may fall in (its local date and its UTC instant).
pub const DUE_YEARS: std::ops::RangeInclusive<i32> = 1900..=2999;

fn parse_reminders(raw: Option<&[String]>) -> Result<Reminders, ApiError> {
    let raw = raw.unwrap_or_default();
    for r in raw {
        text_without_nul("reminders", r)?;
    }
    Ok(Reminders::parse(raw)?)
}

/// When a task is due: an instant with the local wall-clock time the user meant, or a day.
pub fn parse_due(raw: &str, tz: TimeZone) -> Result<Due, ApiError> {
    let raw = raw.trim();
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        if !DUE_YEARS.contains(&date.year()) {
            return Err(out_of_range(raw));
        }
        return Ok(Due::on_day(tz.tz(), date));
    }
    let due = if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        let at = at.with_timezone(&Utc);
        Some((at, to_local(tz.tz(), at)))
    } else {
        [
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
        ]
        .into_iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
        .map(|local| (resolve_local(tz.tz(), local), local))
    };
    let Some((at, local)) = due else {
        return Err(ApiError::invalid(
            "due_at",
            format!(
                "due_at {raw:?} must be RFC 3339 (2026-12-01T09:00:00Z), a local time in time_zone (2026-12-01T09:00) or a date (2026-12-01)"
            ),
        ));
    };
    if !DUE_YEARS.contains(&at.year()) || !DUE_YEARS.contains(&local.year()) {
        return Err(out_of_range(raw));
    }
    Ok(Due::at(at, local))
}

fn out_of_range(raw: &str) -> ApiError {
    ApiError::invalid(
        "due_at",
        format!(
            "due_at {raw:?} is out of range: the year must be {} to {}",
            DUE_YEARS.start(),
            DUE_YEARS.end()
        ),
    )
}

/// A task id as a client wrote it.
pub fn parse_task_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid("task_id", "task id must be a UUID"))
}

impl TaskInput {
    /// A task to create: it cannot be created completed.
    pub fn into_creation(self) -> Result<NewTask, ApiError> {
        if self.completed.is_some() {
            return Err(ApiError::invalid(
                "completed",
                "a new task cannot be created completed",
            ));
        }
        self.into_new_task()
    }

    pub fn into_new_task(self) -> Result<NewTask, ApiError> {
        let time_zone = parse_time_zone(self.time_zone.as_deref())?;
        let due = self
            .due_at
            .as_deref()
            .map(|d| parse_due(d, time_zone))
            .transpose()?;
        Ok(NewTask {
            title: Title::parse(&self.title)?,
            description: parse_description(self.description.as_deref().unwrap_or(""))?,
            priority: parse_priority(self.priority.as_deref())?,
            tags: Tags::parse(self.tags.as_deref().unwrap_or(&[]))?,
            due,
            time_zone,
            recurrence: parse_recurrence(self.recurrence.as_deref())?,
            reminders: parse_reminders(self.reminders.as_deref())?,
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
            due: Some(new.due),
            time_zone: Some(new.time_zone),
            recurrence: Some(new.recurrence),
            reminders: Some(new.reminders),
            completed,
        })
    }
}

impl TaskPatchInput {
    /// `current`: the task as stored, so a local `due_at` is read in the right zone, and a
    /// zone change keeps the due instant with its new local time (an all-day task keeps its
    /// day, which then ends at another instant).
    pub fn into_patch(self, current: &TaskSnapshot) -> Result<TaskPatch, ApiError> {
        let time_zone = self.time_zone.as_deref().map(TimeZone::parse).transpose()?;
        let tz = time_zone.unwrap_or(current.time_zone);
        let due = match self.due_at {
            Some(Some(raw)) => Some(Some(parse_due(&raw, tz)?)),
            Some(None) => Some(None),
            None if time_zone.is_some() => match (current.due_date, current.due_at) {
                (Some(date), _) => Some(Some(Due::on_day(tz.tz(), date))),
                (None, Some(at)) => Some(Some(Due::at(at, to_local(tz.tz(), at)))),
                (None, None) => None,
            },
            None => None,
        };
        Ok(TaskPatch {
            title: self.title.as_deref().map(Title::parse).transpose()?,
            description: self
                .description
                .as_deref()
                .map(parse_description)
                .transpose()?,
            priority: self
                .priority
                .as_deref()
                .map(str::parse::<Priority>)
                .transpose()?,
            tags: self.tags.as_deref().map(Tags::parse).transpose()?,
            due,
            time_zone,
            recurrence: match self.recurrence {
                Some(r) => Some(parse_recurrence(r.as_deref())?),
                None => None,
            },
            reminders: self
                .reminders
                .map(|r| parse_reminders(r.as_deref()))
                .transpose()?,
            completed: self.completed,
        })
    }
}

/// A task as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Task)]
pub struct TaskView {
    #[serde(flatten)]
    #[schema(value_type = TaskSnapshot)]
    pub task: TaskSnapshot,
    /// The due time in the task's own time zone (RFC 3339 with that zone's offset), for
    /// display; for an all-day task the end of its day (`due_date` says which day).
    #[schema(nullable, format = DateTime)]
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
