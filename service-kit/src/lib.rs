//! What every service shares: typed configuration from the environment, telemetry,
//! the HTTP listener, graceful shutdown, publishing through the Dapr sidecar, idempotency keys in the Dapr state
//! store, the replies a subscription handler gives daprd, and the Dapr Conversation API.
//!
//! May depend on: the `dapr` crate, axum and tokio. Knows nothing about tasks.

pub mod config;
pub mod conversation;
pub mod dead_letters;
pub mod env;
pub mod metrics;
pub mod publish;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sidecar;
pub mod skeleton;
pub mod state;
pub mod subscription;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;

pub use shutdown::Shutdown;

pub use config::{ServiceSettings, state_store_from_env};
pub use env::{env_in, env_opt, env_or};
pub use publish::{DaprPublisher, OutgoingEvent, PublishError, Publisher};
pub use secret::Secret;
pub use server::{Listener, Service};
pub use state::{DaprIdempotencyStore, IdempotencyStore, MemoryIdempotencyStore, StateError};
pub use subscription::{SubscriptionOutcome, require_dapr_token};
pub use trace::TraceContext;
