//! A standalone schedule's status: what the scheduler decided (kept with the row), and the runs
//! read from the occurrences when someone looks. Both go through `borcelle_crds::status`, the
//! rules the operator follows, so a status reads the same in either mode.

use borcelle_crds::status::{RunOutcome, RunState};
use borcelle_crds::{RunRef, RunSummary, SpecError, Timing};
use borcelle_store::schedules::{self, LastRun, ScheduleRow};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::occurrence::OccurrenceSpec;

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

/// What the scheduler decided last, as kept with the row (the shape of the resources' status).
pub fn stored_state(row: &ScheduleRow) -> RunState {
    let status = serde_json::from_value::<borcelle_crds::ScheduledReminderStatus>(row.status.clone()).ok();
    let mut state = RunState::of_reminder(status.as_ref());
    state.observed_generation = Some(row.generation);
    state
}

/// The decided part of a state, to keep with the row (runs are read from the occurrences).
pub fn to_stored(state: &RunState) -> serde_json::Value {
    let decided = RunState {
        observed_generation: state.observed_generation,
        conditions: state.conditions.clone(),
        next_schedule_time: state.next_schedule_time,
        last_schedule_time: state.last_schedule_time,
        ..RunState::default()
    };
    serde_json::to_value(decided.reminder_status()).unwrap_or_else(|_| serde_json::json!({}))
}

/// The last finished occurrence as a run summary.
fn summary(last: &LastRun) -> RunSummary {
    let outcome = match last.status.as_str() {
        "replaced" => RunOutcome::Replaced,
        "failed" => RunOutcome::Failed,
        _ => RunOutcome::Succeeded,
    };
    // A replaced run was stopped partway; its counts stay with its task, as in the operator, which
    // cannot read them from a Job it deleted.
    let replaced = outcome == RunOutcome::Replaced;
    RunSummary {
        occurrence: last.scheduled_at,
        name: last.occurrence_id.to_string(),
        outcome: outcome.as_str().to_owned(),
        delivered: if replaced { 0 } else { i64::from(last.sent.unwrap_or(last.recipients)) },
        failed: if replaced { 0 } else { i64::from(last.failed.unwrap_or(0)) },
        finished_at: last.finished_at,
        error: last.error.clone().filter(|_| outcome == RunOutcome::Failed),
    }
}

/// The status a user sees: what the scheduler decided, with the runs read now (active ones, the
/// last finished one, and for a broadcast its phase), in the custom resources' shape.
pub fn status_view(
    row: &ScheduleRow,
    active: &[(Uuid, Uuid, DateTime<Utc>)],
    last: Option<&LastRun>,
) -> serde_json::Value {
    let mut state = stored_state(row);
    state.active = active
        .iter()
        .filter(|(uid, _, _)| *uid == row.id)
        .map(|(_, id, at)| RunRef { name: id.to_string(), scheduled_time: *at })
        .collect();
    if let Some(last) = last {
        state.last_successful_time = last.last_success;
        let at = last.finished_at.unwrap_or(last.scheduled_at);
        state.finished(summary(last), at, Some(i64::from(last.recipients)));
    }
    let status = if row.kind == schedules::BROADCAST {
        serde_json::to_value(state.broadcast_status())
    } else {
        serde_json::to_value(state.reminder_status())
    };
    status.unwrap_or_else(|_| serde_json::json!({}))
}
