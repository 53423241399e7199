//! Mail that came back: replies, automatic answers, delivery reports and unsubscribe requests,
//! each filed under the ledger row its address named (see the engine's `inbound` module).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use sqlx::types::Json;
use uuid::Uuid;

use crate::Owner;

/// The ledger row an address names, with what filing needs of it.
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub to_email: String,
    /// The contact's name now (else the name the message was sent to).
    pub contact_name: Option<String>,
    /// The subject of the send (its task's; a personalised one shows its template).
    pub subject: String,
    pub message_id: String,
}

/// The ledger row with this id, whoever owns it (the caller holds a signed token naming it).
pub async fn ledger_row(db: impl PgExecutor<'_>, id: Uuid) -> crate::Result<Option<LedgerRow>> {
    sqlx::query_as!(
        LedgerRow,
        r#"SELECT m.id, m.owner_id, m.contact_id, m.to_email, coalesce(c.name, m.to_name) AS contact_name,
                  t.subject, m.message_id
           FROM ledger m JOIN tasks t ON t.id = m.task_id LEFT JOIN contacts c ON c.id = m.contact_id
           WHERE m.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// The ledger row a `Message-ID` Borcelle wrote names: every one is `<` + the row's id as 32 hex
/// digits + `@` + the domain + `>` (the ledger's inserts build it so). Any other id names none.
pub fn ledger_id_of(message_id: &str) -> Option<Uuid> {
    let (local, _domain) = message_id.strip_prefix('<')?.strip_suffix('>')?.split_once('@')?;
    if local.len() != 32 {
        return None;
    }
    Uuid::try_parse(local).ok()
}

/// The ledger row one of these `Message-ID`s (angle brackets included) was sent with: what a
/// reply's `In-Reply-To` and `References` name. The newest match wins.
pub async fn ledger_row_by_message_ids(db: impl PgExecutor<'_>, ids: &[String]) -> crate::Result<Option<LedgerRow>> {
    let rows: Vec<Uuid> = ids.iter().filter_map(|id| ledger_id_of(id)).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    sqlx::query_as!(
        LedgerRow,
        r#"SELECT m.id, m.owner_id, m.contact_id, m.to_email, coalesce(c.name, m.to_name) AS contact_name,
                  t.subject, m.message_id
           FROM ledger m JOIN tasks t ON t.id = m.task_id LEFT JOIN contacts c ON c.id = m.contact_id
           WHERE m.id = ANY($1) AND m.message_id = ANY($2)
           ORDER BY m.created_at DESC LIMIT 1"#,
        &rows,
        ids
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// An inbound message ready to store.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub ledger_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    /// `reply`, `auto_reply`, `bounce`, `unsubscribe` or `report`.
    pub kind: &'static str,
    pub dedup_key: String,
    pub envelope_from: String,
    pub from_email: String,
    pub from_name: Option<String>,
    pub from_other: bool,
    pub subject: String,
    pub body_text: String,
    pub quoted_text: String,
    pub body_html: Option<String>,
    pub header_message_id: Option<String>,
    pub raw_key: String,
    pub raw_size: i64,
    pub parsed: bool,
    pub dsn_status: Option<String>,
    pub dsn_diagnostic: Option<String>,
    /// `smtp` or `mailjet`.
    pub received_via: &'static str,
}

/// A file an inbound message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboundAttachment {
    /// The MIME part's index: what the download URL names.
    pub part: i32,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    /// Set for an inline part the HTML shows (`cid:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
}

/// Stores an inbound message with its attachments. `None` when the owner has it already (the
/// same message delivered again): nothing is written then.
pub async fn insert(
    tx: &mut sqlx::PgConnection,
    new: &NewInbound,
    attachments: &[InboundAttachment],
) -> crate::Result<Option<DateTime<Utc>>> {
    let received = sqlx::query_scalar!(
        "INSERT INTO inbound_messages (id, owner_id, ledger_id, contact_id, kind, dedup_key, envelope_from, from_email,
             from_name, from_other, subject, body_text, quoted_text, body_html, header_message_id, raw_key, raw_size,
             parsed, dsn_status, dsn_diagnostic, received_via)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
         ON CONFLICT (owner_id, dedup_key) DO NOTHING
         RETURNING received_at",
        new.id,
        new.owner_id,
        new.ledger_id,
        new.contact_id,
        new.kind,
        new.dedup_key,
        new.envelope_from,
        new.from_email,
        new.from_name,
        new.from_other,
        new.subject,
        new.body_text,
        new.quoted_text,
        new.body_html,
        new.header_message_id,
        new.raw_key,
        new.raw_size,
        new.parsed,
        new.dsn_status,
        new.dsn_diagnostic,
        new.received_via
    )
    .fetch_optional(&mut *tx)
    .await?;
    if received.is_some() && !attachments.is_empty() {
        let parts: Vec<i32> = attachments.iter().map(|a| a.part).collect();
        let names: Vec<String> = attachments.iter().map(|a| a.filename.clone()).collect();
        let types: Vec<String> = attachments.iter().map(|a| a.content_type.clone()).collect();
        let sizes: Vec<i64> = attachments.iter().map(|a| a.size).collect();
        let cids: Vec<Option<String>> = attachments.iter().map(|a| a.content_id.clone()).collect();
        sqlx::query!(
            "INSERT INTO inbound_attachments (inbound_id, owner_id, part, filename, content_type, size, content_id)
             SELECT $1, $2, * FROM unnest($3::int4[], $4::text[], $5::text[], $6::int8[], $7::text[])",
            new.id,
            new.owner_id,
            &parts,
            &names,
            &types,
            &sizes,
            &cids as &[Option<String>]
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(received)
}

/// An inbound message as its owner sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboundMessage {
    pub id: Uuid,
    /// The message this answers or reports on.
    pub ledger_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    /// `reply`, `auto_reply`, `bounce`, `unsubscribe` or `report`.
    pub kind: String,
    pub from_email: String,
    pub from_name: Option<String>,
    /// The sender is not the contact's address.
    pub from_other: bool,
    pub subject: String,
    /// The new text (the quoted history apart, in `quoted_text`).
    pub body_text: String,
    pub quoted_text: String,
    /// Sanitised HTML, when the message had any.
    pub body_html: Option<String>,
    pub dsn_status: Option<String>,
    pub dsn_diagnostic: Option<String>,
    pub received_at: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<InboundAttachment>))]
    pub attachments: Json<Vec<InboundAttachment>>,
}

const INBOUND_COLUMNS: &str = "i.id, i.ledger_id, i.contact_id, i.kind, i.from_email, i.from_name, i.from_other,
     i.subject, i.body_text, i.quoted_text, i.body_html, i.dsn_status, i.dsn_diagnostic, i.received_at,
     coalesce((SELECT jsonb_agg(jsonb_build_object('part', a.part, 'filename', a.filename,
                  'content_type', a.content_type, 'size', a.size, 'content_id', a.content_id) ORDER BY a.part)
               FROM inbound_attachments a WHERE a.inbound_id = i.id), '[]'::jsonb) AS attachments";

/// The owner's inbound messages filed under a contact, newest first, before a keyset cursor.
pub async fn for_contact(
    db: impl PgExecutor<'_>,
    owner: Owner,
    contact: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> crate::Result<Vec<InboundMessage>> {
    let sql = format!(
        "SELECT {INBOUND_COLUMNS} FROM inbound_messages i
         WHERE i.owner_id = $1 AND i.contact_id = $2
           AND ($3::timestamptz IS NULL OR (i.received_at, i.id) < ($3, $4))
         ORDER BY i.received_at DESC, i.id DESC LIMIT $5"
    );
    sqlx::query_as::<_, InboundMessage>(sqlx::AssertSqlSafe(sql))
        .bind(owner.id())
        .bind(contact)
        .bind(before.map(|(at, _)| at))
        .bind(before.map(|(_, id)| id))
        .bind(limit)
        .fetch_all(db)
        .await
        .map_err(crate::Error::from)
}

/// One of the owner's inbound messages.
pub async fn get(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<Option<InboundMessage>> {
    let sql = format!("SELECT {INBOUND_COLUMNS} FROM inbound_messages i WHERE i.owner_id = $1 AND i.id = $2");
    sqlx::query_as::<_, InboundMessage>(sqlx::AssertSqlSafe(sql))
        .bind(owner.id())
        .bind(id)
        .fetch_optional(db)
        .await
        .map_err(crate::Error::from)
}

/// Where one of the owner's inbound messages keeps its raw bytes, with one of its attachments.
#[derive(Debug, Clone)]
pub struct StoredAttachment {
    pub raw_key: String,
    pub raw_size: i64,
    pub attachment: InboundAttachment,
}

/// An attachment of one of the owner's inbound messages (`None` for anyone else's).
pub async fn attachment(
    db: impl PgExecutor<'_>,
    owner: Owner,
    inbound: Uuid,
    part: i32,
) -> crate::Result<Option<StoredAttachment>> {
    let row = sqlx::query!(
        "SELECT i.raw_key, i.raw_size, a.part, a.filename, a.content_type, a.size, a.content_id
         FROM inbound_messages i JOIN inbound_attachments a ON a.inbound_id = i.id
         WHERE i.owner_id = $1 AND i.id = $2 AND a.part = $3",
        owner.id(),
        inbound,
        part
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| StoredAttachment {
        raw_key: r.raw_key,
        raw_size: r.raw_size,
        attachment: InboundAttachment {
            part: r.part,
            filename: r.filename,
            content_type: r.content_type,
            size: r.size,
            content_id: r.content_id,
        },
    }))
}

/// One entry of a contact's conversation, either direction.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationEntry {
    /// `outbound` (a ledger row) or `inbound`.
    pub direction: String,
    pub id: Uuid,
    /// When it was queued (outbound) or received (inbound).
    pub at: DateTime<Utc>,
    pub subject: String,
    /// Outbound: the ledger status; inbound: the kind (`reply`, `auto_reply`, `bounce`…).
    pub state: String,
    /// Outbound: the recipient; inbound: the sender.
    pub address: String,
    /// Inbound: the new text of the message (empty for outbound).
    pub text: String,
    /// Inbound: the message it answers.
    pub in_reply_to: Option<Uuid>,
}

/// A contact's conversation, both directions, newest first, before a keyset cursor.
pub async fn conversation(
    db: impl PgExecutor<'_>,
    owner: Owner,
    contact: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> crate::Result<Vec<ConversationEntry>> {
    sqlx::query_as!(
        ConversationEntry,
        r#"SELECT direction AS "direction!", id AS "id!", at AS "at!", subject AS "subject!", state AS "state!",
                  address AS "address!", text AS "text!", in_reply_to
           FROM (
               (SELECT 'outbound' AS direction, m.id, m.created_at AS at, t.subject, d.status AS state,
                       m.to_email AS address, '' AS text, NULL::uuid AS in_reply_to
                FROM ledger m JOIN deliveries d ON d.id = m.id JOIN tasks t ON t.id = m.task_id
                WHERE m.owner_id = $1 AND m.contact_id = $2
                  AND ($3::timestamptz IS NULL OR (m.created_at, m.id) < ($3, $4))
                ORDER BY m.created_at DESC, m.id DESC LIMIT $5)
               UNION ALL
               (SELECT 'inbound', i.id, i.received_at, i.subject, i.kind, i.from_email, i.body_text, i.ledger_id
                FROM inbound_messages i
                WHERE i.owner_id = $1 AND i.contact_id = $2
                  AND ($3::timestamptz IS NULL OR (i.received_at, i.id) < ($3, $4))
                ORDER BY i.received_at DESC, i.id DESC LIMIT $5)
           ) both_ways
           ORDER BY at DESC, id DESC LIMIT $5"#,
        owner.id(),
        contact,
        before.map(|(at, _)| at),
        before.map(|(_, id)| id),
        limit
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::ledger_id_of;

    proptest! {
        /// Any row id under any domain comes back from its Message-ID.
        #[test]
        fn a_ledger_message_id_names_its_row(bytes in any::<[u8; 16]>(), domain in "[^<>@]{1,40}") {
            let id = Uuid::from_bytes(bytes);
            prop_assert_eq!(ledger_id_of(&format!("<{}@{domain}>", id.simple())), Some(id));
        }

        /// What is not a Message-ID of the ledger's form names no row, and never panics.
        #[test]
        fn other_message_ids_name_no_row(text in "\\PC{0,60}") {
            let parsed = ledger_id_of(&text);
            if let Some(id) = parsed {
                prop_assert!(text.to_ascii_lowercase().starts_with(&format!("<{}@", id.simple())), "{text}");
            }
        }
    }

    #[test]
    fn ids_of_other_forms_name_no_row() {
        for text in [
            "",
            "<>",
            "<@>",
            "<sent-1@borcelle.test>",
            "<0123456789abcdef0123456789abcdef>",
            "0123456789abcdef0123456789abcdef@x",
            "<0123456789abcdef-0123456789abcdef@x>",
            "<01234567-89ab-cdef-0123-456789abcdef@x>",
        ] {
            assert_eq!(ledger_id_of(text), None, "{text}");
        }
    }
}
