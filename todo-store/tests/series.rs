//! Recurring series under ordinary use (edited instances, a changed frequency, late
//! completions), completions the database does not bear out, and an account deleted while
//! writes for it are in flight. SQLite always; PostgreSQL too when `TEST_POSTGRES_URL` names a
//! server (`cargo xtask test` sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use todo_domain::{
    Description, Due, Frequency, Priority, Reminders, Tags, TaskEvent, TaskSnapshot, TimeZone,
    Title, UserId,
};
use todo_store::{NewTask, NextInstance, StoreError, TaskPatch, TaskStore};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn local(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

/// A migrated store on each test database, with its label.
async fn stores() -> Vec<(&'static str, TaskStore, todo_store::testing::Scratch)> {
    let mut out = Vec::new();
    for (label, url, dir) in todo_store::testing::databases().await {
        let db = todo_store::connect(&url, 8).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        out.push((label, TaskStore::new(db), dir));
    }
    out
}

fn new_task(title: &str, due: Option<(&str, &str)>, recurrence: Option<Frequency>) -> NewTask {
    NewTask {
        title: Title::parse(title).unwrap(),
        description: Description::default(),
        priority: Priority::Medium,
        tags: Tags::default(),
        due: due.map(|(instant, wall)| Due::at(at(instant), local(wall))),
        time_zone: TimeZone::UTC,
        recurrence,
        reminders: Reminders::default(),
    }
}

/// A task of `user` due at `due` (instant, local wall time in UTC), created a while before.
async fn add(
    store: &TaskStore,
    user: &UserId,
    title: &str,
    due: (&str, &str),
    recurrence: Option<Frequency>,
) -> TaskSnapshot {
    store
        .create(
            user,
            new_task(title, Some(due), recurrence),
            at("2027-01-01T00:00:00Z"),
        )
        .await
        .unwrap()
}

fn completing() -> TaskPatch {
    TaskPatch {
        completed: Some(true),
        ..TaskPatch::default()
    }
}

/// Completes `task` at `when` and lets the recurring worker's write create the next instance.
async fn complete_and_follow(
    store: &TaskStore,
    user: &UserId,
    task: &TaskSnapshot,
    when: &str,
) -> TaskSnapshot {
    let (done, _) = store
        .update(user, task.id, completing(), at(when))
        .await
        .unwrap();
    match store.create_next_instance(&done, at(when)).await.unwrap() {
        NextInstance::Created(next) => *next,
        other => panic!("no next instance after {}: {other:?}", task.id),
    }
}

#[tokio::test]
async fn restating_an_instance_s_due_time_keeps_the_series_anchor() {
    for (label, store, _dir) in stores().await {
        let user = UserId::parse("rent").unwrap();
        let first = add(
            &store,
            &user,
            "Rent",
            ("2027-01-31T09:00:00Z", "2027-01-31 09:00"),
            Some(Frequency::Monthly),
        )
        .await;
        let feb = complete_and_follow(&store, &user, &first, "2027-01-31T08:00:00Z").await;
        assert_eq!(feb.due_at, Some(at("2027-02-28T09:00:00Z")), "[{label}]");
        // A patch naming the zone the instance already has, as a PUT restates every field.
        let patch = TaskPatch {
            title: Some(Title::parse("Rent2").unwrap()),
            time_zone: Some(TimeZone::UTC),
            due: Some(Some(Due::at(
                at("2027-02-28T09:00:00Z"),
                local("2027-02-28 09:00"),
            ))),
            ..TaskPatch::default()
        };
        let (edited, changed) = store
            .update(&user, feb.id, patch, at("2027-02-01T00:00:00Z"))
            .await
            .unwrap();
        assert!(changed, "[{label}]");
        assert_eq!(
            edited.recurrence.as_ref().and_then(|r| r.anchor),
            Some(local("2027-01-31 09:00")),
            "[{label}] the anchor moved"
        );
        let march = complete_and_follow(&store, &user, &edited, "2027-02-27T10:00:00Z").await;
        assert_eq!(march.due_at, Some(at("2027-03-31T09:00:00Z")), "[{label}]");

        // Really moving the instance moves the series, and the event says so.
        let moved = TaskPatch {
            due: Some(Some(Due::at(
                at("2027-03-30T09:00:00Z"),
                local("2027-03-30 09:00"),
            ))),
            ..TaskPatch::default()
        };
        let (moved, _) = store
            .update(&user, march.id, moved, at("2027-03-01T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(
            moved.recurrence.as_ref().and_then(|r| r.anchor),
            Some(local("2027-03-30 09:00")),
            "[{label}]"
        );
        let fields = last_changed_fields(&store, "rent").await;
        assert!(
            fields.contains(&"due_at".to_owned()) && fields.contains(&"recurrence".to_owned()),
            "[{label}] {fields:?}"
        );
    }
}

#[tokio::test]
async fn a_new_frequency_anchors_the_series_at_the_instance_s_due_time() {
    for (label, store, _dir) in stores().await {
        let user = UserId::parse("freq").unwrap();
        let first = add(
            &store,
            &user,
            "Stretch",
            ("2027-01-31T09:00:00Z", "2027-01-31 09:00"),
            Some(Frequency::Daily),
        )
        .await;
        let feb1 = complete_and_follow(&store, &user, &first, "2027-01-31T08:00:00Z").await;
        assert_eq!(feb1.due_at, Some(at("2027-02-01T09:00:00Z")), "[{label}]");
        let monthly = TaskPatch {
            recurrence: Some(Some(Frequency::Monthly)),
            ..TaskPatch::default()
        };
        let (monthly, _) = store
            .update(&user, feb1.id, monthly, at("2027-01-31T12:00:00Z"))
            .await
            .unwrap();
        assert_eq!(
            monthly.recurrence.as_ref().and_then(|r| r.anchor),
            Some(local("2027-02-01 09:00")),
            "[{label}]"
        );
        let next = complete_and_follow(&store, &user, &monthly, "2027-02-01T08:00:00Z").await;
        assert_eq!(next.due_at, Some(at("2027-03-01T09:00:00Z")), "[{label}]");
        // Switching recurrence on for a one-off task anchors it at its due time as well.
        let once = add(
            &store,
            &user,
            "Once",
            ("2027-05-31T07:00:00Z", "2027-05-31 07:00"),
            None,
        )
        .await;
        let (series, _) = store
            .update(
                &user,
                once.id,
                TaskPatch {
                    recurrence: Some(Some(Frequency::Monthly)),
                    ..TaskPatch::default()
                },
                at("2027-01-02T00:00:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(
            series.recurrence.as_ref().and_then(|r| r.anchor),
            Some(local("2027-05-31 07:00")),
            "[{label}]"
        );
    }
}

#[tokio::test]
async fn a_late_completion_creates_the_next_occurrence_after_it_not_an_overdue_one() {
    for (label, store, _dir) in stores().await {
        let user = UserId::parse("late").unwrap();
        let first = add(
            &store,
            &user,
            "Pills",
            ("2027-03-01T09:00:00Z", "2027-03-01 09:00"),
            Some(Frequency::Daily),
        )
        .await;
        // Three days late, in the afternoon: the next one is tomorrow morning.
        let next = complete_and_follow(&store, &user, &first, "2027-03-04T15:00:00Z").await;
        assert_eq!(next.due_at, Some(at("2027-03-05T09:00:00Z")), "[{label}]");
        assert_eq!(
            next.recurrence.as_ref().map(|r| r.occurrence),
            Some(1),
            "[{label}]"
        );
    }
}

#[tokio::test]
async fn a_completion_the_database_does_not_bear_out_creates_nothing() {
    for (label, store, _dir) in stores().await {
        let user = UserId::parse("victim").unwrap();
        let task = add(
            &store,
            &user,
            "Water",
            ("2027-03-01T09:00:00Z", "2027-03-01 09:00"),
            Some(Frequency::Weekly),
        )
        .await;
        // Forged from the created event: a later version, marked completed, with another
        // title and due time.
        let mut forged = task.clone();
        forged.version = 99;
        forged.completed = true;
        forged.completed_at = Some(at("2027-02-02T00:00:00Z"));
        forged.title = "Send money to mallory".to_owned();
        assert_eq!(
            store
                .create_next_instance(&forged, at("2027-02-02T00:00:00Z"))
                .await
                .unwrap(),
            NextInstance::Unconfirmed,
            "[{label}] a version the task never had"
        );
        forged.version = task.version;
        assert_eq!(
            store
                .create_next_instance(&forged, at("2027-02-02T00:00:00Z"))
                .await
                .unwrap(),
            NextInstance::Unconfirmed,
            "[{label}] a completion the task never had"
        );
        assert_eq!(store.count(&user).await.unwrap(), 1, "[{label}]");

        // A real completion, reported with a doctored snapshot: the instance is built from
        // the database's row.
        let (done, _) = store
            .update(&user, task.id, completing(), at("2027-02-03T00:00:00Z"))
            .await
            .unwrap();
        let mut doctored = done.clone();
        doctored.title = "Send money to mallory".to_owned();
        doctored.due_at = Some(at("2030-01-01T00:00:00Z"));
        let NextInstance::Created(next) = store
            .create_next_instance(&doctored, at("2027-02-03T00:00:00Z"))
            .await
            .unwrap()
        else {
            panic!("[{label}] the real completion created nothing");
        };
        assert_eq!(next.title, "Water", "[{label}]");
        assert_eq!(next.due_at, Some(at("2027-03-08T09:00:00Z")), "[{label}]");
    }
}

/// The changed fields of the newest `task.updated` event of `user`.
async fn last_changed_fields(store: &TaskStore, user: &str) -> Vec<String> {
    let db = store.db();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT payload FROM outbox WHERE user_id = '{user}' AND event_type = 'task.updated' ORDER BY id DESC LIMIT 1"
            ),
        ))
        .await
        .unwrap()
        .expect("an update event");
    let payload: String = row.try_get("", "payload").unwrap();
    let event: serde_json::Value = serde_json::from_str(&payload).unwrap();
    serde_json::from_value(event["changed_fields"].clone()).unwrap()
}

async fn scalar(db: &DatabaseConnection, sql: String) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// 3,000 tasks, then the account deleted while 60 creates for it are in flight: once the
/// deletion has answered, the user has no live task, every task ever created has its
/// `task.deleted`, and every later write is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_during_an_account_deletion_do_not_survive_it() {
    for (label, store, _dir) in stores().await {
        let user = UserId::parse("leaving").unwrap();
        let now = at("2027-01-01T00:00:00Z");
        for i in 0..3_000 {
            store
                .create(&user, new_task(&format!("t{i}"), None, None), now)
                .await
                .unwrap();
        }
        let mut writers = tokio::task::JoinSet::new();
        for i in 0..60 {
            let store = store.clone();
            let user = user.clone();
            writers.spawn(async move {
                // Spread over the deletion's run.
                tokio::time::sleep(std::time::Duration::from_millis(i * 5)).await;
                store
                    .create(&user, new_task(&format!("late{i}"), None, None), now)
                    .await
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let deleted = store.delete_user(&user, now).await.unwrap();
        // Whatever was still running when the deletion answered.
        let mut created = 0;
        let mut refused = 0;
        while let Some(result) = writers.join_next().await {
            match result.unwrap() {
                Ok(_) => created += 1,
                Err(StoreError::UserDeleted) => refused += 1,
                Err(e) => panic!("[{label}] a create failed otherwise: {e}"),
            }
        }
        assert_eq!(created + refused, 60, "[{label}]");
        assert_eq!(
            store.count(&user).await.unwrap(),
            0,
            "[{label}] live tasks survived"
        );
        let db = store.db();
        let tasks = scalar(
            db,
            "SELECT count(*) AS n FROM tasks WHERE user_id = 'leaving'".into(),
        )
        .await;
        let gone = scalar(
            db,
            "SELECT count(*) AS n FROM outbox WHERE user_id = 'leaving' AND event_type = 'task.deleted'".into(),
        )
        .await;
        assert_eq!(gone, tasks, "[{label}] every task has its task.deleted");
        assert!(deleted >= 3_000, "[{label}] {deleted}");
        assert!(
            store
                .create(&user, new_task("after", None, None), now)
                .await
                .is_err(),
            "[{label}] a write after the deletion succeeded"
        );
        eprintln!(
            "[{label}] deleted {deleted}; in flight: {created} created (and deleted), {refused} refused"
        );
    }
}

/// An account deletion writes one `task.deleted` per live task, in the order the tasks were
/// created, each carrying the task as deleted (its next version, the deletion's time), over
/// more tasks than one outbox statement takes; tasks deleted before are left alone.
#[tokio::test]
async fn an_account_deletion_writes_each_live_task_s_deletion_in_creation_order() {
    for (label, store, _dir) in stores().await {
        let user = UserId::parse("closing").unwrap();
        let mut created = Vec::new();
        for i in 0..2_100i64 {
            let when = at("2027-01-01T00:00:00Z") + chrono::Duration::milliseconds(i);
            let task = store
                .create(&user, new_task(&format!("t{i}"), None, None), when)
                .await
                .unwrap();
            created.push(task);
        }
        // One edited (version 2), one already deleted (no second event).
        let edited = created[7].id;
        let renamed = TaskPatch {
            title: Some(Title::parse("renamed").unwrap()),
            ..TaskPatch::default()
        };
        store
            .update(&user, edited, renamed, at("2027-01-02T00:00:00Z"))
            .await
            .unwrap();
        let gone = created[9].id;
        store
            .delete(&user, gone, at("2027-01-02T00:00:00Z"))
            .await
            .unwrap();

        let now = at("2027-01-03T00:00:00Z");
        let deleted = store.delete_user(&user, now).await.unwrap();
        assert_eq!(deleted, 2_099, "[{label}]");

        let rows = store
            .db()
            .query_all_raw(Statement::from_string(
                store.db().get_database_backend(),
                "SELECT payload FROM outbox WHERE user_id = 'closing' \
                 AND event_type = 'task.deleted' ORDER BY id"
                    .to_owned(),
            ))
            .await
            .unwrap();
        let events: Vec<TaskEvent> = rows
            .iter()
            .map(|r| serde_json::from_str(&r.try_get::<String>("", "payload").unwrap()).unwrap())
            .collect();
        // The single deletion's event first, then the account's, in creation order.
        assert_eq!(events.len(), 2_100, "[{label}]");
        assert_eq!(events[0].task.id, gone, "[{label}]");
        let expected: Vec<_> = created
            .iter()
            .map(|t| t.id)
            .filter(|id| *id != gone)
            .collect();
        let ids: Vec<_> = events[1..].iter().map(|e| e.task.id).collect();
        assert_eq!(ids, expected, "[{label}] in creation order");
        for e in &events[1..] {
            let version = if e.task.id == edited { 3 } else { 2 };
            assert_eq!(e.task.version, version, "[{label}] {}", e.task.id);
            assert_eq!(e.task.updated_at, now, "[{label}]");
            assert_eq!(e.occurred_at, now, "[{label}]");
            assert_eq!(e.user_id, "closing", "[{label}]");
        }
        assert_eq!(
            events[1..]
                .iter()
                .find(|e| e.task.id == edited)
                .map(|e| e.task.title.as_str()),
            Some("renamed"),
            "[{label}]"
        );
        let distinct: std::collections::HashSet<_> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(distinct.len(), events.len(), "[{label}] one event id each");
        // The rows say the same as the events.
        let deleted_rows = scalar(
            store.db(),
            "SELECT count(*) AS n FROM tasks WHERE user_id = 'closing' AND deleted_at IS NOT NULL AND version >= 2".into(),
        )
        .await;
        assert_eq!(deleted_rows, 2_100, "[{label}]");
        assert_eq!(store.count(&user).await.unwrap(), 0, "[{label}]");
    }
}
