use sea_orm_migration::{prelude::*, sea_orm::ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    Title,
    Description,
    SearchText,
}

/// `search_text`: the title and description folded to lower case by the application (Unicode
/// case folding, the same on every database), which `q` searches. The databases' own
/// `lower()` differ: SQLite's folds ASCII letters only, PostgreSQL's depends on the
/// database's locale (none with `C`).
///
/// Existing rows are filled in here, a page of ids at a time, with the same folding
/// (`str::to_lowercase`) the application applies on every write.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(
                        ColumnDef::new(Tasks::SearchText)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        let mut after: Option<sea_orm_migration::sea_orm::prelude::Uuid> = None;
        loop {
            let mut page = Query::select()
                .columns([Tasks::Id, Tasks::Title, Tasks::Description])
                .from(Tasks::Table)
                .order_by(Tasks::Id, Order::Asc)
                .limit(1_000)
                .to_owned();
            if let Some(id) = after {
                page.and_where(Expr::col(Tasks::Id).gt(id));
            }
            let rows = db.query_all_raw(backend.build(&page)).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.try_get("", "id")?);
            for row in &rows {
                let id: sea_orm_migration::sea_orm::prelude::Uuid = row.try_get("", "id")?;
                let title: String = row.try_get("", "title")?;
                let description: String = row.try_get("", "description")?;
                let update = Query::update()
                    .table(Tasks::Table)
                    .value(Tasks::SearchText, fold(&title, &description))
                    .and_where(Expr::col(Tasks::Id).eq(id))
                    .to_owned();
                db.execute_raw(backend.build(&update)).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::SearchText)
                    .to_owned(),
            )
            .await
    }
}

/// The text `q` is matched against, as the application writes it (frozen here so the
/// history does not depend on the live code).
fn fold(title: &str, description: &str) -> String {
    format!("{}\n{}", title.to_lowercase(), description.to_lowercase())
}
