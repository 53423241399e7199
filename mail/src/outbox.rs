//! The dev outbox: mail is stored in PostgreSQL and listed on the outbox page, never sent.

use borcelle_store::PgPool;
use borcelle_store::outbox::NewOutboxMessage;
use futures::future::BoxFuture;
use uuid::Uuid;

use super::{Delivery, MailError, MailTransport, OutgoingEmail};

pub struct OutboxTransport {
    db: PgPool,
}

impl OutboxTransport {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }
}

impl MailTransport for OutboxTransport {
    fn name(&self) -> &'static str {
        "outbox"
    }

    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Result<Delivery, MailError>> {
        Box::pin(async move {
            let id = Uuid::now_v7();
            let headers = headers(email);
            let kept = NewOutboxMessage {
                id,
                message_id: &email.message_id,
                from_address: &email.from.email,
                to_address: &email.to.email,
                to_name: email.to.name.as_deref(),
                subject: &email.subject,
                text_body: &email.text,
                html_body: &email.html,
                headers: &headers,
            };
            borcelle_store::outbox::insert(&self.db, &kept)
                .await
                .map_err(|err| MailError::Transient(format!("storing in the outbox: {err}")))?;
            if email.ledger_id.is_none() {
                // Account mail (verification, password reset): whoever runs the server reads its
                // links here, as with Django's console backend; the outbox page is for admins.
                let links: Vec<&str> = email
                    .text
                    .split_whitespace()
                    .filter(|word| word.starts_with("http://") || word.starts_with("https://"))
                    .collect();
                tracing::info!(
                    to = %email.to.email,
                    subject = %email.subject,
                    "dev outbox: account email kept, not sent; its links: {}",
                    links.join(" ")
                );
            }
            Ok(Delivery { provider_id: id.to_string() })
        })
    }
}

/// The headers the email would carry, one `Name: value` line each (what the outbox page shows).
fn headers(email: &OutgoingEmail) -> String {
    let mailbox = |m: &crate::Mailbox| match &m.name {
        Some(name) => format!("\"{}\" <{}>", crate::header_line(name), m.email),
        None => format!("<{}>", m.email),
    };
    let mut lines = vec![format!("From: {}", mailbox(&email.from)), format!("To: {}", mailbox(&email.to))];
    if let Some(reply_to) = &email.reply_to {
        lines.push(format!("Reply-To: {}", mailbox(reply_to)));
    }
    lines.push(format!("Subject: {}", crate::header_line(&email.subject)));
    lines.push(format!("Message-ID: {}", email.message_id));
    if let Some(unsubscribe) = &email.unsubscribe {
        lines.push(format!("List-Unsubscribe: {}", unsubscribe.header()));
        lines.push(format!("List-Unsubscribe-Post: {}", crate::Unsubscribe::POST));
    }
    lines.join("\n")
}
