//! The in-process scheduler of standalone mode: drives the reminders and broadcasts stored in
//! PostgreSQL with the same decision functions the operator uses (`borcelle_crds::decide`), and
//! runs each due occurrence with [`crate::occurrence::start`], in the transaction that records the
//! decision.
//!
//! Any number of `serve` processes may run it against one database: a due schedule is locked
//! with `FOR UPDATE SKIP LOCKED`, and the occurrence row (unique on schedule and time) makes a
//! second start of one occurrence a no-op, across restarts too.

use std::sync::Arc;
use std::time::Duration;

use borcelle_crds::decide::{Decision, Observed, SkipReason, decide_timing};
use borcelle_crds::{
    BroadcastPhase, BroadcastStatus, Condition, RunRef, RunSummary, ScheduledReminderSpec, ScheduledReminderStatus,
    SpecError, Timing, set_condition,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::schedules::{self, LastRun, ScheduleRow};
use crate::db::{notifications, occurrences};
use crate::events::{Audience, Envelope, EventBus};
use crate::occurrence::{self, Occurrence, OccurrenceError, OccurrenceSpec, Started};

/// Batches handled at once (each its own transaction over disjoint schedules).
const CONCURRENCY: usize = 4;
/// Due schedules locked and started per transaction.
const BATCH: i64 = 250;
/// Longest sleep between passes (a schedule created by another process wakes nobody here).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Pause after a database error.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What the scheduler needs.
#[derive(Clone)]
pub struct Scheduler {
    pub db: PgPool,
    pub events: EventBus,
    /// Woken when a schedule is created or changed in this process.
    pub wake: Arc<Notify>,
    /// This process's delivery engine, woken when an occurrence queues emails.
    pub wake_delivery: Arc<Notify>,
    /// Domain of the Message-IDs.
    pub message_id_domain: String,
    pub attachments_max_bytes: u64,
}

/// What one schedule's decision writes back.
struct Outcome {
    id: Uuid,
    status: serde_json::Value,
    next: Option<DateTime<Utc>>,
    last_scheduled: Option<DateTime<Utc>>,
}

impl Scheduler {
    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!("scheduler started");
        loop {
            let now = Utc::now();
            // Several transactions drain the due schedules in parallel, each locking its own batch.
            let this = &self;
            let passes = futures::stream::iter(0..CONCURRENCY)
                .map(|_| async move {
                    loop {
                        match this.tick_batch(now, BATCH).await {
                            Ok(n) if n as i64 == BATCH => continue,
                            Ok(_) => return Ok(()),
                            Err(err) => return Err(err),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<sqlx::Result<()>>>()
                .await;
            let sleep = if let Some(Err(err)) = passes.iter().find(|r| r.is_err()) {
                tracing::warn!(error = %err, "scheduling failed; retrying");
                ERROR_PAUSE
            } else {
                self.until_next_due().await
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    async fn until_next_due(&self) -> Duration {
        match schedules::next_due(&self.db).await {
            Ok(Some(next)) => (next - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(_) => ERROR_PAUSE,
        }
    }

    /// Decides for up to `limit` due schedules and acts, in one transaction; returns how many
    /// it handled.
    pub async fn tick_batch(&self, now: DateTime<Utc>, limit: i64) -> sqlx::Result<usize> {
        let mut tx = self.db.begin().await?;
        let rows = schedules::lock_due_batch(&mut tx, now, limit).await?;
        let n = rows.len();
        if n > 0 {
            self.process(tx, rows, now).await?;
        }
        Ok(n)
    }

    /// Decides for one schedule (if due at `now`) and acts.
    pub async fn tick(&self, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
        let mut tx = self.db.begin().await?;
        let Some(row) = schedules::lock_due(&mut tx, id, now).await? else {
            return Ok(());
        };
        self.process(tx, vec![row], now).await
    }

    /// Decides for locked schedules, starts their due occurrences (all reminders of the batch
    /// together) and records every decision, then commits and tells people.
    async fn process(
        &self,
        mut tx: Transaction<'static, Postgres>,
        rows: Vec<ScheduleRow>,
        now: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let running = schedules::running_counts(&mut *tx, &ids).await?;
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(rows.len());
        let mut decided: Vec<(usize, OccurrenceSpec, Decision)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let spec = match OccurrenceSpec::from_json(&row.kind, row.spec.clone()) {
                Ok(spec) => spec,
                Err(err) => {
                    outcomes.push(invalid(row, "InvalidSpec", &err.to_string(), now));
                    continue;
                }
            };
            let timing = match timing_of(&spec, row.created_at) {
                Ok(timing) => timing,
                Err(err) => {
                    outcomes.push(invalid(row, err.reason(), &err.to_string(), now));
                    continue;
                }
            };
            let (policy, expired) = match &spec {
                OccurrenceSpec::Reminder(spec) => (spec.policy(), false),
                OccurrenceSpec::Broadcast(spec) => (spec.policy(), spec.expired(now)),
            };
            let active_runs = running.iter().find(|(id, _)| *id == row.id).map_or(0, |(_, n)| *n as usize);
            let observed = Observed { created: row.created_at, last_scheduled: row.last_scheduled_at, active_runs };
            let decision =
                if expired { Decision::Wait { next: None } } else { decide_timing(&timing, &policy, &observed, now) };
            decided.push((i, spec, decision));
        }

        // Stop what Replace stops, then start every due occurrence.
        for (i, _, decision) in &decided {
            if let Decision::Start { replace_active: true, .. } = decision {
                let stopped = occurrences::replace_running(&mut tx, rows[*i].id).await?;
                tracing::info!(schedule = %rows[*i].name, stopped, "replaced the running occurrence");
            }
        }
        let mut results: Vec<(usize, Result<Started, String>)> = Vec::new();
        let reminders: Vec<(usize, Occurrence<'_>, &ScheduledReminderSpec)> = decided
            .iter()
            .filter_map(|(i, spec, decision)| match (spec, decision) {
                (OccurrenceSpec::Reminder(reminder), Decision::Start { scheduled, .. }) => Some((
                    *i,
                    Occurrence {
                        resource_uid: rows[*i].id,
                        resource: &rows[*i].name,
                        scheduled: *scheduled,
                        spec,
                        owner: Some(rows[*i].owner_id),
                    },
                    reminder,
                )),
                _ => None,
            })
            .collect();
        if !reminders.is_empty() {
            let items: Vec<(Occurrence<'_>, &ScheduledReminderSpec)> =
                reminders.iter().map(|(_, o, s)| (o.clone(), *s)).collect();
            let started =
                occurrence::start_reminders(&mut tx, &items, &self.message_id_domain, self.attachments_max_bytes)
                    .await?;
            results.extend(reminders.iter().map(|(i, _, _)| *i).zip(started));
        }
        for (i, spec, decision) in &decided {
            if let (OccurrenceSpec::Broadcast(_), Decision::Start { scheduled, .. }) = (spec, decision) {
                let occurrence = Occurrence {
                    resource_uid: rows[*i].id,
                    resource: &rows[*i].name,
                    scheduled: *scheduled,
                    spec,
                    owner: Some(rows[*i].owner_id),
                };
                let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
                match occurrence::start(
                    &mut savepoint,
                    &occurrence,
                    &self.message_id_domain,
                    self.attachments_max_bytes,
                )
                .await
                {
                    Ok(started) => {
                        savepoint.commit().await?;
                        results.push((*i, Ok(started)));
                    }
                    Err(OccurrenceError::Permanent(reason)) => {
                        savepoint.rollback().await?;
                        results.push((*i, Err(reason)));
                    }
                    Err(OccurrenceError::Database(err)) => return Err(err),
                }
            }
        }

        let mut announcements = Vec::new();
        let mut failures = Vec::new();
        for (i, _, decision) in &decided {
            let row = &rows[*i];
            let mut last_scheduled = row.last_scheduled_at;
            let mut message = String::new();
            match decision {
                Decision::Start { scheduled, missed, .. } => {
                    match results
                        .iter_mut()
                        .find(|(j, _)| j == i)
                        .map(|(_, r)| std::mem::replace(r, Err(String::new())))
                    {
                        Some(Ok(started)) => {
                            message = format!("started the occurrence of {scheduled}");
                            announcements.push((row.name.clone(), row.kind.clone(), started));
                        }
                        Some(Err(reason)) => {
                            message = format!("the occurrence of {scheduled} failed: {reason}");
                            failures.push((row.owner_id, row.kind.clone(), row.name.clone(), *scheduled, reason));
                        }
                        None => {}
                    }
                    if missed.count > 0 {
                        message.push_str(&format!("; {} earlier occurrence(s) missed", missed.count));
                    }
                    last_scheduled = Some(*scheduled);
                }
                Decision::Skip { scheduled, reason, missed, .. } => {
                    message = match reason {
                        SkipReason::RunAlreadyActive => {
                            format!(
                                "skipped the occurrence of {scheduled}: the previous one still runs (JobAlreadyActive)"
                            )
                        }
                        SkipReason::DeadlinePassed => {
                            format!("missed the occurrence of {scheduled}: its starting deadline passed (MissSchedule)")
                        }
                    };
                    if missed.too_many {
                        message.push_str("; more than 100 occurrences were missed (TooManyMissedTimes)");
                    }
                    last_scheduled = Some(*scheduled);
                }
                Decision::Suspended { .. } | Decision::Wait { .. } => {}
            }
            let next = decision.next();
            let expired = matches!(decision, Decision::Wait { next: None })
                && row.kind == schedules::BROADCAST
                && serde_json::from_value::<borcelle_crds::BroadcastSpec>(row.spec.clone())
                    .is_ok_and(|s| s.expired(now));
            let scheduled_reason = match (decision, next) {
                _ if expired => "Expired",
                (Decision::Suspended { .. }, _) => "Suspended",
                (_, Some(_)) => "NextRunScheduled",
                (_, None) => "NoFutureRun",
            };
            let mut status = stored_status(row);
            set_status_fields(&mut status, row, now, "Valid", scheduled_reason, &message, next, last_scheduled);
            outcomes.push(Outcome { id: row.id, status, next, last_scheduled });
        }
        for (owner, kind, name, scheduled, reason) in &failures {
            let title = format!("{} {name}: an occurrence failed", kind_label(kind));
            let data = json!({ "schedule": name, "scheduled_at": scheduled });
            let notification =
                notifications::insert(&mut *tx, *owner, "occurrence_failed", &title, reason, &data).await?;
            announcements.push((
                name.clone(),
                kind.clone(),
                Started::notice(Envelope {
                    audience: Audience::User(*owner),
                    event: json!({ "type": "notification", "notification": notification }),
                }),
            ));
        }
        let ids: Vec<Uuid> = outcomes.iter().map(|o| o.id).collect();
        let statuses: Vec<serde_json::Value> = outcomes.iter().map(|o| o.status.clone()).collect();
        let nexts: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.next).collect();
        let lasts: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.last_scheduled).collect();
        schedules::save_decisions(&mut tx, &ids, &statuses, &nexts, &lasts).await?;
        tx.commit().await?;

        let mut queued = false;
        for (name, kind, mut started) in announcements {
            queued |= started.task_id.is_some();
            started.announce(&self.events).await;
            if started.created {
                tracing::debug!(schedule = %name, %kind, occurrence = %started.occurrence_id, recipients = started.recipients, "occurrence started");
            }
        }
        if queued {
            self.wake_delivery.notify_one();
        }
        Ok(())
    }
}

fn invalid(row: &ScheduleRow, reason: &str, message: &str, now: DateTime<Utc>) -> Outcome {
    Outcome {
        id: row.id,
        status: invalid_status(row, reason, message, now),
        next: None,
        last_scheduled: row.last_scheduled_at,
    }
}

fn kind_label(kind: &str) -> &'static str {
    if kind == schedules::BROADCAST { "Broadcast" } else { "Reminder" }
}

/// The timing of a spec.
pub fn timing_of(spec: &OccurrenceSpec, created: DateTime<Utc>) -> Result<Timing, SpecError> {
    match spec {
        OccurrenceSpec::Reminder(spec) => spec.timing(),
        OccurrenceSpec::Broadcast(spec) => spec.timing(created),
    }
}

/// When a new (or changed) schedule is first looked at: its first occurrence after `after`.
pub fn first_due(spec: &OccurrenceSpec, created: DateTime<Utc>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match timing_of(spec, created).ok()? {
        Timing::Once(at) => Some(at),
        Timing::Repeat(schedule, tz) => schedule.next_after(after, tz),
    }
}

fn stored_status(row: &ScheduleRow) -> serde_json::Value {
    if row.status.is_object() { row.status.clone() } else { json!({}) }
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str, now: DateTime<Utc>, generation: i64) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: now,
        observed_generation: Some(generation),
    }
}

/// The status of a schedule whose spec cannot be scheduled.
pub fn invalid_status(row: &ScheduleRow, reason: &str, message: &str, now: DateTime<Utc>) -> serde_json::Value {
    let mut status = stored_status(row);
    set_status_fields(&mut status, row, now, reason, "NoFutureRun", message, None, row.last_scheduled_at);
    if let Some(conditions) = status.get_mut("conditions")
        && let Ok(mut list) = serde_json::from_value::<Vec<Condition>>(conditions.clone())
    {
        set_condition(&mut list, condition("Ready", false, reason, message, now, row.generation));
        *conditions = json!(list);
    }
    status
}

/// Writes conditions and times into a stored status (the resources' status shape).
#[allow(clippy::too_many_arguments)]
fn set_status_fields(
    status: &mut serde_json::Value,
    row: &ScheduleRow,
    now: DateTime<Utc>,
    ready_reason: &str,
    scheduled_reason: &str,
    message: &str,
    next: Option<DateTime<Utc>>,
    last_scheduled: Option<DateTime<Utc>>,
) {
    let mut conditions: Vec<Condition> =
        status.get("conditions").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
    set_condition(&mut conditions, condition("Ready", ready_reason == "Valid", ready_reason, "", now, row.generation));
    set_condition(
        &mut conditions,
        condition("Scheduled", next.is_some(), scheduled_reason, message, now, row.generation),
    );
    if let Some(map) = status.as_object_mut() {
        map.insert("observedGeneration".into(), json!(row.generation));
        map.insert("conditions".into(), json!(conditions));
        map.insert("nextScheduleTime".into(), json!(next));
        map.insert("lastScheduleTime".into(), json!(last_scheduled));
    }
}

/// The status a user sees: what the scheduler stored, plus the runs read now (active, last run,
/// and for a broadcast its phase), in the custom resources' shape.
pub fn status_view(
    row: &ScheduleRow,
    active: &[(Uuid, Uuid, DateTime<Utc>)],
    last: Option<&LastRun>,
) -> serde_json::Value {
    let stored = stored_status(row);
    let conditions: Vec<Condition> =
        stored.get("conditions").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
    let time = |key: &str| stored.get(key).and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok());
    let active: Vec<RunRef> = active
        .iter()
        .filter(|(uid, _, _)| *uid == row.id)
        .map(|(_, id, at)| RunRef { name: id.to_string(), scheduled_time: *at })
        .collect();
    let last_run = last.map(|l| RunSummary {
        occurrence: l.scheduled_at,
        name: l.occurrence_id.to_string(),
        outcome: if l.status == "replaced" { "Replaced" } else { "Succeeded" }.to_owned(),
        delivered: i64::from(l.sent.unwrap_or(l.recipients)),
        failed: i64::from(l.failed.unwrap_or(0)),
        finished_at: l.finished_at,
    });
    let invalid = conditions.iter().any(|c| c.type_ == "Ready" && c.status == "False");
    if row.kind == schedules::BROADCAST {
        let phase = if invalid {
            BroadcastPhase::Pending
        } else if !active.is_empty() {
            BroadcastPhase::Running
        } else if last_run.is_some() {
            BroadcastPhase::Delivered
        } else {
            BroadcastPhase::Scheduled
        };
        let status = BroadcastStatus {
            observed_generation: Some(row.generation),
            delivered_at: last_run.as_ref().and_then(|l| l.finished_at),
            recipients: last.map(|l| i64::from(l.recipients)),
            phase: Some(phase),
            next_schedule_time: time("nextScheduleTime"),
            last_schedule_time: time("lastScheduleTime"),
            conditions,
            active,
            last_run,
        };
        serde_json::to_value(status).unwrap_or_default()
    } else {
        let status = ScheduledReminderStatus {
            observed_generation: Some(row.generation),
            last_successful_time: last_run.as_ref().and_then(|l| l.finished_at),
            next_schedule_time: time("nextScheduleTime"),
            last_schedule_time: time("lastScheduleTime"),
            conditions,
            active,
            last_run,
        };
        serde_json::to_value(status).unwrap_or_default()
    }
}
