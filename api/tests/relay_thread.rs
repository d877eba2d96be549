//! `chat-api`'s relay runs on threads of its own, publishes from there, and an application
//! that goes away takes those threads with it: nothing is left running. A binary of its
//! own, since it counts the process's threads.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;

/// Threads of this process named as the relay's.
fn relay_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "outbox-relay")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_runs_on_threads_of_its_own_that_end_with_the_app() {
    assert_eq!(relay_threads(), 0, "no application yet");
    let apps = support::apps().await;
    // Its workers, and any blocking thread its runtime started meanwhile. A new thread
    // names itself once it runs, which on a busy machine can be a moment after the runtime
    // was built.
    let expected = api::app::RELAY_THREADS * apps.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay_threads() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        relay_threads() >= expected,
        "{} relay threads for {} applications",
        relay_threads(),
        apps.len()
    );
    for app in &apps {
        app.create(
            "thread-user",
            json!({ "title": "published from the relay's thread" }),
        )
        .await;
        let published = app.published(1).await;
        assert_eq!(
            published[0].event_type, "task.created",
            "[{}]",
            app.db_label
        );
    }
    drop(apps);
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay_threads() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        relay_threads(),
        0,
        "the relay threads outlived their applications"
    );
}
