use sea_orm::entity::prelude::*;

/// One reminder of a live, incomplete task, with the instant it fires (see the migration).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_reminders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_id: Uuid,
    /// Canonical spelling (`15m`, `-1d 18:00`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub reminder: String,
    pub user_id: String,
    /// The task's due time this row was computed for.
    pub due_at: DateTimeUtc,
    pub fires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
