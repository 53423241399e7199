//! PostgreSQL: connecting (creating the database when missing), migrations, and the SQL of each
//! aggregate in its own module.

pub mod api_tokens;
pub mod attachments;
pub mod contacts;
pub mod messages;
pub mod notes;
pub mod notifications;
pub mod occurrences;
pub mod outbox;
pub mod rate_limits;
pub mod schedules;
pub mod sessions;
pub mod tasks;
pub mod user_tokens;
pub mod users;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::DatabaseSettings;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Creates the database if it does not exist yet, connects a pool and applies pending migrations.
pub async fn connect_and_migrate(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let url = settings.url.expose_secret();
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a valid postgres:// URL")?;
    // Autocomplete's `<%` finds a contact despite a typo from this word similarity on (one wrong
    // letter in a six-letter name scores about 0.43; PostgreSQL's default is 0.6).
    let options = options.options([("pg_trgm.word_similarity_threshold", "0.4")]);
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let exists = Postgres::database_exists(url)
        .await
        .with_context(|| format!("connecting to PostgreSQL to look for database {name:?}"))?;
    if !exists {
        match Postgres::create_database(url).await {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another process may have created it between our check and our create.
            Err(err) if Postgres::database_exists(url).await.unwrap_or(false) => {
                tracing::debug!(error = %err, "database appeared concurrently");
            }
            Err(err) => return Err(err).with_context(|| format!("creating database {name:?}")),
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to database {name:?}"))?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    Ok(pool)
}
