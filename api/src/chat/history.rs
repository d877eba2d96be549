//! How a conversation's messages are stored (`conversation_messages.body`, JSON) and sent to
//! the model again. The system prompt is not stored: each turn writes it afresh, with
//! that turn's date.

use serde::{Deserialize, Serialize};
use service_kit::conversation::{Message, ToolCall};
use todo_store::{NewMessage, StoredMessage};
use utoipa::ToSchema;

/// A tool call as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ToolCallView {
    /// The model's id for the call; its result names it.
    pub id: String,
    /// The tool.
    pub name: String,
    /// The arguments as the model wrote them (JSON text, unchecked).
    pub arguments: String,
}

/// One message of a conversation, as stored and as `GET .../conversations/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum MessageBody {
    /// What the user wrote.
    User { content: String },
    /// The model's answer: text, or tool calls, or both.
    Assistant {
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCallView>,
    },
    /// A tool's result, sent back to the model.
    Tool {
        call_id: String,
        name: String,
        content: String,
        /// True when the tool refused (bad arguments, no such task, ...).
        #[serde(default)]
        is_error: bool,
    },
}

impl MessageBody {
    pub fn role(&self) -> &'static str {
        match self {
            MessageBody::User { .. } => "user",
            MessageBody::Assistant { .. } => "assistant",
            MessageBody::Tool { .. } => "tool",
        }
    }

    /// As the model is sent it.
    pub fn to_model(&self) -> Message {
        match self {
            MessageBody::User { content } => Message::User(content.clone()),
            MessageBody::Assistant {
                content,
                tool_calls,
            } => Message::Assistant {
                content: content.clone(),
                tool_calls: tool_calls
                    .iter()
                    .map(|c| ToolCall {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        arguments: c.arguments.clone(),
                    })
                    .collect(),
            },
            MessageBody::Tool {
                call_id,
                name,
                content,
                ..
            } => Message::Tool {
                call_id: call_id.clone(),
                name: name.clone(),
                content: content.clone(),
            },
        }
    }

    pub fn to_new(&self) -> NewMessage {
        let mut body = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = body.as_object_mut() {
            object.remove("role");
        }
        NewMessage {
            role: self.role().to_owned(),
            body,
        }
    }

    /// A stored message; `None` for a row this version cannot read (skipped, logged).
    pub fn from_stored(stored: &StoredMessage) -> Option<Self> {
        let mut body = stored.body.clone();
        if let Some(object) = body.as_object_mut() {
            object.insert("role".to_owned(), stored.role.clone().into());
        }
        serde_json::from_value(body)
            .inspect_err(|e| {
                tracing::warn!(seq = stored.seq, error = %e, "unreadable conversation message skipped");
            })
            .ok()
    }
}

/// At most this much earlier text (bytes of content and tool arguments) goes with a turn:
/// long tool results must not grow a conversation's requests past what the sidecar takes
/// (its gRPC messages are limited to 4 MiB) or a model's context.
pub const HISTORY_MAX_BYTES: usize = 256 * 1024;

impl MessageBody {
    pub fn size(&self) -> usize {
        match self {
            MessageBody::User { content } => content.len(),
            MessageBody::Assistant {
                content,
                tool_calls,
            } => {
                content.len()
                    + tool_calls
                        .iter()
                        .map(|c| c.arguments.len() + c.name.len() + c.id.len())
                        .sum::<usize>()
            }
            MessageBody::Tool { content, .. } => content.len(),
        }
    }
}

/// The earlier messages to send with a new turn: the newest of `recent` that fit in
/// `max_bytes`, from a user message on, so the model never sees a tool result without the
/// call it answers.
pub fn for_model(recent: &[StoredMessage], max_bytes: usize) -> Vec<Message> {
    let bodies: Vec<MessageBody> = recent.iter().filter_map(MessageBody::from_stored).collect();
    let mut start = bodies.len();
    let mut total = 0;
    for (i, body) in bodies.iter().enumerate().rev() {
        total += body.size();
        if total > max_bytes {
            break;
        }
        start = i;
    }
    let start = bodies[start..]
        .iter()
        .position(|b| matches!(b, MessageBody::User { .. }))
        .map_or(bodies.len(), |i| start + i);
    answered(&bodies[start..])
}

/// `bodies` as the model is sent them, each tool call followed by a result: a call whose
/// result was never recorded (the turn was cut between the two writes) gets one that says
/// so, as the model API requires an answer to every call.
fn answered(bodies: &[MessageBody]) -> Vec<Message> {
    let mut out = Vec::with_capacity(bodies.len());
    let mut open: Vec<&ToolCallView> = Vec::new();
    let close = |open: &mut Vec<&ToolCallView>, out: &mut Vec<Message>| {
        for call in open.drain(..) {
            out.push(Message::Tool {
                call_id: call.id.clone(),
                name: call.name.clone(),
                content: "Error: no result was recorded for this call; check with list_tasks whether it took effect.".to_owned(),
            });
        }
    };
    for body in bodies {
        match body {
            MessageBody::Tool { call_id, .. } => {
                let Some(at) = open.iter().position(|c| &c.id == call_id) else {
                    continue;
                };
                open.remove(at);
            }
            _ => close(&mut open, &mut out),
        }
        out.push(body.to_model());
        if let MessageBody::Assistant { tool_calls, .. } = body {
            open.extend(tool_calls.iter());
        }
    }
    close(&mut open, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: i32, body: &MessageBody) -> StoredMessage {
        let new = body.to_new();
        StoredMessage {
            seq,
            role: new.role,
            body: new.body,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn messages_survive_storage() {
        let bodies = [
            MessageBody::User {
                content: "water the plants".into(),
            },
            MessageBody::Assistant {
                content: String::new(),
                tool_calls: vec![ToolCallView {
                    id: "c1".into(),
                    name: "add_task".into(),
                    arguments: r#"{"title":"Water"}"#.into(),
                }],
            },
            MessageBody::Tool {
                call_id: "c1".into(),
                name: "add_task".into(),
                content: "Created".into(),
                is_error: false,
            },
        ];
        for (i, body) in bodies.iter().enumerate() {
            let back = MessageBody::from_stored(&stored(i as i32, body));
            assert_eq!(back.as_ref(), Some(body));
        }
    }

    #[test]
    fn a_history_cut_inside_a_tool_exchange_starts_at_the_next_user_message() {
        let recent = [
            stored(
                5,
                &MessageBody::Tool {
                    call_id: "c1".into(),
                    name: "list_tasks".into(),
                    content: "No tasks match.".into(),
                    is_error: false,
                },
            ),
            stored(
                6,
                &MessageBody::Assistant {
                    content: "You have none.".into(),
                    tool_calls: vec![],
                },
            ),
            stored(
                7,
                &MessageBody::User {
                    content: "add one".into(),
                },
            ),
        ];
        assert_eq!(
            for_model(&recent, HISTORY_MAX_BYTES),
            vec![Message::User("add one".into())]
        );
    }

    #[test]
    fn a_call_without_a_recorded_result_gets_one_and_stray_results_are_dropped() {
        let call = |id: &str| ToolCallView {
            id: id.into(),
            name: "add_task".into(),
            arguments: "{}".into(),
        };
        let recent = [
            stored(
                0,
                &MessageBody::User {
                    content: "add two".into(),
                },
            ),
            stored(
                1,
                &MessageBody::Assistant {
                    content: String::new(),
                    tool_calls: vec![call("c1"), call("c2")],
                },
            ),
            stored(
                2,
                &MessageBody::Tool {
                    call_id: "c1".into(),
                    name: "add_task".into(),
                    content: "Created".into(),
                    is_error: false,
                },
            ),
            stored(
                3,
                &MessageBody::Tool {
                    call_id: "zz".into(),
                    name: "add_task".into(),
                    content: "stray".into(),
                    is_error: false,
                },
            ),
            stored(
                4,
                &MessageBody::User {
                    content: "and?".into(),
                },
            ),
        ];
        let sent = for_model(&recent, HISTORY_MAX_BYTES);
        let ids: Vec<&str> = sent
            .iter()
            .filter_map(|m| match m {
                Message::Tool { call_id, .. } => Some(call_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["c1", "c2"], "{sent:?}");
        assert!(
            matches!(&sent[3], Message::Tool { content, .. } if content.contains("no result was recorded"))
        );
        assert_eq!(sent[4], Message::User("and?".into()));
    }

    #[test]
    fn a_history_over_its_byte_budget_keeps_its_newest_whole_exchanges() {
        let user = |seq, text: &str| {
            stored(
                seq,
                &MessageBody::User {
                    content: text.into(),
                },
            )
        };
        let answer = |seq, len| {
            stored(
                seq,
                &MessageBody::Assistant {
                    content: "a".repeat(len),
                    tool_calls: vec![],
                },
            )
        };
        let recent = [
            user(0, "old"),
            answer(1, 100),
            user(2, "new"),
            answer(3, 100),
        ];
        let kept = for_model(&recent, 150);
        assert_eq!(kept.len(), 2, "the older exchange does not fit: {kept:?}");
        assert_eq!(kept[0], Message::User("new".into()));
        assert!(for_model(&recent, 50).is_empty(), "nothing fits");
        assert_eq!(for_model(&recent, 10_000).len(), 4);
    }
}
