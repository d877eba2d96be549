//! sea-orm entities for the live schema. Migrations never import these.

pub mod conversation_messages;
pub mod conversations;
pub mod dead_letters;
pub mod outbox;
pub mod task_reminders;
pub mod tasks;
pub mod users;
