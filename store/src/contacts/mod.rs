//! Contacts. Every query is scoped by owner: another user's id is simply not found.

mod autocomplete;
mod bulk;
mod list;
mod page_json;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::Owner;

pub use autocomplete::{APPROXIMATE, PREFIXES, Suggestion, autocomplete};
pub use bulk::{
    LastActivity, Selection, add_tag, count_selected, delete_selected, last_activity, remove_tag, selected_ids,
};
pub use list::{After, ListError, ListQuery, Listing, Page, Sort, SortKey, count, list, page, page_sql};

/// A contact's fields, checked and normalised (see the engine's contact rules), ready to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactFields {
    pub name: String,
    /// What personalised mail greets the contact by (`{{ contact.first_name }}`).
    pub first_name: Option<String>,
    pub last_name: Option<String>,
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
    /// The display name, as in the recipient's address.
    pub name: String,
    /// For personalised mail (`{{ contact.first_name }}`); on creation without a first or last
    /// name, both are taken from `name`.
    pub first_name: Option<String>,
    pub last_name: Option<String>,
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
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
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
        "INSERT INTO contacts (id, owner_id, name, first_name, last_name, email, phone, company, address, tax_id,
                               tags, notes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (owner_id, email) DO NOTHING
         RETURNING id, name, first_name, last_name, email, phone, company, address, tax_id, tags, notes, created_at,
                   updated_at",
        id,
        owner.id(),
        f.name,
        f.first_name,
        f.last_name,
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

/// Which of these emails (lower case, as contacts keep them) are no contact's of the owner, in the
/// order given.
pub async fn unknown_emails(db: impl PgExecutor<'_>, owner: Owner, emails: &[String]) -> crate::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT given.email AS "email!"
           FROM unnest($2::text[]) WITH ORDINALITY AS given (email, position)
           WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.owner_id = $1 AND c.email = given.email)
           ORDER BY given.position"#,
        owner.id(),
        emails
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// Whether any of the owner's contacts has this tag (lower case, as contacts keep tags).
pub async fn tag_in_use(db: impl PgExecutor<'_>, owner: Owner, tag: &str) -> crate::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM contacts WHERE owner_id = $1 AND tags @> ARRAY[$2::text]) AS "used!""#,
        owner.id(),
        tag
    )
    .fetch_one(db)
    .await
    .map_err(crate::Error::from)
}

/// The owner's tags in alphabetical order, at most `limit` of them.
pub async fn tags(db: impl PgExecutor<'_>, owner: Owner, limit: i64) -> crate::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT tag AS "tag!" FROM contacts, unnest(tags) AS tag
           WHERE owner_id = $1 ORDER BY 1 LIMIT $2"#,
        owner.id(),
        limit
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
}

/// Whether the owner has any contact.
pub async fn any(db: impl PgExecutor<'_>, owner: Owner) -> crate::Result<bool> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM contacts WHERE owner_id = $1) AS "any!""#, owner.id())
        .fetch_one(db)
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
        "SELECT id, name, first_name, last_name, email, phone, company, address, tax_id, tags, notes, created_at,
                updated_at
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
        "SELECT id, name, first_name, last_name, email, phone, company, address, tax_id, tags, notes, created_at,
                updated_at
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
        "UPDATE contacts SET name = $3, first_name = $4, last_name = $5, email = $6, phone = $7, company = $8,
                address = $9, tax_id = $10, tags = $11, notes = $12, updated_at = now()
         WHERE owner_id = $1 AND id = $2
         RETURNING id, name, first_name, last_name, email, phone, company, address, tax_id, tags, notes, created_at,
                   updated_at",
        owner.id(),
        id,
        f.name,
        f.first_name,
        f.last_name,
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

/// A first and last name, either of which may be absent.
pub type NameParts = (Option<String>, Option<String>);

/// Creates or updates contacts by email (an import's valid rows). Empty optional fields keep what
/// an existing contact has. A contact created without a first or a last name gets both from
/// `split_name(name)`. Returns (created, updated).
///
/// Two statements: run it in a transaction, so that no one sees a new contact without the names
/// it is about to get.
///
/// Rows are written in email order whatever the file's order, so that concurrent imports of the
/// same addresses lock them in the same order and wait for each other instead of deadlocking.
pub async fn upsert_many(
    db: &mut PgConnection,
    owner: Owner,
    rows: &[ContactFields],
    split_name: impl Fn(&str) -> NameParts,
) -> crate::Result<(i64, i64)> {
    let mut names = Vec::with_capacity(rows.len());
    let mut first_names: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut last_names: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut emails = Vec::with_capacity(rows.len());
    let mut phones: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut companies: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut addresses: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut tax_ids: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut tags = Vec::with_capacity(rows.len());
    let mut notes = Vec::with_capacity(rows.len());
    for row in rows {
        names.push(row.name.clone());
        first_names.push(row.first_name.clone());
        last_names.push(row.last_name.clone());
        emails.push(row.email.clone());
        phones.push(row.phone.clone());
        companies.push(row.company.clone());
        addresses.push(row.address.clone());
        tax_ids.push(row.tax_id.clone());
        tags.push(row.tags.join(","));
        notes.push(row.notes.clone());
    }
    // The names split for new contacts are written afterwards: in `ON CONFLICT DO UPDATE` only the
    // proposed row is known, and it could not tell a split name (keep the existing contact's) from
    // one the file gives (write it).
    let upserted = sqlx::query!(
        "WITH upserted AS (
             INSERT INTO contacts (id, owner_id, name, first_name, last_name, email, phone, company, address, tax_id,
                                   tags, notes)
             SELECT gen_random_uuid(), $1, r.name, r.first_name, r.last_name, r.email, r.phone, r.company, r.address,
                    r.tax_id, coalesce(string_to_array(nullif(r.tags, ''), ','), '{}'), r.notes
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::text[], $10::text[], $11::text[])
                  AS r(name, first_name, last_name, email, phone, company, address, tax_id, tags, notes)
             ORDER BY r.email COLLATE \"C\"
             ON CONFLICT (owner_id, email) DO UPDATE SET
                 name = EXCLUDED.name,
                 first_name = coalesce(EXCLUDED.first_name, contacts.first_name),
                 last_name = coalesce(EXCLUDED.last_name, contacts.last_name),
                 phone = coalesce(EXCLUDED.phone, contacts.phone),
                 company = coalesce(EXCLUDED.company, contacts.company),
                 address = coalesce(EXCLUDED.address, contacts.address),
                 tax_id = coalesce(EXCLUDED.tax_id, contacts.tax_id),
                 tags = CASE WHEN EXCLUDED.tags = '{}' THEN contacts.tags ELSE EXCLUDED.tags END,
                 notes = CASE WHEN EXCLUDED.notes = '' THEN contacts.notes ELSE EXCLUDED.notes END,
                 updated_at = now()
             RETURNING id, name, first_name, last_name, (xmax = 0) AS created
         ), unnamed AS (
             SELECT id, name FROM upserted WHERE created AND first_name IS NULL AND last_name IS NULL
         )
         SELECT (SELECT count(*) FROM upserted WHERE created) AS \"created!\",
                (SELECT count(*) FROM upserted WHERE NOT created) AS \"updated!\",
                (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM unnamed) AS \"unnamed_ids!\",
                (SELECT coalesce(array_agg(name ORDER BY id), '{}') FROM unnamed) AS \"unnamed_names!\"",
        owner.id(),
        &names,
        &first_names as &[Option<String>],
        &last_names as &[Option<String>],
        &emails,
        &phones as &[Option<String>],
        &companies as &[Option<String>],
        &addresses as &[Option<String>],
        &tax_ids as &[Option<String>],
        &tags,
        &notes
    )
    .fetch_one(&mut *db)
    .await?;

    let mut ids = Vec::with_capacity(upserted.unnamed_ids.len());
    let mut firsts: Vec<Option<String>> = Vec::with_capacity(upserted.unnamed_ids.len());
    let mut lasts: Vec<Option<String>> = Vec::with_capacity(upserted.unnamed_ids.len());
    for (id, name) in upserted.unnamed_ids.iter().zip(&upserted.unnamed_names) {
        let (first, last) = split_name(name);
        if first.is_some() || last.is_some() {
            ids.push(*id);
            firsts.push(first);
            lasts.push(last);
        }
    }
    if !ids.is_empty() {
        sqlx::query!(
            "UPDATE contacts c SET first_name = s.first_name, last_name = s.last_name
             FROM unnest($2::uuid[], $3::text[], $4::text[]) AS s(id, first_name, last_name)
             WHERE c.owner_id = $1 AND c.id = s.id",
            owner.id(),
            &ids,
            &firsts as &[Option<String>],
            &lasts as &[Option<String>]
        )
        .execute(&mut *db)
        .await?;
    }
    Ok((upserted.created, upserted.updated))
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
