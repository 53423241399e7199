//! Reminder occurrences, many at once: the scheduler's batches (a Job passes one).

use borcelle_crds::ScheduledReminderSpec;
use borcelle_store::occurrences::{self, NewOccurrence, RecipientPairs};
use borcelle_store::{Owner, PgConnection, notes, notifications, tasks, users};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{Occurrence, Started};
use crate::Error;
use crate::events::{Envelope, LiveEvent};

/// What is known about one reminder occurrence before anything is written.
struct Prepared {
    owner: Owner,
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
) -> borcelle_store::Result<Vec<Result<Started, String>>> {
    let mut results: Vec<Option<Result<Started, String>>> = (0..items.len()).map(|_| None).collect();

    // Owners by email (a Job knows only the email), then note bodies, in one query each.
    let wanted: Vec<String> =
        items.iter().filter(|(o, _)| o.owner.is_none()).map(|(_, s)| s.owner.trim().to_lowercase()).collect();
    let owners: Vec<(Uuid, String)> =
        if wanted.is_empty() { Vec::new() } else { users::ids_by_emails(&mut *tx, &wanted).await? };
    let note_ids: Vec<Uuid> = items.iter().filter_map(|(_, s)| s.note_id.as_deref()?.parse().ok()).collect();
    let notes: Vec<(Uuid, Owner, String)> =
        if note_ids.is_empty() { Vec::new() } else { notes::bodies(&mut *tx, &note_ids).await? };
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
                kind: borcelle_store::schedules::REMINDER,
                resource: o.resource,
                scheduled_at: o.scheduled,
                owner_id: Some(p.owner.id()),
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
    let owners_of: Vec<Owner> = fresh.iter().filter_map(|i| prepared[*i].as_ref().map(|p| p.owner)).collect();
    let subjects: Vec<String> = fresh.iter().map(|i| items[*i].1.subject.clone()).collect();
    let bodies: Vec<String> = fresh.iter().filter_map(|i| prepared[*i].as_ref().map(|p| p.body.clone())).collect();
    let owner_ids: Vec<Uuid> = owners_of.iter().map(|o| o.id()).collect();
    tasks::insert_many(tx, "reminder", &task_ids, &owner_ids, &subjects, &bodies).await?;
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
    borcelle_store::suppressions::mark_queued(tx, &task_ids).await?;
    let finished_at_once = crate::delivery::finished_at_once(tx, &task_ids).await?;
    let task_of: Vec<Option<Uuid>> =
        task_ids.iter().zip(&totals).map(|(id, total)| (*total > 0).then_some(*id)).collect();
    for (k, i) in fresh.iter().enumerate() {
        if let (Some(task), Some(p)) = (task_of[k], &prepared[*i])
            && !p.attachments.is_empty()
        {
            borcelle_store::attachments::attach_to_task(tx, task, &p.attachments).await?;
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
            events.push(Envelope::to_user(owner.id(), &LiveEvent::task_started(task_id, totals[k])));
            events.extend(finished_at_once.iter().filter(|(id, _)| *id == task_id).map(|(_, e)| e.clone()));
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
            events.push(Envelope::to_user(owner.id(), &LiveEvent::notification(notification)));
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
    notes: &[(Uuid, Owner, String)],
    attachments_max_bytes: u64,
) -> borcelle_store::Result<Result<Prepared, String>> {
    // A resource applied before its schema refused such fields (the schedulers check them too).
    if let Err(err) = spec.check_fields() {
        return Ok(Err(err.to_string()));
    }
    let owner = match occurrence.owner {
        Some(owner) => Owner::new(owner),
        None => {
            let email = spec.owner.trim().to_lowercase();
            match owners.iter().find(|(_, e)| *e == email) {
                Some((id, _)) => Owner::new(*id),
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
            Err(Error::Database(err)) => return Err(err),
            Err(err @ (Error::Internal(_) | Error::Unavailable(_))) => {
                return Err(borcelle_store::Error::Query(sqlx::Error::Protocol(format!(
                    "checking attachments: {err}"
                ))));
            }
            Err(err) => return Ok(Err(format!("attachments: {err}"))),
        }
    };
    Ok(Ok(Prepared { owner, body, attachments }))
}
