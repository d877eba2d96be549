use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    UserId,
    MessageCount,
    TurnUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ConversationMessages {
    Table,
    Id,
    ConversationId,
    Seq,
    Role,
    Body,
    CreatedAt,
}

/// The chat's conversations, kept in the database so any replica answers the next turn.
///
/// - `conversations`: one row per conversation, owned by one user. `message_count` numbers
///   the next message; each append locks the row. `turn_until` is the lease of the turn
///   running on it (set when a turn starts, cleared when it ends, void after that time): one
///   turn of a conversation at a time, across replicas.
/// - `conversation_messages`: the messages in order (`seq` from 0): the user's, the
///   assistant's (with the tool calls it asked for), and the tool results. `body` is JSON.
///   Deleted with their conversation.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Conversations::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Conversations::UserId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Conversations::MessageCount)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Conversations::TurnUntil).timestamp_with_time_zone())
                    .col(
                        ColumnDef::new(Conversations::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Conversations::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_conversations_user")
                            .from(Conversations::Table, Conversations::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_conversations_user")
                    .table(Conversations::Table)
                    .col(Conversations::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConversationMessages::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ConversationMessages::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ConversationMessages::ConversationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConversationMessages::Seq)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConversationMessages::Role)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ConversationMessages::Body).text().not_null())
                    .col(
                        ColumnDef::new(ConversationMessages::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_conversation_messages_conversation")
                            .from(
                                ConversationMessages::Table,
                                ConversationMessages::ConversationId,
                            )
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_conversation_messages_seq")
                    .table(ConversationMessages::Table)
                    .col(ConversationMessages::ConversationId)
                    .col(ConversationMessages::Seq)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConversationMessages::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Conversations::Table).to_owned())
            .await
    }
}
