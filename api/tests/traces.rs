//! A request's trace reaches its events: the `traceparent` a client sends (or a new one) is
//! stored with the outbox row and handed to the sidecar with the event; the answer names
//! the trace in `traceresponse`. Also through MCP.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::apps;

const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const GIVEN_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap()
}

#[tokio::test]
async fn each_write_publishes_its_event_with_the_requests_trace() {
    for app in apps().await {
        let post = |traceparent: Option<&'static str>| {
            let mut req = app
                .client
                .post(app.url("/api/alice/tasks"))
                .bearer_auth(app.token("alice"))
                .json(&json!({"title": "Traced"}));
            if let Some(tp) = traceparent {
                req = req.header("traceparent", tp);
            }
            req.send()
        };
        let answered = |res: &reqwest::Response| {
            res.headers()
                .get("traceresponse")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        let given = post(Some(GIVEN)).await.unwrap();
        assert_eq!(given.status(), 201);
        let given_answer = answered(&given);
        assert_eq!(trace_id(&given_answer), GIVEN_TRACE, "[{}]", app.db_label);
        assert_ne!(given_answer, GIVEN, "the request's span is its own");
        let fresh = post(None).await.unwrap();
        let fresh_answer = answered(&fresh);
        let bad = post(Some("00-xyz-00f067aa0ba902b7-01")).await.unwrap();
        assert_eq!(bad.status(), 201, "a malformed traceparent is no error");
        let bad_answer = answered(&bad);

        let events = app.published(3).await;
        let traces: Vec<Option<String>> = events.iter().map(|e| e.traceparent.clone()).collect();
        assert_eq!(
            traces,
            [
                Some(given_answer),
                Some(fresh_answer.clone()),
                Some(bad_answer.clone())
            ],
            "[{}] the event carries the request's span as its parent",
            app.db_label
        );
        assert_ne!(trace_id(&fresh_answer), trace_id(&bad_answer));
        assert_ne!(trace_id(&fresh_answer), GIVEN_TRACE);
    }
}

#[tokio::test]
async fn an_mcp_tool_call_and_a_completion_carry_the_trace_too() {
    for app in apps().await {
        let task = app.create("alice", json!({"title": "Done soon"})).await;
        let id = task["id"].as_str().unwrap();
        let res = app
            .client
            .post(app.url(&format!("/api/alice/tasks/{id}/complete")))
            .bearer_auth(app.token("alice"))
            .header("traceparent", GIVEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mcp = app
            .client
            .post(app.url("/mcp"))
            .bearer_auth(app.token("alice"))
            .header("traceparent", GIVEN)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "add_task", "arguments": {"title": "From MCP"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(mcp.status(), 200, "[{}]", app.db_label);
        let events = app.published(3).await;
        for e in &events[1..] {
            let tp = e.traceparent.as_deref().unwrap_or_else(|| {
                panic!(
                    "[{}] no traceparent on {:?}",
                    app.db_label, e.event.event_type
                )
            });
            assert_eq!(
                trace_id(tp),
                GIVEN_TRACE,
                "[{}] {:?}",
                app.db_label,
                e.event.event_type
            );
        }
    }
}
