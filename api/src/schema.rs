//! A shape's JSON Schema as one self-contained object, taken from its OpenAPI schema: the
//! MCP tools advertise the task the OpenAPI document describes (`openapi`, `dto`), so a
//! task is described once for both front doors.

use serde_json::{Map, Value};
use utoipa::ToSchema;

/// References deeper than this are left as they are (no shape here nests that deep).
const MAX_DEPTH: usize = 16;

/// `T`'s schema with every `$ref` to a schema it uses replaced by that schema, and each
/// `allOf` of objects (a flattened struct) merged into one object.
pub fn self_contained<T: ToSchema>() -> Map<String, Value> {
    let mut used = Vec::new();
    T::schemas(&mut used);
    let components: Map<String, Value> = used
        .into_iter()
        .filter_map(|(name, schema)| Some((name, serde_json::to_value(schema).ok()?)))
        .collect();
    let root = serde_json::to_value(T::schema()).unwrap_or(Value::Null);
    match merge_all_of(inline(&root, &components, 0)) {
        Value::Object(schema) => schema,
        _ => Map::new(),
    }
}

fn inline(value: &Value, components: &Map<String, Value>, depth: usize) -> Value {
    match value {
        Value::Object(map) => {
            let target = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .and_then(|name| components.get(name));
            if let Some(target) = target
                && depth < MAX_DEPTH
            {
                let mut resolved = inline(target, components, depth + 1);
                if let Value::Object(resolved_map) = &mut resolved {
                    // What the reference says beside it (a description) wins.
                    for (k, v) in map.iter().filter(|(k, _)| *k != "$ref") {
                        resolved_map.insert(k.clone(), inline(v, components, depth));
                    }
                }
                return resolved;
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline(v, components, depth)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| inline(v, components, depth)).collect())
        }
        other => other.clone(),
    }
}

/// `{"allOf": [object, object]}` as one object with the properties and required names of
/// both, everywhere in `value`: the same instances validate, and a reader (or a model) sees
/// one list of fields.
fn merge_all_of(value: Value) -> Value {
    match value {
        Value::Object(mut map) => {
            for v in map.values_mut() {
                *v = merge_all_of(v.take());
            }
            let parts = match map.get("allOf") {
                Some(Value::Array(parts))
                    if parts
                        .iter()
                        .all(|p| p.get("properties").is_some_and(Value::is_object)) =>
                {
                    parts.clone()
                }
                _ => return Value::Object(map),
            };
            map.remove("allOf");
            let mut properties = Map::new();
            let mut required: Vec<Value> = Vec::new();
            for part in parts {
                if let Some(Value::Object(p)) = part.get("properties") {
                    properties.extend(p.clone());
                }
                for name in part
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if !required.contains(name) {
                        required.push(name.clone());
                    }
                }
            }
            map.insert("type".into(), Value::String("object".into()));
            map.insert("properties".into(), Value::Object(properties));
            map.insert("required".into(), Value::Array(required));
            Value::Object(map)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(merge_all_of).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_are_inlined_and_flattened_objects_merged() {
        let components = json!({
            "Inner": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        });
        let root = json!({
            "allOf": [
                {"$ref": "#/components/schemas/Inner"},
                {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]},
            ],
            "description": "both",
        });
        let Value::Object(components) = components else {
            unreachable!()
        };
        let merged = merge_all_of(inline(&root, &components, 0));
        assert_eq!(
            merged,
            json!({
                "type": "object",
                "description": "both",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            })
        );
        // A reference to nothing known stays a reference.
        let unknown = json!({"$ref": "#/components/schemas/Nope"});
        assert_eq!(inline(&unknown, &components, 0), unknown);
    }

    #[test]
    fn the_task_view_is_one_object_with_every_field() {
        let task = self_contained::<crate::dto::TaskView>();
        assert_eq!(task["type"], "object");
        let properties = task["properties"].as_object().expect("properties");
        for field in [
            "id",
            "user_id",
            "title",
            "priority",
            "due_at",
            "due_date",
            "reminders",
            "time_zone",
            "recurrence",
            "version",
            "due_local",
        ] {
            assert!(properties.contains_key(field), "{field}: {task:#?}");
        }
        assert!(!serde_json::to_string(&task).expect("json").contains("$ref"));
    }
}
