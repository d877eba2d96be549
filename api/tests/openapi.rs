//! The OpenAPI document: valid OpenAPI 3.1, the same routes the router serves (no more, no
//! fewer), and responses that match the schemas it documents.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestApp, apps};

/// What docs/api.md promises, operation by operation. The router and the document are built
/// from the same registrations, so this is the one list that has to be kept by hand.
const EXPECTED_OPERATIONS: [(&str, &str); 22] = [
    ("POST", "/api/{user_id}/tasks"),
    ("GET", "/api/{user_id}/tasks"),
    ("GET", "/api/{user_id}/tasks/{task_id}"),
    ("PUT", "/api/{user_id}/tasks/{task_id}"),
    ("PATCH", "/api/{user_id}/tasks/{task_id}"),
    ("DELETE", "/api/{user_id}/tasks/{task_id}"),
    ("POST", "/api/{user_id}/tasks/{task_id}/complete"),
    ("POST", "/api/{user_id}/tasks/{task_id}/reopen"),
    ("DELETE", "/api/{user_id}"),
    ("POST", "/api/{user_id}/chat"),
    ("GET", "/api/{user_id}/conversations"),
    ("GET", "/api/{user_id}/conversations/{conversation_id}"),
    ("DELETE", "/api/{user_id}/conversations/{conversation_id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/relay/status"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/app.css"),
];

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];

fn document() -> Value {
    serde_json::to_value(api::routes::docs::document()).unwrap()
}

/// (METHOD, path) of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Follows `#/...` JSON pointers until a value that is not a `$ref`.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    while let Some(pointer) = value.get("$ref").and_then(Value::as_str) {
        value = doc
            .pointer(
                pointer
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("external $ref {pointer}")),
            )
            .unwrap_or_else(|| panic!("unresolved $ref {pointer}"));
    }
    value
}

fn all_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| all_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| all_refs(v, out)),
        _ => {}
    }
}

fn path_template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let doc = document();
    let spec = oas3::from_json(doc.to_string()).expect("parses as OpenAPI 3.1");
    assert!(
        spec.openapi.starts_with("3.1."),
        "openapi = {}",
        spec.openapi
    );
    assert_eq!(spec.info.title, "chat-api");

    let mut refs = Vec::new();
    all_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let target = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(target).is_some(), "unresolved $ref {r}");
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        jsonschema::draft202012::meta::validate(schema)
            .unwrap_or_else(|e| panic!("schema {name} is not valid JSON Schema 2020-12: {e}"));
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer_jwt"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer_jwt"]["bearerFormat"],
        "JWT"
    );

    let mut operation_ids = BTreeSet::new();
    for (method, path) in documented(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let what = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(
            operation_ids.insert(id.to_owned()),
            "{what}: duplicate operationId {id}"
        );
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: no summary"
        );
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{what}: no success response"
        );

        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let in_path: BTreeSet<String> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(
                    p["required"], true,
                    "{what}: path parameter {} must be required",
                    p["name"]
                );
                p["name"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            in_path,
            path_template_params(&path),
            "{what}: path parameters"
        );

        if path.starts_with("/api/") {
            assert_eq!(
                op["security"],
                json!([{"bearer_jwt": []}]),
                "{what}: bearer security"
            );
            for status in ["401", "403", "503"] {
                assert!(responses.contains_key(status), "{what}: documents {status}");
            }
            if path.contains("{task_id}") {
                assert!(responses.contains_key("404"), "{what}: documents 404");
                assert!(
                    responses.contains_key("400"),
                    "{what}: documents 400 (malformed task id)"
                );
            }
            if let Some(body) = op.get("requestBody") {
                assert!(
                    body["content"]["application/json"]["schema"]["$ref"].is_string(),
                    "{what}: JSON body"
                );
                for status in ["400", "413", "415"] {
                    assert!(responses.contains_key(status), "{what}: documents {status}");
                }
            }
            if method != "GET" && path != "/api/{user_id}" {
                assert!(
                    responses.contains_key("410"),
                    "{what}: a write documents 410 (account deleted)"
                );
            }
        } else {
            assert!(op.get("security").is_none(), "{what}: needs no token");
        }
    }

    let list = &doc["paths"]["/api/{user_id}/tasks"]["get"]["parameters"];
    let query: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let filters = [
        "q",
        "status",
        "priority",
        "tag",
        "due_before",
        "due_after",
        "overdue",
        "recurring",
        "sort",
        "order",
        "limit",
        "cursor",
    ];
    assert_eq!(
        query,
        BTreeSet::from(filters),
        "every list filter is documented"
    );
    assert_eq!(
        doc["paths"]["/api/{user_id}/tasks"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/TaskInput"
    );
    assert_eq!(
        doc["paths"]["/api/{user_id}/tasks/{task_id}"]["patch"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/TaskPatchInput"
    );
}

#[test]
fn documented_limits_and_names_are_the_ones_the_code_enforces() {
    use todo_domain::{Frequency, Priority, task::*};
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let input = &schemas["TaskInput"]["properties"];
    assert_eq!(input["title"]["maxLength"], TITLE_MAX_CHARS);
    assert_eq!(input["description"]["maxLength"], DESCRIPTION_MAX_CHARS);
    assert_eq!(input["tags"]["maxItems"], TAGS_MAX_COUNT);
    assert_eq!(input["tags"]["items"]["maxLength"], TAG_MAX_CHARS);
    assert_eq!(schemas["TaskInput"]["required"], json!(["title"]));
    assert_eq!(
        schemas["TaskInput"]["additionalProperties"], false,
        "unknown fields are refused"
    );
    assert_eq!(
        schemas["TaskPatchInput"]["additionalProperties"], false,
        "unknown fields are refused"
    );
    assert_eq!(
        schemas["Priority"]["enum"],
        json!(Priority::ALL.map(Priority::as_str))
    );
    assert_eq!(
        schemas["Frequency"]["enum"],
        json!(Frequency::ALL.map(Frequency::as_str))
    );
    assert_eq!(schemas["UserId"]["maxLength"], USER_ID_MAX_CHARS);
    let limit = doc["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"]
        .clone();
    assert_eq!(limit["maximum"], todo_store::tasks::LIST_LIMIT_MAX);
    assert_eq!(limit["default"], todo_store::tasks::LIST_LIMIT_DEFAULT);
}

/// Sends `method path` as alice with a valid token and, for bodies, `{}`.
async fn probe(app: &TestApp, method: &str, path: &str) -> (u16, Value) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let body = [Method::POST, Method::PUT, Method::PATCH]
        .contains(&method)
        .then(|| json!({}));
    app.call(method, path, "alice", body).await
}

fn concrete(template: &str) -> String {
    template
        .replace("{user_id}", "alice")
        .replace("{task_id}", "0191d3f0-0000-7000-8000-000000000000")
        .replace("{conversation_id}", "0191d3f0-0000-7000-8000-000000000001")
}

#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let doc = document();
    let ops = documented(&doc);
    let expected: BTreeSet<(String, String)> = EXPECTED_OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(ops, expected, "the document lists the API's operations");

    let by_path: BTreeMap<&str, BTreeSet<&str>> =
        ops.iter().fold(BTreeMap::new(), |mut acc, (m, p)| {
            acc.entry(p.as_str()).or_default().insert(m.as_str());
            acc
        });
    for app in apps().await {
        for (path, methods) in &by_path {
            let url = concrete(path);
            for method in METHODS {
                let (status, body) = probe(&app, method, &url).await;
                let what = format!("[{}] {method} {url}", app.db_label);
                if methods.contains(method) {
                    assert_ne!(
                        status, 405,
                        "{what}: documented but the method is not routed: {body}"
                    );
                    let route_missing =
                        status == 404 && body["error"]["message"] == "no such route";
                    assert!(!route_missing, "{what}: documented but not routed");
                    assert!(status < 500, "{what}: {status} {body}");
                } else {
                    assert_eq!(status, 405, "{what}: served but not documented: {body}");
                    assert_eq!(
                        body["error"]["code"], "method_not_allowed",
                        "{what}: {body}"
                    );
                }
            }
        }
        for unrouted in [
            "/index.html",
            "/app",
            "/api",
            "/api/alice/task",
            "/api/alice/tasks/x/y/z",
            "/openapi.yaml",
        ] {
            let (status, body) = probe(&app, "GET", unrouted).await;
            assert_eq!(status, 404, "GET {unrouted}: {body}");
            assert_eq!(body["error"]["message"], "no such route", "GET {unrouted}");
        }

        let served: Value = app
            .client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(served, doc, "/openapi.json serves the generated document");
        let res = app.client.get(app.url("/docs")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = res.text().await.unwrap();
        assert!(
            page.contains("/openapi.json"),
            "the docs page renders the served document"
        );
        for (path, kind) in [
            ("/", "text/html"),
            ("/app.js", "text/javascript"),
            ("/app.css", "text/css"),
        ] {
            let res = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let header = |name: &str| {
                res.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            assert!(header("content-type").starts_with(kind), "{path}");
            assert_eq!(
                header("content-security-policy"),
                api::web::CONTENT_SECURITY_POLICY,
                "{path}"
            );
            assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        }
    }
}

/// Validates `body` against the schema the document gives for `method path_template` and
/// `status`, and checks that the status is documented for that operation.
fn assert_conforms(doc: &Value, method: &str, template: &str, status: u16, body: &Value) {
    let what = format!("{method} {template} -> {status}");
    let responses = &doc["paths"][template][method.to_lowercase()]["responses"];
    assert!(responses.is_object(), "{what}: no such operation");
    let response = responses
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{what}: status not documented; body {body}"));
    let response = resolve(doc, response);
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        assert!(
            body.is_null(),
            "{what}: documented without a body but got {body}"
        );
        return;
    };
    validate(doc, schema, body, &what);
}

fn validate(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: body {instance} does not match its schema: {errors:#?}"
    );
}

/// Every property a task view serialises is documented, and nothing documented is missing
/// except `absent`, which must be optional in the document.
fn assert_task_fields_documented(doc: &Value, task: &Value, absent: &[&str]) {
    let schemas = &doc["components"]["schemas"];
    let mut documented: BTreeSet<String> = schemas["TaskSnapshot"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for part in schemas["Task"]["allOf"].as_array().unwrap() {
        if let Some(props) = part["properties"].as_object() {
            documented.extend(props.keys().cloned());
        }
    }
    let mut served: BTreeSet<String> = task.as_object().unwrap().keys().cloned().collect();
    let required = schemas["TaskSnapshot"]["required"].as_array().unwrap();
    for field in absent {
        assert!(
            !required.iter().any(|r| r == field),
            "{field} is left out of some tasks, so it must not be required"
        );
        served.insert((*field).to_owned());
    }
    assert_eq!(
        served, documented,
        "a task's fields are exactly the documented ones"
    );
    let recurrence: BTreeSet<String> = task["recurrence"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let documented: BTreeSet<String> = schemas["Recurrence"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        recurrence, documented,
        "a recurrence's fields are exactly the documented ones"
    );
}

#[tokio::test]
async fn responses_match_the_schemas_the_document_gives() {
    let doc = document();
    let tasks = "/api/{user_id}/tasks";
    let task = "/api/{user_id}/tasks/{task_id}";
    for app in apps().await {
        let body = json!({"title": "Water plants", "description": "all of them", "priority": "high", "tags": ["home"],
            "due_at": "2026-12-01T09:00", "time_zone": "Europe/Berlin", "recurrence": "monthly"});
        let (s, created) = app
            .call(Method::POST, "/api/alice/tasks", "alice", Some(body))
            .await;
        assert_conforms(&doc, "POST", tasks, s, &created);
        assert_eq!(s, 201);
        assert_task_fields_documented(&doc, &created, &["due_date", "reminders"]);
        let all_day = json!({"title": "Rent", "due_at": "2026-12-01", "reminders": ["-1d 18:00"], "recurrence": "weekly"});
        let (s, day) = app
            .call(Method::POST, "/api/alice/tasks", "alice", Some(all_day))
            .await;
        assert_conforms(&doc, "POST", tasks, s, &day);
        assert_task_fields_documented(&doc, &day, &[]);
        let path = format!("/api/alice/tasks/{}", created["id"].as_str().unwrap());

        let calls: Vec<(Method, String, &str, Option<Value>)> = vec![
            (Method::GET, path.clone(), task, None),
            (
                Method::GET,
                "/api/alice/tasks?limit=1&sort=due&order=desc".into(),
                tasks,
                None,
            ),
            (
                Method::PATCH,
                path.clone(),
                task,
                Some(json!({"due_at": null, "tags": ["a", "b"]})),
            ),
            (
                Method::PUT,
                path.clone(),
                task,
                Some(
                    json!({"title": "Replaced", "recurrence": "daily", "due_at": "2026-01-31T10:00:00+01:00"}),
                ),
            ),
            (
                Method::POST,
                format!("{path}/complete"),
                "/api/{user_id}/tasks/{task_id}/complete",
                None,
            ),
            (
                Method::POST,
                format!("{path}/reopen"),
                "/api/{user_id}/tasks/{task_id}/reopen",
                None,
            ),
            (
                Method::GET,
                "/api/alice/tasks/not-a-uuid".into(),
                task,
                None,
            ),
            (
                Method::GET,
                "/api/alice/tasks/0191d3f0-0000-7000-8000-000000000000".into(),
                task,
                None,
            ),
            (
                Method::GET,
                "/api/alice/tasks?status=maybe".into(),
                tasks,
                None,
            ),
            (
                Method::GET,
                "/api/alice/tasks?unknown=1".into(),
                tasks,
                None,
            ),
            (
                Method::POST,
                "/api/alice/tasks".into(),
                tasks,
                Some(json!({"title": "x", "time_zone": "Mars/Base"})),
            ),
            (
                Method::POST,
                "/api/alice/tasks".into(),
                tasks,
                Some(json!({"title": "x", "colour": "red"})),
            ),
            (
                Method::POST,
                "/api/alice/tasks".into(),
                tasks,
                Some(json!({"title": "x", "description": "d".repeat(70_000)})),
            ),
            (Method::GET, "/api/bob/tasks".into(), tasks, None),
            (Method::GET, "/healthz".into(), "/healthz", None),
            (Method::GET, "/readyz".into(), "/readyz", None),
            (Method::GET, "/relay/status".into(), "/relay/status", None),
        ];
        for (method, url, template, body) in calls {
            let (s, got) = app.call(method.clone(), &url, "alice", body).await;
            assert!(s < 500, "[{}] {method} {url}: {s} {got}", app.db_label);
            assert_conforms(&doc, method.as_str(), template, s, &got);
        }

        // No token, no JSON content type, a method the path does not serve.
        let res = app
            .client
            .get(app.url("/api/alice/tasks"))
            .send()
            .await
            .unwrap();
        let s = res.status().as_u16();
        assert_conforms(&doc, "GET", tasks, s, &res.json().await.unwrap());
        let res = app
            .client
            .post(app.url("/api/alice/tasks"))
            .bearer_auth(app.token("alice"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415);
        assert_conforms(&doc, "POST", tasks, 415, &res.json().await.unwrap());
        let (s, not_allowed) = app
            .call(Method::PATCH, "/api/alice/tasks", "alice", Some(json!({})))
            .await;
        assert_eq!(s, 405);
        validate(
            &doc,
            &json!({"$ref": "#/components/schemas/Error"}),
            &not_allowed,
            "405",
        );

        // After the account is deleted, writes get 410.
        let (s, none) = app.call(Method::DELETE, "/api/alice", "alice", None).await;
        assert_conforms(&doc, "DELETE", "/api/{user_id}", s, &none);
        let (s, gone) = app
            .call(
                Method::POST,
                "/api/alice/tasks",
                "alice",
                Some(json!({"title": "late"})),
            )
            .await;
        assert_eq!(s, 410);
        assert_conforms(&doc, "POST", tasks, s, &gone);
    }
}
