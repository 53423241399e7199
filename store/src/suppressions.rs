//! The suppression list, per owner: addresses Borcelle never mails again for that owner
//! (unsubscribed, hard-bounced, complained, or added by hand), and the signing keys of the links
//! that put them there.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::Owner;

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The recipient used the unsubscribe link (or the provider reported an unsubscribe).
    Unsubscribed,
    /// The recipient's server refused the address for good.
    HardBounce,
    /// The recipient marked a message as spam.
    Complaint,
    /// The owner added it.
    Manual,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsubscribed => "unsubscribed",
            Reason::HardBounce => "hard_bounce",
            Reason::Complaint => "complaint",
            Reason::Manual => "manual",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "unsubscribed" => Reason::Unsubscribed,
            "hard_bounce" => Reason::HardBounce,
            "complaint" => Reason::Complaint,
            "manual" => Reason::Manual,
            _ => return None,
        })
    }
}

/// One entry of an owner's list.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suppression {
    pub email: String,
    pub reason: Reason,
    /// What happened, in the words of whoever reported it (a bounce's diagnostic, "unsubscribe link").
    pub detail: Option<String>,
    /// The ledger row that caused it, when there is one.
    pub message_id: Option<Uuid>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

struct Row {
    email: String,
    reason: String,
    detail: Option<String>,
    message_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl From<Row> for Suppression {
    fn from(row: Row) -> Self {
        Suppression {
            email: row.email,
            // The table's CHECK admits only the four reasons.
            reason: Reason::parse(&row.reason).unwrap_or(Reason::Manual),
            detail: row.detail,
            message_id: row.message_id,
            created_at: row.created_at,
        }
    }
}

/// A new entry (the email already lower case).
#[derive(Debug, Clone)]
pub struct NewSuppression<'a> {
    pub email: &'a str,
    pub reason: Reason,
    pub detail: Option<&'a str>,
    pub message_id: Option<Uuid>,
}

/// Adds an entry; an address already on the list keeps its first reason and time (a replayed
/// report changes nothing). Returns whether it was added.
pub async fn add(db: impl PgExecutor<'_>, owner: Owner, entry: &NewSuppression<'_>) -> crate::Result<bool> {
    let done = sqlx::query!(
        "INSERT INTO suppressions (owner_id, email, reason, detail, message_id) VALUES ($1, lower($2), $3, $4, $5)
         ON CONFLICT (owner_id, email) DO NOTHING",
        owner.id(),
        entry.email,
        entry.reason.as_str(),
        entry.detail,
        entry.message_id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Adds the address of each ledger row to its owner's list, in one statement (feedback batches,
/// hard bounces of a delivery batch): `(message row id, reason, detail)`. Rows that do not exist
/// are skipped. Returns how many entries were added.
pub async fn add_for_messages(
    db: impl PgExecutor<'_>,
    messages: &[Uuid],
    reasons: &[&str],
    details: &[Option<String>],
) -> crate::Result<u64> {
    let reasons: Vec<String> = reasons.iter().map(|r| (*r).to_owned()).collect();
    let done = sqlx::query!(
        "INSERT INTO suppressions (owner_id, email, reason, detail, message_id)
         SELECT DISTINCT ON (m.owner_id, lower(m.to_email)) m.owner_id, lower(m.to_email), f.reason, left(f.detail, 1000), m.id
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS f(id, reason, detail)
         JOIN ledger m ON m.id = f.id
         ORDER BY m.owner_id, lower(m.to_email), m.id
         ON CONFLICT (owner_id, email) DO NOTHING",
        messages,
        &reasons,
        details as &[Option<String>]
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Removes an entry: the owner's explicit re-subscription. Returns whether there was one.
pub async fn remove(db: impl PgExecutor<'_>, owner: Owner, email: &str) -> crate::Result<bool> {
    let done = sqlx::query!("DELETE FROM suppressions WHERE owner_id = $1 AND email = lower($2)", owner.id(), email)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The entry for one address, if it is suppressed.
pub async fn find(db: impl PgExecutor<'_>, owner: Owner, email: &str) -> crate::Result<Option<Suppression>> {
    let row = sqlx::query_as!(
        Row,
        "SELECT email, reason, detail, message_id, created_at FROM suppressions WHERE owner_id = $1 AND email = lower($2)",
        owner.id(),
        email
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Suppression::from))
}

/// The owner's list, newest first, a page at a time (keyset on time and address).
pub async fn list(
    db: impl PgExecutor<'_>,
    owner: Owner,
    before: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> crate::Result<Vec<Suppression>> {
    let (at, email) = before.map_or((None, None), |(at, email)| (Some(at), Some(email)));
    let rows = sqlx::query_as!(
        Row,
        "SELECT email, reason, detail, message_id, created_at FROM suppressions
         WHERE owner_id = $1 AND ($2::timestamptz IS NULL OR (created_at, email) < ($2, $3))
         ORDER BY created_at DESC, email DESC LIMIT $4",
        owner.id(),
        at,
        email,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Suppression::from).collect())
}

/// Marks the `queued` rows of these tasks whose address is on their owner's list as `suppressed`
/// (with the reason) and counts them on their tasks, in one statement: the check made when the
/// ledger rows are written, after the tasks' totals are set (a task whose every row is suppressed
/// is done at once). Returns how many rows it marked.
pub async fn mark_queued(tx: &mut PgConnection, tasks: &[Uuid]) -> crate::Result<u64> {
    let marked = sqlx::query_scalar!(
        "WITH marked AS (
             UPDATE deliveries d SET status = 'suppressed', last_error = 'suppressed: ' || s.reason,
                 next_attempt_at = NULL, updated_at = now()
             FROM ledger l JOIN suppressions s ON s.owner_id = l.owner_id AND s.email = lower(l.to_email)
             WHERE l.task_id = ANY($1) AND d.id = l.id AND d.status = 'queued'
             RETURNING d.task_id
         ), counts AS (SELECT task_id, count(*)::int4 AS n FROM marked GROUP BY task_id),
         counted AS (
             UPDATE tasks t SET suppressed = t.suppressed + c.n,
                 status = CASE WHEN NOT t.queueing AND t.sent + t.failed + t.suppressed + c.n >= t.total
                               THEN 'done' ELSE t.status END,
                 finished_at = CASE WHEN NOT t.queueing AND t.sent + t.failed + t.suppressed + c.n >= t.total
                                    THEN now() ELSE t.finished_at END
             FROM counts c WHERE t.id = c.task_id RETURNING c.n
         )
         SELECT coalesce(sum(n), 0)::int8 AS \"n!\" FROM counted",
        tasks
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(marked as u64)
}

/// The signing key of this name: the stored one, or `candidate` (fresh random bytes from the
/// caller) stored the first time any process asks, so that every process of one installation
/// shares it.
pub async fn signing_key(db: &sqlx::PgPool, name: &str, candidate: &[u8]) -> crate::Result<Vec<u8>> {
    sqlx::query!("INSERT INTO signing_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, candidate)
        .execute(db)
        .await?;
    let key = sqlx::query_scalar!("SELECT key FROM signing_keys WHERE name = $1", name).fetch_one(db).await?;
    Ok(key)
}
