//! One occurrence of a reminder or a broadcast, run the same way by serve's in-process scheduler
//! and by `borcelle worker occurrence` in a Kubernetes Job.
//!
//! [`start`] does everything in the caller's transaction, starting with the occurrence row that is
//! unique on (resource, scheduled time): a second start of the same occurrence (a retried Job, a
//! second scheduler, a restart) finds the row and writes nothing. The emails then go through the
//! delivery engine like any other send; [`Started::announce`] publishes the live events after the
//! commit.

mod broadcast;
mod reminders;

use borcelle_crds::decide::ConcurrencyPolicy;
use borcelle_crds::{BroadcastSpec, ScheduledReminderSpec};
use borcelle_store::PgConnection;
use borcelle_store::occurrences::{self, NewOccurrence};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::events::{Envelope, EventBus};
pub use reminders::start_reminders;

/// What an occurrence runs.
#[derive(Debug, Clone)]
pub enum OccurrenceSpec {
    Reminder(ScheduledReminderSpec),
    Broadcast(BroadcastSpec),
}

impl OccurrenceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            OccurrenceSpec::Reminder(_) => borcelle_store::schedules::REMINDER,
            OccurrenceSpec::Broadcast(_) => borcelle_store::schedules::BROADCAST,
        }
    }

    /// Reads a spec of `kind` (`ScheduledReminder` or `Broadcast`) from its JSON.
    pub fn from_json(kind: &str, spec: serde_json::Value) -> Result<Self, OccurrenceError> {
        let parsed = match kind {
            borcelle_store::schedules::REMINDER => serde_json::from_value(spec).map(OccurrenceSpec::Reminder),
            borcelle_store::schedules::BROADCAST => serde_json::from_value(spec).map(OccurrenceSpec::Broadcast),
            other => {
                return Err(OccurrenceError::Permanent(format!(
                    "unknown kind {other:?}: expected ScheduledReminder or Broadcast"
                )));
            }
        };
        parsed.map_err(|err| OccurrenceError::Permanent(format!("the {kind} spec is not valid: {err}")))
    }
}

/// One occurrence to run.
#[derive(Debug, Clone)]
pub struct Occurrence<'a> {
    /// The schedule's id (standalone) or the resource's metadata.uid (Kubernetes).
    pub resource_uid: Uuid,
    /// The resource's name (`namespace/name` in Kubernetes), for people.
    pub resource: &'a str,
    pub scheduled: DateTime<Utc>,
    pub spec: &'a OccurrenceSpec,
    /// The reminder's owner or the broadcast's creator, when known (standalone); otherwise the
    /// reminder's owner is found by its email and a broadcast's emails go out as the oldest admin.
    pub owner: Option<Uuid>,
}

/// Why an occurrence could not run.
#[derive(Debug, thiserror::Error)]
pub enum OccurrenceError {
    /// Running it again would not help (an unknown owner, a deleted note): reported, not retried.
    #[error("{0}")]
    Permanent(String),
    /// The database failed: running it again may succeed, and cannot duplicate anything.
    #[error(transparent)]
    Database(#[from] borcelle_store::Error),
}

/// What a started occurrence did, and what to tell people once it is committed.
#[derive(Debug)]
pub struct Started {
    pub occurrence_id: Uuid,
    /// The emails it queued, if any.
    pub task_id: Option<Uuid>,
    /// Emails queued (reminder) or users reached (broadcast).
    pub recipients: i32,
    /// Recipients named in the spec that were not found.
    pub skipped: Vec<String>,
    /// `false` when the occurrence had already been started: nothing was written.
    pub created: bool,
    pub(crate) events: Vec<Envelope>,
}

impl Started {
    /// Nothing started, only an event to publish after the commit.
    pub fn notice(envelope: Envelope) -> Started {
        Started {
            occurrence_id: Uuid::nil(),
            task_id: None,
            recipients: 0,
            skipped: Vec::new(),
            created: false,
            events: vec![envelope],
        }
    }

    /// Publishes the occurrence's live events; call after the commit.
    pub async fn announce(&mut self, events: &EventBus) {
        for envelope in self.events.drain(..) {
            events.publish(envelope).await;
        }
    }
}

/// Starts an occurrence in the caller's transaction (see the module documentation).
pub async fn start(
    tx: &mut PgConnection,
    occurrence: &Occurrence<'_>,
    message_id_domain: &str,
    attachments_max_bytes: u64,
) -> Result<Started, OccurrenceError> {
    match occurrence.spec {
        OccurrenceSpec::Reminder(spec) => {
            let mut results =
                start_reminders(tx, &[(occurrence.clone(), spec)], message_id_domain, attachments_max_bytes).await?;
            match results.pop() {
                Some(Ok(started)) => Ok(started),
                Some(Err(reason)) => Err(OccurrenceError::Permanent(reason)),
                None => Err(OccurrenceError::Permanent("not started".into())),
            }
        }
        OccurrenceSpec::Broadcast(spec) => broadcast::start(tx, occurrence, spec, message_id_domain).await,
    }
}

/// Under concurrencyPolicy Replace, stops the resource's occurrences still running from before this
/// one: their unsent emails fail and their tasks finish. The in-process scheduler does this when it
/// decides to replace; a Job's worker does it first thing, because the operator deleting the older
/// Job stops that Job's engine but not the emails it queued, which any delivery engine would go on
/// sending. Returns how many it stopped.
pub async fn replace_older(tx: &mut PgConnection, occurrence: &Occurrence<'_>) -> borcelle_store::Result<u64> {
    let replaces = match occurrence.spec {
        OccurrenceSpec::Reminder(spec) => spec.concurrency_policy == ConcurrencyPolicy::Replace,
        OccurrenceSpec::Broadcast(_) => false,
    };
    if !replaces {
        return Ok(0);
    }
    occurrences::replace_running(tx, occurrence.resource_uid, occurrence.scheduled).await
}

/// Writes the occurrence row; `Err(existing)` when it was started before.
async fn claim(
    tx: &mut PgConnection,
    occurrence: &Occurrence<'_>,
    owner: Option<Uuid>,
) -> borcelle_store::Result<Result<Uuid, Started>> {
    let id = Uuid::now_v7();
    let new = NewOccurrence {
        id,
        resource_uid: occurrence.resource_uid,
        kind: occurrence.spec.kind(),
        resource: occurrence.resource,
        scheduled_at: occurrence.scheduled,
        owner_id: owner,
    };
    if occurrences::insert(tx, &new).await? {
        return Ok(Ok(id));
    }
    let row = occurrences::find(&mut *tx, occurrence.resource_uid, occurrence.scheduled).await?;
    Ok(Err(match row {
        Some(row) => Started {
            occurrence_id: row.id,
            task_id: row.task_id,
            recipients: row.recipients,
            skipped: serde_json::from_value(row.skipped).unwrap_or_default(),
            created: false,
            events: Vec::new(),
        },
        // Deleted between the two statements (its owner was deleted): nothing to do.
        None => Started {
            occurrence_id: id,
            task_id: None,
            recipients: 0,
            skipped: Vec::new(),
            created: false,
            events: Vec::new(),
        },
    }))
}
