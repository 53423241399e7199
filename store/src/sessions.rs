//! Server-side login sessions.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::users::Role;

/// A live session with the user it belongs to.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// The account's time zone for pages (IANA), or none for the browser's.
    pub time_zone: Option<String>,
    pub csrf_token: String,
    pub last_seen_at: DateTime<Utc>,
}

/// A live session as read from the database, with its absolute expiry (which a cache of it must
/// honour too).
#[derive(Debug, Clone)]
pub struct FoundSession {
    pub session: ActiveSession,
    pub expires_at: DateTime<Utc>,
}

pub struct NewSession<'a> {
    pub id_hash: &'a [u8],
    pub user_id: Uuid,
    pub csrf_token: &'a str,
    pub absolute_secs: f64,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

pub async fn insert(db: impl PgExecutor<'_>, session: &NewSession<'_>) -> crate::Result<()> {
    sqlx::query!(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at, ip, user_agent)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)",
        session.id_hash,
        session.user_id,
        session.csrf_token,
        session.absolute_secs,
        session.ip,
        session.user_agent
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The session with this id hash, when it has neither expired nor been idle too long.
pub async fn find_active(
    db: impl PgExecutor<'_>,
    id_hash: &[u8],
    idle_secs: f64,
) -> crate::Result<Option<FoundSession>> {
    let row = sqlx::query!(
        "SELECT s.user_id, s.csrf_token, s.last_seen_at, s.expires_at, u.email, u.display_name, u.role, u.time_zone
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id_hash = $1 AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(secs => $2)",
        id_hash,
        idle_secs
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| FoundSession {
        session: ActiveSession {
            user_id: r.user_id,
            email: r.email,
            display_name: r.display_name,
            role: Role::parse(&r.role),
            time_zone: r.time_zone,
            csrf_token: r.csrf_token,
            last_seen_at: r.last_seen_at,
        },
        expires_at: r.expires_at,
    }))
}

/// Records activity, which pushes back the idle expiry.
pub async fn touch(db: impl PgExecutor<'_>, id_hash: &[u8]) -> crate::Result<()> {
    sqlx::query!("UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1", id_hash).execute(db).await?;
    Ok(())
}

pub async fn delete(db: impl PgExecutor<'_>, id_hash: &[u8]) -> crate::Result<()> {
    sqlx::query!("DELETE FROM sessions WHERE id_hash = $1", id_hash).execute(db).await?;
    Ok(())
}

/// Ends every session of a user except `keep` (the one making the request, if any).
pub async fn delete_for_user(db: impl PgExecutor<'_>, user_id: Uuid, keep: Option<&[u8]>) -> crate::Result<u64> {
    let done =
        sqlx::query!("DELETE FROM sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR id_hash <> $2)", user_id, keep)
            .execute(db)
            .await?;
    Ok(done.rows_affected())
}

/// Removes sessions past their absolute or idle expiry.
pub async fn delete_expired(db: impl PgExecutor<'_>, idle_secs: f64) -> crate::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(secs => $1)",
        idle_secs
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
