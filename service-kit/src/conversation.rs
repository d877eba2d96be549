//! The Dapr Conversation API (`ConverseAlpha2`): one call to a language model through the
//! sidecar's conversation component, with tool calling. The provider (OpenAI or any server
//! that speaks its API, Anthropic, Ollama, ...) is the component's business; this side only
//! names the component.

use std::time::Duration;

use dapr::dapr::proto::runtime::v1::{
    self as dapr_v1, conversation_message::MessageTypes, conversation_tool_calls,
    conversation_tools,
};
use serde_json::{Map, Value};

use crate::{Secret, sidecar::SidecarClient};

/// A message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    System(String),
    User(String),
    /// What the model answered before: text, tool calls, or both.
    Assistant {
        content: String,
        tool_calls: Vec<ToolCall>,
    },
    /// The result of the tool call `call_id`.
    Tool {
        call_id: String,
        name: String,
        content: String,
    },
}

/// A tool call the model asked for; `arguments` is the model's JSON text, unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool the model may call: its name, what it does, and its arguments' JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Map<String, Value>,
}

/// The model's answer: text, tool calls, or both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConverseError {
    /// The sidecar could not be reached.
    #[error("the Dapr sidecar is unreachable: {0}")]
    Sidecar(String),
    /// The sidecar has no conversation component of that name (none configured, or it
    /// failed to initialise, e.g. without an API key).
    #[error("the sidecar has no conversation component {component:?}: {message}")]
    NoComponent { component: String, message: String },
    /// The component could not get an answer from its provider.
    #[error("the model provider failed: {0}")]
    Provider(String),
    /// No answer within the deadline.
    #[error("the model did not answer within {} s", .0.as_secs())]
    Deadline(Duration),
}

/// The Conversation API of the sidecar at `127.0.0.1:<grpc port>`.
pub struct DaprConversation {
    sidecar: SidecarClient,
}

impl DaprConversation {
    pub fn new(grpc_port: u16, api_token: Option<Secret>) -> Self {
        Self {
            sidecar: SidecarClient::new(grpc_port, api_token),
        }
    }

    /// Sends `messages` to the model of the conversation component `component`, offering
    /// `tools` (`tool_choice` auto), and waits at most `deadline` for its answer.
    pub async fn converse(
        &self,
        component: &str,
        messages: &[Message],
        tools: &[ToolSpec],
        deadline: Duration,
    ) -> Result<Reply, ConverseError> {
        let started = tokio::time::Instant::now();
        let mut client = tokio::time::timeout(deadline, self.sidecar.client())
            .await
            .map_err(|_| ConverseError::Deadline(deadline))?
            .map_err(ConverseError::Sidecar)?;
        let deadline_left = deadline.saturating_sub(started.elapsed());
        let request = dapr_v1::ConversationRequestAlpha2 {
            name: component.to_owned(),
            inputs: vec![dapr_v1::ConversationInputAlpha2 {
                messages: messages.iter().map(to_proto).collect(),
                scrub_pii: None,
            }],
            tools: tools.iter().map(tool_to_proto).collect(),
            tool_choice: (!tools.is_empty()).then(|| "auto".to_owned()),
            ..Default::default()
        };
        let answer = tokio::time::timeout(deadline_left, client.converse_alpha2(request))
            .await
            .map_err(|_| ConverseError::Deadline(deadline))?;
        let response = answer
            .map_err(|status| classify(component, &status))?
            .into_inner();
        let choice = response
            .outputs
            .into_iter()
            .flat_map(|o| o.choices)
            .min_by_key(|c| c.index)
            .ok_or_else(|| ConverseError::Provider("the model answered with no choice".into()))?;
        let message = choice.message.unwrap_or_default();
        Ok(Reply {
            content: message.content,
            tool_calls: message
                .tool_calls
                .into_iter()
                .filter_map(from_proto_call)
                .collect(),
            finish_reason: choice.finish_reason,
        })
    }
}

/// daprd answers an unknown component with `InvalidArgument` and "failed finding
/// conversation component", a provider failure with `Internal`.
fn classify(component: &str, status: &tonic::Status) -> ConverseError {
    let message = status.message().to_owned();
    match status.code() {
        tonic::Code::Unavailable => ConverseError::Sidecar(message),
        tonic::Code::InvalidArgument | tonic::Code::NotFound
            if message.contains("finding conversation component") =>
        {
            ConverseError::NoComponent {
                component: component.to_owned(),
                message,
            }
        }
        code => ConverseError::Provider(format!("{code:?}: {message}")),
    }
}

fn text(content: &str) -> Vec<dapr_v1::ConversationMessageContent> {
    vec![dapr_v1::ConversationMessageContent {
        text: content.to_owned(),
    }]
}

fn to_proto(message: &Message) -> dapr_v1::ConversationMessage {
    let kind = match message {
        Message::System(content) => MessageTypes::OfSystem(dapr_v1::ConversationMessageOfSystem {
            name: None,
            content: text(content),
        }),
        Message::User(content) => MessageTypes::OfUser(dapr_v1::ConversationMessageOfUser {
            name: None,
            content: text(content),
        }),
        Message::Assistant {
            content,
            tool_calls,
        } => MessageTypes::OfAssistant(dapr_v1::ConversationMessageOfAssistant {
            name: None,
            content: if content.is_empty() {
                Vec::new()
            } else {
                text(content)
            },
            tool_calls: tool_calls
                .iter()
                .map(|call| dapr_v1::ConversationToolCalls {
                    id: Some(call.id.clone()),
                    tool_types: Some(conversation_tool_calls::ToolTypes::Function(
                        dapr_v1::ConversationToolCallsOfFunction {
                            name: call.name.clone(),
                            arguments: call.arguments.clone(),
                        },
                    )),
                })
                .collect(),
        }),
        Message::Tool {
            call_id,
            name,
            content,
        } => MessageTypes::OfTool(dapr_v1::ConversationMessageOfTool {
            tool_id: Some(call_id.clone()),
            name: name.clone(),
            content: text(content),
        }),
    };
    dapr_v1::ConversationMessage {
        message_types: Some(kind),
    }
}

fn from_proto_call(call: dapr_v1::ConversationToolCalls) -> Option<ToolCall> {
    match call.tool_types? {
        conversation_tool_calls::ToolTypes::Function(f) => Some(ToolCall {
            id: call.id.unwrap_or_default(),
            name: f.name,
            arguments: f.arguments,
        }),
    }
}

fn tool_to_proto(tool: &ToolSpec) -> dapr_v1::ConversationTools {
    dapr_v1::ConversationTools {
        tool_types: Some(conversation_tools::ToolTypes::Function(
            dapr_v1::ConversationToolsFunction {
                name: tool.name.clone(),
                description: Some(tool.description.clone()),
                parameters: Some(to_struct(&tool.parameters)),
            },
        )),
    }
}

/// A JSON object as a protobuf `Struct` (how the API carries a JSON Schema).
pub fn to_struct(object: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect(),
    }
}

fn to_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_schemas_become_structs_field_for_field() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"n": {"type": ["integer", "null"], "minimum": 1, "maximum": 5}},
            "required": ["n"],
            "additionalProperties": false,
        });
        let s = to_struct(schema.as_object().expect("an object"));
        let Some(prost_types::value::Kind::StructValue(props)) = &s.fields["properties"].kind
        else {
            panic!("properties is not a struct: {s:?}");
        };
        let Some(prost_types::value::Kind::StructValue(n)) = &props.fields["n"].kind else {
            panic!("n is not a struct");
        };
        assert_eq!(
            n.fields["maximum"].kind,
            Some(prost_types::value::Kind::NumberValue(5.0))
        );
        assert_eq!(
            s.fields["additionalProperties"].kind,
            Some(prost_types::value::Kind::BoolValue(false))
        );
        let Some(prost_types::value::Kind::ListValue(required)) = &s.fields["required"].kind else {
            panic!("required is not a list");
        };
        assert_eq!(
            required.values[0].kind,
            Some(prost_types::value::Kind::StringValue("n".into()))
        );
    }

    #[test]
    fn an_unknown_component_is_told_apart_from_a_provider_failure() {
        let missing =
            tonic::Status::invalid_argument("failed finding conversation component chat-model");
        assert!(matches!(
            classify("chat-model", &missing),
            ConverseError::NoComponent { .. }
        ));
        let down =
            tonic::Status::internal("failed conversing with component chat-model: network error");
        assert!(matches!(
            classify("chat-model", &down),
            ConverseError::Provider(_)
        ));
    }
}
