//! The one error type of the HTTP and service layer, converted once into the JSON error body
//! `{"error": {"code": "...", "message": "...", "field": "..."}}` with the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why a request failed. Every variant but `Internal` and `Unavailable` is the caller's to fix.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    Validation { field: String, message: String },
    #[error("{0}")]
    MalformedBody(String),
    #[error("send the body as {0}")]
    UnsupportedMediaType(&'static str),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// One field of the request (an uploaded file) is over its own limit.
    #[error("{field} is larger than the limit of {limit} bytes")]
    FieldTooLarge { field: &'static str, limit: u64 },
    #[error("log in or send an API token to use this")]
    Unauthenticated,
    #[error("the API token is not valid: it was revoked, has expired or is mistyped")]
    InvalidApiToken,
    #[error("that email and password do not match an account")]
    InvalidCredentials,
    #[error("verify your email address before logging in; we can send the link again")]
    EmailNotVerified,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    CsrfRejected(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request collides with an existing resource, which `existing_id` names.
    #[error("{message}")]
    Conflict { code: &'static str, field: &'static str, message: String, existing_id: Option<uuid::Uuid> },
    #[error("{message}")]
    Token { code: &'static str, message: &'static str },
    #[error("too many attempts; try again in {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("the service is temporarily unavailable; try again shortly")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation { field: field.into(), message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::MalformedBody(_) | AppError::Token { .. } => StatusCode::BAD_REQUEST,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::PayloadTooLarge { .. } | AppError::FieldTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unauthenticated | AppError::InvalidCredentials | AppError::InvalidApiToken => {
                StatusCode::UNAUTHORIZED
            }
            AppError::EmailNotVerified | AppError::Forbidden(_) | AppError::CsrfRejected(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation { .. } => "invalid_field",
            AppError::MalformedBody(_) => "malformed_body",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::PayloadTooLarge { .. } | AppError::FieldTooLarge { .. } => "payload_too_large",
            AppError::Unauthenticated => "authentication_required",
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::InvalidApiToken => "invalid_token",
            AppError::EmailNotVerified => "email_not_verified",
            AppError::Forbidden(_) => "forbidden",
            AppError::CsrfRejected(_) => "csrf_rejected",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict { code, .. } => code,
            AppError::Token { code, .. } => code,
            AppError::TooManyRequests { .. } => "too_many_requests",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Validation { field, .. } => Some(field),
            AppError::Token { .. } => Some("token"),
            AppError::Conflict { field, .. } => Some(field),
            AppError::FieldTooLarge { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                AppError::Unavailable(err.into())
            }
            // character_not_in_repertoire / untranslatable_character: text with NUL and the like.
            sqlx::Error::Database(ref db) if matches!(db.code().as_deref(), Some("22021") | Some("22P05")) => {
                AppError::validation("body", "text must not contain NUL or other characters that cannot be stored")
            }
            other => AppError::Internal(other.into()),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing_id: Option<uuid::Uuid>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            AppError::Internal(err) => tracing::error!(error = ?err, "request failed"),
            AppError::Unavailable(err) => tracing::warn!(error = %err, "dependency unavailable"),
            _ => {}
        }
        let retry_after = match self {
            AppError::TooManyRequests { retry_after_secs } => Some(retry_after_secs.max(1)),
            _ => None,
        };
        let existing_id = match self {
            AppError::Conflict { existing_id, .. } => existing_id,
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                field: self.field(),
                retry_after,
                existing_id,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type AppResult<T> = Result<T, AppError>;
