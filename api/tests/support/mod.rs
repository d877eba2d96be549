//! In-process harness: each test gets its own database and port, and a publisher that
//! records what the relay publishes (the publish boundary; daprd itself is covered by e2e).
//!
//! Databases: SQLite always; PostgreSQL too when `TEST_POSTGRES_URL` names a server (an
//! admin URL such as `postgres://postgres@127.0.0.1:15432/postgres`); each test then gets a
//! fresh database there. `cargo xtask test` sets it.

#![allow(dead_code, clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use api::{Application, Settings, auth::JwtKeys};
use relay::RelayConfig;
use serde_json::Value;
use service_kit::{Secret, testing::Spawned};
use todo_domain::{TaskEvent, UserId};

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Records what the relay publishes, as task events (the publish boundary).
pub type RecordingPublisher = service_kit::testing::RecordingPublisher<TaskEvent>;
/// A published event as the relay handed it over.
pub type Published = service_kit::testing::Published<TaskEvent>;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub publisher: Arc<RecordingPublisher>,
    pub db_label: &'static str,
    /// The app's database, for assertions on what it wrote.
    pub db: sea_orm::DatabaseConnection,
    keys: JwtKeys,
    // Dropped before `_tmp`: the server stops before its database goes.
    _served: Spawned,
    _tmp: todo_store::testing::Scratch,
}

pub use todo_store::testing::databases as database_urls;

pub async fn spawn_app(
    label: &'static str,
    url: String,
    tmp: todo_store::testing::Scratch,
) -> TestApp {
    let settings = Settings {
        service: service_kit::ServiceSettings::for_tests(),
        database_url: Secret::new(url.clone()),
        db_max_connections: 4,
        migrate: true,
        jwt_secret: Secret::new(SECRET),
        relay_enabled: true,
        relay: RelayConfig {
            sweep_interval: Duration::from_millis(50),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            ..RelayConfig::default()
        },
        chat: api::chat::ChatSettings::default(),
    };
    let db = todo_store::connect(&url, 1)
        .await
        .expect("a test connection to the app's database");
    let publisher = Arc::new(RecordingPublisher::default());
    let app = Application::build_with_publisher(&settings, publisher.clone())
        .await
        .expect("app builds");
    let served = Spawned::run(app.port(), |stop| app.run_until(stop));
    TestApp {
        base: served.base.clone(),
        client: served.client.clone(),
        publisher,
        db_label: label,
        db,
        keys: JwtKeys::new(&Secret::new(SECRET)),
        _served: served,
        _tmp: tmp,
    }
}

/// One app per configured database.
pub async fn apps() -> Vec<TestApp> {
    let mut apps = Vec::new();
    for (label, url, tmp) in database_urls().await {
        apps.push(spawn_app(label, url, tmp).await);
    }
    apps
}

impl TestApp {
    pub fn token(&self, user: &str) -> String {
        self.keys
            .mint(
                &UserId::parse(user).unwrap(),
                jsonwebtoken::get_current_timestamp(),
                600,
            )
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request as `user`; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(self.token(user));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        )
    }

    pub async fn create(&self, user: &str, body: Value) -> Value {
        let (status, task) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/{user}/tasks"),
                user,
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "[{}] create failed: {task}", self.db_label);
        task
    }

    /// Waits until the relay has published at least `n` events; returns them all.
    pub async fn published(&self, n: usize) -> Vec<Published> {
        for _ in 0..200 {
            let events = self.publisher.published();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let events = self.publisher.published();
        panic!(
            "[{}] expected {n} published events, got {}",
            self.db_label,
            events.len()
        );
    }

    pub fn published_now(&self) -> Vec<Published> {
        self.publisher.published()
    }

    /// How many events the API wrote for `user` (every user's with `None`): those still in
    /// the outbox and those the relay published (a published event's row is deleted).
    pub async fn outbox_rows(&self, user: Option<&str>) -> i64 {
        use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
        let backend = self.db.get_database_backend();
        let statement = match (user, backend) {
            (None, _) => Statement::from_string(backend, "SELECT event_id FROM outbox"),
            (Some(user), DbBackend::Postgres) => Statement::from_sql_and_values(
                backend,
                "SELECT event_id FROM outbox WHERE user_id = $1",
                [user.into()],
            ),
            (Some(user), _) => Statement::from_sql_and_values(
                backend,
                "SELECT event_id FROM outbox WHERE user_id = ?",
                [user.into()],
            ),
        };
        // The rows first, then what was published: an event published and deleted in
        // between is in the second.
        let mut events: std::collections::HashSet<uuid::Uuid> = self
            .db
            .query_all_raw(statement)
            .await
            .expect("reading outbox rows")
            .iter()
            .map(|row| row.try_get::<uuid::Uuid>("", "event_id").expect("an id"))
            .collect();
        events.extend(
            self.publisher
                .published()
                .into_iter()
                .filter(|p| user.is_none_or(|u| p.partition_key == u))
                .map(|p| p.event_id),
        );
        events.len() as i64
    }

    /// Waits until the relay has called the publisher at least `n` times (failed calls
    /// included).
    pub async fn publish_calls(&self, n: usize) -> usize {
        for _ in 0..200 {
            let calls = self.publisher.attempts();
            if calls >= n {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "[{}] the relay called the publisher {} times, expected at least {n}",
            self.db_label,
            self.publisher.attempts()
        );
    }
}
