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
    error::{ApiError, ApiResult, ErrorCode},
    mcp::{
        TaskTools,
        tools::{self, TaskChange},
    },
    state::AppState,
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
    /// Its tool results grew past what one turn may send the model.
    SizeLimit,
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
         pass due_at as a local time such as \"{date}T09:00\" together with time_zone \"{zone}\", \
         or as a date alone (\"{date}\") when the user names a day but no time. \
         When a tool answers with an error, correct the arguments and try again, or tell the \
         user what is wrong. Answer briefly, and say what you changed.",
        zone = time_zone.name(),
        date = local.format("%Y-%m-%d"),
        time = local.format("%H:%M"),
        weekday = local.format("%A"),
    )
}

/// How much longer than the turn's own bound its lease on the conversation lasts: a
/// replica that dies mid-turn holds the conversation at most this much longer.
const LEASE_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// What the turn's new messages may add up to (bytes of text and tool arguments) before it
/// stops: with the earlier messages' 256 KiB it keeps every model call well inside what the
/// sidecar takes (4 MiB gRPC messages).
pub const TURN_MAX_BYTES: usize = 1024 * 1024;

/// Longest assistant text or tool-call arguments kept from the model; the rest is cut.
pub const MODEL_TEXT_MAX_BYTES: usize = 64 * 1024;

/// Writes a turn's messages as they happen: the user's message together with the model's
/// first answer (so a turn whose first model call fails writes nothing), then each answer
/// before its tool calls run and their results once they ran. A conversation therefore
/// always shows what its tool calls changed, whatever stops the turn later.
struct Recorder<'a> {
    state: &'a AppState,
    user: &'a UserId,
    target: Target,
    turn_until: DateTime<Utc>,
    pending: Vec<MessageBody>,
    /// Whether anything of this turn was written.
    wrote: bool,
}

impl Recorder<'_> {
    fn id(&self) -> Uuid {
        match self.target {
            Target::Existing(id) | Target::New(id) => id,
        }
    }

    async fn write(&mut self) -> ApiResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.state
            .conversations
            .append(
                self.user,
                self.target,
                self.pending.iter().map(MessageBody::to_new).collect(),
                Utc::now(),
                Some(self.turn_until),
            )
            .await
            .map_err(|e| conversation_error(e, self.id()))?;
        self.pending.clear();
        self.target = Target::Existing(self.id());
        self.wrote = true;
        Ok(())
    }

    /// Ends the turn's hold on the conversation (also after an error).
    async fn release(&self) {
        if matches!(self.target, Target::Existing(_))
            && let Err(e) = self
                .state
                .conversations
                .end_turn(self.user, self.id())
                .await
        {
            tracing::warn!(error = %e, "could not end the turn's hold on the conversation (it lapses by itself)");
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, saying how much was cut.
fn cut(mut text: String, max: usize, hint: &str) -> String {
    if text.len() <= max {
        return text;
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let dropped = text.len() - at;
    text.truncate(at);
    text.push_str(&format!("\n[cut: {dropped} more bytes.{hint}]"));
    text
}

/// Runs one turn for `input.user`.
pub async fn run(state: &AppState, chat: &Chat, input: TurnInput) -> ApiResult<TurnOutcome> {
    let started = Instant::now();
    let settings = &chat.settings;
    if state.tasks.is_user_deleted(input.user.as_str()).await? {
        return Err(StoreError::UserDeleted.into());
    }
    let now = Utc::now();
    let turn_until = now
        + chrono::Duration::from_std(settings.turn_timeout).unwrap_or(chrono::Duration::MAX)
        + LEASE_MARGIN;
    let (target, earlier) = match input.conversation {
        Some(id) => {
            state
                .conversations
                .begin_turn(&input.user, id, now, turn_until)
                .await
                .map_err(|e| conversation_error(e, id))?;
            let recent = state
                .conversations
                .recent(&input.user, id, settings.history_messages)
                .await
                .map_err(|e| conversation_error(e, id));
            let recent = match recent {
                Ok(recent) => recent,
                Err(e) => {
                    let _ = state.conversations.end_turn(&input.user, id).await;
                    return Err(e);
                }
            };
            (
                Target::Existing(id),
                history::for_model(&recent, history::HISTORY_MAX_BYTES),
            )
        }
        None => (Target::New(Uuid::now_v7()), Vec::new()),
    };
    let mut recorder = Recorder {
        state,
        user: &input.user,
        target,
        turn_until,
        pending: Vec::new(),
        wrote: false,
    };
    let span =
        tracing::info_span!("chat_turn", user_id = %input.user, conversation_id = %recorder.id());
    let outcome = converse(chat, &input, earlier, &mut recorder, started)
        .instrument(span)
        .await;
    recorder.release().await;
    outcome
}

/// The turn's loop: model calls and tool calls until a text answer or a bound.
async fn converse(
    chat: &Chat,
    input: &TurnInput,
    earlier: Vec<Message>,
    recorder: &mut Recorder<'_>,
    started: Instant,
) -> ApiResult<TurnOutcome> {
    let settings = &chat.settings;
    let state = recorder.state;
    let mut messages = Vec::with_capacity(earlier.len() + 8);
    messages.push(Message::System(system_prompt(input.time_zone, Utc::now())));
    messages.extend(earlier);
    let user_message = MessageBody::User {
        content: input.message.clone(),
    };
    messages.push(user_message.to_model());
    recorder.pending.push(user_message);
    let mut turn_bytes = input.message.len();
    let mut changes = Vec::new();
    let mut steps = 0;
    let stopped_because =
        |why: String, changes: &[TaskChange]| format!("{why} {}", changed_so_far(changes));
    let out_of_time = |changes: &[TaskChange]| {
        stopped_because(
            format!(
                "I stopped because this message took longer than {} s.",
                settings.turn_timeout.as_secs()
            ),
            changes,
        )
    };
    let (reply, stopped) = loop {
        if steps == settings.max_steps {
            break (
                stopped_because(
                    format!(
                        "I stopped after {steps} steps without finishing (the limit per message)."
                    ),
                    &changes,
                ),
                Some(Stopped::MaxSteps),
            );
        }
        if turn_bytes > TURN_MAX_BYTES {
            break (
                stopped_because("I stopped because this message's tool results grew too long; ask for less at a time.".to_owned(), &changes),
                Some(Stopped::SizeLimit),
            );
        }
        let Some(left) = settings
            .turn_timeout
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            break (out_of_time(&changes), Some(Stopped::TimeLimit));
        };
        steps += 1;
        let answer = match chat
            .model
            .converse(&settings.component, &messages, &TOOLS, left)
            .await
        {
            Ok(answer) => answer,
            Err(e) if !recorder.wrote => return Err(unavailable(&e, settings)),
            Err(ConverseError::Deadline(_)) => {
                break (out_of_time(&changes), Some(Stopped::TimeLimit));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the model became unreachable during a turn");
                break (
                    stopped_because(
                        format!("The assistant became unavailable before it finished ({e})."),
                        &changes,
                    ),
                    Some(Stopped::ModelUnavailable),
                );
            }
        };
        let content = cut(answer.content, MODEL_TEXT_MAX_BYTES, "");
        if answer.tool_calls.is_empty() {
            break (content, None);
        }
        // At most TOOL_CALLS_PER_STEP_MAX calls are kept and run; the model is told.
        let asked = answer.tool_calls.len();
        let calls: Vec<ToolCall> = answer
            .tool_calls
            .into_iter()
            .take(TOOL_CALLS_PER_STEP_MAX)
            .enumerate()
            .map(|(i, call)| ToolCall {
                id: if call.id.is_empty() || call.id.len() > 256 {
                    format!("call_{steps}_{i}")
                } else {
                    call.id
                },
                name: cut(call.name, 256, ""),
                arguments: cut(call.arguments, MODEL_TEXT_MAX_BYTES, ""),
            })
            .collect();
        let assistant = MessageBody::Assistant {
            content,
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
        recorder.pending.push(assistant);
        // The calls are on record before they change anything.
        recorder.write().await?;
        let last = calls.len() - 1;
        for (i, call) in calls.into_iter().enumerate() {
            let outcome = run_tool(state, &input.user, &call).await;
            changes.extend(outcome.change);
            let (mut content, is_error) = tool_text(&outcome.result);
            if i == last && asked > TOOL_CALLS_PER_STEP_MAX {
                content.push_str(&format!(
                    "\n[{} more tool calls in your answer were not run: at most {TOOL_CALLS_PER_STEP_MAX} per answer. Ask for them again.]",
                    asked - TOOL_CALLS_PER_STEP_MAX
                ));
            }
            let result = MessageBody::Tool {
                call_id: call.id,
                name: call.name,
                content,
                is_error,
            };
            turn_bytes += result.size();
            messages.push(result.to_model());
            recorder.pending.push(result);
        }
        recorder.write().await?;
    };
    recorder.pending.push(MessageBody::Assistant {
        content: reply.clone(),
        tool_calls: Vec::new(),
    });
    recorder.write().await?;
    tracing::info!(steps, changes = changes.len(), stopped = ?stopped, "chat turn answered");
    Ok(TurnOutcome {
        conversation_id: recorder.id(),
        reply,
        changes,
        steps,
        stopped,
    })
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
    let text = cut(
        text.join("\n"),
        TOOL_RESULT_MAX_BYTES,
        " Ask for less, e.g. list_tasks with filters or a smaller limit.",
    );
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

/// A conversation store error as the client sees it, naming the conversation.
pub(super) fn conversation_error(e: StoreError, id: Uuid) -> ApiError {
    match e {
        StoreError::Conflict => ApiError::new(
            ErrorCode::Conflict,
            format!(
                "conversation {id} is answering another message; send this one after its answer"
            ),
        )
        .with_field("conversation_id"),
        StoreError::NotFound => ApiError::new(
            ErrorCode::NotFound,
            format!("no conversation {id} among yours"),
        )
        .with_field("conversation_id"),
        other => other.into(),
    }
}

/// The 503 for a model that cannot be reached at the start of a turn: what to configure.
fn unavailable(e: &ConverseError, settings: &super::ChatSettings) -> ApiError {
    let component = &settings.component;
    let hint = match e {
        ConverseError::Sidecar(_) => "run chat-api beside its Dapr sidecar (`cargo xtask up`, or `dapr run -f dapr.yaml`) with DAPR_GRPC_PORT set to the sidecar's gRPC port".to_owned(),
        ConverseError::NoComponent { .. } => format!(
            "configure a conversation component named {component:?} (components/conversation.yaml: set CHAT_MODEL_API_KEY for OpenAI, or use one of the documented variants) or name yours in CHAT_COMPONENT"
        ),
        ConverseError::Provider(_) => format!(
            "check the provider, endpoint and key of the conversation component {component:?}"
        ),
        ConverseError::Deadline(_) => format!(
            "the model is slower than CHAT_TURN_TIMEOUT_SECONDS ({} s) allows",
            settings.turn_timeout.as_secs()
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
        // An odd start, so the cut point falls inside a two-byte character.
        let long = format!("a{}", "é".repeat(TOOL_RESULT_MAX_BYTES));
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
