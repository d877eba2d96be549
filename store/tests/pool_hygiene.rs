//! The pool never hands out a connection that is still inside a transaction, however the
//! transaction's owner was dropped. SQLite always; PostgreSQL too when `TEST_POSTGRES_URL`
//! names a server (`cargo xtask test` sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transactions_never_come_back_out_of_the_pool() {
    for (_, url, _dir) in todo_store::testing::databases().await {
        let db = todo_store::connect(&url, 4).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        db.execute_unprepared("CREATE TABLE probe (n INTEGER)")
            .await
            .unwrap();
        // Eight clients at once, so abandonments also land while waiting for a connection
        // and while another client's statement holds the write lock.
        let mut clients = tokio::task::JoinSet::new();
        for client in 0..8u64 {
            let db = db.clone();
            clients.spawn(async move {
                for i in 0..300u64 {
                    let db = db.clone();
                    let work = async move {
                        let tx = todo_store::db::begin_write(&db).await?;
                        tx.execute_unprepared("INSERT INTO probe (n) VALUES (1)")
                            .await?;
                        tx.commit().await
                    };
                    // Cut short after 0 to ~2 ms: lands on every await point of the work.
                    let micros = (i * 7 + client * 131) % 2_000;
                    let _ = tokio::time::timeout(Duration::from_micros(micros), work).await;
                }
            });
        }
        clients.join_all().await;
        if url.starts_with("postgres") {
            for _ in 0..40 {
                use sea_orm::sqlx::{self, Row as _};
                // A simple query: outside a transaction block it starts its own transaction,
                // so `now()` equals its start; inside a leftover one, `now()` is earlier.
                let in_tx = sqlx::raw_sql("SELECT now() <> statement_timestamp()")
                    .fetch_one(db.get_postgres_connection_pool())
                    .await
                    .unwrap()
                    .try_get::<bool, _>(0)
                    .unwrap();
                assert!(
                    !in_tx,
                    "{url}: the pool handed out a connection inside a transaction"
                );
            }
            assert_eq!(idle_in_transaction(&db).await, 0, "{url}");
        } else {
            // SQLite: a write lock left behind would make this wait and fail.
            let tx = todo_store::db::begin_write(&db).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
}
