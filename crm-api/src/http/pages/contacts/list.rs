//! `/contacts`: one page of the user's contacts, searched, filtered by tag and sorted, with a
//! "Next" link carrying the keyset cursor.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::AppError;
use crate::http::api::contacts::query_error;
use crate::http::pages::{Layout, PageError, PageUser, render};
use crate::state::AppState;
use borcelle_engine::contacts::{Cursor, TAG_MAX, parse_sort};
use borcelle_store::contacts::{self, Contact, ListError, ListQuery};

/// Contacts per page.
const PAGE_SIZE: i64 = 25;
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
    cursor: Option<String>,
    /// Set by the redirect after a delete, to say so.
    deleted: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/contacts.html")]
struct ListPage {
    layout: Layout,
    contacts: Vec<Contact>,
    q: String,
    tag: String,
    sort: String,
    sorts: &'static [(&'static str, &'static str)],
    /// Link to the next page, when there is one.
    next: Option<String>,
    /// Whether this is a later page (a link back to the first is shown).
    paged: bool,
    deleted: bool,
}

impl ListPage {
    fn filtered(&self) -> bool {
        !self.q.is_empty() || !self.tag.is_empty()
    }

    /// The first page of the same list.
    fn first_href(&self) -> String {
        href(&[("q", &self.q), ("tag", &self.tag), ("sort", &self.sort)])
    }

    /// The list filtered by one tag, keeping the sort.
    fn tag_href(&self, tag: &str) -> String {
        href(&[("tag", tag), ("sort", &self.sort)])
    }
}

/// `/contacts?…` with the non-empty parameters.
fn href(params: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(key, value);
    }
    let query = query.finish();
    if query.is_empty() { "/contacts".to_owned() } else { format!("/contacts?{query}") }
}

/// A trimmed, bounded filter value (empty when not given).
fn filter(raw: Option<&str>, field: &str, max: usize) -> Result<String, AppError> {
    let value = raw.unwrap_or_default().trim();
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(AppError::validation(field, format!("{field} must be at most {max} characters")));
    }
    Ok(value.to_owned())
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
        let cursor = params.cursor.as_deref().filter(|c| !c.is_empty()).map(|raw| Cursor::decode(raw, sort));
        let q = filter(params.q.as_deref(), "q", SEARCH_MAX)?;
        let tag = filter(params.tag.as_deref(), "tag", TAG_MAX)?;
        Ok::<_, AppError>((sort, cursor.transpose()?, q, tag))
    })();
    let (sort, cursor, q, tag) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let after = cursor.as_ref().map(Cursor::after);
    let query = ListQuery {
        sort,
        limit: PAGE_SIZE,
        after: after.as_ref(),
        search: Some(q.as_str()).filter(|q| !q.is_empty()),
        tag: Some(tag.as_str()).filter(|t| !t.is_empty()),
    };
    let listing = match contacts::list(&state.db, identity.owner(), &query).await {
        Ok(listing) => listing,
        Err(ListError::BadCursor) => {
            let err = AppError::validation("cursor", "this page link is out of date: start from the first page");
            return PageError::new(layout, err).into_response();
        }
        Err(ListError::Db(err)) => return PageError::new(layout, err).into_response(),
    };
    let sort_value = params.sort.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "name".to_owned());
    let next = listing.next.map(|after| {
        let cursor = Cursor::next(sort, after).encode();
        href(&[("q", &q), ("tag", &tag), ("sort", &sort_value), ("cursor", &cursor)])
    });
    let page = ListPage {
        layout,
        contacts: listing.contacts,
        q,
        tag,
        sort: sort_value,
        sorts: &SORTS,
        next,
        paged: cursor.is_some(),
        deleted: params.deleted.is_some(),
    };
    render(page, StatusCode::OK)
}
