//! For the services' in-process tests (feature `testing`): the databases each test runs
//! against. SQLite always, in a temporary directory; PostgreSQL too when `TEST_POSTGRES_URL`
//! names a server (an admin URL such as `postgres://postgres@127.0.0.1:15432/postgres`,
//! which `cargo xtask test` sets), as a fresh database there.

use sea_orm::ConnectionTrait;

/// One database for one test: a label for messages, its URL, and what to remove when the
/// test is done ([`Scratch`]).
pub type TestDatabase = (&'static str, String, Scratch);

/// What a test database leaves behind, removed when dropped: the temporary directory of a
/// SQLite file, or the PostgreSQL database (dropped `WITH (FORCE)`, so connections a test
/// left open do not keep it). Hold it until the test no longer uses the database.
#[derive(Default)]
pub struct Scratch {
    _dir: Option<tempfile::TempDir>,
    /// (admin URL, database name).
    postgres: Option<(String, String)>,
}

impl Scratch {
    /// Removes `dir` when dropped.
    pub fn dir(dir: tempfile::TempDir) -> Scratch {
        Scratch {
            _dir: Some(dir),
            postgres: None,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop is synchronous and may run inside a test's runtime: a thread of its own with a
        // small runtime of its own does the async work.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                // One connection, with crate::connect's 5 s connect and acquire timeouts.
                let db = crate::connect(&admin, 1).await.map_err(|e| e.to_string())?;
                db.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())?;
                db.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("could not drop the test database: {err}");
        }
    }
}

/// Fresh, empty databases (not migrated), each removed when its [`Scratch`] is dropped.
///
/// # Panics
/// When the temporary directory or the PostgreSQL database cannot be created: a test
/// cannot run without them.
#[allow(clippy::expect_used)]
pub async fn databases() -> Vec<TestDatabase> {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let sqlite = format!("sqlite://{}/todo.db", tmp.path().display());
    let mut urls = vec![("sqlite", sqlite, Scratch::dir(tmp))];
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
        let url = format!("{base}/{name}");
        urls.push((
            "postgres",
            url,
            Scratch {
                _dir: None,
                postgres: Some((admin, name)),
            },
        ));
    }
    urls
}
