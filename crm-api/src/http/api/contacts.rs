//! `/api/v1/contacts`: a user's private contacts.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use borcelle_engine::contacts::{ContactInput, ContactPatch, Cursor, duplicate_email, parse_sort};
use borcelle_store::contacts::{self, Contact, ListError, ListQuery};

use crate::error::{AppError, AppResult};
use crate::http::access::Id;
use crate::http::extract::{ApiJson, CurrentUser};
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

pub const PAGE_DEFAULT: i64 = 50;
pub const PAGE_MAX: i64 = 200;

fn duplicate(existing: Uuid) -> AppError {
    duplicate_email(existing).into()
}

/// Creates a contact
///
/// Without `first_name` and `last_name`, both are taken from `name`.
#[utoipa::path(
    post,
    path = "/contacts",
    operation_id = "create_contact",
    tag = "contacts",
    request_body = ContactInput,
    responses(
        (status = 201, description = "The contact", body = Contact),
        (status = 409, description = "The caller already has a contact with this email (`duplicate_email`; `existing_id` names it)", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<ContactInput>,
) -> AppResult<Response> {
    let fields = input.validate_new()?;
    let mut db = state.db.acquire().await?;
    match contacts::insert(&mut db, Uuid::now_v7(), user.owner(), &fields).await? {
        Ok(contact) => Ok((StatusCode::CREATED, Json(contact)).into_response()),
        Err(existing) => Err(duplicate(existing)),
    }
}

/// One contact
#[utoipa::path(
    get,
    path = "/contacts/{id}",
    operation_id = "get_contact",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "The contact's id")),
    responses((status = 200, description = "The contact", body = Contact))
)]
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Contact>,
) -> AppResult<Json<Contact>> {
    let id = id.get();
    contacts::get(&state.db, user.owner(), id).await?.map(Json).ok_or(AppError::not_found("contact"))
}

/// Changes some fields of a contact: an absent field stays, `null` clears an optional one
///
/// A new `name` leaves `first_name` and `last_name` as they are.
#[utoipa::path(
    patch,
    path = "/contacts/{id}",
    operation_id = "update_contact",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "The contact's id")),
    request_body = ContactPatch,
    responses(
        (status = 200, description = "The contact as changed", body = Contact),
        (status = 409, description = "Another contact of the caller has this email (`duplicate_email`)", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Contact>,
    ApiJson(patch): ApiJson<ContactPatch>,
) -> AppResult<Json<Contact>> {
    let id = id.get();
    let mut tx = state.db.begin().await?;
    let current = contacts::get_for_update(&mut tx, user.owner(), id).await?.ok_or(AppError::not_found("contact"))?;
    let fields = patch.apply(current.fields())?;
    let updated = contacts::update(&mut tx, user.owner(), id, &fields).await?.map_err(duplicate)?;
    tx.commit().await?;
    Ok(Json(updated))
}

/// Deletes a contact (its delivery history stays)
#[utoipa::path(
    delete,
    path = "/contacts/{id}",
    operation_id = "delete_contact",
    tag = "contacts",
    params(("id" = Uuid, Path, description = "The contact's id")),
    responses((status = 204, description = "Deleted"))
)]
pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Contact>,
) -> AppResult<StatusCode> {
    let id = id.get();
    if contacts::delete(&state.db, user.owner(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("contact"))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Contacts per page (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page (with the same `sort`).
    cursor: Option<String>,
    /// Words that the name, email or company contain.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Only contacts with this tag.
    #[param(max_length = 50)]
    tag: Option<String>,
    /// `name` (default), `created` or `updated`; prefix with `-` for descending order.
    #[param(pattern = "^-?(name|created|updated)$")]
    sort: Option<String>,
}

/// A page of contacts.
#[derive(Serialize, ToSchema)]
#[schema(as = ContactPage)]
pub struct Page {
    contacts: Vec<Contact>,
    /// Pass as `cursor` (with the same `sort`) for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Turns a query-string rejection into a 422 that names the parameter: the path that prefixes the
/// message (`count: invalid digit found in string`), else the backticked name (`missing field `q``).
pub fn query_error(err: QueryRejection) -> AppError {
    let text = err.body_text();
    let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
    let prefixed = detail.split_once(": ").map(|(path, _)| path).filter(|path| !path.contains([' ', '`']));
    let field = prefixed.or_else(|| detail.split('`').nth(1)).unwrap_or("query").to_owned();
    AppError::validation(field, text)
}

pub fn page_size(raw: Option<&str>) -> AppResult<i64> {
    let Some(raw) = raw else { return Ok(PAGE_DEFAULT) };
    match raw.parse::<i64>() {
        Ok(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        _ => Err(AppError::validation("limit", format!("limit must be a whole number from 1 to {PAGE_MAX}"))),
    }
}

/// Search text: at most `max` characters as sent; control characters (which no stored text has)
/// are dropped, surrounding spaces too, and what is left may be empty (no filter).
fn optional(raw: Option<&str>, field: &str, max: usize) -> AppResult<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.chars().count() > max {
        return Err(AppError::validation(field, format!("{field} must be at most {max} characters")));
    }
    let value: String = raw.chars().filter(|c| !c.is_control()).collect();
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// The caller's contacts, a page at a time, searched, filtered by tag and sorted
#[utoipa::path(
    get,
    path = "/contacts",
    operation_id = "list_contacts",
    tag = "contacts",
    params(ListParams),
    responses(
        (status = 200, description = "A page of contacts", body = Page),
        (status = 404, description = "No page starts at `cursor` (`cursor_not_found`): it is not a `next_cursor` of this sort", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AppResult<Response> {
    let Query(params) = params.map_err(query_error)?;
    let limit = page_size(params.limit.as_deref())?;
    let sort = parse_sort(params.sort.as_deref())?;
    let cursor =
        params.cursor.as_deref().filter(|c| !c.trim().is_empty()).map(|raw| Cursor::decode(raw, sort)).transpose()?;
    let search = optional(params.q.as_deref(), "q", 200)?;
    let tag = optional(params.tag.as_deref(), "tag", borcelle_engine::contacts::TAG_MAX)?;
    let after = cursor.as_ref().map(Cursor::after);
    let query = ListQuery {
        sort,
        limit,
        after: after.as_ref(),
        search: search.as_deref(),
        tag: tag.as_deref(),
        backward: false,
    };
    let mut conn = state.contact_pages.acquire().await?;
    let listed = contacts::page(&mut *conn, user.owner(), &query).await;
    conn.settle(match &listed {
        Err(ListError::Db(err)) => Some(err),
        Ok(_) | Err(ListError::BadCursor) => None,
    });
    let mut page = listed.map_err(|err| match err {
        ListError::BadCursor => AppError::Domain(borcelle_engine::Error::UnknownCursor),
        ListError::Db(err) => err.into(),
    })?;
    let next_cursor = page.next.take().map(|after| Cursor::next(sort, after).encode());
    // Written from the rows as PostgreSQL sent them (see `contacts::Page::write_json`), into a
    // buffer sized for the page up front (axum's `Json` starts at 128 bytes and copies its way up
    // to a page's ~20 KiB): the JSON of [`Page`].
    let mut body = Vec::with_capacity(256 + page.len() * CONTACT_JSON_BYTES);
    body.extend_from_slice(b"{\"contacts\":");
    page.write_json(&mut body).map_err(|err| AppError::from(borcelle_store::Error::from(err)))?;
    if let Some(cursor) = next_cursor {
        body.extend_from_slice(b",\"next_cursor\":");
        borcelle_store::json::write_str(&mut body, &cursor);
    }
    body.push(b'}');
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

/// Room for one contact of a page in JSON: a typical contact takes 300–400 bytes.
const CONTACT_JSON_BYTES: usize = 512;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AutocompleteParams {
    /// What the user typed: the start of a name, email, company or a word of them.
    #[param(required = true, max_length = 100)]
    q: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Suggestions {
    suggestions: Vec<contacts::Suggestion>,
}

/// The 10 best matches of what the user typed
#[utoipa::path(
    get,
    path = "/contacts/autocomplete",
    operation_id = "autocomplete_contacts",
    tag = "contacts",
    params(AutocompleteParams),
    responses((status = 200, description = "Best first", body = Suggestions))
)]
pub async fn autocomplete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<AutocompleteParams>, QueryRejection>,
) -> AppResult<Json<Suggestions>> {
    let Query(params) = params.map_err(query_error)?;
    let Some(q) = params.q.as_deref() else {
        return Err(AppError::validation("q", "q is required: what the user typed"));
    };
    // Nothing typed yet (or only spaces): nothing to suggest.
    let Some(typed) = optional(Some(q), "q", 100)?.map(|q| q.to_lowercase()) else {
        return Ok(Json(Suggestions { suggestions: Vec::new() }));
    };
    // On the contact pages' connections: the pool adds a round trip to each query as its
    // connection comes back (see `borcelle_store::lane`).
    let mut conn = state.contact_pages.acquire().await?;
    let found = contacts::autocomplete(&mut conn, user.owner(), &typed).await;
    conn.settle(found.as_ref().err());
    let suggestions = found?;
    Ok(Json(Suggestions { suggestions }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Utc;
    use serde_json::Value;
    use utoipa::PartialSchema;

    use super::*;

    /// The property names of a schema, and those it requires.
    fn properties(schema: Value) -> (Vec<String>, Vec<String>) {
        let mut names: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
        let mut required: Vec<String> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        names.sort();
        required.sort();
        (names, required)
    }

    /// The keys a value serializes with, and those that are not null.
    fn keys(value: Value) -> (Vec<String>, Vec<String>) {
        let object = value.as_object().unwrap();
        let mut all: Vec<String> = object.keys().cloned().collect();
        let mut set: Vec<String> = object.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.clone()).collect();
        all.sort();
        set.sort();
        (all, set)
    }

    #[test]
    fn the_contact_schemas_describe_what_the_api_serializes() {
        let now = Utc::now();
        let contact = Contact {
            id: Uuid::nil(),
            name: "Ada".into(),
            first_name: None,
            last_name: None,
            email: "ada@example.com".into(),
            phone: None,
            company: None,
            address: None,
            tax_id: None,
            tags: vec![],
            notes: String::new(),
            created_at: now,
            updated_at: now,
        };
        let (names, required) = properties(serde_json::to_value(<Contact as PartialSchema>::schema()).unwrap());
        let (all, set) = keys(serde_json::to_value(&contact).unwrap());
        assert_eq!(names, all);
        assert_eq!(required, set, "exactly the non-optional fields are required");

        let suggestion =
            contacts::Suggestion { id: Uuid::nil(), name: "Ada".into(), email: "a@b.c".into(), company: None };
        let (names, required) =
            properties(serde_json::to_value(<contacts::Suggestion as PartialSchema>::schema()).unwrap());
        let (all, set) = keys(serde_json::to_value(&suggestion).unwrap());
        assert_eq!(names, all);
        assert_eq!(required, set);
    }
}
