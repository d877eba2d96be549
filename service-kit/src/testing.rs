//! Stand-ins for the sidecar the services' in-process tests share (feature `testing`, for
//! dev-dependencies only).

use std::time::Duration;

use crate::{IdempotencyStore, StateError};

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
