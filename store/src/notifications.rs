//! Persisted notifications: what a user sees in the bell, live or at their next visit.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::Owner;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    pub id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    user: Owner,
    kind: &str,
    title: &str,
    body: &str,
    data: &serde_json::Value,
) -> crate::Result<Notification> {
    sqlx::query_as!(
        Notification,
        "INSERT INTO notifications (id, user_id, kind, title, body, data) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, kind, title, body, data, read_at, created_at",
        Uuid::now_v7(),
        user.id(),
        kind,
        title,
        body,
        data
    )
    .fetch_one(db)
    .await
    .map_err(crate::Error::from)
}

/// The user's notifications, newest first; only unread ones when `unread_only`.
pub async fn list(
    db: impl PgExecutor<'_>,
    user: Owner,
    unread_only: bool,
    limit: i64,
) -> crate::Result<Vec<Notification>> {
    sqlx::query_as!(
        Notification,
        "SELECT id, kind, title, body, data, read_at, created_at FROM notifications
         WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL) AND (expires_at IS NULL OR expires_at > now())
         ORDER BY created_at DESC, id DESC LIMIT $3",
        user.id(),
        unread_only,
        limit
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn unread_count(db: impl PgExecutor<'_>, user: Owner) -> crate::Result<i64> {
    sqlx::query_scalar!(
        "SELECT count(*) AS \"n!\" FROM notifications
         WHERE user_id = $1 AND read_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        user.id()
    )
    .fetch_one(db)
    .await
    .map_err(crate::Error::from)
}

/// Marks one of the user's notifications read; `false` when the user has no such notification.
pub async fn mark_read(db: impl PgExecutor<'_>, user: Owner, id: Uuid) -> crate::Result<bool> {
    let done = sqlx::query!(
        "UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE user_id = $1 AND id = $2",
        user.id(),
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks every unread notification of the user read; returns how many were.
pub async fn mark_all_read(db: impl PgExecutor<'_>, user: Owner) -> crate::Result<u64> {
    let done =
        sqlx::query!("UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL", user.id())
            .execute(db)
            .await?;
    Ok(done.rows_affected())
}
