//! Stand-ins for the sidecar the services' in-process tests share (feature `testing`, for
//! dev-dependencies only).

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
