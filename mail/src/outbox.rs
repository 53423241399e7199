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
            let kept = NewOutboxMessage {
                id,
                message_id: &email.message_id,
                from_address: &email.from.email,
                to_address: &email.to.email,
                to_name: email.to.name.as_deref(),
                subject: &email.subject,
                text_body: &email.text,
                html_body: &email.html,
            };
            borcelle_store::outbox::insert(&self.db, &kept)
                .await
                .map_err(|err| MailError::Transient(format!("storing in the outbox: {err}")))?;
            Ok(Delivery { provider_id: id.to_string() })
        })
    }
}
