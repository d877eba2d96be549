//! What the services' in-process tests share (feature `testing`, for dev-dependencies only):
//! stand-ins for the sidecar (a state store that is down, a publisher that records), a
//! service serving on a task of its own, and deliveries posted as daprd posts them.

use std::{
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::de::DeserializeOwned;

use crate::{IdempotencyStore, OutgoingEvent, PublishError, Publisher, StateError};

/// A state store whose sidecar is down: every call fails as daprd's absence does.
pub struct UnreachableStore;

fn down() -> StateError {
    StateError::Unavailable("sidecar down (simulated)".into())
}

impl IdempotencyStore for UnreachableStore {
    async fn seen(&self, _key: &str) -> Result<bool, StateError> {
        Err(down())
    }
    async fn remember(&self, _key: &str, _ttl: Duration) -> Result<(), StateError> {
        Err(down())
    }
    async fn claim(&self, _key: &str, _lease: Duration) -> Result<bool, StateError> {
        Err(down())
    }
    async fn confirm(&self, _key: &str, _ttl: Duration) -> Result<(), StateError> {
        Err(down())
    }
    async fn release(&self, _key: &str) -> Result<(), StateError> {
        Err(down())
    }
}

/// One event as a [`RecordingPublisher`] was given it, its payload read as `E`.
#[derive(Debug, Clone)]
pub struct Published<E> {
    pub topic: String,
    /// Kafka record key.
    pub partition_key: String,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// The trace context handed to the sidecar with it.
    pub traceparent: Option<String>,
    pub event: E,
}

/// A publisher that records what it is given, as events of type `E` (the publish boundary of
/// the in-process tests; daprd itself is covered end to end). It can fail like a sidecar whose
/// broker is down ([`RecordingPublisher::failing`]), wait while a test write-locks
/// [`RecordingPublisher::hold`], or slow each publish ([`RecordingPublisher::set_delay`]) so
/// concurrent callers interleave. Every call is counted, failed ones included, so a test can
/// tell "tried and failed" from "never tried".
pub struct RecordingPublisher<E> {
    published: Mutex<Vec<Published<E>>>,
    fail: AtomicBool,
    attempts: AtomicUsize,
    pub hold: tokio::sync::RwLock<()>,
    delay: Mutex<Duration>,
}

impl<E> Default for RecordingPublisher<E> {
    fn default() -> Self {
        Self {
            published: Default::default(),
            fail: Default::default(),
            attempts: Default::default(),
            hold: Default::default(),
            delay: Default::default(),
        }
    }
}

impl<E: Clone> RecordingPublisher<E> {
    /// What was published so far, in order.
    pub fn published(&self) -> Vec<Published<E>> {
        lock(&self.published).clone()
    }
}

impl<E> RecordingPublisher<E> {
    /// From now on every publish fails (`true`) or succeeds again (`false`).
    pub fn failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Publish calls so far, failed ones included.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Each publish from now on waits `delay` first.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<E> Publisher for RecordingPublisher<E>
where
    E: DeserializeOwned + Send + Sync + 'static,
{
    async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), PublishError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let _held = self.hold.read().await;
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(PublishError::Failed(
                "broker unavailable (simulated)".into(),
            ));
        }
        let payload = serde_json::from_slice(event.payload).unwrap_or_else(|e| {
            panic!(
                "the payload published to {} is not the expected event: {e}",
                event.topic
            )
        });
        lock(&self.published).push(Published {
            topic: event.topic.to_owned(),
            partition_key: event.partition_key.to_owned(),
            event_id: event.event_id,
            event_type: event.event_type.to_owned(),
            traceparent: event.traceparent.map(str::to_owned),
            event: payload,
        });
        Ok(())
    }
}

/// The signal a [`Spawned`] service stops on.
pub type StopSignal = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A service serving on a task of its own for a test, at `base`. Dropping it signals the
/// service to stop and aborts its task: a test does not wait for in-flight requests.
pub struct Spawned {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

impl Spawned {
    /// Serves `service` until dropped.
    pub fn service<S: Send + 'static>(service: crate::Service<S>) -> Self {
        let port = service.port();
        Self::run(port, |stop| service.run_until(stop))
    }

    /// Runs a service bound to `port`: `serve` serves it until the signal it is given fires.
    /// A service that fails panics its task (and the test that reads its answers).
    pub fn run<F, Fut>(port: u16, serve: F) -> Self
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = serve(Box::pin(async move {
            let _ = rx.await;
        }));
        let task = tokio::spawn(async move {
            if let Err(e) = served.await {
                panic!("the spawned service failed: {e:#}");
            }
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            stop: Some(tx),
            task,
        }
    }

    /// Posts `body` to `path` as daprd delivers an event (a CloudEvent, with
    /// `dapr-api-token` when `token` is given); the HTTP status and the answer's `status`.
    pub async fn post_event(
        &self,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> (u16, String) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/cloudevents+json")
            .body(body);
        if let Some(token) = token {
            request = request.header("dapr-api-token", token);
        }
        let response = request.send().await.expect("the spawned service answers");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        (
            status,
            body["status"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

/// `data` as daprd delivers it from `topic`: a CloudEvent 1.0 envelope with `id`, `source`
/// and `type`.
pub fn cloud_event(
    id: &str,
    source: &str,
    event_type: &str,
    topic: &str,
    data: &impl serde::Serialize,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": event_type,
        "datacontenttype": "application/json",
        "pubsubname": "pubsub",
        "topic": topic,
        "traceid": "00-00000000000000000000000000000000-0000000000000000-00",
        "data": data,
    }))
    .expect("the event serialises")
}
