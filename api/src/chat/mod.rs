//! The chat: people manage their tasks by talking to a model that uses the task tools.
//!
//! - **Through Dapr**: the model is reached through the sidecar's Conversation API
//!   (`ConverseAlpha2`, [`service_kit::conversation`]); which provider answers is the
//!   conversation component's business (`components/conversation.yaml`), named by
//!   `CHAT_COMPONENT`.
//! - **The MCP tools, unchanged**: the model is offered the tools exactly as `tools/list`
//!   describes them and its calls run through [`crate::mcp::tools::call`], as the token's
//!   user: the same validation, the same service layer, the same events as REST and MCP. A
//!   tool error goes back to the model as the tool's result, so it can correct itself.
//! - **Bounded**: a turn makes at most `CHAT_MAX_STEPS` model calls and lasts at most
//!   `CHAT_TURN_TIMEOUT_SECONDS`; the model sees at most `CHAT_HISTORY_MESSAGES` earlier
//!   messages; at most `CHAT_MAX_TURNS` turns run at once per process, one per conversation
//!   across replicas.
//! - **Stateless replicas**: a conversation's messages are in the database
//!   ([`todo_store::ConversationStore`]), appended once per turn, so any replica answers the
//!   next turn.
//!
//! [`turn`] runs one turn; [`routes`] serves it at `POST /api/{user_id}/chat` with the
//! conversation routes; [`history`] is how messages are stored. The model's client, the
//! chat's settings and the turns running are [`crate::chat_model`], which the application
//! state holds.

pub mod history;
pub mod routes;
pub mod turn;

pub use crate::chat_model::{Chat, ChatSettings, MESSAGE_MAX_CHARS};
