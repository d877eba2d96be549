//! Why a task operation ([`crate::service`]) failed, apart from how a front door answers it.
//! A leaf: the REST error type and the MCP tool results both map from it.

use todo_domain::ValidationError;
use todo_store::StoreError;

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Why a task operation failed, whichever front door asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A value does not fit the task it would produce: the field, and what to fix.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The id is not one of this user's tasks (another user's task is never revealed).
    #[error("no such task")]
    NotFound,
    /// The account was deleted; no further changes are accepted.
    #[error("this account was deleted; no further changes are accepted")]
    UserDeleted,
    /// The task was changed concurrently and the retries ran out.
    #[error("the task was being changed by another request; retry")]
    Conflict,
    /// The database does not answer now; a retry may succeed.
    #[error("the database is unavailable; retry shortly")]
    Unavailable(#[source] StoreError),
    /// Anything else: a fault of this service, opaque to the caller.
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ServiceError {
    /// Logs what an operator must see, once, when a front door answers: a database that does
    /// not answer (a warning) or a fault of this service (an error, with its cause). What the
    /// caller did wrong is not logged.
    pub fn report(&self) {
        match self {
            Self::Unavailable(cause) => tracing::warn!(error = %cause, "database unavailable"),
            Self::Internal(cause) => tracing::error!(error = %cause, "request failed"),
            _ => {}
        }
    }
}

impl From<ValidationError> for ServiceError {
    fn from(e: ValidationError) -> Self {
        Self::Invalid {
            field: e.field,
            message: format!("{}: {}", e.field, e.message),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::UserDeleted => Self::UserDeleted,
            StoreError::Conflict => Self::Conflict,
            StoreError::BadCursor(message) => Self::Invalid {
                field: "cursor",
                message,
            },
            StoreError::Invalid(e) => e.into(),
            e if e.is_transient() => Self::Unavailable(e),
            e => Self::Internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::DbErr;

    use super::*;
    use crate::error::{ApiError, ErrorCode};

    /// Each store outcome becomes the service error, and then the REST answer, it always did.
    #[test]
    fn store_errors_map_to_service_errors_and_rest_codes() {
        let cases = [
            (StoreError::NotFound, ErrorCode::NotFound, None),
            (StoreError::UserDeleted, ErrorCode::UserDeleted, None),
            (StoreError::Conflict, ErrorCode::Conflict, None),
            (
                StoreError::BadCursor("cursor does not fit".into()),
                ErrorCode::InvalidField,
                Some("cursor"),
            ),
            (
                StoreError::Invalid(ValidationError::new("reminders", "too early")),
                ErrorCode::InvalidField,
                Some("reminders"),
            ),
            (
                StoreError::Db(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)),
                ErrorCode::Unavailable,
                None,
            ),
            (
                StoreError::Corrupt("bad row".into()),
                ErrorCode::Internal,
                None,
            ),
        ];
        for (store, code, field) in cases {
            let described = store.to_string();
            let api = ApiError::from(ServiceError::from(store));
            assert_eq!(api.code, code, "{described}");
            assert_eq!(api.status, code.status(), "{described}");
            assert_eq!(api.field.as_deref(), field, "{described}");
        }
    }

    #[test]
    fn a_rule_broken_names_its_field_in_the_message() {
        let e = ServiceError::from(ValidationError::new("title", "must not be empty"));
        assert!(
            matches!(&e, ServiceError::Invalid { field: "title", message } if message == "title: must not be empty"),
            "{e:?}"
        );
    }
}
