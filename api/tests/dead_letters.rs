//! The dead-letter routes daprd delivers to: every dead letter is kept once per (topic, event
//! id) and counted on `/relay/status`; nothing is dropped for being unreadable. SQLite, and
//! PostgreSQL when `TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};

async fn deliver(app: &support::TestApp, topic: &str, body: Vec<u8>) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(&format!("/dead-letters/{topic}")))
        .header("content-type", "application/cloudevents+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn held(app: &support::TestApp) -> Value {
    let status: Value = app
        .client
        .get(app.url("/relay/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["dead_letters"].clone()
}

#[tokio::test]
async fn dead_letters_are_kept_once_each_counted_per_topic_and_never_dropped_for_their_shape() {
    for app in support::apps().await {
        let label = app.db_label;
        assert_eq!(
            held(&app).await,
            json!({"task-events-dlq": 0, "reminders-dlq": 0}),
            "{label}"
        );
        let event = |id: &str| {
            serde_json::to_vec(
                &json!({"specversion": "1.0", "id": id, "type": "task.completed",
                "data": {"user_id": "ann", "task": {}}}),
            )
            .unwrap()
        };
        for body in [event("e1"), event("e1"), event("e2"), b"not json".to_vec()] {
            let (status, answer) = deliver(&app, "task-events-dlq", body).await;
            assert_eq!(
                (status, answer["status"].as_str()),
                (200, Some("SUCCESS")),
                "{label}"
            );
        }
        let (status, answer) = deliver(&app, "reminders-dlq", event("r1")).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("SUCCESS")),
            "{label}"
        );
        assert_eq!(
            held(&app).await,
            json!({"task-events-dlq": 3, "reminders-dlq": 1}),
            "{label}: e1 twice is one row; the unreadable body is kept too"
        );
        // A topic this service does not keep is a misconfigured subscription.
        let (status, answer) = deliver(&app, "task-events", event("x")).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("DROP")),
            "{label}"
        );
    }
}
