//! What the OpenAPI document says of the API's shapes: the schemas of the domain's types,
//! the error responses, and the schema helpers the request types use. A leaf: it depends on
//! the domain and the error codes only; the document itself is assembled beside the route
//! table (`routes::docs`).
//!
//! The task itself (`TaskSnapshot`, `Recurrence`, `Priority`, `Frequency`) describes its own
//! schema in the domain crate (its `utoipa` feature); the request fields' schemas here are
//! built from the domain's own constants (`TITLE_MAX_CHARS`, ...).

use std::borrow::Cow;

use serde_json::json;
use todo_domain::{
    TimeZone,
    task::{
        DESCRIPTION_MAX_CHARS, TAG_MAX_CHARS, TAGS_MAX_COUNT, TITLE_MAX_CHARS, USER_ID_MAX_CHARS,
    },
};
use utoipa::{
    PartialSchema, ToResponse, ToSchema,
    openapi::{
        ContentBuilder, KnownFormat, RefOr, Response as OaResponse, ResponseBuilder,
        schema::{ArrayBuilder, Object, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type},
    },
};

use crate::error::ErrorCode;

/// Name of the bearer security scheme that every `/api` operation requires.
pub const BEARER_SCHEME: &str = "bearer_jwt";

// ---- Error responses -------------------------------------------------------------------

/// The one error shape: `{"error": {"code", "message", "field"?}}`.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // only its schema is used; `crate::error::ApiError` renders the body
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable, machine-readable reason.
    #[schema(schema_with = error_code)]
    code: String,
    /// What went wrong and what to fix, for people.
    message: String,
    /// The offending field or parameter, when there is one.
    #[schema(nullable = false)]
    field: Option<String>,
}

fn error_code() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ErrorCode::ALL.map(ErrorCode::as_str)))
        .build()
}

fn error_response(
    description: &str,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> RefOr<OaResponse> {
    let mut detail = json!({ "code": code, "message": message });
    if let Some(field) = field {
        detail["field"] = json!(field);
    }
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ErrorBody::schema_ref()))
                .example(Some(json!({ "error": detail })))
                .build(),
        )
        .build()
        .into()
}

trait SchemaRef {
    fn schema_ref() -> RefOr<Schema>;
}

impl<T: ToSchema> SchemaRef for T {
    fn schema_ref() -> RefOr<Schema> {
        RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name()))
    }
}

/// Reusable error responses (`components.responses`), one per status.
macro_rules! error_responses {
    ($($name:ident => $description:literal, $code:expr, $message:literal, $field:expr;)*) => {$(
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<OaResponse>) {
                (stringify!($name), error_response($description, $code.as_str(), $message, $field))
            }
        }
    )*};
}

error_responses! {
    BadRequest => "The request is malformed: invalid JSON, a wrong type, an unknown field, or a value out of range (`invalid_json`, `invalid_field`, `invalid_query`).",
        ErrorCode::InvalidField, "time_zone: \"Mars/Base\" is not an IANA time zone name (for example \"Europe/Berlin\" or \"UTC\")", Some("time_zone");
    Unauthorized => "Missing, malformed, expired or wrongly signed bearer token (`unauthorized`).",
        ErrorCode::Unauthorized, "token has expired", None;
    Forbidden => "The path's user id is not the token's subject (`forbidden`).",
        ErrorCode::Forbidden, "the path's user id is not the authenticated user", None;
    NotFound => "No such task for this user (another user's task is never revealed) (`not_found`).",
        ErrorCode::NotFound, "no such task", None;
    Conflict => "The task was changed concurrently and the retries ran out; retry (`conflict`).",
        ErrorCode::Conflict, "the task was being changed by another request; retry", None;
    Gone => "The account was deleted; no further changes are accepted (`user_deleted`).",
        ErrorCode::UserDeleted, "this account was deleted; no further changes are accepted", None;
    PayloadTooLarge => "The body is larger than the API accepts (`payload_too_large`).",
        ErrorCode::PayloadTooLarge, "Failed to buffer the request body: length limit exceeded", None;
    UnsupportedMediaType => "The body is not sent as `application/json` (`invalid_json`).",
        ErrorCode::InvalidJson, "Expected request with `Content-Type: application/json`", None;
    Unavailable => "The database is unavailable; retry shortly (`unavailable`).",
        ErrorCode::Unavailable, "the database is unavailable; retry shortly", None;
}

// ---- Domain values, described from the domain's own constants --------------------------

pub(crate) fn string_enum(values: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

fn nullable(ty: Type) -> SchemaType {
    SchemaType::from_iter([ty, Type::Null])
}

/// The fields' own schemas carry no description: the field's doc comment is its
/// description, the same text the tools' JSON Schemas show (`dto::tool_schema`).
fn text(ty: SchemaType, min: Option<usize>, max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(ty)
        .min_length(min)
        .max_length(Some(max))
}

pub(crate) fn title() -> Object {
    text(Type::String.into(), Some(1), TITLE_MAX_CHARS).build()
}

pub(crate) fn title_or_null() -> Object {
    text(nullable(Type::String), Some(1), TITLE_MAX_CHARS).build()
}

pub(crate) fn description_or_null() -> Object {
    text(nullable(Type::String), None, DESCRIPTION_MAX_CHARS).build()
}

pub(crate) fn tags_or_null() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .schema_type(nullable(Type::Array))
        .items(
            text(Type::String.into(), Some(1), TAG_MAX_CHARS).description(Some(
                "Letters, digits, - and _; spaces become -; lower-cased.",
            )),
        )
        .max_items(Some(TAGS_MAX_COUNT))
        .build()
}

pub(crate) fn tag_filter() -> Object {
    text(Type::String.into(), Some(1), TAG_MAX_CHARS).build()
}

pub(crate) fn due_at_or_null() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .examples(["2026-12-01T09:00", "2026-12-01T08:00:00Z", "2026-12-01"])
        .build()
}

pub(crate) fn reminders_or_null() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .schema_type(nullable(Type::Array))
        .items(text(Type::String.into(), Some(1), 32).description(Some(
            "An offset (`15m`, `1d`, `PT15M`) or a local time (`09:00`, `-1d 18:00`).",
        )))
        .max_items(Some(todo_domain::due::REMINDERS_MAX_COUNT))
        .examples([json!(["15m", "1d"]), json!(["-1d 18:00", "09:00"])])
        .build()
}

pub(crate) fn time_zone_or_null() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .default(Some(json!(TimeZone::UTC.name())))
        .examples(["Europe/Berlin"])
        .build()
}

pub(crate) fn instant_filter() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
}

/// A search text of at most `max_chars`.
pub(crate) fn search(max_chars: usize) -> Object {
    text(Type::String.into(), None, max_chars).build()
}

pub(crate) fn limit() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(todo_store::tasks::LIST_LIMIT_MAX))
        .default(Some(json!(todo_store::tasks::LIST_LIMIT_DEFAULT)))
        .build()
}

/// `UserId` as the API spells it (a path parameter: `schema_with` would drop `required`).
pub struct UserIdSchema;

impl PartialSchema for UserIdSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(USER_ID_MAX_CHARS))
            .pattern(Some("^[A-Za-z0-9._@:|-]+$"))
            .description(Some(
                "A user id: the JWT subject. ASCII letters, digits and - _ . @ : |",
            ))
            .examples(["alice"])
            .into()
    }
}

impl ToSchema for UserIdSchema {
    fn name() -> Cow<'static, str> {
        "UserId".into()
    }
}
