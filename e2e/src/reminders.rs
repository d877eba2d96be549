//! Harness pieces for the reminder tests: a faster cron schedule for the
//! rendered components, `reminder-cron` and `notifications` each started beside its own
//! daprd (with daprd's app health check, as `dapr.yaml` runs them), publishing a reminder
//! through a sidecar's HTTP API, and reading notifications back from a process log.

use std::{
    fs,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use devstack::Sidecar;
use todo_domain::{ReminderEvent, topics};

use crate::{CloudEvent, Env, Service, SidecarOptions};

/// The schedule `components/binding-reminder-cron.yaml` ships with.
pub const SHIPPED_SCHEDULE: &str = "@every 30s";
/// The fixed message of a notification's log line (`workers::notifications::sink`).
pub const NOTIFICATION_MESSAGE: &str = "reminder due";
/// The binding component's rendered file.
const BINDING_FILE: &str = "binding-reminder-cron.yaml";

/// Rewrites the rendered cron binding (in `env.resources`) to fire on `schedule` (such as
/// `@every 2s`) instead of every 30 s. Sidecars started afterwards use it.
pub fn set_cron_schedule(env: &Env, schedule: &str) -> Result<()> {
    let path = env.resources.join(BINDING_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if !text.contains(SHIPPED_SCHEDULE) {
        bail!(
            "{} does not contain {SHIPPED_SCHEDULE:?}:\n{text}",
            path.display()
        );
    }
    fs::write(&path, text.replace(SHIPPED_SCHEDULE, schedule))
        .with_context(|| format!("writing {}", path.display()))
}

/// Starts `bin` as `app_id` beside its own daprd, like [`Env::start_service`], with daprd
/// probing the app's `/healthz` (every second; unhealthy after two failures): while the app
/// is down, daprd pauses its subscriptions and input bindings instead of retrying deliveries
/// into the dead-letter topic. With `app_token`, daprd sends it on every call to the app and
/// the app requires it (`APP_API_TOKEN`). [`Service::restart_process`] works on the result.
pub async fn start_with_health_check(
    env: &Env,
    bin: &str,
    app_id: &str,
    vars: &[(&str, String)],
    app_token: Option<&str>,
) -> Result<Service> {
    let options = SidecarOptions {
        health_path: Some("/healthz"),
        app_token,
        sidecar_env: Vec::new(),
        tracing: None,
    };
    env.launch(bin, app_id, vars, options).await
}

/// `reminder-cron` over `database_url` (read-only use).
pub async fn start_reminder_cron(
    env: &Env,
    database_url: &str,
    app_token: Option<&str>,
) -> Result<Service> {
    let vars = [("DATABASE_URL", database_url.to_owned())];
    start_with_health_check(env, "reminder-cron", "reminder-cron", &vars, app_token).await
}

/// `notifications`, reading the tasks from `database_url` when given (reminders of tasks no
/// longer due are skipped), or logging every reminder when not (reminders made up by a test).
pub async fn start_notifications(
    env: &Env,
    database_url: Option<&str>,
    app_token: Option<&str>,
) -> Result<Service> {
    let vars: Vec<(&str, String)> = database_url
        .map(|url| ("DATABASE_URL", url.to_owned()))
        .into_iter()
        .collect();
    start_with_health_check(env, "notifications", "notifications", &vars, app_token).await
}

/// Publishes `reminder` to `reminders` through `sidecar`'s HTTP API exactly as
/// `reminder-cron` does over gRPC: record key = user id, CloudEvent id = event id,
/// CloudEvent type = event type.
pub async fn publish_reminder(
    client: &reqwest::Client,
    sidecar: &Sidecar,
    reminder: &ReminderEvent,
) -> Result<()> {
    let url = format!(
        "{}/v1.0/publish/pubsub/{}?metadata.partitionKey={}&metadata.cloudevent.id={}&metadata.cloudevent.type={}",
        sidecar.http_url(),
        topics::REMINDERS,
        reminder.user_id,
        reminder.event_id,
        reminder.event_type.as_str()
    );
    let res = client.post(url).json(reminder).send().await?;
    let status = res.status();
    if status.as_u16() != 204 {
        bail!(
            "publishing through daprd answered {status}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// One notification line of a `notifications` log.
#[derive(Debug, Clone)]
pub struct Notification {
    pub line: String,
    /// `latency_ms`: from the reminder's generation to this line.
    pub latency_ms: Option<u64>,
    /// `late_ms`: from the time the reminder was due to fire to this line (negative: early).
    pub late_ms: Option<i64>,
    /// `offset`: the user's reminder (`15m`, `09:00`), or `default`.
    pub offset: Option<String>,
    /// `fires_at`: when it was due to fire.
    pub fires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `event_id`.
    pub event_id: Option<String>,
}

/// The notification lines in `log` (text format, colours or not), optionally only those of
/// `task_id`.
pub fn notifications(log: &str, task_id: Option<&str>) -> Vec<Notification> {
    let log = strip_ansi(log);
    log.lines()
        .filter(|l| l.contains(NOTIFICATION_MESSAGE) && l.contains(" INFO "))
        .filter(|l| task_id.is_none_or(|id| l.contains(&format!("task_id={id}"))))
        .map(|l| Notification {
            line: l.to_owned(),
            latency_ms: field(l, "latency_ms").and_then(|v| v.parse().ok()),
            late_ms: field(l, "late_ms").and_then(|v| v.parse().ok()),
            offset: field(l, "offset").map(str::to_owned),
            fires_at: field(l, "fires_at")
                .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            event_id: field(l, "event_id").map(str::to_owned),
        })
        .collect()
}

/// `text` without ANSI escape sequences (`ESC [ … final byte`), which the text log format
/// writes even into files.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `name=value` in a text log line (up to the next space).
/// The value of `name=` in a text log line, without its quotes (a quoted value may hold
/// spaces).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split(' ').next(),
    }
}

/// Polls `log()` until it holds `n` notification lines (of `task_id`, if given) or
/// `timeout` passes; returns the lines found.
pub async fn wait_for_notifications(
    log: impl Fn() -> String,
    task_id: Option<&str>,
    n: usize,
    timeout: Duration,
) -> Vec<Notification> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = notifications(&log(), task_id);
        if found.len() >= n || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A reminder read back from Kafka, with its record's key.
#[derive(Debug)]
pub struct SeenReminder {
    pub key: Option<String>,
    pub cloudevent_id: String,
    pub cloudevent_type: String,
    pub event: ReminderEvent,
}

pub fn decode_reminders(records: &[devstack::Record]) -> Result<Vec<SeenReminder>> {
    records
        .iter()
        .map(|r| {
            let ce: CloudEvent<ReminderEvent> =
                serde_json::from_str(&r.value).with_context(|| {
                    format!(
                        "record at {}:{} is not a CloudEvent with a ReminderEvent: {}",
                        r.partition, r.offset, r.value
                    )
                })?;
            Ok(SeenReminder {
                key: r.key.clone(),
                cloudevent_id: ce.id,
                cloudevent_type: ce.event_type,
                event: ce.data,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_lines_are_found_by_message_and_task() {
        let log = "\
2026-11-28T10:00:00.000Z  INFO notifications listening port=1
2026-11-28T10:00:01.000Z  INFO reminder{event_id=e1}: reminder due event_id=e1 user_id=\"alice\" task_id=t1 title=\"Pay rent\" latency_ms=412
2026-11-28T10:00:02.000Z  INFO reminder{event_id=e1}: duplicate delivery; this notification was logged before
2026-11-28T10:00:03.000Z  INFO reminder{event_id=e2}: reminder due event_id=e2 user_id=\"bob\" task_id=t2 title=\"x\" latency_ms=9";
        let all = notifications(log, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].latency_ms, Some(412));
        let t2 = notifications(log, Some("t2"));
        assert_eq!(t2.len(), 1);
        assert_eq!(t2[0].latency_ms, Some(9));
        assert!(notifications(log, Some("t3")).is_empty());
    }

    #[test]
    fn coloured_lines_are_read_like_plain_ones() {
        let log = "\u{1b}[2m2026-11-28T19:33:40Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[1mreminder\u{1b}[0m: reminder due \u{1b}[3mtask_id\u{1b}[0m\u{1b}[2m=\u{1b}[0mt1 \u{1b}[3mlatency_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m777";
        let found = notifications(log, Some("t1"));
        assert_eq!(found.len(), 1, "{}", strip_ansi(log));
        assert_eq!(found[0].latency_ms, Some(777));
    }
}
