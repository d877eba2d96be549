//! Where a consumer puts what it drops, when daprd does not: `recurring-tasks`' subscription
//! routes only `task.completed` to it (so daprd does not call it for every other event on
//! `task-events`), and such a subscription cannot have a dead-letter topic in daprd (which
//! sends every event no rule matches there). So the handler itself publishes each delivery
//! it answers `DROP` to `task-events-dlq` through its sidecar, before answering; if that
//! fails it answers `RETRY` instead, so nothing it drops is lost.

use std::{collections::HashMap, future::Future, pin::Pin, sync::Mutex};

use service_kit::{DaprPublisher, Secret};
use todo_domain::topics;

/// A boxed future, for a sink behind `dyn`.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Takes a dropped delivery (its body as daprd delivered it).
pub trait DeadLetterSink: Send + Sync + 'static {
    fn send<'a>(&'a self, body: &'a [u8]) -> SinkFuture<'a>;
}

/// `task-events-dlq` through the sidecar (the pub/sub's publishing scopes allow this app
/// nothing else). A CloudEvent goes as it came (`application/cloudevents+json`, so daprd
/// keeps its id, type and data: chat-api keeps and replays it like any dead letter), keyed
/// by its `data.user_id` when it has one; any other body goes as bytes, which daprd wraps.
pub struct DaprDeadLetters {
    publisher: DaprPublisher,
}

impl DaprDeadLetters {
    pub fn new(grpc_port: u16, api_token: Option<Secret>) -> Self {
        Self {
            publisher: DaprPublisher::new(grpc_port, api_token),
        }
    }
}

impl DeadLetterSink for DaprDeadLetters {
    fn send<'a>(&'a self, body: &'a [u8]) -> SinkFuture<'a> {
        Box::pin(async move {
            let (content_type, metadata) = describe(body);
            self.publisher
                .publish_event(
                    topics::TASK_EVENTS_DLQ,
                    body.to_vec(),
                    content_type,
                    metadata,
                )
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// How a dropped body is published: its content type, and its key when it names a user.
fn describe(body: &[u8]) -> (&'static str, HashMap<String, String>) {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(event)) => {
            let key = event
                .get("data")
                .and_then(|d| d.get("user_id"))
                .and_then(serde_json::Value::as_str)
                .filter(|u| !u.is_empty());
            let metadata = key
                .map(|k| HashMap::from([("partitionKey".to_owned(), k.to_owned())]))
                .unwrap_or_default();
            (service_kit::publish::CLOUDEVENT, metadata)
        }
        _ => ("application/octet-stream", HashMap::new()),
    }
}

/// Keeps what it is given, for the in-process tests; fails every send while `failing`.
#[derive(Default)]
pub struct RecordingDeadLetters {
    sent: Mutex<Vec<Vec<u8>>>,
    failing: std::sync::atomic::AtomicBool,
}

impl RecordingDeadLetters {
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn failing(&self, fail: bool) {
        self.failing
            .store(fail, std::sync::atomic::Ordering::SeqCst);
    }
}

impl DeadLetterSink for RecordingDeadLetters {
    fn send<'a>(&'a self, body: &'a [u8]) -> SinkFuture<'a> {
        Box::pin(async move {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("the dead-letter topic cannot be reached".to_owned());
            }
            self.sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(body.to_vec());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_event_keeps_its_shape_and_its_users_key_anything_else_goes_as_bytes() {
        let (kind, meta) = describe(
            br#"{"specversion":"1.0","id":"e1","type":"task.completed","data":{"user_id":"ann"}}"#,
        );
        assert_eq!(kind, "application/cloudevents+json");
        assert_eq!(meta.get("partitionKey").map(String::as_str), Some("ann"));
        let (kind, meta) = describe(br#"{"specversion":"1.0","data":"not an event"}"#);
        assert_eq!(kind, "application/cloudevents+json");
        assert!(meta.is_empty());
        for body in [&b""[..], b"{\"data\": {", b"[1,2]"] {
            assert_eq!(describe(body).0, "application/octet-stream", "{body:?}");
        }
    }
}
