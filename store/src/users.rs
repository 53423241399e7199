//! Accounts.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// What a user may do beyond their own data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Role {
        if value == "admin" { Role::Admin } else { Role::User }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: Role,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub async fn find_by_email(db: impl PgExecutor<'_>, email: &str) -> crate::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"SELECT id, email, display_name, password_hash, role AS "role: Role", email_verified_at, created_at
           FROM users WHERE email = $1"#,
        email
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn find_by_id(db: impl PgExecutor<'_>, id: Uuid) -> crate::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"SELECT id, email, display_name, password_hash, role AS "role: Role", email_verified_at, created_at
           FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// A user about to be inserted.
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub verified: bool,
}

/// Inserts a user; `false` when the email is already taken (nothing is written then).
pub async fn insert(db: impl PgExecutor<'_>, user: &NewUser<'_>) -> crate::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO users (id, email, display_name, password_hash, role, email_verified_at)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
         ON CONFLICT (email) DO NOTHING",
        user.id,
        user.email,
        user.display_name,
        user.password_hash,
        user.role.as_str(),
        user.verified
    )
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Replaces the credentials of an account that is not verified yet (a newer registration for
/// the same address); `false` when the account is verified, which nothing may overwrite.
pub async fn replace_unverified_credentials(
    db: impl PgExecutor<'_>,
    id: Uuid,
    password_hash: &str,
    display_name: &str,
) -> crate::Result<bool> {
    let done = sqlx::query!(
        "UPDATE users SET password_hash = $2, display_name = $3, updated_at = now()
         WHERE id = $1 AND email_verified_at IS NULL",
        id,
        password_hash,
        display_name
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_display_name(db: impl PgExecutor<'_>, id: Uuid, display_name: &str) -> crate::Result<()> {
    sqlx::query!("UPDATE users SET display_name = $2, updated_at = now() WHERE id = $1", id, display_name)
        .execute(db)
        .await?;
    Ok(())
}

/// Marks the email verified (idempotent).
pub async fn mark_verified(db: impl PgExecutor<'_>, id: Uuid) -> crate::Result<()> {
    sqlx::query!(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now() WHERE id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn set_password(db: impl PgExecutor<'_>, id: Uuid, password_hash: &str) -> crate::Result<()> {
    sqlx::query!("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1", id, password_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Sets the role of the account with this email; `false` when there is none.
/// Sets the time zone an account's pages show times in (`None`: the browser's).
pub async fn set_time_zone(db: impl PgExecutor<'_>, id: Uuid, time_zone: Option<&str>) -> crate::Result<bool> {
    let updated = sqlx::query!("UPDATE users SET time_zone = $2, updated_at = now() WHERE id = $1", id, time_zone)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

pub async fn set_role(db: impl PgExecutor<'_>, email: &str, role: Role) -> crate::Result<bool> {
    let updated = sqlx::query!("UPDATE users SET role = $2, updated_at = now() WHERE email = $1", email, role.as_str())
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// An account as the administrators' list shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Listed {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The accounts, by email, from `after` on (keyset pagination), at most `limit`.
pub async fn list(db: impl PgExecutor<'_>, after: Option<&str>, limit: i64) -> crate::Result<Vec<Listed>> {
    // A runtime-checked statement: its columns are the users table's, checked by the tests.
    sqlx::query_as::<_, Listed>(
        "SELECT id, email, display_name, role, email_verified_at, created_at FROM users
         WHERE $1::text IS NULL OR email > $1 ORDER BY email LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// The ids of the accounts with these emails, as `(id, email)`.
pub async fn ids_by_emails(db: impl PgExecutor<'_>, emails: &[String]) -> crate::Result<Vec<(Uuid, String)>> {
    let rows = sqlx::query!("SELECT id, email FROM users WHERE email = ANY($1)", emails).fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.id, r.email)).collect())
}

/// The emails of the accounts with these ids.
pub async fn emails_by_ids(db: impl PgExecutor<'_>, ids: &[Uuid]) -> crate::Result<Vec<String>> {
    Ok(sqlx::query_scalar!("SELECT email FROM users WHERE id = ANY($1)", ids).fetch_all(db).await?)
}
