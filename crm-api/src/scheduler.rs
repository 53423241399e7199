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
    BroadcastPhase, BroadcastStatus, Condition, RunRef, RunSummary, ScheduledReminderStatus, SpecError, Timing,
    set_condition,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::schedules::{self, LastRun, ScheduleRow};
use crate::db::{notifications, occurrences};
use crate::events::{Audience, Envelope, EventBus};
use crate::occurrence::{self, Occurrence, OccurrenceError, OccurrenceSpec};

/// Due schedules handled at once.
const CONCURRENCY: usize = 8;
/// Due schedules fetched per pass.
const BATCH: i64 = 1000;
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

impl Scheduler {
    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!("scheduler started");
        loop {
            let now = Utc::now();
            let sleep = match schedules::due(&self.db, now, BATCH).await {
                Ok(ids) if !ids.is_empty() => {
                    let full = ids.len() as i64 == BATCH;
                    let this = &self;
                    futures::stream::iter(ids)
                        .for_each_concurrent(CONCURRENCY, |id| async move {
                            if let Err(err) = this.tick(id, now).await {
                                tracing::warn!(schedule = %id, error = %err, "scheduling failed; will try again");
                            }
                        })
                        .await;
                    if full {
                        continue;
                    }
                    self.until_next_due().await
                }
                Ok(_) => self.until_next_due().await,
                Err(err) => {
                    tracing::warn!(error = %err, "looking for due schedules failed; retrying");
                    ERROR_PAUSE
                }
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

    /// Decides for one due schedule and acts, in one transaction.
    pub async fn tick(&self, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
        let mut tx = self.db.begin().await?;
        let Some(row) = schedules::lock_due(&mut tx, id, now).await? else {
            return Ok(());
        };
        let spec = match OccurrenceSpec::from_json(&row.kind, row.spec.clone()) {
            Ok(spec) => spec,
            Err(err) => {
                let status = invalid_status(&row, "InvalidSpec", &err.to_string(), now);
                schedules::save_decision(&mut tx, row.id, &status, None, row.last_scheduled_at).await?;
                return tx.commit().await;
            }
        };
        let timing = match timing_of(&spec, row.created_at) {
            Ok(timing) => timing,
            Err(err) => {
                let status = invalid_status(&row, err.reason(), &err.to_string(), now);
                schedules::save_decision(&mut tx, row.id, &status, None, row.last_scheduled_at).await?;
                return tx.commit().await;
            }
        };
        let (policy, expired) = match &spec {
            OccurrenceSpec::Reminder(spec) => (spec.policy(), false),
            OccurrenceSpec::Broadcast(spec) => (spec.policy(), spec.expired(now)),
        };
        let running = occurrences::running(&mut *tx, row.id).await?;
        let observed =
            Observed { created: row.created_at, last_scheduled: row.last_scheduled_at, active_runs: running.len() };
        let decision =
            if expired { Decision::Wait { next: None } } else { decide_timing(&timing, &policy, &observed, now) };

        let mut status = stored_status(&row);
        let mut last_scheduled = row.last_scheduled_at;
        let mut started = None;
        let (ready_reason, mut message) = ("Valid", String::new());
        match &decision {
            Decision::Start { scheduled, replace_active, missed, .. } => {
                if *replace_active {
                    let stopped = occurrences::replace_running(&mut tx, row.id).await?;
                    tracing::info!(schedule = %row.name, stopped, "replaced the running occurrence");
                }
                let occurrence = Occurrence {
                    resource_uid: row.id,
                    resource: &row.name,
                    scheduled: *scheduled,
                    spec: &spec,
                    owner: Some(row.owner_id),
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
                    Ok(s) => {
                        savepoint.commit().await?;
                        message = format!("started the occurrence of {scheduled}");
                        started = Some(s);
                    }
                    Err(OccurrenceError::Permanent(reason)) => {
                        savepoint.rollback().await?;
                        message = format!("the occurrence of {scheduled} failed: {reason}");
                        let title = format!("{} {}: an occurrence failed", kind_label(&row.kind), row.name);
                        let data = json!({ "schedule": row.name, "scheduled_at": scheduled });
                        let notification =
                            notifications::insert(&mut *tx, row.owner_id, "occurrence_failed", &title, &reason, &data)
                                .await?;
                        started = None;
                        self.events
                            .publish(Envelope {
                                audience: Audience::User(row.owner_id),
                                event: json!({ "type": "notification", "notification": notification }),
                            })
                            .await;
                    }
                    Err(OccurrenceError::Database(err)) => return Err(err),
                }
                if missed.count > 0 {
                    message.push_str(&format!("; {} earlier occurrence(s) missed", missed.count));
                }
                last_scheduled = Some(*scheduled);
            }
            Decision::Skip { scheduled, reason, missed, .. } => {
                message = match reason {
                    SkipReason::RunAlreadyActive => {
                        format!("skipped the occurrence of {scheduled}: the previous one still runs (JobAlreadyActive)")
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
        let scheduled_reason = match (&decision, next) {
            (_, _) if expired => "Expired",
            (Decision::Suspended { .. }, _) => "Suspended",
            (_, Some(_)) => "NextRunScheduled",
            (_, None) => "NoFutureRun",
        };
        set_status_fields(&mut status, &row, now, ready_reason, scheduled_reason, &message, next, last_scheduled);
        schedules::save_decision(&mut tx, row.id, &status, next, last_scheduled).await?;
        tx.commit().await?;
        if let Some(mut started) = started {
            if started.task_id.is_some() {
                self.wake_delivery.notify_one();
            }
            started.announce(&self.events).await;
            tracing::info!(schedule = %row.name, kind = %row.kind, occurrence = %started.occurrence_id, recipients = started.recipients, "occurrence started");
        }
        Ok(())
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
