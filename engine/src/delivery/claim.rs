//! Claiming due rows and preparing, once per task, the email they carry (rendered content and
//! attachments, kept in the [`ContentCache`] between batches).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use borcelle_mail::merge::{MergeTemplate, SenderFields};
use borcelle_mail::{MailError, Mailbox, templates};
use borcelle_store::messages::{self, Claimed};
use borcelle_store::tasks;
use uuid::Uuid;

use super::DeliveryEngine;
use super::cache::{CACHED_MESSAGES_OF_ATTACHMENTS, Content, ContentCache, LINK_PLACEHOLDER, Prepared};

/// A claimed row and the email it carries (or why that email could not be prepared).
pub(super) type Batched = (Claimed, Result<Arc<Prepared>, MailError>);

/// Claiming failed; `claimed` holds the claims taken before the failure, to be given back.
pub(super) struct ClaimError {
    pub(super) error: borcelle_store::Error,
    pub(super) claimed: Vec<(Uuid, i32)>,
}

impl DeliveryEngine {
    /// Claims due rows and prepares (once per task) the email they carry. A task whose
    /// attachments cannot be read comes with the error, which its rows record instead of a send.
    /// When preparing fails after the claim (the database went away), the error carries the
    /// claims so that they are given back rather than held until their lease runs out.
    pub(super) async fn claim(
        &self,
        limit: i64,
        claimer: &str,
        contents: &mut ContentCache,
    ) -> Result<Vec<Batched>, ClaimError> {
        let claimed = messages::claim_due(&self.db, limit, self.settings.lease.as_secs_f64(), claimer)
            .await
            .map_err(|error| ClaimError { error, claimed: Vec::new() })?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let claims: Vec<(Uuid, i32)> = claimed.iter().map(|c| (c.id, c.attempts)).collect();
        self.prepare(claimed, contents).await.map_err(|error| ClaimError { error, claimed: claims })
    }

    async fn prepare(
        &self,
        claimed: Vec<Claimed>,
        contents: &mut ContentCache,
    ) -> borcelle_store::Result<Vec<Batched>> {
        let mut missing: Vec<Uuid> =
            claimed.iter().map(|c| c.task_id).filter(|id| !contents.entries.contains_key(id)).collect();
        missing.sort_unstable();
        missing.dedup();
        let mut unreadable: HashMap<Uuid, MailError> = HashMap::new();
        if !missing.is_empty() {
            let needed: HashSet<Uuid> = claimed.iter().map(|c| c.task_id).collect();
            let budget = self.attachments_max_bytes.saturating_mul(CACHED_MESSAGES_OF_ATTACHMENTS);
            contents.make_room(&needed, missing.len(), budget);
            let mut files = crate::attachments::load_for_tasks(&self.db, self.store.as_ref(), &missing).await?;
            for task in tasks::contents(&self.db, &missing).await? {
                let attachments = match files.remove(&task.id).unwrap_or(Ok(Vec::new())) {
                    Ok(attachments) => attachments,
                    Err(err) => {
                        tracing::warn!(task = %task.id, error = %err, "attachments unreadable");
                        unreadable.insert(task.id, err);
                        continue;
                    }
                };
                let unsubscribe = self.unsubscribe.one_to_one
                    || task.total > 1
                    || matches!(task.kind.as_str(), "reminder" | "broadcast");
                let content = match self.content(&task, unsubscribe) {
                    Ok(content) => content,
                    Err(err) => {
                        // It would fail the same way every time: the task's rows fail with the reason.
                        tracing::error!(task = %task.id, error = %err, "preparing the message failed");
                        unreadable.insert(task.id, MailError::Permanent(format!("preparing the message: {err}")));
                        continue;
                    }
                };
                let prepared = Prepared {
                    from_name: format!("{} via Borcelle", task.owner_name),
                    reply_to: Mailbox { name: Some(task.owner_name.clone()), email: task.owner_email.clone() },
                    sender: SenderFields { name: task.owner_name.clone(), email: task.owner_email.clone() },
                    content,
                    unsubscribe,
                    attachments,
                };
                contents.insert(task.id, prepared);
            }
        }
        let mut batch = Vec::with_capacity(claimed.len());
        for row in claimed {
            if let Some(err) = unreadable.get(&row.task_id) {
                batch.push((row, Err(err.clone())));
                continue;
            }
            match contents.entries.get(&row.task_id) {
                Some(prepared) => batch.push((row, Ok(prepared.clone()))),
                // The task vanished (its owner was deleted): nothing to send.
                None => tracing::warn!(message = %row.id, "claimed a message whose task is gone"),
            }
        }
        Ok(batch)
    }

    /// A task's content: rendered once when it has no merge fields (a broadcast's never has:
    /// its text is an administrator's notice, not a template), else its templates, checked.
    fn content(&self, task: &tasks::TaskContent, unsubscribe: bool) -> Result<Content, String> {
        // A subject stored before the checks may hold a line break: the last guard makes it one line.
        let subject = borcelle_mail::header_line(&task.subject);
        if task.kind != "broadcast" {
            let template = MergeTemplate::parse(&subject, &task.body).map_err(|err| err.to_string())?;
            if !template.is_plain() {
                return Ok(Content::Personal(Box::new(template)));
            }
        }
        let link = unsubscribe.then_some(LINK_PLACEHOLDER);
        let rendered =
            templates::message(&task.owner_name, &subject, &task.body, link).map_err(|err| err.to_string())?;
        Ok(Content::Fixed { subject: rendered.subject, text: rendered.text, html: rendered.html })
    }
}
