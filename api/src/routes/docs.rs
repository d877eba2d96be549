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
use schemars::JsonSchema;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        RefOr, Schema,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::dto::{ListParams, TaskInput, TaskPatchInput};
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
    let mut doc = super::table().into_openapi();
    describe_fields::<TaskInput>(&mut doc, "TaskInput");
    describe_fields::<TaskPatchInput>(&mut doc, "TaskPatchInput");
    describe_query::<ListParams>(&mut doc, "/api/{user_id}/tasks");
    doc
}

/// The doc comments of `T`'s fields, as schemars reads them.
fn field_texts<T: JsonSchema>() -> serde_json::Map<String, serde_json::Value> {
    let schema = schemars::schema_for!(T);
    let texts = schema.get("properties").and_then(|p| p.as_object());
    texts
        .into_iter()
        .flatten()
        .filter_map(|(field, p)| Some((field.clone(), p.get("description")?.clone())))
        .collect()
}

/// Describes each query parameter of `GET path` by its field's doc comment, as
/// [`describe_fields`] does for a body.
fn describe_query<T: JsonSchema>(doc: &mut utoipa::openapi::OpenApi, path: &str) {
    let texts = field_texts::<T>();
    let parameters = doc
        .paths
        .paths
        .get_mut(path)
        .and_then(|item| item.get.as_mut())
        .and_then(|op| op.parameters.as_mut());
    for parameter in parameters.into_iter().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        if let Some(text) = texts.get(&parameter.name).and_then(|t| t.as_str()) {
            parameter.description = Some(text.to_owned());
        }
    }
}

/// Describes each field of the request body `name` by its doc comment, as schemars reads
/// it for the tools' schemas (utoipa leaves out the doc comment of a field with a schema of
/// its own): one text per field for the REST document and the MCP tools alike.
fn describe_fields<T: JsonSchema>(doc: &mut utoipa::openapi::OpenApi, name: &str) {
    let texts = field_texts::<T>();
    let Some(RefOr::T(Schema::Object(body))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(name))
    else {
        return;
    };
    for (field, schema) in &mut body.properties {
        let Some(text) = texts.get(field).and_then(|t| t.as_str()) else {
            continue;
        };
        let text = text.to_owned();
        match schema {
            RefOr::Ref(reference) => reference.description = text,
            RefOr::T(Schema::Object(s)) => s.description = Some(text),
            RefOr::T(Schema::Array(s)) => s.description = Some(text),
            RefOr::T(Schema::OneOf(s)) => s.description = Some(text),
            RefOr::T(Schema::AllOf(s)) => s.description = Some(text),
            RefOr::T(Schema::AnyOf(s)) => s.description = Some(text),
            RefOr::T(_) => {}
        }
    }
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
