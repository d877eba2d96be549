//! The pool never hands out a connection that is still inside a transaction, however the
//! transaction's owner was dropped. SQLite always; PostgreSQL too when `TEST_POSTGRES_URL`
//! names a server (`cargo xtask test` sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// Whether the connection the pool hands out next is inside a transaction (PostgreSQL). A
/// simple query: outside a transaction block it starts its own transaction, so `now()`
/// equals its start; inside a leftover one, `now()` is earlier.
async fn handed_out_inside_a_transaction(db: &DatabaseConnection) -> bool {
    use sea_orm::sqlx::{self, Row as _};
    sqlx::raw_sql("SELECT now() <> statement_timestamp()")
        .fetch_one(db.get_postgres_connection_pool())
        .await
        .unwrap()
        .try_get::<bool, _>(0)
        .unwrap()
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
                assert!(
                    !handed_out_inside_a_transaction(&db).await,
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

/// A TCP relay in front of PostgreSQL that, while `slow_begin` is set, holds the server's
/// answer to any client message containing `BEGIN` for `hold`. It opens the window in
/// which a caller gives up on a `BEGIN` the server has already received.
async fn slow_begin_proxy(upstream: String, slow_begin: Arc<AtomicBool>, hold: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&upstream).await.unwrap();
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            let hold_next = Arc::new(AtomicBool::new(false));
            let (slow_begin, hold_next_w) = (slow_begin.clone(), hold_next.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = client_rx.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if slow_begin.load(Ordering::SeqCst)
                        && buf[..n]
                            .windows(5)
                            .any(|w| w.eq_ignore_ascii_case(b"BEGIN"))
                    {
                        hold_next_w.store(true, Ordering::SeqCst);
                    }
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = server_rx.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if hold_next.swap(false, Ordering::SeqCst) {
                        tokio::time::sleep(hold).await;
                    }
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// The exact window the driver's own transaction count misses: `BEGIN` sent, its answer not
/// yet back, the caller gone (a client that disconnected, a timeout). The server is then
/// inside a transaction the driver does not know about; the pool must not hand that
/// connection to anyone. PostgreSQL only (SQLite has no wire to hold an answer on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_given_up_while_its_answer_is_on_the_wire_leaves_no_transaction_behind() {
    for (_, url, _dir) in todo_store::testing::databases().await {
        let Some((head, tail)) = url
            .strip_prefix("postgres://")
            .and_then(|r| r.split_once('@'))
        else {
            continue;
        };
        let (upstream, database) = tail.split_once('/').unwrap();
        let direct = todo_store::connect(&url, 2).await.unwrap();
        todo_store::migrate(&direct).await.unwrap();
        let slow_begin = Arc::new(AtomicBool::new(false));
        let port = slow_begin_proxy(
            upstream.to_owned(),
            slow_begin.clone(),
            Duration::from_millis(400),
        )
        .await;
        let proxied = format!("postgres://{head}@127.0.0.1:{port}/{database}");
        let db = todo_store::connect(&proxied, 1).await.unwrap();
        db.execute_unprepared("SELECT 1").await.unwrap();

        slow_begin.store(true, Ordering::SeqCst);
        let gave_up =
            tokio::time::timeout(Duration::from_millis(100), todo_store::db::begin_write(&db))
                .await;
        assert!(gave_up.is_err(), "the held BEGIN answered within 100 ms");
        slow_begin.store(false, Ordering::SeqCst);
        // The pool's release path gets the held answer (400 ms) and settles the connection.
        tokio::time::sleep(Duration::from_millis(1_500)).await;

        assert_eq!(
            idle_in_transaction(&direct).await,
            0,
            "{url}: a connection was left idle in a transaction after a BEGIN given up"
        );
        assert!(
            !handed_out_inside_a_transaction(&db).await,
            "{url}: the pool handed out a connection inside a transaction"
        );
        db.close().await.unwrap();
        direct.close().await.unwrap();
    }
}

/// A session setting as PostgreSQL reports it on a connection of `db`'s pool.
async fn setting(db: &DatabaseConnection, name: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT current_setting('{name}') AS v"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<String>("", "v").unwrap()
}

/// The relay's sessions (single statements: removing published events, scoring failed ones)
/// commit without waiting for the WAL flush and give up on row locks; the requests' sessions
/// wait for the flush, as a task change's commit must. And the relay's pool, which skips
/// the server round trip when a connection comes back, still hands out connections outside
/// any transaction after many statements on both of its connections at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_s_sessions_commit_asynchronously_and_the_requests_do_not() {
    for (backend, url, _dir) in todo_store::testing::databases().await {
        if backend != "postgres" {
            continue;
        }
        let api = todo_store::connect(&url, 2).await.unwrap();
        let relay = todo_store::connect_relay(&url).await.unwrap();
        assert_eq!(setting(&api, "synchronous_commit").await, "on");
        assert_eq!(setting(&relay, "synchronous_commit").await, "off");
        assert_eq!(setting(&relay, "lock_timeout").await, "2s");
        let mut statements = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let relay = relay.clone();
            statements.spawn(async move {
                for _ in 0..50 {
                    relay.execute_unprepared("SELECT 1").await.unwrap();
                }
            });
        }
        statements.join_all().await;
        assert!(!handed_out_inside_a_transaction(&relay).await);
        assert_eq!(idle_in_transaction(&api).await, 0);
    }
}
