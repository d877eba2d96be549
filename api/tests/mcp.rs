//! The MCP tools in-process, driven by rmcp's own streamable HTTP client, on every configured
//! database, up to the publish boundary.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use reqwest::Method;
use rmcp::{
    RoleClient,
    model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion, Tool},
    service::{ClientLifecycleMode, ClientServiceExt as _, RunningService, ServiceExt as _},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use support::{TestApp, apps};
use todo_domain::EventType;

type Client = RunningService<RoleClient, ClientConfig>;

const TOOLS: [&str; 5] = [
    "add_task",
    "list_tasks",
    "update_task",
    "complete_task",
    "delete_task",
];

/// Where and as whom rmcp's client connects.
fn config(app: &TestApp, token: Option<String>) -> StreamableHttpClientTransportConfig {
    let config = StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"));
    match token {
        Some(token) => config.auth_header(token),
        None => config,
    }
}

/// An initialized MCP client acting as `user`.
async fn connect(app: &TestApp, user: &str) -> Client {
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config(
            app,
            Some(app.token(user)),
        )))
        .await
        .unwrap_or_else(|e| panic!("[{}] MCP client for {user} starts: {e}", app.db_label))
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool}: a tool call must not fail at the protocol level: {e}"))
}

/// The structured content of a successful call.
fn ok(result: CallToolResult, what: &str) -> Value {
    assert_eq!(result.is_error, Some(false), "{what}: {result:?}");
    assert!(
        result.content.len() >= 2,
        "{what}: a readable text and the JSON: {result:?}"
    );
    result
        .structured_content
        .unwrap_or_else(|| panic!("{what}: no structured content"))
}

/// The text of a tool error.
fn tool_error(result: CallToolResult, what: &str) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "{what}: expected a tool error: {result:?}"
    );
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tool_json(tools: &[Tool], name: &str) -> Value {
    let tool = tools
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("tool {name} listed"));
    serde_json::to_value(tool).unwrap()
}

fn validate(schema: &Value, instance: &Value, what: &str) {
    let validator =
        jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{what}: invalid schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: output does not match its schema: {errors:?}\n{instance:#}"
    );
}

#[tokio::test]
async fn an_mcp_request_without_a_valid_token_is_refused() {
    for app in apps().await {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}});
        let post = |token: Option<String>| {
            let mut req = app
                .client
                .post(app.url("/mcp"))
                .header("accept", "application/json, text/event-stream")
                .json(&init);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        for (what, token) in [
            ("no token", None),
            ("a malformed token", Some("not-a-jwt".to_owned())),
            ("a token signed with another secret", Some(foreign_token())),
        ] {
            let res = post(token).await.unwrap();
            assert_eq!(res.status(), 401, "[{}] {what}", app.db_label);
            assert_eq!(
                res.headers()["www-authenticate"],
                "Bearer",
                "[{}] {what}",
                app.db_label
            );
            let body: Value = res.json().await.unwrap();
            assert_eq!(
                body["jsonrpc"], "2.0",
                "[{}] {what}: a JSON-RPC error MCP clients can show: {body}",
                app.db_label
            );
            assert_eq!(
                body["error"]["code"],
                api::mcp::UNAUTHORIZED_CODE,
                "[{}] {what}: {body}",
                app.db_label
            );
            assert_eq!(
                body["error"]["data"]["code"], "unauthorized",
                "[{}] {what}: {body}",
                app.db_label
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("unauthorized: "),
                "{body}"
            );
        }
        let res = post(Some(app.token("alice"))).await.unwrap();
        assert_eq!(
            res.status(),
            200,
            "[{}] a valid token is let through",
            app.db_label
        );

        let refused = ClientConfig::default()
            .serve(StreamableHttpClientTransport::from_config(config(
                &app, None,
            )))
            .await;
        assert!(
            refused.is_err(),
            "[{}] the rmcp client cannot even initialize without a token",
            app.db_label
        );
        assert_eq!(
            app.outbox_rows(None).await,
            0,
            "[{}] refused calls wrote no event",
            app.db_label
        );
    }
}

fn foreign_token() -> String {
    let keys = api::auth::JwtKeys::new(&service_kit::Secret::new(
        "another-secret-another-secret-another",
    ));
    keys.mint(
        &todo_domain::UserId::parse("alice").unwrap(),
        jsonwebtoken::get_current_timestamp(),
        600,
    )
    .unwrap()
}

#[tokio::test]
async fn tools_list_shows_the_five_task_tools_with_precise_schemas() {
    let app = support::apps().await.remove(0);
    let client = connect(&app, "alice").await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "chat-api");
    assert!(info.capabilities.tools.is_some());
    assert!(
        info.instructions
            .as_deref()
            .unwrap_or_default()
            .contains("list_tasks")
    );

    let tools = client.list_all_tools().await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        TOOLS.into_iter().collect(),
        "exactly the five task tools"
    );
    for tool in &tools {
        let t = serde_json::to_value(tool).unwrap();
        let what = &tool.name;
        assert!(
            t["description"].as_str().unwrap_or_default().len() > 60,
            "{what} explains itself"
        );
        assert_eq!(t["inputSchema"]["type"], "object", "{what}");
        assert_eq!(
            t["inputSchema"]["additionalProperties"], false,
            "{what}: unknown arguments are refused"
        );
        assert!(t["inputSchema"].get("properties").is_some(), "{what}");
        assert!(
            t["outputSchema"]["properties"].is_object(),
            "{what} declares its structured output"
        );
        assert!(
            t["inputSchema"]["properties"].get("user_id").is_none(),
            "{what}: no user argument"
        );
        for (name, property) in t["inputSchema"]["properties"].as_object().unwrap() {
            let described = property["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty());
            assert!(described, "{what}.{name} has a description: {property}");
        }
    }

    let add = tool_json(&tools, "add_task");
    assert_eq!(add["inputSchema"]["required"], json!(["title"]));
    let props = &add["inputSchema"]["properties"];
    assert_eq!(
        props["priority"]["enum"],
        json!(["low", "medium", "high", "urgent"])
    );
    assert_eq!(
        props["recurrence"]["enum"],
        json!(["daily", "weekly", "monthly"])
    );
    assert_eq!(props["title"]["maxLength"], 200);
    assert_eq!(props["tags"]["maxItems"], 10);
    assert!(
        props["due_at"]["description"]
            .as_str()
            .unwrap()
            .contains("2026-12-01T09:00")
    );
    assert!(
        props["time_zone"]["description"]
            .as_str()
            .unwrap()
            .contains("Europe/Berlin")
    );
    assert_eq!(add["annotations"]["readOnlyHint"], false);

    let list = tool_json(&tools, "list_tasks");
    let props: BTreeSet<&str> = list["inputSchema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let rest_params = [
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
        props,
        rest_params.into_iter().collect(),
        "every option of the REST listing"
    );
    let p = &list["inputSchema"]["properties"];
    assert_eq!(p["status"]["enum"], json!(["all", "pending", "completed"]));
    assert_eq!(
        p["sort"]["enum"],
        json!(["created", "due", "priority", "title"])
    );
    assert_eq!(p["order"]["enum"], json!(["asc", "desc"]));
    assert_eq!(p["limit"]["maximum"], 200);
    assert_eq!(p["overdue"]["type"], "boolean");
    assert!(
        list["inputSchema"]
            .get("required")
            .is_none_or(|r| r.as_array().unwrap().is_empty())
    );
    assert_eq!(list["annotations"]["readOnlyHint"], true);

    let update = tool_json(&tools, "update_task");
    assert_eq!(update["inputSchema"]["required"], json!(["task_id"]));
    let p = &update["inputSchema"]["properties"];
    assert_eq!(
        p["due_at"]["type"],
        json!(["string", "null"]),
        "null clears the due time"
    );
    assert_eq!(
        p["recurrence"]["enum"],
        json!(["daily", "weekly", "monthly", null])
    );
    assert_eq!(p["completed"]["type"], "boolean");
    assert_eq!(p["task_id"]["format"], "uuid");

    // One shape per input: each tool takes the REST API's own body or query, described
    // alike (a tool adds only the `task_id` its route has in the path; a new task cannot be
    // created completed).
    let doc = serde_json::to_value(api::routes::docs::document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let described = |props: &Value| -> Vec<(String, String)> {
        props
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, p)| {
                let text = p["description"].as_str().unwrap_or_default();
                (
                    name.clone(),
                    text.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let mut body = described(&schemas["TaskInput"]["properties"]);
    body.retain(|(name, _)| name != "completed");
    assert_eq!(
        described(&add["inputSchema"]["properties"]),
        body,
        "add_task = POST body"
    );
    assert!(add["inputSchema"]["properties"].get("completed").is_none());
    let mut change = described(&update["inputSchema"]["properties"]);
    change.retain(|(name, _)| name != "task_id");
    assert_eq!(
        change,
        described(&schemas["TaskPatchInput"]["properties"]),
        "update_task = PATCH body"
    );
    let query: Vec<(String, String)> = doc["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| {
            let text = p["description"].as_str().unwrap_or_default();
            (
                p["name"].as_str().unwrap().to_owned(),
                text.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        described(&list["inputSchema"]["properties"]),
        query,
        "list_tasks = GET query"
    );

    for name in ["complete_task", "delete_task"] {
        assert_eq!(
            tool_json(&tools, name)["inputSchema"]["required"],
            json!(["task_id"]),
            "{name}"
        );
    }
    assert_eq!(
        tool_json(&tools, "delete_task")["annotations"]["destructiveHint"],
        true
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn each_tool_works_and_publishes_the_same_events_as_the_rest_api() {
    for app in apps().await {
        let db = app.db_label;
        let client = connect(&app, "alice").await;
        let tools = client.list_all_tools().await.unwrap();
        let schema = |name: &str| tool_json(&tools, name)["outputSchema"].clone();

        let created = ok(
            call(&client, "add_task", json!({"title": " Water plants ", "priority": "high", "tags": ["Home", "garden"],
                "due_at": "2026-12-01T09:00", "time_zone": "Europe/Berlin", "recurrence": "weekly"})).await,
            "add_task",
        );
        validate(&schema("add_task"), &created, "add_task");
        assert_eq!(created["title"], "Water plants", "[{db}]");
        assert_eq!(created["tags"], json!(["home", "garden"]));
        assert_eq!(
            created["due_at"], "2026-12-01T08:00:00Z",
            "local time read in the zone"
        );
        assert_eq!(created["due_local"], "2026-12-01T09:00:00+01:00");
        assert_eq!(created["user_id"], "alice");
        assert_eq!(created["version"], 1);
        let id = created["id"].as_str().unwrap().to_owned();
        let (s, via_rest) = app
            .call(
                Method::GET,
                &format!("/api/alice/tasks/{id}"),
                "alice",
                None,
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(
            via_rest, created,
            "[{db}] a task looks the same through both front doors"
        );
        app.create("alice", json!({"title": "Buy bread", "priority": "low"}))
            .await;

        let listed = ok(
            call(&client, "list_tasks", json!({"q": "PLANTS", "priority": "high", "status": "pending", "recurring": true,
                "tag": "home", "due_after": "2026-11-01T00:00:00Z", "due_before": "2026-12-02T00:00:00Z",
                "sort": "due", "order": "desc", "limit": 10})).await,
            "list_tasks",
        );
        validate(&schema("list_tasks"), &listed, "list_tasks");
        assert_eq!(
            listed["items"].as_array().unwrap().len(),
            1,
            "[{db}] {listed}"
        );
        assert_eq!(listed["items"][0]["id"], id.as_str());
        assert_eq!(listed["next_cursor"], Value::Null);
        let first = ok(
            call(&client, "list_tasks", json!({"sort": "title", "limit": 1})).await,
            "page 1",
        );
        assert_eq!(first["items"][0]["title"], "Buy bread");
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let second = ok(
            call(
                &client,
                "list_tasks",
                json!({"sort": "title", "limit": 1, "cursor": cursor}),
            )
            .await,
            "page 2",
        );
        assert_eq!(
            second["items"][0]["id"],
            id.as_str(),
            "[{db}] the cursor pages on"
        );
        let all = ok(call(&client, "list_tasks", json!({})).await, "no arguments");
        assert_eq!(all["items"].as_array().unwrap().len(), 2);

        let updated = ok(
            call(&client, "update_task", json!({"task_id": id, "title": "Water all plants", "due_at": null, "priority": "urgent"})).await,
            "update_task",
        );
        validate(&schema("update_task"), &updated, "update_task");
        assert_eq!(updated["title"], "Water all plants");
        assert_eq!(updated["due_at"], Value::Null, "null clears the due time");
        assert_eq!(
            updated["recurrence"]["frequency"], "weekly",
            "absent fields stay"
        );
        assert_eq!(updated["version"], 2);

        let completed = ok(
            call(&client, "complete_task", json!({"task_id": id})).await,
            "complete_task",
        );
        validate(&schema("complete_task"), &completed, "complete_task");
        assert_eq!(completed["completed"], true);
        let reopened = ok(
            call(
                &client,
                "update_task",
                json!({"task_id": id, "completed": false}),
            )
            .await,
            "reopen",
        );
        assert_eq!(reopened["completed"], false);
        let unchanged = ok(
            call(
                &client,
                "update_task",
                json!({"task_id": id, "recurrence": "weekly"}),
            )
            .await,
            "no change",
        );
        assert_eq!(
            unchanged["version"], 4,
            "a change that changes nothing publishes nothing"
        );

        let deleted = ok(
            call(&client, "delete_task", json!({"task_id": id})).await,
            "delete_task",
        );
        validate(&schema("delete_task"), &deleted, "delete_task");
        assert_eq!(deleted["deleted"], true);
        assert_eq!(deleted["task"]["id"], id.as_str());
        let (s, _) = app
            .call(
                Method::GET,
                &format!("/api/alice/tasks/{id}"),
                "alice",
                None,
            )
            .await;
        assert_eq!(s, 404, "[{db}] deleted through MCP, gone through REST");

        let events = app.published(6).await;
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.event.task.id.to_string() == id)
            .collect();
        let types: Vec<EventType> = mine.iter().map(|e| e.event.event_type).collect();
        assert_eq!(
            types,
            [
                EventType::TaskCreated,
                EventType::TaskUpdated,
                EventType::TaskCompleted,
                EventType::TaskUpdated,
                EventType::TaskDeleted
            ],
            "[{db}]"
        );
        for (i, e) in mine.iter().enumerate() {
            assert_eq!(e.topic, "task-events");
            assert_eq!(e.partition_key, "alice");
            assert_eq!(e.event.user_id, "alice");
            assert_eq!(e.event.task.version, i as i64 + 1);
        }
        let mut changed = mine[1].event.changed_fields.clone();
        changed.sort();
        // Clearing the due time of a recurring task clears its series' anchor too.
        assert_eq!(
            changed,
            ["due_at", "priority", "recurrence", "title"],
            "[{db}]"
        );
        assert_eq!(
            mine[3].event.changed_fields,
            ["completed"],
            "[{db}] reopening"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            app.published_now().len(),
            6,
            "[{db}] five for the MCP task, one for the REST one"
        );
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn a_tool_call_cannot_read_or_change_another_users_task() {
    for app in apps().await {
        let db = app.db_label;
        let bobs = app
            .create("bob", json!({"title": "Bob's secret", "tags": ["private"]}))
            .await;
        let id = bobs["id"].as_str().unwrap().to_owned();
        let alice = connect(&app, "alice").await;

        for (tool, args) in [
            ("update_task", json!({"task_id": id, "title": "mine now"})),
            ("update_task", json!({"task_id": id, "completed": true})),
            ("complete_task", json!({"task_id": id})),
            ("delete_task", json!({"task_id": id})),
        ] {
            let text = tool_error(call(&alice, tool, args).await, tool);
            assert!(text.contains("No such task"), "[{db}] {tool}: {text}");
            assert!(
                !text.contains("Bob's secret"),
                "[{db}] {tool} reveals nothing"
            );
        }
        let listed = ok(
            call(&alice, "list_tasks", json!({"q": "secret"})).await,
            "list",
        );
        assert_eq!(
            listed["items"],
            json!([]),
            "[{db}] alice sees none of bob's tasks"
        );
        let listed = ok(
            call(&alice, "list_tasks", json!({"tag": "private"})).await,
            "list",
        );
        assert_eq!(listed["items"], json!([]), "[{db}]");

        let (s, after) = app
            .call(Method::GET, &format!("/api/bob/tasks/{id}"), "bob", None)
            .await;
        assert_eq!(s, 200);
        assert_eq!(after, bobs, "[{db}] bob's task is untouched");
        app.published(1).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            app.published_now().len(),
            1,
            "[{db}] only bob's own task.created"
        );

        // Bob, through MCP, owns it.
        let bob = connect(&app, "bob").await;
        let done = ok(
            call(&bob, "complete_task", json!({"task_id": id})).await,
            "bob completes",
        );
        assert_eq!(done["completed"], true);
        alice.cancel().await.unwrap();
        bob.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn bad_arguments_come_back_as_tool_errors_that_say_what_to_fix() {
    let app = support::apps().await.remove(0);
    let client = connect(&app, "alice").await;
    let task = ok(
        call(&client, "add_task", json!({"title": "Real"})).await,
        "add",
    );
    let id = task["id"].as_str().unwrap().to_owned();

    let cases = [
        ("add_task", json!({}), vec!["missing field `title`"]),
        ("add_task", json!({"title": ""}), vec!["title"]),
        (
            "add_task",
            json!({"title": "x", "priority": "critical"}),
            vec!["priority", "low, medium, high, urgent"],
        ),
        (
            "add_task",
            json!({"title": "x", "due_at": "tomorrow"}),
            vec!["due_at", "RFC 3339", "2026-12-01T09:00"],
        ),
        (
            "add_task",
            json!({"title": "x", "time_zone": "Mars/Base"}),
            vec!["time_zone", "IANA"],
        ),
        (
            "add_task",
            json!({"title": "x", "recurrence": "hourly"}),
            vec!["recurrence", "daily, weekly, monthly"],
        ),
        (
            "add_task",
            json!({"title": "x", "tags": "home"}),
            vec!["tags", "invalid type"],
        ),
        (
            "add_task",
            json!({"title": "x", "user_id": "bob"}),
            vec!["unknown field `user_id`"],
        ),
        (
            "add_task",
            json!({"title": 5}),
            vec!["title", "invalid type"],
        ),
        (
            "list_tasks",
            json!({"sort": "random"}),
            vec!["sort", "created, due, priority, title"],
        ),
        (
            "list_tasks",
            json!({"limit": 0}),
            vec!["limit", "between 1 and 200"],
        ),
        ("list_tasks", json!({"limit": -3}), vec!["limit"]),
        (
            "list_tasks",
            json!({"due_before": "soon"}),
            vec!["due_before", "RFC 3339"],
        ),
        ("list_tasks", json!({"cursor": "zzz"}), vec!["cursor"]),
        (
            "update_task",
            json!({"title": "no id"}),
            vec!["missing field `task_id`"],
        ),
        (
            "update_task",
            json!({"task_id": "abc"}),
            vec!["task_id", "UUID"],
        ),
        (
            "update_task",
            json!({"task_id": id, "due_at": "2026-13-45T99:00"}),
            vec!["due_at"],
        ),
        (
            "complete_task",
            json!({"task_id": "0191d3f0-0000-7000-8000-000000000000"}),
            vec!["No such task", "list_tasks"],
        ),
        (
            "delete_task",
            json!({"task_id": 42}),
            vec!["task_id", "invalid type"],
        ),
    ];
    for (tool, args, expected) in cases {
        let text = tool_error(
            call(&client, tool, args.clone()).await,
            &format!("{tool} {args}"),
        );
        for needle in expected {
            assert!(
                text.contains(needle),
                "{tool} {args}: {text:?} should mention {needle:?}"
            );
        }
    }

    // An unknown tool is a protocol error, and the client carries on either way.
    let unknown = client
        .call_tool(CallToolRequestParams::new("drop_database"))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");
    let after = ok(
        call(&client, "list_tasks", json!({})).await,
        "after the errors",
    );
    assert_eq!(
        after["items"].as_array().unwrap().len(),
        1,
        "nothing was created by a refused call"
    );
    app.published(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.published_now().len(),
        1,
        "refused calls publish nothing"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_client_on_the_stateless_2026_protocol_is_served_as_the_token_user() {
    let app = support::apps().await.remove(0);
    let client = ClientConfig::default()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_config(config(&app, Some(app.token("carol")))),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), TOOLS.len());
    let task = ok(
        call(&client, "add_task", json!({"title": "From the future"})).await,
        "add_task",
    );
    assert_eq!(task["user_id"], "carol");
    let events = app.published(1).await;
    assert_eq!(events[0].partition_key, "carol");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_mcp_request_over_the_body_limit_is_refused_before_any_tool_runs() {
    let app = support::apps().await.remove(0);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "add_task", "arguments": {"title": "big", "description": "x".repeat(api::BODY_LIMIT_BYTES)}}});
    let res = app
        .client
        .post(app.url("/mcp"))
        .bearer_auth(app.token("alice"))
        .header("accept", "application/json, text/event-stream")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        413,
        "the REST API's body limit holds for MCP too"
    );
    let res = app
        .client
        .get(app.url("/mcp"))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        405,
        "stateless: no server-to-client event stream to open"
    );
    assert_eq!(
        app.outbox_rows(None).await,
        0,
        "refused calls wrote no event"
    );
}
