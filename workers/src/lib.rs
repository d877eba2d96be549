//! The event consumers. Each is its own binary (`src/bin/`), Dapr app-id and sidecar over a
//! module of this library:
//!
//! - [`recurring`] (`recurring-tasks`): consumes `task.completed` from `task-events` and
//!   creates the next instance of a recurring task, exactly once in effect.
//! - [`notifications`] (`notifications`): consumes `reminder.due` from `reminders` and logs
//!   each reminder once (no database).
//!
//! Shared by both: [`envelope`] (what daprd delivers, unwrapped) and [`http`] (the database
//! readiness probe, what a panic answers, and the fallback that never answers 404 to
//! daprd), inside the frame every service shares (`service_kit::skeleton`).
//!
//! Events reach a consumer through a declarative subscription in `components/` and an axum
//! route; handlers answer only `SUCCESS`, `RETRY` or `DROP`. Consumers publish no event
//! (`recurring-tasks` publishes only what it drops, to `task-events-dlq`:
//! [`dead_letters`]): an event they cause (the next instance's `task.created`) is written to the
//! shared outbox in the same transaction as the change, and the one relay of that outbox, in
//! `chat-api`, publishes it (see `docs/recurring.md`).
//!
//! May depend on: the domain, store and service-kit crates, axum and tokio. Never on
//! `chat-api`. Runs no migrations (`chat-api` owns the schema).

pub mod dead_letters;
pub mod envelope;
pub mod http;
pub mod notifications;
pub mod recurring;
