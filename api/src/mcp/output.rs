//! The tools' results: structured content (the REST API's own views, so a task looks the same
//! through both front doors), its output schemas, and a readable text for the model.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use serde_json::{Value, json};
use todo_domain::TaskSnapshot;

use crate::{
    dto::{TaskPageView, TaskView},
    error::ApiError,
    service_error::ServiceError,
};

// The output schemas are the REST API's own (its OpenAPI schemas of the same views), so a
// task is described once for both front doors.

pub fn task_schema() -> Arc<JsonObject> {
    Arc::new(crate::schema::self_contained::<TaskView>())
}

pub fn page_schema() -> Arc<JsonObject> {
    Arc::new(crate::schema::self_contained::<TaskPageView>())
}

/// What `delete_task` returns: `{"deleted": true, "task": <the task's last state>}`.
pub fn deleted_schema() -> Arc<JsonObject> {
    let mut schema = JsonObject::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("description".into(), json!("A task that was just deleted."));
    schema.insert(
        "properties".into(),
        json!({
            "deleted": {"type": "boolean", "const": true, "description": "Always true."},
            "task": crate::schema::self_contained::<TaskView>(),
        }),
    );
    schema.insert("required".into(), json!(["deleted", "task"]));
    Arc::new(schema)
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

/// A tool error for arguments that parsed but whose values do not fit: the API's message,
/// naming the argument to fix.
pub fn error(e: &ApiError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(match e.field.as_deref() {
        Some(field) => invalid_argument(field, &e.message),
        None => e.message.clone(),
    })])
}

/// A tool error for a task operation that refused or failed.
pub fn failed(e: &ServiceError) -> CallToolResult {
    e.report();
    let text = match e {
        ServiceError::NotFound => {
            "No such task among yours: check task_id (list_tasks shows your tasks' ids).".to_owned()
        }
        ServiceError::Invalid { field, message } => invalid_argument(field, message),
        _ => e.to_string(),
    };
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn invalid_argument(field: &str, message: &str) -> String {
    if message.starts_with(field) {
        format!("Invalid argument: {message}")
    } else {
        format!("Invalid argument `{field}`: {message}")
    }
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
