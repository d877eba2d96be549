//! Data access for tasks, users and the transactional outbox, over sea-orm.
//!
//! Every task change is written together with its event in one database transaction
//! ([`tasks::TaskStore`]); the outbox relay (the `relay` crate, in `chat-api`) publishes
//! those events later. The recurring worker's one write, the next instance of a series,
//! is in [`recurring`]; the reminder scanner's read-only query in [`reminders`]. Works on
//! PostgreSQL and SQLite alike.
//!
//! May depend on: the domain crate and sea-orm. Never on HTTP or Dapr.

pub mod conversations;
pub mod db;
pub mod dead_letters;
pub mod entity;
pub mod error;
pub mod recurring;
pub mod reminders;
pub mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
mod users;

pub use conversations::{
    Conversation, ConversationStore, ConversationSummary, NewMessage, StoredMessage,
};
pub use db::{connect, connect_read_only, connect_relay, migrate};
pub use dead_letters::{DeadLetter, DeadLetterStore};
pub use error::StoreError;
pub use recurring::NextInstance;
pub use reminders::{DueCursor, DuePage, Firing, FiringCursor, FiringPage};
pub use tasks::{
    After, ListQuery, NewTask, Page, SortKey, SortValue, StatusFilter, TaskPatch, TaskStore,
};
