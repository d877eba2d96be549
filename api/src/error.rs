//! The API's one error type and its one JSON shape: `{"error": {"code", "message", "field"?}}`.
//!
//! | code | status |
//! |---|---|
//! | `invalid_json`, `invalid_field`, `invalid_query`, `payload_too_large` | 400 / 413 |
//! | `unauthorized` | 401 |
//! | `forbidden`, `user_deleted` | 403 / 410 |
//! | `not_found` | 404 |
//! | `method_not_allowed` | 405 |
//! | `conflict` | 409 |
//! | `unavailable` | 503 |
//! | `internal` | 500 (opaque; the cause is logged once) |

use axum::{
    Json,
    extract::rejection::{JsonRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use todo_domain::ValidationError;
use todo_store::StoreError;

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such task")
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", message).with_field(field)
    }

    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// A server fault: logged once with its cause chain, opaque to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        // RFC 6750: a refused bearer token names the scheme the client must use (as the MCP
        // endpoint's refusal does).
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::invalid(e.field, format!("{}: {}", e.field, e.message))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(),
            StoreError::UserDeleted => Self::new(
                StatusCode::GONE,
                "user_deleted",
                "this account was deleted; no further changes are accepted",
            ),
            StoreError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the task was being changed by another request; retry",
            ),
            StoreError::BadCursor(message) => Self::invalid("cursor", message),
            StoreError::Db(ref db) if e.is_transient() => {
                tracing::warn!(error = %db, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; retry shortly",
                )
            }
            other => Self::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_json"
        };
        let message = match &rejection {
            JsonRejection::JsonDataError(e) => std::error::Error::source(e)
                .map_or_else(|| e.body_text(), |s| s.to_string())
                .to_string(),
            _ => rejection.body_text(),
        };
        let field = field_from_serde_message(&message);
        let err = Self::new(status, code, message);
        match field {
            Some(f) => err.with_field(f),
            None => err,
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let message = rejection.body_text();
        let field = field_from_serde_message(&message);
        let err = Self::invalid_query(message);
        match field {
            Some(f) => err.with_field(f),
            None => err,
        }
    }
}

/// serde names the offending field as "`name`" (unknown or missing field) or as a path
/// prefix "name: ..." (a wrong type, through serde_path_to_error in axum).
fn field_from_serde_message(message: &str) -> Option<String> {
    if let Some(rest) = message.split("field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    let head = message.split(": ").next()?;
    (!head.is_empty()
        && head.len() < 64
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '[' || c == ']'))
    .then(|| head.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_recovered_from_serde_messages() {
        assert_eq!(
            field_from_serde_message("unknown field `colour`, expected one of ..."),
            Some("colour".into())
        );
        assert_eq!(
            field_from_serde_message("priority: invalid type: integer `5`, expected a string"),
            Some("priority".into())
        );
        assert_eq!(
            field_from_serde_message("EOF while parsing an object at line 1 column 9"),
            None
        );
    }
}
