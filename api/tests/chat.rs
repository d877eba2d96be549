//! The chat routes in-process, on SQLite and PostgreSQL: everything decided before the model
//! is called (auth, input, conversations), and the 503 when the sidecar cannot be reached
//! (this harness runs no daprd: `DAPR_GRPC_PORT` points at a closed port). Turns with a
//! model are end to end (`e2e/tests/end_to_end/chat.rs`).

#![allow(clippy::unwrap_used)]

mod support;

use chrono::Utc;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use support::{TestApp, apps};
use todo_domain::UserId;
use todo_store::{ConversationStore, NewMessage, conversations::Target};
use uuid::Uuid;

async fn count(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

async fn say(app: &TestApp, user: &str, body: Value) -> (u16, Value) {
    app.call(Method::POST, &format!("/api/{user}/chat"), user, Some(body))
        .await
}

/// A conversation of `user` with a user message and an assistant answer, written directly.
async fn seed(app: &TestApp, user: &str) -> Uuid {
    let id = Uuid::now_v7();
    let messages = vec![
        NewMessage {
            role: "user".into(),
            body: json!({"content": "hello"}),
        },
        NewMessage {
            role: "assistant".into(),
            body: json!({"content": "Hi.", "tool_calls": [
                {"id": "c1", "name": "list_tasks", "arguments": "{}"}]}),
        },
        NewMessage {
            role: "tool".into(),
            body: json!({"call_id": "c1", "name": "list_tasks", "content": "No tasks match.", "is_error": false}),
        },
    ];
    ConversationStore::new(app.db.clone())
        .append(
            &UserId::parse(user).unwrap(),
            Target::New(id),
            messages,
            Utc::now(),
            None,
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn bad_chat_input_is_a_400_naming_the_problem_and_reaches_no_model() {
    for app in apps().await {
        let l = app.db_label;
        for (body, field, what) in [
            (json!({"message": ""}), "message", "empty"),
            (json!({"message": " \n\t "}), "message", "blank"),
            (json!({"message": "x".repeat(4001)}), "message", "oversized"),
            (json!({"message": "a\u{0}b"}), "message", "NUL"),
            (
                json!({"message": "hi", "time_zone": "Mars/Olympus"}),
                "time_zone",
                "zone",
            ),
        ] {
            let (status, body) = say(&app, "alice", body).await;
            assert_eq!(status, 400, "[{l}] {what}: {body}");
            assert_eq!(body["error"]["field"], field, "[{l}] {what}: {body}");
        }
        for (body, what) in [
            (json!({"message": 7}), "not a string"),
            (json!({"text": "hi"}), "no message"),
            (json!({"message": "hi", "mood": "sunny"}), "unknown field"),
            (
                json!({"message": "hi", "conversation_id": "nope"}),
                "malformed id",
            ),
        ] {
            let (status, body) = say(&app, "alice", body).await;
            assert_eq!(status, 400, "[{l}] {what}: {body}");
            assert_eq!(
                body["error"]["code"], "invalid_json",
                "[{l}] {what}: {body}"
            );
        }
        let response = app
            .client
            .post(app.url("/api/alice/chat"))
            .bearer_auth(app.token("alice"))
            .header("content-type", "application/json")
            .body(b"{\"message\": \"caf\xe9\"}".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "[{l}] non-UTF-8");
        let (status, body) = say(
            &app,
            "alice",
            json!({"message": "hi", "conversation_id": Uuid::now_v7()}),
        )
        .await;
        assert_eq!(status, 404, "[{l}] unknown conversation: {body}");
        assert_eq!(body["error"]["field"], "conversation_id", "[{l}] {body}");
        // Auth as on the task routes.
        let anonymous = app
            .client
            .post(app.url("/api/alice/chat"))
            .json(&json!({"message": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "[{l}]");
        let (status, _) = app
            .call(
                Method::POST,
                "/api/alice/chat",
                "bob",
                Some(json!({"message": "hi"})),
            )
            .await;
        assert_eq!(status, 403, "[{l}] another user's chat");
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM conversations").await,
            0,
            "[{l}]"
        );
    }
}

#[tokio::test]
async fn without_a_sidecar_a_turn_is_a_503_that_says_so_and_writes_nothing() {
    for app in apps().await {
        let l = app.db_label;
        let existing = seed(&app, "alice").await;
        for body in [
            json!({"message": "add milk"}),
            json!({"message": "add milk", "conversation_id": existing}),
        ] {
            let (status, body) = say(&app, "alice", body).await;
            assert_eq!(status, 503, "[{l}] {body}");
            assert_eq!(body["error"]["code"], "unavailable", "[{l}]");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("sidecar") && message.contains("Nothing was changed"),
                "[{l}] {message}"
            );
        }
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM conversations").await,
            1,
            "[{l}]"
        );
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM conversation_messages").await,
            3,
            "[{l}] the failed turn appended nothing"
        );
        assert_eq!(app.outbox_rows(None).await, 0, "[{l}] no event");
    }
}

#[tokio::test]
async fn conversations_are_read_and_deleted_by_their_user_only() {
    for app in apps().await {
        let l = app.db_label;
        let alice = seed(&app, "alice").await;
        let bob = seed(&app, "bob").await;
        let path = |user: &str, id: Uuid| format!("/api/{user}/conversations/{id}");

        let (status, body) = app
            .call(Method::GET, &path("alice", alice), "alice", None)
            .await;
        assert_eq!(status, 200, "[{l}] {body}");
        assert_eq!(body["id"], alice.to_string(), "[{l}]");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(
            messages
                .iter()
                .map(|m| (m["seq"].as_i64().unwrap(), m["role"].as_str().unwrap()))
                .collect::<Vec<_>>(),
            [(0, "user"), (1, "assistant"), (2, "tool")],
            "[{l}] {body}"
        );
        assert_eq!(messages[1]["tool_calls"][0]["name"], "list_tasks", "[{l}]");
        assert_eq!(messages[2]["call_id"], "c1", "[{l}]");

        // A page at a time, and the user's list of conversations (hers only).
        let (status, page) = app
            .call(
                Method::GET,
                &format!("{}?limit=2", path("alice", alice)),
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 200, "[{l}] {page}");
        assert_eq!(
            (
                page["messages"].as_array().unwrap().len(),
                page["next_after"].clone()
            ),
            (2, json!(1)),
            "[{l}] {page}"
        );
        let (_, page) = app
            .call(
                Method::GET,
                &format!("{}?after=1", path("alice", alice)),
                "alice",
                None,
            )
            .await;
        assert_eq!(page["messages"][0]["seq"], 2, "[{l}] {page}");
        assert!(page["next_after"].is_null(), "[{l}] {page}");
        for bad in ["limit=0", "limit=501", "after=x", "order=asc"] {
            let (status, body) = app
                .call(
                    Method::GET,
                    &format!("{}?{bad}", path("alice", alice)),
                    "alice",
                    None,
                )
                .await;
            assert_eq!(status, 400, "[{l}] {bad}: {body}");
        }
        let (status, list) = app
            .call(Method::GET, "/api/alice/conversations", "alice", None)
            .await;
        assert_eq!(status, 200, "[{l}] {list}");
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "[{l}] alice sees hers only: {list}");
        assert_eq!(
            (items[0]["id"].clone(), items[0]["message_count"].clone()),
            (json!(alice.to_string()), json!(3)),
            "[{l}]"
        );
        let (status, _) = app
            .call(
                Method::GET,
                "/api/alice/conversations?limit=201",
                "alice",
                None,
            )
            .await;
        assert_eq!(status, 400, "[{l}]");

        // Bob cannot see or delete alice's, by his own path; nor use hers.
        for method in [Method::GET, Method::DELETE] {
            let (status, body) = app
                .call(method.clone(), &path("bob", alice), "bob", None)
                .await;
            assert_eq!(
                status, 404,
                "[{l}] {method} alice's conversation as bob: {body}"
            );
            let (status, _) = app
                .call(method.clone(), &path("alice", alice), "bob", None)
                .await;
            assert_eq!(status, 403, "[{l}] {method} on alice's path as bob");
        }
        let (status, body) = app
            .call(
                Method::GET,
                "/api/alice/conversations/not-a-uuid",
                "alice",
                None,
            )
            .await;
        assert_eq!(
            (status, body["error"]["field"].clone()),
            (400, json!("conversation_id")),
            "[{l}]"
        );

        let (status, _) = app
            .call(Method::DELETE, &path("alice", alice), "alice", None)
            .await;
        assert_eq!(status, 204, "[{l}]");
        let (status, _) = app
            .call(Method::GET, &path("alice", alice), "alice", None)
            .await;
        assert_eq!(status, 404, "[{l}] deleted");
        let (status, _) = app
            .call(Method::DELETE, &path("alice", alice), "alice", None)
            .await;
        assert_eq!(status, 404, "[{l}] deleted twice");

        // Deleting the account takes the user's conversations with it, and only them.
        let again = seed(&app, "alice").await;
        let (status, _) = app.call(Method::DELETE, "/api/alice", "alice", None).await;
        assert_eq!(status, 204, "[{l}]");
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) FROM conversations WHERE user_id = 'alice'"
            )
            .await,
            0,
            "[{l}]"
        );
        let (status, _) = app.call(Method::GET, &path("bob", bob), "bob", None).await;
        assert_eq!(status, 200, "[{l}] bob's conversation stays");
        let (status, body) = app
            .call(Method::DELETE, &path("alice", again), "alice", None)
            .await;
        assert_eq!(status, 410, "[{l}] a deleted account: {body}");
        let (status, body) = say(&app, "alice", json!({"message": "hello?"})).await;
        assert_eq!(status, 410, "[{l}] a deleted account chats: {body}");
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM conversation_messages").await,
            3,
            "[{l}] only bob's messages are left"
        );
    }
}
