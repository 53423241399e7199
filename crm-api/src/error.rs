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

/// SQLSTATEs that say the database (not the request) is the problem: any connection exception
/// (class 08), the server shutting down or starting up (57P01 admin_shutdown, 57P02
/// crash_shutdown, 57P03 cannot_connect_now) and too many connections (53300). A request that
/// meets one answers 503, never 500: it may succeed when retried.
pub(crate) fn database_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => AppError::Unavailable(err.into()),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|code| database_unavailable(&code)) => {
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
        let database_was_unavailable =
            matches!(&self, AppError::Unavailable(err) if err.downcast_ref::<sqlx::Error>().is_some());
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
        if database_was_unavailable {
            response.extensions_mut().insert(crate::http::db_gate::DatabaseUnavailable);
        }
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::error::Error as StdError;

    use super::*;

    /// A server error with a SQLSTATE, as PostgreSQL sends them.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "server error {}", self.0)
        }
    }

    impl StdError for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn status_of(code: &'static str) -> StatusCode {
        AppError::from(sqlx::Error::Database(Box::new(ServerError(code)))).status()
    }

    #[test]
    fn a_database_that_is_shutting_down_or_unreachable_answers_503() {
        // admin_shutdown is what every open connection gets when PostgreSQL is stopped or restarted.
        for code in ["57P01", "57P02", "57P03", "53300", "08006", "08001"] {
            assert_eq!(status_of(code), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(AppError::from(sqlx::Error::Io(refused)).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(AppError::from(sqlx::Error::PoolTimedOut).code(), "unavailable");
    }

    #[test]
    fn other_database_errors_stay_internal() {
        assert_eq!(status_of("42P01"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(AppError::from(sqlx::Error::RowNotFound).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
