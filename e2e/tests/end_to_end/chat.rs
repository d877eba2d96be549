//! The chat end to end: chat-api's sidecar runs the real `conversation.openai` component
//! (from `components/conversation.yaml`), pointed by its `endpoint` at a scripted
//! OpenAI-compatible server ([`e2e::model::ScriptedModel`]) that answers tool calls and
//! then text, and records what it was sent. The tasks a conversation changes, their events
//! on Kafka and the next instance made by `recurring-tasks` are checked as for REST.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use e2e::{
    Env, Service, decode_task_events,
    model::{ScriptedModel, Step},
};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use todo_domain::{EventType, topics};

/// Fields drop in order: the services first, the model, the stack (with the turn) last.
struct Setup {
    api: Service,
    worker: Option<Service>,
    model: ScriptedModel,
    client: reqwest::Client,
    db: String,
    env: Env,
}

async fn setup(with_worker: bool) -> Result<Setup> {
    let env = Env::start().await?;
    let db = env.database().await?;
    let model = ScriptedModel::start().await?;
    let api = env
        .start_chat_api_with_model(&db, Some(&model.endpoint), &[])
        .await?;
    let worker = if with_worker {
        Some(env.start_recurring(&db).await?)
    } else {
        None
    };
    Ok(Setup {
        api,
        worker,
        model,
        client: e2e::client(),
        db,
        env,
    })
}

impl Setup {
    /// One chat turn as `user`: the status and the JSON body.
    async fn say(&self, user: &str, body: Value) -> Result<(u16, Value)> {
        let response = self
            .client
            .post(format!("{}/api/{user}/chat", self.api.base))
            .bearer_auth(self.env.token(user)?)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, user: &str, path: &str) -> Result<(u16, Value)> {
        let response = self
            .client
            .get(format!("{}/api/{user}/{path}", self.api.base))
            .bearer_auth(self.env.token(user)?)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn tasks(&self, user: &str) -> Result<Vec<Value>> {
        let (status, page) = self.get(user, "tasks?limit=200").await?;
        ensure!(status == 200, "listing {user}'s tasks: {status} {page}");
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    async fn count(&self, sql: &str) -> Result<i64> {
        count(&self.db, sql).await
    }
}

/// A count from the database at `url` itself.
async fn count(url: &str, sql: &str) -> Result<i64> {
    let db = todo_store::connect(url, 1).await?;
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("no row")?;
    let n: i64 = row.try_get_by_index(0)?;
    db.close().await?;
    Ok(n)
}

/// The tool messages a request to the model carried, as (call id, content).
fn tool_results(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conversation_manages_tasks_through_the_sidecar_with_the_mcp_tools() -> Result<()> {
    let s = setup(true).await?;

    // Turn 1: a recurring task, in the user's zone.
    s.model.then([
        Step::Call(vec![(
            "add_task".into(),
            json!({"title": "Water the plants", "due_at": "2026-12-07T09:00",
                   "time_zone": "Europe/Berlin", "recurrence": "weekly"}),
        )]),
        Step::Text("Added: water the plants, every Monday at 9.".into()),
    ]);
    let (status, first) = s
        .say(
            "alice",
            json!({"message": "remind me to water the plants every Monday at 9",
                   "time_zone": "Europe/Berlin"}),
        )
        .await?;
    ensure!(status == 200, "turn 1: {status} {first}");
    ensure!(
        first["reply"] == "Added: water the plants, every Monday at 9.",
        "{first}"
    );
    ensure!(first["steps"] == 2 && first["stopped"].is_null(), "{first}");
    let changes = first["changes"].as_array().context("changes")?;
    ensure!(
        changes.len() == 1 && changes[0]["action"] == "created",
        "{first}"
    );
    let task = &changes[0]["task"];
    ensure!(
        task["recurrence"]["frequency"] == "weekly"
            && task["due_local"] == "2026-12-07T09:00:00+01:00",
        "the task as the REST API shows it: {task}"
    );
    let task_id = task["id"].as_str().context("task id")?.to_owned();
    let conversation = first["conversation_id"]
        .as_str()
        .context("conversation id")?
        .to_owned();

    let requests = s.model.requests();
    ensure!(requests.len() == 2, "two model calls: {requests:?}");
    // The model was offered the five MCP tools, with tools/list's schemas.
    let offered = requests[0]["tools"].as_array().context("tools")?;
    let listed = api::mcp::TaskTools::list();
    ensure!(
        offered.len() == listed.len() && listed.len() == 5,
        "{offered:?}"
    );
    for tool in &listed {
        let sent = offered
            .iter()
            .find(|t| t["function"]["name"] == tool.name.as_ref())
            .with_context(|| format!("{} not offered", tool.name))?;
        ensure!(
            sent["function"]["parameters"] == Value::Object((*tool.input_schema).clone()),
            "{}: the schema sent differs from tools/list's: {sent}",
            tool.name
        );
        ensure!(
            sent["function"]["description"] == tool.description.as_deref().unwrap_or_default(),
            "{}: description",
            tool.name
        );
    }
    ensure!(requests[0]["tool_choice"] == "auto", "{}", requests[0]);
    let system = requests[0]["messages"][0]["content"]
        .as_str()
        .unwrap_or_default();
    let berlin_today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .format("%Y-%m-%d")
        .to_string();
    ensure!(
        requests[0]["messages"][0]["role"] == "system"
            && system.contains("Europe/Berlin")
            && system.contains(&berlin_today),
        "the system prompt gives the zone and today's date there: {system}"
    );
    let results = tool_results(&requests[1]);
    ensure!(
        results.len() == 1 && results[0].0 == "call_1_0" && results[0].1.contains(&task_id),
        "the tool result went back to the model: {results:?}"
    );

    // Turn 2, on another replica (its own sidecar, the same database): the conversation
    // continues there. Complete the task; recurring-tasks makes the next instance.
    let replica = s
        .env
        .start_chat_api_with_model(
            &s.db,
            Some(&s.model.endpoint),
            &[("RELAY_ENABLED", "false".to_owned())],
        )
        .await?;
    s.model.clear_requests();
    s.model.then([
        Step::Call(vec![("complete_task".into(), json!({"task_id": task_id}))]),
        Step::Text("Done.".into()),
    ]);
    let response = s
        .client
        .post(format!("{}/api/alice/chat", replica.base))
        .bearer_auth(s.env.token("alice")?)
        .json(
            &json!({"message": "I watered them", "conversation_id": conversation,
                      "time_zone": "Europe/Berlin"}),
        )
        .send()
        .await?;
    let status = response.status().as_u16();
    let second: Value = response.json().await?;
    drop(replica);
    ensure!(status == 200, "turn 2: {status} {second}");
    ensure!(
        second["conversation_id"] == conversation.as_str(),
        "{second}"
    );
    ensure!(
        second["changes"][0]["action"] == "completed"
            && second["changes"][0]["task"]["completed"] == true,
        "{second}"
    );
    let history = &s.model.requests()[0]["messages"];
    ensure!(
        history.as_array().is_some_and(|m| m
            .iter()
            .any(|m| m["content"] == "remind me to water the plants every Monday at 9")),
        "turn 2 sent the conversation so far: {history}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let next = loop {
        let tasks = s.tasks("alice").await?;
        if let Some(next) = tasks.iter().find(|t| t["completed"] == false) {
            break next.clone();
        }
        if Instant::now() > deadline {
            bail!("no next instance within 60 s: {tasks:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    ensure!(
        next["due_local"] == "2026-12-14T09:00:00+01:00",
        "the next instance is a week later: {next}"
    );

    // Turn 3: list; the model gets the listing.
    s.model.clear_requests();
    s.model.then([
        Step::Call(vec![("list_tasks".into(), json!({"status": "pending"}))]),
        Step::Text("One task is pending.".into()),
    ]);
    let (status, third) = s
        .say(
            "alice",
            json!({"message": "what's pending?", "conversation_id": conversation}),
        )
        .await?;
    ensure!(
        status == 200 && third["changes"] == json!([]),
        "turn 3: {status} {third}"
    );
    // The second request carries the whole conversation: its last tool result is this
    // turn's listing.
    let listing = tool_results(&s.model.requests()[1]);
    let next_id = next["id"].as_str().context("next id")?;
    ensure!(
        listing.len() == 3
            && listing[2].1.starts_with("1 task:")
            && listing[2].1.contains(next_id)
            && !listing[2].1.contains(&format!("(id {task_id}")),
        "the listing the model read: {listing:?}"
    );

    // The events: the same as the REST API's for the same changes.
    let records = s
        .env
        .records(topics::TASK_EVENTS, 3, Duration::from_secs(60))
        .await?;
    let events = decode_task_events(&records)?;
    let kinds: Vec<(EventType, String)> = events
        .iter()
        .map(|e| (e.event.event_type, e.event.task.id.to_string()))
        .collect();
    ensure!(
        kinds
            == vec![
                (EventType::TaskCreated, task_id.clone()),
                (EventType::TaskCompleted, task_id.clone()),
                (EventType::TaskCreated, next_id.to_owned()),
            ],
        "task-events: {kinds:?}"
    );

    // Another user's task is "not found" to the model, and nothing changes.
    s.model.clear_requests();
    s.model.then([
        Step::Call(vec![("delete_task".into(), json!({"task_id": next_id}))]),
        Step::Text("I could not find it.".into()),
    ]);
    let (status, bob) = s
        .say("bob", json!({"message": "delete the plants task"}))
        .await?;
    ensure!(
        status == 200 && bob["changes"] == json!([]),
        "{status} {bob}"
    );
    let refused = tool_results(&s.model.requests()[1]);
    ensure!(
        refused.len() == 1 && refused[0].1.starts_with("Error: No such task"),
        "{refused:?}"
    );
    ensure!(
        s.tasks("alice").await?.len() == 2,
        "alice's tasks are untouched"
    );
    // Nor may bob read or continue alice's conversation.
    let (status, _) = s
        .get("bob", &format!("conversations/{conversation}"))
        .await?;
    ensure!(status == 404, "bob reads alice's conversation: {status}");
    let (status, body) = s
        .say(
            "bob",
            json!({"message": "hi", "conversation_id": conversation}),
        )
        .await?;
    ensure!(
        status == 404,
        "bob continues alice's conversation: {status} {body}"
    );

    // Malformed arguments go back to the model as a tool error it can correct.
    s.model.clear_requests();
    s.model.then([
        Step::RawCall("add_task".into(), "{\"title\": ".into()),
        Step::Call(vec![("add_task".into(), json!({"title": 42}))]),
        Step::Call(vec![("add_task".into(), json!({"title": "Buy soil"}))]),
        Step::Text("Added.".into()),
    ]);
    let (status, fixed) = s
        .say(
            "alice",
            json!({"message": "add buy soil", "conversation_id": conversation}),
        )
        .await?;
    ensure!(
        status == 200 && fixed["changes"].as_array().map(Vec::len) == Some(1),
        "{fixed}"
    );
    let requests = s.model.requests();
    let not_json = tool_results(&requests[1]);
    let wrong_type = tool_results(&requests[2]);
    ensure!(
        not_json
            .last()
            .is_some_and(|r| r.1.starts_with("Error: Invalid arguments for add_task")
                && r.1.contains("not a JSON object")),
        "{not_json:?}"
    );
    ensure!(
        wrong_type
            .last()
            .is_some_and(|r| r.1.contains("title: invalid type")),
        "{wrong_type:?}"
    );

    // A model that never stops calling tools is cut off at the step bound.
    s.model
        .otherwise(Step::Call(vec![("list_tasks".into(), json!({}))]));
    let (status, endless) = s
        .say(
            "alice",
            json!({"message": "loop", "conversation_id": conversation}),
        )
        .await?;
    let max_steps = api::chat::ChatSettings::default().max_steps;
    ensure!(
        status == 200 && endless["stopped"] == "max_steps" && endless["steps"] == max_steps,
        "{status} {endless}"
    );
    ensure!(
        endless["reply"]
            .as_str()
            .is_some_and(|r| r.contains("stopped after")),
        "{endless}"
    );

    // The stored history: every message in order, the tool calls and results included.
    let (status, stored) = s
        .get("alice", &format!("conversations/{conversation}"))
        .await?;
    ensure!(status == 200, "{status} {stored}");
    let roles: Vec<&str> = stored["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    ensure!(
        roles[..4] == ["user", "assistant", "tool", "assistant"],
        "turn 1 as stored: {roles:?}"
    );
    let seqs: Vec<i64> = stored["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["seq"].as_i64())
        .collect();
    ensure!(
        seqs == (0..seqs.len() as i64).collect::<Vec<_>>(),
        "{seqs:?}"
    );

    // Bad input: 400 before the model is called; an unknown conversation is a 404.
    s.model.clear_requests();
    for (body, what) in [
        (json!({"message": "   "}), "blank"),
        (json!({"message": "x".repeat(4001)}), "oversized"),
        (json!({"message": 7}), "not a string"),
        (
            json!({"message": "hi", "time_zone": "Mars/Olympus"}),
            "unknown zone",
        ),
        (
            json!({"message": "hi", "conversation_id": "nope"}),
            "bad id",
        ),
    ] {
        let (status, body) = s.say("alice", body).await?;
        ensure!(status == 400, "{what}: {status} {body}");
    }
    let response = s
        .client
        .post(format!("{}/api/alice/chat", s.api.base))
        .bearer_auth(s.env.token("alice")?)
        .header("content-type", "application/json")
        .body(b"{\"message\": \"caf\xe9\"}".to_vec())
        .send()
        .await?;
    ensure!(response.status() == 400, "non-UTF-8: {}", response.status());
    let (status, body) = s
        .say(
            "alice",
            json!({"message": "hi", "conversation_id": "0191d3f0-0000-7000-8000-00000000abcd"}),
        )
        .await?;
    ensure!(
        status == 404 && body["error"]["code"] == "not_found",
        "{status} {body}"
    );
    ensure!(s.model.requests().is_empty(), "bad input reached the model");

    // Deleting the conversation, then the account, removes the messages.
    let gone = s
        .client
        .delete(format!(
            "{}/api/alice/conversations/{conversation}",
            s.api.base
        ))
        .bearer_auth(s.env.token("alice")?)
        .send()
        .await?;
    ensure!(gone.status() == 204, "{}", gone.status());
    let (status, _) = s
        .get("alice", &format!("conversations/{conversation}"))
        .await?;
    ensure!(status == 404, "a deleted conversation: {status}");
    s.model.otherwise(Step::Text("Hello.".into()));
    let (status, _) = s.say("alice", json!({"message": "hello again"})).await?;
    ensure!(status == 200);
    ensure!(
        s.count("SELECT COUNT(*) FROM conversations WHERE user_id = 'alice'")
            .await?
            == 1
    );
    let deleted = s
        .client
        .delete(format!("{}/api/alice", s.api.base))
        .bearer_auth(s.env.token("alice")?)
        .send()
        .await?;
    ensure!(deleted.status() == 204);
    ensure!(
        s.count("SELECT COUNT(*) FROM conversation_messages")
            .await?
            == s.count(
                "SELECT COUNT(*) FROM conversation_messages m JOIN conversations c \
                 ON c.id = m.conversation_id WHERE c.user_id = 'bob'"
            )
            .await?,
        "only bob's messages are left"
    );
    ensure!(
        s.count("SELECT COUNT(*) FROM conversations WHERE user_id = 'alice'")
            .await?
            == 0
    );
    let (status, body) = s.say("alice", json!({"message": "still there?"})).await?;
    ensure!(status == 410, "a deleted account chats: {status} {body}");
    drop(s.worker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_reachable_model_the_chat_answers_503_and_writes_nothing() -> Result<()> {
    let s = setup(false).await?;
    let conversations = "SELECT COUNT(*) FROM conversations";

    // The provider fails: 503, and no conversation or task is written.
    s.model.then([Step::Fail(500)]);
    let (status, body) = s.say("alice", json!({"message": "add milk"})).await?;
    ensure!(status == 503, "{status} {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("provider") && message.contains("Nothing was changed"),
        "{message}"
    );
    ensure!(s.count(conversations).await? == 0);
    ensure!(s.tasks("alice").await?.is_empty());

    // The provider is down (nothing listens at its endpoint).
    let endpoint = s.model.endpoint.clone();
    let Setup {
        api,
        worker,
        model,
        client,
        db,
        env,
    } = s;
    drop(worker);
    drop(api);
    drop(model);
    let api = env
        .start_chat_api_with_model(&db, Some(&endpoint), &[])
        .await?;
    let response = client
        .post(format!("{}/api/alice/chat", api.base))
        .bearer_auth(env.token("alice")?)
        .json(&json!({"message": "add milk"}))
        .send()
        .await?;
    ensure!(
        response.status() == 503,
        "provider down: {}",
        response.status()
    );
    drop(api);

    // The time bound: a model slower than the whole turn may last.
    let slow = ScriptedModel::start().await?;
    slow.then([
        Step::Delay(Duration::from_secs(4), Box::new(Step::Text("late".into()))),
        Step::Call(vec![("add_task".into(), json!({"title": "Milk"}))]),
        Step::Delay(Duration::from_secs(4), Box::new(Step::Text("late".into()))),
    ]);
    let api = env
        .start_chat_api_with_model(
            &db,
            Some(&slow.endpoint),
            &[("CHAT_TURN_TIMEOUT_SECONDS", "2".to_owned())],
        )
        .await?;
    let started = std::time::Instant::now();
    let response = client
        .post(format!("{}/api/alice/chat", api.base))
        .bearer_auth(env.token("alice")?)
        .json(&json!({"message": "add milk"}))
        .send()
        .await?;
    ensure!(
        response.status() == 503,
        "a first call past the bound: {}",
        response.status()
    );
    ensure!(
        started.elapsed() < Duration::from_secs(4),
        "the bound held: {:?}",
        started.elapsed()
    );
    // After a tool call: the change stays, the turn is stored, the reply says why it stopped.
    let cut: Value = client
        .post(format!("{}/api/alice/chat", api.base))
        .bearer_auth(env.token("alice")?)
        .json(&json!({"message": "add milk"}))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        cut["stopped"] == "time_limit"
            && cut["changes"][0]["action"] == "created"
            && cut["reply"]
                .as_str()
                .is_some_and(|r| r.contains("longer than 2 s")),
        "{cut}"
    );
    // A client that gives up mid-turn: the turn still runs to its end and is stored.
    slow.then([
        Step::Call(vec![("add_task".into(), json!({"title": "Bread"}))]),
        Step::Delay(
            Duration::from_millis(1200),
            Box::new(Step::Text("Added bread.".into())),
        ),
    ]);
    let impatient = client
        .post(format!("{}/api/alice/chat", api.base))
        .bearer_auth(env.token("alice")?)
        .timeout(Duration::from_millis(500))
        .json(&json!({"message": "add bread"}))
        .send()
        .await;
    ensure!(
        impatient.is_err(),
        "the client was meant to time out: {impatient:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let titles: Vec<Value> = client
        .get(format!("{}/api/alice/tasks", api.base))
        .bearer_auth(env.token("alice")?)
        .send()
        .await?
        .json::<Value>()
        .await?["items"]
        .as_array()
        .map(|items| items.iter().map(|t| t["title"].clone()).collect())
        .unwrap_or_default();
    ensure!(titles.contains(&json!("Bread")), "{titles:?}");
    // One turn of a conversation at a time: a second message while the first is being
    // answered is a 409, and the first one is not disturbed.
    let conversation = cut["conversation_id"].clone();
    slow.then([Step::Delay(
        Duration::from_millis(1500),
        Box::new(Step::Text("Slowly answered.".into())),
    )]);
    let first = {
        let (client, url, token) = (
            client.clone(),
            format!("{}/api/alice/chat", api.base),
            env.token("alice")?,
        );
        let body = json!({"message": "one", "conversation_id": conversation});
        tokio::spawn(async move { client.post(url).bearer_auth(token).json(&body).send().await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = client
        .post(format!("{}/api/alice/chat", api.base))
        .bearer_auth(env.token("alice")?)
        .json(&json!({"message": "two", "conversation_id": conversation}))
        .send()
        .await?;
    ensure!(
        second.status() == 409,
        "a second turn at once: {}",
        second.status()
    );
    let first = first.await??;
    ensure!(first.status() == 200, "the first turn: {}", first.status());
    let first: Value = first.json().await?;
    ensure!(first["reply"] == "Slowly answered.", "{first}");
    drop(api);
    drop(slow);
    let n = count(&db, "SELECT COUNT(*) FROM conversation_messages").await?;
    // The cut-off turn and the abandoned one: user, assistant (tool call), tool, assistant
    // (the reply); the slow one: user, assistant; the refused one: nothing.
    ensure!(n == 10, "the turns are stored: {n} messages");
    let db_conn = todo_store::connect(&db, 1).await?;
    db_conn
        .execute_unprepared("DELETE FROM conversation_messages; DELETE FROM conversations;")
        .await?;
    db_conn.close().await?;

    // No key: the component is not loaded; the 503 says what to configure.
    let api = env.start_chat_api_with_model(&db, None, &[]).await?;
    let response = client
        .post(format!("{}/api/alice/chat", api.base))
        .bearer_auth(env.token("alice")?)
        .json(&json!({"message": "add milk"}))
        .send()
        .await?;
    ensure!(response.status() == 503, "{}", response.status());
    let body: Value = response.json().await?;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("chat-model") && message.contains("CHAT_MODEL_API_KEY"),
        "the 503 says what to configure: {message}"
    );
    // The task API works meanwhile.
    let created = client
        .post(format!("{}/api/alice/tasks", api.base))
        .bearer_auth(env.token("alice")?)
        .json(&json!({"title": "Milk"}))
        .send()
        .await?;
    ensure!(created.status() == 201, "{}", created.status());
    let n = count(&db, conversations).await?;
    ensure!(n == 0, "conversations written by failed turns: {n}");
    drop(api);
    drop(env);
    Ok(())
}
