//! Persisted notifications: what a user sees in the bell, live or at their next visit.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    user: Uuid,
    kind: &str,
    title: &str,
    body: &str,
    data: &serde_json::Value,
) -> sqlx::Result<Notification> {
    sqlx::query_as!(
        Notification,
        "INSERT INTO notifications (id, user_id, kind, title, body, data) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, kind, title, body, data, read_at, created_at",
        Uuid::now_v7(),
        user,
        kind,
        title,
        body,
        data
    )
    .fetch_one(db)
    .await
}

/// The user's notifications, newest first; only unread ones when `unread_only`.
pub async fn list(
    db: impl PgExecutor<'_>,
    user: Uuid,
    unread_only: bool,
    limit: i64,
) -> sqlx::Result<Vec<Notification>> {
    sqlx::query_as!(
        Notification,
        "SELECT id, kind, title, body, data, read_at, created_at FROM notifications
         WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL) AND (expires_at IS NULL OR expires_at > now())
         ORDER BY created_at DESC, id DESC LIMIT $3",
        user,
        unread_only,
        limit
    )
    .fetch_all(db)
    .await
}

pub async fn unread_count(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "SELECT count(*) AS \"n!\" FROM notifications
         WHERE user_id = $1 AND read_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        user
    )
    .fetch_one(db)
    .await
}

/// Marks one of the user's notifications read; `false` when the user has no such notification.
pub async fn mark_read(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE user_id = $1 AND id = $2",
        user,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
