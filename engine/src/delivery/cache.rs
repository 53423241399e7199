//! The delivery engine's cache of prepared tasks: rendered content and attachment bytes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use borcelle_mail::merge::{MergeTemplate, SenderFields};
use borcelle_mail::{MailAttachment, Mailbox};

/// Task contents kept between batches.
const CONTENT_CACHE: usize = 256;
/// Attachment bytes the cache keeps between batches, in per-message limits.
pub(super) const CACHED_MESSAGES_OF_ATTACHMENTS: u64 = 4;

/// What stands for the recipient's unsubscribe link in content rendered once for every
/// recipient (no `&`, `<`, `>` or quotes: HTML escaping leaves it as it is).
pub(super) const LINK_PLACEHOLDER: &str = "https://unsubscribe.borcelle.invalid/LINK";

/// A task's email and attachments, shared by all its recipients.
pub(super) struct Prepared {
    pub from_name: String,
    pub reply_to: Mailbox,
    pub sender: SenderFields,
    pub content: Content,
    /// Bulk mail (to more than one recipient, a reminder, a broadcast) carries the unsubscribe
    /// headers and link.
    pub unsubscribe: bool,
    pub attachments: Vec<MailAttachment>,
}

/// The content of a task's emails.
pub(super) enum Content {
    /// Without merge fields: rendered once; only the unsubscribe link (in place of
    /// [`LINK_PLACEHOLDER`]) differs between recipients.
    Fixed { subject: String, text: String, html: String },
    /// With merge fields: rendered for each recipient from these templates.
    Personal(Box<MergeTemplate>),
}

/// Prepared tasks kept between claimed batches, so that a task's attachments are read from the
/// store once, not once per recipient.
///
/// Memory stays bounded because the per-message limit bounds each task's attachments (checked
/// when the send is queued, and each object is read up to its recorded size only): the cache
/// keeps at most [`CACHED_MESSAGES_OF_ATTACHMENTS`] limits' worth between batches, one batch adds
/// at most `concurrency` tasks, and each in-flight send holds one task's attachments (plus its
/// encoded copy while it is being sent).
#[derive(Default)]
pub(super) struct ContentCache {
    pub entries: HashMap<Uuid, Arc<Prepared>>,
    attachment_bytes: u64,
}

impl ContentCache {
    /// Before `incoming` new entries: if the cache is over its bounds, drops every entry the
    /// current batch does not need.
    pub fn make_room(&mut self, needed: &HashSet<Uuid>, incoming: usize, byte_budget: u64) {
        if self.entries.len() + incoming <= CONTENT_CACHE && self.attachment_bytes <= byte_budget {
            return;
        }
        self.entries.retain(|id, _| needed.contains(id));
        self.attachment_bytes = self.entries.values().map(|p| attachment_bytes(p)).sum();
    }

    pub fn insert(&mut self, id: Uuid, prepared: Prepared) {
        self.attachment_bytes += attachment_bytes(&prepared);
        if let Some(old) = self.entries.insert(id, Arc::new(prepared)) {
            self.attachment_bytes -= attachment_bytes(&old);
        }
    }
}

fn attachment_bytes(prepared: &Prepared) -> u64 {
    prepared.attachments.iter().map(|a| a.bytes.len() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(bytes: usize) -> Prepared {
        Prepared {
            from_name: String::new(),
            reply_to: Mailbox { name: None, email: String::new() },
            sender: SenderFields { name: String::new(), email: String::new() },
            content: Content::Fixed { subject: String::new(), text: String::new(), html: String::new() },
            unsubscribe: false,
            attachments: vec![MailAttachment {
                filename: "f".into(),
                content_type: "application/pdf".into(),
                bytes: vec![0; bytes].into(),
            }],
        }
    }

    #[test]
    fn over_its_byte_budget_the_cache_keeps_only_what_the_batch_needs() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut cache = ContentCache::default();
        cache.insert(a, prepared(60));
        cache.insert(b, prepared(60));
        cache.make_room(&HashSet::from([a]), 1, 200);
        assert_eq!(cache.entries.len(), 2, "within budget: nothing dropped");
        cache.insert(c, prepared(100));
        cache.make_room(&HashSet::from([a]), 1, 200);
        assert_eq!(cache.entries.keys().collect::<Vec<_>>(), vec![&a], "over budget: only the needed task stays");
        assert_eq!(cache.attachment_bytes, 60);
    }
}
