//! Inputs that fuzzing the API from its OpenAPI document (`tools/fuzz-api.sh`) and probing
//! its edges turned into 5xx or dropped connections: each now gets a 4xx in the API's error
//! shape, on every configured database.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::apps;

fn assert_rejected(what: &str, status: u16, body: &Value, field: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"]["code"], "invalid_field", "{what}: {body}");
    assert_eq!(body["error"]["field"], field, "{what}: {body}");
}

#[tokio::test]
async fn a_nul_character_in_stored_or_searched_text_is_a_400_not_a_database_error() {
    for app in apps().await {
        let label = app.db_label;
        let (s, err) = app
            .call(
                Method::POST,
                "/api/nul/tasks",
                "nul",
                Some(json!({"title": "x", "description": "a\u{0}b"})),
            )
            .await;
        assert_rejected(&format!("[{label}] create"), s, &err, "description");

        let task = app
            .create("nul", json!({"title": "kept", "description": "as it was"}))
            .await;
        let path = format!("/api/nul/tasks/{}", task["id"].as_str().unwrap());
        let (s, err) = app
            .call(
                Method::PATCH,
                &path,
                "nul",
                Some(json!({"description": "\u{0}"})),
            )
            .await;
        assert_rejected(&format!("[{label}] patch"), s, &err, "description");
        let (s, err) = app
            .call(
                Method::PUT,
                &path,
                "nul",
                Some(json!({"title": "x", "description": "\u{0}"})),
            )
            .await;
        assert_rejected(&format!("[{label}] put"), s, &err, "description");
        let (s, err) = app
            .call(Method::GET, "/api/nul/tasks?q=a%00b", "nul", None)
            .await;
        assert_rejected(&format!("[{label}] search"), s, &err, "q");

        let (s, same) = app.call(Method::GET, &path, "nul", None).await;
        assert_eq!(s, 200);
        assert_eq!(
            same["description"], "as it was",
            "[{label}] nothing was written"
        );
        assert_eq!(same["version"], 1, "[{label}] nothing was written");
    }
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_gets_the_api_error_shape() {
    for app in apps().await {
        for (path, field) in [
            ("/api/%FF/tasks", "user_id"),
            ("/api/alice/tasks/%FF", "task_id"),
        ] {
            let (s, err) = app.call(Method::GET, path, "alice", None).await;
            assert_rejected(&format!("[{}] GET {path}", app.db_label), s, &err, field);
        }
    }
}
