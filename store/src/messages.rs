//! The delivery ledger: one row per (task, recipient). Workers claim due rows with
//! `FOR UPDATE SKIP LOCKED` and a lease, send outside any transaction, then record outcomes in
//! batches that also move the tasks' counters.
//!
//! A row is two: `ledger` holds whom and what, written once when it is queued, and `deliveries`
//! where it stands (status, attempts, lease, outcome), the narrow row that claims and outcomes
//! write. The view `messages` shows both as one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder, Transaction};
use uuid::Uuid;

use crate::Owner;

/// A row a worker has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub task_id: Uuid,
    pub to_email: String,
    pub to_name: Option<String>,
    pub message_id: String,
    pub attempts: i32,
    /// The recipient's fields as they were queued (see `borcelle_mail::merge::ContactFields`);
    /// none for rows written before personalised mail.
    pub merge: Option<serde_json::Value>,
    /// Why the address is on the owner's suppression list, when it is (checked as the row is
    /// claimed: it is then recorded as `suppressed`, never sent).
    pub suppressed: Option<String>,
}

/// Claims up to `limit` due rows (queued, retrying past their time, or sending with an expired
/// lease: a crashed worker's) for `lease_secs`.
pub async fn claim_due(db: &PgPool, limit: i64, lease_secs: f64, claimer: &str) -> crate::Result<Vec<Claimed>> {
    let mut tx = begin_planned_for_now(db).await?;
    let claimed = sqlx::query_as!(
        Claimed,
        "WITH due AS (
             -- Two index-ordered scans (deliveries_due, deliveries_leased), each stopping at the limit: one
             -- scan of `due OR expired` reads every due row of a million-recipient task and sorts
             -- them, 0.8 s a claim.
             -- A row has a next attempt only while it waits (queued or retrying), a lease only
             -- while it is claimed: the conditions name no status, so that the planner, even without
             -- statistics, reads the index in order rather than sorting every due row.
             SELECT id, next_attempt_at AS at FROM deliveries
             WHERE next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         ), expired AS (
             SELECT id, lease_until AS at FROM deliveries
             WHERE lease_until < now()
             ORDER BY lease_until
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         ), chosen AS (
             SELECT id FROM (SELECT id, at FROM due UNION ALL SELECT id, at FROM expired) c ORDER BY at LIMIT $1
         )
         UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1, next_attempt_at = NULL,
                lease_until = now() + make_interval(secs => $2), claimed_by = $3, updated_at = now()
         FROM chosen JOIN ledger l ON l.id = chosen.id
         WHERE d.id = chosen.id
         RETURNING l.id, l.owner_id, l.task_id, l.to_email, l.to_name, l.message_id, d.attempts, l.merge,
                   (SELECT s.reason FROM suppressions s WHERE s.owner_id = l.owner_id AND s.email = lower(l.to_email))
                       AS suppressed",
        limit,
        lease_secs,
        claimer
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// A transaction whose statements are each planned for the tables as they are now.
///
/// A prepared statement runs on a generic plan once five custom ones cost no less, and keeps it
/// for the life of the connection. For the claim and the outcome write that plan is made in a
/// send's first seconds, when `deliveries` and `ledger` hold a few pages (until ANALYZE has seen
/// them, PostgreSQL takes such a table for ten pages): it joins them by a hash over a sequential
/// scan of `deliveries`, cheap for a few hundred rows, and then reads the whole table for every
/// claim and every batch of outcomes as it grows (seen: claims of 17–46 ms once one send of
/// 50,000 was in the table, and the next send a quarter slower). Planned afresh, each statement
/// sees the tables' current size and takes the primary-key lookups; planning costs about half a
/// millisecond, once per claim or batch of outcomes. The setting goes with the `BEGIN`, in the
/// same round trip, and ends with the transaction.
async fn begin_planned_for_now(db: &PgPool) -> crate::Result<Transaction<'static, Postgres>> {
    Ok(db.begin_with("BEGIN; SET LOCAL plan_cache_mode = force_custom_plan").await?)
}

/// What became of one claimed row.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: Uuid,
    /// The attempt this outcome belongs to; a late outcome of an older attempt is ignored.
    pub attempt: i32,
    pub result: OutcomeKind,
}

#[derive(Debug, Clone)]
pub enum OutcomeKind {
    Sent {
        provider_id: String,
    },
    Retry {
        error: String,
        after_secs: f64,
    },
    Failed {
        error: String,
    },
    /// The recipient's server refused the address for good: failed, and the address goes on the
    /// owner's suppression list (a hard bounce).
    Rejected {
        error: String,
    },
    /// Not sent: the address is on the owner's suppression list for this reason.
    Suppressed {
        reason: String,
    },
}

/// A task's counters after an outcome batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskProgress {
    pub task_id: Uuid,
    pub owner_id: Uuid,
    pub kind: String,
    pub subject: String,
    pub sent: i32,
    pub failed: i32,
    /// Not sent: on the owner's suppression list.
    pub suppressed: i32,
    pub total: i32,
    pub status: String,
    /// This batch finished the task.
    pub just_finished: bool,
}

/// Records a batch of outcomes and moves the counters of the tasks they belong to, in one
/// statement. Returns the progress of every task that changed.
pub async fn record(db: &PgPool, outcomes: &[Outcome]) -> crate::Result<Vec<TaskProgress>> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(outcomes.len());
    let mut attempts = Vec::with_capacity(outcomes.len());
    let mut statuses = Vec::with_capacity(outcomes.len());
    let mut provider_ids: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
    let mut errors: Vec<Option<String>> = Vec::with_capacity(outcomes.len());
    let mut delays = Vec::with_capacity(outcomes.len());
    let mut bounces = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        ids.push(outcome.id);
        attempts.push(outcome.attempt);
        let (status, provider, error, delay) = match &outcome.result {
            OutcomeKind::Sent { provider_id } => ("sent", Some(provider_id.clone()), None, 0.0),
            OutcomeKind::Retry { error, after_secs } => ("retrying", None, Some(error.clone()), *after_secs),
            OutcomeKind::Failed { error } | OutcomeKind::Rejected { error } => {
                ("failed", None, Some(error.clone()), 0.0)
            }
            OutcomeKind::Suppressed { reason } => ("suppressed", None, Some(format!("suppressed: {reason}")), 0.0),
        };
        statuses.push(status.to_owned());
        provider_ids.push(provider);
        errors.push(error);
        delays.push(delay);
        bounces.push(matches!(outcome.result, OutcomeKind::Rejected { .. }));
    }
    let mut tx = begin_planned_for_now(db).await?;
    let progress = sqlx::query_as!(
        TaskProgress,
        "WITH outcome AS (
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::bool[])
                 AS o(id, attempt, status, provider_id, error, delay, hard_bounce)
         ), updated AS (
             UPDATE deliveries d SET
                 status = o.status,
                 provider_id = coalesce(o.provider_id, d.provider_id),
                 last_error = CASE WHEN o.status = 'sent' THEN d.last_error ELSE o.error END,
                 sent_at = CASE WHEN o.status = 'sent' THEN now() ELSE d.sent_at END,
                 next_attempt_at = CASE WHEN o.status = 'retrying' THEN now() + make_interval(secs => o.delay) END,
                 lease_until = NULL,
                 updated_at = now()
             FROM outcome o
             WHERE d.id = o.id AND d.status = 'sending' AND d.attempts = o.attempt
             RETURNING d.id, d.owner_id, d.task_id, d.status, o.hard_bounce, o.error
         ), bounced AS (
             INSERT INTO suppressions (owner_id, email, reason, detail, message_id)
             SELECT DISTINCT ON (u.owner_id, lower(l.to_email)) u.owner_id, lower(l.to_email), 'hard_bounce',
                    left(u.error, 1000), u.id
             FROM updated u JOIN ledger l ON l.id = u.id
             WHERE u.hard_bounce ORDER BY u.owner_id, lower(l.to_email), u.id
             ON CONFLICT (owner_id, email) DO NOTHING
         ), deltas AS (
             SELECT task_id,
                    count(*) FILTER (WHERE status = 'sent')::int4 AS sent,
                    count(*) FILTER (WHERE status = 'failed')::int4 AS failed,
                    count(*) FILTER (WHERE status = 'suppressed')::int4 AS suppressed
             FROM updated GROUP BY task_id
         )
         UPDATE tasks t SET
             sent = t.sent + d.sent,
             failed = t.failed + d.failed,
             suppressed = t.suppressed + d.suppressed,
             -- A task still being queued (its total counts the rows so far) is not done yet.
             status = CASE WHEN NOT t.queueing
                                AND t.sent + d.sent + t.failed + d.failed + t.suppressed + d.suppressed >= t.total
                           THEN 'done' ELSE 'running' END,
             finished_at = CASE WHEN NOT t.queueing
                                     AND t.sent + d.sent + t.failed + d.failed + t.suppressed + d.suppressed >= t.total
                                THEN now() ELSE NULL END
         FROM deltas d WHERE t.id = d.task_id
         RETURNING t.id AS task_id, t.owner_id, t.kind, t.subject, t.sent, t.failed, t.suppressed, t.total, t.status,
                   (t.status = 'done' AND d.sent + d.failed + d.suppressed > 0) AS \"just_finished!\"",
        &ids,
        &attempts,
        &statuses,
        &provider_ids as &[Option<String>],
        &errors as &[Option<String>],
        &delays,
        &bounces
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(progress)
}

/// Gives back every claim still held under `claimer` (an engine's name): what an engine that
/// starts again under its previous run's name does, once it knows that run is gone.
pub async fn release_claimed_by(db: impl PgExecutor<'_>, claimer: &str) -> crate::Result<u64> {
    let done = sqlx::query!(
        "UPDATE deliveries SET status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'queued' END,
                attempts = attempts - 1, lease_until = NULL, next_attempt_at = now(), updated_at = now()
         WHERE status = 'sending' AND claimed_by = $1",
        claimer
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Gives claims back untouched (shutdown before they were sent, or a message that could not be
/// prepared): the attempt is not counted. Each claim is `(id, attempt)`; a row claimed again
/// since (its lease ran out and another engine took it) is left alone.
pub async fn release(db: impl PgExecutor<'_>, claims: &[(Uuid, i32)]) -> crate::Result<u64> {
    let (ids, attempts): (Vec<Uuid>, Vec<i32>) = claims.iter().copied().unzip();
    let done = sqlx::query!(
        "UPDATE deliveries d SET status = CASE WHEN d.attempts > 1 THEN 'retrying' ELSE 'queued' END,
                attempts = d.attempts - 1, lease_until = NULL, next_attempt_at = now(), updated_at = now()
         FROM unnest($1::uuid[], $2::int4[]) AS c(id, attempt)
         WHERE d.id = c.id AND d.attempts = c.attempt AND d.status = 'sending'",
        &ids,
        &attempts
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A ledger row as its owner sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: Uuid,
    pub task_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub to_email: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub message_id: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The recipient's fields as queued: what a personalised subject is shown with.
    #[serde(skip)]
    pub merge: Option<serde_json::Value>,
}

/// Filters of the message history.
#[derive(Debug, Default)]
pub struct HistoryFilter {
    pub status: Option<String>,
    pub contact_id: Option<Uuid>,
    pub task_id: Option<Uuid>,
    /// The send's kind: `message`, `note`, `reminder` or `broadcast`.
    pub kind: Option<String>,
    /// Part of the recipient's address (lower case).
    pub to: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: rows created before this (time, id).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// The owner's messages, newest first, filtered.
pub async fn history(db: impl PgExecutor<'_>, owner: Owner, filter: &HistoryFilter) -> crate::Result<Vec<Message>> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT m.id, m.task_id, m.contact_id, m.to_email, m.to_name, t.subject, m.message_id, m.status, m.attempts,
                CASE WHEN m.status IN ('queued', 'retrying') THEN m.next_attempt_at END AS next_attempt_at,
                m.last_error, m.provider_id, m.sent_at, m.created_at, m.updated_at, m.merge
         FROM messages m JOIN tasks t ON t.id = m.task_id WHERE m.owner_id = ",
    );
    sql.push_bind(owner);
    if let Some(status) = &filter.status {
        sql.push(" AND m.status = ").push_bind(status.clone());
    }
    if let Some(contact) = filter.contact_id {
        sql.push(" AND m.contact_id = ").push_bind(contact);
    }
    if let Some(task) = filter.task_id {
        sql.push(" AND m.task_id = ").push_bind(task);
    }
    if let Some(kind) = &filter.kind {
        sql.push(" AND t.kind = ").push_bind(kind.clone());
    }
    if let Some(to) = &filter.to {
        sql.push(" AND m.to_email LIKE ")
            .push_bind(format!("%{}%", crate::contacts::like_escape(to)))
            .push(" ESCAPE '\\'");
    }
    if let Some(since) = filter.since {
        sql.push(" AND m.created_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        sql.push(" AND m.created_at < ").push_bind(until);
    }
    if let Some((at, id)) = filter.before {
        sql.push(" AND (m.created_at, m.id) < (").push_bind(at).push(", ").push_bind(id).push(")");
    }
    sql.push(" ORDER BY m.created_at DESC, m.id DESC LIMIT ").push_bind(filter.limit + 1);
    sql.build_query_as::<Message>().fetch_all(db).await.map_err(crate::Error::from)
}

/// Puts failed rows of the owner back in the queue (one message, or every failed one of a task),
/// reopening their tasks. Returns the affected tasks' ids.
pub async fn retry_failed(
    db: impl PgExecutor<'_>,
    owner: Owner,
    message: Option<Uuid>,
    task: Option<Uuid>,
) -> crate::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "WITH requeued AS (
             UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = now(), updated_at = now()
             WHERE owner_id = $1 AND status = 'failed'
               AND ($2::uuid IS NULL OR id = $2) AND ($3::uuid IS NULL OR task_id = $3)
             RETURNING task_id
         ), counts AS (SELECT task_id, count(*)::int4 AS n FROM requeued GROUP BY task_id)
         UPDATE tasks t SET failed = t.failed - c.n, status = 'running', finished_at = NULL
         FROM counts c WHERE t.id = c.task_id
         RETURNING t.id",
        owner.id(),
        message,
        task
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// One message's status (for retry answers).
pub async fn status_of(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<Option<String>> {
    sqlx::query_scalar!("SELECT status FROM deliveries WHERE owner_id = $1 AND id = $2", owner.id(), id)
        .fetch_optional(db)
        .await
        .map_err(crate::Error::from)
}

/// What a provider reported about sent messages (a MailJet event), ready to apply.
#[derive(Debug, Clone)]
pub struct Feedback {
    /// The ledger row's id (the `CustomID` the message was sent with), when the report has it.
    pub ledger_id: Option<Uuid>,
    /// Else the provider's id for the message, as recorded when it was sent.
    pub provider_id: Option<String>,
    /// The message did not arrive: its row becomes `bounced` with `detail`.
    pub bounced: bool,
    /// The address goes on the owner's suppression list for this reason (`hard_bounce`,
    /// `complaint`, `unsubscribed`).
    pub suppress: Option<&'static str>,
    pub detail: String,
}

/// What applying a batch of reports did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedbackApplied {
    /// Reports whose message was found.
    pub matched: i64,
    /// Rows that became `bounced` (a replayed report finds them bounced already).
    pub bounced: i64,
    /// Addresses added to a suppression list.
    pub suppressed: i64,
}

/// Applies provider reports in one statement: rows found by ledger id or provider id become
/// `bounced` (only from `sent`, so that a replay changes nothing), their tasks count them, and
/// the addresses named for suppression go on their owners' lists (an address already there keeps
/// its first entry). Reports naming no known message are ignored.
pub async fn apply_feedback(db: impl PgExecutor<'_>, reports: &[Feedback]) -> crate::Result<FeedbackApplied> {
    if reports.is_empty() {
        return Ok(FeedbackApplied::default());
    }
    let ledger_ids: Vec<Option<Uuid>> = reports.iter().map(|r| r.ledger_id).collect();
    let provider_ids: Vec<Option<String>> = reports.iter().map(|r| r.provider_id.clone()).collect();
    let bounced: Vec<bool> = reports.iter().map(|r| r.bounced).collect();
    let reasons: Vec<Option<String>> = reports.iter().map(|r| r.suppress.map(str::to_owned)).collect();
    let details: Vec<String> = reports.iter().map(|r| r.detail.chars().take(1000).collect()).collect();
    let applied = sqlx::query!(
        "WITH f AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::text[], $5::text[])
                 AS f(ledger_id, provider_id, bounced, reason, detail)
         ), target AS (
             SELECT l.id, l.owner_id, l.to_email, f.bounced, f.reason, f.detail
             FROM f JOIN ledger l ON l.id = f.ledger_id
             UNION ALL
             SELECT l.id, l.owner_id, l.to_email, f.bounced, f.reason, f.detail
             FROM f JOIN deliveries d ON d.provider_id = f.provider_id JOIN ledger l ON l.id = d.id
             -- MailJet's ids are numbers, and deliveries_provider_id holds no other.
             WHERE f.ledger_id IS NULL AND f.provider_id IS NOT NULL AND d.provider_id ~ '^[0-9]+$'
         ), bounce AS (
             UPDATE deliveries d SET status = 'bounced', last_error = b.detail, updated_at = now()
             FROM (SELECT DISTINCT ON (id) id, detail FROM target WHERE bounced ORDER BY id) b
             WHERE d.id = b.id AND d.status = 'sent'
             RETURNING d.task_id
         ), counted AS (
             UPDATE tasks t SET bounced = t.bounced + c.n
             FROM (SELECT task_id, count(*)::int4 AS n FROM bounce GROUP BY task_id) c
             WHERE t.id = c.task_id
             RETURNING c.n
         ), suppressed AS (
             INSERT INTO suppressions (owner_id, email, reason, detail, message_id)
             SELECT DISTINCT ON (owner_id, lower(to_email)) owner_id, lower(to_email), reason, detail, id
             FROM target WHERE reason IS NOT NULL ORDER BY owner_id, lower(to_email), id
             ON CONFLICT (owner_id, email) DO NOTHING
             RETURNING 1 AS one
         )
         SELECT (SELECT count(*) FROM target) AS \"matched!\",
                (SELECT coalesce(sum(n), 0)::int8 FROM counted) AS \"bounced!\",
                (SELECT count(*) FROM suppressed) AS \"suppressed!\"",
        &ledger_ids as &[Option<Uuid>],
        &provider_ids as &[Option<String>],
        &bounced,
        &reasons as &[Option<String>],
        &details
    )
    .fetch_one(db)
    .await?;
    Ok(FeedbackApplied { matched: applied.matched, bounced: applied.bounced, suppressed: applied.suppressed })
}

/// Whom a ledger row was for: what an unsubscribe link needs to act on.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub owner_id: Uuid,
    pub owner_name: String,
    pub to_email: String,
    pub created_at: DateTime<Utc>,
}

/// The recipient of a ledger row, whoever owns it (the caller proved it may ask: a signed link).
pub async fn recipient(db: impl PgExecutor<'_>, id: Uuid) -> crate::Result<Option<Recipient>> {
    sqlx::query_as!(
        Recipient,
        "SELECT m.owner_id, u.display_name AS owner_name, m.to_email, m.created_at
         FROM ledger m JOIN users u ON u.id = m.owner_id WHERE m.id = $1",
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}
