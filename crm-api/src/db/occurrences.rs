//! Occurrence rows (one per resource and scheduled time) and the set-based writes an occurrence
//! makes: a reminder's ledger rows, a broadcast's notifications and emails.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// An occurrence as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OccurrenceRow {
    pub id: Uuid,
    pub scheduled_at: DateTime<Utc>,
    pub task_id: Option<Uuid>,
    pub recipients: i32,
    pub skipped: serde_json::Value,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub struct NewOccurrence<'a> {
    pub id: Uuid,
    pub resource_uid: Uuid,
    pub kind: &'a str,
    pub resource: &'a str,
    pub scheduled_at: DateTime<Utc>,
    pub owner_id: Option<Uuid>,
}

/// Writes the occurrence row; `false` when one exists already for this resource and time.
pub async fn insert(tx: &mut PgConnection, occurrence: &NewOccurrence<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "INSERT INTO occurrences (id, resource_uid, kind, resource, scheduled_at, owner_id)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (resource_uid, scheduled_at) DO NOTHING",
        occurrence.id,
        occurrence.resource_uid,
        occurrence.kind,
        occurrence.resource,
        occurrence.scheduled_at,
        occurrence.owner_id
    )
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find(
    db: impl PgExecutor<'_>,
    resource_uid: Uuid,
    scheduled_at: DateTime<Utc>,
) -> sqlx::Result<Option<OccurrenceRow>> {
    sqlx::query_as!(
        OccurrenceRow,
        "SELECT id, scheduled_at, task_id, recipients, skipped, status, created_at, finished_at
         FROM occurrences WHERE resource_uid = $1 AND scheduled_at = $2",
        resource_uid,
        scheduled_at
    )
    .fetch_optional(db)
    .await
}

/// Records what the occurrence queued; finished at once when it queued no email.
pub async fn set_outcome(
    tx: &mut PgConnection,
    id: Uuid,
    task_id: Option<Uuid>,
    recipients: i32,
    skipped: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE occurrences SET task_id = $2, recipients = $3, skipped = $4,
             status = CASE WHEN $2::uuid IS NULL THEN 'done' ELSE status END,
             finished_at = CASE WHEN $2::uuid IS NULL THEN now() ELSE finished_at END
         WHERE id = $1",
        id,
        task_id,
        recipients,
        skipped
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Marks the occurrence that queued `task` finished (called when the task completes).
pub async fn finish_for_task(db: impl PgExecutor<'_>, task: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE occurrences SET status = 'done', finished_at = now() WHERE task_id = $1 AND status = 'running'",
        task
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The resource's occurrences still running, oldest first.
pub async fn running(db: impl PgExecutor<'_>, resource_uid: Uuid) -> sqlx::Result<Vec<OccurrenceRow>> {
    sqlx::query_as!(
        OccurrenceRow,
        "SELECT id, scheduled_at, task_id, recipients, skipped, status, created_at, finished_at
         FROM occurrences WHERE resource_uid = $1 AND status = 'running' ORDER BY scheduled_at",
        resource_uid
    )
    .fetch_all(db)
    .await
}

/// Stops running occurrences (concurrencyPolicy Replace): their unsent emails fail with the reason,
/// and their tasks finish with what they had sent.
pub async fn replace_running(tx: &mut PgConnection, resource_uid: Uuid) -> sqlx::Result<u64> {
    let stopped: Vec<Option<Uuid>> = sqlx::query_scalar!(
        "UPDATE occurrences SET status = 'replaced', finished_at = now()
         WHERE resource_uid = $1 AND status = 'running' RETURNING task_id",
        resource_uid
    )
    .fetch_all(&mut *tx)
    .await?;
    let tasks: Vec<Uuid> = stopped.iter().flatten().copied().collect();
    if !tasks.is_empty() {
        sqlx::query!(
            "WITH stopped AS (
                 UPDATE messages SET status = 'failed', last_error = 'replaced by a newer occurrence (concurrencyPolicy Replace)',
                     next_attempt_at = now(), updated_at = now()
                 WHERE task_id = ANY($1) AND status IN ('queued', 'retrying')
                 RETURNING task_id
             ), counts AS (SELECT task_id, count(*)::int AS n FROM stopped GROUP BY task_id)
             UPDATE tasks t SET failed = t.failed + c.n,
                 status = CASE WHEN t.sent + t.failed + c.n >= t.total THEN 'done' ELSE t.status END,
                 finished_at = CASE WHEN t.sent + t.failed + c.n >= t.total THEN now() ELSE t.finished_at END
             FROM counts c WHERE t.id = c.task_id",
            &tasks
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(stopped.len() as u64)
}

/// What a reminder's recipients resolved to.
pub struct Resolved {
    /// Ledger rows written.
    pub queued: i32,
    /// Contact ids and emails named in the spec that match none of the owner's contacts.
    pub missing: Vec<String>,
}

/// Writes one `queued` ledger row per contact of `owner` named by id, by email or by tag
/// (each address once), in the caller's transaction.
pub async fn queue_contacts(
    tx: &mut PgConnection,
    owner: Uuid,
    task: Uuid,
    message_id_domain: &str,
    ids: &[Uuid],
    emails: &[String],
    tag: Option<&str>,
) -> sqlx::Result<Resolved> {
    let emails: Vec<String> = emails.iter().map(|e| e.trim().to_lowercase()).collect();
    let rows = sqlx::query!(
        "WITH chosen AS (
             SELECT DISTINCT ON (lower(c.email)) gen_random_uuid() AS mid, c.id, c.email, c.name FROM contacts c
             WHERE c.owner_id = $1
               AND (c.id = ANY($3) OR lower(c.email) = ANY($4) OR ($5::text IS NOT NULL AND c.tags @> ARRAY[$5]::text[]))
             ORDER BY lower(c.email), c.id
         )
         INSERT INTO messages (id, owner_id, task_id, contact_id, to_email, to_name, message_id)
         SELECT mid, $1, $2, id, email, name, '<' || replace(mid::text, '-', '') || '@' || $6 || '>' FROM chosen
         ON CONFLICT (task_id, to_email) DO NOTHING
         RETURNING contact_id AS \"contact_id!\", lower(to_email) AS \"email!\"",
        owner,
        task,
        ids,
        &emails,
        tag,
        message_id_domain
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut missing: Vec<String> =
        ids.iter().filter(|id| !rows.iter().any(|r| r.contact_id == **id)).map(Uuid::to_string).collect();
    missing.extend(emails.iter().filter(|e| !rows.iter().any(|r| &r.email == *e)).cloned());
    Ok(Resolved { queued: rows.len() as i32, missing })
}

/// Which users a broadcast reaches.
#[derive(Debug, Clone, Copy)]
pub enum UserGroup<'a> {
    All,
    Admins,
    Emails(&'a [String]),
}

impl<'a> UserGroup<'a> {
    fn parts(self) -> (bool, Option<&'a [String]>) {
        match self {
            UserGroup::All => (false, None),
            UserGroup::Admins => (true, None),
            UserGroup::Emails(emails) => (false, Some(emails)),
        }
    }
}

pub struct BroadcastNotice<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub data: &'a serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Writes one notification per verified user of the group, in one statement; returns the ids of
/// the users reached.
pub async fn notify_users(
    tx: &mut PgConnection,
    group: UserGroup<'_>,
    notice: &BroadcastNotice<'_>,
) -> sqlx::Result<Vec<Uuid>> {
    let (admins_only, emails) = group.parts();
    sqlx::query_scalar!(
        "INSERT INTO notifications (id, user_id, kind, title, body, data, expires_at)
         SELECT gen_random_uuid(), u.id, 'broadcast', $3, $4, $5, $6 FROM users u
         WHERE u.email_verified_at IS NOT NULL
           AND (NOT $1 OR u.role = 'admin')
           AND ($2::text[] IS NULL OR u.email = ANY($2))
         RETURNING user_id",
        admins_only,
        emails,
        notice.title,
        notice.body,
        notice.data,
        notice.expires_at
    )
    .fetch_all(&mut *tx)
    .await
}

/// Writes one `queued` ledger row per verified user of the group (a broadcast's email channel).
pub async fn queue_users(
    tx: &mut PgConnection,
    owner: Uuid,
    task: Uuid,
    message_id_domain: &str,
    group: UserGroup<'_>,
) -> sqlx::Result<i32> {
    let (admins_only, emails) = group.parts();
    let done = sqlx::query!(
        "INSERT INTO messages (id, owner_id, task_id, contact_id, to_email, to_name, message_id)
         SELECT mid, $1, $2, NULL, email, display_name, '<' || replace(mid::text, '-', '') || '@' || $3 || '>'
         FROM (SELECT gen_random_uuid() AS mid, u.email, u.display_name FROM users u
               WHERE u.email_verified_at IS NOT NULL
                 AND (NOT $4 OR u.role = 'admin')
                 AND ($5::text[] IS NULL OR u.email = ANY($5))) chosen
         ON CONFLICT (task_id, to_email) DO NOTHING",
        owner,
        task,
        message_id_domain,
        admins_only,
        emails
    )
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() as i32)
}

/// The account that sends a broadcast's emails when no creator is known (a Broadcast resource):
/// the oldest administrator.
pub async fn oldest_admin(db: impl PgExecutor<'_>) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM users WHERE role = 'admin' ORDER BY created_at, id LIMIT 1")
        .fetch_optional(db)
        .await
}
