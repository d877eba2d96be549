//! Recurring tasks end to end: completing a recurring task through the API makes the
//! `recurring-tasks` service (beside its own daprd, consuming `task-events` from Kafka)
//! create exactly one next instance, on the right date, whatever is redelivered or crashes.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use e2e::{Env, Service, decode_task_events};
use serde_json::{Value, json};
use todo_domain::{EventType, topics};

/// Fields drop in order: the services (and their sidecars) first, the stack (with the
/// test's turn) last.
struct Setup {
    api: Service,
    worker: Service,
    client: reqwest::Client,
    env: Env,
}

async fn setup() -> Result<Setup> {
    let env = Env::start().await?;
    let (api, worker) = env.start_api_and_recurring().await?;
    Ok(Setup {
        env,
        api,
        worker,
        client: e2e::client(),
    })
}

impl Setup {
    async fn create(&self, user: &str, body: Value) -> Result<Value> {
        Ok(self
            .client
            .post(format!("{}/api/{user}/tasks", self.api.base))
            .bearer_auth(self.env.token(user)?)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn complete(&self, user: &str, task: &Value) -> Result<()> {
        let id = task["id"].as_str().context("task id")?;
        self.client
            .post(format!("{}/api/{user}/tasks/{id}/complete", self.api.base))
            .bearer_auth(self.env.token(user)?)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn pending(&self, user: &str) -> Result<Vec<Value>> {
        let page: Value = self
            .client
            .get(format!(
                "{}/api/{user}/tasks?status=pending&limit=200&sort=title",
                self.api.base
            ))
            .bearer_auth(self.env.token(user)?)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `user` has `n` pending tasks, then checks for `settle` that no more come.
    async fn wait_pending(
        &self,
        user: &str,
        n: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let tasks = self.pending(user).await?;
            if tasks.len() >= n {
                tokio::time::sleep(settle).await;
                let tasks = self.pending(user).await?;
                ensure!(
                    tasks.len() == n,
                    "{user}: expected exactly {n} pending tasks, found {}",
                    tasks.len()
                );
                return Ok(tasks);
            }
            if Instant::now() > deadline {
                bail!(
                    "{user}: {} of {n} pending tasks after {timeout:?}; worker log:\n{}",
                    tasks.len(),
                    self.worker.process.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Publishes a raw event through chat-api's sidecar, as a producer would.
    async fn publish_raw(
        &self,
        key: &str,
        event_id: &str,
        event_type: &str,
        body: &Value,
    ) -> Result<()> {
        let url = format!(
            "{}/v1.0/publish/pubsub/{}?metadata.partitionKey={key}&metadata.cloudevent.id={event_id}&metadata.cloudevent.type={event_type}",
            self.api.sidecar.http_url(),
            topics::TASK_EVENTS
        );
        let res = self.client.post(url).json(body).send().await?;
        ensure!(
            res.status().as_u16() == 204,
            "publish answered {}",
            res.status()
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_daily_weekly_and_monthly_tasks_creates_one_next_instance_each_on_the_right_date()
-> Result<()> {
    let s = setup().await?;
    let u = "rita";
    let daily = s.create(u, json!({"title": "a daily", "due_at": "2037-03-28T09:00", "time_zone": "Europe/Berlin", "recurrence": "daily", "tags": ["x"], "priority": "high", "description": "d"})).await?;
    let weekly = s.create(u, json!({"title": "b weekly", "due_at": "2037-01-30T08:00", "time_zone": "America/New_York", "recurrence": "weekly"})).await?;
    let monthly = s
        .create(
            u,
            json!({"title": "c monthly", "due_at": "2037-01-31T09:00", "recurrence": "monthly"}),
        )
        .await?;
    let once = s
        .create(u, json!({"title": "d once", "due_at": "2037-01-31T09:00"}))
        .await?;
    let started = Instant::now();
    for t in [&daily, &weekly, &monthly, &once] {
        s.complete(u, t).await?;
    }
    let next = s
        .wait_pending(u, 3, Duration::from_secs(30), Duration::from_secs(3))
        .await?;
    eprintln!(
        "three next instances within {:?} of completion",
        started.elapsed()
    );

    let by_title = |title: &str| {
        next.iter()
            .find(|t| t["title"] == title)
            .cloned()
            .unwrap_or(Value::Null)
    };
    // Berlin springs forward on 2037-03-29: 09:00 local is then 07:00 UTC.
    let d = by_title("a daily");
    ensure!(d["due_at"] == "2037-03-29T07:00:00Z", "daily: {d}");
    ensure!(
        d["tags"] == json!(["x"]) && d["priority"] == "high" && d["description"] == "d",
        "daily keeps its metadata: {d}"
    );
    ensure!(
        d["completed"] == false && d["version"] == 1,
        "daily starts incomplete: {d}"
    );
    ensure!(
        d["recurrence"]["series_id"] == daily["id"] && d["recurrence"]["occurrence"] == 1,
        "linked to its series: {d}"
    );
    ensure!(
        by_title("b weekly")["due_at"] == "2037-02-06T13:00:00Z",
        "weekly: {}",
        by_title("b weekly")
    );
    ensure!(
        by_title("c monthly")["due_at"] == "2037-02-28T09:00:00Z",
        "monthly, capped at month end: {}",
        by_title("c monthly")
    );
    ensure!(
        by_title("d once").is_null(),
        "a non-recurring task gets no next instance"
    );

    // The chain continues: completing February's monthly instance gives March 31st.
    s.complete(u, &by_title("c monthly")).await?;
    let next = s
        .wait_pending(u, 3, Duration::from_secs(30), Duration::from_secs(2))
        .await?;
    let m = next
        .iter()
        .find(|t| t["title"] == "c monthly")
        .context("march instance")?;
    ensure!(
        m["due_at"] == "2037-03-31T09:00:00Z",
        "monthly keeps the anchor day: {m}"
    );

    // daprd called the worker for the five completions only, not for the `task.created`
    // events around them (its subscription routes nothing else; with a default route to
    // `/events/ignored` this counts 8 calls).
    let metrics = e2e::metrics::scrape(&s.env, &s.worker.base).await?;
    let calls = |route: &str| {
        metrics.value(
            "http_requests_total",
            &[("route", route), ("method", "POST")],
        )
    };
    ensure!(
        calls("/events/task-completed") >= 5.0,
        "the completions reached the worker: {}",
        calls("/events/task-completed")
    );
    let others: f64 = metrics
        .samples()
        .filter(|(n, l, _)| {
            n == "http_requests_total"
                && l.get("method").map(String::as_str) == Some("POST")
                && l.get("route").map(String::as_str) != Some("/events/task-completed")
        })
        .map(|(_, _, v)| v)
        .sum();
    ensure!(
        others == 0.0,
        "daprd delivered other events to the worker ({others} calls)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_completion_delivered_ten_times_at_once_creates_one_instance() -> Result<()> {
    let s = setup().await?;
    let u = "sam";
    let task = s
        .create(
            u,
            json!({"title": "standup", "due_at": "2037-05-04T09:30:00Z", "recurrence": "daily"}),
        )
        .await?;
    s.complete(u, &task).await?;
    s.wait_pending(u, 1, Duration::from_secs(30), Duration::from_secs(1))
        .await?;

    let records = s
        .env
        .records(topics::TASK_EVENTS, 3, Duration::from_secs(30))
        .await?;
    let completed = decode_task_events(&records)?
        .into_iter()
        .find(|e| e.event.event_type == EventType::TaskCompleted)
        .context("the task.completed event is on task-events")?;
    let body = serde_json::to_value(&completed.event)?;
    let event_id = completed.event.event_id.to_string();
    let sends = (0..10).map(|_| s.publish_raw(u, &event_id, "task.completed", &body));
    for r in futures::future::join_all(sends).await {
        r?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pending = s
        .wait_pending(u, 1, Duration::from_secs(5), Duration::from_secs(3))
        .await?;
    ensure!(
        pending[0]["recurrence"]["occurrence"] == 1,
        "one next instance: {pending:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_killed_while_handling_completions_then_restarted_creates_one_instance_each()
-> Result<()> {
    let mut s = setup().await?;
    let u = "tom";
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(s.create(u, json!({"title": format!("chore {i:02}"), "due_at": "2037-06-01T18:00:00Z", "recurrence": "weekly"})).await?);
    }
    for t in &tasks {
        s.complete(u, t).await?;
    }
    // Kill the worker as soon as it has created its first instance: the rest are in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.pending(u).await?.is_empty() {
        ensure!(Instant::now() < deadline, "the worker created nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.worker.process.kill9();
    let created_before_kill = s.pending(u).await?.len();
    let logs = s.env.dir.path().join("logs");
    s.worker.restart_process(&logs).await?;
    let next = s
        .wait_pending(u, 20, Duration::from_secs(60), Duration::from_secs(3))
        .await?;
    eprintln!("{created_before_kill} instances existed when the worker was killed");
    for t in &next {
        ensure!(
            t["recurrence"]["occurrence"] == 1 && t["due_at"] == "2037-06-08T18:00:00Z",
            "{t}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_does_not_stop_later_events_on_its_partition() -> Result<()> {
    let s = setup().await?;
    let u = "uma";
    // Same key as the user's real events, so the same partition, and ahead of them.
    s.publish_raw(
        u,
        "11111111-1111-4111-8111-111111111111",
        "task.completed",
        &json!("this is not an event"),
    )
    .await?;
    s.publish_raw(
        u,
        "22222222-2222-4222-8222-222222222222",
        "task.completed",
        &json!({"event_type": "task.completed", "schema_version": 1, "user_id": "", "task": {}}),
    )
    .await?;
    let task = s.create(u, json!({"title": "after the poison", "due_at": "2037-07-01T10:00:00Z", "recurrence": "daily"})).await?;
    s.complete(u, &task).await?;
    let next = s
        .wait_pending(u, 1, Duration::from_secs(60), Duration::from_secs(1))
        .await?;
    ensure!(next[0]["due_at"] == "2037-07-02T10:00:00Z", "{next:?}");
    let dead = s
        .env
        .records(topics::TASK_EVENTS_DLQ, 2, Duration::from_secs(30))
        .await?;
    ensure!(
        dead.len() == 2,
        "both malformed events are dead-lettered, got {}",
        dead.len()
    );
    Ok(())
}

/// A transient fault longer than any retry window never dead-letters a well-formed
/// completion. The worker logs in as a role of its own, which is made read-only for 20 s (as
/// after a failover to a replica) while a recurring task is completed: the worker's write
/// fails, its readiness (a write probe) fails so daprd pauses the subscription, the event is
/// retried in place, and once writes work again the next instance is created. Nothing
/// reaches `task-events-dlq`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refusing_writes_longer_than_the_retry_window_dead_letters_no_completion()
-> Result<()> {
    use sea_orm::ConnectionTrait as _;

    let env = Env::start().await?;
    let db = env.database().await?;
    let api = env.start_chat_api(&db).await?;
    let admin = sea_orm::Database::connect(env.stack.admin_database_url()).await?;
    admin
        .execute_unprepared("CREATE ROLE recurring_worker LOGIN SUPERUSER PASSWORD 'worker'")
        .await?;
    let (_, host_and_db) = db.split_once('@').context("database URL with a user")?;
    let worker_url = format!("postgres://recurring_worker:worker@{host_and_db}");
    let worker = env.start_recurring(&worker_url).await?;
    let s = Setup {
        env,
        api,
        worker,
        client: e2e::client(),
    };
    let u = "olga";
    let task = s
        .create(
            u,
            json!({"title": "water plants", "due_at": "2037-04-01T08:00:00Z", "recurrence": "daily"}),
        )
        .await?;

    let set_read_only = async |on: bool| -> Result<()> {
        let setting = if on {
            "SET default_transaction_read_only = on"
        } else {
            "RESET default_transaction_read_only"
        };
        admin
            .execute_unprepared(&format!("ALTER ROLE recurring_worker {setting}"))
            .await?;
        // Sessions pick the setting up when they start: end the worker's current ones.
        admin
            .execute_unprepared(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE usename = 'recurring_worker'",
            )
            .await?;
        Ok(())
    };
    set_read_only(true).await?;
    s.complete(u, &task).await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = s.pending(u).await?;
    ensure!(
        during.is_empty(),
        "a next instance appeared while the worker could not write: {during:?}"
    );
    set_read_only(false).await?;

    let after = s
        .wait_pending(u, 1, Duration::from_secs(60), Duration::from_secs(1))
        .await?;
    ensure!(
        after[0]["recurrence"]["occurrence"] == 1,
        "not the next instance: {}",
        after[0]
    );
    let dead = s
        .env
        .records(topics::TASK_EVENTS_DLQ, 1, Duration::from_secs(5))
        .await?;
    ensure!(
        dead.is_empty(),
        "{} event(s) dead-lettered during a transient fault",
        dead.len()
    );
    Ok(())
}

/// Whatever reaches `task-events-dlq` is kept by chat-api (counted on `/relay/status`),
/// and `chat-api dlq replay task-events-dlq` publishes each again to `task-events` with its
/// CloudEvent id, type and partition key (its user); afterwards none is held, and a second
/// run replays nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_counted_and_replayed_to_their_topic_once_with_their_ids_and_keys()
-> Result<()> {
    let env = Env::start().await?;
    let db = env.database().await?;
    let api = env.start_chat_api(&db).await?;
    // Dead letters are published in the name of the consumer whose daprd sends them there.
    let consumer = env.bare_sidecar("recurring-tasks").await?;
    let client = e2e::client();
    let dead: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("{i}0000000-0000-4000-8000-00000000000{i}"),
                ["vera", "walt", "vera"][i].to_owned(),
            )
        })
        .collect();
    for (id, user) in &dead {
        let body = json!({"event_type": "task.created", "schema_version": 1, "user_id": user, "event_id": id});
        let url = format!(
            "{}/v1.0/publish/pubsub/{}?metadata.partitionKey={user}&metadata.cloudevent.id={id}&metadata.cloudevent.type=task.created",
            consumer.http_url(),
            topics::TASK_EVENTS_DLQ
        );
        let res = client.post(url).json(&body).send().await?;
        ensure!(
            res.status().as_u16() == 204,
            "publish answered {}",
            res.status()
        );
    }
    let held = async || -> Result<Value> {
        let status: Value = client
            .get(format!("{}/relay/status", api.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(status["dead_letters"].clone())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while held().await?["task-events-dlq"] != 3 {
        ensure!(
            Instant::now() < deadline,
            "dead letters held after 30 s: {}",
            held().await?
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let grpc_url = api.sidecar.grpc_url();
    let grpc_port = grpc_url.rsplit(':').next().unwrap_or_default();
    let replay = async || {
        tokio::process::Command::new(e2e::binary("chat-api")?)
            .args(["dlq", "replay", topics::TASK_EVENTS_DLQ])
            .env("DAPR_GRPC_PORT", grpc_port)
            .env("DATABASE_URL", &db)
            .output()
            .await
            .context("running chat-api dlq replay")
    };
    let first = replay().await?;
    let said = String::from_utf8_lossy(&first.stdout);
    ensure!(
        first.status.success()
            && said.contains("replayed 3 event(s) from task-events-dlq to task-events"),
        "first replay: {said} {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let records = env
        .records(topics::TASK_EVENTS, 3, Duration::from_secs(20))
        .await?;
    for (id, user) in &dead {
        let copy = records
            .iter()
            .find(|r| r.value.contains(id.as_str()))
            .with_context(|| format!("{id} is not on task-events"))?;
        ensure!(
            copy.key.as_deref() == Some(user.as_str()),
            "{id}: key {:?}",
            copy.key
        );
        let envelope: Value = serde_json::from_str(&copy.value)?;
        ensure!(
            envelope["id"] == id.as_str()
                && envelope["type"] == "task.created"
                && envelope["data"]["user_id"] == user.as_str(),
            "{envelope}"
        );
    }
    ensure!(
        held().await?["task-events-dlq"] == 0,
        "still held after the replay: {}",
        held().await?
    );
    let second = replay().await?;
    let said = String::from_utf8_lossy(&second.stdout);
    ensure!(
        second.status.success() && said.contains("replayed 0 event(s)"),
        "second replay: {said} {}",
        String::from_utf8_lossy(&second.stderr)
    );
    Ok(())
}

/// The pub/sub component is scoped: only chat-api's sidecar may publish task events. The
/// worker's sidecar (what anything reaching recurring-tasks could use) is refused with 403,
/// so is a sidecar in notifications' name publishing reminders, and an app id the component
/// is not scoped to has no pub/sub at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_publishing_service_may_publish_a_topic() -> Result<()> {
    let s = setup().await?;
    let body = json!({"event_type": "task.completed", "schema_version": 1, "user_id": "eve"});
    let publish = async |sidecar_url: String, topic: &str| -> Result<(u16, String)> {
        let res = s
            .client
            .post(format!(
                "{sidecar_url}/v1.0/publish/pubsub/{topic}?metadata.partitionKey=eve"
            ))
            .json(&body)
            .send()
            .await?;
        Ok((res.status().as_u16(), res.text().await?))
    };
    let (status, text) = publish(s.worker.sidecar.http_url(), topics::TASK_EVENTS).await?;
    ensure!(
        status == 403 && text.contains("ERR_PUBSUB_FORBIDDEN"),
        "recurring-tasks' sidecar publishing task-events: {status} {text}"
    );
    let notifications = s.env.bare_sidecar("notifications").await?;
    let (status, text) = publish(notifications.http_url(), topics::REMINDERS).await?;
    ensure!(
        status == 403 && text.contains("ERR_PUBSUB_FORBIDDEN"),
        "notifications' sidecar publishing reminders: {status} {text}"
    );
    let intruder = s.env.bare_sidecar("intruder").await?;
    let (status, text) = publish(intruder.http_url(), topics::TASK_EVENTS).await?;
    ensure!(
        status >= 400 && text.contains("ERR_PUBSUB_NOT_FOUND"),
        "an app id outside the component's scopes: {status} {text}"
    );
    // The one publisher still can.
    let (status, text) = publish(s.api.sidecar.http_url(), topics::TASK_EVENTS).await?;
    ensure!(
        status == 204,
        "chat-api's sidecar publishing task-events: {status} {text}"
    );
    Ok(())
}
