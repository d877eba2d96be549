//! `chat-api`: the only client-facing service. It owns the tasks database, answers the task
//! REST API and the MCP tools ([`mcp`]) through one service layer ([`service`]), and writes
//! every change together with its event (transactional outbox); the relay in [`relay`]
//! publishes those events to `task-events` through the Dapr sidecar.
//!
//! `main.rs` only reads config, starts telemetry and runs [`Application`] until shutdown.

pub mod app;
pub mod auth;
pub mod chat;
pub mod chat_model;
pub mod config;
pub mod dead_letters;
pub mod dto;
pub mod error;
pub mod extract;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod schema;
pub mod service;
pub mod service_error;
pub mod state;
pub mod web;

pub use app::{Application, router};
pub use config::Settings;
pub use extract::BODY_LIMIT_BYTES;
pub use state::AppState;
