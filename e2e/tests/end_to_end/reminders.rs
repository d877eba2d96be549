//! Reminders end to end: a real cron binding wakes `reminder-cron` (beside its own
//! daprd), which reads the tasks `chat-api` wrote and publishes reminders to Kafka;
//! `notifications` (beside its own daprd, subscribed to `reminders`) logs each one once.
//! The rendered cron binding fires every 2 s instead of 30 s to keep the tests short.
//!
//! Each test prints the publication → log latencies it saw (`latency_ms` of the log lines:
//! from the reminder's generation, just before publishing, to its line; the goal is < 10 s).

use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use chrono::{DateTime, SecondsFormat, Utc};
use devstack::{Sidecar, SidecarConfig};
use e2e::{
    Env, Service, percentile,
    reminders::{
        Notification, decode_reminders, notifications, publish_reminder, set_cron_schedule,
        start_notifications, start_reminder_cron, wait_for_notifications,
    },
};
use serde_json::{Value, json};
use service_kit::{DaprIdempotencyStore, IdempotencyStore as _, state::STATE_STORE_NAME};
use todo_domain::{EventType, Priority, REMINDER_SCHEMA_VERSION, ReminderEvent, TimeZone, topics};
use uuid::Uuid;

const TICK: Duration = Duration::from_secs(2);
/// Logged within 10 s of publication (the product's goal); a task waits at most one tick
/// for that.
const LOGGED_WITHIN: Duration = Duration::from_secs(10);
const APP_TOKEN: &str = "e2e-app-token";

struct Api<'a> {
    env: &'a Env,
    api: &'a Service,
    client: reqwest::Client,
}

impl Api<'_> {
    async fn create(&self, user: &str, title: &str, due: DateTime<Utc>) -> Result<String> {
        let task: Value = self
            .client
            .post(format!("{}/api/{user}/tasks", self.api.base))
            .bearer_auth(self.env.token(user)?)
            .json(&json!({"title": title, "priority": "high", "tags": ["e2e"], "description": "remind me",
                          "due_at": due.to_rfc3339_opts(SecondsFormat::Secs, true), "time_zone": "Europe/Berlin"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(task["id"].as_str().context("task id")?.to_owned())
    }

    async fn complete(&self, user: &str, id: &str) -> Result<()> {
        self.client
            .post(format!("{}/api/{user}/tasks/{id}/complete", self.api.base))
            .bearer_auth(self.env.token(user)?)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn move_due(&self, user: &str, id: &str, due: DateTime<Utc>) -> Result<()> {
        self.client
            .patch(format!("{}/api/{user}/tasks/{id}", self.api.base))
            .bearer_auth(self.env.token(user)?)
            .json(&json!({"due_at": due.to_rfc3339_opts(SecondsFormat::Secs, true)}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

fn report_latency(test: &str, lines: &[Notification]) {
    let ms: Vec<u64> = lines.iter().filter_map(|n| n.latency_ms).collect();
    eprintln!(
        "{test}: publication -> log latency over {} reminders: p50 {:?} ms, p95 {:?} ms, max {:?} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        ms.iter().max()
    );
}

fn logged_within_ten_seconds(lines: &[Notification]) -> Result<()> {
    for n in lines {
        let ms = n
            .latency_ms
            .context("a notification line without latency_ms")?;
        ensure!(
            ms < LOGGED_WITHIN.as_millis() as u64,
            "logged {ms} ms after publication: {}",
            n.line
        );
    }
    Ok(())
}

/// A reminder as `reminder-cron` would generate it, for a task that need not exist.
fn reminder(user: &str, title: &str) -> ReminderEvent {
    let due = Utc::now() + chrono::Duration::hours(2);
    let task_id = Uuid::now_v7();
    ReminderEvent {
        event_id: ReminderEvent::id_for(task_id, due),
        event_type: EventType::ReminderDue,
        schema_version: REMINDER_SCHEMA_VERSION,
        occurred_at: Utc::now(),
        user_id: user.into(),
        task_id,
        title: title.into(),
        description: String::new(),
        priority: Priority::Medium,
        tags: vec![],
        due_at: due,
        due_date: None,
        time_zone: TimeZone::UTC,
        window_seconds: 86_400,
        offset: None,
        fires_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_due_in_two_hours_is_notified_once_and_tasks_outside_the_window_or_completed_never()
-> Result<()> {
    let env = Env::start().await?;
    set_cron_schedule(&env, "@every 2s")?;
    let db = env.database().await?;
    let api = env.start_chat_api(&db).await?;
    // Both apps require daprd's token: the cron call and the delivery carry it.
    let notifier = start_notifications(&env, Some(&db), Some(APP_TOKEN)).await?;
    let tasks = Api {
        env: &env,
        api: &api,
        client: e2e::client(),
    };

    // Completed before reminder-cron runs at all, so no tick can catch it still open.
    let done = tasks
        .create(
            "alice",
            "already done",
            Utc::now() + chrono::Duration::hours(1),
        )
        .await?;
    tasks.complete("alice", &done).await?;
    let cron = start_reminder_cron(&env, &db, Some(APP_TOKEN)).await?;
    let later = tasks
        .create(
            "alice",
            "due in three days",
            Utc::now() + chrono::Duration::days(3),
        )
        .await?;
    let due = Utc::now() + chrono::Duration::hours(2);
    let soon = tasks.create("alice", "due in two hours", due).await?;
    let created = Instant::now();

    let log = || notifier.process.log_text();
    let lines = wait_for_notifications(log, Some(&soon), 1, TICK + LOGGED_WITHIN).await;
    let waited = created.elapsed();
    ensure!(
        lines.len() == 1,
        "no notification within a tick plus 10 s; notifications log:\n{}\nreminder-cron log:\n{}",
        notifier.process.log_tail(30),
        cron.process.log_tail(30)
    );
    eprintln!("task created -> notification logged: {waited:?}");
    let line = &lines[0].line;
    for expected in [
        "user_id=\"alice\"".to_owned(),
        "title=\"due in two hours\"".to_owned(),
        "description=\"remind me\"".to_owned(),
        "priority=\"high\"".to_owned(),
        "tags=[\"e2e\"]".to_owned(),
        format!(
            "due_at=\"{}\"",
            due.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        "time_zone=\"Europe/Berlin\"".to_owned(),
    ] {
        ensure!(line.contains(&expected), "{expected} missing from {line}");
    }

    // More ticks: still one line for it, none for the others.
    tokio::time::sleep(3 * TICK).await;
    let all = notifications(&notifier.process.log_text(), None);
    ensure!(
        notifications(&notifier.process.log_text(), Some(&soon)).len() == 1,
        "one line only: {all:#?}"
    );
    ensure!(
        all.len() == 1,
        "the completed task and the one due in 3 days get none: {all:#?}"
    );
    let cron_log = cron.process.log_text();
    ensure!(
        !cron_log.contains(&later) && !cron_log.contains(&done),
        "reminder-cron published for a task it should not have:\n{cron_log}"
    );

    // A new due time is a new reminder.
    let moved = due + chrono::Duration::hours(1);
    tasks.move_due("alice", &soon, moved).await?;
    let lines = wait_for_notifications(
        || notifier.process.log_text(),
        Some(&soon),
        2,
        TICK + LOGGED_WITHIN,
    )
    .await;
    ensure!(
        lines.len() == 2,
        "no reminder for the new due time: {lines:#?}"
    );
    ensure!(
        lines[1].line.contains(&format!(
            "due_at=\"{}\"",
            moved.to_rfc3339_opts(SecondsFormat::Secs, true)
        )),
        "{}",
        lines[1].line
    );
    logged_within_ten_seconds(&lines)?;
    report_latency("window", &lines);

    // On the topic: exactly the two reminders, keyed by user, ids fixed by task and due time.
    let records = env
        .records(topics::REMINDERS, 3, Duration::from_secs(5))
        .await?;
    let seen = decode_reminders(&records)?;
    ensure!(
        seen.len() == 2,
        "expected 2 records on reminders, got {seen:#?}"
    );
    for (s, at) in seen.iter().zip([due, moved]) {
        let task_id = Uuid::parse_str(&soon)?;
        ensure!(s.key.as_deref() == Some("alice"), "record key {:?}", s.key);
        ensure!(
            s.cloudevent_type == "reminder.due",
            "CloudEvent type {}",
            s.cloudevent_type
        );
        ensure!(
            s.cloudevent_id == s.event.event_id.to_string(),
            "CloudEvent id must be the event id"
        );
        ensure!(
            s.event.event_id == ReminderEvent::id_for(task_id, at),
            "event id derived from task and due time"
        );
        ensure!(
            s.event.task_id == task_id && s.event.due_at.timestamp() == at.timestamp(),
            "{:?}",
            s.event
        );
        ensure!(
            s.event.title == "due in two hours" && s.event.window_seconds == 86_400,
            "{:?}",
            s.event
        );
    }

    // Only daprd (holding the token) may trigger a scan.
    let status = e2e::client()
        .post(format!("{}/reminder-cron", cron.base))
        .send()
        .await?
        .status();
    ensure!(
        status == 401,
        "an unauthenticated cron call answered {status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reminder_cron_replicas_publish_one_reminder_per_task_and_due_time() -> Result<()> {
    let env = Env::start().await?;
    set_cron_schedule(&env, "@every 2s")?;
    let db = env.database().await?;
    let api = env.start_chat_api(&db).await?;
    let notifier = start_notifications(&env, Some(&db), None).await?;
    let tasks = Api {
        env: &env,
        api: &api,
        client: e2e::client(),
    };
    let mut ids = Vec::new();
    for i in 0..30i64 {
        let user = ["ann", "ben", "cat"][i as usize % 3];
        ids.push(
            tasks
                .create(
                    user,
                    &format!("task {i}"),
                    Utc::now() + chrono::Duration::minutes(30 + i),
                )
                .await?,
        );
    }

    let first = start_reminder_cron(&env, &db, None).await?;
    let second = start_reminder_cron(&env, &db, None).await?;
    // Besides their sidecars' ticks, make them scan at the very same moment, repeatedly.
    let client = e2e::client();
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            client.post(format!("{}/reminder-cron", first.base)).send(),
            client.post(format!("{}/reminder-cron", second.base)).send()
        );
        ensure!(
            a?.status() == 200 && b?.status() == 200,
            "cron calls answer 200"
        );
    }

    let lines = wait_for_notifications(
        || notifier.process.log_text(),
        None,
        ids.len(),
        Duration::from_secs(30),
    )
    .await;
    ensure!(
        lines.len() == ids.len(),
        "{} of {} notifications",
        lines.len(),
        ids.len()
    );
    tokio::time::sleep(3 * TICK).await;
    let log = notifier.process.log_text();
    for id in &ids {
        let n = notifications(&log, Some(id)).len();
        ensure!(n == 1, "task {id}: {n} notification lines");
    }
    let published = |s: &Service| s.process.log_text().matches("reminder published").count();
    let (by_first, by_second) = (published(&first), published(&second));
    eprintln!("replica 1 published {by_first}, replica 2 published {by_second}");
    ensure!(
        by_first + by_second == ids.len(),
        "{by_first} + {by_second} publishes for {} tasks",
        ids.len()
    );
    // After those ticks: one record each (read just those, then count what is there).
    let records = env
        .records(topics::REMINDERS, ids.len(), Duration::from_secs(30))
        .await?;
    let held = env.end_offset(topics::REMINDERS).await?;
    ensure!(
        records.len() == ids.len() && held == ids.len(),
        "expected {} records on reminders, read {}, {held} there",
        ids.len(),
        records.len()
    );
    let lines = notifications(&log, None);
    logged_within_ten_seconds(&lines)?;
    report_latency("replicas", &lines);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_reminder_published_five_times_is_logged_once() -> Result<()> {
    let env = Env::start().await?;
    let notifier = start_notifications(&env, None, None).await?;
    // Reminders are published in the name of an app the component lets publish them.
    let injector = env.bare_sidecar("chat-api").await?;
    let client = e2e::client();
    let twice_told = reminder("alice", "Pay rent");
    for _ in 0..5 {
        publish_reminder(&client, &injector, &twice_told).await?;
    }
    // Same user, same partition, behind the five: once it is logged, all five were handled.
    let marker = reminder("alice", "marker");
    publish_reminder(&client, &injector, &marker).await?;

    let task = marker.task_id.to_string();
    let done = wait_for_notifications(
        || notifier.process.log_text(),
        Some(&task),
        1,
        Duration::from_secs(30),
    )
    .await;
    ensure!(
        done.len() == 1,
        "the marker was not logged; log:\n{}",
        notifier.process.log_tail(30)
    );
    let log = notifier.process.log_text();
    let lines = notifications(&log, Some(&twice_told.task_id.to_string()));
    ensure!(
        lines.len() == 1,
        "published 5 times, logged {} times:\n{log}",
        lines.len()
    );
    ensure!(
        log.matches("logged before").count() == 4,
        "four deliveries recognised as duplicates:\n{log}"
    );
    let all = notifications(&log, None);
    logged_within_ten_seconds(&all)?;
    report_latency("duplicates", &all);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_published_while_notifications_is_down_are_all_logged_after_it_restarts()
-> Result<()> {
    let env = Env::start().await?;
    let mut notifier = start_notifications(&env, None, None).await?;
    let injector = env.bare_sidecar("chat-api").await?;
    let client = e2e::client();
    // Up and subscribed: a first reminder gets through.
    let first = reminder("bob", "before the outage");
    publish_reminder(&client, &injector, &first).await?;
    let up = wait_for_notifications(
        || notifier.process.log_text(),
        None,
        1,
        Duration::from_secs(30),
    )
    .await;
    ensure!(
        up.len() == 1,
        "not subscribed; log:\n{}",
        notifier.process.log_tail(30)
    );

    notifier.process.stop();
    // daprd sees the app fail two probes a second apart and pauses the subscription.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during: Vec<ReminderEvent> = (0..5)
        .map(|i| {
            reminder(
                ["bob", "cid", "dee"][i % 3],
                &format!("during the outage {i}"),
            )
        })
        .collect();
    for r in &during {
        publish_reminder(&client, &injector, r).await?;
    }
    // Longer than the 7 s for which an invalid event is retried: a transient outage must not
    // be mistaken for one.
    tokio::time::sleep(Duration::from_secs(10)).await;
    notifier
        .restart_process(&env.dir.path().join("logs"))
        .await?;

    let restarted_at = Instant::now();
    let lines = wait_for_notifications(
        || notifier.process.log_text(),
        None,
        during.len(),
        Duration::from_secs(30),
    )
    .await;
    eprintln!(
        "restart -> all {} logged: {:?}",
        during.len(),
        restarted_at.elapsed()
    );
    let log = notifier.process.log_text();
    for r in &during {
        let n = notifications(&log, Some(&r.task_id.to_string())).len();
        ensure!(
            n == 1,
            "{}: {n} lines after the restart; log:\n{log}\nsidecar log:\n{}",
            r.title,
            notifier.sidecar.log_text()
        );
    }
    ensure!(
        lines.len() == during.len(),
        "only the outage's reminders after the restart: {lines:#?}"
    );
    let dead = env
        .records(topics::REMINDERS_DLQ, 1, Duration::from_secs(3))
        .await?;
    ensure!(dead.is_empty(), "reminders were dead-lettered: {dead:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_in_the_real_state_store_have_one_winner_and_are_released_or_confirmed() -> Result<()>
{
    let env = Env::start().await?;
    // A sidecar with the reminder-cron app id (its keys' prefix) and no app.
    let logs = env.dir.path().join("logs");
    let sidecar = Sidecar::start(
        &env.paths,
        SidecarConfig::new(
            "reminder-cron",
            &env.resources,
            &logs.join("claims-daprd.log"),
        ),
    )
    .await?;
    let port = sidecar.config().grpc_port;
    let replicas: Vec<Arc<DaprIdempotencyStore>> = (0..8)
        .map(|_| Arc::new(DaprIdempotencyStore::new(port, None, STATE_STORE_NAME)))
        .collect();
    let key = format!("reminder:{}:1767346200", Uuid::now_v7());
    let lease = Duration::from_secs(60);

    // Eight replicas claim one key at once: one wins, the others see it taken (no errors:
    // a lost first-write race is told apart from a failing store).
    let racers: Vec<_> = replicas
        .iter()
        .map(|store| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move { store.claim(&key, lease).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await? {
            Ok(true) => won += 1,
            Ok(false) => {}
            Err(e) => anyhow::bail!("a claim failed instead of losing: {e}"),
        }
    }
    ensure!(won == 1, "{won} winners");
    let store = &replicas[0];
    ensure!(!store.claim(&key, lease).await?, "taken while claimed");

    // Released: free again.
    store.release(&key).await?;
    ensure!(!store.seen(&key).await?, "released");
    ensure!(
        store.claim(&key, Duration::from_secs(2)).await?,
        "claimable after release"
    );

    // Confirmed: outlives its short lease and stays taken.
    store.confirm(&key, Duration::from_secs(3600)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        store.seen(&key).await?,
        "a confirmed claim outlives its lease"
    );
    ensure!(
        !replicas[1].claim(&key, lease).await?,
        "a confirmed claim stays taken"
    );

    // A lease that ran out frees the key (a replica that died holding it).
    let other = format!("reminder:{}:1767346200", Uuid::now_v7());
    ensure!(store.claim(&other, Duration::from_secs(1)).await?);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ensure!(
        replicas[2].claim(&other, lease).await?,
        "claimable once the lease ran out"
    );
    Ok(())
}
