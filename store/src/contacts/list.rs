//! Listing a user's contacts: one page at a time in keyset order, sorted and optionally filtered
//! by tag or by text, with the cursor that resumes after a page.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{Contact, like_escape, page_json};
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
    /// The sort value of the last row of the previous page, as the database computed it
    /// (`lower(name)`, or the time in RFC 3339 with microseconds).
    pub key: String,
    pub id: Uuid,
}

/// One page of contacts, where the next one starts (`None` on the last page) and where the
/// previous one ends (`None` on the first).
#[derive(Debug)]
pub struct Listing {
    pub contacts: Vec<Contact>,
    pub next: Option<After>,
    /// The first row of this page: the page before ends just before it (a `backward` query
    /// from here).
    pub prev: Option<After>,
}

/// A page as PostgreSQL sent it: its contacts are written to JSON from the rows in place
/// ([`Page::write_json`]) or copied out ([`list`]).
#[derive(Debug)]
pub struct Page {
    rows: Vec<PgRow>,
    pub next: Option<After>,
    pub prev: Option<After>,
}

impl Page {
    /// How many contacts the page has.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the page's contacts as a JSON array into `out`: the same bytes as `serde_json` makes
    /// of the [`Contact`]s that [`list`] copies out, written straight from the rows' binary values.
    ///
    /// Decoding each value into a Rust type, then serialising it through serde, took between an
    /// eighth and a fifth of serve's CPU for a page of 50 (a type check and a decoder per value, a
    /// vector per row's tags, a timestamp turned into a date and back into text, every field name
    /// escaped again in every row). The columns' types are checked once a page: a column whose type is not
    /// what this writer reads fails the page with a decode error rather than writing wrong text.
    pub fn write_json(&self, out: &mut Vec<u8>) -> sqlx::Result<()> {
        if let Some(row) = self.rows.first() {
            page_json::check_columns(row)?;
        }
        out.push(b'[');
        for (n, row) in self.rows.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            page_json::write_contact(row, out)?;
        }
        out.push(b']');
        Ok(())
    }
}

/// A page's row as a [`Contact`], read by position in the order of [`COLUMNS`]: looking each of a
/// page's 700-odd values up by its column's name (what a derived `FromRow` does) took about 3 % of
/// serve's CPU. `a_listed_contact_has_every_field_where_it_was_stored` reads every field back.
fn contact(row: &PgRow) -> sqlx::Result<Contact> {
    Ok(Contact {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        first_name: row.try_get(2)?,
        last_name: row.try_get(3)?,
        email: row.try_get(4)?,
        phone: row.try_get(5)?,
        company: row.try_get(6)?,
        address: row.try_get(7)?,
        tax_id: row.try_get(8)?,
        tags: row.try_get(9)?,
        notes: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
    })
}

/// The cursor that a row of a page in `sort` ends or starts (`name_key` follows [`COLUMNS`]). By
/// name, it carries the sort key PostgreSQL ordered the row by: Rust's `to_lowercase` differs from
/// PostgreSQL's `lower` (`İ`, final `σ`), and a cursor made by one and compared by the other
/// skipped and repeated rows.
fn after(row: &PgRow, sort: Sort) -> sqlx::Result<After> {
    let time = |column: usize| -> sqlx::Result<String> {
        let at: DateTime<Utc> = row.try_get(column)?;
        Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    let key = match sort.key {
        SortKey::Name => row.try_get(13)?,
        SortKey::Created => time(11)?,
        SortKey::Updated => time(12)?,
    };
    Ok(After { key, id: row.try_get(0)? })
}

const COLUMNS: &str =
    "id, name, first_name, last_name, email, phone, company, address, tax_id, tags, notes, created_at, updated_at";

/// What a list asks for.
pub struct ListQuery<'a> {
    pub sort: Sort,
    pub limit: i64,
    pub after: Option<&'a After>,
    /// Matches name, email or company, anywhere (lower-cased).
    pub search: Option<&'a str>,
    pub tag: Option<&'a str>,
    /// The page that ends just before `after` (the last page when there is no cursor), still
    /// in the sort's order.
    pub backward: bool,
}

/// Adds the filters of a list (or of a bulk action over "all matching") to a statement.
pub(super) fn push_filters(sql: &mut QueryBuilder<Postgres>, search: Option<&str>, tag: Option<&str>) {
    if let Some(tag) = tag {
        sql.push(" AND tags @> ARRAY[").push_bind(tag.to_lowercase()).push("]::text[]");
    }
    if let Some(search) = search {
        sql.push(" AND search LIKE ")
            .push_bind(format!("%{}%", like_escape(&search.to_lowercase())))
            .push(" ESCAPE '\\'");
    }
}

/// How many contacts a list has in all (its filters, every page). Unfiltered, the owner's
/// counter (kept exact by triggers, see the `contact_counts` migration) answers without
/// counting the rows.
pub async fn count(
    db: impl PgExecutor<'_>,
    owner: Owner,
    search: Option<&str>,
    tag: Option<&str>,
) -> crate::Result<i64> {
    if search.is_none() && tag.is_none() {
        let total = sqlx::query_scalar!(
            r#"SELECT coalesce(sum(n), 0)::bigint AS "total!" FROM contact_counts WHERE owner_id = $1"#,
            owner.id()
        )
        .fetch_one(db)
        .await?;
        return Ok(total);
    }
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("SELECT count(*) FROM contacts WHERE owner_id = ");
    sql.push_bind(owner);
    push_filters(&mut sql, search, tag);
    Ok(sql.build_query_scalar::<i64>().fetch_one(db).await?)
}

/// One page in keyset order: rows strictly after the cursor, so inserts never shift or repeat rows,
/// and every row is on exactly one page whatever the names (the cursor holds the database's own
/// sort key).
pub async fn list(db: impl PgExecutor<'_>, owner: Owner, query: &ListQuery<'_>) -> Result<Listing, ListError> {
    let page = page(db, owner, query).await?;
    let contacts = page.rows.iter().map(contact).collect::<sqlx::Result<_>>()?;
    Ok(Listing { contacts, next: page.next, prev: page.prev })
}

/// One page as [`list`] reads it, its contacts left in their rows.
pub async fn page(db: impl PgExecutor<'_>, owner: Owner, query: &ListQuery<'_>) -> Result<Page, ListError> {
    let mut sql = statement(owner, query)?;
    // Collected into room for the whole page at once rather than a vector grown row by row.
    let limit = usize::try_from(query.limit).unwrap_or_default();
    let mut rows: Vec<PgRow> = Vec::with_capacity(limit + 1);
    let mut stream = sql.build().fetch(db);
    while let Some(row) = stream.try_next().await? {
        rows.push(row);
    }
    // The extra row only says that there is a page beyond (after it, or before it backward).
    let more = rows.len() > limit;
    rows.truncate(limit);
    let cursor = query.after.is_some();
    if query.backward {
        rows.reverse();
    }
    let (last, first) = if query.backward { (cursor, more) } else { (more, cursor) };
    let edge = |row: Option<&PgRow>| row.map(|row| after(row, query.sort)).transpose();
    let next = if last { edge(rows.last()) } else { Ok(None) };
    let prev = if first { edge(rows.first()) } else { Ok(None) };
    let err = |err: sqlx::Error| ListError::Db(err.into());
    Ok(Page { next: next.map_err(err)?, prev: prev.map_err(err)?, rows })
}

/// The statement of a page in `query`, its values bound (`$1` the owner, then the filters' and the
/// cursor's).
fn statement(owner: Owner, query: &ListQuery<'_>) -> Result<QueryBuilder<Postgres>, ListError> {
    let (key, by_time) = match query.sort.key {
        SortKey::Name => ("lower(name)", false),
        SortKey::Created => ("created_at", true),
        SortKey::Updated => ("updated_at", true),
    };
    // A backward page is read in the opposite order from its cursor, then turned round.
    let (cmp, dir) = if query.sort.descending != query.backward { ("<", "DESC") } else { (">", "ASC") };
    let mut sql: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {COLUMNS}, lower(name) AS name_key FROM contacts WHERE owner_id = "));
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
    push_filters(&mut sql, query.search, query.tag);
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
    Ok(sql)
}

/// The SQL text [`page`] sends for `query` (its values as `$n`): for tools that run serve's own
/// statement beside it (the bench's pgbench scripts).
pub fn page_sql(query: &ListQuery<'_>) -> Result<String, ListError> {
    Ok(statement(Owner::new(Uuid::nil()), query)?.into_string())
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
