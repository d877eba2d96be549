//! The chat's HTTP routes: a turn (`POST /api/{user_id}/chat`) and a conversation's history
//! (`GET` and `DELETE /api/{user_id}/conversations/{conversation_id}`). Same bearer auth and
//! user isolation as the task routes; registered in [`crate::routes::table`].

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    MESSAGE_MAX_CHARS,
    history::MessageBody,
    turn::{self, Stopped, TurnInput},
};
use crate::{
    auth::AuthUser,
    dto::{TaskView, UserPath, parse_time_zone, text_without_nul},
    error::{ApiError, ApiResult, ErrorCode},
    extract::{ApiJson, ApiPath, ApiQuery},
    mcp::tools::ChangeAction,
    openapi::{
        BadRequest, Conflict, Forbidden, Gone, NotFound, PayloadTooLarge, Unauthorized,
        Unavailable, UnsupportedMediaType, UserIdSchema,
    },
    state::AppState,
};

/// Body of `POST /api/{user_id}/chat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": "Remind me to water the plants every Monday at 9", "time_zone": "Europe/Berlin"}))]
pub struct ChatInput {
    /// What the user says: 1 to 4000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 4000)]
    pub message: String,
    /// The conversation to continue (from an earlier answer); a new one when absent.
    #[serde(default)]
    #[schema(nullable)]
    pub conversation_id: Option<Uuid>,
    /// The user's IANA time zone, e.g. "Europe/Berlin": "tomorrow at 9" means 9 there.
    /// `UTC` when absent.
    #[serde(default)]
    #[schema(nullable, example = "Europe/Berlin")]
    pub time_zone: Option<String>,
}

/// A task the turn changed: how, and the task after it (as the task routes show it; its
/// last state when deleted).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskChangeView {
    pub action: ChangeAction,
    pub task: TaskView,
}

/// The answer to a chat turn.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatReply {
    /// Pass it back to continue the conversation.
    pub conversation_id: Uuid,
    /// The assistant's answer.
    pub reply: String,
    /// Every task change the turn made, in order. Each one published its event, as the same
    /// change through the task routes does.
    pub changes: Vec<TaskChangeView>,
    /// Model calls the turn made.
    pub steps: u32,
    /// Set when the turn ended before the model answered in text: its step or time bound
    /// was reached, or the model became unreachable after tools had run.
    #[schema(nullable)]
    pub stopped: Option<Stopped>,
}

/// Path of `/api/{user_id}/conversations/{conversation_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConversationPath {
    /// The user whose conversation it is; must be the token's subject.
    #[param(value_type = UserIdSchema)]
    pub user_id: String,
    /// The conversation's id. Parsed by the handler, so a malformed id gets the API's 400.
    #[param(value_type = Uuid)]
    pub conversation_id: String,
}

/// One message of a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    /// Its place in the conversation, from 0.
    pub seq: i32,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: MessageBody,
}

/// A conversation with its messages, oldest first, a page at a time.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub messages: Vec<MessageView>,
    /// Pass as `after` for the next page; `null` on the last page.
    #[schema(nullable)]
    pub next_after: Option<i32>,
}

/// Query of `GET /api/{user_id}/conversations/{conversation_id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Only messages after this `seq` (from an earlier page's `next_after`).
    #[param(minimum = -1)]
    pub after: Option<i32>,
    /// Messages per page: 1 to 500, 100 when absent.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

/// Query of `GET /api/{user_id}/conversations`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationsQuery {
    /// How many: 1 to 200, 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// One of the user's conversations, without its messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationSummaryView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub message_count: i32,
}

/// The user's conversations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationsView {
    pub items: Vec<ConversationSummaryView>,
}

fn limit(raw: Option<u64>, default: u64, max: u64) -> ApiResult<u64> {
    match raw.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_query(format!(
            "limit must be between 1 and {max}"
        ))),
    }
}

/// Talk to the assistant, which manages the user's tasks with the task tools.
///
/// The model is reached through the Dapr sidecar's Conversation API. A turn may make task
/// changes (each publishes its event); they are listed in `changes`.
#[utoipa::path(
    post,
    path = "/api/{user_id}/chat",
    tag = "chat",
    operation_id = "chat",
    params(UserPath),
    request_body = ChatInput,
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "The assistant's answer and the changes the turn made", body = ChatReply),
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
pub async fn chat(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(UserPath { user_id }): ApiPath<UserPath>,
    ApiJson(input): ApiJson<ChatInput>,
) -> ApiResult<Json<ChatReply>> {
    let user = auth.require(&user_id)?.clone();
    let message = input.message.trim();
    if message.is_empty() {
        return Err(ApiError::invalid("message", "message is empty"));
    }
    let chars = message.chars().count();
    if chars > MESSAGE_MAX_CHARS {
        return Err(ApiError::invalid(
            "message",
            format!("message has {chars} characters; at most {MESSAGE_MAX_CHARS} are accepted"),
        ));
    }
    text_without_nul("message", message)?;
    let time_zone = parse_time_zone(input.time_zone.as_deref())?;
    let input = TurnInput {
        user,
        conversation: input.conversation_id,
        message: message.to_owned(),
        time_zone,
    };
    // A turn runs to its end even when the client goes away meanwhile (a timeout, a closed
    // tab): its tool calls may already have changed tasks, and the conversation must record
    // them. It is bounded by CHAT_TURN_TIMEOUT_SECONDS.
    let Some(permit) = state.chat.admit() else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "the chat is busy: {} turns are running in this process (CHAT_MAX_TURNS); retry shortly",
                state.chat.settings.max_turns
            ),
        ));
    };
    // The turn's task continues the request's trace (its writes' events carry it) and logs
    // inside the request's span.
    let traceparent = todo_store::trace::current();
    let turn = tokio::spawn(
        todo_store::trace::scope(traceparent, async move {
            let outcome = turn::run(&state, &state.chat, input).await;
            drop(permit);
            outcome
        })
        .instrument(tracing::Span::current()),
    );
    let outcome = turn.await.map_err(ApiError::internal)??;
    Ok(Json(ChatReply {
        conversation_id: outcome.conversation_id,
        reply: outcome.reply,
        changes: outcome
            .changes
            .into_iter()
            .map(|c| TaskChangeView {
                action: c.action,
                task: c.task.into(),
            })
            .collect(),
        steps: outcome.steps,
        stopped: outcome.stopped,
    }))
}

fn parse_conversation_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid("conversation_id", "conversation id must be a UUID"))
}

/// The user's conversations, the most recently active first.
#[utoipa::path(
    get,
    path = "/api/{user_id}/conversations",
    tag = "chat",
    params(UserPath, ConversationsQuery),
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "The conversations", body = ConversationsView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list_conversations(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(UserPath { user_id }): ApiPath<UserPath>,
    ApiQuery(query): ApiQuery<ConversationsQuery>,
) -> ApiResult<Json<ConversationsView>> {
    let user = auth.require(&user_id)?;
    let limit = limit(query.limit, 50, 200)?;
    let items = state
        .conversations
        .list(user, limit)
        .await?
        .into_iter()
        .map(|c| ConversationSummaryView {
            id: c.id,
            created_at: c.created_at,
            updated_at: c.updated_at,
            message_count: c.message_count,
        })
        .collect();
    Ok(Json(ConversationsView { items }))
}

/// A conversation's messages, a page at a time: the user's, the assistant's (with its tool
/// calls) and the tool results.
#[utoipa::path(
    get,
    path = "/api/{user_id}/conversations/{conversation_id}",
    tag = "chat",
    params(ConversationPath, MessagesQuery),
    security(("bearer_jwt" = [])),
    responses(
        (status = 200, description = "The conversation", body = ConversationView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get_conversation(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(path): ApiPath<ConversationPath>,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> ApiResult<Json<ConversationView>> {
    let user = auth.require(&path.user_id)?;
    let id = parse_conversation_id(&path.conversation_id)?;
    let limit = limit(query.limit, 100, 500)?;
    let (conversation, more) = state
        .conversations
        .get(user, id, query.after, limit)
        .await
        .map_err(|e| turn::conversation_error(e, id))?;
    let next_after = more
        .then(|| conversation.messages.last().map(|m| m.seq))
        .flatten();
    Ok(Json(ConversationView {
        id: conversation.id,
        created_at: conversation.created_at,
        updated_at: conversation.updated_at,
        messages: conversation
            .messages
            .iter()
            .filter_map(|m| {
                MessageBody::from_stored(m).map(|body| MessageView {
                    seq: m.seq,
                    created_at: m.created_at,
                    body,
                })
            })
            .collect(),
        next_after,
    }))
}

/// Delete a conversation and its messages (the tasks it changed stay as they are).
#[utoipa::path(
    delete,
    path = "/api/{user_id}/conversations/{conversation_id}",
    tag = "chat",
    params(ConversationPath),
    security(("bearer_jwt" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 410, response = Gone),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete_conversation(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(path): ApiPath<ConversationPath>,
) -> ApiResult<StatusCode> {
    let user = auth.require(&path.user_id)?;
    let id = parse_conversation_id(&path.conversation_id)?;
    if state.tasks.is_user_deleted(user.as_str()).await? {
        return Err(todo_store::StoreError::UserDeleted.into());
    }
    state
        .conversations
        .delete(user, id)
        .await
        .map_err(|e| turn::conversation_error(e, id))?;
    Ok(StatusCode::NO_CONTENT)
}
