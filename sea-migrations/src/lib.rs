//! The database schema as frozen history. Each migration is written once in SeaQuery and
//! never edited after it ships; a change is a new migration. Migrations never import the
//! live entities, so the history stays valid whatever the code becomes.
//!
//! Run explicitly (`chat-api --migrate`, `cargo xtask up`), never by every worker.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_tasks_users_outbox;
mod m20261128_000002_relay_lease;
mod m20261128_000003_outbox_unpublished;
mod m20261203_000004_outbox_parked;
mod m20261204_000005_task_search_text;
mod m20261205_000006_dead_letters;
mod m20261206_000007_conversations;
mod m20261207_000008_due_dates_reminders;
mod m20261208_000009_outbox_traceparent;
mod m20261209_000010_outbox_published_leave;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_tasks_users_outbox::Migration),
            Box::new(m20261128_000002_relay_lease::Migration),
            Box::new(m20261128_000003_outbox_unpublished::Migration),
            Box::new(m20261203_000004_outbox_parked::Migration),
            Box::new(m20261204_000005_task_search_text::Migration),
            Box::new(m20261205_000006_dead_letters::Migration),
            Box::new(m20261206_000007_conversations::Migration),
            Box::new(m20261207_000008_due_dates_reminders::Migration),
            Box::new(m20261208_000009_outbox_traceparent::Migration),
            Box::new(m20261209_000010_outbox_published_leave::Migration),
        ]
    }
}
