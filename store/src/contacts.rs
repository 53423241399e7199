//! Contacts. Every query is scoped by owner: another user's id is simply not found.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::Owner;

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

/// How a list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Created,
    Updated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// Where a page starts: strictly after the row with this sort value and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    /// The sort value of the last row of the previous page, as [`sort_value`] gives it.
    pub key: String,
    pub id: Uuid,
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

const COLUMNS: &str = "id, name, email, phone, company, address, tax_id, tags, notes, created_at, updated_at";

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

/// What a list asks for.
pub struct ListQuery<'a> {
    pub sort: Sort,
    pub limit: i64,
    pub after: Option<&'a After>,
    /// Matches name, email or company, anywhere (lower-cased).
    pub search: Option<&'a str>,
    pub tag: Option<&'a str>,
}

/// One page in keyset order: rows strictly after the cursor, so inserts never shift or repeat rows.
/// Returns up to `limit + 1` rows; the extra one tells the caller there is a next page.
pub async fn list(db: impl PgExecutor<'_>, owner: Owner, query: &ListQuery<'_>) -> Result<Vec<Contact>, ListError> {
    let (key, by_time) = match query.sort.key {
        SortKey::Name => ("lower(name)", false),
        SortKey::Created => ("created_at", true),
        SortKey::Updated => ("updated_at", true),
    };
    let (cmp, dir) = if query.sort.descending { ("<", "DESC") } else { (">", "ASC") };
    let mut sql: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS} FROM contacts WHERE owner_id = "));
    if query.tag.is_none() && query.search.is_none() {
        // Plain paging has one good plan whoever asks (the owner's index, in order, up to the
        // limit), so the owner is hidden from the planner too (see the cursor below): else an
        // owner with many more contacts than most makes a plan of its own look cheaper than the
        // cached one, and each of its pages is planned afresh. Filtered lists show the planner
        // everything, since the best plan there depends on what is asked.
        sql.push("(SELECT ").push_bind(owner).push(")");
    } else {
        sql.push_bind(owner);
    }
    if let Some(tag) = query.tag {
        sql.push(" AND tags @> ARRAY[").push_bind(tag.to_lowercase()).push("]::text[]");
    }
    if let Some(search) = query.search {
        sql.push(" AND search LIKE ")
            .push_bind(format!("%{}%", like_escape(&search.to_lowercase())))
            .push(" ESCAPE '\\'");
    }
    if let Some(cursor) = query.after {
        // The cursor's values reach the index as sub-selects, which the planner cannot see into:
        // every page then costs the same to it, so PostgreSQL settles on one cached (generic)
        // plan for the statement. With the values visible it kept planning each page afresh,
        // since early pages look cheaper than the cached plan, and planning took a third of
        // the database's time per page.
        sql.push(format!(" AND ({key}, id) {cmp} ((SELECT "));
        if by_time {
            let at: DateTime<Utc> = cursor.key.parse().map_err(|_| ListError::BadCursor)?;
            sql.push_bind(at);
        } else {
            sql.push_bind(cursor.key.clone());
        }
        sql.push("), (SELECT ").push_bind(cursor.id).push("))");
    }
    // The LIMIT is written into the statement (an integer, never user text): with it known, the
    // plan PostgreSQL caches for this statement is as cheap as one made for each call, so it is
    // planned once per connection rather than at every page.
    sql.push(format!(" ORDER BY {key} {dir}, id {dir} LIMIT {}", query.limit + 1));
    // Collected into room for the whole page at once rather than a vector grown row by row.
    let mut rows = Vec::with_capacity(usize::try_from(query.limit + 1).unwrap_or_default());
    let mut stream = sql.build_query_as::<Contact>().fetch(db);
    while let Some(row) = stream.try_next().await? {
        rows.push(row);
    }
    Ok(rows)
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("the cursor does not match this list")]
    BadCursor,
    #[error(transparent)]
    Db(#[from] crate::Error),
}

impl From<sqlx::Error> for ListError {
    fn from(err: sqlx::Error) -> Self {
        ListError::Db(err.into())
    }
}

/// The sort value of a row, as a cursor stores it.
pub fn sort_value(contact: &Contact, sort: Sort) -> String {
    match sort.key {
        SortKey::Name => contact.name.to_lowercase(),
        SortKey::Created => contact.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        SortKey::Updated => contact.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    }
}

/// An autocomplete suggestion.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suggestion {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub company: Option<String>,
}

/// How many suggestions autocomplete answers.
const SUGGESTIONS: usize = 10;

/// Prefix matches ($2: the prefix pattern), best first: names that start with the input, then
/// emails and companies that do, then contacts with any word (of name, email or company) that
/// does. Each group is read in order from a btree range with its own LIMIT, so the cost does not
/// grow with the number of matches; only the ≤ 50 candidates are ranked.
const PREFIXES: &str = "WITH hits AS (
         (SELECT id, 0 AS rank FROM contacts
          WHERE owner_id = $1 AND lower(name) LIKE $2 ESCAPE '\\'
          ORDER BY lower(name) USING ~<~, id LIMIT 10)
         UNION ALL
         (SELECT id, 1 FROM contacts
          WHERE owner_id = $1 AND email LIKE $2 ESCAPE '\\' ORDER BY email USING ~<~ LIMIT 10)
         UNION ALL
         (SELECT id, 1 FROM contacts
          WHERE owner_id = $1 AND lower(company) LIKE $2 ESCAPE '\\' ORDER BY lower(company) USING ~<~ LIMIT 10)
         UNION ALL
         (SELECT contact_id, 2 FROM contact_words
          WHERE owner_id = $1 AND word LIKE $2 ESCAPE '\\' ORDER BY word, contact_id LIMIT 20)
     )
     SELECT c.id, c.name, c.email, c.company
     FROM (SELECT id, min(rank) AS rank FROM hits GROUP BY id) h
     JOIN contacts c ON c.id = h.id AND c.owner_id = $1
     ORDER BY h.rank, lower(c.name), c.id
     LIMIT 10";

/// Approximate matches ($2 as typed, $3 the infix pattern): the owner's ten words most like the
/// input (trigram word similarity over `pg_trgm.word_similarity_threshold`, or plain similarity
/// over `pg_trgm.similarity_threshold`, so that a typo or a swapped pair of letters still finds
/// the word; or containing it), then up to ten contacts with each of them. The words come from the
/// owner's vocabulary (distinct words), not from every contact, so a common word costs no more
/// than a rare one.
const APPROXIMATE: &str = "WITH near AS (
         SELECT word, greatest(word_similarity($2, word), similarity($2, word),
                               CASE WHEN word LIKE $3 ESCAPE '\\' THEN 0.5 ELSE 0 END) AS score,
                similarity($2, word) AS closeness
         FROM contact_vocabulary
         WHERE owner_id = $1 AND ($2 <% word OR $2 % word OR word LIKE $3 ESCAPE '\\')
         ORDER BY score DESC, closeness DESC, word LIMIT 10
     )
     SELECT c.id, c.name, c.email, c.company
     FROM near n
     CROSS JOIN LATERAL (SELECT contact_id FROM contact_words w WHERE w.owner_id = $1 AND w.word = n.word
                         ORDER BY contact_id LIMIT 10) m
     JOIN contacts c ON c.id = m.contact_id AND c.owner_id = $1
     ORDER BY n.score DESC, n.closeness DESC, lower(c.name), c.id
     LIMIT 20";

/// The owner's ten best matches for what was typed (lower-cased, trimmed, non-empty).
///
/// Prefixes first (of the name, then of the email or company, then of any word in them); from
/// three characters on, when fewer than ten contacts match a prefix, words like the input follow
/// (typos and fragments). Every part reads a bounded number of rows, whatever the number of
/// matches. The statements are not kept prepared: a cached generic plan cannot turn a LIKE pattern
/// it does not know yet into an index range, and would read all of the owner's contacts.
pub async fn autocomplete(db: &PgPool, owner: Owner, typed: &str) -> crate::Result<Vec<Suggestion>> {
    let prefix = format!("{}%", like_escape(typed));
    let mut found: Vec<Suggestion> =
        sqlx::query_as(PREFIXES).bind(owner).bind(&prefix).persistent(false).fetch_all(db).await?;
    if found.len() == SUGGESTIONS || typed.chars().count() < 3 {
        return Ok(found);
    }
    let anywhere = format!("%{}%", like_escape(typed));
    let near: Vec<Suggestion> =
        sqlx::query_as(APPROXIMATE).bind(owner).bind(typed).bind(anywhere).persistent(false).fetch_all(db).await?;
    for suggestion in near {
        if found.len() == SUGGESTIONS {
            break;
        }
        if !found.iter().any(|f| f.id == suggestion.id) {
            found.push(suggestion);
        }
    }
    Ok(found)
}

/// Creates or updates contacts by email in one statement (an import's valid rows). Empty optional
/// fields keep what an existing contact has. Returns (created, updated).
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

/// A chunk of the owner's contacts in (lower(name), id) order after `after`, for streaming exports.
pub async fn export_chunk(
    db: impl PgExecutor<'_>,
    owner: Owner,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> crate::Result<Vec<Contact>> {
    let (key, id) = after.map_or((None, None), |(k, i)| (Some(k.as_str()), Some(*i)));
    sqlx::query_as!(
        Contact,
        "SELECT id, name, email, phone, company, address, tax_id, tags, notes, created_at, updated_at
         FROM contacts
         WHERE owner_id = $1 AND ($2::text IS NULL OR (lower(name), id) > ($2, $3::uuid))
         ORDER BY lower(name), id LIMIT $4",
        owner.id(),
        key,
        id,
        limit
    )
    .fetch_all(db)
    .await
    .map_err(crate::Error::from)
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
