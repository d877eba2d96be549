//! The application: the router over [`AppState`] with its layers, and the service's life
//! (connect, migrate, bind, run the relay, serve, drain).

use std::sync::Arc;

use anyhow::Context as _;
use axum::{Router, extract::DefaultBodyLimit};
use relay::{OutboxStore, Relay, RelayHealth};
use service_kit::{Publisher, Shutdown};
use todo_store::TaskStore;
use tokio::{sync::Notify, task::JoinHandle};

use crate::{
    auth::JwtKeys, chat_model::Chat, config::Settings, dead_letters, extract::BODY_LIMIT_BYTES,
    mcp, routes, state::AppState,
};

/// The HTTP routes over `state`: those of [`routes::table`], each documented in the OpenAPI
/// document served at [`routes::docs::OPENAPI_PATH`], the MCP endpoint at [`mcp::MCP_PATH`]
/// (described by its own `tools/list`), the dead-letter routes daprd delivers to
/// ([`dead_letters`]), plus the JSON 404 and 405 answers.
pub fn router(state: AppState) -> Router {
    let (routes, _document) = routes::table().split_for_parts();
    routes
        .merge(mcp::routes(state.clone()))
        .merge(dead_letters::routes(&state))
        .fallback(routes::fallback)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            routes::panicked,
        ))
        .layer(axum::middleware::from_fn(traced))
        .layer(axum::middleware::from_fn(service_kit::metrics::track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Runs each request in its trace: a child of its `traceparent` header, or a new trace.
/// Every log line inside carries `trace_id`, every event its writes append carries the
/// context (`todo_store::trace`), and the answer names it in a `traceresponse` header.
async fn traced(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "request",
        trace_id = tracing::field::Empty,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let context = service_kit::trace::start(
        &span,
        service_kit::TraceContext::from_headers(request.headers()),
    );
    // For handlers that run in a task of their own (the MCP service's).
    request.extensions_mut().insert(context);
    let header = context.to_string();
    let mut response = todo_store::trace::scope(Some(header.clone()), next.run(request))
        .instrument(span)
        .await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&header) {
        response
            .headers_mut()
            .insert(service_kit::trace::TRACERESPONSE, value);
    }
    response
}

/// Threads of the relay's runtime ([`RelayRuntime`]).
pub const RELAY_THREADS: usize = 2;

/// The relay's own runtime: the watchdog and each relay it starts run there, with the
/// relay's database connections and its sidecar connection (made there), on
/// [`RELAY_THREADS`] threads named `outbox-relay`. A publish's answer is taken up as soon as
/// it arrives, not after whatever requests are queued on the API's runtime, so one user's
/// backlog keeps the sidecar's pace beside other users' writes (BENCHMARKS.md, "One user's
/// backlog"); two threads, so the relay's reads and its publishes' answers can be taken
/// up at the same time.
///
/// Dropped, it triggers the shutdown and ends at once whatever still runs there: an
/// application dropped before its end (a test's runtime going away) leaves no relay behind.
struct RelayRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    task: Option<JoinHandle<()>>,
    shutdown: Shutdown,
}

impl RelayRuntime {
    fn start(
        relay: impl std::future::Future<Output = ()> + Send + 'static,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RELAY_THREADS)
            .thread_name("outbox-relay")
            .enable_all()
            .build()
            .context("cannot start the outbox relay's runtime")?;
        let task = runtime.spawn(relay);
        Ok(Self {
            runtime: Some(runtime),
            task: Some(task),
            shutdown,
        })
    }

    /// Stops the relay (it finishes its round and marks what it published) and its runtime.
    async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RelayRuntime {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(runtime) = self.runtime.take() {
            // Allowed inside an async context, where dropping a runtime is not.
            runtime.shutdown_background();
        }
    }
}

/// A built, bound, not yet running service.
pub struct Application {
    listener: service_kit::Listener,
    state: AppState,
    relay: Option<RelayRuntime>,
    shutdown: Shutdown,
}

impl Application {
    /// Connects to the database (migrating first if asked), binds the listener and starts the
    /// relay publishing through the sidecar at `settings.service.dapr_grpc_port`.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let publisher = Arc::new(settings.service.publisher());
        Self::build_with_publisher(settings, publisher).await
    }

    /// As [`Application::build`], publishing through `publisher` (tests stop at this boundary).
    pub async fn build_with_publisher<P: Publisher>(
        settings: &Settings,
        publisher: Arc<P>,
    ) -> anyhow::Result<Self> {
        let db = todo_store::connect(settings.database_url.expose(), settings.db_max_connections)
            .await
            .with_context(|| "cannot connect to the database (DATABASE_URL)")?;
        if settings.migrate {
            todo_store::migrate(&db)
                .await
                .context("database migration failed")?;
        }
        let listener = settings.service.listen().await?;
        let outbox = OutboxStore::new(db.clone());
        let relay_wake = Arc::new(Notify::new());
        let shutdown = Shutdown::new();
        let health = settings.relay_enabled.then(|| {
            Arc::new(RelayHealth::new(
                Relay::<P>::new_holder_name(),
                settings.relay.stall_after,
            ))
        });
        let relay = health.clone().map(|health| {
            let url = settings.database_url.clone();
            let wake = relay_wake.clone();
            let config = settings.relay.clone();
            let stop = shutdown.clone();
            let watched = health.clone();
            // Each start (and each restart by the watchdog) gets fresh connections.
            let start = move || {
                let (url, publisher, wake, config, health, stop) = (
                    url.clone(),
                    publisher.clone(),
                    wake.clone(),
                    config.clone(),
                    health.clone(),
                    stop.clone(),
                );
                async move {
                    let db = todo_store::connect_relay(url.expose())
                        .await
                        .context("cannot connect the outbox relay to the database")?;
                    let relay = Relay::new(
                        OutboxStore::new(db),
                        url.expose(),
                        publisher,
                        wake,
                        config,
                        health,
                    );
                    Ok(tokio::spawn(relay.run(stop)))
                }
            };
            RelayRuntime::start(
                relay::supervise(start, watched, shutdown.clone()),
                shutdown.clone(),
            )
        });
        let relay = relay.transpose()?;
        let dead_letters = todo_store::DeadLetterStore::new(db.clone());
        if settings.service.app_api_token.is_none() {
            tracing::warn!(
                "APP_API_TOKEN is not set: the dead-letter routes take deliveries from anyone who reaches this port (set it as daprd's app token)"
            );
        }
        let chat = Arc::new(Chat::new(
            settings.service.dapr_grpc_port,
            settings.service.dapr_api_token.clone(),
            settings.chat.clone(),
        ));
        let state = AppState {
            conversations: todo_store::ConversationStore::new(db.clone()),
            chat,
            tasks: TaskStore::new(db),
            outbox,
            jwt: JwtKeys::new(&settings.jwt_secret),
            relay_wake,
            relay: health,
            database_url: Arc::new(settings.database_url.clone()),
            dead_letters,
            app_api_token: settings.service.app_api_token.clone(),
        };
        Ok(Self {
            listener,
            state,
            relay,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `stop` resolves, then drains in-flight requests and stops the relay.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "chat-api listening");
        let chat = self.state.chat.clone();
        let app = router(self.state);
        self.listener.serve(app, stop).await?;
        // Turns whose clients went away still run; they finish (and the relay publishes
        // what they changed) before the relay stops.
        chat.drain().await;
        self.shutdown.trigger();
        if let Some(relay) = self.relay {
            relay.stop().await;
        }
        Ok(())
    }
}
