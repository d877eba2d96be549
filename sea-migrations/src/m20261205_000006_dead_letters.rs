use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    Topic,
    EventId,
    EventType,
    PartitionKey,
    Payload,
    ReceivedAt,
    ReplayedAt,
}

/// `dead_letters`: a copy of every event that reached a dead-letter topic, kept by
/// `chat-api` (it subscribes to them), so an operator can count, list and replay them. One
/// row per (dead-letter topic, event id); `replayed_at` is set when the event was published
/// again to its topic, and cleared if it comes back.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(DeadLetters::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(DeadLetters::Topic).string_len(64).not_null())
                    // Text, not bounded strings: a dead letter is often one whose fields
                    // broke the rules (a user id far too long), and it must still be kept.
                    .col(ColumnDef::new(DeadLetters::EventId).text().not_null())
                    .col(ColumnDef::new(DeadLetters::EventType).text().not_null())
                    .col(ColumnDef::new(DeadLetters::PartitionKey).text().not_null())
                    .col(ColumnDef::new(DeadLetters::Payload).text().not_null())
                    .col(
                        ColumnDef::new(DeadLetters::ReceivedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(DeadLetters::ReplayedAt).timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_dead_letters_topic_event")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::Topic)
                    .col(DeadLetters::EventId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeadLetters::Table).to_owned())
            .await
    }
}
