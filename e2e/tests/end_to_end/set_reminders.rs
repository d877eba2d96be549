//! Reminders users set, end to end on the real stack: tasks created through `chat-api`'s
//! REST API, a real cron binding (rendered at every 2 s) waking two `reminder-cron`
//! replicas, Kafka, and `notifications` logging each reminder once, at its time.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use chrono::{DateTime, NaiveTime, SecondsFormat, Timelike, Utc};
use e2e::{
    Env, Service,
    metrics::scrape,
    reminders::{
        Notification, notifications, set_cron_schedule, start_notifications, start_reminder_cron,
        wait_for_notifications,
    },
};
use serde_json::{Value, json};
use todo_domain::topics;

const TICK: Duration = Duration::from_secs(2);
/// How late a reminder may be logged: one tick, plus publishing and delivery.
const LATE_AT_MOST: chrono::Duration = chrono::Duration::seconds(12);
/// How far the moved task moves once its first reminder was logged (which is at most
/// [`LATE_AT_MOST`] late): its second reminder is still ahead.
const MOVED_BY: chrono::Duration = chrono::Duration::seconds(30);

struct Api<'a> {
    env: &'a Env,
    api: &'a Service,
    client: reqwest::Client,
}

impl Api<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let res = self
            .client
            .request(method, format!("{}/api/alice/tasks{path}", self.api.base))
            .bearer_auth(self.env.token("alice")?)
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        ensure!(status.is_success(), "{status}: {body}");
        Ok(body)
    }

    async fn create(&self, body: Value) -> Result<String> {
        let task = self.send(reqwest::Method::POST, "", body).await?;
        Ok(task["id"].as_str().context("task id")?.to_owned())
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An all-day reminder soon: in a zone half an hour off whole hours, the first whole minute
/// at least 25 s from now. Returns (zone, local date, time of day).
fn day_reminder_zone(now: DateTime<Utc>) -> (String, chrono::NaiveDate, NaiveTime) {
    let zone = chrono_tz::Asia::Kolkata;
    let local = (now + chrono::Duration::seconds(25 + 59))
        .with_timezone(&zone)
        .naive_local();
    let time = NaiveTime::from_hms_opt(local.hour(), local.minute(), 0).unwrap_or_default();
    (zone.name().to_owned(), local.date(), time)
}

fn the_one(lines: &[Notification], what: &str) -> Result<Notification> {
    ensure!(
        lines.len() == 1,
        "{what}: {} lines: {lines:#?}",
        lines.len()
    );
    Ok(lines[0].clone())
}

/// Logged no earlier than its time and at most [`LATE_AT_MOST`] after it.
fn on_time(n: &Notification, fires_at: DateTime<Utc>) -> Result<()> {
    ensure!(
        n.fires_at == Some(fires_at),
        "fires_at {:?}, expected {fires_at}: {}",
        n.fires_at,
        n.line
    );
    let late = n.late_ms.context("late_ms")?;
    ensure!(late >= 0, "logged {} ms before its time: {}", -late, n.line);
    ensure!(
        late <= LATE_AT_MOST.num_milliseconds(),
        "logged {late} ms after its time: {}",
        n.line
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_users_set_fire_once_at_their_time_and_again_when_the_task_moves() -> Result<()> {
    let env = Env::start().await?;
    set_cron_schedule(&env, "@every 2s")?;
    let db = env.database().await?;
    let api = env.start_chat_api(&db).await?;
    let notifier = start_notifications(&env, Some(&db), None).await?;
    let first = start_reminder_cron(&env, &db, None).await?;
    let second = start_reminder_cron(&env, &db, None).await?;
    let tasks = Api {
        env: &env,
        api: &api,
        client: e2e::client(),
    };
    let log = || notifier.process.log_text();

    // Reminded 2 minutes before a due time 2 min 20 s away: in 20 s.
    let created = Utc::now().with_nanosecond(0).unwrap_or_default();
    let due = created + chrono::Duration::seconds(140);
    let soon = tasks
        .create(json!({"title": "Stand-up", "due_at": rfc3339(due), "reminders": ["2m"]}))
        .await?;
    // Reminded a minute before a due time 85 s away (in 25 s); moved 30 s later once
    // reminded.
    let moving_due = created + chrono::Duration::seconds(85);
    let moving = tasks
        .create(json!({"title": "Call back", "due_at": rfc3339(moving_due), "reminders": ["1m"]}))
        .await?;
    // All day in another zone, reminded at a local time of that day.
    let (zone, day, time) = day_reminder_zone(Utc::now());
    let at = time.format("%H:%M").to_string();
    let all_day = tasks
        .create(json!({"title": "Rent", "due_at": day.to_string(), "time_zone": zone, "reminders": [at]}))
        .await?;
    let day_fires = day
        .and_time(time)
        .and_local_timezone(zone.parse::<chrono_tz::Tz>().map_err(anyhow::Error::msg)?)
        .single()
        .context("an unambiguous local time")?
        .with_timezone(&Utc);
    eprintln!("all-day reminder {at} in {zone} fires at {day_fires}");

    let fires = due - chrono::Duration::minutes(2);
    let lines = wait_for_notifications(log, Some(&soon), 1, Duration::from_secs(90)).await;
    let n = the_one(&lines, "2m reminder")?;
    on_time(&n, fires)?;
    ensure!(n.offset.as_deref() == Some("2m"), "{}", n.line);

    let moving_fires = moving_due - chrono::Duration::minutes(1);
    let lines = wait_for_notifications(log, Some(&moving), 1, Duration::from_secs(60)).await;
    on_time(&the_one(&lines, "1m reminder")?, moving_fires)?;
    tasks
        .send(
            reqwest::Method::PATCH,
            &format!("/{moving}"),
            json!({"due_at": rfc3339(moving_due + MOVED_BY)}),
        )
        .await?;
    let lines = wait_for_notifications(log, Some(&moving), 2, Duration::from_secs(90)).await;
    ensure!(lines.len() == 2, "moved: {lines:#?}");
    on_time(&lines[1], moving_fires + MOVED_BY)?;
    ensure!(
        lines[0].event_id != lines[1].event_id,
        "a moved task's reminder is a new one"
    );

    let wait = (day_fires - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(30);
    let lines = wait_for_notifications(log, Some(&all_day), 1, wait).await;
    let n = the_one(&lines, "all-day reminder")?;
    on_time(&n, day_fires)?;
    ensure!(n.offset.as_deref() == Some(at.as_str()), "{}", n.line);
    ensure!(n.line.contains("(all day)"), "{}", n.line);

    // A few more ticks of both replicas: nothing again.
    tokio::time::sleep(4 * TICK).await;
    let all = notifications(&log(), None);
    ensure!(all.len() == 4, "{} notifications: {all:#?}", all.len());
    let published = |s: &Service| s.process.log_text().matches("reminder published").count();
    let (by_first, by_second) = (published(&first), published(&second));
    eprintln!("replica 1 published {by_first}, replica 2 published {by_second}");
    ensure!(
        by_first + by_second == 4,
        "{by_first} + {by_second} publishes for 4 reminders"
    );
    // After those ticks: exactly four records (read just those, then count what is there).
    let records = env
        .records(topics::REMINDERS, 4, Duration::from_secs(30))
        .await?;
    let held = env.end_offset(topics::REMINDERS).await?;
    ensure!(
        records.len() == 4 && held == 4,
        "{} records read, {held} on reminders",
        records.len()
    );

    // What /metrics says of it, read with the Prometheus Python client's parser.
    let notified = scrape(&env, &notifier.base).await?;
    notified.expect_family("notifications_logged_total", "counter")?;
    ensure!(
        notified.value("notifications_logged_total", &[]) == 4.0,
        "4 logged"
    );
    ensure!(
        notified.value(
            "subscription_outcomes_total",
            &[("topic", "reminders"), ("outcome", "SUCCESS")]
        ) >= 4.0,
        "4 reminders answered SUCCESS"
    );
    let (a, b) = (
        scrape(&env, &first.base).await?,
        scrape(&env, &second.base).await?,
    );
    for m in [&a, &b] {
        m.expect_family("reminders_published_total", "counter")?;
        m.expect_family("reminders_skipped_total", "counter")?;
        ensure!(m.value("reminder_scans_total", &[]) >= 1.0, "scans counted");
    }
    let both = |name: &str| a.value(name, &[]) + b.value(name, &[]);
    ensure!(
        both("reminders_published_total") == 4.0,
        "4 published in all"
    );
    ensure!(
        both("reminders_claimed_total") == 4.0,
        "4 claims won in all"
    );
    ensure!(
        both("reminders_skipped_total") >= 4.0,
        "every later tick found them sent already"
    );
    Ok(())
}
