use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RelayLease {
    Table,
    Name,
    Holder,
    ExpiresAt,
}

/// One row per lease: the outbox relay that holds `outbox` is the only one publishing, so
/// several `chat-api` replicas never publish one user's events concurrently.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RelayLease::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RelayLease::Name)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RelayLease::Holder)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RelayLease::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RelayLease::Table).to_owned())
            .await
    }
}
