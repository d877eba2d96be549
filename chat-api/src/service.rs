//! The task operations behind both front doors, the REST handlers ([`crate::routes`]) and the
//! MCP tools ([`crate::mcp`]): parse the edge's input into domain values, call the store, and
//! wake the relay after every commit. Callers pass the already authenticated user; nothing
//! here reads HTTP, so both front doors validate, isolate users and publish events alike.

use chrono::Utc;
use todo_domain::{TaskSnapshot, UserId};
use todo_store::TaskPatch;
use uuid::Uuid;

use crate::{
    dto::{ListParams, TaskInput, TaskPageView, TaskPatchInput, TaskView, encode_cursor},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// A task id as a client wrote it.
pub fn parse_task_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid("task_id", "task id must be a UUID"))
}

/// Creates a task (`task.created`).
pub async fn create(state: &AppState, user: &UserId, input: TaskInput) -> ApiResult<TaskSnapshot> {
    if input.completed.is_some() {
        return Err(ApiError::invalid(
            "completed",
            "a new task cannot be created completed",
        ));
    }
    let new = input.into_new_task()?;
    let task = state.tasks.create(user, new, Utc::now()).await?;
    state.relay_wake.notify_one();
    Ok(task)
}

/// One of the user's tasks; another user's task is "not found".
pub async fn get(state: &AppState, user: &UserId, id: &str) -> ApiResult<TaskSnapshot> {
    Ok(state.tasks.get(user, parse_task_id(id)?).await?)
}

/// One page of the user's tasks.
pub async fn list(state: &AppState, user: &UserId, params: ListParams) -> ApiResult<TaskPageView> {
    let query = params.into_query(Utc::now())?;
    let page = state.tasks.list(user, &query).await?;
    Ok(TaskPageView {
        items: page.items.into_iter().map(TaskView::from).collect(),
        next_cursor: page
            .next
            .as_ref()
            .map(|after| encode_cursor(after, query.descending)),
    })
}

/// Applies a validated change; publishes an event only if something changed.
pub async fn apply(
    state: &AppState,
    user: &UserId,
    id: &str,
    patch: TaskPatch,
) -> ApiResult<TaskSnapshot> {
    let (task, changed) = state
        .tasks
        .update(user, parse_task_id(id)?, patch, Utc::now())
        .await?;
    if changed {
        state.relay_wake.notify_one();
    }
    Ok(task)
}

/// Changes some fields: a local `due_at` is read in the task's own zone unless the change
/// names a new one, so the stored task is read first.
pub async fn patch(
    state: &AppState,
    user: &UserId,
    id: &str,
    input: TaskPatchInput,
) -> ApiResult<TaskSnapshot> {
    let current = state.tasks.get(user, parse_task_id(id)?).await?;
    let patch = input.into_patch(&current)?;
    apply(state, user, id, patch).await
}

/// Completes (`task.completed`) or reopens (`task.updated`) a task; no event when it already
/// was so.
pub async fn set_completed(
    state: &AppState,
    user: &UserId,
    id: &str,
    completed: bool,
) -> ApiResult<TaskSnapshot> {
    let patch = TaskPatch {
        completed: Some(completed),
        ..TaskPatch::default()
    };
    apply(state, user, id, patch).await
}

/// Deletes a task (`task.deleted`); returns its last state.
pub async fn delete(state: &AppState, user: &UserId, id: &str) -> ApiResult<TaskSnapshot> {
    let task = state
        .tasks
        .delete(user, parse_task_id(id)?, Utc::now())
        .await?;
    state.relay_wake.notify_one();
    Ok(task)
}

/// Deletes every task of the user (one `task.deleted` each) and the account.
pub async fn delete_account(state: &AppState, user: &UserId) -> ApiResult<()> {
    state.tasks.delete_user(user, Utc::now()).await?;
    state.relay_wake.notify_one();
    Ok(())
}
