use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    PublishedAt,
}

/// Published events leave the outbox: the relay deletes each row once the broker has
/// acknowledged its event, instead of setting `published_at` and keeping the row for a day.
/// Setting it was a second version of the row with new entries in three indexes, and the
/// rows kept made the table and its indexes grow with a day of writes; a delete only ends
/// the row (BENCHMARKS.md, "Publishing's cost: relay on and off").
/// So the rows already marked published go now, and so do the two indexes over
/// `published_at`: every row left is pending, and the primary key serves the relay's reads
/// in commit order. The column stays for a replica of the previous version still running
/// during an upgrade (it marks instead of deleting; the relay purges such rows).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(Outbox::Table)
                    .and_where(Expr::col(Outbox::PublishedAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        for name in ["ix_outbox_pending", "ix_outbox_unpublished"] {
            manager
                .drop_index(Index::drop().name(name).table(Outbox::Table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_outbox_pending")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::Id)
                    .to_owned(),
            )
            .await?;
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
}
