//! Tasks: one send (a message or a note) to one or many contacts, with the ledger rows it owns.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::Owner;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    pub id: Uuid,
    pub kind: String,
    pub note_id: Option<Uuid>,
    pub subject: String,
    pub total: i32,
    pub sent: i32,
    pub failed: i32,
    /// Not sent: on the owner's suppression list.
    pub suppressed: i32,
    /// Sent, then reported back as undeliverable.
    pub bounced: i32,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub struct NewTask<'a> {
    pub id: Uuid,
    pub owner: Owner,
    pub kind: &'a str,
    pub note_id: Option<Uuid>,
    pub subject: &'a str,
    pub body: &'a str,
    /// Domain of the stable Message-IDs (`<id@domain>`).
    pub message_id_domain: &'a str,
}

/// Why a send could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// Some requested contact ids are not the owner's.
    UnknownContacts(Vec<Uuid>),
    /// The tag matches no contact.
    NoRecipients,
}

/// What [`enqueue`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub total: i32,
    /// Rows written as `suppressed`: their address is on the owner's list.
    pub suppressed: i32,
}

/// Writes the task and one ledger row per contact named by id, in the caller's transaction: the
/// ledger exists before anything is sent. Any id that is not the owner's makes the whole send
/// fail. A recipient on the owner's suppression list gets a `suppressed` row. Returns the number
/// of recipients. (A send to tags is queued in chunks: see [`queue_chunk`].)
pub async fn enqueue(
    tx: &mut PgConnection,
    task: &NewTask<'_>,
    ids: &[Uuid],
) -> crate::Result<Result<Enqueued, EnqueueError>> {
    insert(tx, task).await?;
    // The written contacts come back (bounded by the request), to name those that are not the
    // owner's.
    let written = sqlx::query!(
        "WITH chosen AS (
             SELECT new_ledger_id() AS mid, c.id, c.email, c.name,
                    -- The fields a personalised email may use (borcelle_mail::merge::ContactFields).
                    jsonb_build_object('first_name', c.first_name, 'last_name', c.last_name, 'name', c.name,
                        'email', c.email, 'company', c.company, 'phone', c.phone, 'address', c.address,
                        'tags', to_jsonb(c.tags)) AS merge
             FROM contacts c
             WHERE c.owner_id = $1 AND c.id = ANY($3)
         ), inserted AS (
             INSERT INTO ledger (id, owner_id, task_id, contact_id, to_email, to_name, message_id, merge)
             SELECT mid, $1, $2, id, email, name, '<' || replace(mid::text, '-', '') || '@' || $4 || '>', merge
             FROM chosen
             ON CONFLICT (task_id, to_email) DO NOTHING
             RETURNING id, contact_id
         ), queued AS (
             INSERT INTO deliveries (id, owner_id, task_id) SELECT id, $1, $2 FROM inserted
         )
         SELECT count(*) AS \"total!\",
                coalesce(array_agg(contact_id), '{}') AS \"contacts!: Vec<Uuid>\"
         FROM inserted",
        task.owner.id(),
        task.id,
        ids,
        task.message_id_domain
    )
    .fetch_one(&mut *tx)
    .await?;
    let inserted: std::collections::HashSet<Uuid> = written.contacts.into_iter().collect();
    let missing: Vec<Uuid> = ids.iter().filter(|id| !inserted.contains(id)).copied().collect();
    if !missing.is_empty() {
        return Ok(Err(EnqueueError::UnknownContacts(missing)));
    }
    if written.total == 0 {
        return Ok(Err(EnqueueError::NoRecipients));
    }
    let total = i32::try_from(written.total).unwrap_or(i32::MAX);
    // The total first: the suppressed rows are counted against it.
    set_total(tx, task.id, total).await?;
    let suppressed = crate::suppressions::mark_queued(tx, &[task.id]).await? as i32;
    Ok(Ok(Enqueued { total, suppressed }))
}

/// Writes the task row with a provisional total of 1; [`set_total`] sets the real one once the
/// ledger rows exist, so that it always equals their number.
pub async fn insert(tx: &mut PgConnection, task: &NewTask<'_>) -> crate::Result<()> {
    sqlx::query!(
        "INSERT INTO tasks (id, owner_id, kind, note_id, subject, body, total) VALUES ($1, $2, $3, $4, $5, $6, 1)",
        task.id,
        task.owner.id(),
        task.kind,
        task.note_id,
        task.subject,
        task.body
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Writes many reminder or broadcast task rows (provisional totals of 1, see [`insert`]).
pub async fn insert_many(
    tx: &mut PgConnection,
    kind: &str,
    ids: &[Uuid],
    owners: &[Uuid],
    subjects: &[String],
    bodies: &[String],
) -> crate::Result<()> {
    sqlx::query!(
        "INSERT INTO tasks (id, owner_id, kind, subject, body, total)
         SELECT id, owner_id, $1, subject, body, 1 FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[])
             AS t(id, owner_id, subject, body)",
        kind,
        ids,
        owners,
        subjects,
        bodies
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Sets many tasks' totals; tasks given a total of 0 are removed (they have no ledger rows).
pub async fn set_totals(tx: &mut PgConnection, ids: &[Uuid], totals: &[i32]) -> crate::Result<()> {
    sqlx::query!(
        "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::int[]) AS u(id, total)),
              emptied AS (DELETE FROM tasks t USING u WHERE t.id = u.id AND u.total = 0)
         UPDATE tasks t SET total = u.total,
             status = CASE WHEN t.suppressed >= u.total THEN 'done' ELSE t.status END,
             finished_at = CASE WHEN t.suppressed >= u.total THEN now() ELSE t.finished_at END
         FROM u WHERE t.id = u.id AND u.total > 0",
        ids,
        totals
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Sets the task's total to the number of ledger rows written for it; a task whose every row is
/// suppressed is done at once.
pub async fn set_total(tx: &mut PgConnection, id: Uuid, total: i32) -> crate::Result<()> {
    sqlx::query!(
        "UPDATE tasks SET total = $2,
             status = CASE WHEN suppressed >= $2 THEN 'done' ELSE status END,
             finished_at = CASE WHEN suppressed >= $2 THEN now() ELSE finished_at END
         WHERE id = $1",
        id,
        total
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Removes a task that ended up with no ledger rows.
pub async fn delete_empty(tx: &mut PgConnection, id: Uuid) -> crate::Result<()> {
    sqlx::query!("DELETE FROM tasks WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM ledger WHERE task_id = $1)", id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The task's counters and state, whoever owns it (for a worker waiting on its occurrence).
pub async fn progress(db: impl PgExecutor<'_>, id: Uuid) -> crate::Result<Option<Task>> {
    sqlx::query_as!(
        Task,
        "SELECT id, kind, note_id, subject, total, sent, failed, suppressed, bounced, status, created_at, finished_at FROM tasks WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn get(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<Option<Task>> {
    sqlx::query_as!(
        Task,
        "SELECT id, kind, note_id, subject, total, sent, failed, suppressed, bounced, status, created_at, finished_at
         FROM tasks WHERE owner_id = $1 AND id = $2",
        owner.id(),
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// The owner's tasks, newest first; only running ones when `running_only`.
pub async fn list(db: impl PgExecutor<'_>, owner: Owner, running_only: bool, limit: i64) -> crate::Result<Vec<Task>> {
    sqlx::query_as!(
        Task,
        "SELECT id, kind, note_id, subject, total, sent, failed, suppressed, bounced, status, created_at, finished_at
         FROM tasks WHERE owner_id = $1 AND (NOT $2 OR status = 'running')
         ORDER BY created_at DESC, id DESC LIMIT $3",
        owner.id(),
        running_only,
        limit
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// Content and sender of tasks, for the workers (one query per claimed batch).
#[derive(Debug, Clone)]
pub struct TaskContent {
    pub id: Uuid,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub total: i32,
    pub owner_name: String,
    pub owner_email: String,
}

pub async fn contents(db: impl PgExecutor<'_>, ids: &[Uuid]) -> crate::Result<Vec<TaskContent>> {
    sqlx::query_as!(
        TaskContent,
        "SELECT t.id, t.kind, t.subject, t.body, t.total, u.display_name AS owner_name, u.email AS owner_email
         FROM tasks t JOIN users u ON u.id = t.owner_id WHERE t.id = ANY($1)",
        ids
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// The tasks among `ids` that are already done (every ledger row suppressed when written), as
/// progress: their completion is told at once, since no delivery will.
pub async fn done_among(tx: &mut PgConnection, ids: &[Uuid]) -> crate::Result<Vec<crate::messages::TaskProgress>> {
    sqlx::query_as!(
        crate::messages::TaskProgress,
        "SELECT id AS task_id, owner_id, kind, subject, sent, failed, suppressed, total, status,
                true AS \"just_finished!\"
         FROM tasks WHERE id = ANY($1) AND status = 'done'",
        ids
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(crate::Error::from)
}

/// What a task's notification links to: its note, or the contact of a one-to-one message.
#[derive(Debug, Clone)]
pub struct TaskLink {
    pub task_id: Uuid,
    pub kind: String,
    pub note_id: Option<Uuid>,
    /// The recipient of a one-to-one message.
    pub contact_id: Option<Uuid>,
}

/// The links of the owner's tasks among `ids`, in one statement (a page of notifications).
pub async fn links(db: impl PgExecutor<'_>, owner: Owner, ids: &[Uuid]) -> crate::Result<Vec<TaskLink>> {
    sqlx::query_as!(
        TaskLink,
        r#"SELECT t.id AS task_id, t.kind, t.note_id,
                  CASE WHEN t.kind = 'message' AND t.total = 1
                       THEN (SELECT l.contact_id FROM ledger l WHERE l.task_id = t.id LIMIT 1) END AS contact_id
           FROM tasks t WHERE t.owner_id = $1 AND t.id = ANY($2)"#,
        owner.id(),
        ids
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// A send to tags being queued in chunks (see [`queue_chunk`]); its cursor stays in the task row.
#[derive(Debug, Clone)]
pub struct Queueing {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub tags: Vec<String>,
}

/// What one chunk wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkWritten {
    /// Contacts the chunk read (fewer than asked: the last chunk).
    pub read: i64,
    /// Ledger rows written, `suppressed` ones included.
    pub inserted: i32,
    pub suppressed: i32,
    /// Its last contact in (created_at, id) order, the next chunk's cursor.
    pub last: Option<(DateTime<Utc>, Uuid)>,
}

/// A task's counts after a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advanced {
    pub total: i32,
    pub suppressed: i32,
    /// Done already: every row was handled (or suppressed) by the time the last chunk was counted.
    pub done: bool,
}

/// Marks a task just written by [`insert`] as being queued in chunks from these tags, held by
/// its writer for `lease_secs`; the cursor starts before every contact.
pub async fn start_queueing(tx: &mut PgConnection, id: Uuid, tags: &[String], lease_secs: f64) -> crate::Result<()> {
    sqlx::query!(
        "UPDATE tasks SET queueing = true, queue_tags = $2, queue_after_created = '-infinity',
             queue_after_id = '00000000-0000-0000-0000-000000000000', queue_lease = now() + make_interval(secs => $3)
         WHERE id = $1",
        id,
        tags,
        lease_secs
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The task, if it is still being queued, under a lock on its queueing held until the
/// transaction ends: two writers of one task's chunks take turns, each from the cursor the other
/// committed.
pub async fn lock_queueing(tx: &mut PgConnection, id: Uuid) -> crate::Result<Option<Queueing>> {
    let mut key = [0u8; 8];
    key.copy_from_slice(&id.as_bytes()[8..]);
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", i64::from_le_bytes(key)).execute(&mut *tx).await?;
    sqlx::query_as!(Queueing, "SELECT id, owner_id, queue_tags AS \"tags!\" FROM tasks WHERE id = $1 AND queueing", id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(crate::Error::from)
}

/// Writes the ledger rows of the next `limit` recipients of a send to tags, after the task's
/// cursor and created no later than the task: a recipient on the owner's suppression list gets a
/// `suppressed` row. The task itself is left to [`advance`].
pub async fn queue_chunk(
    tx: &mut PgConnection,
    task: &Queueing,
    limit: i64,
    message_id_domain: &str,
) -> crate::Result<ChunkWritten> {
    let written = sqlx::query!(
        "WITH chosen AS MATERIALIZED (
             SELECT new_ledger_id() AS mid, c.id, c.email, c.name, c.created_at,
                    -- The fields a personalised email may use (borcelle_mail::merge::ContactFields).
                    jsonb_build_object('first_name', c.first_name, 'last_name', c.last_name, 'name', c.name,
                        'email', c.email, 'company', c.company, 'phone', c.phone, 'address', c.address,
                        'tags', to_jsonb(c.tags)) AS merge
             FROM contacts c
             WHERE c.owner_id = $1 AND c.tags && $2::text[]
               -- One walk of contacts_owner_created over the whole queueing, a chunk at a time.
               AND (c.created_at, c.id) > ((SELECT queue_after_created FROM tasks WHERE id = $4),
                                           (SELECT queue_after_id FROM tasks WHERE id = $4))
               AND c.created_at <= (SELECT created_at FROM tasks WHERE id = $4)
             ORDER BY c.created_at, c.id
             LIMIT $3
         ), written AS (
             INSERT INTO ledger (id, owner_id, task_id, contact_id, to_email, to_name, message_id, merge)
             SELECT ch.mid, $1, $4, ch.id, ch.email, ch.name, '<' || replace(ch.mid::text, '-', '') || '@' || $5 || '>',
                    ch.merge
             FROM chosen ch
             ON CONFLICT (task_id, to_email) DO NOTHING
             RETURNING id, to_email
         ), inserted AS (
             INSERT INTO deliveries (id, owner_id, task_id, status, last_error, next_attempt_at)
             SELECT id, $1, $4, CASE WHEN reason IS NULL THEN 'queued' ELSE 'suppressed' END, 'suppressed: ' || reason,
                    CASE WHEN reason IS NULL THEN now() END
             -- One lookup in the owner's list per recipient: the chunk's cost stays the same
             -- whatever the length of the list (a join would read all of it for each chunk).
             FROM (SELECT w.id, (SELECT s.reason FROM suppressions s WHERE s.owner_id = $1 AND s.email = lower(w.to_email)) AS reason
                   FROM written w) checked
             RETURNING status
         ), last AS (
             SELECT created_at, id FROM chosen ORDER BY created_at DESC, id DESC LIMIT 1
         )
         SELECT (SELECT count(*) FROM chosen) AS \"read!\",
                (SELECT count(*) FROM inserted)::int4 AS \"inserted!\",
                (SELECT count(*) FROM inserted WHERE status = 'suppressed')::int4 AS \"suppressed!\",
                (SELECT created_at FROM last) AS last_created,
                (SELECT id FROM last) AS last_id",
        task.owner_id,
        &task.tags,
        limit,
        task.id,
        message_id_domain
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(ChunkWritten {
        read: written.read,
        inserted: written.inserted,
        suppressed: written.suppressed,
        last: written.last_created.zip(written.last_id),
    })
}

/// Counts a chunk's rows into the task and moves its cursor, renewing the lease. After the last
/// chunk (`finished`) the task is queued, and done if every row is already handled: the counters
/// are read from the row as this statement finds it, after any outcome written meanwhile.
/// `first`: the task still has [`insert`]'s provisional total.
pub async fn advance(
    tx: &mut PgConnection,
    id: Uuid,
    written: &ChunkWritten,
    first: bool,
    finished: bool,
    lease_secs: f64,
) -> crate::Result<Advanced> {
    let (after_created, after_id) = written.last.unzip();
    sqlx::query_as!(
        Advanced,
        "UPDATE tasks SET
             total = CASE WHEN $3 THEN $2 ELSE total + $2 END,
             suppressed = suppressed + $4,
             queue_after_created = coalesce($5, queue_after_created),
             queue_after_id = coalesce($6, queue_after_id),
             queueing = NOT $7,
             queue_tags = CASE WHEN $7 THEN NULL ELSE queue_tags END,
             queue_lease = CASE WHEN $7 THEN NULL ELSE now() + make_interval(secs => $8) END,
             status = CASE WHEN $7 AND sent + failed + suppressed + $4 >= CASE WHEN $3 THEN $2 ELSE total + $2 END
                           THEN 'done' ELSE status END,
             finished_at = CASE WHEN $7 AND sent + failed + suppressed + $4 >= CASE WHEN $3 THEN $2 ELSE total + $2 END
                                THEN now() ELSE finished_at END
         WHERE id = $1
         RETURNING total, suppressed, status = 'done' AS \"done!\"",
        id,
        written.inserted,
        first,
        written.suppressed,
        after_created,
        after_id,
        finished,
        lease_secs
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(crate::Error::from)
}

/// Takes over a task whose queueing stopped (its writer's lease ran out: a crash, a restart),
/// renewing the lease for this process; the caller goes on from its cursor.
pub async fn take_stalled_queueing(db: impl PgExecutor<'_>, lease_secs: f64) -> crate::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE tasks SET queue_lease = now() + make_interval(secs => $1)
         WHERE id = (SELECT id FROM tasks WHERE queueing AND queue_lease < now()
                     ORDER BY queue_lease LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
        lease_secs
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}
