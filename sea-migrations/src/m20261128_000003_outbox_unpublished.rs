use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    PublishedAt,
}

/// A partial index over the pending rows only. The relay reads pending rows in commit order
/// and `/relay/status` counts them; with only `(published_at, id)`, PostgreSQL's plan for
/// that read depended on its statistics, and right after tens of thousands of rows were
/// marked published (before autoanalyze) it scanned them. This index holds only what is
/// pending, so the read costs the same whatever the published history.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_unpublished")
                    .table(Outbox::Table)
                    .col(Outbox::Id)
                    .and_where(Expr::col(Outbox::PublishedAt).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_outbox_unpublished")
                    .table(Outbox::Table)
                    .to_owned(),
            )
            .await
    }
}
