//! Listing a user's contacts: one page at a time in keyset order, sorted and optionally filtered
//! by tag or by text, with the cursor that resumes after a page.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Contact, like_escape};
use crate::Owner;

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

const COLUMNS: &str = "id, name, email, phone, company, address, tax_id, tags, notes, created_at, updated_at";

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
