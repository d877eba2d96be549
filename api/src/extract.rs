//! JSON body and query extractors whose rejections use the API's error shape.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Path, Query, Request, path::ErrorKind,
        rejection::PathRejection,
    },
    http::request::Parts,
};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// Largest request body accepted; larger bodies get 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Self(v))
            .map_err(ApiError::from)
    }
}

pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(ApiError::from)
    }
}

/// `Path` whose rejection (a percent-encoded segment that is not UTF-8) uses the API's error
/// shape instead of axum's plain text.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. } => {
                    let key = key.clone();
                    Err(ApiError::new(ErrorCode::InvalidField, e.body_text()).with_field(key))
                }
                // The route and the extracted type disagree: a bug, not bad input.
                _ => Err(ApiError::internal(e.body_text())),
            },
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}
