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

/// Credentials a verification link applies when it is used (those of the registration that sent it).
pub struct Pending<'a> {
    pub password_hash: &'a str,
    pub display_name: &'a str,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    user_id: Uuid,
    purpose: Purpose,
    ttl_secs: f64,
    pending: Option<Pending<'_>>,
) -> crate::Result<()> {
    sqlx::query!(
        "INSERT INTO user_tokens (token_hash, user_id, purpose, expires_at, pending_password_hash, pending_display_name)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)",
        token_hash,
        user_id,
        purpose.as_str(),
        ttl_secs,
        pending.as_ref().map(|p| p.password_hash),
        pending.as_ref().map(|p| p.display_name)
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A token just used: its user and the credentials it carries, if any.
#[derive(Debug)]
pub struct Consumed {
    pub user_id: Uuid,
    pub pending_password_hash: Option<String>,
    pub pending_display_name: Option<String>,
}

/// Whether a token could be used now, without using it (to refuse early, before costly work).
pub async fn check(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    purpose: Purpose,
) -> crate::Result<Result<(), Rejection>> {
    let row = sqlx::query!(
        "SELECT used_at IS NOT NULL AS \"used!\", expires_at <= now() AS \"expired!\"
         FROM user_tokens WHERE token_hash = $1 AND purpose = $2",
        token_hash,
        purpose.as_str()
    )
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => Err(Rejection::Unknown),
        Some(row) if row.used => Err(Rejection::Used),
        Some(row) if row.expired => Err(Rejection::Expired),
        Some(_) => Ok(()),
    })
}

/// Marks a token used and returns what it carries, inside the caller's transaction, so that a
/// token is consumed exactly when the change it authorises is committed.
pub async fn consume(
    tx: &mut PgConnection,
    token_hash: &[u8],
    purpose: Purpose,
) -> crate::Result<Result<Consumed, Rejection>> {
    let row = sqlx::query!(
        "SELECT user_id, used_at IS NOT NULL AS \"used!\", expires_at <= now() AS \"expired!\",
                pending_password_hash, pending_display_name
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
    Ok(Ok(Consumed {
        user_id: row.user_id,
        pending_password_hash: row.pending_password_hash,
        pending_display_name: row.pending_display_name,
    }))
}

/// Retires every unused token of a purpose for a user (after a reset, older links stop working).
pub async fn retire_all(db: impl PgExecutor<'_>, user_id: Uuid, purpose: Purpose) -> crate::Result<()> {
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
pub async fn delete_expired(db: impl PgExecutor<'_>) -> crate::Result<u64> {
    let done = sqlx::query!("DELETE FROM user_tokens WHERE expires_at < now() - interval '1 day'").execute(db).await?;
    Ok(done.rows_affected())
}
