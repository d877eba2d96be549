//! A scripted OpenAI-compatible model as a server of its own, for the chat on a cluster
//! (`cargo xtask cluster test`), where the test cannot script it call by call. Its rule:
//! when the conversation ends with the user's message, it calls `add_task` with that message
//! as the title; when it ends with a tool's result, it answers `Done: <the result>`.
//!
//! `scripted-model [ADDRESS]` (default `127.0.0.1:8080`); `GET /calls` answers how many
//! completions it served.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use anyhow::{Context as _, Result};
use axum::{Json, Router, extract::State, routing::get, routing::post};
use e2e::model::{Step, answer};
use serde_json::{Value, json};

/// The step for a request: what its last message asks for.
fn next_step(request: &Value) -> Step {
    let last = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    match last["role"].as_str() {
        Some("user") => {
            let title = last["content"].as_str().unwrap_or("a task").to_owned();
            Step::Call(vec![("add_task".to_owned(), json!({ "title": title }))])
        }
        _ => Step::Text(format!(
            "Done: {}",
            last["content"].as_str().unwrap_or_default()
        )),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let calls = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |State(calls): State<Arc<AtomicU64>>, Json(request): Json<Value>| async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    answer(next_step(&request), n)
                },
            ),
        )
        .route(
            "/calls",
            get(|State(calls): State<Arc<AtomicU64>>| async move {
                calls.load(Ordering::SeqCst).to_string()
            }),
        )
        .with_state(calls);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("binding {address}"))?;
    println!("scripted model on {address}");
    axum::serve(listener, app).await.context("serving")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_message_becomes_a_task_and_a_tool_result_an_answer() {
        let asked = json!({"messages": [{"role": "system", "content": "s"},
                                        {"role": "user", "content": "buy milk"}]});
        assert!(matches!(
            next_step(&asked),
            Step::Call(calls) if calls == vec![("add_task".to_owned(), json!({"title": "buy milk"}))]
        ));
        let answered = json!({"messages": [{"role": "tool", "content": "created"}]});
        assert!(matches!(next_step(&answered), Step::Text(t) if t == "Done: created"));
    }
}
