//! The API's one error type and its one JSON shape: `{"error": {"code", "message", "field"?}}`.
//! The codes and their statuses are [`ErrorCode`], listed once; the OpenAPI document and the
//! MCP tools take them from there.

use axum::{
    Json,
    extract::rejection::{JsonRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use todo_domain::ValidationError;
use todo_store::StoreError;

use crate::service_error::ServiceError;

/// Every `code` an error response can carry, with the status it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400 (415 when the body is not sent as JSON at all).
    InvalidJson,
    /// 400.
    InvalidField,
    /// 400.
    InvalidQuery,
    /// 413.
    PayloadTooLarge,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 410.
    UserDeleted,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 409.
    Conflict,
    /// 503.
    Unavailable,
    /// 500, opaque; the cause is logged once.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidField,
        ErrorCode::InvalidQuery,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::UserDeleted,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as it appears in responses.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UserDeleted => "user_deleted",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The status an error with this code answers with.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidField | ErrorCode::InvalidQuery => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::UserDeleted => StatusCode::GONE,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
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
    /// An error with `code`'s status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
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
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidField, message).with_field(field)
    }

    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidQuery, message)
    }

    /// A server fault: logged once with its cause chain, opaque to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code.as_str(),
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

/// How REST answers a failed task operation.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        e.report();
        let code = match &e {
            ServiceError::Invalid { field, message } => return Self::invalid(field, message),
            ServiceError::NotFound => ErrorCode::NotFound,
            ServiceError::UserDeleted => ErrorCode::UserDeleted,
            ServiceError::Conflict => ErrorCode::Conflict,
            ServiceError::Unavailable(_) => ErrorCode::Unavailable,
            // Opaque: the cause is in the log.
            ServiceError::Internal(_) => ErrorCode::Internal,
        };
        Self::new(code, e.to_string())
    }
}

/// The stores' errors outside the task operations (the chat's conversations, the dead
/// letters) answer as the task operations' do.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match &rejection {
            JsonRejection::BytesRejection(_) => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::InvalidJson,
        };
        let message = match &rejection {
            JsonRejection::JsonDataError(e) => std::error::Error::source(e)
                .map_or_else(|| e.body_text(), |s| s.to_string())
                .to_string(),
            _ => rejection.body_text(),
        };
        let field = field_from_serde_message(&message);
        let mut err = Self::new(code, message);
        if matches!(rejection, JsonRejection::MissingJsonContentType(_)) {
            err.status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        }
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
    fn every_error_code_is_listed_once() {
        // The match is exhaustive: a new code fails to compile here until it is counted.
        let position = |code: ErrorCode| match code {
            ErrorCode::InvalidJson => 0,
            ErrorCode::InvalidField => 1,
            ErrorCode::InvalidQuery => 2,
            ErrorCode::PayloadTooLarge => 3,
            ErrorCode::Unauthorized => 4,
            ErrorCode::Forbidden => 5,
            ErrorCode::UserDeleted => 6,
            ErrorCode::NotFound => 7,
            ErrorCode::MethodNotAllowed => 8,
            ErrorCode::Conflict => 9,
            ErrorCode::Unavailable => 10,
            ErrorCode::Internal => 11,
        };
        let listed: Vec<usize> = ErrorCode::ALL.iter().map(|c| position(*c)).collect();
        assert_eq!(listed, (0..12).collect::<Vec<_>>());
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "codes are distinct");
    }

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
