//! The input fields' JSON Schemas as the MCP tools (and the chat's model) read them, from
//! the parsers' own constants (`Priority::ALL`, `SORT_KEYS`, `TITLE_MAX_CHARS`, ...). The
//! REST API's OpenAPI document describes the same structs through utoipa (`crate::openapi`).
//!
//! Optional fields are simply not required; only `due_at`, `recurrence` and `reminders` of
//! a change admit `null`, which clears them.

use schemars::{Schema, SchemaGenerator, json_schema};
use todo_domain::{
    Frequency, Priority,
    task::{DESCRIPTION_MAX_CHARS, TAG_MAX_CHARS, TAGS_MAX_COUNT, TITLE_MAX_CHARS},
};
use todo_store::tasks::LIST_LIMIT_MAX;

use super::{SEARCH_MAX_CHARS, SORT_KEYS, SORT_ORDERS, STATUS_FILTERS};

/// Doc comments become descriptions with their line breaks, and `#[serde(default)]` (which
/// makes an argument optional in the schema) adds `"default": null`, although leaving an
/// argument out is not the same as `null` (`update_task` clears a field on `null`). Both
/// would mislead a model.
pub(crate) fn tidy(schema: &mut Schema) {
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

pub(crate) fn title(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": TITLE_MAX_CHARS})
}

pub(crate) fn description(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "maxLength": DESCRIPTION_MAX_CHARS})
}

pub(crate) fn priority(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": Priority::ALL.map(Priority::as_str)})
}

pub(crate) fn tags(_: &mut SchemaGenerator) -> Schema {
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

pub(crate) fn reminders(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": todo_domain::due::REMINDERS_MAX_COUNT,
        "items": {"type": "string", "minLength": 1, "maxLength": 32},
        "examples": [["15m", "1d"], ["-1d 18:00", "09:00"]],
    })
}

pub(crate) fn reminders_or_null(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = reminders(generator);
    schema.insert("type".into(), serde_json::json!(["array", "null"]));
    schema
}

pub(crate) fn due_at(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "examples": DUE_AT_EXAMPLES})
}

pub(crate) fn due_at_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "examples": DUE_AT_EXAMPLES})
}

pub(crate) fn time_zone(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "examples": ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"],
    })
}

pub(crate) fn recurrence(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": Frequency::ALL.map(Frequency::as_str)})
}

pub(crate) fn recurrence_or_null(_: &mut SchemaGenerator) -> Schema {
    let mut values: Vec<serde_json::Value> =
        Frequency::ALL.iter().map(|f| f.as_str().into()).collect();
    values.push(serde_json::Value::Null);
    json_schema!({"type": ["string", "null"], "enum": values})
}

pub(crate) fn task_id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "uuid", "examples": ["0191d3f0-5c4e-7a4b-9d0c-3f6e2a1b8c7d"]})
}

pub(crate) fn search(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "maxLength": SEARCH_MAX_CHARS})
}

pub(crate) fn status(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": STATUS_FILTERS.map(|(name, _)| name)})
}

pub(crate) fn tag(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": TAG_MAX_CHARS})
}

pub(crate) fn instant(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time", "examples": ["2026-12-01T00:00:00Z"]})
}

pub(crate) fn sort(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": SORT_KEYS.map(|(name, _)| name)})
}

pub(crate) fn order(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": SORT_ORDERS.map(|(name, _)| name)})
}

pub(crate) fn boolean(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "boolean"})
}

pub(crate) fn cursor(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "examples": ["k2_ca_2026-11-28T09:00:00.123456Z_019ad0f1c2e37a4b8c9d0e1f2a3b4c5d"]})
}

pub(crate) fn limit(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX})
}
