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
pub async fn insert(tx: &mut PgConnection, occurrence: &NewOccurrence<'_>) -> crate::Result<bool> {
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

/// Records an occurrence that could never run, with the reason; `false` when the occurrence was
/// recorded before (it ran, or failed, already).
pub async fn insert_failed(tx: &mut PgConnection, occurrence: &NewOccurrence<'_>, error: &str) -> crate::Result<bool> {
    let done = sqlx::query!(
        "INSERT INTO occurrences (id, resource_uid, kind, resource, scheduled_at, owner_id, status, error, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'failed', $7, now()) ON CONFLICT (resource_uid, scheduled_at) DO NOTHING",
        occurrence.id,
        occurrence.resource_uid,
        occurrence.kind,
        occurrence.resource,
        occurrence.scheduled_at,
        occurrence.owner_id,
        error
    )
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find(
    db: impl PgExecutor<'_>,
    resource_uid: Uuid,
    scheduled_at: DateTime<Utc>,
) -> crate::Result<Option<OccurrenceRow>> {
    sqlx::query_as!(
        OccurrenceRow,
        "SELECT id, scheduled_at, task_id, recipients, skipped, status, created_at, finished_at
         FROM occurrences WHERE resource_uid = $1 AND scheduled_at = $2",
        resource_uid,
        scheduled_at
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// Records what the occurrence queued; finished at once when it queued no email.
pub async fn set_outcome(
    tx: &mut PgConnection,
    id: Uuid,
    task_id: Option<Uuid>,
    recipients: i32,
    skipped: &serde_json::Value,
) -> crate::Result<()> {
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
pub async fn finish_for_task(db: impl PgExecutor<'_>, task: Uuid) -> crate::Result<()> {
    sqlx::query!(
        "UPDATE occurrences SET status = 'done', finished_at = now() WHERE task_id = $1 AND status = 'running'",
        task
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Stops the running occurrences scheduled before `before` (concurrencyPolicy Replace; the newer
/// one, and a retry of it, is never stopped): their unsent emails fail with the reason, and their
/// tasks finish with what they had sent.
pub async fn replace_running(tx: &mut PgConnection, resource_uid: Uuid, before: DateTime<Utc>) -> crate::Result<u64> {
    let stopped: Vec<Option<Uuid>> = sqlx::query_scalar!(
        "UPDATE occurrences SET status = 'replaced', finished_at = now()
         WHERE resource_uid = $1 AND status = 'running' AND scheduled_at < $2 RETURNING task_id",
        resource_uid,
        before
    )
    .fetch_all(&mut *tx)
    .await?;
    let tasks: Vec<Uuid> = stopped.iter().flatten().copied().collect();
    if !tasks.is_empty() {
        sqlx::query!(
            "WITH stopped AS (
                 UPDATE deliveries d SET status = 'failed',
                     last_error = 'replaced by a newer occurrence (concurrencyPolicy Replace)',
                     next_attempt_at = NULL, updated_at = now()
                 FROM ledger l
                 WHERE l.task_id = ANY($1) AND d.id = l.id AND d.status IN ('queued', 'retrying')
                 RETURNING d.task_id
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

/// The recipients of many reminder occurrences at once: pairs of (task, contact id), (task,
/// email) and (task, tag), each task owned by the reminder's owner.
#[derive(Debug, Default)]
pub struct RecipientPairs {
    pub by_id: (Vec<Uuid>, Vec<Uuid>),
    pub by_email: (Vec<Uuid>, Vec<String>),
    pub by_tag: (Vec<Uuid>, Vec<String>),
}

/// One ledger row written: its task and whom it goes to.
pub struct Queued {
    pub task_id: Uuid,
    pub contact_id: Uuid,
    pub email: String,
}

/// Inserts many occurrence rows; returns the ids of those written (the others existed already).
pub async fn insert_many(tx: &mut PgConnection, rows: &[NewOccurrence<'_>]) -> crate::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let uids: Vec<Uuid> = rows.iter().map(|r| r.resource_uid).collect();
    let kinds: Vec<String> = rows.iter().map(|r| r.kind.to_owned()).collect();
    let names: Vec<String> = rows.iter().map(|r| r.resource.to_owned()).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.scheduled_at).collect();
    let owners: Vec<Option<Uuid>> = rows.iter().map(|r| r.owner_id).collect();
    sqlx::query_scalar!(
        "INSERT INTO occurrences (id, resource_uid, kind, resource, scheduled_at, owner_id)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::uuid[])
         ON CONFLICT (resource_uid, scheduled_at) DO NOTHING
         RETURNING id",
        &ids,
        &uids,
        &kinds,
        &names,
        &times,
        &owners as &[Option<Uuid>]
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(crate::Error::from)
}

/// Writes one `queued` ledger row per contact named by id, by email or by tag of each task's
/// owner (each address once per task), in one statement.
pub async fn queue_contacts_many(
    tx: &mut PgConnection,
    pairs: &RecipientPairs,
    message_id_domain: &str,
) -> crate::Result<Vec<Queued>> {
    let rows = sqlx::query!(
        "WITH wanted AS (
             SELECT t.id AS task_id, t.owner_id, c.id AS contact_id, c.email, c.name, c.first_name, c.last_name,
                    c.company, c.phone, c.address, c.tags
             FROM unnest($1::uuid[], $2::uuid[]) w(task_id, contact_id)
             JOIN tasks t ON t.id = w.task_id
             JOIN contacts c ON c.id = w.contact_id AND c.owner_id = t.owner_id
             UNION ALL
             SELECT t.id, t.owner_id, c.id, c.email, c.name, c.first_name, c.last_name, c.company, c.phone,
                    c.address, c.tags
             FROM unnest($3::uuid[], $4::text[]) w(task_id, email)
             JOIN tasks t ON t.id = w.task_id
             JOIN contacts c ON c.owner_id = t.owner_id AND c.email = w.email
             UNION ALL
             SELECT t.id, t.owner_id, c.id, c.email, c.name, c.first_name, c.last_name, c.company, c.phone,
                    c.address, c.tags
             FROM unnest($5::uuid[], $6::text[]) w(task_id, tag)
             JOIN tasks t ON t.id = w.task_id
             JOIN contacts c ON c.owner_id = t.owner_id AND c.tags @> ARRAY[w.tag]
         ), chosen AS (
             SELECT DISTINCT ON (task_id, email) new_ledger_id() AS mid, task_id, owner_id, contact_id, email, name,
                    -- The fields a personalised email may use (borcelle_mail::merge::ContactFields).
                    jsonb_build_object('first_name', first_name, 'last_name', last_name, 'name', name,
                        'email', email, 'company', company, 'phone', phone, 'address', address,
                        'tags', to_jsonb(tags)) AS merge
             FROM wanted ORDER BY task_id, email, contact_id
         )
         , written AS (
             INSERT INTO ledger (id, owner_id, task_id, contact_id, to_email, to_name, message_id, merge)
             SELECT mid, owner_id, task_id, contact_id, email, name, '<' || replace(mid::text, '-', '') || '@' || $7 || '>', merge
             FROM chosen
             ON CONFLICT (task_id, to_email) DO NOTHING
             RETURNING id, owner_id, task_id, contact_id, to_email
         ), queued AS (
             INSERT INTO deliveries (id, owner_id, task_id) SELECT id, owner_id, task_id FROM written
         )
         SELECT task_id, contact_id AS \"contact_id!\", to_email FROM written",
        &pairs.by_id.0,
        &pairs.by_id.1,
        &pairs.by_email.0,
        &pairs.by_email.1,
        &pairs.by_tag.0,
        &pairs.by_tag.1,
        message_id_domain
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(|r| Queued { task_id: r.task_id, contact_id: r.contact_id, email: r.to_email }).collect())
}

/// Records what many occurrences queued (see [`set_outcome`]).
pub async fn set_outcomes(
    tx: &mut PgConnection,
    ids: &[Uuid],
    tasks: &[Option<Uuid>],
    recipients: &[i32],
    skipped: &[serde_json::Value],
) -> crate::Result<()> {
    sqlx::query!(
        "UPDATE occurrences o SET task_id = u.task_id, recipients = u.recipients, skipped = u.skipped,
             status = CASE WHEN u.task_id IS NULL THEN 'done' ELSE o.status END,
             finished_at = CASE WHEN u.task_id IS NULL THEN now() ELSE o.finished_at END
         FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::jsonb[]) u(id, task_id, recipients, skipped)
         WHERE o.id = u.id",
        ids,
        tasks as &[Option<Uuid>],
        recipients,
        skipped
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Occurrences that exist already, by (resource, time).
pub async fn find_many(
    tx: &mut PgConnection,
    uids: &[Uuid],
    times: &[DateTime<Utc>],
) -> crate::Result<Vec<(Uuid, OccurrenceRow)>> {
    let rows = sqlx::query!(
        "SELECT o.resource_uid, o.id, o.scheduled_at, o.task_id, o.recipients, o.skipped, o.status, o.created_at, o.finished_at
         FROM occurrences o JOIN unnest($1::uuid[], $2::timestamptz[]) w(uid, at)
           ON o.resource_uid = w.uid AND o.scheduled_at = w.at",
        uids,
        times
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let row = OccurrenceRow {
                id: r.id,
                scheduled_at: r.scheduled_at,
                task_id: r.task_id,
                recipients: r.recipients,
                skipped: r.skipped,
                status: r.status,
                created_at: r.created_at,
                finished_at: r.finished_at,
            };
            (r.resource_uid, row)
        })
        .collect())
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
) -> crate::Result<Vec<Uuid>> {
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
    .map_err(crate::Error::from)
}

/// Writes one `queued` ledger row per verified user of the group (a broadcast's email channel).
pub async fn queue_users(
    tx: &mut PgConnection,
    owner: Uuid,
    task: Uuid,
    message_id_domain: &str,
    group: UserGroup<'_>,
) -> crate::Result<i32> {
    let (admins_only, emails) = group.parts();
    let done = sqlx::query!(
        "WITH written AS (
             INSERT INTO ledger (id, owner_id, task_id, contact_id, to_email, to_name, message_id)
             SELECT mid, $1, $2, NULL, email, display_name, '<' || replace(mid::text, '-', '') || '@' || $3 || '>'
             FROM (SELECT new_ledger_id() AS mid, u.email, u.display_name FROM users u
                   WHERE u.email_verified_at IS NOT NULL
                     AND (NOT $4 OR u.role = 'admin')
                     AND ($5::text[] IS NULL OR u.email = ANY($5))) chosen
             ON CONFLICT (task_id, to_email) DO NOTHING
             RETURNING id
         )
         INSERT INTO deliveries (id, owner_id, task_id) SELECT id, $1, $2 FROM written",
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
pub async fn oldest_admin(db: impl PgExecutor<'_>) -> crate::Result<Option<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM users WHERE role = 'admin' ORDER BY created_at, id LIMIT 1")
        .fetch_optional(db)
        .await
        .map_err(crate::Error::from)
}
