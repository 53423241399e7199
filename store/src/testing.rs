//! A database of a test's own (feature `testing`): created on the local server (or
//! `BORCELLE_TEST_DATABASE_URL`) and migrated as `serve` does it, dropped when the test ends.
//! For the tests of this crate and of the crates above it; never built into a release.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness fails loudly by design

use std::time::Duration;

use secrecy::SecretString;
use uuid::Uuid;

use crate::{DatabaseSettings, Owner, PgPool};

/// A migrated database, dropped (with `FORCE`) when this is dropped.
pub struct TestDb {
    pub name: String,
    pub pool: PgPool,
}

/// The server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("BORCELLE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

impl TestDb {
    /// A new database named `{prefix}_{random}`.
    pub async fn new(prefix: &str) -> TestDb {
        let name = format!("{prefix}_{}", Uuid::new_v4().simple());
        let settings = DatabaseSettings {
            url: SecretString::from(format!("{}/{name}", server_url())),
            max_connections: 5,
            acquire_timeout: Duration::from_secs(5),
        };
        let pool = crate::connect_and_migrate(&settings).await.expect("a test database");
        TestDb { name, pool }
    }

    /// A verified account with this email; its id as an owner.
    pub async fn user(&self, email: &str) -> Owner {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO users (id, email, display_name, password_hash, role, email_verified_at)
             VALUES (gen_random_uuid(), $1, 'Test User', 'x', 'user', now()) RETURNING id",
        )
        .bind(email)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        Owner::new(id)
    }

    /// `count` contacts of `owner`, named `Contact {i}` with emails `{prefix}{i}@example.com`.
    pub async fn seed_contacts(&self, owner: Owner, prefix: &str, count: i32) {
        sqlx::query(
            "INSERT INTO contacts (id, owner_id, name, email)
             SELECT gen_random_uuid(), $1, 'Contact ' || i, $2 || i || '@example.com' FROM generate_series(1, $3) i",
        )
        .bind(owner.id())
        .bind(prefix)
        .bind(count)
        .execute(&self.pool)
        .await
        .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // On a thread of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                if let Ok(pool) = PgPool::connect(&format!("{}/postgres", server_url())).await {
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}
