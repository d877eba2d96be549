//! The task operations behind both front doors, the REST handlers ([`crate::routes`]) and the
//! MCP tools ([`crate::mcp`]). They take domain values the edge has already parsed (a
//! [`NewTask`], a [`TaskPatch`], a [`ListQuery`], a task id) and the authenticated user, call
//! the store, and wake the relay after every commit. They fail with [`ServiceError`], which
//! each front door maps to its own answer: an error response for REST
//! (`From<ServiceError> for ApiError`), a tool error for MCP ([`crate::mcp::output`]).

use chrono::Utc;
use todo_domain::{TaskSnapshot, UserId};
use todo_store::{ListQuery, NewTask, Page, TaskPatch};
use uuid::Uuid;

use crate::state::AppState;

pub use crate::service_error::{ServiceError, ServiceResult};

/// Creates a task (`task.created`).
pub async fn create(state: &AppState, user: &UserId, new: NewTask) -> ServiceResult<TaskSnapshot> {
    let task = state.tasks.create(user, new, Utc::now()).await?;
    state.relay_wake.notify_one();
    Ok(task)
}

/// One of the user's tasks; another user's task is "not found".
pub async fn get(state: &AppState, user: &UserId, id: Uuid) -> ServiceResult<TaskSnapshot> {
    Ok(state.tasks.get(user, id).await?)
}

/// One page of the user's tasks.
pub async fn list(state: &AppState, user: &UserId, query: &ListQuery) -> ServiceResult<Page> {
    Ok(state.tasks.list(user, query).await?)
}

/// Applies a validated change; publishes an event only if something changed.
pub async fn apply(
    state: &AppState,
    user: &UserId,
    id: Uuid,
    patch: TaskPatch,
) -> ServiceResult<TaskSnapshot> {
    let (task, changed) = state.tasks.update(user, id, patch, Utc::now()).await?;
    if changed {
        state.relay_wake.notify_one();
    }
    Ok(task)
}

/// Changes a task as `change` says, given the task as stored: a change that depends on the
/// task (a local `due_at` is read in the task's own zone unless the change names a new
/// one) is worked out from it, then applied like [`apply`]. `change` fails in the caller's
/// own error type, which a [`ServiceError`] converts into.
pub async fn change<E: From<ServiceError>>(
    state: &AppState,
    user: &UserId,
    id: Uuid,
    change: impl FnOnce(&TaskSnapshot) -> Result<TaskPatch, E>,
) -> Result<TaskSnapshot, E> {
    let current = match get(state, user, id).await {
        // A write to a deleted account is refused as such (410), whichever task it names:
        // its tasks are gone with it.
        Err(ServiceError::NotFound)
            if state
                .tasks
                .is_user_deleted(user.as_str())
                .await
                .map_err(ServiceError::from)? =>
        {
            return Err(ServiceError::UserDeleted.into());
        }
        found => found?,
    };
    let patch = change(&current)?;
    Ok(apply(state, user, id, patch).await?)
}

/// Completes (`task.completed`) or reopens (`task.updated`) a task; no event when it already
/// was so.
pub async fn set_completed(
    state: &AppState,
    user: &UserId,
    id: Uuid,
    completed: bool,
) -> ServiceResult<TaskSnapshot> {
    let patch = TaskPatch {
        completed: Some(completed),
        ..TaskPatch::default()
    };
    apply(state, user, id, patch).await
}

/// Deletes a task (`task.deleted`); returns its last state.
pub async fn delete(state: &AppState, user: &UserId, id: Uuid) -> ServiceResult<TaskSnapshot> {
    let task = state.tasks.delete(user, id, Utc::now()).await?;
    state.relay_wake.notify_one();
    Ok(task)
}

/// Deletes every task of the user (one `task.deleted` each) and the account.
pub async fn delete_account(state: &AppState, user: &UserId) -> ServiceResult<()> {
    state.tasks.delete_user(user, Utc::now()).await?;
    state.relay_wake.notify_one();
    Ok(())
}
