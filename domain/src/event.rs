//! The events every service exchanges. Documented in `docs/events.md`; versioned by
//! `schema_version` and only ever changed in backward-compatible ways (fields added, never
//! removed or repurposed).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Priority, Recurrence, TimeZone};

/// Schema version of [`TaskEvent`].
pub const TASK_EVENT_SCHEMA_VERSION: u32 = 1;
/// Schema version of [`ReminderEvent`].
pub const REMINDER_SCHEMA_VERSION: u32 = 1;

/// Topic names, shared by publishers, subscriptions and tests.
pub mod topics {
    pub const TASK_EVENTS: &str = "task-events";
    pub const REMINDERS: &str = "reminders";
    pub const TASK_EVENTS_DLQ: &str = "task-events-dlq";
    pub const REMINDERS_DLQ: &str = "reminders-dlq";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "task.created")]
    TaskCreated,
    #[serde(rename = "task.updated")]
    TaskUpdated,
    #[serde(rename = "task.completed")]
    TaskCompleted,
    #[serde(rename = "task.deleted")]
    TaskDeleted,
    #[serde(rename = "reminder.due")]
    ReminderDue,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        Self::TaskCreated,
        Self::TaskUpdated,
        Self::TaskCompleted,
        Self::TaskDeleted,
        Self::ReminderDue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskCreated => "task.created",
            Self::TaskUpdated => "task.updated",
            Self::TaskCompleted => "task.completed",
            Self::TaskDeleted => "task.deleted",
            Self::ReminderDue => "reminder.due",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The complete state of a task at the moment of an event, so consumers never call back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    pub id: Uuid,
    pub user_id: String,
    pub title: String,
    pub description: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub time_zone: TimeZone,
    pub recurrence: Option<Recurrence>,
    pub completed: bool,
    pub completed_at: Option<DateTime<Utc>>,
    /// Starts at 1 and grows by one with every change: consumers ignore older versions.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One immutable fact about a task, published to `task-events` keyed by `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub user_id: String,
    pub task: TaskSnapshot,
    /// For `task.updated`: the names of the fields that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<String>,
}

impl TaskEvent {
    pub fn new(
        event_type: EventType,
        task: TaskSnapshot,
        changed_fields: Vec<String>,
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        Self {
            event_id,
            event_type,
            schema_version: TASK_EVENT_SCHEMA_VERSION,
            occurred_at,
            user_id: task.user_id.clone(),
            task,
            changed_fields,
        }
    }
}

/// A reminder that a task is due soon, published to `reminders` keyed by `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderEvent {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub user_id: String,
    pub task_id: Uuid,
    pub title: String,
    pub description: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub due_at: DateTime<Utc>,
    pub time_zone: TimeZone,
    pub window_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> TaskSnapshot {
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("instant")
            .with_timezone(&Utc);
        TaskSnapshot {
            id: Uuid::nil(),
            user_id: "alice".into(),
            title: "t".into(),
            description: String::new(),
            priority: Priority::High,
            tags: vec!["a".into()],
            due_at: None,
            time_zone: TimeZone::UTC,
            recurrence: None,
            completed: false,
            completed_at: None,
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_task_event_serialises_with_dotted_type_and_round_trips() {
        let event = TaskEvent::new(EventType::TaskCreated, snapshot(), vec![], Uuid::nil(), snapshot().created_at);
        let json = serde_json::to_value(&event).expect("serialise");
        assert_eq!(json["event_type"], "task.created");
        assert_eq!(json["schema_version"], TASK_EVENT_SCHEMA_VERSION);
        assert_eq!(json["user_id"], "alice");
        assert_eq!(json["task"]["priority"], "high");
        assert_eq!(json["task"]["time_zone"], "UTC");
        assert!(json.get("changed_fields").is_none());
        let back: TaskEvent = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, event);
    }

    #[test]
    fn event_types_parse_from_their_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("task.exploded"), None);
    }
}
