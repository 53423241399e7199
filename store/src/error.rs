//! The store's errors: what a caller needs to tell a passing outage (retry, 503) from a bad value
//! and from a bug.

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached, is restarting, or has no connection to spare: the same
    /// call may succeed shortly.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Text the database cannot store (NUL and other characters outside its encoding).
    #[error("text must not contain NUL or other characters that cannot be stored")]
    UnstorableText(#[source] sqlx::Error),
    /// The statement lost a race with a concurrent one on the same rows (a deadlock or a
    /// serialization failure, SQLSTATE 40P01 / 40001): nothing was written, and running it again
    /// normally succeeds.
    #[error("another change to the same rows ran at the same time: send the request again")]
    Contended(#[source] sqlx::Error),
    /// Anything else: a bug or a broken schema.
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQLSTATEs that say the database (not the request) is the problem: any connection exception
/// (class 08), the server shutting down or starting up (57P01 admin_shutdown, 57P02
/// crash_shutdown, 57P03 cannot_connect_now) and too many connections (53300).
pub fn database_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Error::Unavailable(err),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|code| database_unavailable(&code)) => {
                Error::Unavailable(err)
            }
            // character_not_in_repertoire / untranslatable_character: text with NUL and the like.
            sqlx::Error::Database(ref db) if matches!(db.code().as_deref(), Some("22021") | Some("22P05")) => {
                Error::UnstorableText(err)
            }
            sqlx::Error::Database(ref db) if matches!(db.code().as_deref(), Some("40P01") | Some("40001")) => {
                Error::Contended(err)
            }
            other => Error::Query(other),
        }
    }
}

impl Error {
    /// The driver's error underneath.
    pub fn source_error(&self) -> &sqlx::Error {
        match self {
            Error::Unavailable(err) | Error::UnstorableText(err) | Error::Contended(err) | Error::Query(err) => err,
        }
    }

    /// Whether the database, not the statement, failed (worth retrying).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// Why connecting at start failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("DATABASE_URL is not a valid postgres:// URL")]
    InvalidUrl,
    #[error("connecting to PostgreSQL to look for database {database:?}: {source}")]
    Server { database: String, source: sqlx::Error },
    #[error("creating database {database:?}: {source}")]
    Create { database: String, source: sqlx::Error },
    #[error("connecting to database {database:?}: {source}")]
    Database { database: String, source: sqlx::Error },
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

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

    fn classify(code: &'static str) -> Error {
        Error::from(sqlx::Error::Database(Box::new(ServerError(code))))
    }

    #[test]
    fn a_database_that_is_shutting_down_or_unreachable_is_unavailable() {
        // admin_shutdown is what every open connection gets when PostgreSQL is stopped or restarted.
        for code in ["57P01", "57P02", "57P03", "53300", "08006", "08001"] {
            assert!(classify(code).is_unavailable(), "{code}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(Error::from(sqlx::Error::Io(refused)).is_unavailable());
        assert!(Error::from(sqlx::Error::PoolTimedOut).is_unavailable());
    }

    #[test]
    fn text_the_database_cannot_store_is_told_apart() {
        assert!(matches!(classify("22021"), Error::UnstorableText(_)));
        assert!(matches!(classify("22P05"), Error::UnstorableText(_)));
    }

    #[test]
    fn other_database_errors_are_query_errors() {
        assert!(matches!(classify("42P01"), Error::Query(_)));
        assert!(matches!(Error::from(sqlx::Error::RowNotFound), Error::Query(_)));
    }
}
