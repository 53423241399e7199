//! One change to many contacts at once (the contacts table's bulk actions): the rows chosen by
//! id or by the list's filters, changed in one statement whatever their number.

use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::list::push_filters;
use crate::Owner;

/// Which of the owner's contacts an action is for.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// These ones (ids that are not the owner's choose nothing).
    Ids(&'a [Uuid]),
    /// Every contact a list with these filters shows, on every page.
    Matching { search: Option<&'a str>, tag: Option<&'a str> },
    /// Every contact with any of these tags (lower case).
    AnyTag(&'a [String]),
}

fn push_selection(sql: &mut QueryBuilder<Postgres>, owner: Owner, selection: Selection<'_>) {
    sql.push(" WHERE owner_id = ").push_bind(owner);
    match selection {
        Selection::Ids(ids) => {
            sql.push(" AND id = ANY(").push_bind(ids.to_vec()).push(")");
        }
        Selection::Matching { search, tag } => push_filters(sql, search, tag),
        Selection::AnyTag(tags) => {
            sql.push(" AND tags && ").push_bind(tags.to_vec()).push("::text[]");
        }
    }
}

/// How many of the owner's contacts the selection holds.
pub async fn count_selected(db: impl PgExecutor<'_>, owner: Owner, selection: Selection<'_>) -> crate::Result<i64> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("SELECT count(*) FROM contacts");
    push_selection(&mut sql, owner, selection);
    Ok(sql.build_query_scalar::<i64>().fetch_one(db).await?)
}

/// The ids of the selected contacts (at most `limit`, in id order), for a send by id.
pub async fn selected_ids(
    db: impl PgExecutor<'_>,
    owner: Owner,
    selection: Selection<'_>,
    limit: i64,
) -> crate::Result<Vec<Uuid>> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("SELECT id FROM contacts");
    push_selection(&mut sql, owner, selection);
    sql.push(" ORDER BY id LIMIT ").push_bind(limit);
    Ok(sql.build_query_scalar::<Uuid>().fetch_all(db).await?)
}

/// Adds `tag` (lower case, checked) to each selected contact that lacks it and has room for it
/// (fewer than `max_tags`). Returns how many contacts changed.
pub async fn add_tag(
    db: impl PgExecutor<'_>,
    owner: Owner,
    selection: Selection<'_>,
    tag: &str,
    max_tags: i32,
) -> crate::Result<u64> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE contacts SET updated_at = now(), tags = tags || ");
    sql.push_bind(tag.to_owned()).push("::text");
    push_selection(&mut sql, owner, selection);
    sql.push(" AND NOT tags @> ARRAY[").push_bind(tag.to_owned()).push("]::text[]");
    sql.push(" AND cardinality(tags) < ").push_bind(max_tags);
    Ok(sql.build().execute(db).await?.rows_affected())
}

/// Removes `tag` from each selected contact that has it. Returns how many contacts changed.
pub async fn remove_tag(
    db: impl PgExecutor<'_>,
    owner: Owner,
    selection: Selection<'_>,
    tag: &str,
) -> crate::Result<u64> {
    let mut sql: QueryBuilder<Postgres> =
        QueryBuilder::new("UPDATE contacts SET updated_at = now(), tags = array_remove(tags, ");
    sql.push_bind(tag.to_owned()).push("::text)");
    push_selection(&mut sql, owner, selection);
    sql.push(" AND tags @> ARRAY[").push_bind(tag.to_owned()).push("]::text[]");
    Ok(sql.build().execute(db).await?.rows_affected())
}

/// Deletes the selected contacts (their sent messages stay, without the contact). Returns how
/// many were deleted.
pub async fn delete_selected(db: impl PgExecutor<'_>, owner: Owner, selection: Selection<'_>) -> crate::Result<u64> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("DELETE FROM contacts");
    push_selection(&mut sql, owner, selection);
    Ok(sql.build().execute(db).await?.rows_affected())
}

/// When a contact was last emailed and last replied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastActivity {
    /// The newest message queued for the contact (not suppressed).
    pub emailed: Option<chrono::DateTime<chrono::Utc>>,
    /// The newest reply from the contact (automatic answers and bounces aside).
    pub replied: Option<chrono::DateTime<chrono::Utc>>,
}

/// When each of these contacts was last emailed and last replied: one query for a page of
/// contacts (two index lookups per contact). Contacts with neither are absent.
pub async fn last_activity(
    db: impl PgExecutor<'_>,
    owner: Owner,
    ids: &[Uuid],
) -> crate::Result<Vec<(Uuid, LastActivity)>> {
    let rows = sqlx::query!(
        r#"SELECT c.id AS "id!", m.at AS emailed, r.at AS replied
           FROM unnest($2::uuid[]) AS c(id)
           LEFT JOIN LATERAL (
               SELECT l.created_at AS at FROM ledger l JOIN deliveries d ON d.id = l.id
               WHERE l.owner_id = $1 AND l.contact_id = c.id AND d.status <> 'suppressed'
               ORDER BY l.created_at DESC LIMIT 1
           ) m ON true
           LEFT JOIN LATERAL (
               SELECT received_at AS at FROM inbound_messages
               WHERE owner_id = $1 AND contact_id = c.id AND kind = 'reply'
               ORDER BY received_at DESC LIMIT 1
           ) r ON true
           WHERE m.at IS NOT NULL OR r.at IS NOT NULL"#,
        owner.id(),
        ids
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, LastActivity { emailed: row.emailed, replied: row.replied })).collect())
}
