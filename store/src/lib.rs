//! Borcelle's PostgreSQL store: connecting (creating the database when missing), migrations, and
//! the SQL of each aggregate in its own module.
//!
//! Nothing here knows about HTTP, mail or the engine: functions take plain values and return rows
//! or a [`Error`]. Every statement on a user's data is scoped by an [`Owner`]; another user's id is
//! simply not found.

pub mod api_tokens;
pub mod attachments;
mod connect;
pub mod contacts;
mod error;
pub mod inbound;
pub mod json;
pub mod lane;
pub mod login_devices;
pub mod messages;
pub mod notes;
pub mod notifications;
pub mod occurrences;
pub mod outbox;
pub mod rate_limits;
pub mod rfc3339;
pub mod schedules;
pub mod sessions;
pub mod suppressions;
pub mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
pub mod user_tokens;
pub mod users;

use std::time::Duration;

use secrecy::SecretString;
use uuid::Uuid;

pub use connect::{MIGRATOR, connect_and_migrate};
pub use error::{ConnectError, Error, Result, database_unavailable};
pub use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// Where the database is and how many connections to keep.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://…` URL; the database is created when missing.
    pub url: SecretString,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before giving up (a 503 to clients).
    pub acquire_timeout: Duration,
}

/// The user whose data a statement may read or change: every owner-scoped function takes one, so
/// that "whose" is written once, at the call, and never forgotten in a `WHERE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct Owner(Uuid);

impl Owner {
    /// The user with this id (the caller of a request, or the owner of a row being worked on).
    pub const fn new(user_id: Uuid) -> Self {
        Self(user_id)
    }

    pub const fn id(self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Opens a transaction on the pool.
pub async fn begin(db: &PgPool) -> Result<Transaction<'static, Postgres>> {
    Ok(db.begin().await?)
}

/// Whether the database answers (for readiness checks).
pub async fn ping(db: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1").execute(db).await?;
    Ok(())
}
