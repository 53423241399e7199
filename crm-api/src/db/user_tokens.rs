//! Single-use, expiring tokens mailed to users. Only the SHA-256 of a token is stored.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// What a mailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
        }
    }
}

/// Why a token could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Unknown,
    Used,
    Expired,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    user_id: Uuid,
    purpose: Purpose,
    ttl_secs: f64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO user_tokens (token_hash, user_id, purpose, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        token_hash,
        user_id,
        purpose.as_str(),
        ttl_secs
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a token used and returns its user, inside the caller's transaction, so that a token is
/// consumed exactly when the change it authorises is committed.
pub async fn consume(
    tx: &mut PgConnection,
    token_hash: &[u8],
    purpose: Purpose,
) -> sqlx::Result<Result<Uuid, Rejection>> {
    let row = sqlx::query!(
        "SELECT user_id, used_at IS NOT NULL AS \"used!\", expires_at <= now() AS \"expired!\"
         FROM user_tokens WHERE token_hash = $1 AND purpose = $2 FOR UPDATE",
        token_hash,
        purpose.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(Err(Rejection::Unknown)) };
    if row.used {
        return Ok(Err(Rejection::Used));
    }
    if row.expired {
        return Ok(Err(Rejection::Expired));
    }
    sqlx::query!("UPDATE user_tokens SET used_at = now() WHERE token_hash = $1", token_hash).execute(&mut *tx).await?;
    Ok(Ok(row.user_id))
}

/// Retires every unused token of a purpose for a user (after a reset, older links stop working).
pub async fn retire_all(db: impl PgExecutor<'_>, user_id: Uuid, purpose: Purpose) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        user_id,
        purpose.as_str()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes tokens that expired more than a day ago (kept a while so a late click says "expired").
pub async fn delete_expired(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done = sqlx::query!("DELETE FROM user_tokens WHERE expires_at < now() - interval '1 day'").execute(db).await?;
    Ok(done.rows_affected())
}
