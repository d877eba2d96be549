//! Idempotency keys in the Dapr state store (Redis): a consumer asks whether it has already
//! handled an event, and remembers it once the effect is done.
//!
//! The rule: check first, do the effect, then remember (first-write, with a TTL). A key is
//! never claimed before its effect, so a crash in between only means the next delivery does
//! the (idempotent) work again. Keys are an optimisation: whoever needs exactly-once must also
//! have a guarantee of its own (the recurring worker has a unique key in the database), and a
//! state store that cannot be reached is a reason to log, not to stop.
//!
//! Claims are for a producer that must not act twice when several replicas race
//! (`reminder-cron`): [`IdempotencyStore::claim`] is an atomic insert-if-absent, so exactly
//! one racer wins. A claim is taken *before* its effect, which is only safe because it is
//! also given back when the effect fails: [`IdempotencyStore::release`] on a known failure,
//! and a short lease (the claim's TTL) on a crash. Once the effect is done,
//! [`IdempotencyStore::confirm`] keeps the key for as long as it must be remembered.
//!
//! On Redis, first-write without an etag is insert-if-absent only while every write to the
//! key is first-write (or carries the key's etag); every write here is one of those. A lost
//! race answers a plain gRPC `Internal` (HTTP 500), not an etag mismatch: it cannot be told
//! apart from a broken store by its code, so a failed claim reads the key to decide. That read
//! only interprets a failure; the decision itself is the atomic write, never the read.

use std::{
    collections::HashMap,
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use dapr::{
    client::{ClientOptions, Etag, StateOptions, TonicClientWithAuth},
    dapr::proto::common::v1::state_options::{StateConcurrency, StateConsistency},
};
use tokio::sync::RwLock;

use crate::Secret;

/// Name of the state store component in `components/`.
pub const STATE_STORE_NAME: &str = "statestore";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The sidecar could not be reached or did not answer in time.
    #[error("dapr sidecar unreachable: {0}")]
    Unavailable(String),
    /// The sidecar answered with an error (state store down, ...).
    #[error("state store call failed: {0}")]
    Failed(String),
}

/// Where idempotency keys live. Consumers are generic over it so in-process tests can use
/// [`MemoryIdempotencyStore`].
pub trait IdempotencyStore: Send + Sync + 'static {
    /// True when `key` was remembered (and has not expired).
    fn seen(&self, key: &str) -> impl Future<Output = Result<bool, StateError>> + Send;

    /// Remembers `key` for `ttl`. Remembering a key that is already there is not an error.
    fn remember(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Claims `key` for `lease` if nobody holds it (atomic first-write): `Ok(true)` when this
    /// caller won, `Ok(false)` when the key exists (claimed or confirmed by anyone, this
    /// caller included). An error means nothing is known: do not act on it.
    fn claim(
        &self,
        key: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StateError>> + Send;

    /// Keeps a claimed key for `ttl` from now: its effect is done. A key whose lease already
    /// ran out is written again.
    fn confirm(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Gives a claim back (deletes `key`), so the next attempt may claim it again. Releasing a
    /// key that is not there is not an error.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), StateError>> + Send;
}

/// Keys in the Dapr state store, through the sidecar's gRPC API. Connects lazily, so a
/// service may start before its sidecar; every call is bounded by a timeout.
pub struct DaprIdempotencyStore {
    address: String,
    api_token: Option<Secret>,
    store: String,
    call_timeout: Duration,
    client: RwLock<Option<dapr::Client<TonicClientWithAuth>>>,
}

/// What a remembered key holds: the value only has to be non-empty.
const REMEMBERED: &[u8] = b"1";
/// What a claimed key holds until it is confirmed (readable when debugging in Redis).
const CLAIMED: &[u8] = b"claimed";
/// What a confirmed claim holds.
const CONFIRMED: &[u8] = b"done";

impl DaprIdempotencyStore {
    /// `grpc_port`: the sidecar's gRPC port (`DAPR_GRPC_PORT`); `store`: the state store
    /// component's name (usually [`STATE_STORE_NAME`]).
    pub fn new(grpc_port: u16, api_token: Option<Secret>, store: impl Into<String>) -> Self {
        Self {
            address: format!("http://127.0.0.1:{grpc_port}"),
            api_token,
            store: store.into(),
            call_timeout: Duration::from_secs(2),
            client: RwLock::new(None),
        }
    }

    async fn client(&self) -> Result<dapr::Client<TonicClientWithAuth>, StateError> {
        if let Some(c) = self.client.read().await.as_ref() {
            return Ok(c.clone());
        }
        let mut slot = self.client.write().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let mut opts = ClientOptions::new()
            .with_address(self.address.clone())
            .with_timeout(self.call_timeout);
        if let Some(token) = &self.api_token {
            opts = opts.with_api_token(token.expose());
        }
        let client = dapr::Client::from_options(opts)
            .await
            .map_err(|e| StateError::Unavailable(format!("{} ({e})", self.address)))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    async fn bounded<T, F>(&self, call: F) -> Result<T, StateError>
    where
        F: Future<Output = Result<T, dapr::error::Error>>,
    {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StateError::Failed(e.to_string())),
            Err(_) => Err(StateError::Unavailable(format!(
                "no answer within {} ms",
                self.call_timeout.as_millis()
            ))),
        }
    }
}

impl DaprIdempotencyStore {
    /// A first-write save of `value` under `key` for `ttl`; with `etag`, it replaces the
    /// version of the key that etag names (and fails if the key changed since).
    async fn save_first_write(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        etag: Option<String>,
    ) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let metadata =
            HashMap::from([("ttlInSeconds".to_owned(), ttl.as_secs().max(1).to_string())]);
        let options = StateOptions {
            concurrency: StateConcurrency::ConcurrencyFirstWrite as i32,
            consistency: StateConsistency::ConsistencyStrong as i32,
        };
        self.bounded(client.save_state(
            self.store.clone(),
            key.to_owned(),
            value.to_vec(),
            etag.map(|value| Etag { value }),
            Some(metadata),
            Some(options),
        ))
        .await
    }
}

impl IdempotencyStore for DaprIdempotencyStore {
    async fn seen(&self, key: &str) -> Result<bool, StateError> {
        let mut client = self.client().await?;
        let found = self
            .bounded(client.get_state(self.store.clone(), key.to_owned(), None))
            .await?;
        Ok(!found.data.is_empty())
    }

    async fn remember(&self, key: &str, ttl: Duration) -> Result<(), StateError> {
        let saved = self.save_first_write(key, REMEMBERED, ttl, None).await;
        match saved {
            Ok(()) => Ok(()),
            // First-write refuses a key that exists (on Redis with a plain 500, so it cannot
            // be told apart from other failures): a concurrent duplicate got there first,
            // which is just as good.
            Err(e) => match self.seen(key).await {
                Ok(true) => Ok(()),
                _ => Err(e),
            },
        }
    }

    async fn claim(&self, key: &str, lease: Duration) -> Result<bool, StateError> {
        match self.save_first_write(key, CLAIMED, lease, None).await {
            Ok(()) => Ok(true),
            // Lost the race (or the key was there before), or the store failed: the key's
            // presence tells which. Present means someone holds it, whatever failed.
            Err(e) => match self.seen(key).await {
                Ok(true) => Ok(false),
                _ => Err(e),
            },
        }
    }

    async fn confirm(&self, key: &str, ttl: Duration) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let found = self
            .bounded(client.get_state(self.store.clone(), key.to_owned(), None))
            .await?;
        if found.data.is_empty() {
            // The lease ran out (the effect took longer than it): write the key anew.
            return self.remember(key, ttl).await;
        }
        // Only the etag can replace a first-write key on Redis; the save also sets the TTL.
        self.save_first_write(key, CONFIRMED, ttl, Some(found.etag))
            .await
    }

    async fn release(&self, key: &str) -> Result<(), StateError> {
        let mut client = self.client().await?;
        self.bounded(client.delete_state(self.store.clone(), key.to_owned(), None))
            .await
    }
}

/// Keys in process memory, expiring like the real ones. For tests, and for a single-process
/// run without a sidecar.
#[derive(Default)]
pub struct MemoryIdempotencyStore {
    keys: Mutex<HashMap<String, Instant>>,
}

impl MemoryIdempotencyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys currently remembered (expired ones excluded).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|expiry| **expiry > now).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key, as if the state store had lost them.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding the lock cannot leave the map inconsistent: use it anyway.
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl IdempotencyStore for MemoryIdempotencyStore {
    async fn seen(&self, key: &str) -> Result<bool, StateError> {
        Ok(self
            .lock()
            .get(key)
            .is_some_and(|expiry| *expiry > Instant::now()))
    }

    async fn remember(&self, key: &str, ttl: Duration) -> Result<(), StateError> {
        self.claim(key, ttl).await.map(drop)
    }

    async fn claim(&self, key: &str, lease: Duration) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut keys = self.lock();
        // First write wins, as in the state store: an unexpired key keeps its expiry.
        match keys.get(key) {
            Some(expiry) if *expiry > now => Ok(false),
            _ => {
                keys.insert(key.to_owned(), now + lease);
                Ok(true)
            }
        }
    }

    async fn confirm(&self, key: &str, ttl: Duration) -> Result<(), StateError> {
        self.lock().insert(key.to_owned(), Instant::now() + ttl);
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StateError> {
        self.lock().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_remembered_key_is_seen_until_it_expires() {
        let store = MemoryIdempotencyStore::new();
        assert!(!store.seen("a").await.unwrap_or(true));
        store.remember("a", Duration::from_millis(50)).await.ok();
        assert!(store.seen("a").await.unwrap_or(false));
        assert!(!store.seen("b").await.unwrap_or(true));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!store.seen("a").await.unwrap_or(true));
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn remembering_twice_keeps_the_first_write() {
        let store = MemoryIdempotencyStore::new();
        store.remember("a", Duration::from_millis(50)).await.ok();
        store.remember("a", Duration::from_secs(3600)).await.ok();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(
            !store.seen("a").await.unwrap_or(true),
            "the second write must not extend the key"
        );
    }

    #[tokio::test]
    async fn one_claim_wins_until_it_is_released_or_its_lease_runs_out() {
        let store = MemoryIdempotencyStore::new();
        assert!(
            store
                .claim("k", Duration::from_millis(60))
                .await
                .unwrap_or(false)
        );
        assert!(
            !store
                .claim("k", Duration::from_secs(60))
                .await
                .unwrap_or(true),
            "taken"
        );
        assert!(store.seen("k").await.unwrap_or(false));
        store.release("k").await.ok();
        assert!(!store.seen("k").await.unwrap_or(true), "released");
        assert!(
            store
                .claim("k", Duration::from_millis(60))
                .await
                .unwrap_or(false),
            "free again"
        );
        tokio::time::sleep(Duration::from_millis(90)).await;
        assert!(
            store
                .claim("k", Duration::from_millis(60))
                .await
                .unwrap_or(false),
            "a lease that ran out frees the key"
        );
    }

    #[tokio::test]
    async fn a_confirmed_claim_outlives_its_lease() {
        let store = MemoryIdempotencyStore::new();
        assert!(
            store
                .claim("k", Duration::from_millis(40))
                .await
                .unwrap_or(false)
        );
        store.confirm("k", Duration::from_secs(3600)).await.ok();
        tokio::time::sleep(Duration::from_millis(70)).await;
        assert!(store.seen("k").await.unwrap_or(false));
        assert!(
            !store
                .claim("k", Duration::from_secs(1))
                .await
                .unwrap_or(true)
        );
    }

    #[tokio::test]
    async fn concurrent_claims_have_one_winner() {
        let store = std::sync::Arc::new(MemoryIdempotencyStore::new());
        let racers = (0..16).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim("k", Duration::from_secs(60)).await })
        });
        let mut winners = 0;
        for racer in racers {
            if matches!(racer.await, Ok(Ok(true))) {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn a_sidecar_that_is_not_there_is_an_error_not_a_hang() {
        // Port 1 on loopback: nothing listens there.
        let store = DaprIdempotencyStore::new(1, None, STATE_STORE_NAME);
        let started = Instant::now();
        assert!(matches!(
            store.seen("k").await,
            Err(StateError::Unavailable(_))
        ));
        assert!(store.remember("k", Duration::from_secs(1)).await.is_err());
        assert!(
            store.claim("k", Duration::from_secs(1)).await.is_err(),
            "never a win"
        );
        assert!(store.confirm("k", Duration::from_secs(1)).await.is_err());
        assert!(store.release("k").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
