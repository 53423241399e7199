//! Notes, private to their owner.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::Owner;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Note {
    pub id: Uuid,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn insert(db: impl PgExecutor<'_>, id: Uuid, owner: Owner, title: &str, body: &str) -> crate::Result<Note> {
    sqlx::query_as!(
        Note,
        "INSERT INTO notes (id, owner_id, title, body) VALUES ($1, $2, $3, $4)
         RETURNING id, title, body, created_at, updated_at",
        id,
        owner.id(),
        title,
        body
    )
    .fetch_one(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn get(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<Option<Note>> {
    sqlx::query_as!(
        Note,
        "SELECT id, title, body, created_at, updated_at FROM notes WHERE owner_id = $1 AND id = $2",
        owner.id(),
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// The owner's notes, most recently edited first.
pub async fn list(db: impl PgExecutor<'_>, owner: Owner, limit: i64) -> crate::Result<Vec<Note>> {
    sqlx::query_as!(
        Note,
        "SELECT id, title, body, created_at, updated_at FROM notes WHERE owner_id = $1
         ORDER BY updated_at DESC, id DESC LIMIT $2",
        owner.id(),
        limit
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn update(
    db: impl PgExecutor<'_>,
    owner: Owner,
    id: Uuid,
    title: &str,
    body: &str,
) -> crate::Result<Option<Note>> {
    sqlx::query_as!(
        Note,
        "UPDATE notes SET title = $3, body = $4, updated_at = now() WHERE owner_id = $1 AND id = $2
         RETURNING id, title, body, created_at, updated_at",
        owner.id(),
        id,
        title,
        body
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn delete(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<bool> {
    let done = sqlx::query!("DELETE FROM notes WHERE owner_id = $1 AND id = $2", owner.id(), id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// The bodies of these notes, whoever owns them, as `(id, owner, body)` (the owner is checked by
/// the caller, who knows whose note each should be).
pub async fn bodies(db: impl PgExecutor<'_>, ids: &[Uuid]) -> crate::Result<Vec<(Uuid, Owner, String)>> {
    let rows = sqlx::query!("SELECT id, owner_id, body FROM notes WHERE id = ANY($1)", ids).fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.id, Owner::new(r.owner_id), r.body)).collect())
}
