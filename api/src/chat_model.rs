//! The chat's model and its bounds: the Conversation API client (through the sidecar), the
//! `CHAT_*` settings, and the turns running in this process. What a turn does is
//! [`crate::chat`]; this part is what the application state holds, so it depends on no
//! handler.

use std::{sync::Arc, time::Duration};

use service_kit::{Secret, conversation::DaprConversation, env_in, env_or};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest chat message accepted, in characters.
pub const MESSAGE_MAX_CHARS: usize = 4000;

/// The chat's settings (`CHAT_*`, documented in docs/operations.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSettings {
    /// `CHAT_COMPONENT` (default `chat-model`): the conversation component's name.
    pub component: String,
    /// `CHAT_MAX_STEPS` (default 8, 1 to 50): model calls per turn.
    pub max_steps: u32,
    /// `CHAT_TURN_TIMEOUT_SECONDS` (default 120, 1 to 900): a turn's whole duration.
    pub turn_timeout: Duration,
    /// `CHAT_HISTORY_MESSAGES` (default 40, 0 to 1000): earlier messages sent to the model.
    pub history_messages: u64,
    /// `CHAT_MAX_TURNS` (default 32, 1 to 1024): turns running at once in this process;
    /// more get 503.
    pub max_turns: u32,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            component: "chat-model".to_owned(),
            max_steps: 8,
            turn_timeout: Duration::from_secs(120),
            history_messages: 40,
            max_turns: 32,
        }
    }
}

impl ChatSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let defaults = Self::default();
        let component: String = env_or("CHAT_COMPONENT", defaults.component)?;
        if component.trim().is_empty() {
            anyhow::bail!("CHAT_COMPONENT is empty: name the conversation component");
        }
        Ok(Self {
            component,
            max_steps: env_in(
                "CHAT_MAX_STEPS",
                defaults.max_steps,
                1..=50,
                "model calls per chat turn",
            )?,
            turn_timeout: Duration::from_secs(env_in(
                "CHAT_TURN_TIMEOUT_SECONDS",
                defaults.turn_timeout.as_secs(),
                1..=900,
                "seconds a chat turn may last",
            )?),
            history_messages: env_in(
                "CHAT_HISTORY_MESSAGES",
                defaults.history_messages,
                0..=1000,
                "earlier messages of a conversation sent to the model",
            )?,
            max_turns: env_in(
                "CHAT_MAX_TURNS",
                defaults.max_turns,
                1..=1024,
                "chat turns running at once in one chat-api process",
            )?,
        })
    }
}

/// The model behind the chat, the bounds of a turn, and the turns running.
pub struct Chat {
    pub model: DaprConversation,
    pub settings: ChatSettings,
    /// One permit per running turn ([`ChatSettings::max_turns`]).
    turns: Arc<Semaphore>,
}

impl Chat {
    /// The chat through the sidecar's gRPC API at `grpc_port`.
    pub fn new(grpc_port: u16, api_token: Option<Secret>, settings: ChatSettings) -> Self {
        Self {
            model: DaprConversation::new(grpc_port, api_token),
            turns: Arc::new(Semaphore::new(settings.max_turns as usize)),
            settings,
        }
    }

    /// A running turn's place, or `None` when `max_turns` turns run already.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.turns.clone().try_acquire_owned().ok()
    }

    /// Waits until no turn runs any more (at shutdown: turns whose clients went away still
    /// finish and record what they changed), at most one turn's bound.
    pub async fn drain(&self) {
        let all = self.settings.max_turns;
        let running = all as usize - self.turns.available_permits();
        if running > 0 {
            tracing::info!(running, "waiting for chat turns to finish");
        }
        if tokio::time::timeout(self.settings.turn_timeout, self.turns.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("chat turns still running at shutdown were cut off");
        }
    }
}
