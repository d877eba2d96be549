//! In-process harness for `reminder-cron`: each test bed is a fresh, migrated database with a
//! writable `TaskStore` to arrange tasks exactly as `chat-api` writes them, an in-memory
//! claim store, and a publisher that records what it was given (or fails on demand).
//! Scanners read through their own read-only connection, as the service does.
//!
//! Databases: SQLite always; PostgreSQL too when `TEST_POSTGRES_URL` names a server (an
//! admin URL such as `postgres://postgres@127.0.0.1:15432/postgres`); each bed then gets a
//! fresh database there.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reminder_cron::{ScanSettings, Scanner};
use service_kit::{IdempotencyStore, MemoryIdempotencyStore, Publisher};
use todo_domain::{
    Description, Priority, ReminderEvent, Tags, TaskSnapshot, TimeZone, Title, UserId,
};
use todo_store::{NewTask, TaskPatch, TaskStore};

pub use todo_store::testing::databases;

/// Records what the scanner publishes, as reminder events; fails, holds or slows publishes on
/// demand.
pub type RecordingPublisher = service_kit::testing::RecordingPublisher<ReminderEvent>;
/// One published reminder, as the publisher was given it.
pub type Sent = service_kit::testing::Published<ReminderEvent>;

pub struct Bed {
    pub label: &'static str,
    pub url: String,
    /// Writable: arranges tasks as `chat-api` does.
    pub tasks: TaskStore,
    pub keys: Arc<MemoryIdempotencyStore>,
    pub publisher: Arc<RecordingPublisher>,
    _tmp: todo_store::testing::Scratch,
}

/// One bed per configured database.
pub async fn beds() -> Vec<Bed> {
    let mut beds = Vec::new();
    for (label, url, tmp) in databases().await {
        let db = todo_store::connect(&url, 4).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        beds.push(Bed {
            label,
            url,
            tasks: TaskStore::new(db),
            keys: Arc::new(MemoryIdempotencyStore::new()),
            publisher: Arc::new(RecordingPublisher::default()),
            _tmp: tmp,
        });
    }
    beds
}

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// The instant every test scans at (the scanner takes `now` as an argument).
pub fn now() -> DateTime<Utc> {
    utc("2026-06-01T12:00:00Z")
}

impl Bed {
    /// A scanner (a replica) over its own read-only connection, sharing this bed's claim
    /// store and publisher.
    pub async fn scanner(
        &self,
        settings: ScanSettings,
    ) -> Scanner<RecordingPublisher, MemoryIdempotencyStore> {
        self.scanner_with(settings, self.publisher.clone(), self.keys.clone())
            .await
    }

    pub async fn scanner_with<P: Publisher, I: IdempotencyStore>(
        &self,
        settings: ScanSettings,
        publisher: Arc<P>,
        keys: Arc<I>,
    ) -> Scanner<P, I> {
        let db = todo_store::connect_read_only(&self.url, 2).await.unwrap();
        Scanner::new(TaskStore::new(db), publisher, keys, settings)
    }

    /// A task of `owner` due at `due` (none if `None`), created a week before [`now`].
    pub async fn task(&self, owner: &str, title: &str, due: Option<DateTime<Utc>>) -> TaskSnapshot {
        let new = NewTask {
            title: Title::parse(title).unwrap(),
            description: Description::parse("Bring the forms").unwrap(),
            priority: Priority::Urgent,
            tags: Tags::parse(&["work", "tax"]).unwrap(),
            due: due.map(|d| {
                todo_domain::Due::at(d, d.with_timezone(&chrono_tz::Europe::Berlin).naive_local())
            }),
            time_zone: TimeZone::parse("Europe/Berlin").unwrap(),
            recurrence: None,
            reminders: todo_domain::Reminders::default(),
        };
        self.tasks
            .create(&user(owner), new, now() - chrono::Duration::days(7))
            .await
            .unwrap()
    }

    pub async fn complete(&self, owner: &str, id: uuid::Uuid) {
        let patch = TaskPatch {
            completed: Some(true),
            ..TaskPatch::default()
        };
        self.tasks
            .update(&user(owner), id, patch, now())
            .await
            .unwrap();
    }

    pub async fn move_due(&self, owner: &str, id: uuid::Uuid, due: DateTime<Utc>) {
        let local = due.with_timezone(&chrono_tz::Europe::Berlin).naive_local();
        let patch = TaskPatch {
            due: Some(Some(todo_domain::Due::at(due, local))),
            ..TaskPatch::default()
        };
        self.tasks
            .update(&user(owner), id, patch, now())
            .await
            .unwrap();
    }

    pub async fn delete(&self, owner: &str, id: uuid::Uuid) {
        self.tasks.delete(&user(owner), id, now()).await.unwrap();
    }

    /// The ids of the tasks reminded so far, in publishing order.
    pub fn reminded(&self) -> Vec<uuid::Uuid> {
        self.publisher
            .published()
            .iter()
            .map(|s| s.event.task_id)
            .collect()
    }
}
