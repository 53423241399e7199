//! Connecting: the database is created when missing, and pending migrations are applied.

use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{PgPool, Postgres};

use crate::{ConnectError, DatabaseSettings};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Creates the database if it does not exist yet, connects a pool and applies pending migrations.
pub async fn connect_and_migrate(settings: &DatabaseSettings) -> Result<PgPool, ConnectError> {
    let url = settings.url.expose_secret();
    let options: PgConnectOptions = url.parse().map_err(|_| ConnectError::InvalidUrl)?;
    // Autocomplete's `<%` finds a contact despite a typo from this word similarity on (one wrong
    // letter in a six-letter name scores about 0.43; PostgreSQL's default is 0.6).
    let options = options.options([("pg_trgm.word_similarity_threshold", "0.4")]);
    let options = if tls_by_default_pointless(url, &options) { options.ssl_mode(PgSslMode::Disable) } else { options };
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let exists = Postgres::database_exists(url)
        .await
        .map_err(|source| ConnectError::Server { database: name.clone(), source })?;
    if !exists {
        match Postgres::create_database(url).await {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another process may have created it between our check and our create.
            Err(err) if Postgres::database_exists(url).await.unwrap_or(false) => {
                tracing::debug!(error = %err, "database appeared concurrently");
            }
            Err(source) => return Err(ConnectError::Create { database: name, source }),
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        // No round trip before each use: a connection that broke (a restarted server) fails its
        // query with an I/O error, and the pool then closes it and opens a new one.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|source| ConnectError::Database { database: name, source })?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Whether to skip TLS that nobody asked for: the URL names no `sslmode` (nor does `PGSSLMODE`)
/// and the server is on this machine (loopback or a Unix socket), where TLS protects nothing but
/// costs CPU on both ends of every query. Elsewhere the default stays `prefer`, as with libpq.
fn tls_by_default_pointless(url: &str, options: &PgConnectOptions) -> bool {
    let asked = url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            let key = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
            key == "sslmode" || key == "ssl-mode"
        })
    });
    if asked || std::env::var_os("PGSSLMODE").is_some() {
        return false;
    }
    let host = options.get_host();
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointless(url: &str) -> bool {
        let options: PgConnectOptions = url.parse().unwrap();
        tls_by_default_pointless(url, &options)
    }

    #[test]
    fn tls_is_skipped_only_on_this_machine_and_only_when_not_asked_for() {
        assert!(pointless("postgres://postgres@127.0.0.1:5432/borcelle"));
        assert!(pointless("postgres://postgres@localhost/borcelle"));
        assert!(pointless("postgres://postgres@[::1]:5432/borcelle"));
        assert!(pointless("postgres://postgres@%2Fvar%2Frun%2Fpostgresql/borcelle"));
        assert!(!pointless("postgres://postgres@db.internal:5432/borcelle"));
        assert!(!pointless("postgres://postgres@10.0.0.5/borcelle"));
        assert!(!pointless("postgres://postgres@127.0.0.1/borcelle?sslmode=require"));
        assert!(!pointless("postgres://postgres@127.0.0.1/borcelle?application_name=x&SSLMODE=verify-full"));
    }
}
