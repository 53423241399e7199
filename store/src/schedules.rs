//! Standalone schedules: reminders and broadcasts stored with the custom resources' spec and
//! status shapes, and the claims the in-process scheduler takes on due ones.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::Owner;

pub const REMINDER: &str = "ScheduledReminder";
pub const BROADCAST: &str = "Broadcast";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub kind: String,
    pub owner_id: Uuid,
    pub name: String,
    pub spec: serde_json::Value,
    pub generation: i64,
    pub status: serde_json::Value,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_scheduled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewSchedule<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub owner_id: Uuid,
    pub name: &'a str,
    pub spec: &'a serde_json::Value,
    pub status: &'a serde_json::Value,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Stores a new schedule; `None` when the name is taken (per owner for reminders, globally for
/// broadcasts).
pub async fn insert(db: impl PgExecutor<'_>, new: &NewSchedule<'_>) -> crate::Result<Option<ScheduleRow>> {
    sqlx::query_as!(
        ScheduleRow,
        "INSERT INTO schedules (id, kind, owner_id, name, spec, status, next_run_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT DO NOTHING
         RETURNING id, kind, owner_id, name, spec, generation, status, next_run_at, last_scheduled_at, created_at, updated_at",
        new.id,
        new.kind,
        new.owner_id,
        new.name,
        new.spec,
        new.status,
        new.next_run_at,
        new.created_at
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// One schedule by name: a reminder of `owner`, or (owner `None`) a broadcast.
pub async fn get(
    db: impl PgExecutor<'_>,
    kind: &str,
    owner: Option<Owner>,
    name: &str,
) -> crate::Result<Option<ScheduleRow>> {
    sqlx::query_as!(
        ScheduleRow,
        "SELECT id, kind, owner_id, name, spec, generation, status, next_run_at, last_scheduled_at, created_at, updated_at
         FROM schedules WHERE kind = $1 AND ($2::uuid IS NULL OR owner_id = $2) AND name = $3",
        kind,
        owner.map(Owner::id),
        name
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// A kind's schedules (of one owner, or all), by name.
pub async fn list(
    db: impl PgExecutor<'_>,
    kind: &str,
    owner: Option<Owner>,
    limit: i64,
) -> crate::Result<Vec<ScheduleRow>> {
    sqlx::query_as!(
        ScheduleRow,
        "SELECT id, kind, owner_id, name, spec, generation, status, next_run_at, last_scheduled_at, created_at, updated_at
         FROM schedules WHERE kind = $1 AND ($2::uuid IS NULL OR owner_id = $2) ORDER BY name LIMIT $3",
        kind,
        owner.map(Owner::id),
        limit
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// Replaces the spec (a new generation) and when to look next.
pub async fn update_spec(
    db: impl PgExecutor<'_>,
    id: Uuid,
    spec: &serde_json::Value,
    status: &serde_json::Value,
    next_run_at: Option<DateTime<Utc>>,
) -> crate::Result<Option<ScheduleRow>> {
    sqlx::query_as!(
        ScheduleRow,
        "UPDATE schedules SET spec = $2, status = $3, next_run_at = $4, generation = generation + 1, updated_at = now()
         WHERE id = $1
         RETURNING id, kind, owner_id, name, spec, generation, status, next_run_at, last_scheduled_at, created_at, updated_at",
        id,
        spec,
        status,
        next_run_at
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> crate::Result<bool> {
    let done = sqlx::query!("DELETE FROM schedules WHERE id = $1", id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// When the next schedule is due.
pub async fn next_due(db: impl PgExecutor<'_>) -> crate::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!("SELECT min(next_run_at) FROM schedules").fetch_one(db).await.map_err(crate::Error::from)
}

/// Locks a due schedule for this transaction; `None` when it is no longer due or another
/// scheduler holds it.
pub async fn lock_due(tx: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> crate::Result<Option<ScheduleRow>> {
    sqlx::query_as!(
        ScheduleRow,
        "SELECT id, kind, owner_id, name, spec, generation, status, next_run_at, last_scheduled_at, created_at, updated_at
         FROM schedules WHERE id = $1 AND next_run_at <= $2 FOR UPDATE SKIP LOCKED",
        id,
        now
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(crate::Error::from)
}

/// Locks up to `limit` due schedules for this transaction, earliest first, skipping those another
/// scheduler holds.
pub async fn lock_due_batch(tx: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> crate::Result<Vec<ScheduleRow>> {
    sqlx::query_as!(
        ScheduleRow,
        "SELECT id, kind, owner_id, name, spec, generation, status, next_run_at, last_scheduled_at, created_at, updated_at
         FROM schedules WHERE next_run_at <= $1 ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(crate::Error::from)
}

/// How many occurrences of each of these schedules are running.
pub async fn running_counts(db: impl PgExecutor<'_>, ids: &[Uuid]) -> crate::Result<Vec<(Uuid, i64)>> {
    let rows = sqlx::query!(
        "SELECT resource_uid, count(*) AS \"n!\" FROM occurrences
         WHERE resource_uid = ANY($1) AND status = 'running' GROUP BY resource_uid",
        ids
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.resource_uid, r.n)).collect())
}

/// Writes what the scheduler decided for many schedules.
pub async fn save_decisions(
    tx: &mut PgConnection,
    ids: &[Uuid],
    statuses: &[serde_json::Value],
    next_run_at: &[Option<DateTime<Utc>>],
    last_scheduled_at: &[Option<DateTime<Utc>>],
) -> crate::Result<()> {
    sqlx::query!(
        "UPDATE schedules s SET status = u.status, next_run_at = u.next_run_at, last_scheduled_at = u.last_scheduled_at
         FROM unnest($1::uuid[], $2::jsonb[], $3::timestamptz[], $4::timestamptz[])
             AS u(id, status, next_run_at, last_scheduled_at)
         WHERE s.id = u.id",
        ids,
        statuses,
        next_run_at as &[Option<DateTime<Utc>>],
        last_scheduled_at as &[Option<DateTime<Utc>>]
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The latest finished occurrence of each of these schedules, with its counts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LastRun {
    pub resource_uid: Uuid,
    pub scheduled_at: DateTime<Utc>,
    pub occurrence_id: Uuid,
    pub status: String,
    pub recipients: i32,
    pub sent: Option<i32>,
    pub failed: Option<i32>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed (`status` `failed`).
    pub error: Option<String>,
    /// When the latest occurrence that ran to its end (`done`) finished.
    pub last_success: Option<DateTime<Utc>>,
}

pub async fn last_runs(db: impl PgExecutor<'_>, ids: &[Uuid]) -> crate::Result<Vec<LastRun>> {
    sqlx::query_as!(
        LastRun,
        "SELECT DISTINCT ON (o.resource_uid) o.resource_uid, o.scheduled_at, o.id AS occurrence_id, o.status,
                o.recipients, t.sent AS \"sent?\", t.failed AS \"failed?\", o.finished_at, o.error,
                (SELECT max(s.finished_at) FROM occurrences s
                 WHERE s.resource_uid = o.resource_uid AND s.status = 'done') AS last_success
         FROM occurrences o LEFT JOIN tasks t ON t.id = o.task_id
         WHERE o.resource_uid = ANY($1) AND o.status <> 'running'
         ORDER BY o.resource_uid, o.scheduled_at DESC",
        ids
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// The running occurrences of these schedules.
pub async fn active_runs(db: impl PgExecutor<'_>, ids: &[Uuid]) -> crate::Result<Vec<(Uuid, Uuid, DateTime<Utc>)>> {
    let rows = sqlx::query!(
        "SELECT resource_uid, id, scheduled_at FROM occurrences WHERE resource_uid = ANY($1) AND status = 'running'
         ORDER BY scheduled_at",
        ids
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.resource_uid, r.id, r.scheduled_at)).collect())
}
