use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    DueDate,
    Reminders,
}

#[derive(DeriveIden)]
enum TaskReminders {
    Table,
    TaskId,
    Reminder,
    UserId,
    DueAt,
    FiresAt,
}

/// All-day tasks and the reminders users set.
///
/// - `tasks.due_date`: the local day of an all-day task (its `due_at` is then the last second
///   of that day, which is what sorting and the due filters compare); null for a task due at
///   a time or not due.
/// - `tasks.reminders`: the user's reminders in canonical spelling, comma-separated; null
///   when none (the task then gets the default reminder within the window).
/// - `task_reminders`: one row per reminder of a live, incomplete task with a due time, with
///   the instant it fires. Rewritten by every write of its task (so a moved due time or
///   changed reminders re-arm), deleted when the task is completed or deleted. The reminder
///   scan reads the rows whose `fires_at` has come, through `ix_task_reminders_fires`.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(ColumnDef::new(Tasks::DueDate).date())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(ColumnDef::new(Tasks::Reminders).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TaskReminders::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(TaskReminders::TaskId).uuid().not_null())
                    .col(
                        ColumnDef::new(TaskReminders::Reminder)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskReminders::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskReminders::DueAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskReminders::FiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TaskReminders::TaskId)
                            .col(TaskReminders::Reminder),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_task_reminders_fires")
                    .table(TaskReminders::Table)
                    .col(TaskReminders::FiresAt)
                    .col(TaskReminders::TaskId)
                    .col(TaskReminders::Reminder)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_task_reminders_user")
                    .table(TaskReminders::Table)
                    .col(TaskReminders::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskReminders::Table).to_owned())
            .await?;
        for column in [Tasks::Reminders, Tasks::DueDate] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tasks::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
