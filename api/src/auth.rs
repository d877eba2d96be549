//! JWT bearer authentication (HS256, `sub` = user id), as an extractor so handlers never
//! parse headers.

use axum::{extract::FromRequestParts, http::request::Parts};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use service_kit::Secret;
use todo_domain::UserId;

use crate::error::ApiError;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

/// The longest lifetime `chat-api token` signs: 30 days.
pub const TOKEN_TTL_MAX_SECONDS: u64 = 30 * 24 * 3600;

/// Verifies and mints tokens with one shared secret.
#[derive(Clone)]
pub struct JwtKeys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// The user a token speaks for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "token has expired",
                ErrorKind::ImmatureSignature => {
                    "token is not valid yet (its `nbf` is in the future)"
                }
                ErrorKind::InvalidSignature => "token signature is invalid",
                ErrorKind::InvalidAlgorithm => "token must be signed with HS256",
                ErrorKind::MissingRequiredClaim(_) => "token must carry `sub` and `exp` claims",
                _ => "token is malformed",
            };
            ApiError::unauthorized(why)
        })?;
        UserId::parse(&data.claims.sub)
            .map_err(|_| ApiError::unauthorized("token subject is not a valid user id"))
    }

    /// A token for `user`, valid for `ttl_seconds` from `now_unix` (local development and
    /// tests). `chat-api token` refuses lifetimes over [`TOKEN_TTL_MAX_SECONDS`].
    pub fn mint(
        &self,
        user: &UserId,
        now_unix: u64,
        ttl_seconds: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: user.as_str().to_owned(),
            exp: now_unix + ttl_seconds,
            iat: Some(now_unix),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser(pub UserId);

impl<S> FromRequestParts<S> for AuthUser
where
    S: AsRef<JwtKeys> + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("missing Authorization: Bearer <token> header")
            })?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("Authorization header is not valid text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("Authorization header must be `Bearer <token>`")
            })?;
        state.as_ref().verify(token).map(AuthUser)
    }
}

impl AuthUser {
    /// The path's user id must be the caller's own.
    pub fn require(&self, path_user: &str) -> Result<&UserId, ApiError> {
        if self.0.as_str() == path_user {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "the path's user id is not the authenticated user",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_and_a_tampered_one_does_not() {
        let keys = JwtKeys::new(&Secret::new("s3cret-s3cret-s3cret-s3cret-s3cret!"));
        let now = jsonwebtoken::get_current_timestamp();
        let user = UserId::parse("alice").expect("valid");
        let token = keys.mint(&user, now, 60).expect("mint");
        assert_eq!(keys.verify(&token).expect("valid token"), user);
        let other = JwtKeys::new(&Secret::new("another-secret-another-secret-xx"));
        assert!(other.verify(&token).is_err());
        let expired = keys.mint(&user, now - 3_600, 60).expect("mint");
        assert_eq!(
            keys.verify(&expired).expect_err("expired").message,
            "token has expired"
        );
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let keys = JwtKeys::new(&Secret::new("s3cret-s3cret-s3cret-s3cret-s3cret!"));
        // {"alg":"none","typ":"JWT"} . {"sub":"alice","exp":9999999999} . (no signature)
        let token =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(keys.verify(token).is_err());
    }
}
