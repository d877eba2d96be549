//! The reminder scan in-process, on every configured database: which tasks get a reminder,
//! exactly once per (task, due time) across ticks and replicas, and what happens when the
//! broker or the state store fails.

#![allow(clippy::unwrap_used)]

mod support;

use service_kit::testing::UnreachableStore;
use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Duration as Span;
use reminder_cron::{ScanSettings, Tick, reminder_key};
use sea_orm::ConnectionTrait;
use service_kit::IdempotencyStore as _;
use support::*;
use todo_domain::{EventType, Priority, REMINDER_SCHEMA_VERSION, ReminderEvent};

fn settings() -> ScanSettings {
    ScanSettings::default()
}

fn report(tick: Tick) -> reminder_cron::ScanReport {
    match tick {
        Tick::Ran(report) => report,
        Tick::Skipped => panic!("the tick was skipped"),
    }
}

#[tokio::test]
async fn a_task_due_within_the_window_gets_one_reminder_with_its_details() {
    for bed in beds().await {
        let task = bed
            .task("alice", "File the taxes", Some(now() + Span::hours(2)))
            .await;
        let scanner = bed.scanner(settings()).await;

        let first = report(scanner.tick(now()).await);
        assert_eq!(
            (first.due, first.published),
            (1, 1),
            "[{}] {first:?}",
            bed.label
        );

        let sent = bed.publisher.published();
        let s = &sent[0];
        assert_eq!(s.topic, "reminders");
        assert_eq!(s.partition_key, "alice", "keyed by user: per-user order");
        assert_eq!(s.event_type, "reminder.due");
        assert_eq!(
            s.event_id,
            ReminderEvent::id_for(task.id, now() + Span::hours(2))
        );
        let e = &s.event;
        assert_eq!(e.event_id, s.event_id, "the CloudEvent id is the event id");
        assert_eq!(e.event_type, EventType::ReminderDue);
        assert_eq!(e.schema_version, REMINDER_SCHEMA_VERSION);
        assert_eq!((e.user_id.as_str(), e.task_id), ("alice", task.id));
        assert_eq!(e.title, "File the taxes");
        assert_eq!(e.description, "Bring the forms");
        assert_eq!(e.priority, Priority::Urgent);
        assert_eq!(e.tags, ["work", "tax"]);
        assert_eq!(e.due_at, now() + Span::hours(2));
        assert_eq!(e.time_zone.name(), "Europe/Berlin");
        assert_eq!(e.window_seconds, 86_400);
        assert_eq!(e.occurred_at, now());

        // Later ticks, the same process or a restarted one: nothing more.
        let again = report(scanner.tick(now() + Span::seconds(30)).await);
        assert_eq!(
            (again.published, again.already_sent),
            (0, 1),
            "[{}]",
            bed.label
        );
        let restarted = bed.scanner(settings()).await;
        let after_restart = report(restarted.tick(now() + Span::minutes(1)).await);
        assert_eq!(
            (after_restart.published, after_restart.already_sent),
            (0, 1),
            "[{}]",
            bed.label
        );
        assert_eq!(bed.publisher.published().len(), 1, "[{}]", bed.label);
        assert!(
            bed.keys
                .seen(&reminder_key(task.id, e.due_at))
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn only_tasks_between_the_overdue_grace_and_the_window_are_reminded_edges_included() {
    for bed in beds().await {
        let s = settings();
        let window = Span::seconds(86_400);
        let grace = Span::seconds(3_600);
        let cases = [
            ("due in 2 hours", Some(now() + Span::hours(2)), true),
            (
                "due exactly at the window's end",
                Some(now() + window),
                true,
            ),
            (
                "due a second after the window",
                Some(now() + window + Span::seconds(1)),
                false,
            ),
            ("due in 3 days", Some(now() + Span::days(3)), false),
            ("due right now", Some(now()), true),
            (
                "overdue by 10 minutes",
                Some(now() - Span::minutes(10)),
                true,
            ),
            ("overdue by exactly the grace", Some(now() - grace), true),
            (
                "overdue by a second more",
                Some(now() - grace - Span::seconds(1)),
                false,
            ),
            ("overdue by a month", Some(now() - Span::days(30)), false),
            ("no due time", None, false),
        ];
        let mut expected = Vec::new();
        for (title, due, reminded) in cases {
            let t = bed.task("bob", title, due).await;
            if reminded {
                expected.push(title);
            }
            let _ = t;
        }
        let scanner = bed.scanner(s).await;
        let r = report(scanner.tick(now()).await);
        let mut got: Vec<String> = bed
            .publisher
            .published()
            .iter()
            .map(|s| s.event.title.clone())
            .collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "[{}] {r:?}", bed.label);
    }
}

#[tokio::test]
async fn completed_and_deleted_tasks_get_no_reminder() {
    for bed in beds().await {
        let due = Some(now() + Span::hours(1));
        let done = bed.task("carol", "done already", due).await;
        bed.complete("carol", done.id).await;
        let gone = bed.task("carol", "deleted", due).await;
        bed.delete("carol", gone.id).await;
        let live = bed.task("carol", "still open", due).await;

        let scanner = bed.scanner(settings()).await;
        let r = report(scanner.tick(now()).await);
        assert_eq!(r.due, 1, "[{}] {r:?}", bed.label);
        assert_eq!(bed.reminded(), [live.id], "[{}]", bed.label);
    }
}

#[tokio::test]
async fn a_task_whose_due_time_changes_gets_a_reminder_for_the_new_time() {
    for bed in beds().await {
        let task = bed
            .task("dave", "Dentist", Some(now() + Span::hours(3)))
            .await;
        let scanner = bed.scanner(settings()).await;
        assert_eq!(report(scanner.tick(now()).await).published, 1);

        bed.move_due("dave", task.id, now() + Span::hours(5)).await;
        let r = report(scanner.tick(now() + Span::seconds(30)).await);
        assert_eq!(
            r.published, 1,
            "[{}] the new due time is a new reminder: {r:?}",
            bed.label
        );
        assert_eq!(
            report(scanner.tick(now() + Span::seconds(60)).await).published,
            0
        );

        let sent = bed.publisher.published();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].event.due_at, now() + Span::hours(3));
        assert_eq!(sent[1].event.due_at, now() + Span::hours(5));
        assert_ne!(sent[0].event_id, sent[1].event_id);

        // Moving it out of the window and back to the first time reminds of nothing new:
        // that (task, due time) was reminded already.
        bed.move_due("dave", task.id, now() + Span::hours(3)).await;
        assert_eq!(
            report(scanner.tick(now() + Span::seconds(90)).await).published,
            0,
            "[{}]",
            bed.label
        );
    }
}

#[tokio::test]
async fn a_backlog_larger_than_a_page_is_scanned_whole_in_due_time_order_ties_included() {
    for bed in beds().await {
        let mut ids = Vec::new();
        // 23 tasks, several sharing a due time, so pages end in the middle of ties.
        for i in 0..23i64 {
            let due = now() + Span::minutes(10 * (i / 4));
            ids.push((
                due,
                bed.task("erin", &format!("task {i}"), Some(due)).await.id,
            ));
        }
        let scanner = bed
            .scanner(ScanSettings {
                page_size: 5,
                ..settings()
            })
            .await;
        let r = report(scanner.tick(now()).await);
        assert_eq!((r.due, r.published), (23, 23), "[{}] {r:?}", bed.label);

        let reminded = bed.reminded();
        let mut unique = reminded.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 23, "[{}] each task once", bed.label);
        let due_times: Vec<_> = bed
            .publisher
            .published()
            .iter()
            .map(|s| s.event.due_at)
            .collect();
        assert!(
            due_times.windows(2).all(|w| w[0] <= w[1]),
            "[{}] in due-time order",
            bed.label
        );
        let mut expected = ids.clone();
        expected.sort();
        let expected: Vec<_> = expected.into_iter().map(|(_, id)| id).collect();
        assert_eq!(reminded, expected, "[{}] ties broken by id", bed.label);
    }
}

#[tokio::test]
async fn a_failed_publish_releases_the_claim_and_the_next_tick_sends_the_reminder() {
    for bed in beds().await {
        let task = bed
            .task("fred", "Call back", Some(now() + Span::hours(1)))
            .await;
        let key = reminder_key(task.id, now() + Span::hours(1));
        let scanner = bed.scanner(settings()).await;

        bed.publisher.failing(true);
        let r = report(scanner.tick(now()).await);
        assert_eq!((r.published, r.failed), (0, 1), "[{}] {r:?}", bed.label);
        assert!(
            !bed.keys.seen(&key).await.unwrap(),
            "[{}] the claim was released",
            bed.label
        );

        bed.publisher.failing(false);
        let r = report(scanner.tick(now() + Span::seconds(30)).await);
        assert_eq!(r.published, 1, "[{}] {r:?}", bed.label);
        assert_eq!(bed.reminded(), [task.id]);
        assert!(bed.keys.seen(&key).await.unwrap());
    }
}

#[tokio::test]
async fn a_broker_outage_stops_the_scan_early_and_leaves_every_reminder_for_later() {
    for bed in beds().await {
        for i in 0..10 {
            bed.task("gina", &format!("t{i}"), Some(now() + Span::minutes(i)))
                .await;
        }
        let scanner = bed.scanner(settings()).await;
        bed.publisher.failing(true);
        let r = report(scanner.tick(now()).await);
        assert_eq!(
            r.failed,
            u64::from(reminder_cron::scan::MAX_CONSECUTIVE_FAILURES),
            "[{}] {r:?}",
            bed.label
        );
        assert!(
            r.stopped_early
                .as_deref()
                .unwrap_or_default()
                .contains("publish"),
            "{r:?}"
        );
        assert!(bed.keys.is_empty(), "[{}] no claim left behind", bed.label);

        bed.publisher.failing(false);
        assert_eq!(
            report(scanner.tick(now()).await).published,
            10,
            "[{}]",
            bed.label
        );
    }
}

#[tokio::test]
async fn without_a_state_store_nothing_is_published() {
    for bed in beds().await {
        bed.task("hank", "t", Some(now() + Span::hours(1))).await;
        let scanner = bed
            .scanner_with(
                settings(),
                bed.publisher.clone(),
                Arc::new(UnreachableStore),
            )
            .await;
        let r = report(scanner.tick(now()).await);
        assert_eq!((r.published, r.failed), (0, 1), "[{}] {r:?}", bed.label);
        assert!(
            r.stopped_early.is_none(),
            "one failure does not stop a scan"
        );
        assert_eq!(bed.publisher.attempts(), 0, "never published unclaimed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn replicas_scanning_at_the_same_time_publish_one_reminder_per_task_and_due_time() {
    for bed in beds().await {
        let mut tasks = Vec::new();
        for i in 0..40 {
            let owner = ["ivy", "jack", "kim"][i % 3];
            tasks.push(
                bed.task(
                    owner,
                    &format!("t{i}"),
                    Some(now() + Span::minutes(i as i64)),
                )
                .await
                .id,
            );
        }
        // Slow publishes so the replicas' scans interleave task by task.
        bed.publisher.set_delay(Duration::from_millis(2));
        let (a, b, c) = (
            bed.scanner(settings()).await,
            bed.scanner(settings()).await,
            bed.scanner(settings()).await,
        );
        let (ra, rb, rc) = tokio::join!(a.tick(now()), b.tick(now()), c.tick(now()));
        let reports = [report(ra), report(rb), report(rc)];

        let published: u64 = reports.iter().map(|r| r.published).sum();
        assert_eq!(published, 40, "[{}] {reports:?}", bed.label);
        let mut per_event: HashMap<uuid::Uuid, usize> = HashMap::new();
        for s in bed.publisher.published() {
            *per_event.entry(s.event_id).or_default() += 1;
        }
        assert_eq!(per_event.len(), 40);
        assert!(
            per_event.values().all(|n| *n == 1),
            "[{}] {per_event:?}",
            bed.label
        );
        let mut reminded = bed.reminded();
        reminded.sort();
        tasks.sort();
        assert_eq!(reminded, tasks);
    }
}

#[tokio::test]
async fn a_tick_while_a_scan_runs_is_skipped() {
    for bed in beds().await {
        bed.task("liz", "t", Some(now() + Span::hours(1))).await;
        let scanner = Arc::new(bed.scanner(settings()).await);
        let hold = bed.publisher.hold.write().await;
        let running = {
            let scanner = scanner.clone();
            tokio::spawn(async move { scanner.tick(now()).await })
        };
        // Wait until the first scan is inside its publish.
        while bed.publisher.attempts() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(scanner.tick(now()).await, Tick::Skipped, "[{}]", bed.label);
        drop(hold);
        assert_eq!(report(running.await.unwrap()).published, 1);
        assert_eq!(
            report(scanner.tick(now()).await).already_sent,
            1,
            "free again once done"
        );
    }
}

#[tokio::test]
async fn the_scanner_connection_cannot_write() {
    for bed in beds().await {
        bed.task("mia", "t", Some(now())).await;
        let db = todo_store::connect_read_only(&bed.url, 1).await.unwrap();
        let write = db
            .execute_unprepared("UPDATE tasks SET title = 'changed'")
            .await;
        assert!(
            write.is_err(),
            "[{}] a read-only connection refused the write",
            bed.label
        );
        let read = db.execute_unprepared("SELECT 1 FROM tasks").await;
        assert!(read.is_ok(), "[{}] {read:?}", bed.label);
    }
}

/// Claims keys in memory and, at the claim (between the page read and the publish), does
/// to the task what a user might do meanwhile.
struct MeddlingKeys {
    inner: service_kit::MemoryIdempotencyStore,
    meddle: Meddle,
}

type Meddle = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl service_kit::IdempotencyStore for MeddlingKeys {
    async fn seen(&self, key: &str) -> Result<bool, service_kit::StateError> {
        self.inner.seen(key).await
    }
    async fn remember(&self, key: &str, ttl: Duration) -> Result<(), service_kit::StateError> {
        self.inner.remember(key, ttl).await
    }
    async fn claim(&self, key: &str, lease: Duration) -> Result<bool, service_kit::StateError> {
        (self.meddle)().await;
        self.inner.claim(key, lease).await
    }
    async fn confirm(&self, key: &str, ttl: Duration) -> Result<(), service_kit::StateError> {
        self.inner.confirm(key, ttl).await
    }
    async fn release(&self, key: &str) -> Result<(), service_kit::StateError> {
        self.inner.release(key).await
    }
}

#[tokio::test]
async fn a_task_completed_or_deleted_after_the_read_is_not_reminded() {
    for bed in beds().await {
        let due = now() + Span::hours(1);
        for what in ["complete", "delete"] {
            let task = bed.task("gina", what, Some(due)).await;
            let store = bed.tasks.clone();
            let id = task.id;
            let keys = Arc::new(MeddlingKeys {
                inner: service_kit::MemoryIdempotencyStore::default(),
                meddle: Box::new(move || {
                    let store = store.clone();
                    Box::pin(async move {
                        let user = todo_domain::UserId::parse("gina").unwrap();
                        if what == "complete" {
                            let patch = todo_store::TaskPatch {
                                completed: Some(true),
                                ..todo_store::TaskPatch::default()
                            };
                            let _ = store.update(&user, id, patch, now()).await;
                        } else {
                            let _ = store.delete(&user, id, now()).await;
                        }
                    })
                }),
            });
            let scanner = bed
                .scanner_with(settings(), bed.publisher.clone(), keys.clone())
                .await;
            let r = report(scanner.tick(now()).await);
            assert_eq!(
                (r.due, r.withdrawn, r.published),
                (1, 1, 0),
                "[{}] {what}: {r:?}",
                bed.label
            );
            assert!(
                bed.reminded().is_empty(),
                "[{}] {what}: reminded anyway",
                bed.label
            );
            assert!(
                !keys.inner.seen(&reminder_key(id, due)).await.unwrap(),
                "[{}] {what}: the claim was kept",
                bed.label
            );
        }
    }
}
