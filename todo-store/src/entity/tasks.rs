use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: String,
    pub title: String,
    pub description: String,
    /// Title and description folded to lower case by the application: what `q` searches.
    pub search_text: String,
    pub priority: i16,
    /// ",a,b," (see the migration).
    pub tags: String,
    pub due_at: Option<DateTimeUtc>,
    /// The local day of an all-day task (`due_at` is then the end of that day).
    pub due_date: Option<Date>,
    /// The user's reminders, canonical spellings joined by `,`; `None` when none.
    pub reminders: Option<String>,
    pub time_zone: String,
    pub recurrence: Option<String>,
    pub series_id: Option<Uuid>,
    pub anchor_local: Option<String>,
    pub occurrence: i32,
    pub completed: bool,
    pub completed_at: Option<DateTimeUtc>,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
