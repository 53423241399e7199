//! Contacts. Every query is scoped by owner: another user's id is simply not found.

mod autocomplete;
mod list;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::Owner;

pub use autocomplete::{Suggestion, autocomplete};
pub use list::{After, ListError, ListQuery, Listing, Sort, SortKey, list};

/// A contact's fields, checked and normalised (see the engine's contact rules), ready to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactFields {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub address: Option<String>,
    pub tax_id: Option<String>,
    pub tags: Vec<String>,
    pub notes: String,
}

/// A contact as its owner sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Contact {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    /// E.164, like `+33612345678`.
    pub phone: Option<String>,
    pub company: Option<String>,
    pub address: Option<String>,
    pub tax_id: Option<String>,
    /// Lower case, without duplicates.
    pub tags: Vec<String>,
    pub notes: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl Contact {
    pub fn fields(&self) -> ContactFields {
        ContactFields {
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            company: self.company.clone(),
            address: self.address.clone(),
            tax_id: self.tax_id.clone(),
            tags: self.tags.clone(),
            notes: self.notes.clone(),
        }
    }
}

/// Inserts a contact; `Err(existing id)` when the owner already has a contact with that email.
pub async fn insert(
    db: &mut PgConnection,
    id: Uuid,
    owner: Owner,
    f: &ContactFields,
) -> crate::Result<Result<Contact, Uuid>> {
    let inserted = sqlx::query_as!(
        Contact,
        "INSERT INTO contacts (id, owner_id, name, email, phone, company, address, tax_id, tags, notes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (owner_id, email) DO NOTHING
         RETURNING id, name, email, phone, company, address, tax_id, tags, notes, created_at, updated_at",
        id,
        owner.id(),
        f.name,
        f.email,
        f.phone,
        f.company,
        f.address,
        f.tax_id,
        &f.tags,
        f.notes
    )
    .fetch_optional(&mut *db)
    .await?;
    match inserted {
        Some(contact) => Ok(Ok(contact)),
        None => Ok(Err(id_by_email(&mut *db, owner, &f.email).await?.unwrap_or(Uuid::nil()))),
    }
}

pub async fn id_by_email(db: impl PgExecutor<'_>, owner: Owner, email: &str) -> crate::Result<Option<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM contacts WHERE owner_id = $1 AND email = $2", owner.id(), email)
        .fetch_optional(db)
        .await
        .map_err(crate::Error::from)
}

/// How many of these ids are the owner's contacts.
pub async fn count_owned(db: impl PgExecutor<'_>, owner: Owner, ids: &[Uuid]) -> crate::Result<i64> {
    sqlx::query_scalar!("SELECT count(*) AS \"n!\" FROM contacts WHERE owner_id = $1 AND id = ANY($2)", owner.id(), ids)
        .fetch_one(db)
        .await
        .map_err(crate::Error::from)
}

pub async fn get(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<Option<Contact>> {
    sqlx::query_as!(
        Contact,
        "SELECT id, name, email, phone, company, address, tax_id, tags, notes, created_at, updated_at
         FROM contacts WHERE owner_id = $1 AND id = $2",
        owner.id(),
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// Locks a contact for a read-modify-write.
pub async fn get_for_update(db: &mut PgConnection, owner: Owner, id: Uuid) -> crate::Result<Option<Contact>> {
    sqlx::query_as!(
        Contact,
        "SELECT id, name, email, phone, company, address, tax_id, tags, notes, created_at, updated_at
         FROM contacts WHERE owner_id = $1 AND id = $2 FOR UPDATE",
        owner.id(),
        id
    )
    .fetch_optional(db)
    .await
    .map_err(crate::Error::from)
}

/// Writes all fields; `Err(existing id)` when the new email belongs to another of the owner's contacts.
pub async fn update(
    db: &mut PgConnection,
    owner: Owner,
    id: Uuid,
    f: &ContactFields,
) -> crate::Result<Result<Contact, Uuid>> {
    if let Some(other) = id_by_email(&mut *db, owner, &f.email).await?.filter(|other| *other != id) {
        return Ok(Err(other));
    }
    let contact = sqlx::query_as!(
        Contact,
        "UPDATE contacts SET name = $3, email = $4, phone = $5, company = $6, address = $7, tax_id = $8,
                tags = $9, notes = $10, updated_at = now()
         WHERE owner_id = $1 AND id = $2
         RETURNING id, name, email, phone, company, address, tax_id, tags, notes, created_at, updated_at",
        owner.id(),
        id,
        f.name,
        f.email,
        f.phone,
        f.company,
        f.address,
        f.tax_id,
        &f.tags,
        f.notes
    )
    .fetch_one(db)
    .await?;
    Ok(Ok(contact))
}

pub async fn delete(db: impl PgExecutor<'_>, owner: Owner, id: Uuid) -> crate::Result<bool> {
    let done = sqlx::query!("DELETE FROM contacts WHERE owner_id = $1 AND id = $2", owner.id(), id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// Creates or updates contacts by email in one statement (an import's valid rows). Empty optional
/// fields keep what an existing contact has. Returns (created, updated).
///
/// Rows are written in email order whatever the file's order, so that concurrent imports of the
/// same addresses lock them in the same order and wait for each other instead of deadlocking.
pub async fn upsert_many(db: impl PgExecutor<'_>, owner: Owner, rows: &[ContactFields]) -> crate::Result<(i64, i64)> {
    let mut names = Vec::with_capacity(rows.len());
    let mut emails = Vec::with_capacity(rows.len());
    let mut phones: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut companies: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut addresses: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut tax_ids: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut tags = Vec::with_capacity(rows.len());
    let mut notes = Vec::with_capacity(rows.len());
    for row in rows {
        names.push(row.name.clone());
        emails.push(row.email.clone());
        phones.push(row.phone.clone());
        companies.push(row.company.clone());
        addresses.push(row.address.clone());
        tax_ids.push(row.tax_id.clone());
        tags.push(row.tags.join(","));
        notes.push(row.notes.clone());
    }
    let counts = sqlx::query!(
        "WITH upserted AS (
             INSERT INTO contacts (id, owner_id, name, email, phone, company, address, tax_id, tags, notes)
             SELECT gen_random_uuid(), $1, r.name, r.email, r.phone, r.company, r.address, r.tax_id,
                    coalesce(string_to_array(nullif(r.tags, ''), ','), '{}'), r.notes
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                  AS r(name, email, phone, company, address, tax_id, tags, notes)
             ORDER BY r.email COLLATE \"C\"
             ON CONFLICT (owner_id, email) DO UPDATE SET
                 name = EXCLUDED.name,
                 phone = coalesce(EXCLUDED.phone, contacts.phone),
                 company = coalesce(EXCLUDED.company, contacts.company),
                 address = coalesce(EXCLUDED.address, contacts.address),
                 tax_id = coalesce(EXCLUDED.tax_id, contacts.tax_id),
                 tags = CASE WHEN EXCLUDED.tags = '{}' THEN contacts.tags ELSE EXCLUDED.tags END,
                 notes = CASE WHEN EXCLUDED.notes = '' THEN contacts.notes ELSE EXCLUDED.notes END,
                 updated_at = now()
             RETURNING (xmax = 0) AS created
         )
         SELECT count(*) FILTER (WHERE created) AS \"created!\", count(*) FILTER (WHERE NOT created) AS \"updated!\"
         FROM upserted",
        owner.id(),
        &names,
        &emails,
        &phones as &[Option<String>],
        &companies as &[Option<String>],
        &addresses as &[Option<String>],
        &tax_ids as &[Option<String>],
        &tags,
        &notes
    )
    .fetch_one(db)
    .await?;
    Ok((counts.created, counts.updated))
}

/// Escapes `%`, `_` and `\\` so user text matches literally in a LIKE pattern.
pub fn like_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(like_escape("50%_off\\"), "50\\%\\_off\\\\");
    }
}
