//! The pool never hands out a connection that is still inside a transaction, however the
//! transaction's owner was dropped. SQLite always; PostgreSQL too when `TEST_POSTGRES_URL`
//! names a server (`cargo xtask test` sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

/// A fresh database URL on the test PostgreSQL server, if there is one.
async fn postgres() -> Option<String> {
    let admin = std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let db = sea_orm::Database::connect(&admin).await.unwrap();
    db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    db.close().await.unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

async fn urls(tmp: &tempfile::TempDir) -> Vec<String> {
    let mut urls = vec![format!("sqlite://{}/t.db", tmp.path().display())];
    urls.extend(postgres().await);
    urls
}

async fn idle_in_transaction(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND state LIKE 'idle in transaction%'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Transactions abandoned at every point (while `BEGIN` is on the wire, between statements,
/// while `COMMIT` is) never leave a pooled connection inside a transaction: afterwards every
/// connection the pool hands out is outside one, and the server has none idle in one.
#[tokio::test]
async fn abandoned_transactions_never_come_back_out_of_the_pool() {
    let tmp = tempfile::tempdir().unwrap();
    for url in urls(&tmp).await {
        let db = todo_store::connect(&url, 4).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        db.execute_unprepared("CREATE TABLE probe (n INTEGER)")
            .await
            .unwrap();
        for i in 0..1_500u64 {
            let db = db.clone();
            let work = async move {
                let tx = todo_store::db::begin_write(&db).await?;
                tx.execute_unprepared("INSERT INTO probe (n) VALUES (1)")
                    .await?;
                tx.commit().await
            };
            // Cut short after 0 to ~2 ms: lands on every await point of the work.
            let _ = tokio::time::timeout(Duration::from_micros(i * 5 % 2_000), work).await;
        }
        let checks = 40;
        for _ in 0..checks {
            let in_tx = if url.starts_with("postgres") {
                use sea_orm::sqlx::{self, Row as _};
                // A simple query: outside a transaction block it starts its own transaction,
                // so `now()` equals its start; inside a leftover one, `now()` is earlier.
                sqlx::raw_sql("SELECT now() <> statement_timestamp()")
                    .fetch_one(db.get_postgres_connection_pool())
                    .await
                    .unwrap()
                    .try_get::<bool, _>(0)
                    .unwrap()
            } else {
                false
            };
            assert!(
                !in_tx,
                "{url}: the pool handed out a connection inside a transaction"
            );
        }
        if url.starts_with("postgres") {
            assert_eq!(idle_in_transaction(&db).await, 0, "{url}");
        } else {
            // SQLite: a write lock left behind would make this wait and fail.
            let tx = todo_store::db::begin_write(&db).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
}
