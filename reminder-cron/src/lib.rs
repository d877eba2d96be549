//! `reminder-cron`: wakes on each tick of a Dapr cron input binding and publishes a
//! `reminder.due` event to `reminders` for every task due soon, once per (task, due time)
//! however many replicas run. `notifications` consumes those events.
//!
//! daprd calls `POST /reminder-cron` (the binding component `reminder-cron` in
//! `components/binding-reminder-cron.yaml`, scoped to this app) every 30 s. The handler
//! runs one [`scan::Scanner`] pass unless the previous one is still running, and answers
//! 200 either way: daprd treats any other status as a failed binding call, and a failed
//! scan is retried by the next tick anyway. See `docs/reminders.md`.
//!
//! May depend on: the domain, store and service-kit crates, axum and tokio. Reads tasks
//! (read-only connection), writes nothing to the database, and runs no migrations.

pub mod config;
pub mod scan;

use std::sync::Arc;

use anyhow::Context as _;
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use sea_orm::ConnectionTrait;
use serde_json::json;
use service_kit::{DaprIdempotencyStore, DaprPublisher, IdempotencyStore, Publisher, Secret};
use todo_store::TaskStore;

pub use config::{ScanSettings, Settings};
pub use scan::{ScanReport, Scanner, Tick, reminder_key};

/// The route daprd calls on each tick: the cron binding component's name.
pub const CRON_ROUTE: &str = "/reminder-cron";

/// What the handlers can reach.
pub struct AppState<P, I> {
    pub scanner: Arc<Scanner<P, I>>,
    /// Required in `dapr-api-token` on the cron route when set.
    pub app_api_token: Option<Secret>,
}

impl<P, I> Clone for AppState<P, I> {
    fn clone(&self) -> Self {
        Self {
            scanner: self.scanner.clone(),
            app_api_token: self.app_api_token.clone(),
        }
    }
}

/// The HTTP routes over `state`: the cron route (token-checked) and the probes.
pub fn router<P: Publisher, I: IdempotencyStore>(state: AppState<P, I>) -> Router {
    let cron = Router::new().route(CRON_ROUTE, post(cron_tick::<P, I>));
    service_kit::skeleton::router(
        get(readyz::<P, I>),
        cron,
        state.app_api_token.clone(),
        panic_answers_200,
    )
    .with_state(state)
}

/// `POST /reminder-cron`: one tick. Always 200 (daprd's rule for bindings); the body says
/// what happened.
async fn cron_tick<P: Publisher, I: IdempotencyStore>(
    State(state): State<AppState<P, I>>,
) -> Response {
    let body = match state.scanner.tick(Utc::now()).await {
        Tick::Ran(report) => json!({ "status": "scanned", "report": report }),
        Tick::Skipped => json!({ "status": "skipped", "reason": "previous scan still running" }),
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// A panicking scan is logged; daprd still gets its 200 and the next tick scans again.
fn panic_answers_200(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = service_kit::skeleton::panic_message(&*panic);
    tracing::error!(
        panic = message,
        "reminder scan panicked; the next tick retries"
    );
    (StatusCode::OK, Json(json!({ "status": "failed" }))).into_response()
}

/// Readiness: the database answers and has the schema (`chat-api` migrates it).
async fn readyz<P: Publisher, I: IdempotencyStore>(
    State(state): State<AppState<P, I>>,
) -> Response {
    match state
        .scanner
        .tasks()
        .db()
        .execute_unprepared("SELECT 1 FROM tasks WHERE 1 = 0")
        .await
    {
        Ok(_) => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unavailable or not migrated");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "database" })),
            )
                .into_response()
        }
    }
}

/// A built, bound, not yet running `reminder-cron`.
pub type Application<P, I> = service_kit::Service<AppState<P, I>>;

/// Connects to the database (read-only) and binds the listener; publishes and keeps its
/// claims through the sidecar at `settings.service.dapr_grpc_port`.
pub async fn build(
    settings: &Settings,
) -> anyhow::Result<Application<DaprPublisher, DaprIdempotencyStore>> {
    let publisher = settings.service.publisher();
    let keys = settings.service.idempotency_store(&settings.state_store);
    build_with(settings, Arc::new(publisher), Arc::new(keys)).await
}

/// As [`build`], publishing through `publisher` and keeping claims in `keys` (tests use
/// in-process ones).
pub async fn build_with<P: Publisher, I: IdempotencyStore>(
    settings: &Settings,
    publisher: Arc<P>,
    keys: Arc<I>,
) -> anyhow::Result<Application<P, I>> {
    let db =
        todo_store::connect_read_only(settings.database_url.expose(), settings.db_max_connections)
            .await
            .context("cannot connect to the database (DATABASE_URL)")?;
    let listener = settings.service.listen().await?;
    let scan = settings.scan;
    tracing::info!(
        window_s = scan.window.as_secs(),
        overdue_grace_s = scan.overdue_grace.as_secs(),
        page_size = scan.page_size,
        "reminder scans"
    );
    let scanner = Scanner::new(TaskStore::new(db), publisher, keys, scan);
    let state = AppState {
        scanner: Arc::new(scanner),
        app_api_token: settings.service.app_api_token.clone(),
    };
    Ok(Application::new(
        "reminder-cron",
        listener,
        state,
        router::<P, I>,
    ))
}
