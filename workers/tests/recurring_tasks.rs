//! `recurring-tasks` in-process, on every configured database: completion events delivered
//! over HTTP as daprd delivers them, the next instance and its outbox event checked in the
//! database.

#![allow(clippy::unwrap_used)]

mod support;

use service_kit::testing::UnreachableStore;
use std::sync::Arc;

use chrono::Duration;
use service_kit::{IdempotencyStore as _, MemoryIdempotencyStore};
use support::*;
use todo_domain::{EventType, Frequency, Priority, TimeZone};
use workers::recurring::handler::idempotency_key;

#[tokio::test]
async fn completing_a_daily_task_creates_one_next_instance_a_day_later_with_its_metadata() {
    for bed in beds().await {
        // The day before Berlin springs forward: 09:00 stays 09:00 local (08:00Z → 07:00Z).
        let first = bed
            .create(
                "alice",
                new_task(
                    "Water plants",
                    Some(Frequency::Daily),
                    Some("2026-03-28 09:00"),
                    "Europe/Berlin",
                ),
                utc("2026-03-27T12:00:00Z"),
            )
            .await;
        let event = bed
            .complete("alice", first.id, utc("2026-03-28T10:00:00Z"))
            .await;

        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");

        let series = bed.series("alice", first.id).await;
        assert_eq!(
            series.len(),
            2,
            "[{}] the completed instance and one next",
            bed.label
        );
        let next = &series[1];
        assert_ne!(next.id, first.id);
        assert_eq!(
            next.due_at,
            Some(utc("2026-03-29T07:00:00Z")),
            "[{}]",
            bed.label
        );
        assert_eq!(next.title, "Water plants");
        assert_eq!(next.description, "Use the green can");
        assert_eq!(next.priority, Priority::High);
        assert_eq!(next.tags, ["home", "garden"]);
        assert_eq!(next.time_zone, TimeZone::parse("Europe/Berlin").unwrap());
        assert_eq!(next.user_id, "alice");
        assert!(!next.completed);
        assert_eq!(next.completed_at, None);
        assert_eq!(next.version, 1);
        let (rec, first_rec) = (
            next.recurrence.as_ref().unwrap(),
            first.recurrence.as_ref().unwrap(),
        );
        assert_eq!(rec.frequency, Frequency::Daily);
        assert_eq!(rec.series_id, first.id);
        assert_eq!(rec.occurrence, 1);
        assert_eq!(rec.anchor, first_rec.anchor);

        let created = bed.created_followers(first.id).await;
        assert_eq!(
            created.len(),
            1,
            "[{}] one task.created for the next instance",
            bed.label
        );
        assert_eq!(created[0].task, *next);
        assert_eq!(created[0].user_id, "alice");
        assert!(
            bed.keys
                .seen(&idempotency_key(event.event_id))
                .await
                .unwrap(),
            "key remembered after the effect"
        );
    }
}

#[tokio::test]
async fn a_weekly_task_comes_back_seven_local_days_later_across_the_dst_change() {
    for bed in beds().await {
        // 18:30 EDT on Thursday; the next Thursday is after New York falls back: 18:30 EST.
        let first = bed
            .create(
                "bob",
                new_task(
                    "Team sync",
                    Some(Frequency::Weekly),
                    Some("2026-10-29 18:30"),
                    "America/New_York",
                ),
                utc("2026-10-01T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("bob", first.id, utc("2026-10-29T23:00:00Z"))
            .await;
        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");
        let series = bed.series("bob", first.id).await;
        assert_eq!(series.len(), 2, "[{}]", bed.label);
        assert_eq!(
            series[1].due_at,
            Some(utc("2026-11-05T23:30:00Z")),
            "[{}]",
            bed.label
        );
    }
}

#[tokio::test]
async fn a_monthly_series_anchored_on_the_31st_goes_to_february_28th_and_back_to_march_31st() {
    for bed in beds().await {
        let first = bed
            .create(
                "carol",
                new_task(
                    "Pay rent",
                    Some(Frequency::Monthly),
                    Some("2027-01-31 09:00"),
                    "Europe/Berlin",
                ),
                utc("2027-01-01T00:00:00Z"),
            )
            .await;
        let done = bed
            .complete("carol", first.id, utc("2027-01-30T10:00:00Z"))
            .await;
        assert_eq!(bed.worker.deliver(cloud_event(&done)).await, "SUCCESS");
        let february = bed.series("carol", first.id).await[1].clone();
        assert_eq!(
            february.due_at,
            Some(utc("2027-02-28T08:00:00Z")),
            "[{}] Feb 28, 09:00 CET",
            bed.label
        );

        // The chain continues from the instance the worker created.
        let done = bed
            .complete("carol", february.id, utc("2027-03-01T10:00:00Z"))
            .await;
        assert_eq!(bed.worker.deliver(cloud_event(&done)).await, "SUCCESS");
        let series = bed.series("carol", first.id).await;
        assert_eq!(series.len(), 3, "[{}]", bed.label);
        let march = &series[2];
        assert_eq!(
            march.due_at,
            Some(utc("2027-03-31T07:00:00Z")),
            "[{}] Mar 31, 09:00 CEST",
            bed.label
        );
        assert_eq!(march.recurrence.as_ref().unwrap().occurrence, 2);
        assert_eq!(bed.created_followers(first.id).await.len(), 2);
    }
}

#[tokio::test]
async fn completing_a_task_that_does_not_recur_creates_nothing() {
    for bed in beds().await {
        let task = bed
            .create(
                "dave",
                new_task("Buy milk", None, Some("2026-05-01 09:00"), "UTC"),
                utc("2026-04-30T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("dave", task.id, utc("2026-05-01T10:00:00Z"))
            .await;
        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");
        assert_eq!(
            bed.tasks.count(&user("dave")).await.unwrap(),
            1,
            "[{}]",
            bed.label
        );
        assert_eq!(
            bed.events(EventType::TaskCreated).await.len(),
            1,
            "[{}] only the original's",
            bed.label
        );
    }
}

#[tokio::test]
async fn the_same_completion_delivered_three_times_creates_exactly_one_instance_and_one_event() {
    for bed in beds().await {
        let first = bed
            .create(
                "erin",
                new_task(
                    "Stretch",
                    Some(Frequency::Daily),
                    Some("2026-06-01 07:00"),
                    "UTC",
                ),
                utc("2026-05-31T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("erin", first.id, utc("2026-06-01T08:00:00Z"))
            .await;
        for _ in 0..3 {
            assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");
        }
        assert_eq!(
            bed.series("erin", first.id).await.len(),
            2,
            "[{}]",
            bed.label
        );
        assert_eq!(
            bed.created_followers(first.id).await.len(),
            1,
            "[{}]",
            bed.label
        );
    }
}

#[tokio::test]
async fn ten_concurrent_deliveries_of_one_completion_create_exactly_one_instance() {
    for bed in beds().await {
        let first = bed
            .create(
                "frank",
                new_task(
                    "Backup",
                    Some(Frequency::Weekly),
                    Some("2026-06-01 22:00"),
                    "Asia/Kolkata",
                ),
                utc("2026-05-31T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("frank", first.id, utc("2026-06-01T17:00:00Z"))
            .await;
        let body = cloud_event(&event);
        let answers = futures_join(&bed, &body, 10).await;
        assert!(
            answers.iter().all(|a| a == "SUCCESS"),
            "[{}] {answers:?}",
            bed.label
        );
        assert_eq!(
            bed.series("frank", first.id).await.len(),
            2,
            "[{}]",
            bed.label
        );
        assert_eq!(
            bed.created_followers(first.id).await.len(),
            1,
            "[{}]",
            bed.label
        );
    }
}

async fn futures_join(bed: &TestBed, body: &[u8], n: usize) -> Vec<String> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let client = bed.worker.served.client.clone();
        let url = format!("{}/events/task-completed", bed.worker.served.base);
        let body = body.to_vec();
        handles.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .header("content-type", "application/cloudevents+json")
                .body(body)
                .send()
                .await
                .unwrap();
            let v: serde_json::Value = res.json().await.unwrap();
            v["status"].as_str().unwrap_or_default().to_owned()
        }));
    }
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn a_redelivery_after_the_idempotency_key_was_lost_still_creates_no_second_instance() {
    for bed in beds().await {
        let first = bed
            .create(
                "gina",
                new_task(
                    "Journal",
                    Some(Frequency::Daily),
                    Some("2026-07-01 21:00"),
                    "Pacific/Apia",
                ),
                utc("2026-06-30T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("gina", first.id, utc("2026-07-01T08:00:00Z"))
            .await;
        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");

        bed.keys.clear();
        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");
        // A replica with a state store of its own that has never seen the event.
        let other = Worker::start(
            bed.label,
            &settings(&bed.url),
            Arc::new(MemoryIdempotencyStore::new()),
        )
        .await;
        assert_eq!(other.deliver(cloud_event(&event)).await, "SUCCESS");

        assert_eq!(
            bed.series("gina", first.id).await.len(),
            2,
            "[{}]",
            bed.label
        );
        assert_eq!(
            bed.created_followers(first.id).await.len(),
            1,
            "[{}]",
            bed.label
        );
    }
}

#[tokio::test]
async fn with_the_state_store_unreachable_the_database_still_allows_one_instance() {
    for bed in beds().await {
        let worker =
            Worker::start(bed.label, &settings(&bed.url), Arc::new(UnreachableStore)).await;
        let first = bed
            .create(
                "hank",
                new_task(
                    "Walk",
                    Some(Frequency::Daily),
                    Some("2026-07-01 06:00"),
                    "UTC",
                ),
                utc("2026-06-30T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("hank", first.id, utc("2026-07-01T07:00:00Z"))
            .await;
        assert_eq!(worker.deliver(cloud_event(&event)).await, "SUCCESS");
        assert_eq!(worker.deliver(cloud_event(&event)).await, "SUCCESS");
        assert_eq!(
            bed.series("hank", first.id).await.len(),
            2,
            "[{}]",
            bed.label
        );
        assert_eq!(
            bed.created_followers(first.id).await.len(),
            1,
            "[{}]",
            bed.label
        );
    }
}

#[tokio::test]
async fn undecodable_bodies_and_unknown_schema_versions_are_dropped() {
    for bed in beds().await {
        let first = bed
            .create(
                "ivan",
                new_task(
                    "Read",
                    Some(Frequency::Daily),
                    Some("2026-07-01 06:00"),
                    "UTC",
                ),
                utc("2026-06-30T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("ivan", first.id, utc("2026-07-01T07:00:00Z"))
            .await;

        let truncated = b"{\"specversion\": \"1.0\", \"data\": {".to_vec();
        assert_eq!(bed.worker.deliver(truncated.clone()).await, "DROP");
        assert_eq!(bed.worker.deliver(b"".to_vec()).await, "DROP");
        let mut future_schema = serde_json::to_value(&event).unwrap();
        future_schema["schema_version"] =
            serde_json::json!(todo_domain::TASK_EVENT_SCHEMA_VERSION + 1);
        let body = serde_json::to_vec(&serde_json::json!({"specversion": "1.0", "type": "task.completed", "data": future_schema})).unwrap();
        assert_eq!(bed.worker.deliver(body.clone()).await, "DROP");
        // An event of another type sent to this route is not ours to handle.
        let created = bed.events(EventType::TaskCreated).await.remove(0);
        assert_eq!(bed.worker.deliver(cloud_event(&created)).await, "DROP");
        // Each dropped delivery went to the dead-letter topic first, as it came.
        assert_eq!(
            bed.worker.dead_letters.sent(),
            vec![truncated, Vec::new(), body.clone(), cloud_event(&created)],
            "[{}] every drop dead-lettered",
            bed.label
        );
        // A drop that cannot be dead-lettered yet is retried, not lost.
        bed.worker.dead_letters.failing(true);
        assert_eq!(bed.worker.deliver(body).await, "RETRY");
        bed.worker.dead_letters.failing(false);
        assert_eq!(bed.worker.dead_letters.sent().len(), 4);

        assert_eq!(
            bed.series("ivan", first.id).await.len(),
            1,
            "[{}] nothing created",
            bed.label
        );
    }
}

#[tokio::test]
async fn a_missing_or_malformed_user_id_is_retried() {
    for bed in beds().await {
        let first = bed
            .create(
                "judy",
                new_task(
                    "Read",
                    Some(Frequency::Daily),
                    Some("2026-07-01 06:00"),
                    "UTC",
                ),
                utc("2026-06-30T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("judy", first.id, utc("2026-07-01T07:00:00Z"))
            .await;
        for bad in [None, Some(""), Some("judy/../admin"), Some("mallory")] {
            let mut v = serde_json::to_value(&event).unwrap();
            match bad {
                None => {
                    v.as_object_mut().unwrap().remove("user_id");
                }
                Some(u) => v["user_id"] = serde_json::json!(u),
            }
            let body = serde_json::to_vec(
                &serde_json::json!({"specversion": "1.0", "type": "task.completed", "data": v}),
            )
            .unwrap();
            assert_eq!(
                bed.worker.deliver(body).await,
                "RETRY",
                "[{}] user_id {bad:?}",
                bed.label
            );
        }
        assert_eq!(
            bed.series("judy", first.id).await.len(),
            1,
            "[{}] nothing created",
            bed.label
        );
    }
}

#[tokio::test]
async fn a_completion_for_a_deleted_user_is_acknowledged_and_creates_nothing() {
    for bed in beds().await {
        let first = bed
            .create(
                "kate",
                new_task(
                    "Gym",
                    Some(Frequency::Daily),
                    Some("2026-07-01 06:00"),
                    "UTC",
                ),
                utc("2026-06-30T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("kate", first.id, utc("2026-07-01T07:00:00Z"))
            .await;
        bed.tasks
            .delete_user(&user("kate"), utc("2026-07-01T07:30:00Z"))
            .await
            .unwrap();

        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");
        assert!(
            bed.created_followers(first.id).await.is_empty(),
            "[{}]",
            bed.label
        );
    }
}

#[tokio::test]
async fn without_a_due_time_the_next_instance_is_due_one_period_after_the_completion() {
    for bed in beds().await {
        let first = bed
            .create(
                "liam",
                new_task("Inbox zero", Some(Frequency::Daily), None, "Asia/Kolkata"),
                utc("2026-05-01T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("liam", first.id, utc("2026-05-10T17:45:00Z"))
            .await;
        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");
        let series = bed.series("liam", first.id).await;
        assert_eq!(series.len(), 2, "[{}]", bed.label);
        assert_eq!(
            series[1].due_at,
            Some(utc("2026-05-11T17:45:00Z")),
            "[{}]",
            bed.label
        );
        // Anchored at the completion's local time (23:15 IST) from now on.
        let anchor = series[1].recurrence.as_ref().unwrap().anchor.unwrap();
        assert_eq!(anchor, local("2026-05-10 23:15"));
    }
}

#[tokio::test]
async fn a_completion_undone_by_a_reopen_creates_nothing_and_a_recompletion_creates_one() {
    for bed in beds().await {
        let first = bed
            .create(
                "mia",
                new_task(
                    "Plan week",
                    Some(Frequency::Weekly),
                    Some("2026-08-03 09:00"),
                    "Australia/Sydney",
                ),
                utc("2026-08-01T00:00:00Z"),
            )
            .await;
        let t0 = utc("2026-08-03T00:00:00Z");
        let stale = bed.complete("mia", first.id, t0).await;
        bed.reopen("mia", first.id, t0 + Duration::minutes(1)).await;

        // The first completion arrives after the reopen: it no longer stands.
        assert_eq!(bed.worker.deliver(cloud_event(&stale)).await, "SUCCESS");
        assert_eq!(
            bed.series("mia", first.id).await.len(),
            1,
            "[{}] reopened: no next instance",
            bed.label
        );

        let again = bed
            .complete("mia", first.id, t0 + Duration::minutes(2))
            .await;
        assert_ne!(again.event_id, stale.event_id);
        assert_eq!(bed.worker.deliver(cloud_event(&again)).await, "SUCCESS");
        assert_eq!(bed.worker.deliver(cloud_event(&stale)).await, "SUCCESS");
        let series = bed.series("mia", first.id).await;
        assert_eq!(
            series.len(),
            2,
            "[{}] one next instance for two completions",
            bed.label
        );
        assert_eq!(
            series[1].due_at,
            Some(utc("2026-08-09T23:00:00Z")),
            "[{}] Aug 10, 09:00 AEST",
            bed.label
        );
        assert_eq!(bed.created_followers(first.id).await.len(), 1);
    }
}

#[tokio::test]
async fn a_completion_that_still_stands_creates_the_instance_even_after_later_edits() {
    for bed in beds().await {
        let first = bed
            .create(
                "nora",
                new_task(
                    "Laundry",
                    Some(Frequency::Daily),
                    Some("2026-08-03 19:00"),
                    "UTC",
                ),
                utc("2026-08-01T00:00:00Z"),
            )
            .await;
        // Nanoseconds, as a clock gives them: the database keeps less.
        let event = bed
            .complete("nora", first.id, utc("2026-08-03T20:00:00.123456789Z"))
            .await;
        // Deleted after completing it (a "clear completed" sweep) before the event arrived.
        bed.tasks
            .delete(&user("nora"), first.id, utc("2026-08-03T20:01:00Z"))
            .await
            .unwrap();

        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");
        let created = bed.created_followers(first.id).await;
        assert_eq!(created.len(), 1, "[{}]", bed.label);
        assert_eq!(created[0].task.due_at, Some(utc("2026-08-04T19:00:00Z")));
    }
}

#[tokio::test]
async fn a_raw_task_event_without_an_envelope_is_accepted() {
    for bed in beds().await {
        let first = bed
            .create(
                "omar",
                new_task(
                    "Meditate",
                    Some(Frequency::Daily),
                    Some("2026-09-01 06:00"),
                    "UTC",
                ),
                utc("2026-08-31T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("omar", first.id, utc("2026-09-01T07:00:00Z"))
            .await;
        assert_eq!(
            bed.worker
                .deliver(serde_json::to_vec(&event).unwrap())
                .await,
            "SUCCESS"
        );
        assert_eq!(
            bed.series("omar", first.id).await.len(),
            2,
            "[{}]",
            bed.label
        );
    }
}

#[tokio::test]
async fn a_database_failure_is_retried() {
    for bed in beds().await {
        let first = bed
            .create(
                "pat",
                new_task(
                    "Water",
                    Some(Frequency::Daily),
                    Some("2026-09-01 06:00"),
                    "UTC",
                ),
                utc("2026-08-31T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("pat", first.id, utc("2026-09-01T07:00:00Z"))
            .await;
        // A worker whose database has no schema: every query fails.
        let tmp = tempfile::tempdir().unwrap();
        let broken = settings(&format!("sqlite://{}/empty.db", tmp.path().display()));
        let worker =
            Worker::start(bed.label, &broken, Arc::new(MemoryIdempotencyStore::new())).await;
        assert_eq!(worker.get("/readyz").await, 503);
        assert_eq!(worker.deliver(cloud_event(&event)).await, "RETRY");
        assert_eq!(bed.worker.get("/readyz").await, 200);
        assert_eq!(bed.worker.get("/healthz").await, 200);
    }
}

#[tokio::test]
async fn with_an_app_token_the_event_routes_require_the_sidecars_header() {
    for bed in beds().await {
        let mut with_token = settings(&bed.url);
        with_token.service.app_api_token = Some(service_kit::Secret::new("sidecar-secret"));
        let worker = Worker::start(
            bed.label,
            &with_token,
            Arc::new(MemoryIdempotencyStore::new()),
        )
        .await;
        let first = bed
            .create(
                "quinn",
                new_task(
                    "Water",
                    Some(Frequency::Daily),
                    Some("2026-09-01 06:00"),
                    "UTC",
                ),
                utc("2026-08-31T00:00:00Z"),
            )
            .await;
        let event = bed
            .complete("quinn", first.id, utc("2026-09-01T07:00:00Z"))
            .await;

        assert_eq!(
            worker
                .post("/events/task-completed", cloud_event(&event), None)
                .await
                .0,
            401
        );
        assert_eq!(
            worker
                .post("/events/task-completed", cloud_event(&event), Some("wrong"))
                .await
                .0,
            401
        );
        assert_eq!(
            worker
                .post("/events/ignored", cloud_event(&event), None)
                .await
                .0,
            401
        );
        // An unknown path dead-letters what it gets, so it needs the token too.
        for token in [None, Some("wrong")] {
            assert_eq!(
                worker
                    .post("/events/nowhere", b"forged".to_vec(), token)
                    .await
                    .0,
                401
            );
        }
        assert!(
            worker.dead_letters.sent().is_empty(),
            "[{}] nothing dead-lettered without the token",
            bed.label
        );
        assert_eq!(
            worker
                .post(
                    "/events/nowhere",
                    b"misrouted".to_vec(),
                    Some("sidecar-secret")
                )
                .await,
            (200, "DROP".into())
        );
        assert_eq!(worker.dead_letters.sent(), vec![b"misrouted".to_vec()]);
        assert_eq!(
            bed.series("quinn", first.id).await.len(),
            1,
            "[{}] nothing without the token",
            bed.label
        );
        assert_eq!(
            worker
                .post(
                    "/events/task-completed",
                    cloud_event(&event),
                    Some("sidecar-secret")
                )
                .await,
            (200, "SUCCESS".into())
        );
        assert_eq!(
            bed.series("quinn", first.id).await.len(),
            2,
            "[{}]",
            bed.label
        );
        assert_eq!(worker.get("/healthz").await, 200, "probes need no token");
    }
}

#[tokio::test]
async fn other_event_types_are_acknowledged_and_unknown_routes_dead_letter() {
    for bed in beds().await {
        let task = bed
            .create(
                "rita",
                new_task("Call mum", None, None, "UTC"),
                utc("2026-08-31T00:00:00Z"),
            )
            .await;
        let created = bed
            .events(EventType::TaskCreated)
            .await
            .into_iter()
            .find(|e| e.task.id == task.id)
            .unwrap();
        assert_eq!(
            bed.worker
                .post("/events/ignored", cloud_event(&created), None)
                .await,
            (200, "SUCCESS".into())
        );
        assert_eq!(
            bed.worker
                .post("/events/nowhere", cloud_event(&created), None)
                .await,
            (200, "DROP".into())
        );
        assert_eq!(
            bed.worker.dead_letters.sent(),
            vec![cloud_event(&created)],
            "[{}] a misrouted delivery is dead-lettered",
            bed.label
        );
    }
}

/// Readiness makes the write the handler needs: a database that answers reads but refuses
/// writes (a read-only replica after a failover, a read-only file) is not ready, so daprd
/// pauses the subscription instead of delivering completions that can only fail. SQLite
/// opened read-only; PostgreSQL with `default_transaction_read_only` on the database.
#[tokio::test]
async fn a_database_that_refuses_writes_is_not_ready() {
    use sea_orm::ConnectionTrait as _;
    for (label, url, _tmp) in support::databases().await {
        let db = todo_store::connect(&url, 2).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        let read_only_url = if url.starts_with("sqlite:") {
            format!("{url}?mode=ro")
        } else {
            let name = url.rsplit('/').next().unwrap().to_owned();
            db.execute_unprepared(&format!(
                "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
            ))
            .await
            .unwrap();
            url.clone()
        };
        let worker = Worker::start(
            label,
            &settings(&read_only_url),
            Arc::new(MemoryIdempotencyStore::new()),
        )
        .await;
        assert_eq!(worker.get("/readyz").await, 503, "[{label}] read only");
        if !url.starts_with("sqlite:") {
            let name = url.rsplit('/').next().unwrap().to_owned();
            db.execute_unprepared(&format!(
                "SET default_transaction_read_only = off; \
                 ALTER DATABASE \"{name}\" RESET default_transaction_read_only"
            ))
            .await
            .unwrap();
        }
        let writable = Worker::start(
            label,
            &settings(&url),
            Arc::new(MemoryIdempotencyStore::new()),
        )
        .await;
        assert_eq!(writable.get("/readyz").await, 200, "[{label}] writable");
    }
}

#[tokio::test]
async fn the_next_instances_event_continues_the_completions_trace() {
    for bed in beds().await {
        let first = bed
            .create(
                "alice",
                new_task(
                    "Traced",
                    Some(Frequency::Daily),
                    Some("2026-05-04 09:00"),
                    "UTC",
                ),
                utc("2026-05-01T12:00:00Z"),
            )
            .await;
        let event = bed
            .complete("alice", first.id, utc("2026-05-04T10:00:00Z"))
            .await;
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut delivery: serde_json::Value = serde_json::from_slice(&cloud_event(&event)).unwrap();
        delivery["traceparent"] = format!("00-{trace}-00f067aa0ba902b7-01").into();
        assert_eq!(
            bed.worker
                .deliver(serde_json::to_vec(&delivery).unwrap())
                .await,
            "SUCCESS"
        );
        let created: Vec<_> = bed
            .outbox
            .pending(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.event_type == EventType::TaskCreated.as_str())
            .collect();
        let next = created.last().unwrap();
        let tp = next.traceparent.as_deref().unwrap();
        assert!(
            tp.starts_with(&format!("00-{trace}-")),
            "[{}] the next instance's event belongs to the completion's trace: {tp}",
            bed.label
        );
        assert!(!tp.contains("00f067aa0ba902b7"), "with a span of its own");

        // Without a trace context (or with daprd's all-zero one), a new trace.
        let second = bed
            .create(
                "alice",
                new_task(
                    "Untraced",
                    Some(Frequency::Daily),
                    Some("2026-05-04 09:00"),
                    "UTC",
                ),
                utc("2026-05-01T12:00:00Z"),
            )
            .await;
        let event = bed
            .complete("alice", second.id, utc("2026-05-04T10:00:00Z"))
            .await;
        assert_eq!(bed.worker.deliver(cloud_event(&event)).await, "SUCCESS");
        let created = bed.outbox.pending(0, 10_000).await.unwrap();
        let fresh = created.last().unwrap().traceparent.as_deref().unwrap();
        assert!(!fresh.contains(trace) && fresh.len() == 55, "{fresh}");
    }
}
