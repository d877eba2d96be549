//! The tools' arguments: their JSON Schemas (what an LLM reads to call a tool) and their
//! conversion into the REST API's own input types, so both front doors parse alike.
//!
//! Enumerations and limits in the schemas come from the same constants the parsers use
//! (`Priority::ALL`, `dto::SORT_KEYS`, `TITLE_MAX_CHARS`, ...). Optional fields are simply not
//! required; only `due_at` and `recurrence` of `update_task` admit `null`, which clears them.

use std::borrow::Cow;

use rmcp::{
    ErrorData,
    handler::server::{common::FromContextPart, tool::ToolCallContext},
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, de::DeserializeOwned};
use todo_domain::{
    Frequency, Priority,
    task::{DESCRIPTION_MAX_CHARS, TAG_MAX_CHARS, TAGS_MAX_COUNT, TITLE_MAX_CHARS},
};
use todo_store::tasks::{LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};

use crate::dto::{self, ListParams, SEARCH_MAX_CHARS, TaskInput, TaskPatchInput};

/// A tool's arguments, parsed from the call's `arguments` object.
///
/// Named `Parameters` because rmcp's `#[tool]` takes a tool's input schema from the argument
/// of that name. Unlike rmcp's own wrapper, a parse failure names the offending argument
/// (`due_at: invalid type: integer ...`); `TaskTools::call_tool` turns it into a tool error
/// the model can act on instead of a JSON-RPC error.
pub struct Parameters<T>(pub T);

impl<T: JsonSchema> JsonSchema for Parameters<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Parameters<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = serde_json::Value::Object(context.arguments.take().unwrap_or_default());
        parse(arguments)
            .map(Parameters)
            .map_err(|message| ErrorData::invalid_params(message, None))
    }
}

/// A tool's arguments from a call's `arguments` object; the error names the offending
/// argument (`due_at: invalid type: integer ...`). Used by the MCP server and the chat.
pub fn parse<T: DeserializeOwned>(arguments: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// `add_task`: a new task. Only `title` is required.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tidy)]
pub struct AddTaskArgs {
    /// What the task is, e.g. "Water the plants". Surrounding spaces are trimmed.
    #[schemars(schema_with = "title")]
    pub title: String,
    /// Longer notes; empty when absent.
    #[serde(default)]
    #[schemars(schema_with = "description")]
    pub description: Option<String>,
    /// How urgent the task is; `medium` when absent.
    #[serde(default)]
    #[schemars(schema_with = "priority")]
    pub priority: Option<String>,
    /// Labels such as ["home", "garden"]; stored in lower case, spaces become `-`.
    #[serde(default)]
    #[schemars(schema_with = "tags")]
    pub tags: Option<Vec<String>>,
    /// When the task is due: an RFC 3339 time with an offset ("2026-12-01T09:00:00Z",
    /// "2026-12-01T09:00:00+01:00"), a local wall-clock time without offset
    /// ("2026-12-01T09:00"), which is read in `time_zone`, or a date alone ("2026-12-01")
    /// for a task due that day with no time. No due time when absent.
    #[serde(default)]
    #[schemars(schema_with = "due_at")]
    pub due_at: Option<String>,
    /// The user's IANA time zone name, e.g. "Europe/Berlin", "America/New_York",
    /// "Asia/Tokyo"; `UTC` when absent. A local `due_at` is read in it, and a recurring task
    /// keeps its local time across daylight-saving changes.
    #[serde(default)]
    #[schemars(schema_with = "time_zone")]
    pub time_zone: Option<String>,
    /// Makes the task repeat: when it is completed, the next instance is created (daily +1
    /// day, weekly +7 days, monthly the same day of the month, capped at the month's end).
    /// No repetition when absent.
    #[serde(default)]
    #[schemars(schema_with = "recurrence")]
    pub recurrence: Option<String>,
    /// When to remind the user. For a task due at a time: offsets before it, such as "15m",
    /// "1h", "1d" (a day is a calendar day in `time_zone`). For a task due on a date: local
    /// times such as "09:00" (on the day) or "-1d 18:00" (the evening before). At most 5;
    /// absent: one reminder within a day of the due time.
    #[serde(default)]
    #[schemars(schema_with = "reminders")]
    pub reminders: Option<Vec<String>>,
}

impl From<AddTaskArgs> for TaskInput {
    fn from(a: AddTaskArgs) -> Self {
        TaskInput {
            title: a.title,
            description: a.description,
            priority: a.priority,
            tags: a.tags,
            due_at: a.due_at,
            time_zone: a.time_zone,
            recurrence: a.recurrence,
            reminders: a.reminders,
            completed: None,
        }
    }
}

/// `list_tasks`: filters, sort and page. Every filter is optional; with none, all tasks are
/// listed, oldest first, 50 at a time.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tidy)]
pub struct ListTasksArgs {
    /// Text searched in title and description, case-insensitive, e.g. "plants".
    #[serde(default)]
    #[schemars(schema_with = "search")]
    pub q: Option<String>,
    /// Which tasks by completion: `pending` (not done yet), `completed`, or `all` (default).
    #[serde(default)]
    #[schemars(schema_with = "status")]
    pub status: Option<String>,
    /// Only tasks of this priority.
    #[serde(default)]
    #[schemars(schema_with = "priority")]
    pub priority: Option<String>,
    /// Only tasks carrying this tag, e.g. "home".
    #[serde(default)]
    #[schemars(schema_with = "tag")]
    pub tag: Option<String>,
    /// Only tasks due before this instant: RFC 3339 with an offset, e.g.
    /// "2026-12-01T00:00:00Z".
    #[serde(default)]
    #[schemars(schema_with = "instant")]
    pub due_before: Option<String>,
    /// Only tasks due at or after this instant: RFC 3339 with an offset, e.g.
    /// "2026-11-24T00:00:00+01:00".
    #[serde(default)]
    #[schemars(schema_with = "instant")]
    pub due_after: Option<String>,
    /// `true`: only pending tasks whose due time has passed.
    #[serde(default)]
    #[schemars(schema_with = "boolean")]
    pub overdue: Option<bool>,
    /// `true`: only repeating tasks; `false`: only one-off tasks.
    #[serde(default)]
    #[schemars(schema_with = "boolean")]
    pub recurring: Option<bool>,
    /// Sort key: `created` (default), `due` (tasks without a due time last), `priority` or
    /// `title`.
    #[serde(default)]
    #[schemars(schema_with = "sort")]
    pub sort: Option<String>,
    /// Sort direction: `asc` (default) or `desc`.
    #[serde(default)]
    #[schemars(schema_with = "order")]
    pub order: Option<String>,
    /// Page size.
    #[serde(default)]
    #[schemars(schema_with = "limit", extend("default" = LIST_LIMIT_DEFAULT))]
    pub limit: Option<u64>,
    /// To get the next page, pass the `next_cursor` of the previous result unchanged (with
    /// the same filters and sort).
    #[serde(default)]
    #[schemars(schema_with = "cursor")]
    pub cursor: Option<String>,
}

impl From<ListTasksArgs> for ListParams {
    fn from(a: ListTasksArgs) -> Self {
        ListParams {
            q: a.q,
            status: a.status,
            priority: a.priority,
            tag: a.tag,
            due_before: a.due_before,
            due_after: a.due_after,
            overdue: a.overdue,
            recurring: a.recurring,
            sort: a.sort,
            order: a.order,
            limit: a.limit,
            cursor: a.cursor,
        }
    }
}

/// `update_task`: the task and the fields to change; leave out what stays.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tidy)]
pub struct UpdateTaskArgs {
    /// The task's `id`, as returned by `add_task` or `list_tasks`.
    #[schemars(schema_with = "task_id")]
    pub task_id: String,
    /// New title.
    #[serde(default)]
    #[schemars(schema_with = "title")]
    pub title: Option<String>,
    /// New notes; "" empties them.
    #[serde(default)]
    #[schemars(schema_with = "description")]
    pub description: Option<String>,
    /// New priority.
    #[serde(default)]
    #[schemars(schema_with = "priority")]
    pub priority: Option<String>,
    /// The new complete list of tags (replaces the old list; [] removes all).
    #[serde(default)]
    #[schemars(schema_with = "tags")]
    pub tags: Option<Vec<String>>,
    /// New due time, in the same formats as `add_task`: RFC 3339 with an offset
    /// ("2026-12-01T09:00:00Z"), a local time ("2026-12-01T09:00") read in the new
    /// `time_zone` if given, else in the task's, or a date ("2026-12-01"). `null` removes
    /// the due time.
    #[serde(default, deserialize_with = "dto::present")]
    #[schemars(schema_with = "due_at_or_null")]
    pub due_at: Option<Option<String>>,
    /// New IANA time zone name, e.g. "Europe/Berlin". Changing only the zone keeps the due
    /// instant and shows it at the new zone's local time.
    #[serde(default)]
    #[schemars(schema_with = "time_zone")]
    pub time_zone: Option<String>,
    /// New repetition; `null` stops the task repeating.
    #[serde(default, deserialize_with = "dto::present")]
    #[schemars(schema_with = "recurrence_or_null")]
    pub recurrence: Option<Option<String>>,
    /// The new complete list of reminders, in the formats of `add_task` (replaces the old
    /// list); `null` or [] removes them.
    #[serde(default, deserialize_with = "dto::present")]
    #[schemars(schema_with = "reminders_or_null")]
    pub reminders: Option<Option<Vec<String>>>,
    /// `true` completes the task (like `complete_task`); `false` reopens a completed task.
    #[serde(default)]
    #[schemars(schema_with = "boolean")]
    pub completed: Option<bool>,
}

impl UpdateTaskArgs {
    /// The task id and the change, as the REST API's PATCH body.
    pub fn into_parts(self) -> (String, TaskPatchInput) {
        let patch = TaskPatchInput {
            title: self.title,
            description: self.description,
            priority: self.priority,
            tags: self.tags,
            due_at: self.due_at,
            time_zone: self.time_zone,
            recurrence: self.recurrence,
            reminders: self.reminders,
            completed: self.completed,
        };
        (self.task_id, patch)
    }
}

/// `complete_task` and `delete_task`: which task.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tidy)]
pub struct TaskIdArgs {
    /// The task's `id`, as returned by `add_task` or `list_tasks`.
    #[schemars(schema_with = "task_id")]
    pub task_id: String,
}

// ---- Schemas of the fields, from the parsers' own constants --------------------------

/// Doc comments become descriptions with their line breaks, and `#[serde(default)]` (which
/// makes an argument optional in the schema) adds `"default": null`, although leaving an
/// argument out is not the same as `null` (`update_task` clears a field on `null`). Both
/// would mislead a model.
fn tidy(schema: &mut Schema) {
    let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for property in properties.values_mut().filter_map(|p| p.as_object_mut()) {
        if property
            .get("default")
            .is_some_and(serde_json::Value::is_null)
        {
            property.remove("default");
        }
        if let Some(serde_json::Value::String(text)) = property.get_mut("description") {
            *text = text.replace('\n', " ");
        }
    }
}

fn title(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": TITLE_MAX_CHARS})
}

fn description(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "maxLength": DESCRIPTION_MAX_CHARS})
}

fn priority(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": Priority::ALL.map(Priority::as_str)})
}

fn tags(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": TAGS_MAX_COUNT,
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": TAG_MAX_CHARS,
            "description": "Letters, digits, `-` and `_`.",
        },
    })
}

const DUE_AT_EXAMPLES: [&str; 4] = [
    "2026-12-01T09:00",
    "2026-12-01T08:00:00Z",
    "2026-12-01T09:00:00+01:00",
    "2026-12-01",
];

fn reminders(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": todo_domain::due::REMINDERS_MAX_COUNT,
        "items": {"type": "string", "minLength": 1, "maxLength": 32},
        "examples": [["15m", "1d"], ["-1d 18:00", "09:00"]],
    })
}

fn reminders_or_null(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = reminders(generator);
    schema.insert("type".into(), serde_json::json!(["array", "null"]));
    schema
}

fn due_at(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "examples": DUE_AT_EXAMPLES})
}

fn due_at_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "examples": DUE_AT_EXAMPLES})
}

fn time_zone(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "examples": ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"],
    })
}

fn recurrence(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": Frequency::ALL.map(Frequency::as_str)})
}

fn recurrence_or_null(_: &mut SchemaGenerator) -> Schema {
    let mut values: Vec<serde_json::Value> =
        Frequency::ALL.iter().map(|f| f.as_str().into()).collect();
    values.push(serde_json::Value::Null);
    json_schema!({"type": ["string", "null"], "enum": values})
}

fn task_id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "uuid", "examples": ["0191d3f0-5c4e-7a4b-9d0c-3f6e2a1b8c7d"]})
}

fn search(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "maxLength": SEARCH_MAX_CHARS})
}

fn status(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": dto::STATUS_FILTERS.map(|(name, _)| name)})
}

fn tag(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": TAG_MAX_CHARS})
}

fn instant(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time", "examples": ["2026-12-01T00:00:00Z"]})
}

fn sort(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": dto::SORT_KEYS.map(|(name, _)| name)})
}

fn order(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": dto::SORT_ORDERS.map(|(name, _)| name)})
}

fn boolean(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "boolean"})
}

fn cursor(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "examples": ["k2_ca_2026-11-28T09:00:00.123456Z_019ad0f1c2e37a4b8c9d0e1f2a3b4c5d"]})
}

fn limit(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX})
}
