//! The domain's errors: what went wrong in terms of the product (a field to fix, something not
//! found, a conflict, a throttle), never in terms of HTTP. The web layer turns them into answers
//! in one place.

use uuid::Uuid;

/// An error from a library below, kept whole for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an operation failed. Every variant but `Database`, `Unavailable` and `Internal` is the
/// caller's to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value breaks a rule; `field` names it (`spec.schedule`, `email`, …).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// Several values break rules: each `(field, message)`, in the order a form shows them. The
    /// first is the one a single-error client sees (its message and field); never empty.
    #[error("{}", .0.first().map_or("", |(_, message)| message.as_str()))]
    InvalidFields(Vec<(String, String)>),
    /// The thing does not exist, or is not the caller's (which must look the same).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A field names something the caller does not have (a tag no contact carries, another user's
    /// contact in a spec): a 404, with the field to fix.
    #[error("{message}")]
    NothingNamed { field: &'static str, message: String },
    /// A page cursor that no list handed out (or handed out for another sort): no page starts there.
    #[error("no page starts at this cursor: use the next_cursor of the previous page, with the same sort")]
    UnknownCursor,
    /// It collides with something that exists, which `existing_id` names when known.
    #[error("{message}")]
    Conflict { code: &'static str, field: &'static str, message: String, existing_id: Option<Uuid> },
    /// A mailed link (verification, password reset) that cannot be used.
    #[error("{message}")]
    Token { code: &'static str, message: &'static str },
    #[error("too many attempts; try again in {retry_after_secs} seconds")]
    Throttled { retry_after_secs: u64 },
    #[error("that email and password do not match an account")]
    InvalidCredentials,
    /// A logged-in user's current password, asked again before a change, is not theirs.
    #[error("the current password is not correct")]
    WrongPassword,
    #[error("verify your email address before logging in; we can send the link again")]
    EmailNotVerified,
    #[error("{0}")]
    Forbidden(&'static str),
    /// The signed-in account no longer exists.
    #[error("log in again: this account no longer exists")]
    AccountGone,
    /// The database failed; the store says whether it is down (retry) or the statement is wrong.
    #[error(transparent)]
    Database(#[from] borcelle_store::Error),
    /// Another dependency is down or saturated (object store, password hashing, the cluster):
    /// the same call may succeed shortly.
    #[error("the service is temporarily unavailable; try again shortly")]
    Unavailable(#[source] BoxError),
    /// A bug or a broken dependency.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A value that breaks a rule.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), message: message.into() }
    }

    /// Every field error this error carries, in order: one for [`Error::Invalid`], all for
    /// [`Error::InvalidFields`], none for the rest.
    pub fn field_errors(&self) -> Vec<(&str, &str)> {
        match self {
            Error::Invalid { field, message } => vec![(field.as_str(), message.as_str())],
            Error::InvalidFields(errors) => errors.iter().map(|(f, m)| (f.as_str(), m.as_str())).collect(),
            _ => Vec::new(),
        }
    }

    /// Whatever the caller could not have avoided: a retry may succeed, or it is a bug.
    pub fn is_server_side(&self) -> bool {
        matches!(self, Error::Database(_) | Error::Unavailable(_) | Error::Internal(_))
    }

    pub fn internal(err: impl Into<BoxError>) -> Self {
        Error::Internal(err.into())
    }
}

impl Error {
    /// The field the caller should fix, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::InvalidFields(errors) => errors.first().map(|(field, _)| field.as_str()),
            Error::Token { .. } => Some("token"),
            Error::WrongPassword => Some("current_password"),
            Error::UnknownCursor => Some("cursor"),
            Error::NothingNamed { field, .. } => Some(field),
            Error::Conflict { field, .. } => Some(field),
            Error::Database(borcelle_store::Error::UnstorableText(_)) => Some("body"),
            _ => None,
        }
    }
}

/// The field errors of one input, gathered check by check.
#[derive(Default)]
pub(crate) struct FieldErrors {
    errors: Vec<(String, String)>,
    /// An error that is not a field's (kept whole; the first one wins).
    other: Option<Error>,
}

impl FieldErrors {
    /// The checked value, or `None` with its error kept.
    pub(crate) fn check<T>(&mut self, result: Result<T, Error>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(Error::Invalid { field, message }) => {
                self.push(field, message);
                None
            }
            Err(Error::InvalidFields(errors)) => {
                for (field, message) in errors {
                    self.push(field, message);
                }
                None
            }
            Err(other) => {
                self.other.get_or_insert(other);
                None
            }
        }
    }

    /// One error per field: the first found.
    fn push(&mut self, field: String, message: String) {
        if !self.errors.iter().any(|(seen, _)| *seen == field) {
            self.errors.push((field, message));
        }
    }

    /// `Ok` when every check passed, else [`FieldErrors::into_error`].
    pub(crate) fn into_result(self) -> Result<(), Error> {
        if self.errors.is_empty() && self.other.is_none() { Ok(()) } else { Err(self.into_error()) }
    }

    /// What failed: one field's error as [`Error::Invalid`], several as [`Error::InvalidFields`].
    pub(crate) fn into_error(mut self) -> Error {
        if let Some(other) = self.other {
            return other;
        }
        match self.errors.len() {
            0 => Error::internal("a check failed without saying why"),
            1 => {
                let (field, message) = self.errors.remove(0);
                Error::Invalid { field, message }
            }
            _ => Error::InvalidFields(self.errors),
        }
    }
}

impl From<borcelle_mail::TemplateError> for Error {
    fn from(err: borcelle_mail::TemplateError) -> Self {
        Error::Internal(Box::new(err))
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Database(err.into())
    }
}

/// A part that could not be set up at start: its settings are wrong, or what it needs is missing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SetupError {
    what: String,
    #[source]
    source: BoxError,
}

impl SetupError {
    pub fn new(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self { what: what.into(), source: source.into() }
    }
}
