//! The one conversion of failures into HTTP answers: the JSON error body
//! `{"error": {"code": "...", "message": "...", "field": "..."}}` with the right status.
//!
//! [`AppError`] is what handlers return: the domain's errors ([`borcelle_engine::Error`], which
//! know nothing of HTTP) and the few that only the web layer can meet (a body that is not JSON, a
//! missing session, a CSRF check).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use borcelle_engine::Error as DomainError;
use serde::Serialize;

/// Why a request failed. Every variant is the caller's to fix, but a domain error can be the
/// server's (a database outage: 503; a bug: 500).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
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
    #[error("{0}")]
    CsrfRejected(&'static str),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// A value that breaks a rule (422 naming `field`).
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Domain(DomainError::invalid(field, message))
    }

    /// Something that does not exist or is not the caller's (404).
    pub fn not_found(what: &'static str) -> Self {
        AppError::Domain(DomainError::NotFound(what))
    }

    /// Only some users may do this (403).
    pub fn forbidden(why: &'static str) -> Self {
        AppError::Domain(DomainError::Forbidden(why))
    }

    /// A failure of the server's own (500), logged with its cause.
    pub fn internal(err: impl Into<borcelle_engine::BoxError>) -> Self {
        AppError::Domain(DomainError::Internal(err.into()))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Domain(err) => domain_status(err),
            AppError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::PayloadTooLarge { .. } | AppError::FieldTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unauthenticated | AppError::InvalidApiToken => StatusCode::UNAUTHORIZED,
            AppError::CsrfRejected(_) => StatusCode::FORBIDDEN,
        }
    }

    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Domain(err) => domain_code(err),
            AppError::MalformedBody(_) => "malformed_body",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::PayloadTooLarge { .. } | AppError::FieldTooLarge { .. } => "payload_too_large",
            AppError::Unauthenticated => "authentication_required",
            AppError::InvalidApiToken => "invalid_token",
            AppError::CsrfRejected(_) => "csrf_rejected",
        }
    }

    /// The field to fix, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Domain(err) => err.field(),
            AppError::FieldTooLarge { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The message for the caller: what to fix, never a server's inner error.
    pub fn message(&self) -> String {
        match self {
            AppError::Domain(DomainError::Database(borcelle_store::Error::Unavailable(_))) => {
                DomainError::Unavailable("the database".into()).to_string()
            }
            AppError::Domain(DomainError::Database(borcelle_store::Error::Query(_))) => {
                DomainError::Internal("a query".into()).to_string()
            }
            other => other.to_string(),
        }
    }

    /// Every field error, in order (one for most errors with a field, several when a form had
    /// several wrong fields).
    pub fn field_errors(&self) -> Vec<(&str, String)> {
        match self {
            AppError::Domain(err @ DomainError::InvalidFields(_)) => {
                err.field_errors().into_iter().map(|(field, message)| (field, message.to_owned())).collect()
            }
            other => other.field().map(|field| vec![(field, other.message())]).unwrap_or_default(),
        }
    }

    /// Whether this is the database being down (the API's gate then answers 503 at once).
    pub fn is_database_unavailable(&self) -> bool {
        matches!(self, AppError::Domain(DomainError::Database(err)) if err.is_unavailable())
    }
}

fn domain_status(err: &DomainError) -> StatusCode {
    match err {
        DomainError::Invalid { .. } | DomainError::InvalidFields(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::NotFound(_) | DomainError::UnknownCursor | DomainError::NothingNamed { .. } => {
            StatusCode::NOT_FOUND
        }
        DomainError::Conflict { .. } => StatusCode::CONFLICT,
        // An unknown link names nothing; a used or expired one conflicts with what it became.
        DomainError::Token { code: "token_invalid", .. } => StatusCode::NOT_FOUND,
        DomainError::Token { .. } => StatusCode::CONFLICT,
        DomainError::WrongPassword => StatusCode::FORBIDDEN,
        DomainError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        DomainError::InvalidCredentials | DomainError::AccountGone => StatusCode::UNAUTHORIZED,
        DomainError::EmailNotVerified | DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
        DomainError::Database(borcelle_store::Error::Unavailable(_) | borcelle_store::Error::Contended(_))
        | DomainError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        DomainError::Database(borcelle_store::Error::UnstorableText(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::Database(borcelle_store::Error::Query(_)) | DomainError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn domain_code(err: &DomainError) -> &'static str {
    match err {
        DomainError::Invalid { .. }
        | DomainError::InvalidFields(_)
        | DomainError::Database(borcelle_store::Error::UnstorableText(_)) => "invalid_field",
        DomainError::NotFound(_) | DomainError::NothingNamed { .. } => "not_found",
        DomainError::UnknownCursor => "cursor_not_found",
        DomainError::Conflict { code, .. } | DomainError::Token { code, .. } => code,
        DomainError::Throttled { .. } => "too_many_requests",
        DomainError::InvalidCredentials => "invalid_credentials",
        DomainError::WrongPassword => "wrong_password",
        DomainError::AccountGone => "authentication_required",
        DomainError::EmailNotVerified => "email_not_verified",
        DomainError::Forbidden(_) => "forbidden",
        DomainError::Database(borcelle_store::Error::Unavailable(_)) | DomainError::Unavailable(_) => "unavailable",
        DomainError::Database(borcelle_store::Error::Contended(_)) => "contended",
        DomainError::Database(borcelle_store::Error::Query(_)) | DomainError::Internal(_) => "internal",
    }
}

impl From<borcelle_store::Error> for AppError {
    fn from(err: borcelle_store::Error) -> Self {
        AppError::Domain(err.into())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        AppError::Domain(err.into())
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
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError<'a>>>,
}

#[derive(Serialize)]
struct FieldError<'a> {
    field: &'a str,
    message: &'a str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let database_was_unavailable = self.is_database_unavailable();
        match &self {
            AppError::Domain(err) if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE => {
                tracing::error!(error = ?err, "request failed")
            }
            AppError::Domain(err) if status == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(error = %error_chain(err), "dependency unavailable")
            }
            _ => {}
        }
        let retry_after = match &self {
            AppError::Domain(DomainError::Throttled { retry_after_secs }) => Some((*retry_after_secs).max(1)),
            AppError::Domain(DomainError::Database(borcelle_store::Error::Contended(_))) => Some(1),
            _ => None,
        };
        let existing_id = match &self {
            AppError::Domain(DomainError::Conflict { existing_id, .. }) => *existing_id,
            _ => None,
        };
        let errors = match &self {
            AppError::Domain(err @ DomainError::InvalidFields(_)) => {
                Some(err.field_errors().into_iter().map(|(field, message)| FieldError { field, message }).collect())
            }
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                errors,
                code: self.code(),
                message: self.message(),
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

/// An error and its causes, on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(err: sqlx::Error) -> AppError {
        AppError::from(err)
    }

    #[test]
    fn a_database_outage_answers_503_and_closes_the_gate() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = database(sqlx::Error::Io(refused));
        assert_eq!((err.status(), err.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
        assert!(err.is_database_unavailable());
        assert_eq!(err.message(), "the service is temporarily unavailable; try again shortly");
        assert_eq!(database(sqlx::Error::PoolTimedOut).status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn other_database_errors_stay_internal_and_say_nothing_inside() {
        let err = database(sqlx::Error::RowNotFound);
        assert_eq!((err.status(), err.code()), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
        assert_eq!(err.message(), "internal error");
    }

    #[test]
    fn domain_errors_keep_their_status_code_and_field() {
        let err = AppError::validation("email", "email is required");
        assert_eq!(
            (err.status(), err.code(), err.field()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("email"))
        );
        let err = AppError::from(DomainError::Throttled { retry_after_secs: 30 });
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(AppError::not_found("contact").to_string(), "contact not found");
        assert_eq!(AppError::from(DomainError::AccountGone).status(), StatusCode::UNAUTHORIZED);
    }
}
