use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    UserId,
    ParkedAt,
}

#[derive(DeriveIden)]
enum RelayLease {
    Table,
}

/// Parked events: an event the broker refused every time is kept in the outbox with
/// `parked_at` set, and neither it nor its user's later events are published until an
/// operator re-queues it (`chat-api outbox retry`). The partial index holds only parked
/// rows, so asking "which users are parked?" costs nothing while none are.
///
/// The lease table goes: the relay's leadership is now a lock that dies with its holder's
/// database session (PostgreSQL advisory lock) or process (a file lock beside SQLite).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(
                        ColumnDef::new(Outbox::ParkedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_parked")
                    .table(Outbox::Table)
                    .col(Outbox::UserId)
                    .and_where(Expr::col(Outbox::ParkedAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(RelayLease::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_outbox_parked")
                    .table(Outbox::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .drop_column(Outbox::ParkedAt)
                    .to_owned(),
            )
            .await
    }
}
