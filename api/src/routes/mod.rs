//! HTTP handlers: extract, authorize, parse into domain values (`crate::dto`), call the shared task service ([`crate::service`], also
//! behind the MCP tools), map to a view.
//!
//! Each handler's `#[utoipa::path]` annotation is its entry in the OpenAPI document, and
//! [`table`] registers it with the router and the document together.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use chrono::Utc;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::AuthUser,
    dto::{
        ListParams, TaskInput, TaskPageView, TaskPatchInput, TaskPath, TaskView, UserPath,
        parse_task_id,
    },
    error::{ApiError, ApiResult, ErrorCode},
    extract::{ApiJson, ApiPath, ApiQuery},
    openapi::{
        BadRequest, Conflict, Forbidden, Gone, NotFound, PayloadTooLarge, Unauthorized,
        Unavailable, UnsupportedMediaType,
    },
    service,
    state::AppState,
};

pub mod docs;
pub mod operations;

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
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        .routes(routes!(operations::relay_status))
        .routes(routes!(operations::metrics))
        .routes(routes!(docs::openapi_json))
        .routes(routes!(docs::docs_page))
        .routes(routes!(crate::web::page))
        .routes(routes!(crate::web::script))
        .routes(routes!(crate::web::styles))
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
    let new = input.into_creation()?;
    let task = service::create(&state, user, new).await?;
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
    let task = service::get(&state, user, parse_task_id(&id)?).await?;
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
    let query = params.into_query(Utc::now())?;
    let page = service::list(&state, user, &query).await?;
    Ok(Json(TaskPageView::new(page, &query)))
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
    // Parsed before the user is checked: a bad body is a 400 either way.
    let patch = input.into_replacement()?;
    let user = auth.require(&user_id)?;
    let id = parse_task_id(&id)?;
    Ok(Json(service::apply(&state, user, id, patch).await?.into()))
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
    let id = parse_task_id(&id)?;
    let task = service::change(&state, user, id, |current| input.into_patch(current)).await?;
    Ok(Json(task.into()))
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
        service::set_completed(&state, user, parse_task_id(&id)?, true)
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
        service::set_completed(&state, user, parse_task_id(&id)?, false)
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
    service::delete(&state, user, parse_task_id(&id)?).await?;
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

/// Any path the API does not serve.
pub async fn fallback() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// A handler that panicked gets the API's opaque 500 (the panic is logged once) instead of
/// a dropped connection.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let why = service_kit::skeleton::panic_message(&*panic);
    ApiError::internal(format!("handler panicked: {why}")).into_response()
}

/// A served path with a method it does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this path does not serve that method",
    )
}
