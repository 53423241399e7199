//! The dev outbox's storage.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboxMessage {
    pub id: Uuid,
    pub message_id: String,
    pub from_address: String,
    pub to_address: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    /// The email's headers as sent (`Name: value` lines), MIME structure aside.
    pub headers: String,
    pub created_at: DateTime<Utc>,
}

/// A message kept instead of sent.
pub struct NewOutboxMessage<'a> {
    pub id: Uuid,
    pub message_id: &'a str,
    pub from_address: &'a str,
    pub to_address: &'a str,
    pub to_name: Option<&'a str>,
    pub subject: &'a str,
    pub text_body: &'a str,
    pub html_body: &'a str,
    pub headers: &'a str,
}

/// Keeps a message; one already kept under its Message-ID (a send repeated after a crash) is not
/// kept twice.
pub async fn insert(db: impl PgExecutor<'_>, email: &NewOutboxMessage<'_>) -> crate::Result<()> {
    sqlx::query!(
        "INSERT INTO outbox (id, message_id, from_address, to_address, to_name, subject, text_body, html_body, headers)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (message_id) DO NOTHING",
        email.id,
        email.message_id,
        email.from_address,
        email.to_address,
        email.to_name,
        email.subject,
        email.text_body,
        email.html_body,
        email.headers
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The newest messages first, optionally only those to one address.
pub async fn list(db: impl PgExecutor<'_>, to: Option<&str>, limit: i64) -> crate::Result<Vec<OutboxMessage>> {
    sqlx::query_as!(
        OutboxMessage,
        "SELECT id, message_id, from_address, to_address, to_name, subject, text_body, html_body, headers, created_at
         FROM outbox WHERE ($1::text IS NULL OR to_address = $1) ORDER BY created_at DESC, id DESC LIMIT $2",
        to,
        limit
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> crate::Result<Option<OutboxMessage>> {
    sqlx::query_as!(
        OutboxMessage,
        "SELECT id, message_id, from_address, to_address, to_name, subject, text_body, html_body, headers, created_at
         FROM outbox WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}
