//! Clients that have logged in to an account (see the `login_devices` migration): what lets a
//! login throttle tell the account's owner from a stranger.

use sqlx::PgExecutor;
use uuid::Uuid;

/// Remembers that the client holding the token of `token_hash` logged in to `user_id`.
pub async fn insert(db: impl PgExecutor<'_>, token_hash: &[u8], user_id: Uuid) -> crate::Result<()> {
    sqlx::query!(
        "INSERT INTO login_devices (token_hash, user_id) VALUES ($1, $2)
         ON CONFLICT (token_hash) DO UPDATE SET user_id = EXCLUDED.user_id, last_used_at = now()",
        token_hash,
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The account the token of `token_hash` logged in to, if it did within `max_idle_secs` of its
/// last use; a hit counts as a use.
pub async fn owner_of(db: impl PgExecutor<'_>, token_hash: &[u8], max_idle_secs: f64) -> crate::Result<Option<Uuid>> {
    let owner = sqlx::query_scalar!(
        "UPDATE login_devices SET last_used_at = now()
         WHERE token_hash = $1 AND last_used_at > now() - make_interval(secs => $2)
         RETURNING user_id",
        token_hash,
        max_idle_secs
    )
    .fetch_optional(db)
    .await?;
    Ok(owner)
}

/// Forgets clients unused for longer than `max_idle_secs`.
pub async fn delete_stale(db: impl PgExecutor<'_>, max_idle_secs: f64) -> crate::Result<u64> {
    let done =
        sqlx::query!("DELETE FROM login_devices WHERE last_used_at < now() - make_interval(secs => $1)", max_idle_secs)
            .execute(db)
            .await?;
    Ok(done.rows_affected())
}
