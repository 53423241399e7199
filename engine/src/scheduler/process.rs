//! One batch of due schedules, in one transaction: decide for each, stop what Replace stops,
//! start every due occurrence (all reminders of the batch together), record each decision in the
//! schedule's status, commit, then tell people.

use borcelle_crds::ScheduledReminderSpec;
use borcelle_crds::decide::{Decision, Observed, decide_timing};
use borcelle_crds::status::{Outlook, decision_note, reason};
use borcelle_store::occurrences::{self, NewOccurrence};
use borcelle_store::schedules::{self, ScheduleRow};
use borcelle_store::{Owner, Postgres, Transaction, notifications};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::Scheduler;
use super::status::{stored_state, timing_of, to_stored};
use crate::events::{Envelope, LiveEvent};
use crate::occurrence::{self, Occurrence, OccurrenceError, OccurrenceSpec, Started};

/// What one schedule's decision writes back.
struct Outcome {
    id: Uuid,
    status: serde_json::Value,
    next: Option<DateTime<Utc>>,
    last_scheduled: Option<DateTime<Utc>>,
}

/// An occurrence that could not run, to record and to tell its owner about.
struct Failure {
    index: usize,
    scheduled: DateTime<Utc>,
    reason: String,
}

impl Scheduler {
    /// Decides for locked schedules, starts their due occurrences and records every decision,
    /// then commits and tells people.
    pub(super) async fn process(
        &self,
        mut tx: Transaction<'static, Postgres>,
        rows: Vec<ScheduleRow>,
        now: DateTime<Utc>,
    ) -> borcelle_store::Result<()> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let running = schedules::running_counts(&mut *tx, &ids).await?;
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(rows.len());
        let mut decided: Vec<(usize, OccurrenceSpec, Decision, Outlook)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let mut state = stored_state(row);
            let parsed = OccurrenceSpec::from_json(&row.kind, row.spec.clone())
                .map_err(|err| (reason::INVALID_SPEC, err.to_string()))
                .and_then(|spec| match timing_of(&spec, row.created_at) {
                    Ok(timing) => Ok((spec, timing)),
                    Err(err) => Err((err.reason(), err.to_string())),
                });
            let (spec, timing) = match parsed {
                Ok(parsed) => parsed,
                Err((why, message)) => {
                    state.invalid_spec(why, message, now);
                    let status = to_stored(&state);
                    outcomes.push(Outcome { id: row.id, status, next: None, last_scheduled: row.last_scheduled_at });
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
            decided.push((i, spec, decision, Outlook { suspended: policy.suspend, expired }));
        }

        // Stop what Replace stops, then start every due occurrence.
        for (i, _, decision, _) in &decided {
            if let Decision::Start { replace_active: true, scheduled, .. } = decision {
                let stopped = occurrences::replace_running(&mut tx, rows[*i].id, *scheduled).await?;
                tracing::info!(schedule = %rows[*i].name, stopped, "replaced the running occurrence");
            }
        }
        let mut results = self.start_due(&mut tx, &rows, &decided).await?;

        let mut announcements: Vec<(usize, Started)> = Vec::new();
        let mut failures: Vec<Failure> = Vec::new();
        for (i, _, decision, outlook) in &decided {
            let row = &rows[*i];
            let mut state = stored_state(row);
            // A start that failed is noted as started, as the operator notes the Job it created;
            // why it failed shows in `lastRun.error` in both runtimes.
            if let Decision::Start { scheduled, .. } = decision {
                match results.iter_mut().find(|(j, _)| j == i).map(|(_, r)| std::mem::replace(r, Err(String::new()))) {
                    Some(Ok(started)) => announcements.push((*i, started)),
                    Some(Err(reason)) => failures.push(Failure { index: *i, scheduled: *scheduled, reason }),
                    None => {}
                }
            }
            state.decided(decision, *outlook, decision_note(decision), now);
            // Standalone, the scheduler looks again at the next occurrence even while suspended
            // (it is recorded as missed then), as the operator requeues.
            outcomes.push(Outcome {
                id: row.id,
                status: to_stored(&state),
                next: decision.next(),
                last_scheduled: state.last_schedule_time,
            });
        }
        for failure in &failures {
            let row = &rows[failure.index];
            let new = NewOccurrence {
                id: Uuid::now_v7(),
                resource_uid: row.id,
                kind: if row.kind == schedules::BROADCAST { schedules::BROADCAST } else { schedules::REMINDER },
                resource: &row.name,
                scheduled_at: failure.scheduled,
                owner_id: Some(row.owner_id),
            };
            occurrences::insert_failed(&mut tx, &new, &failure.reason).await?;
            let label = if row.kind == schedules::BROADCAST { "Broadcast" } else { "Reminder" };
            let title = format!("{label} {}: an occurrence failed", row.name);
            let data = json!({ "schedule": row.name, "scheduled_at": failure.scheduled });
            let owner = Owner::new(row.owner_id);
            let notification =
                notifications::insert(&mut *tx, owner, "occurrence_failed", &title, &failure.reason, &data).await?;
            let event = LiveEvent::notification(notification);
            announcements.push((failure.index, Started::notice(Envelope::to_user(row.owner_id, &event))));
        }
        let ids: Vec<Uuid> = outcomes.iter().map(|o| o.id).collect();
        let statuses: Vec<serde_json::Value> = outcomes.iter().map(|o| o.status.clone()).collect();
        let nexts: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.next).collect();
        let lasts: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.last_scheduled).collect();
        schedules::save_decisions(&mut tx, &ids, &statuses, &nexts, &lasts).await?;
        tx.commit().await?;

        let mut queued = false;
        for (i, mut started) in announcements {
            queued |= started.task_id.is_some();
            started.announce(&self.events).await;
            if started.created {
                tracing::debug!(schedule = %rows[i].name, kind = %rows[i].kind, occurrence = %started.occurrence_id, recipients = started.recipients, "occurrence started");
            }
        }
        if queued {
            self.wake_delivery.notify_one();
        }
        Ok(())
    }

    /// Starts the due occurrences of the batch: every reminder in one go, each broadcast in a
    /// savepoint of its own (one that cannot run rolls back alone).
    async fn start_due(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        rows: &[ScheduleRow],
        decided: &[(usize, OccurrenceSpec, Decision, Outlook)],
    ) -> borcelle_store::Result<Vec<(usize, Result<Started, String>)>> {
        fn occurrence_of<'a>(
            rows: &'a [ScheduleRow],
            i: usize,
            scheduled: DateTime<Utc>,
            spec: &'a OccurrenceSpec,
        ) -> Occurrence<'a> {
            Occurrence {
                resource_uid: rows[i].id,
                resource: &rows[i].name,
                scheduled,
                spec,
                owner: Some(rows[i].owner_id),
            }
        }
        let mut results: Vec<(usize, Result<Started, String>)> = Vec::new();
        let reminders: Vec<(usize, Occurrence<'_>, &ScheduledReminderSpec)> = decided
            .iter()
            .filter_map(|(i, spec, decision, _)| match (spec, decision) {
                (OccurrenceSpec::Reminder(reminder), Decision::Start { scheduled, .. }) => {
                    Some((*i, occurrence_of(rows, *i, *scheduled, spec), reminder))
                }
                _ => None,
            })
            .collect();
        if !reminders.is_empty() {
            let items: Vec<(Occurrence<'_>, &ScheduledReminderSpec)> =
                reminders.iter().map(|(_, o, s)| (o.clone(), *s)).collect();
            let started =
                occurrence::start_reminders(tx, &items, &self.message_id_domain, self.attachments_max_bytes).await?;
            results.extend(reminders.iter().map(|(i, _, _)| *i).zip(started));
        }
        for (i, spec, decision, _) in decided {
            if let (OccurrenceSpec::Broadcast(_), Decision::Start { scheduled, .. }) = (spec, decision) {
                let occurrence = occurrence_of(rows, *i, *scheduled, spec);
                let mut savepoint = sqlx::Connection::begin(&mut **tx).await?;
                let domain = &self.message_id_domain;
                match occurrence::start(&mut savepoint, &occurrence, domain, self.attachments_max_bytes).await {
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
        Ok(results)
    }
}
