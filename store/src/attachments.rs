//! Attachments: a row per stored object (owner, key, sanitised name, sniffed type, size,
//! SHA-256), and the join that says which tasks carry which attachments.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::Owner;

/// An attachment as its owner sees it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attachment {
    pub id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    #[serde(skip)]
    pub object_key: String,
    #[serde(skip)]
    pub sha256: Vec<u8>,
    #[serde(skip)]
    pub created_at: DateTime<Utc>,
}

pub struct NewAttachment<'a> {
    pub id: Uuid,
    pub owner: Owner,
    pub object_key: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size: i64,
    pub sha256: &'a [u8],
}

pub async fn insert(db: impl PgExecutor<'_>, new: &NewAttachment<'_>) -> crate::Result<Attachment> {
    sqlx::query_as!(
        Attachment,
        "INSERT INTO attachments (id, owner_id, object_key, filename, content_type, size, sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, filename, content_type, size, object_key, sha256, created_at",
        new.id,
        new.owner.id(),
        new.object_key,
        new.filename,
        new.content_type,
        new.size,
        new.sha256
    )
    .fetch_one(db)
    .await
    .map_err(crate::Error::from)
}

/// One of the owner's attachments (another user's id finds nothing).
pub async fn get(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<Option<Attachment>> {
    sqlx::query_as!(
        Attachment,
        "SELECT id, filename, content_type, size, object_key, sha256, created_at
         FROM attachments WHERE owner_id = $1 AND id = $2",
        owner.id(),
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// Sizes of those of `ids` that belong to the owner.
pub async fn owned_sizes(db: impl PgExecutor<'_>, owner: Owner, ids: &[Uuid]) -> crate::Result<Vec<(Uuid, i64)>> {
    let rows = sqlx::query!("SELECT id, size FROM attachments WHERE owner_id = $1 AND id = ANY($2)", owner.id(), ids)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.size)).collect())
}

/// Attaches `ids`, in this order, to a task (in the caller's transaction).
pub async fn attach_to_task(tx: &mut PgConnection, task_id: Uuid, ids: &[Uuid]) -> crate::Result<()> {
    sqlx::query!(
        "INSERT INTO task_attachments (task_id, attachment_id, position)
         SELECT $1, a.id, a.position::int4 FROM unnest($2::uuid[]) WITH ORDINALITY AS a(id, position)",
        task_id,
        ids
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// An attachment of a task, for the delivery engine.
#[derive(Debug, Clone)]
pub struct TaskAttachment {
    pub task_id: Uuid,
    pub id: Uuid,
    pub object_key: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: Vec<u8>,
}

/// The attachments of these tasks, each task's in its sender's order.
pub async fn of_tasks(db: impl PgExecutor<'_>, task_ids: &[Uuid]) -> crate::Result<Vec<TaskAttachment>> {
    sqlx::query_as!(
        TaskAttachment,
        "SELECT ta.task_id, a.id, a.object_key, a.filename, a.content_type, a.size, a.sha256
         FROM task_attachments ta JOIN attachments a ON a.id = ta.attachment_id
         WHERE ta.task_id = ANY($1)
         ORDER BY ta.task_id, ta.position",
        task_ids
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}
