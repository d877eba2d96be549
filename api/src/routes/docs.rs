//! The API's OpenAPI 3.1 document, generated from the code, and the pages that serve it,
//! beside the route table that assembles it.
//!
//! Each handler carries its own `#[utoipa::path]` annotation and each request and response
//! type its schema; [`super::table`] registers every handler with the router and the
//! document in one step, so a route cannot be served undocumented or documented unserved.

use std::sync::LazyLock;

use axum::{
    http::header,
    response::{Html, IntoResponse, Response},
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::openapi::{
    BEARER_SCHEME, BadRequest, Conflict, ErrorBody, Forbidden, Gone, NotFound, PayloadTooLarge,
    Unauthorized, Unavailable, UnsupportedMediaType, UserIdSchema,
};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where the interactive documentation is served.
pub const DOCS_PATH: &str = "/docs";
/// The docs page loads its viewer from a CDN in the browser: nothing is fetched at build time.
const SCALAR_SCRIPT: &str = "https://cdn.jsdelivr.net/npm/@scalar/api-reference@1.72.1";

/// The document's fixed parts; paths and their schemas are added by [`super::table`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat-api",
        description = "The task REST API of the event-driven Todo backend. Every change is \
            committed with its event and published to `task-events`.\n\nAll routes under \
            `/api/{user_id}` need `Authorization: Bearer <JWT>` (HS256, `sub` = the user id, \
            `exp` required); the path's user id must be the token's subject. Errors always \
            have the shape `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
    ),
    modifiers(&BearerScheme),
    components(
        // Parameter schemas are not collected from `params(...)`, so they are listed here.
        schemas(ErrorBody, UserIdSchema, todo_domain::Priority, todo_domain::Frequency),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            Gone,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unavailable,
        ),
    ),
    tags(
        (name = "tasks", description = "A user's tasks"),
        (name = "account", description = "A user's account"),
        (name = "chat", description = "Managing tasks by talking to an assistant (a model reached through the Dapr Conversation API)"),
        (name = "operations", description = "Health and the outbox relay"),
        (name = "meta", description = "This document and its viewer"),
        (name = "web", description = "The web page: tasks and chat in a browser"),
    ),
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "HS256 JWT signed with the service's secret; `sub` is the user id, `exp` is required.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER_SCHEME, SecurityScheme::Http(scheme));
    }
}

/// The whole document, as served at [`OPENAPI_PATH`].
pub fn document() -> utoipa::openapi::OpenApi {
    super::table().into_openapi()
}

/// The document is a function of the code only, so it is rendered once.
static DOCUMENT_JSON: LazyLock<Result<String, String>> =
    LazyLock::new(|| document().to_pretty_json().map_err(|e| e.to_string()));

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    match &*DOCUMENT_JSON {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response(),
        Err(e) => {
            crate::error::ApiError::internal(format!("OpenAPI document: {e}")).into_response()
        }
    }
}

/// Interactive documentation of this API (loads its viewer from a CDN in the browser).
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs_page",
    tag = "meta",
    responses((status = 200, description = "An HTML page that renders /openapi.json", content_type = "text/html", body = String)),
)]
pub async fn docs_page() -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html>
  <head>
    <title>chat-api reference</title>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
  </head>
  <body>
    <div id="app"></div>
    <script src="{SCALAR_SCRIPT}"></script>
    <script>Scalar.createApiReference('#app', {{ url: '{OPENAPI_PATH}' }})</script>
  </body>
</html>
"#
    ))
}
