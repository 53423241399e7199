//! `/contacts`: the contacts table. One page of the user's contacts, searched, filtered by tag
//! and sorted (by the column headings or the menu), with the total, a page size, and first,
//! previous, next and last pages over keyset cursors. Rows can be selected for the bulk actions
//! (see [`super::bulk`]); every filter lives in the URL, so a filtered list can be bookmarked.

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::AppError;
use crate::http::api::contacts::query_error;
use crate::http::pages::{Layout, PageError, PageUser, contacts_phrase, link, render};
use crate::state::AppState;
use borcelle_engine::contacts::{Cursor, TAG_MAX, parse_sort};
use borcelle_store::contacts::{self, Contact, ListError, ListQuery, Listing};

/// The page sizes offered; the first is the default.
pub const PAGE_SIZES: [i64; 3] = [25, 50, 100];
/// Longest search text (as the JSON API's list).
const SEARCH_MAX: usize = 200;

/// The orders the sort menu offers: (value, label).
const SORTS: [(&str, &str); 6] = [
    ("name", "Name, A to Z"),
    ("-name", "Name, Z to A"),
    ("-created", "Newest first"),
    ("created", "Oldest first"),
    ("-updated", "Recently updated"),
    ("updated", "Least recently updated"),
];

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    q: Option<String>,
    tag: Option<String>,
    sort: Option<String>,
    /// Rows per page: one of [`PAGE_SIZES`].
    per: Option<String>,
    /// The page after this cursor.
    cursor: Option<String>,
    /// The page before this cursor.
    before: Option<String>,
    /// `last`: the last page.
    at: Option<String>,
    /// The page's number, as the links that lead to it count (shown, never trusted for rows).
    page: Option<String>,
    /// Set by the redirect after a delete, to say so.
    deleted: Option<String>,
    /// Set by the redirect after a bulk action: what was done, to how many.
    done: Option<String>,
    n: Option<String>,
    /// How many contacts the action was for (some may have needed no change).
    of: Option<String>,
    label: Option<String>,
}

/// One row of the table.
pub struct Row {
    pub contact: Contact,
    pub last_emailed: Option<DateTime<Utc>>,
    /// The contact's newest reply, when it ever answered.
    pub last_reply: Option<DateTime<Utc>>,
}

#[derive(Template)]
#[template(path = "pages/contacts.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    total: i64,
    q: String,
    tag: String,
    sort: String,
    per: i64,
    sorts: &'static [(&'static str, &'static str)],
    sizes: &'static [i64],
    page: i64,
    pages: i64,
    next: Option<String>,
    prev: Option<String>,
    /// Whether this is not the first page (a link to the first is shown).
    paged: bool,
    /// Whether pages follow this one (a link to the last is shown).
    more: bool,
    notice: String,
}

impl ListPage {
    fn filtered(&self) -> bool {
        !self.q.is_empty() || !self.tag.is_empty()
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        let per = if self.per == PAGE_SIZES[0] { String::new() } else { self.per.to_string() };
        vec![("q", self.q.clone()), ("tag", self.tag.clone()), ("sort", self.sort.clone()), ("per", per)]
    }

    /// The first page of the same list.
    fn first_href(&self) -> String {
        href(&self.params())
    }

    /// The last page of the same list.
    fn last_href(&self) -> String {
        let mut params = self.params();
        params.push(("at", "last".to_owned()));
        params.push(("page", self.pages.to_string()));
        href(&params)
    }

    /// The list filtered by one tag, keeping the sort.
    fn tag_href(&self, tag: &str) -> String {
        href(&[("tag", tag.to_owned()), ("sort", self.sort.clone())])
    }

    /// A column heading's link: sorted by it, ascending, or descending when it is the current
    /// ascending order.
    fn sort_href(&self, key: &str) -> String {
        let value = if self.sort == key { format!("-{key}") } else { key.to_owned() };
        let mut params = self.params();
        params.retain(|(name, _)| *name != "sort");
        params.push(("sort", value));
        href(&params)
    }

    /// `aria-sort` of a column heading.
    fn aria_sort(&self, key: &str) -> &'static str {
        if self.sort == key {
            "ascending"
        } else if self.sort.strip_prefix('-') == Some(key) {
            "descending"
        } else {
            "none"
        }
    }

    /// The first and last row numbers of this page ("26–50").
    fn range(&self) -> (i64, i64) {
        let first = (self.page - 1) * self.per + 1;
        (first.min(self.total), (first - 1 + self.rows.len() as i64).min(self.total))
    }
}

/// `/contacts?…` with the non-empty parameters.
fn href(params: &[(&str, String)]) -> String {
    link("/contacts", params)
}

/// A trimmed, bounded filter value (empty when not given).
pub fn filter(raw: Option<&str>, field: &str, max: usize) -> Result<String, AppError> {
    let value = raw.unwrap_or_default().trim();
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(AppError::validation(field, format!("{field} must be at most {max} characters")));
    }
    Ok(value.to_owned())
}

/// The search and tag filters of a list or of a bulk action's "all matching", checked.
pub fn filters(q: Option<&str>, tag: Option<&str>) -> Result<(String, String), AppError> {
    Ok((filter(q, "q", SEARCH_MAX)?, filter(tag, "tag", TAG_MAX)?))
}

fn page_size(raw: Option<&str>) -> Result<i64, AppError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(PAGE_SIZES[0]),
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|n| PAGE_SIZES.contains(n))
            .ok_or_else(|| AppError::validation("per", "per must be 25, 50 or 100 contacts a page")),
    }
}

/// The notice after a bulk action, from its redirect's parameters.
fn done_notice(params: &ListParams) -> String {
    let n: u64 = params.n.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0);
    let contacts = contacts_phrase(i64::try_from(n).unwrap_or(i64::MAX));
    let label = params.label.as_deref().unwrap_or_default();
    let of: u64 = params.of.as_deref().and_then(|n| n.parse().ok()).unwrap_or(n);
    let rest = if of > n { format!(" The other {} needed no change.", of - n) } else { String::new() };
    match params.done.as_deref() {
        Some("tagged") => format!("Tag “{label}” added to {contacts}.{rest}"),
        Some("untagged") => format!("Tag “{label}” removed from {contacts}.{rest}"),
        Some("deleted") => format!("{contacts} deleted."),
        Some("emailed") => format!("Sending “{label}” to {contacts}: its progress is on the home page."),
        _ if params.deleted.is_some() => "Contact deleted.".to_owned(),
        _ => String::new(),
    }
}

pub async fn list(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let params = match params {
        Ok(Query(params)) => params,
        Err(err) => return PageError::new(layout, query_error(err)).into_response(),
    };
    let parsed = (|| {
        let sort = parse_sort(params.sort.as_deref().filter(|s| !s.is_empty()))?;
        let decode = |raw: Option<&str>| raw.filter(|c| !c.is_empty()).map(|raw| Cursor::decode(raw, sort)).transpose();
        let after = decode(params.cursor.as_deref())?;
        let before = decode(params.before.as_deref())?;
        let (q, tag) = filters(params.q.as_deref(), params.tag.as_deref())?;
        let per = page_size(params.per.as_deref())?;
        Ok::<_, AppError>((sort, after, before, q, tag, per))
    })();
    let (sort, after, before, q, tag, per) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let to_last = params.at.as_deref() == Some("last") && after.is_none() && before.is_none();
    let backward = before.is_some() || to_last;
    let cursor = before.as_ref().or(after.as_ref()).map(Cursor::after);
    let owner = identity.owner();
    let search = Some(q.as_str()).filter(|q| !q.is_empty());
    let tag_filter = Some(tag.as_str()).filter(|t| !t.is_empty());
    let query = ListQuery { sort, limit: per, after: cursor.as_ref(), search, tag: tag_filter, backward };
    let counted = if to_last {
        // The last page holds what the pages before it leave, as numbered pages would: the
        // count comes first to know how many rows that is.
        match contacts::count(&state.db, owner, search, tag_filter).await {
            Ok(total) => Some(total),
            Err(err) => return PageError::new(layout, err).into_response(),
        }
    } else {
        None
    };
    let listed = match counted {
        Some(total) => {
            let rest = total - (total - 1).max(0) / per * per;
            let query = ListQuery { limit: rest.max(1), ..query };
            (contacts::list(&state.db, owner, &query).await, Ok(total))
        }
        // The page and the total at once, on two connections.
        None => tokio::join!(
            contacts::list(&state.db, owner, &query),
            contacts::count(&state.db, owner, search, tag_filter)
        ),
    };
    let (listing, total) = listed;
    let listing: Listing = match listing {
        Ok(listing) => listing,
        Err(ListError::BadCursor) => {
            let err = AppError::validation("cursor", "this page link is out of date: start from the first page");
            return PageError::new(layout, err).into_response();
        }
        Err(ListError::Db(err)) => return PageError::new(layout, err).into_response(),
    };
    let total = match total {
        Ok(total) => total,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let ids: Vec<Uuid> = listing.contacts.iter().map(|c| c.id).collect();
    let activity: HashMap<Uuid, contacts::LastActivity> = match contacts::last_activity(&state.db, owner, &ids).await {
        Ok(rows) => rows.into_iter().collect(),
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let pages = ((total + per - 1) / per).max(1);
    let page = if to_last {
        pages
    } else if listing.prev.is_none() {
        1
    } else {
        params.page.as_deref().and_then(|p| p.parse::<i64>().ok()).unwrap_or(1).clamp(1, pages)
    };
    let sort_value = params.sort.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "name".to_owned());
    let per_value = if per == PAGE_SIZES[0] { String::new() } else { per.to_string() };
    let link = |key: &'static str, to: borcelle_store::contacts::After, number: i64| {
        let cursor = Cursor::next(sort, to).encode();
        href(&[
            ("q", q.clone()),
            ("tag", tag.clone()),
            ("sort", sort_value.clone()),
            ("per", per_value.clone()),
            (key, cursor),
            ("page", number.to_string()),
        ])
    };
    let next = listing.next.map(|after| link("cursor", after, page + 1));
    let prev = listing.prev.map(|first| link("before", first, (page - 1).max(1)));
    let rows = listing
        .contacts
        .into_iter()
        .map(|contact| {
            let activity = activity.get(&contact.id).copied().unwrap_or_default();
            Row { last_emailed: activity.emailed, last_reply: activity.replied, contact }
        })
        .collect();
    let notice = done_notice(&params);
    let page = ListPage {
        layout,
        rows,
        total,
        q,
        tag,
        sort: sort_value,
        per,
        sorts: &SORTS,
        sizes: &PAGE_SIZES,
        paged: prev.is_some(),
        more: next.is_some(),
        page,
        pages,
        next,
        prev,
        notice,
    };
    render(page, StatusCode::OK)
}
