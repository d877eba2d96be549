//! Where a notification goes. This phase has one channel, the log: one structured line
//! per reminder. Email or push would be further sinks.

use chrono::{DateTime, SecondsFormat, Utc};
use todo_domain::ReminderEvent;

/// The fixed message of a notification's log line: search the logs for it.
pub const NOTIFICATION_MESSAGE: &str = "reminder due";

/// Delivers one notification. Must not fail: whatever it cannot deliver, it logs.
pub trait NotificationSink: Send + Sync + 'static {
    /// `now`: when it is delivered (the line reports the delay since the reminder was
    /// generated).
    fn notify(&self, reminder: &ReminderEvent, now: DateTime<Utc>);
}

/// Writes one `info` line per reminder, with the user and the task's details:
///
/// ```text
/// INFO reminder due event_id=… user_id="alice" task_id=… title="Pay rent" description="…"
///      priority="high" tags=["home"] due_at="2026-06-01T14:00:00Z" time_zone="Europe/Berlin"
///      due_local="2026-06-01 16:00 CEST" offset="default" fires_at="2026-05-31T14:00:12Z"
///      latency_ms=412 late_ms=980
/// ```
///
/// `due_local` of an all-day task is its day (`2026-06-01 (all day)`); `offset` names the
/// reminder the user set (`15m`, `09:00`) or `default`; `late_ms` is the time from when it
/// was due to fire to this line.
///
/// With `LOG_FORMAT=json` the same fields are JSON keys (`"message": "reminder due"`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

impl NotificationSink for LogSink {
    fn notify(&self, r: &ReminderEvent, now: DateTime<Utc>) {
        let due_local = match r.due_date {
            Some(day) => format!("{day} (all day)"),
            None => r
                .due_at
                .with_timezone(&r.time_zone.tz())
                .format("%Y-%m-%d %H:%M %Z")
                .to_string(),
        };
        // From generation (just before publishing) to this line; the goal is under 10 s.
        let latency_ms = (now - r.occurred_at).num_milliseconds().max(0);
        let fires_at = r.fires_at.unwrap_or(r.occurred_at);
        // Negative only if it came early: a bug, or clocks that disagree.
        let late_ms = (now - fires_at).num_milliseconds();
        tracing::info!(
            event_id = %r.event_id,
            user_id = r.user_id.as_str(),
            task_id = %r.task_id,
            title = r.title.as_str(),
            description = r.description.as_str(),
            priority = r.priority.as_str(),
            tags = ?r.tags,
            due_at = r.due_at.to_rfc3339_opts(SecondsFormat::Secs, true).as_str(),
            time_zone = r.time_zone.name(),
            due_local = due_local.as_str(),
            offset = r.offset.as_deref().unwrap_or("default"),
            fires_at = fires_at.to_rfc3339_opts(SecondsFormat::Secs, true).as_str(),
            latency_ms,
            late_ms,
            "{NOTIFICATION_MESSAGE}"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{Arc, Mutex},
    };

    use todo_domain::{Priority, TaskSnapshot, TimeZone};
    use uuid::Uuid;

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            self.0
                .lock()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
    }

    fn reminder() -> ReminderEvent {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let task = TaskSnapshot {
            id: Uuid::from_u128(7),
            user_id: "alice".into(),
            title: "Pay rent".into(),
            description: "Transfer to the landlord".into(),
            priority: Priority::High,
            tags: vec!["home".into(), "money".into()],
            due_at: Some(at("2026-06-01T14:00:00Z")),
            due_date: None,
            reminders: vec![],
            time_zone: TimeZone::parse("Europe/Berlin").unwrap_or_default(),
            recurrence: None,
            completed: false,
            completed_at: None,
            version: 1,
            created_at: at("2026-05-01T00:00:00Z"),
            updated_at: at("2026-05-01T00:00:00Z"),
        };
        ReminderEvent::for_task(&task, 86_400, at("2026-06-01T12:00:00Z"))
            .unwrap_or_else(|| unreachable!("the task has a due time"))
    }

    #[test]
    fn one_text_line_carries_the_user_and_the_task_details() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_target(false)
            .finish();
        let r = reminder();
        let now = r.occurred_at + chrono::Duration::milliseconds(1250);
        tracing::subscriber::with_default(subscriber, || LogSink.notify(&r, now));

        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = lines[0];
        for expected in [
            " INFO ",
            "reminder due",
            &format!("event_id={}", r.event_id),
            "user_id=\"alice\"",
            &format!("task_id={}", r.task_id),
            "title=\"Pay rent\"",
            "description=\"Transfer to the landlord\"",
            "priority=\"high\"",
            "tags=[\"home\", \"money\"]",
            "due_at=\"2026-06-01T14:00:00Z\"",
            "time_zone=\"Europe/Berlin\"",
            "due_local=\"2026-06-01 16:00 CEST\"",
            "offset=\"default\"",
            "fires_at=\"2026-06-01T12:00:00Z\"",
            "late_ms=1250",
            "latency_ms=1250",
        ] {
            assert!(line.contains(expected), "{expected:?} missing from {line}");
        }
    }

    #[test]
    fn the_json_line_has_every_field_as_a_key() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .json()
            .flatten_event(true)
            .finish();
        let r = reminder();
        tracing::subscriber::with_default(subscriber, || LogSink.notify(&r, r.occurred_at));
        let line: serde_json::Value = serde_json::from_str(out.text().trim()).unwrap_or_default();
        assert_eq!(line["message"], NOTIFICATION_MESSAGE);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["user_id"], "alice");
        assert_eq!(line["task_id"], r.task_id.to_string());
        assert_eq!(line["event_id"], r.event_id.to_string());
        assert_eq!(line["title"], "Pay rent");
        assert_eq!(line["priority"], "high");
        assert_eq!(line["due_at"], "2026-06-01T14:00:00Z");
        assert_eq!(line["time_zone"], "Europe/Berlin");
        assert_eq!(line["latency_ms"], 0);
    }
}
