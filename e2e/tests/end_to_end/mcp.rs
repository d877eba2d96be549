//! The MCP tools end to end: an independent client, the official Python `mcp` SDK from PyPI
//! (installed by `tools/mcp-client/mcp-client.sh` into `.data/venv-mcp` on first use),
//! drives chat-api's `/mcp` endpoint on the real stack, and the task events its tool calls
//! cause are read back from Kafka.

use std::{process::Output, time::Duration};

use anyhow::{Context as _, Result, ensure};
use e2e::{Env, decode_task_events};
use serde_json::Value;
use todo_domain::{EventType, topics};

/// Runs the Python client: `mcp-client.sh [--mode MODE] URL TOKEN ARGS...`.
async fn python_client(
    env: &Env,
    mode: &str,
    url: &str,
    token: &str,
    args: &[&str],
) -> Result<Output> {
    let script = env.paths.root.join("tools/mcp-client/mcp-client.sh");
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(&script)
        .args(["--mode", mode, url, token])
        .args(args)
        .kill_on_drop(true);
    // The first run installs the SDK from PyPI.
    tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .context("the Python MCP client did not finish within 10 minutes")?
        .with_context(|| format!("cannot run {}", script.display()))
}

/// The client's JSON answer; fails with its stderr when it failed.
fn answer(output: &Output) -> Result<Value> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "the Python MCP client failed ({}):\n{stderr}",
        output.status
    );
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "client output is not JSON:\n{}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn texts(call: &Value) -> String {
    call["text"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_mcp_sdk_manages_tasks_and_the_events_reach_kafka() -> Result<()> {
    let env = Env::start().await?;
    let db = env.database().await?;
    let api = env.start_chat_api(&db).await?;
    let url = format!("{}/mcp", api.base);

    // Without a token, or with a bad one, the client cannot even initialize.
    for (what, token) in [("no token", ""), ("a bad token", "not-a-jwt")] {
        let refused = python_client(&env, "legacy", &url, token, &["tools"]).await?;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        ensure!(
            !refused.status.success(),
            "{what}: the client must be refused"
        );
        ensure!(
            stderr.contains("unauthorized"),
            "{what}: the refusal says why: {stderr}"
        );
    }

    // alice, with the `initialize` handshake: list the tools, call each one.
    let alice =
        answer(&python_client(&env, "legacy", &url, &env.token("alice")?, &["scenario"]).await?)?;
    ensure!(
        alice["server_info"]["name"] == "chat-api",
        "server info: {}",
        alice["server_info"]
    );
    ensure!(
        alice["protocol_version"]
            .as_str()
            .is_some_and(|v| v < "2026-07-28"),
        "handshake era: {}",
        alice["protocol_version"]
    );
    let mut names: Vec<&str> = alice["tools"]
        .as_array()
        .context("tools")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    ensure!(
        names
            == [
                "add_task",
                "complete_task",
                "delete_task",
                "list_tasks",
                "update_task"
            ],
        "tools: {names:?}"
    );
    for tool in alice["tools"].as_array().context("tools")? {
        ensure!(
            tool["inputSchema"]["type"] == "object",
            "{}: input schema",
            tool["name"]
        );
        ensure!(
            tool["outputSchema"].is_object(),
            "{}: output schema",
            tool["name"]
        );
        ensure!(
            tool["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{}: description",
            tool["name"]
        );
    }
    let calls = alice["calls"].as_array().context("calls")?;
    let tools: Vec<&str> = calls.iter().filter_map(|c| c["tool"].as_str()).collect();
    ensure!(
        tools
            == [
                "add_task",
                "list_tasks",
                "update_task",
                "complete_task",
                "delete_task",
                "add_task",
                "complete_task"
            ],
        "the scenario ran to its end: {tools:?}\n{alice:#}"
    );
    for call in &calls[..5] {
        ensure!(
            call["is_error"] == false,
            "{}: {}",
            call["tool"],
            texts(call)
        );
        ensure!(!texts(call).is_empty(), "{}: readable text", call["tool"]);
    }
    let created = &calls[0]["structured"];
    let task_id = created["id"].as_str().context("task id")?.to_owned();
    ensure!(
        created["user_id"] == "alice" && created["title"] == "Water the plants",
        "{created}"
    );
    ensure!(
        created["due_at"] == "2026-12-01T08:00:00Z",
        "local due time read in Europe/Berlin: {created}"
    );
    let listed = &calls[1]["structured"]["items"];
    ensure!(
        listed.as_array().is_some_and(|i| i.len() == 1) && listed[0]["id"] == task_id.as_str(),
        "list_tasks: {listed}"
    );
    let updated = &calls[2]["structured"];
    ensure!(
        updated["description"] == "Use rain water" && updated["due_at"].is_null(),
        "update_task: {updated}"
    );
    ensure!(
        calls[3]["structured"]["completed"] == true,
        "complete_task: {}",
        calls[3]["structured"]
    );
    ensure!(
        calls[4]["structured"]["deleted"] == true,
        "delete_task: {}",
        calls[4]["structured"]
    );
    // Mistakes come back as tool errors that say what to fix; the session goes on.
    ensure!(
        calls[5]["is_error"] == true && texts(&calls[5]).contains("priority"),
        "bad priority: {}",
        calls[5]
    );
    ensure!(
        calls[6]["is_error"] == true && texts(&calls[6]).contains("No such task"),
        "unknown task: {}",
        calls[6]
    );

    // bob, letting the SDK negotiate: the stateless 2026-07-28 protocol, same tools, same auth.
    let bob = answer(
        &python_client(
            &env,
            "auto",
            &url,
            &env.token("bob")?,
            &["call", "add_task", r#"{"title": "Bob's task"}"#],
        )
        .await?,
    )?;
    ensure!(
        bob["protocol_version"] == "2026-07-28",
        "negotiated: {}",
        bob["protocol_version"]
    );
    let bobs = &bob["calls"][0];
    ensure!(
        bobs["is_error"] == false && bobs["structured"]["user_id"] == "bob",
        "{bobs}"
    );
    let bob_task = bobs["structured"]["id"]
        .as_str()
        .context("bob's task id")?
        .to_owned();

    // Exactly the events of the successful mutations: four for alice's task, one for bob's.
    let records = env
        .records(topics::TASK_EVENTS, 5, Duration::from_secs(45))
        .await?;
    ensure!(
        records.len() == 5,
        "expected 5 records on task-events, got {}: {records:#?}",
        records.len()
    );
    let again = env
        .records(topics::TASK_EVENTS, 6, Duration::from_secs(5))
        .await?;
    ensure!(
        again.len() == 5,
        "refused calls publish nothing; got {} records",
        again.len()
    );
    let seen = decode_task_events(&records)?;

    let mut alices: Vec<_> = seen.iter().filter(|e| e.event.user_id == "alice").collect();
    alices.sort_by_key(|e| e.offset);
    let types: Vec<EventType> = alices.iter().map(|e| e.event.event_type).collect();
    ensure!(
        types
            == [
                EventType::TaskCreated,
                EventType::TaskUpdated,
                EventType::TaskCompleted,
                EventType::TaskDeleted
            ],
        "alice's events: {types:?}"
    );
    for (i, e) in alices.iter().enumerate() {
        ensure!(e.key.as_deref() == Some("alice"), "record key {:?}", e.key);
        ensure!(
            e.event.task.id.to_string() == task_id,
            "event for another task: {}",
            e.event.task.id
        );
        ensure!(
            e.event.task.version == i as i64 + 1,
            "version {} at {i}",
            e.event.task.version
        );
        ensure!(
            e.cloudevent_id == e.event.event_id.to_string(),
            "CloudEvent id is the event id"
        );
    }
    let mut changed = alices[1].event.changed_fields.clone();
    changed.sort();
    // Clearing the due time of the weekly task clears its series' anchor: `recurrence`.
    ensure!(
        changed == ["description", "due_at", "recurrence"],
        "update_task names its fields: {changed:?}"
    );

    let bobs: Vec<_> = seen.iter().filter(|e| e.event.user_id == "bob").collect();
    ensure!(bobs.len() == 1, "bob: {} events", bobs.len());
    ensure!(
        bobs[0].event.event_type == EventType::TaskCreated && bobs[0].key.as_deref() == Some("bob"),
        "bob's event"
    );
    ensure!(bobs[0].event.task.id.to_string() == bob_task, "bob's task");

    // The same task through REST: bob's MCP-created task is his, and alice's token cannot see it.
    let client = e2e::client();
    let status = client
        .get(format!("{}/api/alice/tasks/{bob_task}", api.base))
        .bearer_auth(env.token("alice")?)
        .send()
        .await?
        .status();
    ensure!(status == 404, "alice cannot read bob's task: {status}");
    let theirs: Value = client
        .get(format!("{}/api/bob/tasks/{bob_task}", api.base))
        .bearer_auth(env.token("bob")?)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let returned = &bob["calls"][0]["structured"];
    ensure!(
        &theirs == returned,
        "REST shows what MCP returned: {theirs} vs {returned}"
    );
    Ok(())
}
