//! `recurring-tasks`: when a recurring task is completed, create its next instance.
//!
//! daprd delivers `task.completed` events from `task-events` to `POST /events/task-completed`
//! (routed by `components/subscription-recurring.yaml`; daprd skips every other event type
//! without calling the app, and `/events/ignored` acknowledges them for a subscription that
//! still routes them here). What the handler drops it dead-letters itself
//! ([`crate::dead_letters`]). [`handler`] decodes the event, skips duplicates cheaply through an
//! idempotency key, and has the store create the next instance together with its
//! `task.created` event in one transaction; the database's unique `(series_id, occurrence)`
//! key makes a second instance impossible even when the key is lost.

pub mod config;
pub mod handler;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    extract::State,
    response::Response,
    routing::{get, post},
};
use service_kit::{DaprIdempotencyStore, IdempotencyStore, Secret};
use todo_store::TaskStore;

use crate::dead_letters::{DaprDeadLetters, DeadLetterSink};

pub use config::Settings;

use crate::http;

/// How long an idempotency key is kept: the topics' retention, so a replay of anything
/// still on the topic is recognised.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What every handler can reach.
pub struct AppState<I> {
    pub tasks: TaskStore,
    pub idempotency: Arc<I>,
    /// Where dropped deliveries go (`task-events-dlq`).
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// Required in `dapr-api-token` on the event routes when set.
    pub app_api_token: Option<Secret>,
}

impl<I> Clone for AppState<I> {
    fn clone(&self) -> Self {
        Self {
            tasks: self.tasks.clone(),
            idempotency: self.idempotency.clone(),
            dead_letters: self.dead_letters.clone(),
            app_api_token: self.app_api_token.clone(),
        }
    }
}

/// The HTTP routes over `state`: the subscription routes (token-checked) and the probes.
pub fn router<I: IdempotencyStore>(state: AppState<I>) -> Router {
    let events = Router::new()
        .route("/events/task-completed", post(handler::task_completed::<I>))
        .route("/events/ignored", post(http::ignored))
        .fallback(handler::misrouted::<I>);
    service_kit::skeleton::router(
        get(readyz::<I>),
        events,
        state.app_api_token.clone(),
        http::panic_to_retry,
    )
    .with_state(state)
}

async fn readyz<I: IdempotencyStore>(State(state): State<AppState<I>>) -> Response {
    http::database_ready(state.tasks.db()).await
}

/// A built, bound, not yet running `recurring-tasks`.
pub type Application<I> = service_kit::Service<AppState<I>>;

/// Connects to the database and binds the listener; idempotency keys go to the state store
/// through the sidecar at `settings.service.dapr_grpc_port`.
pub async fn build(settings: &Settings) -> anyhow::Result<Application<DaprIdempotencyStore>> {
    let keys = settings.service.idempotency_store(&settings.state_store);
    let dead_letters = DaprDeadLetters::new(
        settings.service.dapr_grpc_port,
        settings.service.dapr_api_token.clone(),
    );
    build_with(settings, Arc::new(keys), Arc::new(dead_letters)).await
}

/// As [`build`], keeping idempotency keys in `idempotency` and dropped deliveries in
/// `dead_letters` (tests use in-memory ones).
pub async fn build_with<I: IdempotencyStore>(
    settings: &Settings,
    idempotency: Arc<I>,
    dead_letters: Arc<dyn DeadLetterSink>,
) -> anyhow::Result<Application<I>> {
    let db = todo_store::connect(settings.database_url.expose(), settings.db_max_connections)
        .await
        .context("cannot connect to the database (DATABASE_URL)")?;
    let listener = settings.service.listen().await?;
    let state = AppState {
        tasks: TaskStore::new(db),
        idempotency,
        dead_letters,
        app_api_token: settings.service.app_api_token.clone(),
    };
    Ok(Application::new(
        "recurring-tasks",
        listener,
        state,
        router::<I>,
    ))
}
