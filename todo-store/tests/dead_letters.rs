//! Kept dead letters: one row per (topic, event id), counted per topic, and a replay that
//! neither marks an event dead-lettered again meanwhile nor goes round for ever. SQLite, and
//! PostgreSQL when `TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use todo_store::DeadLetterStore;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn a_dead_letter_kept_again_during_a_replay_stays_held_and_the_replay_ends() {
    for (label, url, _dir) in todo_store::testing::databases().await {
        let db = todo_store::connect(&url, 2).await.unwrap();
        todo_store::migrate(&db).await.unwrap();
        let store = DeadLetterStore::new(db);
        let t0 = at("2027-01-01T00:00:00.123456Z");
        let long_key = "k".repeat(5_000);
        for id in ["a", "b"] {
            store
                .record("task-events-dlq", id, "task.completed", &long_key, "{}", t0)
                .await
                .unwrap();
        }
        store
            .record("reminders-dlq", "r", "reminder.due", "u", "{}", t0)
            .await
            .unwrap();
        assert_eq!(
            store.held().await.unwrap(),
            vec![
                ("reminders-dlq".to_owned(), 1),
                ("task-events-dlq".to_owned(), 2)
            ],
            "{label}"
        );

        // A replay reads what is held, and `a` comes back before it is marked.
        let up_to = store.newest_id("task-events-dlq").await.unwrap();
        let batch = store
            .pending("task-events-dlq", 0, up_to, 10)
            .await
            .unwrap();
        assert_eq!(batch.len(), 2, "{label}");
        assert_eq!(batch[0].partition_key.len(), 5_000, "{label}: kept whole");
        store
            .record(
                "task-events-dlq",
                "a",
                "task.completed",
                "u",
                "{}",
                t0 + Duration::seconds(5),
            )
            .await
            .unwrap();
        let now = t0 + Duration::seconds(6);
        assert!(
            !store.mark_replayed(&batch[0], now).await.unwrap(),
            "{label}: dead-lettered again since it was read, so still held"
        );
        assert!(
            store.mark_replayed(&batch[1], now).await.unwrap(),
            "{label}"
        );
        // Paging after the last id seen up to the fixed bound ends the replay.
        let last = batch.last().unwrap().id;
        assert!(
            store
                .pending("task-events-dlq", last, up_to, 10)
                .await
                .unwrap()
                .is_empty(),
            "{label}"
        );
        assert_eq!(
            store.held().await.unwrap(),
            vec![
                ("reminders-dlq".to_owned(), 1),
                ("task-events-dlq".to_owned(), 1)
            ],
            "{label}: `a` is held for the next replay"
        );
    }
}
