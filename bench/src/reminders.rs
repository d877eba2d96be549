//! Reminders: published to notification logged (only when reminder-cron and
//! notifications exist).

use super::*;

pub(super) enum ReminderOutcome {
    NotMeasured(String),
    Measured {
        tasks: usize,
        logged: usize,
        latency: Quantiles,
    },
}

/// Tasks due in an hour (inside the 24 h reminder window), for six users.
pub(super) async fn create_reminder_tasks(ctx: &Ctx<'_>) -> Result<(Vec<String>, Instant)> {
    let due = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut ids = Vec::new();
    for i in 0..REMINDER_TASKS {
        let user = format!("rem-{}", i % 6);
        let body = json!({"title": format!("due soon {i}"), "due_at": due});
        ids.push(create_task(ctx, &user, &body).await?);
    }
    Ok((ids, Instant::now()))
}

/// Creates a task of `user` through the API; its id.
pub(super) async fn create_task(ctx: &Ctx<'_>, user: &str, body: &Value) -> Result<String> {
    let v: Value = ctx
        .client
        .post(format!("{}/api/{user}/tasks", ctx.api_base))
        .bearer_auth(ctx.env.token(user)?)
        .json(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["id"]
        .as_str()
        .context("created task without id")?
        .to_owned())
}

pub(super) async fn reminder_scenario(
    ctx: &Ctx<'_>,
    notifications: &Service,
    task_ids: &[String],
    created: Instant,
) -> ReminderOutcome {
    // When notifications logged each task's reminder: its first log line naming the task.
    let mut logged: HashMap<&str, i64> = HashMap::new();
    while logged.len() < task_ids.len() && created.elapsed() < REMINDER_WAIT {
        let log = notifications.process.log_text();
        for line in log.lines() {
            for id in task_ids {
                if !logged.contains_key(id.as_str())
                    && line.contains(e2e::reminders::NOTIFICATION_MESSAGE)
                    && line.contains(id.as_str())
                    && let Some(at) = log_line_time(line)
                {
                    logged.insert(id.as_str(), at.timestamp_millis());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if logged.is_empty() {
        return ReminderOutcome::NotMeasured(format!(
            "notifications logged none of the {} reminders within {REMINDER_WAIT:?} (with a timestamp and the task id); end of its log:\n{}",
            task_ids.len(),
            notifications.process.log_tail(5)
        ));
    }
    let mut published: HashMap<String, i64> = HashMap::new();
    let read = devstack::consume_timed(
        &ctx.bootstrap,
        ctx.paths,
        REMINDERS,
        task_ids.len(),
        Duration::from_secs(10),
        |r| {
            let v: Value = serde_json::from_str(&r.record.value)?;
            if let Some(task) = v["data"]["task_id"].as_str() {
                published.entry(task.to_owned()).or_insert(r.timestamp_ms);
            }
            Ok(())
        },
    )
    .await;
    if let Err(e) = read {
        return ReminderOutcome::NotMeasured(format!("reading the reminders topic failed: {e:#}"));
    }
    let latencies: Vec<f64> = logged
        .iter()
        .filter_map(|(id, at)| published.get(*id).map(|p| (at - p) as f64))
        .collect();
    if latencies.is_empty() {
        return ReminderOutcome::NotMeasured(
            "no logged reminder matched a record on the reminders topic".into(),
        );
    }
    ReminderOutcome::Measured {
        tasks: task_ids.len(),
        logged: logged.len(),
        latency: Quantiles::of(latencies),
    }
}

/// The timestamp of a log line: the `timestamp` field of a JSON line, or the first word of
/// a text line (colour codes removed).
pub(super) fn log_line_time(line: &str) -> Option<DateTime<Utc>> {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return v["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
    }
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let first = plain.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(first)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
