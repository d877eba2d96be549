//! `notifications`: logs each reminder once, whatever the redeliveries.
//!
//! daprd delivers `reminder.due` events from `reminders` to `POST /events/reminder`
//! (`components/subscription-notifications.yaml`, its own consumer group, dead letters to
//! `reminders-dlq`). [`handler`] decodes the event, skips one already logged (idempotency key
//! per event id in the state store), skips one whose task is no longer due at that time
//! (completed, deleted, moved, or its account deleted: a read of the tasks database when
//! `DATABASE_URL` is set) and hands the rest to a [`sink::NotificationSink`]: in this phase
//! the log, one structured line per reminder ([`sink::LogSink`]).

pub mod config;
pub mod handler;
pub mod sink;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    routing::{get, post},
};
use service_kit::{DaprIdempotencyStore, IdempotencyStore, Secret};
use todo_store::TaskStore;

pub use config::Settings;
pub use sink::{LogSink, NOTIFICATION_MESSAGE, NotificationSink};

use crate::http;

/// The route daprd delivers reminders to.
pub const REMINDER_ROUTE: &str = "/events/reminder";

/// How long an idempotency key is kept: the topics' retention, so a replay of anything
/// still on the topic is recognised.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What every handler can reach.
pub struct AppState<I> {
    pub idempotency: Arc<I>,
    pub sink: Arc<dyn NotificationSink>,
    /// Asked whether a reminder's task is still due before it is logged; `None` logs every
    /// reminder.
    pub tasks: Option<TaskStore>,
    /// Required in `dapr-api-token` on the event route when set.
    pub app_api_token: Option<Secret>,
}

impl<I> Clone for AppState<I> {
    fn clone(&self) -> Self {
        Self {
            idempotency: self.idempotency.clone(),
            sink: self.sink.clone(),
            tasks: self.tasks.clone(),
            app_api_token: self.app_api_token.clone(),
        }
    }
}

/// The HTTP routes over `state`: the subscription route (token-checked) and the probes.
pub fn router<I: IdempotencyStore>(state: AppState<I>) -> Router {
    let events = Router::new()
        .route(REMINDER_ROUTE, post(handler::reminder_due::<I>))
        .fallback(misrouted::<I>);
    service_kit::skeleton::router(
        // Nothing to be ready for: the database check fails open (a reminder is logged when
        // it cannot be checked), and the sidecar is daprd's own concern.
        get(service_kit::skeleton::healthz),
        events,
        state.app_api_token.clone(),
        http::panic_to_retry,
    )
    .with_state(state)
}

/// Any other route: [`http::fallback`], whose `DROP` to a delivery is an answer for daprd
/// only. A fallback is not behind the event route's token check, so a `POST` without
/// daprd's token is refused here as it is there (before, anyone got `DROP` and a warning in
/// the log).
async fn misrouted<I: IdempotencyStore>(
    axum::extract::State(state): axum::extract::State<AppState<I>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if method == axum::http::Method::POST
        && !service_kit::subscription::dapr_token_ok(state.app_api_token.as_ref(), &headers)
    {
        return service_kit::subscription::unauthorized();
    }
    http::fallback(method, uri).await
}

/// A built, bound, not yet running `notifications`.
pub type Application<I> = service_kit::Service<AppState<I>>;

/// Binds the listener; idempotency keys go to the state store through the sidecar at
/// `settings.service.dapr_grpc_port`, notifications to the log, and the tasks are read (never
/// written) from `settings.database_url` when it is set.
pub async fn build(settings: &Settings) -> anyhow::Result<Application<DaprIdempotencyStore>> {
    let keys = settings.service.idempotency_store(&settings.state_store);
    let tasks = match &settings.database_url {
        Some(url) => {
            // Once running, a database that goes away only means reminders are logged
            // unchecked until it is back; at start, a wrong URL is refused.
            match todo_store::connect_read_only(url.expose(), 2).await {
                Ok(db) => Some(TaskStore::new(db)),
                Err(e) => anyhow::bail!("DATABASE_URL: cannot open the tasks database: {e}"),
            }
        }
        None => {
            tracing::warn!(
                "DATABASE_URL is not set: reminders are logged without checking that their task is still due"
            );
            None
        }
    };
    build_with(settings, Arc::new(keys), Arc::new(LogSink), tasks).await
}

/// As [`build`], keeping idempotency keys in `idempotency`, notifying through `sink` (tests
/// use in-memory ones) and checking reminders against `tasks`.
pub async fn build_with<I: IdempotencyStore>(
    settings: &Settings,
    idempotency: Arc<I>,
    sink: Arc<dyn NotificationSink>,
    tasks: Option<TaskStore>,
) -> anyhow::Result<Application<I>> {
    let listener = settings.service.listen().await?;
    let state = AppState {
        idempotency,
        sink,
        tasks,
        app_api_token: settings.service.app_api_token.clone(),
    };
    Ok(Application::new(
        "notifications",
        listener,
        state,
        router::<I>,
    ))
}
