use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    CreatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    UserId,
    Title,
    Description,
    Priority,
    Tags,
    DueAt,
    TimeZone,
    Recurrence,
    SeriesId,
    AnchorLocal,
    Occurrence,
    Completed,
    CompletedAt,
    Version,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    EventId,
    UserId,
    Topic,
    EventType,
    Payload,
    CreatedAt,
    PublishedAt,
    Attempts,
    LastError,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Users::Id).string_len(128).not_null().primary_key())
                    .col(ColumnDef::new(Users::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Users::DeletedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Tasks::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Tasks::UserId).string_len(128).not_null())
                    .col(ColumnDef::new(Tasks::Title).string_len(200).not_null())
                    .col(ColumnDef::new(Tasks::Description).text().not_null())
                    .col(ColumnDef::new(Tasks::Priority).small_integer().not_null())
                    // Tags as ",a,b," so a tag filter is a portable LIKE '%,a,%' (tags never hold commas).
                    .col(ColumnDef::new(Tasks::Tags).text().not_null())
                    .col(ColumnDef::new(Tasks::DueAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Tasks::TimeZone).string_len(64).not_null())
                    .col(ColumnDef::new(Tasks::Recurrence).string_len(16).null())
                    .col(ColumnDef::new(Tasks::SeriesId).uuid().null())
                    .col(ColumnDef::new(Tasks::AnchorLocal).string_len(32).null())
                    .col(ColumnDef::new(Tasks::Occurrence).integer().not_null().default(0))
                    .col(ColumnDef::new(Tasks::Completed).boolean().not_null().default(false))
                    .col(ColumnDef::new(Tasks::CompletedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Tasks::Version).big_integer().not_null())
                    .col(ColumnDef::new(Tasks::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Tasks::UpdatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Tasks::DeletedAt).timestamp_with_time_zone().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tasks_user")
                            .from(Tasks::Table, Tasks::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;

        // One instance per (series, occurrence): a duplicated completion can never create a
        // second next instance, even if the idempotency key in Redis is lost.
        manager
            .create_index(
                Index::create()
                    .name("ux_tasks_series_occurrence")
                    .table(Tasks::Table)
                    .col(Tasks::SeriesId)
                    .col(Tasks::Occurrence)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_user_created")
                    .table(Tasks::Table)
                    .col(Tasks::UserId)
                    .col(Tasks::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_due")
                    .table(Tasks::Table)
                    .col(Tasks::DueAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Outbox::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Outbox::EventId).uuid().not_null().unique_key())
                    .col(ColumnDef::new(Outbox::UserId).string_len(128).not_null())
                    .col(ColumnDef::new(Outbox::Topic).string_len(64).not_null())
                    .col(ColumnDef::new(Outbox::EventType).string_len(32).not_null())
                    .col(ColumnDef::new(Outbox::Payload).text().not_null())
                    .col(ColumnDef::new(Outbox::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Outbox::PublishedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Outbox::Attempts).integer().not_null().default(0))
                    .col(ColumnDef::new(Outbox::LastError).text().null())
                    .to_owned(),
            )
            .await?;
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Outbox::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Tasks::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await?;
        Ok(())
    }
}
