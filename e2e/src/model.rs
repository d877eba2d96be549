//! A scripted model server that speaks OpenAI's chat-completions API, for the chat's tests:
//! daprd's real `conversation.openai` component is pointed at it (its `endpoint`), so a test
//! decides what the "model" answers at each call and reads back everything it was sent
//! (messages, tools, tool results).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result};
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::post};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// What the model answers to one call.
#[derive(Debug, Clone)]
pub enum Step {
    /// Text: the turn's final answer.
    Text(String),
    /// Tool calls, each a tool name and its arguments as JSON.
    Call(Vec<(String, Value)>),
    /// One tool call with arguments as raw text (possibly not JSON at all).
    RawCall(String, String),
    /// An HTTP error from the provider.
    Fail(u16),
    /// Waits, then answers with the next step.
    Delay(Duration, Box<Step>),
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Step>,
    /// Answered when the script is used up; `None`: an error.
    otherwise: Option<Step>,
    requests: Vec<Value>,
    calls: u64,
}

/// The server; stops when dropped.
pub struct ScriptedModel {
    /// The base URL to give the component as `endpoint` (`http://127.0.0.1:PORT/v1`).
    pub endpoint: String,
    shared: Arc<Mutex<Shared>>,
    server: JoinHandle<()>,
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ScriptedModel {
    pub async fn start() -> Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the scripted model")?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}/v1"),
            shared,
            server,
        })
    }

    /// Appends steps to the script.
    pub fn then(&self, steps: impl IntoIterator<Item = Step>) {
        lock(&self.shared).script.extend(steps);
    }

    /// What to answer once the script is used up (default: an HTTP 500).
    pub fn otherwise(&self, step: Step) {
        lock(&self.shared).otherwise = Some(step);
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared).requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.shared).requests.clear();
    }
}

/// The state, also after a panic elsewhere (the data stays usable).
fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn complete(
    State(shared): State<Arc<Mutex<Shared>>>,
    Json(request): Json<Value>,
) -> axum::response::Response {
    let (step, n) = {
        let mut s = lock(&shared);
        s.requests.push(request);
        s.calls += 1;
        let step = s.script.pop_front().or_else(|| s.otherwise.clone());
        (step, s.calls)
    };
    let mut step = step.unwrap_or(Step::Fail(500));
    while let Step::Delay(wait, next) = step {
        tokio::time::sleep(wait).await;
        step = *next;
    }
    answer(step, n)
}

/// The chat-completions response for `step`, the `n`th call.
pub fn answer(step: Step, n: u64) -> axum::response::Response {
    let (message, finish) = match step {
        Step::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
        Step::Call(calls) => {
            let calls: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, args))| {
                    json!({"id": format!("call_{n}_{i}"), "type": "function",
                           "function": {"name": name, "arguments": args.to_string()}})
                })
                .collect();
            (
                json!({"role": "assistant", "content": null, "tool_calls": calls}),
                "tool_calls",
            )
        }
        Step::RawCall(name, raw) => (
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": format!("call_{n}_0"), "type": "function",
                 "function": {"name": name, "arguments": raw}}]}),
            "tool_calls",
        ),
        Step::Fail(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (
                status,
                Json(json!({"error": {"message": "scripted failure", "type": "server_error"}})),
            )
                .into_response();
        }
        Step::Delay(_, next) => return answer(*next, n),
    };
    Json(json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": 1_780_000_000,
        "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }))
    .into_response()
}
