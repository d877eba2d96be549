//! The MCP server (Model Context Protocol): tools with which an AI agent manages the
//! caller's tasks, served over the streamable HTTP transport at [`MCP_PATH`] on the same
//! axum server as the REST API.
//!
//! - **Auth**: the REST API's bearer JWT. [`authenticate`] checks it on every HTTP request
//!   before rmcp sees it (401 otherwise) and puts the user in the
//!   request's extensions, which rmcp hands to each tool with the request's parts. No tool
//!   takes a user argument: each acts only as the token's subject.
//! - **Stateless**: no MCP session outlives an HTTP request, so any replica answers any
//!   request and nothing is kept per client; answers are plain JSON, not event streams.
//! - **One service layer**: every tool calls [`crate::service`], as the REST handlers do:
//!   the same parsing, validation and error messages (as tool results with `isError`), the
//!   same store calls, so the same events reach `task-events`.

pub mod args;
pub mod output;
pub mod tools;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::Request,
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
};
use serde_json::json;

pub use tools::TaskTools;

use crate::{auth::AuthUser, error::ApiError, extract::BODY_LIMIT_BYTES, state::AppState};

/// Where the MCP endpoint is served.
pub const MCP_PATH: &str = "/mcp";

/// The MCP endpoint, behind the bearer check.
pub fn routes(state: AppState) -> Router<AppState> {
    let tools = TaskTools::new(state.clone());
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(BODY_LIMIT_BYTES)
        // rmcp's Host allow-list protects unauthenticated local servers from DNS rebinding.
        // Here every request needs a bearer token, which a browser never attaches on its
        // own, and the service must answer under whatever name it is deployed.
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(MCP_PATH, service)
        .route_layer(middleware::from_fn_with_state(state, authenticate))
}

/// JSON-RPC error code of a refused token (the implementation-defined range).
pub const UNAUTHORIZED_CODE: i32 = -32001;

/// Lets a request through only with a valid bearer token, and hands its user to the tools.
///
/// A refusal is a 401 with `WWW-Authenticate: Bearer`, its body a JSON-RPC error (MCP
/// clients show its message, where the API's own error shape would be an opaque failure)
/// carrying the API's error code in `data`.
async fn authenticate(
    auth: Result<AuthUser, ApiError>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth {
        Ok(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        Err(e) => {
            let body = json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {
                    "code": UNAUTHORIZED_CODE,
                    "message": format!("{}: {}", e.code, e.message),
                    "data": {"code": e.code.as_str()},
                },
            });
            (
                e.status,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                Json(body),
            )
                .into_response()
        }
    }
}
