//! Filing what came back. One arrival is kept durably before anyone is told it was accepted: its
//! raw bytes go to attachment storage (a key made of its content, so a retried delivery writes
//! the same object), then one transaction stores the inbound row, its attachments' list, what a
//! delivery report or an unsubscribe request changes in the ledger and the suppression list, and
//! the owner's notification. Only after the commit does the SMTP receiver answer `250` and the
//! owner's pages hear of it. The same message delivered again (a client that retried after a lost
//! answer) is recognised by its `Message-ID` (or its bytes) and filed once.

use std::time::Instant;

use borcelle_store::messages::{self, Feedback};
use borcelle_store::{Owner, PgPool, inbound, notifications};
use bytes::Bytes;
use data_encoding::HEXLOWER;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::addresses::{Addresses, Kind};
use super::read::{self, MailKind, Read};
use crate::events::{Envelope, EventBus, InboundNotice, LiveEvent};
use crate::storage::{Store, StoreError};

/// Messages larger than this are read on a blocking thread (a large one takes milliseconds).
const READ_INLINE_MAX: usize = 256 * 1024;

/// One message as it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// `MAIL FROM` (empty for a delivery report: the null sender).
    pub envelope_from: String,
    /// The addresses it was accepted for, checked (kind and ledger row).
    pub recipients: Vec<(Kind, Uuid)>,
    /// The message as received. With no recipients (MailJet Parse, to an address that is not one
    /// of ours), its `In-Reply-To`/`References` find the row.
    pub raw: Bytes,
    /// `smtp` or `mailjet`.
    pub via: &'static str,
}

/// What filing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// Stored under this id, as this kind.
    Stored { id: Uuid, kind: &'static str },
    /// The owner had it already: nothing changed.
    Duplicate,
}

/// Why an arrival could not be filed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No message of this installation has the address (its row was deleted, or no address
    /// named one): refused for good.
    #[error("no message of this server has this address")]
    Unknown,
    /// Storage or the database failed: the sender should try again later.
    #[error("keeping the message failed: {0}")]
    Storage(#[from] StoreError),
    #[error("filing the message failed: {0}")]
    Database(#[from] borcelle_store::Error),
}

impl FileError {
    /// Whether a later attempt may succeed (a `4xx` answer rather than `5xx`).
    pub fn is_temporary(&self) -> bool {
        !matches!(self, FileError::Unknown)
    }
}

/// Files what the receiver (or a provider's webhook) accepted.
#[derive(Clone)]
pub struct Inbox {
    pub db: PgPool,
    pub store: Store,
    pub events: EventBus,
    pub addresses: Addresses,
}

impl Inbox {
    /// Keeps and files one arrival (see the module's description).
    pub async fn file(&self, arrival: Arrival) -> Result<Filed, FileError> {
        let started = Instant::now();
        let (kind, row_id) = match arrival.recipients.first() {
            Some(&(kind, row)) => (kind, Some(row)),
            None => (Kind::Reply, None),
        };
        let id = Uuid::now_v7();
        let url = move |part: u32| format!("/api/v1/replies/{id}/files/{part}");
        let raw = arrival.raw.clone();
        let read = if raw.len() <= READ_INLINE_MAX {
            read::read(&raw, &url)
        } else {
            tokio::task::spawn_blocking(move || read::read(&raw, &url)).await.unwrap_or_default()
        };
        let row = match row_id {
            Some(row) => inbound::ledger_row(&self.db, row).await?,
            None => inbound::ledger_row_by_message_ids(&self.db, &read.refers_to).await?,
        };
        let row = row.ok_or(FileError::Unknown)?;
        let kind = classify(kind, &read);
        let digest = HEXLOWER.encode(&Sha256::digest(&arrival.raw));
        let dedup_key = match &read.message_id {
            Some(message_id) if message_id.len() > 2 => format!("id:{message_id}"),
            _ => format!("sha256:{digest}"),
        };
        let raw_key = format!("inbound/{}/{digest}.eml", row.owner_id);
        self.store.put(&raw_key, "message/rfc822", arrival.raw.clone()).await?;

        let from_other = !read.from_email.is_empty() && !read.from_email.eq_ignore_ascii_case(&row.to_email);
        let new = inbound::NewInbound {
            id,
            owner_id: row.owner_id,
            ledger_id: Some(row.id),
            contact_id: row.contact_id,
            kind,
            dedup_key,
            envelope_from: arrival.envelope_from.chars().take(320).collect(),
            from_email: read.from_email.chars().take(320).collect(),
            from_name: read.from_name.clone(),
            from_other,
            subject: read.subject.clone(),
            body_text: read.text.clone(),
            quoted_text: read.quoted.clone(),
            body_html: read.html.clone(),
            header_message_id: read.message_id.clone().map(|m| m.chars().take(500).collect()),
            raw_key,
            raw_size: arrival.raw.len() as i64,
            parsed: read.parsed,
            dsn_status: read.dsn.as_ref().map(|d| d.status.clone()),
            dsn_diagnostic: read.dsn.as_ref().and_then(|d| d.diagnostic.clone()),
            received_via: arrival.via,
        };
        let files: Vec<inbound::InboundAttachment> = read
            .files
            .iter()
            .map(|f| inbound::InboundAttachment {
                part: i32::try_from(f.part).unwrap_or(i32::MAX),
                filename: f.filename.clone(),
                content_type: f.content_type.chars().take(255).collect(),
                size: f.size as i64,
                content_id: f.content_id.clone(),
            })
            .collect();

        let mut tx = self.db.begin().await.map_err(borcelle_store::Error::from)?;
        if inbound::insert(&mut tx, &new, &files).await?.is_none() {
            tx.rollback().await.map_err(borcelle_store::Error::from)?;
            tracing::info!(owner = %row.owner_id, message = %row.id, "a message received again was filed already");
            return Ok(Filed::Duplicate);
        }
        let feedback = match (kind, &read.dsn) {
            ("bounce", Some(dsn)) if dsn.failed() => Some(Feedback {
                ledger_id: Some(row.id),
                provider_id: None,
                bounced: true,
                suppress: dsn.hard().then_some("hard_bounce"),
                detail: match &dsn.diagnostic {
                    Some(diagnostic) => format!("bounced ({}): {diagnostic}", dsn.status),
                    None => format!("bounced ({})", dsn.status),
                },
            }),
            ("unsubscribe", _) => Some(Feedback {
                ledger_id: Some(row.id),
                provider_id: None,
                bounced: false,
                suppress: Some("unsubscribed"),
                detail: "unsubscribed by email (List-Unsubscribe)".to_owned(),
            }),
            _ => None,
        };
        if let Some(feedback) = feedback {
            messages::apply_feedback(&mut *tx, &[feedback]).await?;
        }
        let who = read.from_name.clone().filter(|n| !n.is_empty()).or_else(|| row.contact_name.clone());
        let who = who.unwrap_or_else(|| read.from_email.clone());
        let notification = if kind == "reply" {
            // A personalised subject is a template: the answer's own subject says it as sent.
            let answered = if row.subject.contains("{{") {
                let subject = read.subject.trim();
                let bare =
                    subject.get(..3).filter(|re| re.eq_ignore_ascii_case("re:")).map_or(subject, |_| &subject[3..]);
                bare.trim().to_owned()
            } else {
                row.subject.clone()
            };
            let title = format!("{who} replied to “{answered}”");
            let body: String = read.text.chars().take(200).collect();
            let data = serde_json::json!({"inbound_id": id, "contact_id": row.contact_id, "message_id": row.id});
            Some(notifications::insert(&mut *tx, Owner::new(row.owner_id), "reply", &title, &body, &data).await?)
        } else {
            None
        };
        tx.commit().await.map_err(borcelle_store::Error::from)?;

        let notice = InboundNotice {
            inbound_id: id,
            contact_id: row.contact_id,
            message_id: Some(row.id),
            kind: kind.to_owned(),
            from: who,
            subject: read.subject.clone(),
        };
        self.events.publish(Envelope::to_user(row.owner_id, &LiveEvent::Inbound(notice))).await;
        if let Some(notification) = notification {
            self.events.publish(Envelope::to_user(row.owner_id, &LiveEvent::notification(notification))).await;
        }
        tracing::info!(
            inbound = %id, owner = %row.owner_id, message = %row.id, kind, bytes = arrival.raw.len(),
            ms = started.elapsed().as_secs_f64() * 1000.0, "filed inbound mail"
        );
        Ok(Filed::Stored { id, kind })
    }
}

/// The kind an arrival is filed as, from the address it came to and what it says it is.
fn classify(address: Kind, read: &Read) -> &'static str {
    if address == Kind::Unsubscribe {
        return "unsubscribe";
    }
    if !read.parsed {
        return "report";
    }
    match (read.kind(), &read.dsn) {
        (MailKind::Report, Some(_)) => "bounce",
        (MailKind::Report, None) => "report",
        (MailKind::AutoReply, _) => "auto_reply",
        // A person writing to the envelope sender rather than to Reply-To is unusual, but it is
        // still a person.
        (MailKind::Reply, _) => "reply",
    }
}
