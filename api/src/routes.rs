//! HTTP handlers: extract, parse into domain values, call the store, map to a view.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    Json,
};
use chrono::Utc;
use sea_orm::ConnectionTrait;
use todo_store::TaskPatch;
use uuid::Uuid;

use crate::{
    auth::AuthUser,
    dto::{encode_cursor, ListParams, TaskInput, TaskPageView, TaskPatchInput, TaskView},
    error::{ApiError, ApiResult},
    extract::{ApiJson, ApiQuery},
    AppState,
};

fn task_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid("task_id", "task id must be a UUID"))
}

pub async fn create_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user_id): Path<String>,
    ApiJson(input): ApiJson<TaskInput>,
) -> ApiResult<impl IntoResponse> {
    let user = auth.require(&user_id)?;
    if input.completed.is_some() {
        return Err(ApiError::invalid("completed", "a new task cannot be created completed"));
    }
    let new = input.into_new_task()?;
    let task = state.tasks.create(user, new, Utc::now()).await?;
    state.relay_wake.notify_one();
    Ok((StatusCode::CREATED, Json(TaskView::from(task))))
}

pub async fn get_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user_id, id)): Path<(String, String)>,
) -> ApiResult<Json<TaskView>> {
    let user = auth.require(&user_id)?;
    let task = state.tasks.get(user, task_id(&id)?).await?;
    Ok(Json(task.into()))
}

pub async fn list_tasks(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user_id): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<TaskPageView>> {
    let user = auth.require(&user_id)?;
    let query = params.into_query(Utc::now())?;
    let page = state.tasks.list(user, &query).await?;
    Ok(Json(TaskPageView {
        items: page.items.into_iter().map(TaskView::from).collect(),
        next_cursor: page.next_offset.map(encode_cursor),
    }))
}

async fn apply(state: &AppState, auth: &AuthUser, user_id: &str, id: &str, patch: TaskPatch) -> ApiResult<Json<TaskView>> {
    let user = auth.require(user_id)?;
    let (task, changed) = state.tasks.update(user, task_id(id)?, patch, Utc::now()).await?;
    if changed {
        state.relay_wake.notify_one();
    }
    Ok(Json(task.into()))
}

pub async fn replace_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user_id, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<TaskInput>,
) -> ApiResult<Json<TaskView>> {
    let patch = input.into_replacement()?;
    apply(&state, &auth, &user_id, &id, patch).await
}

pub async fn patch_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user_id, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<TaskPatchInput>,
) -> ApiResult<Json<TaskView>> {
    let user = auth.require(&user_id)?;
    let current = state.tasks.get(user, task_id(&id)?).await?;
    let patch = input.into_patch(current.time_zone, current.due_at)?;
    apply(&state, &auth, &user_id, &id, patch).await
}

pub async fn complete_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user_id, id)): Path<(String, String)>,
) -> ApiResult<Json<TaskView>> {
    let patch = TaskPatch { completed: Some(true), ..TaskPatch::default() };
    apply(&state, &auth, &user_id, &id, patch).await
}

pub async fn reopen_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user_id, id)): Path<(String, String)>,
) -> ApiResult<Json<TaskView>> {
    let patch = TaskPatch { completed: Some(false), ..TaskPatch::default() };
    apply(&state, &auth, &user_id, &id, patch).await
}

pub async fn delete_task(
    State(state): State<AppState>,
    auth: AuthUser,
    Path((user_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = auth.require(&user_id)?;
    state.tasks.delete(user, task_id(&id)?, Utc::now()).await?;
    state.relay_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_account(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user_id): Path<String>,
) -> ApiResult<StatusCode> {
    let user = auth.require(&user_id)?;
    state.tasks.delete_user(user, Utc::now()).await?;
    state.relay_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.tasks.db().execute_unprepared("SELECT 1").await {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "reason": "database" })),
            )
        }
    }
}

/// The relay's backlog: how many events wait and how old the oldest is.
pub async fn relay_status(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let backlog = state.outbox.backlog().await?;
    let oldest_age_ms = backlog
        .oldest_created_at
        .map(|t| (Utc::now() - t).num_milliseconds().max(0));
    Ok(Json(serde_json::json!({
        "pending": backlog.pending,
        "oldest_pending_age_ms": oldest_age_ms,
    })))
}

pub async fn fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
