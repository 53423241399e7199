//! Personal API tokens (`Authorization: Bearer`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::Owner;

use super::sessions::ActiveSession;
use super::users::Role;

/// A token as its owner sees it: never the secret, only its first characters.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Uuid,
    name: &str,
    token_hash: &[u8],
    prefix: &str,
) -> crate::Result<ApiToken> {
    sqlx::query_as!(
        ApiToken,
        "INSERT INTO api_tokens (id, user_id, name, token_hash, prefix) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, name, prefix, created_at, last_used_at",
        id,
        user_id,
        name,
        token_hash,
        prefix
    )
    .fetch_one(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn list(db: impl PgExecutor<'_>, owner: Owner) -> crate::Result<Vec<ApiToken>> {
    sqlx::query_as!(
        ApiToken,
        "SELECT id, name, prefix, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC",
        owner.id()
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// Deletes one of the user's tokens; `false` when the user has no token with that id.
pub async fn delete(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<bool> {
    let done =
        sqlx::query!("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2", id, owner.id()).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every token of a user (after a password reset); returns how many.
pub async fn delete_all(db: impl PgExecutor<'_>, user_id: Uuid) -> crate::Result<u64> {
    let done = sqlx::query!("DELETE FROM api_tokens WHERE user_id = $1", user_id).execute(db).await?;
    Ok(done.rows_affected())
}

/// The owner of a token, recording the use (at most once a minute per token).
pub async fn authenticate(db: impl PgExecutor<'_>, token_hash: &[u8]) -> crate::Result<Option<(Uuid, ActiveSession)>> {
    let row = sqlx::query!(
        "WITH used AS (
             UPDATE api_tokens SET last_used_at = now()
             WHERE token_hash = $1 AND (expires_at IS NULL OR expires_at > now())
               AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
         )
         SELECT t.id, t.user_id, u.email, u.display_name, u.role, now() AS \"now!\"
         FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > now())",
        token_hash
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        (
            r.id,
            ActiveSession {
                user_id: r.user_id,
                email: r.email,
                display_name: r.display_name,
                role: Role::parse(&r.role),
                // The JSON API answers times in UTC.
                time_zone: None,
                csrf_token: String::new(),
                last_seen_at: r.now,
            },
        )
    }))
}
