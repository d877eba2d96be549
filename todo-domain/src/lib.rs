//! The task domain: validated task values, recurrence math and the event schemas.
//!
//! This crate is pure. It depends on no web framework, no database and no clock: callers pass
//! `now` in. Every service shares it, so a rule written here holds the same way in the API,
//! the workers and the reminder scanner.
//!
//! With the `utoipa` feature, [`TaskSnapshot`] and the types it holds also describe their own
//! JSON schema ([`schema`]): the API's OpenAPI document and its MCP tools both take the task's
//! shape from here, so it is written once, beside the type that is serialised.

pub mod due;
pub mod error;
pub mod event;
pub mod recurrence;
#[cfg(feature = "utoipa")]
pub mod schema;
pub mod series;
pub mod task;
pub use event::topics;
pub mod time;

pub use due::{Due, Reminder, Reminders};
pub use error::ValidationError;
pub use event::{
    EventType, REMINDER_SCHEMA_VERSION, ReminderEvent, TASK_EVENT_SCHEMA_VERSION, TaskEvent,
    TaskSnapshot,
};
pub use recurrence::{Frequency, Recurrence, next_due, next_due_date};
pub use series::{NextOccurrence, next_occurrence};
pub use task::{Description, Priority, Tags, TimeZone, Title, UserId};
