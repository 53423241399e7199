//! Many signed-in users at once, written straight into the benchmark database: users, one session per
//! connection (the cookie secret is known to the load tool, only its SHA-256 is stored, as login stores it), and
//! an administrator with an API token to trigger broadcasts.

use anyhow::Context as _;
use borcelle_engine::accounts::secrets::hash_token;
use sqlx::PgPool;
use uuid::Uuid;

/// The secrets the load tool presents.
pub struct Seeded {
    /// One session cookie value per connection.
    pub session_tokens: Vec<String>,
    /// Email of the user behind each session.
    pub session_users: Vec<String>,
    /// `Authorization: Bearer` token of the administrator.
    pub admin_token: String,
}

pub fn user_email(index: usize) -> String {
    format!("ws{index}@bench.example")
}

/// `users` verified users and `sessions` sessions spread over them round-robin (session i belongs to user i % users).
pub async fn seed(db: &PgPool, users: usize, sessions: usize) -> anyhow::Result<Seeded> {
    let run = Uuid::new_v4().simple().to_string();
    let emails: Vec<String> = (0..users).map(user_email).collect();
    let ids: Vec<Uuid> = (0..users).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, role, email_verified_at)
         SELECT id, email, 'Fan-out ' || email, 'not a password hash: sessions are seeded', 'user', now()
         FROM UNNEST($1::uuid[], $2::text[]) AS u(id, email)",
    )
    .bind(&ids)
    .bind(&emails)
    .execute(db)
    .await
    .context("seeding users")?;

    let session_tokens: Vec<String> = (0..sessions).map(|i| format!("fanout-{run}-{i}")).collect();
    let hashes: Vec<Vec<u8>> = session_tokens.iter().map(|t| hash_token(t)).collect();
    let owners: Vec<Uuid> = (0..sessions).map(|i| ids[i % users]).collect();
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at)
         SELECT h, u, 'unused', now() + interval '1 day' FROM UNNEST($1::bytea[], $2::uuid[]) AS s(h, u)",
    )
    .bind(&hashes)
    .bind(&owners)
    .execute(db)
    .await
    .context("seeding sessions")?;

    let admin = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, role, email_verified_at)
         VALUES ($1, 'admin@bench.example', 'Fan-out admin', 'not a password hash', 'admin', now())",
    )
    .bind(admin)
    .execute(db)
    .await
    .context("seeding the administrator")?;
    let admin_token = format!("fanout-admin-{run}");
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, prefix) VALUES ($1, $2, 'fan-out', $3, 'fanout')",
    )
    .bind(Uuid::now_v7())
    .bind(admin)
    .bind(hash_token(&admin_token))
    .execute(db)
    .await
    .context("seeding the administrator's API token")?;
    sqlx::query("ANALYZE").execute(db).await?;
    let session_users = (0..sessions).map(|i| user_email(i % users)).collect();
    Ok(Seeded { session_tokens, session_users, admin_token })
}
