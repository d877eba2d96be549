//! The tools' results: structured content (the REST API's own views, so a task looks the same
//! through both front doors), its output schemas, and a readable text for the model.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rmcp::{
    handler::server::tool::schema_for_output,
    model::{CallToolResult, ContentBlock, JsonObject},
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};
use todo_domain::{Frequency, Priority, Recurrence, TaskSnapshot, TimeZone};
use uuid::Uuid;

use crate::{
    dto::{TaskPageView, TaskView},
    error::ApiError,
};

// The schema of a task as [`TaskView`] serialises it (the snapshot flattened, plus
// `due_local`); only its schema is used. Doc comments here are read by models.
/// A task of the signed-in user.
#[derive(JsonSchema)]
#[schemars(rename = "Task")]
#[allow(dead_code)]
pub struct TaskSchema {
    /// Pass as `task_id` to the other tools.
    id: Uuid,
    user_id: String,
    title: String,
    description: String,
    #[schemars(schema_with = "priority")]
    priority: Priority,
    tags: Vec<String>,
    /// The due instant in UTC; null when the task has no due time. For a task due on a
    /// date (all day) it is the last second of that day.
    due_at: Option<DateTime<Utc>>,
    /// Present when the task is due on a date with no time: that date.
    #[serde(skip_serializing_if = "Option::is_none")]
    due_date: Option<NaiveDate>,
    /// The reminders the user set ("15m", "1d", "09:00"); absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reminders: Vec<String>,
    /// IANA time zone name.
    #[schemars(schema_with = "time_zone")]
    time_zone: TimeZone,
    /// How the task repeats; null for a one-off task.
    #[schemars(schema_with = "recurrence")]
    recurrence: Option<Recurrence>,
    completed: bool,
    completed_at: Option<DateTime<Utc>>,
    /// Starts at 1 and grows by one with every change.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The due time in the task's own zone (RFC 3339 with that zone's offset), for display.
    due_local: Option<String>,
}

/// Fails to compile when the snapshot gains, loses or renames a field, so the advertised
/// output schema cannot drift from what is serialised.
const _: fn(TaskSnapshot) -> TaskSchema = |snapshot| {
    let TaskSnapshot {
        id,
        user_id,
        title,
        description,
        priority,
        tags,
        due_at,
        due_date,
        reminders,
        time_zone,
        recurrence,
        completed,
        completed_at,
        version,
        created_at,
        updated_at,
    } = snapshot;
    TaskSchema {
        id,
        user_id,
        title,
        description,
        priority,
        tags,
        due_at,
        due_date,
        reminders,
        time_zone,
        recurrence,
        completed,
        completed_at,
        version,
        created_at,
        updated_at,
        due_local: None,
    }
};

// One page of `list_tasks`, as [`TaskPageView`] serialises it.
/// One page of the user's tasks.
#[derive(JsonSchema)]
#[schemars(rename = "TaskPage")]
#[allow(dead_code)]
pub struct TaskPageSchema {
    items: Vec<TaskSchema>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Option<String>,
}

// What `delete_task` returns.
/// A task that was just deleted.
#[derive(JsonSchema)]
#[schemars(rename = "DeletedTask")]
#[allow(dead_code)]
pub struct DeletedSchema {
    /// Always true.
    deleted: bool,
    /// The task's last state.
    task: TaskSchema,
}

fn priority(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": Priority::ALL.map(Priority::as_str)})
}

fn time_zone(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "examples": ["Europe/Berlin"]})
}

fn recurrence(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["object", "null"],
        "properties": {
            "frequency": {"type": "string", "enum": Frequency::ALL.map(Frequency::as_str)},
            "series_id": {"type": "string", "format": "uuid", "description": "Shared by every instance of the series."},
            "anchor": {"type": ["string", "null"], "description": "Local date and time of the series' first due time."},
            "occurrence": {"type": "integer", "minimum": 0, "description": "0 for the first instance, then 1, 2, ..."},
        },
        "required": ["frequency", "series_id", "anchor", "occurrence"],
    })
}

pub fn task_schema() -> Arc<JsonObject> {
    schema_for_output::<TaskSchema>()
}

pub fn page_schema() -> Arc<JsonObject> {
    schema_for_output::<TaskPageSchema>()
}

pub fn deleted_schema() -> Arc<JsonObject> {
    schema_for_output::<DeletedSchema>()
}

/// A result whose structured content is `value`, with a line for a person (or model) first
/// and the JSON text after it for clients that ignore structured content.
fn structured(text: String, value: Value) -> CallToolResult {
    let mut result = CallToolResult::structured(value);
    result.content.insert(0, ContentBlock::text(text));
    result
}

pub fn task(verb: &str, task: TaskSnapshot) -> CallToolResult {
    let text = format!("{verb} {}", describe(&task));
    structured(text, json!(TaskView::from(task)))
}

pub fn page(page: TaskPageView) -> CallToolResult {
    let mut text = match page.items.len() {
        0 => "No tasks match.".to_owned(),
        1 => "1 task:".to_owned(),
        n => format!("{n} tasks:"),
    };
    for item in &page.items {
        text.push_str("\n- ");
        text.push_str(&describe(&item.task));
    }
    if let Some(cursor) = &page.next_cursor {
        text.push_str(&format!(
            "\nMore tasks follow: call list_tasks again with cursor {cursor:?}."
        ));
    }
    structured(text, json!(page))
}

pub fn deleted(task: TaskSnapshot) -> CallToolResult {
    let text = format!("Deleted {}", describe(&task));
    structured(text, json!({"deleted": true, "task": TaskView::from(task)}))
}

/// A tool error: the API's message, naming the argument to fix.
pub fn error(e: &ApiError) -> CallToolResult {
    let text = match (e.code, e.field.as_deref()) {
        (crate::error::ErrorCode::NotFound, _) => {
            "No such task among yours: check task_id (list_tasks shows your tasks' ids).".to_owned()
        }
        (_, Some(field)) if e.message.starts_with(field) => {
            format!("Invalid argument: {}", e.message)
        }
        (_, Some(field)) => format!("Invalid argument `{field}`: {}", e.message),
        _ => e.message.clone(),
    };
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// A tool error for arguments that do not fit the tool's input schema.
pub fn bad_arguments(tool: &str, why: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "Invalid arguments for {tool}: {why}. Call it again with arguments that match its input schema."
    ))])
}

/// A tool error for a tool that does not exist.
pub fn unknown_tool(name: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "There is no tool named {name:?}. The tools are add_task, list_tasks, update_task, complete_task and delete_task."
    ))])
}

/// `"Water the plants" (id ..., high priority, due ..., repeats weekly, pending)`.
fn describe(task: &TaskSnapshot) -> String {
    let mut facts = vec![
        format!("id {}", task.id),
        format!("{} priority", task.priority.as_str()),
    ];
    if !task.tags.is_empty() {
        facts.push(format!("tags {}", task.tags.join(", ")));
    }
    if let Some(due) = task.due_at {
        let local = due.with_timezone(&task.time_zone.tz());
        facts.push(format!(
            "due {} {}",
            local.format("%Y-%m-%d %H:%M"),
            task.time_zone.name()
        ));
    }
    if let Some(r) = &task.recurrence {
        facts.push(format!("repeats {}", r.frequency.as_str()));
    }
    facts.push(if task.completed {
        "completed".to_owned()
    } else {
        "pending".to_owned()
    });
    format!("{:?} ({})", task.title, facts.join(", "))
}
