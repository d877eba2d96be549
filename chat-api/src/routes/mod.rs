//! HTTP handlers: extract, authorize, call the shared task service ([`crate::service`], also
//! behind the MCP tools), map to a view.
//!
//! Each handler's `#[utoipa::path]` annotation is its entry in the OpenAPI document, and
//! [`table`] registers it with the router and the document together.

use axum::{
    Json,
    extract::{FromRequestParts, Path, State, path::ErrorKind, rejection::PathRejection},
    http::{StatusCode, request::Parts},
    response::IntoResponse,
};
use chrono::Utc;
use sea_orm::ConnectionTrait;
use serde::de::DeserializeOwned;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    auth::AuthUser,
    dto::{ListParams, TaskInput, TaskPageView, TaskPatchInput, TaskPath, TaskView, UserPath},
    error::{ApiError, ApiResult, ErrorCode},
    extract::{ApiJson, ApiQuery},
    openapi::{
        BadRequest, Conflict, Forbidden, Gone, NotFound, PayloadTooLarge, Unauthorized,
        Unavailable, UnsupportedMediaType,
    },
    service,
};

pub mod docs;

/// Every route the API serves, each registered with the router and the OpenAPI document in
/// one step. `router()` adds only the fallbacks and layers.
pub fn table() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(create_task, list_tasks))
        .routes(routes!(get_task, replace_task, patch_task, delete_task))
        .routes(routes!(complete_task))
        .routes(routes!(reopen_task))
        .routes(routes!(delete_account))
        .routes(routes!(crate::chat::routes::chat))
        .routes(routes!(crate::chat::routes::list_conversations))
        .routes(routes!(
            crate::chat::routes::get_conversation,
            crate::chat::routes::delete_conversation
        ))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(relay_status))
        .routes(routes!(crate::metrics::metrics))
        .routes(routes!(docs::openapi_json))
        .routes(routes!(docs::docs_page))
}

/// `Path` whose rejection (a percent-encoded segment that is not UTF-8) uses the API's error
/// shape instead of axum's plain text.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. } => {
                    let key = key.clone();
                    Err(ApiError::new(ErrorCode::InvalidField, e.body_text()).with_field(key))
                }
                // The route and the extracted type disagree: a bug, not bad input.
                _ => Err(ApiError::internal(e.body_text())),
            },
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

/// Create a task.
#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    params(UserPath),
    request_body = TaskInput,
    security(("bearer_jwt" = [])),
    responses(
        (status = 201, description = "Created; `task.created` is published", body = TaskView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn create_task(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(UserPath { user_id }): ApiPath<UserPath>,
    ApiJson(input): ApiJson<TaskInput>,
) -> ApiResult<impl IntoResponse> {
    let user = auth.require(&user_id)?;
    let task = service::create(&state, user, input).await?;
    Ok((StatusCode::CREATED, Json(TaskView::from(task))))
}

/// Get one task.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get_task(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(TaskPath {
        user_id,
        task_id: id,
    }): ApiPath<TaskPath>,
) -> ApiResult<Json<TaskView>> {
    let user = auth.require(&user_id)?;
    let task = service::get(&state, user, &id).await?;
    Ok(Json(task.into()))
}

/// List tasks: search, filter, sort and page.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    params(UserPath, ListParams),
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "One page of tasks", body = TaskPageView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(UserPath { user_id }): ApiPath<UserPath>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<TaskPageView>> {
    let user = auth.require(&user_id)?;
    Ok(Json(service::list(&state, user, params).await?))
}

/// Replace a task: absent optional fields take their defaults.
#[utoipa::path(
    put,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    request_body = TaskInput,
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "The task after the change; an event is published only if something changed", body = TaskView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn replace_task(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(TaskPath {
        user_id,
        task_id: id,
    }): ApiPath<TaskPath>,
    ApiJson(input): ApiJson<TaskInput>,
) -> ApiResult<Json<TaskView>> {
    // Parsed before the user is checked, as it always was: a bad body is a 400 either way.
    let patch = input.into_replacement()?;
    let user = auth.require(&user_id)?;
    Ok(Json(service::apply(&state, user, &id, patch).await?.into()))
}

/// Change some fields of a task (`null` clears `due_at` or `recurrence`).
#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    request_body = TaskPatchInput,
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "The task after the change; an event is published only if something changed", body = TaskView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn patch_task(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(TaskPath {
        user_id,
        task_id: id,
    }): ApiPath<TaskPath>,
    ApiJson(input): ApiJson<TaskPatchInput>,
) -> ApiResult<Json<TaskView>> {
    let user = auth.require(&user_id)?;
    Ok(Json(service::patch(&state, user, &id, input).await?.into()))
}

/// Complete a task (`task.completed`; a recurring task's next instance follows).
#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks/{task_id}/complete",
    tag = "tasks",
    params(TaskPath),
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "The completed task", body = TaskView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn complete_task(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(TaskPath {
        user_id,
        task_id: id,
    }): ApiPath<TaskPath>,
) -> ApiResult<Json<TaskView>> {
    let user = auth.require(&user_id)?;
    Ok(Json(
        service::set_completed(&state, user, &id, true)
            .await?
            .into(),
    ))
}

/// Reopen a completed task (published as `task.updated`).
#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks/{task_id}/reopen",
    tag = "tasks",
    params(TaskPath),
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "The reopened task", body = TaskView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn reopen_task(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(TaskPath {
        user_id,
        task_id: id,
    }): ApiPath<TaskPath>,
) -> ApiResult<Json<TaskView>> {
    let user = auth.require(&user_id)?;
    Ok(Json(
        service::set_completed(&state, user, &id, false)
            .await?
            .into(),
    ))
}

/// Delete a task (`task.deleted` carries its last state).
#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks/{task_id}",
    tag = "tasks",
    params(TaskPath),
    security(("bearer_jwt" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 410, response = Gone),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete_task(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(TaskPath {
        user_id,
        task_id: id,
    }): ApiPath<TaskPath>,
) -> ApiResult<StatusCode> {
    let user = auth.require(&user_id)?;
    service::delete(&state, user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete the account: every task is deleted (one `task.deleted` each) and the user is
/// marked deleted, so later writes get 410.
#[utoipa::path(
    delete,
    path = "/api/{user_id}",
    tag = "account",
    params(UserPath),
    security(("bearer_jwt" = [])),
    responses(
        (status = 204, description = "Deleted (also when there was nothing to delete)"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete_account(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(UserPath { user_id }): ApiPath<UserPath>,
) -> ApiResult<StatusCode> {
    let user = auth.require(&user_id)?;
    service::delete_account(&state, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: ready when the database answers and the outbox relay is not stuck (a stall
/// its watchdog's restart did not clear).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "The database does not answer, or the outbox relay is stalled", body = Object,
            example = json!({"status": "unavailable", "reason": "database"})),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let unavailable = |reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "reason": reason })),
        )
    };
    if let Err(e) = state.tasks.db().execute_unprepared("SELECT 1").await {
        tracing::warn!(error = %e, "readiness: database unavailable");
        return unavailable("database");
    }
    if state.relay.as_ref().is_some_and(|r| !r.ready()) {
        return unavailable("outbox relay stalled");
    }
    (
        StatusCode::OK,
        Json(serde_json::json!({ "status": "ready" })),
    )
}

/// The relay's backlog (pending events, the oldest one's age, parked events), which
/// replica's relay publishes (the publisher lock's holder, and whether that is this
/// process's), this relay's watchdog (whether it is stalled, and how often it restarted),
/// and how many events each dead-letter topic holds that were not replayed.
#[utoipa::path(
    get,
    path = "/relay/status",
    tag = "operations",
    responses(
        (status = 200, description = "The outbox backlog and the publishing relay", body = Object,
            example = json!({"pending": 0, "oldest_pending_age_ms": null, "parked": 0,
                "publisher": "relay-0192f0c1-e2d3-7b5a-8c7d-6e5f4a3b2c1d", "publishing_here": true,
                "stalled": false, "stalled_for_ms": null, "watchdog_restarts": 0,
                "dead_letters": {"task-events-dlq": 0, "reminders-dlq": 0}})),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn relay_status(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let now = Utc::now();
    let (backlog, publisher, held) = tokio::try_join!(
        state.outbox.backlog(),
        todo_store::PublisherLock::current_holder(state.tasks.db(), state.database_url.expose()),
        crate::dead_letters::held_per_topic(&state.dead_letters)
    )?;
    let dead_letters: serde_json::Map<String, serde_json::Value> = held
        .into_iter()
        .map(|(dlq, n)| (dlq.to_owned(), n.into()))
        .collect();
    let oldest_age_ms = backlog
        .oldest_created_at
        .map(|t| (now - t).num_milliseconds().max(0));
    let here = state.relay.as_ref().map(|r| r.view());
    Ok(Json(serde_json::json!({
        "pending": backlog.pending,
        "oldest_pending_age_ms": oldest_age_ms,
        "parked": backlog.parked,
        "publisher": publisher,
        "publishing_here": here.as_ref().is_some_and(|h| publisher.as_deref() == Some(h.holder.as_str())),
        "stalled": here.as_ref().is_some_and(|h| h.stalled_for.is_some()),
        "stalled_for_ms": here.as_ref().and_then(|h| h.stalled_for).map(|d| d.as_millis() as u64),
        "watchdog_restarts": here.as_ref().map_or(0, |h| h.restarts),
        "dead_letters": dead_letters,
    })))
}

/// Any path the API does not serve.
pub async fn fallback() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// A handler that panicked gets the API's opaque 500 (the panic is logged once) instead of
/// a dropped connection.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let why = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(format!("handler panicked: {why}")).into_response()
}

/// A served path with a method it does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this path does not serve that method",
    )
}
