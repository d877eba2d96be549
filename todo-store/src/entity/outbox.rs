use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: Uuid,
    pub user_id: String,
    pub topic: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: DateTimeUtc,
    /// Always null: a published event's row is deleted. Only a relay of a version before
    /// that set it (a replica still running during an upgrade); the relay purges such rows.
    pub published_at: Option<DateTimeUtc>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub parked_at: Option<DateTimeUtc>,
    /// The W3C trace context of the write, published with the event.
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
