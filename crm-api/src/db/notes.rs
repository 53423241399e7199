//! Notes, private to their owner.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Note {
    pub id: Uuid,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn insert(db: impl PgExecutor<'_>, id: Uuid, owner: Uuid, title: &str, body: &str) -> sqlx::Result<Note> {
    sqlx::query_as!(
        Note,
        "INSERT INTO notes (id, owner_id, title, body) VALUES ($1, $2, $3, $4)
         RETURNING id, title, body, created_at, updated_at",
        id,
        owner,
        title,
        body
    )
    .fetch_one(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, owner: Uuid, id: Uuid) -> sqlx::Result<Option<Note>> {
    sqlx::query_as!(
        Note,
        "SELECT id, title, body, created_at, updated_at FROM notes WHERE owner_id = $1 AND id = $2",
        owner,
        id
    )
    .fetch_optional(db)
    .await
}

/// The owner's notes, most recently edited first.
pub async fn list(db: impl PgExecutor<'_>, owner: Uuid, limit: i64) -> sqlx::Result<Vec<Note>> {
    sqlx::query_as!(
        Note,
        "SELECT id, title, body, created_at, updated_at FROM notes WHERE owner_id = $1
         ORDER BY updated_at DESC, id DESC LIMIT $2",
        owner,
        limit
    )
    .fetch_all(db)
    .await
}

pub async fn update(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    id: Uuid,
    title: &str,
    body: &str,
) -> sqlx::Result<Option<Note>> {
    sqlx::query_as!(
        Note,
        "UPDATE notes SET title = $3, body = $4, updated_at = now() WHERE owner_id = $1 AND id = $2
         RETURNING id, title, body, created_at, updated_at",
        owner,
        id,
        title,
        body
    )
    .fetch_optional(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, owner: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM notes WHERE owner_id = $1 AND id = $2", owner, id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}
