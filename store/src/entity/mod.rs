//! sea-orm entities for the live schema. Migrations never import these.

pub mod outbox;
pub mod tasks;
pub mod users;
