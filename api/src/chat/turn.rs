//! One chat turn: send the conversation to the model with the task tools, run the tool
//! calls it asks for as the user, send their results back, until it answers in text or a
//! bound is reached; then append the turn's messages to the conversation in one write.
//!
//! Nothing is written when the model cannot be reached for the turn's first call. When it
//! becomes unreachable later, the tool calls already made stay made (their events are
//! published like any other): the turn's messages are stored and the reply says so.

use std::{sync::LazyLock, time::Instant};

use chrono::{DateTime, Utc};
use rmcp::model::CallToolResult;
use serde::Serialize;
use service_kit::conversation::{ConverseError, Message, ToolCall, ToolSpec};
use todo_domain::{TimeZone, UserId};
use todo_store::{StoreError, conversations::Target};
use tracing::Instrument as _;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Chat,
    history::{self, MessageBody, ToolCallView},
};
use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorCode},
    mcp::{
        TaskTools,
        tools::{self, TaskChange},
    },
};

/// Tool calls run per model answer; further calls in the same answer get a tool error.
pub const TOOL_CALLS_PER_STEP_MAX: usize = 16;

/// The task tools as the model is offered them: `tools/list`'s names, descriptions and
/// input schemas.
pub static TOOLS: LazyLock<Vec<ToolSpec>> = LazyLock::new(|| {
    TaskTools::list()
        .into_iter()
        .map(|tool| ToolSpec {
            name: tool.name.into_owned(),
            description: tool.description.map(|d| d.into_owned()).unwrap_or_default(),
            parameters: (*tool.input_schema).clone(),
        })
        .collect()
});

/// What a turn was asked.
pub struct TurnInput {
    pub user: UserId,
    /// The conversation to continue; a new one when `None`.
    pub conversation: Option<Uuid>,
    pub message: String,
    /// The user's zone: the system prompt gives today's date and time in it.
    pub time_zone: TimeZone,
}

/// Why a turn ended before the model answered in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// It made `CHAT_MAX_STEPS` model calls.
    MaxSteps,
    /// It lasted `CHAT_TURN_TIMEOUT_SECONDS`.
    TimeLimit,
    /// The model could not be reached after tools had run.
    ModelUnavailable,
}

/// What a turn did.
pub struct TurnOutcome {
    pub conversation_id: Uuid,
    pub reply: String,
    pub changes: Vec<TaskChange>,
    /// Model calls made.
    pub steps: u32,
    pub stopped: Option<Stopped>,
}

/// The system prompt: what the assistant does, and the user's date, time and zone now.
pub fn system_prompt(time_zone: TimeZone, now: DateTime<Utc>) -> String {
    let local = now.with_timezone(&time_zone.tz());
    format!(
        "You are the assistant of a todo app. You manage the signed-in user's tasks with the \
         tools: add_task, list_tasks, update_task, complete_task, delete_task. Use list_tasks \
         to find a task's id before you change it. The user's time zone is {zone}; it is now \
         {date} {time} there ({weekday}). Read every date and time the user gives in that zone: \
         pass due_at as a local time such as \"{date}T09:00\" together with time_zone \"{zone}\". \
         When a tool answers with an error, correct the arguments and try again, or tell the \
         user what is wrong. Answer briefly, and say what you changed.",
        zone = time_zone.name(),
        date = local.format("%Y-%m-%d"),
        time = local.format("%H:%M"),
        weekday = local.format("%A"),
    )
}

/// Runs one turn for `input.user`.
pub async fn run(state: &AppState, chat: &Chat, input: TurnInput) -> ApiResult<TurnOutcome> {
    let started = Instant::now();
    let settings = &chat.settings;
    if state.tasks.is_user_deleted(input.user.as_str()).await? {
        return Err(StoreError::UserDeleted.into());
    }
    let (target, earlier) = match input.conversation {
        Some(id) => {
            let recent = state
                .conversations
                .recent(&input.user, id, settings.history_messages)
                .await
                .map_err(|e| conversation_error(e, id))?;
            (
                Target::Existing(id),
                history::for_model(&recent, history::HISTORY_MAX_BYTES),
            )
        }
        None => (Target::New(Uuid::now_v7()), Vec::new()),
    };
    let conversation_id = match target {
        Target::Existing(id) | Target::New(id) => id,
    };
    let span =
        tracing::info_span!("chat_turn", user_id = %input.user, conversation_id = %conversation_id);
    async move {
        let mut messages = Vec::with_capacity(earlier.len() + 8);
        messages.push(Message::System(system_prompt(input.time_zone, Utc::now())));
        messages.extend(earlier);
        let user_message = MessageBody::User {
            content: input.message,
        };
        messages.push(user_message.to_model());
        let mut turn = vec![user_message];
        let mut changes = Vec::new();
        let mut steps = 0;
        let (reply, stopped) = loop {
            if steps == settings.max_steps {
                break (format!(
                    "I stopped after {steps} steps without finishing (the limit per message). {}",
                    changed_so_far(&changes)
                ), Some(Stopped::MaxSteps));
            }
            let Some(left) = settings.turn_timeout.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) else {
                break (format!(
                    "I stopped because this message took longer than {} s. {}",
                    settings.turn_timeout.as_secs(),
                    changed_so_far(&changes)
                ), Some(Stopped::TimeLimit));
            };
            steps += 1;
            let answer = chat
                .model
                .converse(&settings.component, &messages, &TOOLS, left)
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(ConverseError::Deadline(_)) if steps > 1 => {
                    break (format!(
                        "I stopped because this message took longer than {} s. {}",
                        settings.turn_timeout.as_secs(),
                        changed_so_far(&changes)
                    ), Some(Stopped::TimeLimit));
                }
                Err(e) if turn.len() == 1 => return Err(unavailable(&e, &settings.component)),
                Err(e) => {
                    tracing::warn!(error = %e, "the model became unreachable during a turn");
                    break (format!(
                        "The assistant became unavailable before it finished ({e}). {}",
                        changed_so_far(&changes)
                    ), Some(Stopped::ModelUnavailable));
                }
            };
            if answer.tool_calls.is_empty() {
                break (answer.content, None);
            }
            let calls: Vec<ToolCall> = answer
                .tool_calls
                .into_iter()
                .enumerate()
                .map(|(i, mut call)| {
                    if call.id.is_empty() {
                        call.id = format!("call_{steps}_{i}");
                    }
                    call
                })
                .collect();
            let assistant = MessageBody::Assistant {
                content: answer.content,
                tool_calls: calls
                    .iter()
                    .map(|c| ToolCallView {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        arguments: c.arguments.clone(),
                    })
                    .collect(),
            };
            messages.push(assistant.to_model());
            turn.push(assistant);
            for (i, call) in calls.into_iter().enumerate() {
                let (content, is_error) = if i >= TOOL_CALLS_PER_STEP_MAX {
                    (
                        format!(
                            "Not run: at most {TOOL_CALLS_PER_STEP_MAX} tool calls are run per answer. Call it again."
                        ),
                        true,
                    )
                } else {
                    let outcome = run_tool(state, &input.user, &call).await;
                    changes.extend(outcome.change);
                    tool_text(&outcome.result)
                };
                let result = MessageBody::Tool {
                    call_id: call.id,
                    name: call.name,
                    content,
                    is_error,
                };
                messages.push(result.to_model());
                turn.push(result);
            }
        };
        turn.push(MessageBody::Assistant {
            content: reply.clone(),
            tool_calls: Vec::new(),
        });
        state
            .conversations
            .append(
                &input.user,
                target,
                turn.iter().map(MessageBody::to_new).collect(),
                Utc::now(),
            )
            .await
            .map_err(|e| conversation_error(e, conversation_id))?;
        tracing::info!(steps, changes = changes.len(), stopped = ?stopped, "chat turn answered");
        Ok(TurnOutcome {
            conversation_id,
            reply,
            changes,
            steps,
            stopped,
        })
    }
    .instrument(span)
    .await
}

async fn run_tool(state: &AppState, user: &UserId, call: &ToolCall) -> tools::Outcome {
    let arguments = if call.arguments.trim().is_empty() {
        Ok(serde_json::Value::Object(Default::default()))
    } else {
        serde_json::from_str::<serde_json::Value>(&call.arguments)
    };
    match arguments {
        Ok(arguments) => {
            let span = tracing::info_span!("chat_tool", tool = %call.name);
            tools::call(state, user, &call.name, arguments)
                .instrument(span)
                .await
        }
        Err(e) => tools::Outcome {
            result: crate::mcp::output::bad_arguments(
                &call.name,
                &format!("the arguments are not a JSON object ({e})"),
            ),
            change: None,
        },
    }
}

/// Longest tool result the model is sent; a longer one is cut, saying so.
pub const TOOL_RESULT_MAX_BYTES: usize = 64 * 1024;

/// A tool result as the model reads it: its text, `Error: ` first when it is an error, cut
/// at [`TOOL_RESULT_MAX_BYTES`].
fn tool_text(result: &CallToolResult) -> (String, bool) {
    let text: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    let is_error = result.is_error == Some(true);
    let mut text = text.join("\n");
    if text.len() > TOOL_RESULT_MAX_BYTES {
        let mut cut = TOOL_RESULT_MAX_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!(
            "\n[cut: {dropped} more bytes. Ask for less, e.g. list_tasks with filters or a smaller limit.]"
        ));
    }
    if is_error {
        (format!("Error: {text}"), true)
    } else {
        (text, false)
    }
}

fn changed_so_far(changes: &[TaskChange]) -> String {
    match changes.len() {
        0 => "Nothing was changed.".to_owned(),
        1 => "One task was changed (see changes).".to_owned(),
        n => format!("{n} tasks were changed (see changes)."),
    }
}

fn conversation_error(e: StoreError, id: Uuid) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::new(
            ErrorCode::NotFound,
            format!("no conversation {id} among yours"),
        )
        .with_field("conversation_id"),
        other => other.into(),
    }
}

/// The 503 for a model that cannot be reached at the start of a turn: what to configure.
fn unavailable(e: &ConverseError, component: &str) -> ApiError {
    let hint = match e {
        ConverseError::Sidecar(_) => {
            "run chat-api beside its Dapr sidecar (`dapr run -f .`) with DAPR_GRPC_PORT set"
                .to_owned()
        }
        ConverseError::NoComponent { .. } => format!(
            "configure a conversation component named {component:?} (components/conversation.yaml: set CHAT_MODEL_API_KEY for OpenAI, or use one of the documented variants) or name yours in CHAT_COMPONENT"
        ),
        ConverseError::Provider(_) | ConverseError::Deadline(_) => format!(
            "check the provider, endpoint and key of the conversation component {component:?}"
        ),
    };
    tracing::warn!(error = %e, "chat unavailable");
    ApiError::new(
        ErrorCode::Unavailable,
        format!("the chat is unavailable: {e}; {hint}. Nothing was changed."),
    )
}

#[cfg(test)]
mod tests {
    use rmcp::model::ContentBlock;

    use super::*;

    #[test]
    fn the_system_prompt_gives_the_date_and_time_in_the_users_zone() {
        // 23:30 UTC on 31 December is already 1 January in Tokyo.
        let now = DateTime::parse_from_rfc3339("2026-12-31T23:30:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let tokyo = TimeZone::parse("Asia/Tokyo").expect("a zone");
        let prompt = system_prompt(tokyo, now);
        assert!(
            prompt.contains("Asia/Tokyo") && prompt.contains("2027-01-01 08:30 there (Friday)"),
            "{prompt}"
        );
        assert!(prompt.contains("\"2027-01-01T09:00\""), "{prompt}");
    }

    #[test]
    fn long_tool_results_are_cut_on_a_character_boundary_saying_so() {
        let long = "é".repeat(TOOL_RESULT_MAX_BYTES);
        let (text, is_error) = tool_text(&CallToolResult::success(vec![ContentBlock::text(long)]));
        assert!(!is_error);
        assert!(text.len() < TOOL_RESULT_MAX_BYTES + 200, "{}", text.len());
        assert!(
            text.ends_with("or a smaller limit.]"),
            "{}",
            &text[text.len() - 80..]
        );
        let (text, is_error) = tool_text(&CallToolResult::error(vec![ContentBlock::text(
            "No such task",
        )]));
        assert_eq!((text.as_str(), is_error), ("Error: No such task", true));
    }

    #[test]
    fn the_model_is_offered_the_mcp_tools() {
        let names: Vec<&str> = TOOLS.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names.len(),
            5,
            "add_task, list_tasks, update_task, complete_task, delete_task: {names:?}"
        );
        for tool in TOOLS.iter() {
            assert!(!tool.description.is_empty(), "{}", tool.name);
            assert_eq!(tool.parameters["type"], "object", "{}", tool.name);
        }
    }
}
