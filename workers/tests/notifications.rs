//! `notifications` in-process: reminders delivered over HTTP as daprd delivers them (a
//! CloudEvent envelope), notifications recorded by an in-memory sink instead of the log.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::json;
use service_kit::{
    IdempotencyStore, MemoryIdempotencyStore, Secret, ServiceSettings,
    testing::{Spawned, UnreachableStore},
};
use todo_domain::{EventType, Priority, REMINDER_SCHEMA_VERSION, ReminderEvent, TimeZone};
use todo_store::TaskStore;
use uuid::Uuid;
use workers::notifications::{
    NotificationSink, REMINDER_ROUTE, Settings, handler::idempotency_key,
};

/// Records every notification instead of logging it.
#[derive(Default)]
struct RecordingSink(Mutex<Vec<ReminderEvent>>);

impl NotificationSink for RecordingSink {
    fn notify(&self, reminder: &ReminderEvent, _now: DateTime<Utc>) {
        self.0.lock().unwrap().push(reminder.clone());
    }
}

impl RecordingSink {
    fn notified(&self) -> Vec<ReminderEvent> {
        self.0.lock().unwrap().clone()
    }
}

struct Service {
    served: Spawned,
    sink: Arc<RecordingSink>,
}

async fn start<I: IdempotencyStore>(keys: Arc<I>, token: Option<&str>) -> Service {
    start_checking(keys, token, None).await
}

/// As [`start`], checking every reminder against `tasks` first.
async fn start_checking<I: IdempotencyStore>(
    keys: Arc<I>,
    token: Option<&str>,
    tasks: Option<TaskStore>,
) -> Service {
    let settings = Settings {
        service: ServiceSettings {
            app_api_token: token.map(Secret::new),
            ..ServiceSettings::for_tests()
        },
        state_store: "statestore".into(),
        database_url: None,
    };
    let sink = Arc::new(RecordingSink::default());
    let app = workers::notifications::build_with(&settings, keys, sink.clone(), tasks)
        .await
        .unwrap();
    Service {
        served: Spawned::service(app),
        sink,
    }
}

impl Service {
    /// Posts `body` as daprd would; returns the HTTP status and the `status` answer.
    async fn post(&self, path: &str, body: Vec<u8>, token: Option<&str>) -> (u16, String) {
        self.served.post_event(path, body, token).await
    }

    async fn deliver(&self, body: Vec<u8>) -> String {
        let (status, answer) = self.post(REMINDER_ROUTE, body, None).await;
        assert_eq!(status, 200, "a subscription answers 200 with a status");
        answer
    }
}

fn reminder(user: &str, title: &str) -> ReminderEvent {
    let due = DateTime::parse_from_rfc3339("2026-06-01T14:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let task_id = Uuid::now_v7();
    ReminderEvent {
        event_id: ReminderEvent::id_for(task_id, due),
        event_type: EventType::ReminderDue,
        schema_version: REMINDER_SCHEMA_VERSION,
        occurred_at: Utc::now(),
        user_id: user.into(),
        task_id,
        title: title.into(),
        description: "details".into(),
        priority: Priority::Medium,
        tags: vec!["home".into()],
        due_at: due,
        due_date: None,
        time_zone: TimeZone::parse("Europe/Berlin").unwrap(),
        window_seconds: 86_400,
        offset: None,
        fires_at: None,
    }
}

/// Wraps a reminder as daprd delivers it.
fn cloud_event(r: &ReminderEvent) -> Vec<u8> {
    service_kit::testing::cloud_event(
        &r.event_id.to_string(),
        "reminder-cron",
        "reminder.due",
        "reminders",
        r,
    )
}

#[tokio::test]
async fn a_reminder_is_notified_with_its_details() {
    let keys = Arc::new(MemoryIdempotencyStore::new());
    let svc = start(keys.clone(), None).await;
    let r = reminder("alice", "Pay rent");

    assert_eq!(svc.deliver(cloud_event(&r)).await, "SUCCESS");

    assert_eq!(svc.sink.notified(), std::slice::from_ref(&r));
    assert!(keys.seen(&idempotency_key(r.event_id)).await.unwrap());
}

#[tokio::test]
async fn the_same_reminder_delivered_five_times_is_notified_once() {
    let svc = start(Arc::new(MemoryIdempotencyStore::new()), None).await;
    let r = reminder("bob", "Dentist");
    let other = reminder("bob", "Gym");
    for _ in 0..5 {
        assert_eq!(svc.deliver(cloud_event(&r)).await, "SUCCESS");
    }
    assert_eq!(svc.deliver(cloud_event(&other)).await, "SUCCESS");
    let titles: Vec<String> = svc.sink.notified().into_iter().map(|n| n.title).collect();
    assert_eq!(titles, ["Dentist", "Gym"]);
}

#[tokio::test]
async fn without_a_state_store_every_delivery_is_notified_rather_than_lost() {
    let svc = start(Arc::new(UnreachableStore), None).await;
    let r = reminder("carol", "Taxes");
    assert_eq!(svc.deliver(cloud_event(&r)).await, "SUCCESS");
    assert_eq!(svc.deliver(cloud_event(&r)).await, "SUCCESS");
    assert_eq!(
        svc.sink.notified().len(),
        2,
        "no duplicate check possible: a second line, never none"
    );
}

#[tokio::test]
async fn poison_is_dropped_and_a_bad_user_id_retried_without_notifying() {
    let svc = start(Arc::new(MemoryIdempotencyStore::new()), None).await;
    assert_eq!(svc.deliver(b"{not json".to_vec()).await, "DROP");
    let mut wrong_type = serde_json::to_value(reminder("dave", "x")).unwrap();
    wrong_type["event_type"] = json!("task.created");
    assert_eq!(
        svc.deliver(
            serde_json::to_vec(&json!({"specversion": "1.0", "data": wrong_type})).unwrap()
        )
        .await,
        "DROP"
    );
    let mut bad_user = reminder("dave", "x");
    bad_user.user_id = "not/valid".into();
    assert_eq!(svc.deliver(cloud_event(&bad_user)).await, "RETRY");
    let too_big = vec![b' '; 300 * 1024];
    assert_eq!(svc.deliver(too_big).await, "DROP");
    assert!(svc.sink.notified().is_empty());

    // A delivery to a path nobody serves is dead-lettered, not silently dropped by a 404.
    let (status, answer) = svc
        .post(
            "/events/elsewhere",
            cloud_event(&reminder("dave", "x")),
            None,
        )
        .await;
    assert_eq!((status, answer.as_str()), (200, "DROP"));
}

#[tokio::test]
async fn with_an_app_token_only_the_sidecar_may_deliver() {
    let svc = start(
        Arc::new(MemoryIdempotencyStore::new()),
        Some("sidecar-secret"),
    )
    .await;
    let r = reminder("erin", "Call mum");
    for token in [None, Some("wrong")] {
        let (status, _) = svc.post(REMINDER_ROUTE, cloud_event(&r), token).await;
        assert_eq!(status, 401, "token {token:?}");
    }
    assert!(svc.sink.notified().is_empty());
    let (status, answer) = svc
        .post(REMINDER_ROUTE, cloud_event(&r), Some("sidecar-secret"))
        .await;
    assert_eq!((status, answer.as_str()), (200, "SUCCESS"));
    assert_eq!(svc.sink.notified().len(), 1);
    // A path nobody serves answers daprd DROP (dead-letter it); anyone else gets no answer
    // from the subscription at all, as on the event route.
    for token in [None, Some("wrong")] {
        let (status, _) = svc.post("/events/elsewhere", cloud_event(&r), token).await;
        assert_eq!(status, 401, "unknown route, token {token:?}");
    }
    let (status, answer) = svc
        .post("/events/elsewhere", cloud_event(&r), Some("sidecar-secret"))
        .await;
    assert_eq!((status, answer.as_str()), (200, "DROP"));
    for probe in ["/healthz", "/readyz"] {
        let status = svc
            .served
            .client
            .get(format!("{}{probe}", svc.served.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{probe} needs no token");
    }
}

/// With the tasks database at hand, a reminder is logged only while its task is still due at
/// that time: not once the task was completed, deleted or moved, not for another user's
/// task, and not once the account was deleted (spec edge case: events for deleted users are
/// logged and skipped). SQLite always; PostgreSQL too when `TEST_POSTGRES_URL` is set.
#[tokio::test]
async fn reminders_of_tasks_no_longer_due_and_of_deleted_accounts_are_skipped() {
    use todo_domain::{Description, Tags, Title, UserId};
    use todo_store::{NewTask, TaskPatch};

    let due = DateTime::parse_from_rfc3339("2027-06-01T14:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let now = due - chrono::Duration::hours(2);
    for (label, url, _dir) in todo_store::testing::databases().await {
        let db = todo_store::connect(&url, 4).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        let store = TaskStore::new(db);
        let add = async |user: &UserId, title: &str| {
            store
                .create(
                    user,
                    NewTask {
                        title: Title::parse(title).unwrap(),
                        description: Description::default(),
                        priority: Priority::Medium,
                        tags: Tags::default(),
                        due: Some(todo_domain::Due::at(due, due.naive_utc())),
                        time_zone: TimeZone::UTC,
                        recurrence: None,
                        reminders: todo_domain::Reminders::default(),
                    },
                    now,
                )
                .await
                .unwrap()
        };
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let live = add(&alice, "still due").await;
        let done = add(&alice, "completed since").await;
        let gone = add(&alice, "deleted since").await;
        let moved = add(&alice, "moved since").await;
        let bobs = add(&bob, "account deleted since").await;
        let patch = |f: fn(&mut TaskPatch)| {
            let mut p = TaskPatch::default();
            f(&mut p);
            p
        };
        store
            .update(&alice, done.id, patch(|p| p.completed = Some(true)), now)
            .await
            .unwrap();
        store.delete(&alice, gone.id, now).await.unwrap();
        let later = due + chrono::Duration::days(1);
        store
            .update(
                &alice,
                moved.id,
                TaskPatch {
                    due: Some(Some(todo_domain::Due::at(later, later.naive_utc()))),
                    ..TaskPatch::default()
                },
                now,
            )
            .await
            .unwrap();
        store.delete_user(&bob, now).await.unwrap();

        let reminder_of = |user: &str, task: &todo_domain::TaskSnapshot| ReminderEvent {
            event_id: ReminderEvent::id_for(task.id, due),
            task_id: task.id,
            due_at: due,
            title: task.title.clone(),
            ..reminder(user, "ignored")
        };
        let svc = start_checking(
            Arc::new(MemoryIdempotencyStore::new()),
            None,
            Some(store.clone()),
        )
        .await;
        let expected = reminder_of("alice", &live);
        for r in [
            reminder_of("alice", &done),
            reminder_of("alice", &gone),
            reminder_of("alice", &moved),
            reminder_of("bob", &bobs),
            // Someone else's task named in a reminder for mallory.
            reminder_of("mallory", &live),
            expected.clone(),
        ] {
            assert_eq!(svc.deliver(cloud_event(&r)).await, "SUCCESS", "{label}");
        }
        assert_eq!(
            svc.sink.notified(),
            std::slice::from_ref(&expected),
            "{label}: only the reminder of the task still due is logged"
        );
    }
}
