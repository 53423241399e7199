//! One occurrence of a reminder or a broadcast, run the same way by serve's in-process scheduler
//! and by `borcelle worker occurrence` in a Kubernetes Job.
//!
//! [`start`] does everything in the caller's transaction, starting with the occurrence row that is
//! unique on (resource, scheduled time): a second start of the same occurrence (a retried Job, a
//! second scheduler, a restart) finds the row and writes nothing. The emails then go through the
//! delivery engine like any other send; [`Started::announce`] publishes the live events after the
//! commit.

use borcelle_crds::{AudienceGroup, BroadcastSpec, Channel, ScheduledReminderSpec};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::occurrences::{self, BroadcastNotice, NewOccurrence, UserGroup};
use crate::db::{notes, notifications, tasks, users};
use crate::error::AppError;
use crate::events::{Audience, Envelope, EventBus};

/// What an occurrence runs.
#[derive(Debug, Clone)]
pub enum OccurrenceSpec {
    Reminder(ScheduledReminderSpec),
    Broadcast(BroadcastSpec),
}

impl OccurrenceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            OccurrenceSpec::Reminder(_) => crate::db::schedules::REMINDER,
            OccurrenceSpec::Broadcast(_) => crate::db::schedules::BROADCAST,
        }
    }

    /// Reads a spec of `kind` (`ScheduledReminder` or `Broadcast`) from its JSON.
    pub fn from_json(kind: &str, spec: serde_json::Value) -> Result<Self, OccurrenceError> {
        let parsed = match kind {
            crate::db::schedules::REMINDER => serde_json::from_value(spec).map(OccurrenceSpec::Reminder),
            crate::db::schedules::BROADCAST => serde_json::from_value(spec).map(OccurrenceSpec::Broadcast),
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
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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
    events: Vec<Envelope>,
}

impl Started {
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
            start_reminder(tx, occurrence, spec, message_id_domain, attachments_max_bytes).await
        }
        OccurrenceSpec::Broadcast(spec) => start_broadcast(tx, occurrence, spec, message_id_domain).await,
    }
}

/// Writes the occurrence row; `Err(existing)` when it was started before.
async fn claim(
    tx: &mut PgConnection,
    occurrence: &Occurrence<'_>,
    owner: Option<Uuid>,
) -> sqlx::Result<Result<Uuid, Started>> {
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

async fn start_reminder(
    tx: &mut PgConnection,
    occurrence: &Occurrence<'_>,
    spec: &ScheduledReminderSpec,
    domain: &str,
    attachments_max_bytes: u64,
) -> Result<Started, OccurrenceError> {
    let owner = match occurrence.owner {
        Some(owner) => owner,
        None => {
            let email = spec.owner.trim().to_lowercase();
            users::find_by_email(&mut *tx, &email).await?.map(|u| u.id).ok_or_else(|| {
                OccurrenceError::Permanent(format!("no Borcelle account has the owner's email {email:?}"))
            })?
        }
    };
    let id = match claim(tx, occurrence, Some(owner)).await? {
        Ok(id) => id,
        Err(existing) => return Ok(existing),
    };
    let body = match (&spec.body, &spec.note_id) {
        (Some(body), _) => body.clone(),
        (None, Some(note)) => {
            let note_id: Uuid =
                note.parse().map_err(|_| OccurrenceError::Permanent(format!("noteId {note:?} is not a note id")))?;
            notes::get(&mut *tx, owner, note_id)
                .await?
                .map(|n| n.body)
                .ok_or_else(|| OccurrenceError::Permanent(format!("the owner has no note {note}")))?
        }
        (None, None) => return Err(OccurrenceError::Permanent("the reminder has neither body nor noteId".into())),
    };
    let mut attachment_ids = Vec::with_capacity(spec.attachments.len());
    for raw in &spec.attachments {
        attachment_ids.push(
            raw.parse::<Uuid>()
                .map_err(|_| OccurrenceError::Permanent(format!("attachment {raw:?} is not an attachment id")))?,
        );
    }
    let attachments = crate::attachments::check_for_send(tx, owner, &attachment_ids, attachments_max_bytes)
        .await
        .map_err(|err| match err {
            AppError::Internal(err) => OccurrenceError::Permanent(format!("attachments: {err}")),
            other => OccurrenceError::Permanent(format!("attachments: {other}")),
        })?;

    let (mut ids, mut skipped) = (Vec::new(), Vec::new());
    for raw in &spec.recipients.contact_ids {
        match raw.parse::<Uuid>() {
            Ok(id) => ids.push(id),
            Err(_) => skipped.push(raw.clone()),
        }
    }
    let task_id = Uuid::now_v7();
    let task = tasks::NewTask {
        id: task_id,
        owner,
        kind: "reminder",
        note_id: None,
        subject: &spec.subject,
        body: &body,
        message_id_domain: domain,
    };
    tasks::insert(tx, &task).await?;
    let resolved = occurrences::queue_contacts(
        tx,
        owner,
        task_id,
        domain,
        &ids,
        &spec.recipients.emails,
        spec.recipients.tag.as_deref(),
    )
    .await?;
    skipped.extend(resolved.missing);
    let task_id = if resolved.queued == 0 {
        tasks::delete_empty(tx, task_id).await?;
        None
    } else {
        tasks::set_total(tx, task_id, resolved.queued).await?;
        if !attachments.is_empty() {
            crate::db::attachments::attach_to_task(tx, task_id, &attachments).await?;
        }
        Some(task_id)
    };
    occurrences::set_outcome(tx, id, task_id, resolved.queued, &json!(skipped)).await?;

    let mut events = Vec::new();
    if let Some(task_id) = task_id {
        let event = json!({ "type": "task_progress", "task_id": task_id, "sent": 0, "failed": 0, "total": resolved.queued, "status": "running" });
        events.push(Envelope { audience: Audience::User(owner), event });
    }
    if !skipped.is_empty() || task_id.is_none() {
        let title = format!("Reminder {}: {} recipient(s) not found", occurrence.resource, skipped.len());
        let body = if task_id.is_none() {
            "No contact matched the reminder's recipients, so nothing was sent.".to_owned()
        } else {
            format!("Sent to the {} contact(s) found; not found: {}", resolved.queued, skipped.join(", "))
        };
        let data = json!({ "occurrence_id": id, "skipped": skipped });
        let notification = notifications::insert(&mut *tx, owner, "reminder_skipped", &title, &body, &data).await?;
        events.push(Envelope {
            audience: Audience::User(owner),
            event: json!({ "type": "notification", "notification": notification }),
        });
    }
    Ok(Started { occurrence_id: id, task_id, recipients: resolved.queued, skipped, created: true, events })
}

async fn start_broadcast(
    tx: &mut PgConnection,
    occurrence: &Occurrence<'_>,
    spec: &BroadcastSpec,
    domain: &str,
) -> Result<Started, OccurrenceError> {
    let creator = match occurrence.owner {
        Some(owner) => Some(owner),
        None => occurrences::oldest_admin(&mut *tx).await?,
    };
    let id = match claim(tx, occurrence, creator).await? {
        Ok(id) => id,
        Err(existing) => return Ok(existing),
    };
    let emails: Vec<String> = spec.audience.users.iter().map(|e| e.trim().to_lowercase()).collect();
    let group = match spec.audience.group {
        AudienceGroup::All => UserGroup::All,
        AudienceGroup::Admins => UserGroup::Admins,
        AudienceGroup::Users => UserGroup::Emails(&emails),
    };
    let data = json!({
        "broadcast": occurrence.resource,
        "occurrence_id": id,
        "severity": spec.severity.as_str(),
        "scheduled_at": occurrence.scheduled,
    });
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    let mut recipients = 0;
    if spec.channels.contains(&Channel::Web) {
        let notice =
            BroadcastNotice { title: &spec.title, body: &spec.message, data: &data, expires_at: spec.expires_at };
        let reached = occurrences::notify_users(tx, group, &notice).await?;
        recipients = reached.len() as i32;
        let event = json!({
            "type": "broadcast",
            "title": spec.title,
            "body": spec.message,
            "severity": spec.severity.as_str(),
            "broadcast": occurrence.resource,
            "occurrence_id": id,
        });
        match group {
            // One event that every replica pushes to every connected session.
            UserGroup::All => events.push(Envelope { audience: Audience::All, event }),
            UserGroup::Admins | UserGroup::Emails(_) => events
                .extend(reached.iter().map(|user| Envelope { audience: Audience::User(*user), event: event.clone() })),
        }
        if let UserGroup::Emails(wanted) = group
            && reached.len() < wanted.len()
        {
            let found = users_by_ids(tx, &reached).await?;
            skipped.extend(wanted.iter().filter(|e| !found.contains(e)).cloned());
        }
    }
    let mut task_id = None;
    if spec.emails() {
        match creator {
            Some(sender) => {
                let id = Uuid::now_v7();
                let task = tasks::NewTask {
                    id,
                    owner: sender,
                    kind: "broadcast",
                    note_id: None,
                    subject: &spec.title,
                    body: &spec.message,
                    message_id_domain: domain,
                };
                tasks::insert(tx, &task).await?;
                let queued = occurrences::queue_users(tx, sender, id, domain, group).await?;
                if queued == 0 {
                    tasks::delete_empty(tx, id).await?;
                } else {
                    tasks::set_total(tx, id, queued).await?;
                    recipients = recipients.max(queued);
                    task_id = Some(id);
                    let event = json!({ "type": "task_progress", "task_id": id, "sent": 0, "failed": 0, "total": queued, "status": "running" });
                    events.push(Envelope { audience: Audience::User(sender), event });
                }
            }
            None => skipped.push("email channel: no administrator account exists to send from".to_owned()),
        }
    }
    occurrences::set_outcome(tx, id, task_id, recipients, &json!(skipped)).await?;
    // Without emails the broadcast is complete now: tell its creator. With emails, the task's
    // completion notification does.
    if task_id.is_none()
        && let Some(creator) = creator
    {
        let title = format!("Broadcast {:?} delivered to {recipients} user(s)", spec.title);
        let data = json!({ "occurrence_id": id, "recipients": recipients, "broadcast": occurrence.resource });
        let notification =
            notifications::insert(&mut *tx, creator, "broadcast_done", &title, &skipped.join("; "), &data).await?;
        events.push(Envelope {
            audience: Audience::User(creator),
            event: json!({ "type": "notification", "notification": notification }),
        });
    }
    Ok(Started { occurrence_id: id, task_id, recipients, skipped, created: true, events })
}

async fn users_by_ids(tx: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!("SELECT email FROM users WHERE id = ANY($1)", ids).fetch_all(&mut *tx).await
}
