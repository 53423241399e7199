//! Sending to contacts: validates a send, writes the task and its ledger rows (a send to tags in
//! chunks, each committed on its own, so that delivery starts with the first), wakes the delivery
//! engine and tells the owner's open pages.

use std::sync::Arc;
use std::time::Duration;

use borcelle_store::tasks::{self, Advanced, EnqueueError, Enqueued, NewTask, Queueing};
use borcelle_store::{Owner, PgPool};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use borcelle_mail::merge::{MergeTemplate, Part};

use crate::events::{Envelope, EventBus, LiveEvent};
use crate::{Error, Result};

pub const SUBJECT_MAX: usize = 200;
pub const BODY_MAX: usize = 100_000;
/// Most contacts one send may name by id (a tag reaches any number).
pub const RECIPIENT_IDS_MAX: usize = 10_000;

/// Who a send goes to, as a client names them: contact ids or one tag.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientsInput {
    #[serde(default)]
    pub contact_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    pub tag: Option<String>,
}

/// A validated recipient choice.
pub enum Chosen {
    Contacts(Vec<Uuid>),
    /// Every contact with any of these tags (lower case, at least one).
    Tags(Vec<String>),
}

impl Chosen {
    /// Tags as a form takes them, separated by commas: each checked as a contact's tag is.
    pub fn tags(raw: &str, field: &str) -> Result<Chosen> {
        let parts: Vec<String> = raw.split(',').map(str::to_owned).collect();
        let tags = crate::contacts::tags(&parts).map_err(|err| match err {
            Error::Invalid { message, .. } => Error::invalid(field, message),
            other => other,
        })?;
        if tags.is_empty() {
            return Err(Error::invalid(field, "name at least one tag, like vip (several: vip, lead)"));
        }
        Ok(Chosen::Tags(tags))
    }
}

impl RecipientsInput {
    pub fn validate(self) -> Result<Chosen> {
        if self.tag.as_deref().is_some_and(|t| t.chars().count() > crate::contacts::TAG_MAX) {
            return Err(Error::invalid("tag", format!("a tag has at most {} characters", crate::contacts::TAG_MAX)));
        }
        // A blank tag is no tag; any other is one line (as every stored tag is).
        if let Some(tag) = self.tag.as_deref().filter(|t| !t.trim().is_empty())
            && tag.chars().any(char::is_control)
        {
            return Err(Error::invalid("tag", "a tag must not contain control characters"));
        }
        match (self.contact_ids, self.tag.map(|t| t.trim().to_lowercase()).filter(|t| !t.is_empty())) {
            (Some(_), Some(_)) => Err(Error::invalid("contact_ids", "send to contact_ids or to a tag, not both")),
            (None, None) => Err(Error::invalid("contact_ids", "choose recipients: contact_ids or a tag")),
            (Some(mut ids), None) => {
                ids.sort_unstable();
                ids.dedup();
                if ids.is_empty() {
                    return Err(Error::invalid("contact_ids", "choose at least one contact"));
                }
                if ids.len() > RECIPIENT_IDS_MAX {
                    return Err(Error::invalid(
                        "contact_ids",
                        format!("at most {RECIPIENT_IDS_MAX} contacts by id; use a tag for more"),
                    ));
                }
                Ok(Chosen::Contacts(ids))
            }
            (None, Some(tag)) => Ok(Chosen::Tags(vec![tag])),
        }
    }
}

/// Checks a subject and body.
pub fn content(subject: &str, body: &str, subject_field: &str, body_field: &str) -> Result<(String, String)> {
    // Both fields are checked, so a form shows both errors at once.
    let mut errors = crate::error::FieldErrors::default();
    let checked_subject = errors.check(check_subject(subject, subject_field));
    let checked_body = errors.check(check_body(body, body_field));
    let (Some(subject), Some(())) = (checked_subject, checked_body) else { return Err(errors.into_error()) };
    merge_fields(subject, body, subject_field, body_field)?;
    Ok((subject.to_owned(), body.to_owned()))
}

/// A subject: one line, trimmed, not empty, bounded.
fn check_subject<'a>(sent: &'a str, field: &str) -> Result<&'a str> {
    let subject = sent.trim();
    if subject.is_empty() && !sent.chars().any(char::is_control) {
        return Err(Error::invalid(field, format!("{field} is required")));
    }
    if sent.chars().count() > SUBJECT_MAX || sent.chars().any(char::is_control) {
        return Err(Error::invalid(field, format!("{field} must be one line of at most {SUBJECT_MAX} characters")));
    }
    Ok(subject)
}

/// A body: not blank, bounded, no control characters but line breaks and tabs.
fn check_body(body: &str, field: &str) -> Result<()> {
    if body.trim().is_empty() {
        return Err(Error::invalid(field, format!("{field} is required")));
    }
    if body.chars().count() > BODY_MAX || body.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(Error::invalid(
            field,
            format!("{field} must be at most {BODY_MAX} characters, without control characters"),
        ));
    }
    Ok(())
}

/// Checks the merge fields of a subject and body (`{{ contact.first_name }}`…) when they are
/// saved or sent, never at delivery: a syntax error, an unknown field, or a template that would
/// run too long or grow too large is refused, naming the field, the position and the problem.
pub fn merge_fields(subject: &str, body: &str, subject_field: &str, body_field: &str) -> Result<MergeTemplate> {
    MergeTemplate::parse(subject, body).map_err(|err| {
        let field = match err.part {
            Part::Subject => subject_field,
            Part::Body => body_field,
        };
        Error::invalid(field, err.to_string())
    })
}

/// A queued send.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Queued {
    pub task_id: Uuid,
    pub total: i32,
    /// Recipients not mailed: on the sender's suppression list.
    pub suppressed: i32,
}

/// A send whose first recipients are in the ledger (delivery has started); the rest of a send to
/// tags are being written.
pub struct Started {
    owner: Owner,
    /// The counts so far.
    pub queued: Queued,
    /// The writer of the remaining chunks: the task's counts once it wrote the last one, or None
    /// when another writer did.
    rest: Option<tokio::task::JoinHandle<Result<Option<Advanced>>>>,
}

impl Started {
    /// Waits until every recipient is in the ledger; the send's final counts. (Dropping `self`
    /// instead leaves the writer to go on alone.)
    pub async fn all_queued(self, messaging: &Messaging) -> Result<Queued> {
        let Some(rest) = self.rest else { return Ok(self.queued) };
        let task_id = self.queued.task_id;
        let (total, suppressed) = match rest.await {
            Ok(Ok(Some(queued))) => (queued.total, queued.suppressed),
            // Another writer finished it (this one stalled past its lease): its counts.
            Ok(Ok(None)) => match tasks::get(&messaging.db, self.owner, task_id).await? {
                Some(task) => (task.total, task.suppressed),
                None => return Err(Error::NotFound("task")),
            },
            Ok(Err(err)) => return Err(err),
            Err(err) => return Err(Error::Internal(Box::new(err))),
        };
        Ok(Queued { task_id, total, suppressed })
    }
}

/// One send, its content checked.
pub struct Outgoing<'a> {
    /// `message` or `note`.
    pub kind: &'a str,
    pub note_id: Option<Uuid>,
    pub subject: &'a str,
    pub body: &'a str,
    pub recipients: Chosen,
    /// Attachments to carry, in this order; checked here (the owner's, within the size limit).
    pub attachment_ids: &'a [Uuid],
}

/// What queuing a send needs.
#[derive(Clone)]
pub struct Messaging {
    pub db: PgPool,
    pub events: EventBus,
    /// This process's delivery engine, woken when a send is queued.
    pub wake_delivery: Arc<Notify>,
    /// Domain of the stable Message-IDs (`<id@domain>`).
    pub message_id_domain: String,
    /// The most one message's attachments may add up to, in bytes.
    pub attachments_max_bytes: u64,
    /// Recipients of a send to tags written per transaction.
    pub queue_chunk: i64,
    /// How long a writer of a send's chunks holds it; a crashed writer's send is taken over after.
    pub queue_lease: Duration,
}

/// How often `serve` looks for sends whose queueing stopped with their writer.
pub const RESUME_EVERY: Duration = Duration::from_secs(5);

impl Messaging {
    /// Queues a send and answers once every recipient is in the ledger (see [`Messaging::start`]),
    /// with the send's final counts.
    pub async fn send(&self, owner: Owner, outgoing: Outgoing<'_>) -> Result<Queued> {
        self.start(owner, outgoing).await?.all_queued(self).await
    }

    /// Starts a send: one transaction writes the task, its attachments and a `queued` ledger row
    /// per recipient (of a send to tags, the first chunk of them); then the delivery engine is
    /// woken and the owner's pages are told. The rest of a send to tags is written chunk by chunk
    /// by a task of its own, which goes on whatever becomes of the caller.
    pub async fn start(&self, owner: Owner, outgoing: Outgoing<'_>) -> Result<Started> {
        let Outgoing { kind, note_id, subject, body, recipients, attachment_ids } = outgoing;
        let domain = &self.message_id_domain;
        let task = NewTask { id: Uuid::now_v7(), owner, kind, note_id, subject, body, message_id_domain: domain };
        let mut tx = self.db.begin().await?;
        let limit = self.attachments_max_bytes;
        let attachments = crate::attachments::check_for_send(&mut tx, owner, attachment_ids, limit).await?;
        let (enqueued, queueing) = match &recipients {
            Chosen::Tags(tags) => self.first_chunk(&mut tx, &task, tags).await?,
            Chosen::Contacts(ids) => (tasks::enqueue(&mut tx, &task, ids).await?, false),
        };
        let enqueued = match enqueued {
            Ok(enqueued) => enqueued,
            // Another user's contact is simply not one of ours: not found, as everywhere.
            Err(EnqueueError::UnknownContacts(_)) => return Err(Error::NotFound("contact")),
            Err(EnqueueError::NoRecipients) => {
                let message = match &recipients {
                    Chosen::Tags(tags) if tags.len() > 1 => "no contact has any of these tags",
                    _ => "no contact has this tag",
                };
                return Err(Error::NothingNamed { field: "tag", message: message.into() });
            }
        };
        if !attachments.is_empty() {
            borcelle_store::attachments::attach_to_task(&mut tx, task.id, &attachments).await?;
        }
        let finished = crate::delivery::finished_at_once(&mut tx, &[task.id]).await?;
        tx.commit().await?;
        let total = enqueued.total;
        self.wake_delivery.notify_one();
        self.events.publish(Envelope::to_user(owner.id(), &LiveEvent::task_started(task.id, total))).await;
        for (_, event) in finished {
            self.events.publish(event).await;
        }
        let queued = Queued { task_id: task.id, total, suppressed: enqueued.suppressed };
        tracing::info!(task = %task.id, total, suppressed = queued.suppressed, queueing, kind, attachments = attachments.len(), "send queued");
        let rest = queueing.then(|| {
            let this = self.clone();
            let id = task.id;
            tokio::spawn(async move { this.queue_rest(id).await })
        });
        Ok(Started { owner, queued, rest })
    }

    /// Starts a send to tags in the request's transaction: the task is marked as being queued
    /// and its first chunk written. Returns whether chunks remain.
    async fn first_chunk(
        &self,
        tx: &mut borcelle_store::PgConnection,
        task: &NewTask<'_>,
        tags: &[String],
    ) -> Result<(std::result::Result<Enqueued, EnqueueError>, bool)> {
        let lease = self.queue_lease.as_secs_f64();
        tasks::insert(tx, task).await?;
        tasks::start_queueing(tx, task.id, tags, lease).await?;
        let queueing = Queueing { id: task.id, owner_id: task.owner.id(), tags: tags.to_vec() };
        let chunk = self.queue_chunk.max(1);
        let written = tasks::queue_chunk(tx, &queueing, chunk, &self.message_id_domain).await?;
        if written.read == 0 {
            return Ok((Err(EnqueueError::NoRecipients), false));
        }
        let finished = written.read < chunk;
        let advanced = tasks::advance(tx, task.id, &written, true, finished, lease).await?;
        Ok((Ok(Enqueued { total: advanced.total, suppressed: advanced.suppressed }), !finished))
    }

    /// Writes the remaining chunks of a send to tags, each in a transaction of its own that also
    /// moves the task's cursor and counts, waking the delivery engine after each. Returns the
    /// task's counts once this call wrote the last chunk, or None when another writer did.
    pub async fn queue_rest(&self, id: Uuid) -> Result<Option<Advanced>> {
        let chunk = self.queue_chunk.max(1);
        let lease = self.queue_lease.as_secs_f64();
        loop {
            let mut tx = self.db.begin().await?;
            let Some(queueing) = tasks::lock_queueing(&mut tx, id).await? else {
                tx.commit().await?;
                return Ok(None);
            };
            let written = tasks::queue_chunk(&mut tx, &queueing, chunk, &self.message_id_domain).await?;
            let finished = written.read < chunk;
            let advanced = tasks::advance(&mut tx, id, &written, false, finished, lease).await?;
            let events =
                if advanced.done { crate::delivery::finished_at_once(&mut tx, &[id]).await? } else { Vec::new() };
            tx.commit().await?;
            if written.inserted > 0 {
                self.wake_delivery.notify_one();
            }
            for (_, event) in events {
                self.events.publish(event).await;
            }
            if finished {
                tracing::info!(task = %id, total = advanced.total, suppressed = advanced.suppressed, "send fully queued");
                return Ok(Some(advanced));
            }
        }
    }

    /// Until `stop`: takes over the sends whose queueing stopped with their writer (a crash, a
    /// restart: their lease ran out) and writes their remaining chunks from the cursor.
    pub async fn resume_stalled(self, stop: CancellationToken) {
        let mut every = tokio::time::interval(RESUME_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(err) = self.resume_stalled_once().await {
                tracing::warn!(error = %err, "resuming stalled sends failed; will try again");
            }
        }
    }

    /// One look for stalled sends (see [`Messaging::resume_stalled`]); returns how many were
    /// taken over and finished.
    pub async fn resume_stalled_once(&self) -> Result<usize> {
        let mut finished = 0;
        // One at a time, so that each is taken when this process can start on it (the lease runs
        // from then).
        while let Some(id) = tasks::take_stalled_queueing(&self.db, self.queue_lease.as_secs_f64()).await? {
            tracing::warn!(task = %id, "taking over a send whose queueing stopped");
            if self.queue_rest(id).await?.is_some() {
                finished += 1;
            }
        }
        Ok(finished)
    }
}

/// A subject and body as `contact` would receive them from `sender`: the merge fields filled, and
/// the text and HTML parts built (with the unsubscribe footer bulk mail carries, its link left
/// out). Checks the template as a send would.
pub fn preview(
    contact: &borcelle_store::contacts::Contact,
    sender: borcelle_mail::merge::SenderFields,
    subject: &str,
    body: &str,
) -> Result<borcelle_mail::Rendered> {
    let template = merge_fields(subject, body, "subject", "body")?;
    let fields = borcelle_mail::merge::MergeFields { contact: merge_contact(contact), sender };
    let merged = template.render(&fields).map_err(|err| {
        let field = match err.part {
            Part::Subject => "subject",
            Part::Body => "body",
        };
        Error::invalid(field, err.to_string())
    })?;
    borcelle_mail::templates::message(&fields.sender.name, &merged.subject, &merged.body, Some("#unsubscribe"))
        .map_err(|err| Error::Internal(Box::new(err)))
}

/// A contact's fields as a personalised email sees them (what queuing a send stores per recipient).
pub fn merge_contact(contact: &borcelle_store::contacts::Contact) -> borcelle_mail::merge::ContactFields {
    borcelle_mail::merge::ContactFields {
        first_name: contact.first_name.clone(),
        last_name: contact.last_name.clone(),
        name: contact.name.clone(),
        email: contact.email.clone(),
        company: contact.company.clone(),
        phone: contact.phone.clone(),
        address: contact.address.clone(),
        tags: contact.tags.clone(),
    }
}

/// Shows each ledger row's subject as its recipient received it: a personalised subject is
/// rendered with the fields stored on the row (each distinct subject parsed once).
pub fn personal_subjects(rows: &mut [borcelle_store::messages::Message], sender: &borcelle_mail::merge::SenderFields) {
    let mut templates: std::collections::HashMap<String, Option<MergeTemplate>> = std::collections::HashMap::new();
    for row in rows.iter_mut() {
        if !(row.subject.contains("{{") || row.subject.contains("{%") || row.subject.contains("{#")) {
            continue;
        }
        let template = templates
            .entry(row.subject.clone())
            .or_insert_with(|| MergeTemplate::parse(&row.subject, "").ok())
            .as_ref();
        let Some(template) = template else { continue };
        let contact = crate::delivery::recipient_fields(row.merge.as_ref(), row.to_name.as_deref(), &row.to_email);
        let fields = borcelle_mail::merge::MergeFields { contact, sender: sender.clone() };
        if let Ok(merged) = template.render(&fields) {
            row.subject = merged.subject;
        }
    }
}
