//! For the services' in-process tests (feature `testing`): the databases each test runs
//! against. SQLite always, in a temporary directory; PostgreSQL too when `TEST_POSTGRES_URL`
//! names a server (an admin URL such as `postgres://postgres@127.0.0.1:15432/postgres`,
//! which `cargo xtask test` sets), as a fresh database there.

use sea_orm::ConnectionTrait;

/// One database for one test: a label for messages, its URL, and the temporary directory
/// that holds it (SQLite), removed when dropped.
pub type TestDatabase = (&'static str, String, Option<tempfile::TempDir>);

/// Fresh, empty databases (not migrated).
///
/// # Panics
/// When the temporary directory or the PostgreSQL database cannot be created: a test
/// cannot run without them.
#[allow(clippy::expect_used)]
pub async fn databases() -> Vec<TestDatabase> {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let sqlite = format!("sqlite://{}/todo.db", tmp.path().display());
    let mut urls = vec![("sqlite", sqlite, Some(tmp))];
    if let Ok(admin) = std::env::var("TEST_POSTGRES_URL")
        && !admin.is_empty()
    {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let db = sea_orm::Database::connect(&admin)
            .await
            .expect("TEST_POSTGRES_URL reachable");
        db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("CREATE DATABASE");
        db.close().await.expect("closing the admin connection");
        let (base, _) = admin
            .rsplit_once('/')
            .expect("TEST_POSTGRES_URL ends with /database");
        urls.push(("postgres", format!("{base}/{name}"), None));
    }
    urls
}
