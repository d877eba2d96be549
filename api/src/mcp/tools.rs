//! The task tools. Each one calls [`crate::service`] exactly as its REST handler does, as the
//! caller that [`super::authenticate`] put in the HTTP request's extensions.
//!
//! The tools' bodies are the free functions [`add_task`] ... [`delete_task`], and [`call`]
//! runs one by name: the MCP server and the chat ([`crate::chat`]) run the same code, and the
//! chat offers the model the tools exactly as `tools/list` describes them ([`TaskTools::list`]).

use axum::http::request::Parts;
use chrono::Utc;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{common::FromContextPart, router::tool::ToolRouter, tool::ToolCallContext},
    model::{CallToolRequestParams, CallToolResponse, CallToolResult, ErrorCode},
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::Serialize;
use todo_domain::{TaskSnapshot, UserId};
use tracing::Instrument as _;

use super::{
    args::{AddTaskArgs, Parameters, TaskIdArgs, ToolArguments, UpdateTaskArgs},
    output,
};
use crate::{
    auth::AuthUser,
    dto::{ListParams, TaskPageView, parse_task_id},
    error::ApiError,
    service::{self, ServiceError},
    state::AppState,
};

/// How a tool call changed a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Created,
    Updated,
    Completed,
    Deleted,
}

/// A task a tool call changed: what happened, and the task after it (its last state when
/// deleted).
#[derive(Debug, Clone)]
pub struct TaskChange {
    pub action: ChangeAction,
    pub task: TaskSnapshot,
}

/// What a tool call did: the result its caller sees, and the task it changed, if any.
pub struct Outcome {
    pub result: CallToolResult,
    pub change: Option<TaskChange>,
}

impl Outcome {
    fn changed(result: CallToolResult, action: ChangeAction, task: TaskSnapshot) -> Self {
        Self {
            result,
            change: Some(TaskChange { action, task }),
        }
    }

    fn unchanged(result: CallToolResult) -> Self {
        Self {
            result,
            change: None,
        }
    }
}

/// Why a tool call failed: its arguments did not parse into domain values, or the task
/// operation refused. Either comes back as a tool error the model can act on.
enum Failure {
    Arguments(ApiError),
    Operation(ServiceError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self::Arguments(e)
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        Self::Operation(e)
    }
}

/// A tool's body, with its failure as a tool error.
async fn run(body: impl Future<Output = Result<Outcome, Failure>>) -> Outcome {
    body.await.unwrap_or_else(|failure| {
        Outcome::unchanged(match failure {
            Failure::Arguments(e) => output::error(&e),
            Failure::Operation(e) => output::failed(&e),
        })
    })
}

pub async fn add_task(state: &AppState, user: &UserId, args: AddTaskArgs) -> Outcome {
    run(async {
        let new = args.0.into_creation()?;
        let task = service::create(state, user, new).await?;
        Ok(Outcome::changed(
            output::task("Created", task.clone()),
            ChangeAction::Created,
            task,
        ))
    })
    .await
}

pub async fn list_tasks(state: &AppState, user: &UserId, args: ListParams) -> Outcome {
    run(async {
        let query = args.into_query(Utc::now())?;
        let page = service::list(state, user, &query).await?;
        Ok(Outcome::unchanged(output::page(TaskPageView::new(
            page, &query,
        ))))
    })
    .await
}

pub async fn update_task(state: &AppState, user: &UserId, args: UpdateTaskArgs) -> Outcome {
    run(async {
        let id = parse_task_id(&args.task_id)?;
        let task = service::change(state, user, id, |current| {
            Ok::<_, Failure>(args.change.into_patch(current)?)
        })
        .await?;
        Ok(Outcome::changed(
            output::task("Updated", task.clone()),
            ChangeAction::Updated,
            task,
        ))
    })
    .await
}

pub async fn complete_task(state: &AppState, user: &UserId, args: TaskIdArgs) -> Outcome {
    run(async {
        let id = parse_task_id(&args.task_id)?;
        let task = service::set_completed(state, user, id, true).await?;
        Ok(Outcome::changed(
            output::task("Completed", task.clone()),
            ChangeAction::Completed,
            task,
        ))
    })
    .await
}

pub async fn delete_task(state: &AppState, user: &UserId, args: TaskIdArgs) -> Outcome {
    run(async {
        let id = parse_task_id(&args.task_id)?;
        let task = service::delete(state, user, id).await?;
        Ok(Outcome::changed(
            output::deleted(task.clone()),
            ChangeAction::Deleted,
            task,
        ))
    })
    .await
}

/// Runs the tool `name` with `arguments` (the call's JSON object) as `user`. Arguments that
/// do not fit the tool, and unknown tools, come back as tool errors that say so.
pub async fn call(
    state: &AppState,
    user: &UserId,
    name: &str,
    arguments: serde_json::Value,
) -> Outcome {
    async fn with<T: ToolArguments, F: Future<Output = Outcome>>(
        name: &str,
        arguments: serde_json::Value,
        run: impl FnOnce(T) -> F,
    ) -> Outcome {
        match T::from_arguments(arguments) {
            Ok(args) => run(args).await,
            Err(why) => Outcome::unchanged(output::bad_arguments(name, &why)),
        }
    }
    match name {
        "add_task" => with(name, arguments, |a| add_task(state, user, a)).await,
        "list_tasks" => with(name, arguments, |a| list_tasks(state, user, a)).await,
        "update_task" => with(name, arguments, |a| update_task(state, user, a)).await,
        "complete_task" => with(name, arguments, |a| complete_task(state, user, a)).await,
        "delete_task" => with(name, arguments, |a| delete_task(state, user, a)).await,
        unknown => Outcome::unchanged(output::unknown_tool(unknown)),
    }
}

/// The MCP server: the task tools over the service's state. Cheap to clone (one per request).
#[derive(Clone)]
pub struct TaskTools {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

/// The authenticated caller of a tool call.
pub struct Caller(pub UserId);

fn caller(context: &RequestContext<RoleServer>) -> Option<UserId> {
    context
        .extensions
        .get::<Parts>()
        .and_then(|parts| parts.extensions.get::<AuthUser>())
        .map(|auth| auth.0.clone())
}

impl<S> FromContextPart<ToolCallContext<'_, S>> for Caller {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        // Only reachable when the service is mounted without `authenticate`: a server bug,
        // never the caller's mistake.
        caller(&context.request_context).map(Caller).ok_or_else(|| {
            ErrorData::internal_error("the MCP request carries no authenticated user", None)
        })
    }
}

#[tool_router]
impl TaskTools {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            tool_router: Self::tool_router(),
        }
    }

    /// The tools as `tools/list` describes them: names, descriptions, input schemas.
    pub fn list() -> Vec<rmcp::model::Tool> {
        Self::tool_router().list_all()
    }

    /// Create a task for the signed-in user and return it; its `id` is what the other tools
    /// take as `task_id`. Only `title` is required. Give `due_at` as a local time plus the
    /// user's `time_zone` (e.g. "2026-12-01T09:00" in "Europe/Berlin") or as an RFC 3339
    /// time with an offset.
    #[tool(
        annotations(title = "Add a task", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = output::task_schema()
    )]
    async fn add_task(
        &self,
        Caller(user): Caller,
        Parameters(args): Parameters<AddTaskArgs>,
    ) -> CallToolResult {
        add_task(&self.state, &user, args).await.result
    }

    /// List the signed-in user's tasks: search text, filter by status, priority, tag, due
    /// time, overdue or recurring, sort, and page. With no arguments: all tasks, oldest
    /// first, 50 per page. When `next_cursor` is not null, more tasks follow: call again
    /// with it as `cursor`.
    #[tool(
        annotations(title = "List tasks", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output::page_schema()
    )]
    async fn list_tasks(
        &self,
        Caller(user): Caller,
        Parameters(args): Parameters<ListParams>,
    ) -> CallToolResult {
        list_tasks(&self.state, &user, args).await.result
    }

    /// Change some fields of one of the user's tasks; fields left out stay as they are.
    /// `due_at: null` removes the due time, `recurrence: null` stops repetition,
    /// `completed: true` completes the task and `completed: false` reopens it. Returns the
    /// task after the change.
    #[tool(
        annotations(title = "Update a task", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output::task_schema()
    )]
    async fn update_task(
        &self,
        Caller(user): Caller,
        Parameters(args): Parameters<UpdateTaskArgs>,
    ) -> CallToolResult {
        update_task(&self.state, &user, args).await.result
    }

    /// Mark one of the user's tasks as done. If the task repeats, its next instance is
    /// created shortly afterwards (list_tasks shows it). Completing a completed task changes
    /// nothing.
    #[tool(
        annotations(title = "Complete a task", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output::task_schema()
    )]
    async fn complete_task(
        &self,
        Caller(user): Caller,
        Parameters(args): Parameters<TaskIdArgs>,
    ) -> CallToolResult {
        complete_task(&self.state, &user, args).await.result
    }

    /// Delete one of the user's tasks for good (a repeating task's later instances are not
    /// created any more). Returns the task's last state.
    #[tool(
        annotations(title = "Delete a task", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false),
        output_schema = output::deleted_schema()
    )]
    async fn delete_task(
        &self,
        Caller(user): Caller,
        Parameters(args): Parameters<TaskIdArgs>,
    ) -> CallToolResult {
        delete_task(&self.state, &user, args).await.result
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "chat-api",
    instructions = "Manages the signed-in user's todo tasks. Every tool acts only on the tasks of the user whose bearer token authorized the request. Use list_tasks to find a task's id, then pass it as task_id. Times: RFC 3339 with an offset, or a local time such as 2026-12-01T09:00 together with an IANA time_zone such as Europe/Berlin."
)]
impl ServerHandler for TaskTools {
    /// As the generated dispatcher, except that arguments a known tool cannot parse come
    /// back as a tool error naming the argument (the model can correct itself), not as a
    /// JSON-RPC error. Unknown tools stay protocol errors.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let user = caller(&context);
        // The MCP service runs the call in a task of its own: the request's trace comes along
        // in the request's extensions (put there by the router's trace middleware).
        let request_trace = context
            .extensions
            .get::<Parts>()
            .and_then(|parts| parts.extensions.get::<service_kit::TraceContext>())
            .copied();
        let span = tracing::info_span!("mcp_tool", trace_id = tracing::field::Empty, tool = %tool, user_id = user.as_ref().map_or("", UserId::as_str));
        let trace = service_kit::trace::start(&span, request_trace);
        let known = self.tool_router.has_route(&tool);
        let call = ToolCallContext::new(self, request, context);
        let called = self.tool_router.call(call).instrument(span);
        match todo_store::trace::scope(Some(trace.to_string()), called).await {
            Err(e) if known && e.code == ErrorCode::INVALID_PARAMS => {
                tracing::debug!(tool = %tool, error = %e.message, "tool arguments refused");
                Ok(output::bad_arguments(&tool, &e.message).into())
            }
            other => other,
        }
    }
}
