//! In-process harness for `recurring-tasks`: each test gets its own database and port, an
//! in-memory idempotency store, and a `TaskStore` on the same database to arrange tasks and
//! complete them exactly as `chat-api` does. Events are delivered as daprd delivers them: a
//! CloudEvent envelope around the event JSON taken from the outbox, posted over real HTTP.
//!
//! Databases: SQLite always; PostgreSQL too when `TEST_POSTGRES_URL` names a server (an
//! admin URL such as `postgres://postgres@127.0.0.1:15432/postgres`); each test then gets a
//! fresh database there.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use relay::OutboxStore;
use service_kit::testing::Spawned;
use service_kit::{IdempotencyStore, MemoryIdempotencyStore, Secret};
use todo_domain::{
    Description, EventType, Frequency, Priority, Tags, TaskEvent, TaskSnapshot, TimeZone, Title,
    UserId, time::resolve_local,
};
use todo_store::{NewTask, TaskPatch, TaskStore};
use workers::recurring::Settings;

pub use todo_store::testing::databases;

pub fn settings(url: &str) -> Settings {
    Settings {
        service: service_kit::ServiceSettings::for_tests(),
        database_url: Secret::new(url),
        db_max_connections: 4,
        state_store: "statestore".into(),
    }
}

pub struct Worker {
    pub label: &'static str,
    pub served: Spawned,
    /// What the worker dead-lettered.
    pub dead_letters: Arc<workers::dead_letters::RecordingDeadLetters>,
}

impl Worker {
    pub async fn start<I: IdempotencyStore>(
        label: &'static str,
        settings: &Settings,
        keys: Arc<I>,
    ) -> Self {
        let dead_letters = Arc::new(workers::dead_letters::RecordingDeadLetters::default());
        let app = workers::recurring::build_with(settings, keys, dead_letters.clone())
            .await
            .expect("worker builds");
        Self {
            label,
            served: Spawned::service(app),
            dead_letters,
        }
    }

    /// Posts `body` to `path` as daprd would; returns the HTTP status and the `status` answer.
    pub async fn post(&self, path: &str, body: Vec<u8>, token: Option<&str>) -> (u16, String) {
        self.served.post_event(path, body, token).await
    }

    /// Delivers `body` to the subscription route; returns daprd's reading of the answer.
    pub async fn deliver(&self, body: Vec<u8>) -> String {
        let (status, answer) = self.post("/events/task-completed", body, None).await;
        assert_eq!(
            status, 200,
            "[{}] subscription answers 200 with a status",
            self.label
        );
        answer
    }

    pub async fn get(&self, path: &str) -> u16 {
        self.served
            .client
            .get(format!("{}{path}", self.served.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// A worker over a fresh database, plus the stores to arrange and inspect it.
pub struct TestBed {
    pub label: &'static str,
    pub url: String,
    pub worker: Worker,
    pub keys: Arc<MemoryIdempotencyStore>,
    pub tasks: TaskStore,
    pub outbox: OutboxStore,
    _tmp: todo_store::testing::Scratch,
}

/// One test bed per configured database.
pub async fn beds() -> Vec<TestBed> {
    let mut beds = Vec::new();
    for (label, url, tmp) in databases().await {
        let db = todo_store::connect(&url, 4).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        let keys = Arc::new(MemoryIdempotencyStore::new());
        let worker = Worker::start(label, &settings(&url), keys.clone()).await;
        beds.push(TestBed {
            label,
            url,
            worker,
            keys,
            tasks: TaskStore::new(db.clone()),
            outbox: OutboxStore::new(db),
            _tmp: tmp,
        });
    }
    beds
}

pub fn local(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// A task as the API would validate it; `due` is local time in `tz`.
pub fn new_task(
    title: &str,
    recurrence: Option<Frequency>,
    due: Option<&str>,
    tz: &str,
) -> NewTask {
    let time_zone = TimeZone::parse(tz).unwrap();
    let due_local = due.map(local);
    NewTask {
        title: Title::parse(title).unwrap(),
        description: Description::parse("Use the green can").unwrap(),
        priority: Priority::High,
        tags: Tags::parse(&["home", "garden"]).unwrap(),
        due: due_local.map(|l| todo_domain::Due::at(resolve_local(time_zone.tz(), l), l)),
        time_zone,
        recurrence,
        reminders: todo_domain::Reminders::default(),
    }
}

/// Wraps an event as daprd delivers it.
pub fn cloud_event(event: &TaskEvent) -> Vec<u8> {
    service_kit::testing::cloud_event(
        &event.event_id.to_string(),
        "chat-api",
        event.event_type.as_str(),
        "task-events",
        event,
    )
}

impl TestBed {
    pub async fn create(&self, owner: &str, task: NewTask, now: DateTime<Utc>) -> TaskSnapshot {
        self.tasks.create(&user(owner), task, now).await.unwrap()
    }

    /// Completes the task as the API does and returns its `task.completed` event, exactly as
    /// it sits in the outbox for the relay to publish.
    pub async fn complete(&self, owner: &str, id: uuid::Uuid, now: DateTime<Utc>) -> TaskEvent {
        let patch = TaskPatch {
            completed: Some(true),
            ..TaskPatch::default()
        };
        let (_, changed) = self
            .tasks
            .update(&user(owner), id, patch, now)
            .await
            .unwrap();
        assert!(changed, "[{}] completing changed the task", self.label);
        self.events(EventType::TaskCompleted)
            .await
            .into_iter()
            .rfind(|e| e.task.id == id)
            .expect("a task.completed event in the outbox")
    }

    pub async fn reopen(&self, owner: &str, id: uuid::Uuid, now: DateTime<Utc>) {
        let patch = TaskPatch {
            completed: Some(false),
            ..TaskPatch::default()
        };
        self.tasks
            .update(&user(owner), id, patch, now)
            .await
            .unwrap();
    }

    /// Every event of `event_type` in the outbox, in commit order.
    pub async fn events(&self, event_type: EventType) -> Vec<TaskEvent> {
        self.outbox
            .pending(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.event_type == event_type.as_str())
            .map(|p| serde_json::from_str(&p.payload).unwrap())
            .collect()
    }

    /// The live instances of a series, by occurrence.
    pub async fn series(&self, owner: &str, series_id: uuid::Uuid) -> Vec<TaskSnapshot> {
        let q = todo_store::ListQuery {
            limit: 200,
            ..Default::default()
        };
        let mut items: Vec<TaskSnapshot> = self
            .tasks
            .list(&user(owner), &q)
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|t| {
                t.recurrence
                    .as_ref()
                    .is_some_and(|r| r.series_id == series_id)
            })
            .collect();
        items.sort_by_key(|t| t.recurrence.as_ref().map(|r| r.occurrence));
        items
    }

    /// The `task.created` events of a series' instances after the first.
    pub async fn created_followers(&self, series_id: uuid::Uuid) -> Vec<TaskEvent> {
        self.events(EventType::TaskCreated)
            .await
            .into_iter()
            .filter(|e| {
                e.task
                    .recurrence
                    .as_ref()
                    .is_some_and(|r| r.series_id == series_id && r.occurrence > 0)
            })
            .collect()
    }
}
