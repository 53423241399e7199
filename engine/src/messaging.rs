//! Sending to contacts: validates a send, writes the task and its ledger rows in one transaction,
//! wakes the delivery engine and tells the owner's open pages.

use std::sync::Arc;

use borcelle_store::tasks::{self, EnqueueError, NewTask, Recipients};
use borcelle_store::{Owner, PgPool};
use serde::Deserialize;
use tokio::sync::Notify;
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
}

impl Messaging {
    /// Queues a send: one transaction writes the task, its attachments and a `queued` ledger row
    /// per recipient; then the delivery engine is woken and the owner's pages are told.
    pub async fn send(&self, owner: Owner, outgoing: Outgoing<'_>) -> Result<Queued> {
        let Outgoing { kind, note_id, subject, body, recipients, attachment_ids } = outgoing;
        let domain = &self.message_id_domain;
        let task = NewTask { id: Uuid::now_v7(), owner, kind, note_id, subject, body, message_id_domain: domain };
        let mut tx = self.db.begin().await?;
        let limit = self.attachments_max_bytes;
        let attachments = crate::attachments::check_for_send(&mut tx, owner, attachment_ids, limit).await?;
        let chosen = match &recipients {
            Chosen::Contacts(ids) => Recipients::Contacts(ids),
            Chosen::Tags(tags) => Recipients::Tags(tags),
        };
        let enqueued = match tasks::enqueue(&mut tx, &task, chosen).await? {
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
        tracing::info!(task = %task.id, total, suppressed = enqueued.suppressed, kind, attachments = attachments.len(), "send queued");
        Ok(Queued { task_id: task.id, total, suppressed: enqueued.suppressed })
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
