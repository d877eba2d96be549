//! The tools' arguments. They are the REST API's own input types (`dto::TaskInput`,
//! `dto::TaskPatchInput`, `dto::ListParams`), with their JSON Schemas (what an LLM reads to
//! call a tool, `dto::tool_schema`): one shape per input, so both front doors parse and
//! describe alike. A tool adds only what its route has in its path (the `task_id`).

use std::borrow::Cow;

use rmcp::{
    ErrorData,
    handler::server::{common::FromContextPart, tool::ToolCallContext},
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, de::DeserializeOwned};

use crate::dto::{ListParams, TaskInput, TaskPatchInput, tool_schema};

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

impl<S, T: ToolArguments> FromContextPart<ToolCallContext<'_, S>> for Parameters<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = serde_json::Value::Object(context.arguments.take().unwrap_or_default());
        T::from_arguments(arguments)
            .map(Parameters)
            .map_err(|message| ErrorData::invalid_params(message, None))
    }
}

/// A tool's arguments, read from a call's `arguments` object by the MCP server and the chat;
/// the error names the offending argument (`due_at: invalid type: integer ...`).
pub trait ToolArguments: Sized {
    fn from_arguments(arguments: serde_json::Value) -> Result<Self, String>;
}

/// `arguments` as a `T`, with the offending argument named in the error.
fn parse<T: DeserializeOwned>(arguments: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// `add_task`: a new task, as the REST API's POST body. Only `title` is required. Its
/// schema leaves out `completed`, which a new task cannot be (given anyway, it is refused
/// with the REST API's own error).
#[derive(Debug)]
pub struct AddTaskArgs(pub TaskInput);

impl JsonSchema for AddTaskArgs {
    fn schema_name() -> Cow<'static, str> {
        "AddTaskArgs".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = TaskInput::json_schema(generator);
        if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
            properties.remove("completed");
        }
        schema
    }
}

impl ToolArguments for AddTaskArgs {
    fn from_arguments(arguments: serde_json::Value) -> Result<Self, String> {
        parse(arguments).map(AddTaskArgs)
    }
}

/// `list_tasks`: the REST listing's query.
impl ToolArguments for ListParams {
    fn from_arguments(arguments: serde_json::Value) -> Result<Self, String> {
        parse(arguments)
    }
}

/// `update_task`: the task (`task_id`, in the REST route's path) and the change, as the
/// REST API's PATCH body; leave out what stays.
#[derive(Debug)]
pub struct UpdateTaskArgs {
    pub task_id: String,
    pub change: TaskPatchInput,
}

impl JsonSchema for UpdateTaskArgs {
    fn schema_name() -> Cow<'static, str> {
        "UpdateTaskArgs".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = TaskPatchInput::json_schema(generator);
        let task_id = TaskIdArgs::json_schema(generator)
            .get("properties")
            .and_then(|p| p.get(TASK_ID))
            .cloned()
            .unwrap_or_default();
        if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
            properties.insert(TASK_ID.into(), task_id);
        }
        schema.insert("required".into(), serde_json::json!([TASK_ID]));
        schema
    }
}

const TASK_ID: &str = "task_id";

impl ToolArguments for UpdateTaskArgs {
    /// `task_id` is taken out first; the rest is the change, read (and refused) exactly as
    /// the PATCH body is.
    fn from_arguments(arguments: serde_json::Value) -> Result<Self, String> {
        let mut object = match arguments {
            serde_json::Value::Object(object) => object,
            other => return Err(format!("the arguments must be an object, not {other}")),
        };
        let task_id = match object.remove(TASK_ID) {
            Some(id) => parse::<String>(id).map_err(|e| format!("{TASK_ID}: {e}"))?,
            None => return Err(format!("missing field `{TASK_ID}`")),
        };
        let change = parse(serde_json::Value::Object(object))?;
        Ok(Self { task_id, change })
    }
}

/// `complete_task` and `delete_task`: which task.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = tool_schema::tidy)]
pub struct TaskIdArgs {
    /// The task's `id`, as returned by `add_task` or `list_tasks`.
    #[schemars(schema_with = "tool_schema::task_id")]
    pub task_id: String,
}

impl ToolArguments for TaskIdArgs {
    fn from_arguments(arguments: serde_json::Value) -> Result<Self, String> {
        parse(arguments)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn update_task_reads_its_change_as_the_patch_body_is_read() {
        let args = UpdateTaskArgs::from_arguments(
            json!({"task_id": "t1", "due_at": null, "title": "New"}),
        )
        .expect("good arguments");
        assert_eq!(args.task_id, "t1");
        assert_eq!(args.change.due_at, Some(None), "null clears");
        assert_eq!(args.change.recurrence, None, "absent stays");
        assert_eq!(args.change.title.as_deref(), Some("New"));

        let refused =
            |arguments| UpdateTaskArgs::from_arguments(arguments).expect_err("arguments to refuse");
        assert_eq!(refused(json!({"title": "x"})), "missing field `task_id`");
        assert!(
            refused(json!({"task_id": 5})).starts_with("task_id: invalid type: integer `5`"),
            "{}",
            refused(json!({"task_id": 5}))
        );
        let unknown = refused(json!({"task_id": "t1", "colour": "red"}));
        assert!(unknown.contains("unknown field `colour`"), "{unknown}");
        let wrong = refused(json!({"task_id": "t1", "tags": "home"}));
        assert!(wrong.starts_with("tags: invalid type"), "{wrong}");
        let not_object = refused(json!(["t1"]));
        assert!(not_object.contains("must be an object"), "{not_object}");
    }

    #[test]
    fn add_task_takes_the_post_body_and_does_not_offer_completed() {
        let args = AddTaskArgs::from_arguments(json!({"title": "Water", "tags": ["home"]}))
            .expect("good arguments");
        assert_eq!(args.0.title, "Water");
        let schema =
            serde_json::to_value(schemars::schema_for!(AddTaskArgs)).expect("a JSON schema");
        assert!(schema["properties"].get("title").is_some());
        assert!(schema["properties"].get("completed").is_none());
        let e = AddTaskArgs::from_arguments(json!({"title": 1})).expect_err("a number title");
        assert!(e.starts_with("title: invalid type"), "{e}");
    }
}
