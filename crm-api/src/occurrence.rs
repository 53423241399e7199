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

use crate::db::occurrences::{self, BroadcastNotice, NewOccurrence, RecipientPairs, UserGroup};
use crate::db::{notifications, tasks};
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

/// What is known about one reminder occurrence before anything is written.
struct Prepared {
    owner: Uuid,
    body: String,
    attachments: Vec<Uuid>,
}

/// Starts many reminder occurrences in the caller's transaction with a fixed number of
/// statements, whatever their number (the scheduler's batches; a Job passes one). Each item's
/// result is its own: one that can never run (an unknown owner, a deleted note) is reported as
/// `Err(reason)` and writes nothing, without affecting the others.
pub async fn start_reminders(
    tx: &mut PgConnection,
    items: &[(Occurrence<'_>, &ScheduledReminderSpec)],
    domain: &str,
    attachments_max_bytes: u64,
) -> sqlx::Result<Vec<Result<Started, String>>> {
    let mut results: Vec<Option<Result<Started, String>>> = (0..items.len()).map(|_| None).collect();

    // Owners by email (a Job knows only the email), then note bodies, in one query each.
    let wanted: Vec<String> =
        items.iter().filter(|(o, _)| o.owner.is_none()).map(|(_, s)| s.owner.trim().to_lowercase()).collect();
    let owners: Vec<(Uuid, String)> = if wanted.is_empty() {
        Vec::new()
    } else {
        sqlx::query!("SELECT id, email FROM users WHERE email = ANY($1)", &wanted)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| (r.id, r.email))
            .collect()
    };
    let note_ids: Vec<Uuid> = items.iter().filter_map(|(_, s)| s.note_id.as_deref()?.parse().ok()).collect();
    let notes: Vec<(Uuid, Uuid, String)> = if note_ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query!("SELECT id, owner_id, body FROM notes WHERE id = ANY($1)", &note_ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| (r.id, r.owner_id, r.body))
            .collect()
    };
    let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(items.len());
    for (i, (occurrence, spec)) in items.iter().enumerate() {
        match prepare(tx, occurrence, spec, &owners, &notes, attachments_max_bytes).await? {
            Ok(p) => prepared.push(Some(p)),
            Err(reason) => {
                results[i] = Some(Err(reason));
                prepared.push(None);
            }
        }
    }

    // Claim: the occurrence rows, unique per (resource, time).
    let ids: Vec<Uuid> = items.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<NewOccurrence<'_>> = items
        .iter()
        .zip(&prepared)
        .zip(&ids)
        .filter_map(|(((o, _), p), id)| {
            p.as_ref().map(|p| NewOccurrence {
                id: *id,
                resource_uid: o.resource_uid,
                kind: crate::db::schedules::REMINDER,
                resource: o.resource,
                scheduled_at: o.scheduled,
                owner_id: Some(p.owner),
            })
        })
        .collect();
    let created = if rows.is_empty() { Vec::new() } else { occurrences::insert_many(tx, &rows).await? };
    let existing_at: Vec<usize> =
        (0..items.len()).filter(|i| prepared[*i].is_some() && !created.contains(&ids[*i])).collect();
    if !existing_at.is_empty() {
        let uids: Vec<Uuid> = existing_at.iter().map(|i| items[*i].0.resource_uid).collect();
        let times: Vec<DateTime<Utc>> = existing_at.iter().map(|i| items[*i].0.scheduled).collect();
        let found = occurrences::find_many(tx, &uids, &times).await?;
        for i in existing_at {
            let (o, _) = &items[i];
            let row = found.iter().find(|(uid, row)| *uid == o.resource_uid && row.scheduled_at == o.scheduled);
            results[i] = Some(Ok(match row {
                Some((_, row)) => Started {
                    occurrence_id: row.id,
                    task_id: row.task_id,
                    recipients: row.recipients,
                    skipped: serde_json::from_value(row.skipped.clone()).unwrap_or_default(),
                    created: false,
                    events: Vec::new(),
                },
                // Deleted meanwhile with its owner: nothing to do.
                None => Started {
                    occurrence_id: ids[i],
                    task_id: None,
                    recipients: 0,
                    skipped: Vec::new(),
                    created: false,
                    events: Vec::new(),
                },
            }));
        }
    }
    let fresh: Vec<usize> = (0..items.len()).filter(|i| created.contains(&ids[*i])).collect();
    if fresh.is_empty() {
        return Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err("not started".into()))).collect());
    }

    // One task per new occurrence, then every ledger row in one statement.
    let task_ids: Vec<Uuid> = fresh.iter().map(|_| Uuid::now_v7()).collect();
    let owners_of: Vec<Uuid> = fresh.iter().filter_map(|i| prepared[*i].as_ref().map(|p| p.owner)).collect();
    let subjects: Vec<String> = fresh.iter().map(|i| items[*i].1.subject.clone()).collect();
    let bodies: Vec<String> = fresh.iter().filter_map(|i| prepared[*i].as_ref().map(|p| p.body.clone())).collect();
    tasks::insert_many(tx, "reminder", &task_ids, &owners_of, &subjects, &bodies).await?;
    let mut pairs = RecipientPairs::default();
    let mut unparsable: Vec<Vec<String>> = vec![Vec::new(); fresh.len()];
    for (k, i) in fresh.iter().enumerate() {
        let recipients = &items[*i].1.recipients;
        for raw in &recipients.contact_ids {
            match raw.parse::<Uuid>() {
                Ok(id) => {
                    pairs.by_id.0.push(task_ids[k]);
                    pairs.by_id.1.push(id);
                }
                Err(_) => unparsable[k].push(raw.clone()),
            }
        }
        for email in &recipients.emails {
            pairs.by_email.0.push(task_ids[k]);
            pairs.by_email.1.push(email.trim().to_lowercase());
        }
        if let Some(tag) = &recipients.tag {
            pairs.by_tag.0.push(task_ids[k]);
            pairs.by_tag.1.push(tag.trim().to_lowercase());
        }
    }
    let queued = occurrences::queue_contacts_many(tx, &pairs, domain).await?;
    let mut totals = vec![0i32; fresh.len()];
    let mut skipped_of: Vec<Vec<String>> = unparsable;
    for (k, i) in fresh.iter().enumerate() {
        let mine: Vec<&occurrences::Queued> = queued.iter().filter(|q| q.task_id == task_ids[k]).collect();
        totals[k] = mine.len() as i32;
        let recipients = &items[*i].1.recipients;
        for raw in &recipients.contact_ids {
            if let Ok(id) = raw.parse::<Uuid>()
                && !mine.iter().any(|q| q.contact_id == id)
            {
                skipped_of[k].push(raw.clone());
            }
        }
        for email in &recipients.emails {
            let email = email.trim().to_lowercase();
            if !mine.iter().any(|q| q.email == email) {
                skipped_of[k].push(email);
            }
        }
    }
    tasks::set_totals(tx, &task_ids, &totals).await?;
    let task_of: Vec<Option<Uuid>> =
        task_ids.iter().zip(&totals).map(|(id, total)| (*total > 0).then_some(*id)).collect();
    for (k, i) in fresh.iter().enumerate() {
        if let (Some(task), Some(p)) = (task_of[k], &prepared[*i])
            && !p.attachments.is_empty()
        {
            crate::db::attachments::attach_to_task(tx, task, &p.attachments).await?;
        }
    }
    let occurrence_ids: Vec<Uuid> = fresh.iter().map(|i| ids[*i]).collect();
    let skipped_json: Vec<serde_json::Value> = skipped_of.iter().map(|s| json!(s)).collect();
    occurrences::set_outcomes(tx, &occurrence_ids, &task_of, &totals, &skipped_json).await?;

    for (k, i) in fresh.iter().enumerate() {
        let (occurrence, _) = &items[*i];
        let owner = owners_of[k];
        let mut events = Vec::new();
        if let Some(task_id) = task_of[k] {
            let event = json!({ "type": "task_progress", "task_id": task_id, "sent": 0, "failed": 0, "total": totals[k], "status": "running" });
            events.push(Envelope { audience: Audience::User(owner), event });
        }
        let skipped = std::mem::take(&mut skipped_of[k]);
        if !skipped.is_empty() || task_of[k].is_none() {
            let title = format!("Reminder {}: {} recipient(s) not found", occurrence.resource, skipped.len());
            let body = if task_of[k].is_none() {
                "No contact matched the reminder's recipients, so nothing was sent.".to_owned()
            } else {
                format!("Sent to the {} contact(s) found; not found: {}", totals[k], skipped.join(", "))
            };
            let data = json!({ "occurrence_id": ids[*i], "skipped": skipped });
            let notification = notifications::insert(&mut *tx, owner, "reminder_skipped", &title, &body, &data).await?;
            events.push(Envelope {
                audience: Audience::User(owner),
                event: json!({ "type": "notification", "notification": notification }),
            });
        }
        results[*i] = Some(Ok(Started {
            occurrence_id: ids[*i],
            task_id: task_of[k],
            recipients: totals[k],
            skipped,
            created: true,
            events,
        }));
    }
    Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err("not started".into()))).collect())
}

/// Resolves one reminder occurrence's owner, body and attachments; `Err(reason)` when it can
/// never run.
async fn prepare(
    tx: &mut PgConnection,
    occurrence: &Occurrence<'_>,
    spec: &ScheduledReminderSpec,
    owners: &[(Uuid, String)],
    notes: &[(Uuid, Uuid, String)],
    attachments_max_bytes: u64,
) -> sqlx::Result<Result<Prepared, String>> {
    let owner = match occurrence.owner {
        Some(owner) => owner,
        None => {
            let email = spec.owner.trim().to_lowercase();
            match owners.iter().find(|(_, e)| *e == email) {
                Some((id, _)) => *id,
                None => return Ok(Err(format!("no Borcelle account has the owner's email {email:?}"))),
            }
        }
    };
    let body = match (&spec.body, &spec.note_id) {
        (Some(body), _) => body.clone(),
        (None, Some(note)) => {
            let Ok(note_id) = note.parse::<Uuid>() else {
                return Ok(Err(format!("noteId {note:?} is not a note id")));
            };
            match notes.iter().find(|(id, note_owner, _)| *id == note_id && *note_owner == owner) {
                Some((_, _, body)) => body.clone(),
                None => return Ok(Err(format!("the owner has no note {note}"))),
            }
        }
        (None, None) => return Ok(Err("the reminder has neither body nor noteId".into())),
    };
    let mut attachment_ids = Vec::with_capacity(spec.attachments.len());
    for raw in &spec.attachments {
        match raw.parse::<Uuid>() {
            Ok(id) => attachment_ids.push(id),
            Err(_) => return Ok(Err(format!("attachment {raw:?} is not an attachment id"))),
        }
    }
    let attachments = if attachment_ids.is_empty() {
        Vec::new()
    } else {
        match crate::attachments::check_for_send(tx, owner, &attachment_ids, attachments_max_bytes).await {
            Ok(ids) => ids,
            Err(err @ (AppError::Internal(_) | AppError::Unavailable(_))) => {
                return Err(sqlx::Error::Protocol(format!("checking attachments: {err:#}")));
            }
            Err(err) => return Ok(Err(format!("attachments: {err}"))),
        }
    };
    Ok(Ok(Prepared { owner, body, attachments }))
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
