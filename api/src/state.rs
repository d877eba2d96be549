//! What every handler can reach: the stores, the token keys, the relay's wake-up and health,
//! and the chat's model. Built once by [`crate::app::Application`]; it depends on no handler.

use std::sync::Arc;

use relay::{OutboxStore, RelayHealth};
use todo_store::TaskStore;
use tokio::sync::Notify;

use crate::{auth::JwtKeys, chat_model::Chat};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub tasks: TaskStore,
    pub outbox: OutboxStore,
    pub jwt: JwtKeys,
    /// Wakes the relay after a commit.
    pub relay_wake: Arc<Notify>,
    /// This process's relay as its watchdog sees it (`None` with the relay off).
    pub relay: Option<Arc<RelayHealth>>,
    /// Where the publisher lock lives, to name its holder on `/relay/status`.
    pub database_url: Arc<service_kit::Secret>,
    /// Copies of what reached the dead-letter topics (`dead_letters`).
    pub dead_letters: todo_store::DeadLetterStore,
    /// Required from daprd on the dead-letter routes when set (`APP_API_TOKEN`).
    pub app_api_token: Option<service_kit::Secret>,
    /// The chat's conversations.
    pub conversations: todo_store::ConversationStore,
    /// The chat's model (through the sidecar) and its bounds.
    pub chat: Arc<Chat>,
}

/// The bearer-token extractor ([`crate::auth::AuthUser`]) needs only the keys.
impl AsRef<JwtKeys> for AppState {
    fn as_ref(&self) -> &JwtKeys {
        &self.jwt
    }
}
