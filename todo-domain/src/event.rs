//! The events every service exchanges. Documented in `docs/events.md`; versioned by
//! `schema_version` and only ever changed in backward-compatible ways (fields added, never
//! removed or repurposed).

use chrono::{DateTime, NaiveDate, Utc};
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
// With the `utoipa` feature it describes its own JSON schema: the API shows a task as this
// snapshot (plus a local due time), so the events and the API share one documented shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct TaskSnapshot {
    /// The task's id: `{task_id}` in the API's paths, `task_id` for its MCP tools.
    pub id: Uuid,
    /// The owner (the API token's subject).
    pub user_id: String,
    pub title: String,
    pub description: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    /// The due instant, in UTC; for an all-day task the last second of its day in
    /// `time_zone`.
    #[cfg_attr(feature = "utoipa", schema(nullable))]
    pub due_at: Option<DateTime<Utc>>,
    /// Present for an all-day task: the local day it is due, in `time_zone` (added in schema
    /// version 1; absent for a task due at a time, or without a due time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "utoipa",
        schema(value_type = String, required = false, format = Date, examples("2026-12-01"))
    )]
    pub due_date: Option<NaiveDate>,
    /// The reminders the user set, in their canonical spelling (`15m`, `1d`, `09:00`,
    /// `-1d 18:00`); absent when none (the default reminder within the window applies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        feature = "utoipa",
        schema(required = false, examples(json!(["15m", "1d"])))
    )]
    pub reminders: Vec<String>,
    /// IANA time zone name.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, examples("Europe/Berlin")))]
    pub time_zone: TimeZone,
    #[cfg_attr(feature = "utoipa", schema(nullable))]
    pub recurrence: Option<Recurrence>,
    pub completed: bool,
    #[cfg_attr(feature = "utoipa", schema(nullable))]
    pub completed_at: Option<DateTime<Utc>>,
    /// Starts at 1 and grows by one with every change: consumers ignore older versions.
    #[cfg_attr(feature = "utoipa", schema(minimum = 1))]
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
    /// For an all-day task, its day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<NaiveDate>,
    pub time_zone: TimeZone,
    /// How far ahead of `due_at` it was sent: the scan window for the default reminder, the
    /// time from `fires_at` to `due_at` for one the user set.
    pub window_seconds: u64,
    /// Which of the user's reminders this is (`15m`, `09:00`, ...); absent for the default
    /// reminder within the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// When it was due to fire: the reminder's own time, or for the default reminder the
    /// time the scan found the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires_at: Option<DateTime<Utc>>,
}

/// Namespace of reminder event ids (UUID v5). Fixed forever: changing it would give every
/// pending reminder a new id and defeat the consumers' duplicate detection.
pub const REMINDER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_9b7d_4c53_8e21_d0a5_b3f4_7c19);

impl ReminderEvent {
    /// The id of the reminder for `task_id` due at `due_at` (whole seconds): the same on every
    /// replica and every tick, so a reminder published twice is recognisably one reminder,
    /// and a task whose due time changes gets a new one.
    pub fn id_for(task_id: Uuid, due_at: DateTime<Utc>) -> Uuid {
        Uuid::new_v5(
            &REMINDER_ID_NAMESPACE,
            format!("{task_id}/{}", due_at.timestamp()).as_bytes(),
        )
    }

    /// The id of the user's reminder `offset` (canonical spelling) for `task_id` due at
    /// `due_at`: fixed per (task, due time, reminder), like [`ReminderEvent::id_for`].
    pub fn id_for_offset(task_id: Uuid, due_at: DateTime<Utc>, offset: &str) -> Uuid {
        Uuid::new_v5(
            &REMINDER_ID_NAMESPACE,
            format!("{task_id}/{}/{offset}", due_at.timestamp()).as_bytes(),
        )
    }

    /// The user's reminder `offset` for `task`, due to fire at `fires_at`; `None` when the
    /// task has no due time.
    pub fn for_offset(
        task: &TaskSnapshot,
        offset: &str,
        fires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        let due_at = task.due_at?;
        let lead = u64::try_from((due_at - fires_at).num_seconds()).unwrap_or(0);
        let mut event = Self::for_task(task, lead, now)?;
        event.event_id = Self::id_for_offset(task.id, due_at, offset);
        event.offset = Some(offset.to_owned());
        event.fires_at = Some(fires_at);
        Some(event)
    }

    /// The default reminder for `task` at its current due time, or `None` when it has none.
    /// `window_seconds`: the reminder window it was found in; `now`: when it was generated.
    pub fn for_task(task: &TaskSnapshot, window_seconds: u64, now: DateTime<Utc>) -> Option<Self> {
        let due_at = task.due_at?;
        Some(Self {
            event_id: Self::id_for(task.id, due_at),
            event_type: EventType::ReminderDue,
            schema_version: REMINDER_SCHEMA_VERSION,
            occurred_at: now,
            user_id: task.user_id.clone(),
            task_id: task.id,
            title: task.title.clone(),
            description: task.description.clone(),
            priority: task.priority,
            tags: task.tags.clone(),
            due_at,
            due_date: task.due_date,
            time_zone: task.time_zone,
            window_seconds,
            offset: None,
            fires_at: Some(now),
        })
    }
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
            due_date: None,
            reminders: vec![],
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
        let event = TaskEvent::new(
            EventType::TaskCreated,
            snapshot(),
            vec![],
            Uuid::nil(),
            snapshot().created_at,
        );
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
    fn a_reminder_carries_the_task_details_and_an_id_fixed_by_task_and_due_time() {
        let mut task = snapshot();
        let due = DateTime::parse_from_rfc3339("2026-01-02T09:30:00Z")
            .expect("instant")
            .with_timezone(&Utc);
        assert_eq!(
            ReminderEvent::for_task(&task, 86_400, due),
            None,
            "no due time, no reminder"
        );
        task.due_at = Some(due);
        let now = snapshot().created_at;
        let reminder = ReminderEvent::for_task(&task, 86_400, now).expect("a reminder");
        assert_eq!(reminder.event_type, EventType::ReminderDue);
        assert_eq!(reminder.schema_version, REMINDER_SCHEMA_VERSION);
        assert_eq!(
            (reminder.user_id.as_str(), reminder.task_id),
            ("alice", task.id)
        );
        assert_eq!(
            (
                reminder.due_at,
                reminder.occurred_at,
                reminder.window_seconds
            ),
            (due, now, 86_400)
        );
        assert_eq!(reminder.tags, ["a"]);
        assert_eq!(reminder.priority, Priority::High);

        // Generated again later (another tick, another replica): the same id.
        let later = ReminderEvent::for_task(&task, 3_600, due).expect("a reminder");
        assert_eq!(later.event_id, reminder.event_id);
        assert_eq!(reminder.event_id.get_version_num(), 5);
        // Sub-second differences are the same due time; another second or task is not.
        let jitter = due + chrono::Duration::milliseconds(400);
        assert_eq!(ReminderEvent::id_for(task.id, jitter), reminder.event_id);
        let moved = due + chrono::Duration::seconds(1);
        assert_ne!(ReminderEvent::id_for(task.id, moved), reminder.event_id);
        assert_ne!(
            ReminderEvent::id_for(Uuid::from_u128(1), due),
            reminder.event_id
        );
        // Pinned: the id is part of the event contract, it must not drift between builds.
        assert_eq!(
            ReminderEvent::id_for(Uuid::nil(), due).to_string(),
            "f54a1be0-6cb4-575c-af48-57ce70912562"
        );

        let json = serde_json::to_value(&reminder).expect("serialise");
        assert_eq!(json["event_type"], "reminder.due");
        assert!(json.get("offset").is_none());
        let back: ReminderEvent = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, reminder);
    }

    #[test]
    fn a_reminder_the_user_set_says_which_and_has_its_own_id() {
        let mut task = snapshot();
        let due = DateTime::parse_from_rfc3339("2026-01-02T09:30:00Z")
            .expect("instant")
            .with_timezone(&Utc);
        task.due_at = Some(due);
        let fires = due - chrono::Duration::minutes(15);
        let now = fires + chrono::Duration::seconds(3);
        let r = ReminderEvent::for_offset(&task, "15m", fires, now).expect("a reminder");
        assert_eq!(r.offset.as_deref(), Some("15m"));
        assert_eq!((r.fires_at, r.window_seconds), (Some(fires), 900));
        assert_eq!(
            r.event_id,
            ReminderEvent::id_for_offset(task.id, due, "15m")
        );
        assert_ne!(r.event_id, ReminderEvent::id_for(task.id, due));
        assert_ne!(r.event_id, ReminderEvent::id_for_offset(task.id, due, "1h"));
        assert_ne!(
            r.event_id,
            ReminderEvent::id_for_offset(task.id, due + chrono::Duration::seconds(1), "15m")
        );
        let json = serde_json::to_value(&r).expect("serialise");
        assert_eq!(json["offset"], "15m");
        let back: ReminderEvent = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, r);
        // An event of a producer before these fields existed still reads.
        let mut old = serde_json::to_value(&r).expect("serialise");
        for field in ["offset", "fires_at", "due_date"] {
            old.as_object_mut().expect("object").remove(field);
        }
        let old: ReminderEvent = serde_json::from_value(old).expect("old event reads");
        assert_eq!((old.offset, old.fires_at), (None, None));
    }

    #[test]
    fn event_types_parse_from_their_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("task.exploded"), None);
    }
}
