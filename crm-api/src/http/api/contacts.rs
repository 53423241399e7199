//! `/api/v1/contacts`: a user's private contacts.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::contacts::{ContactInput, ContactPatch, Cursor, Sort};
use crate::db::contacts::{self, Contact, ListError, ListQuery};
use crate::error::{AppError, AppResult};
use crate::http::extract::{ApiJson, CurrentUser};
use crate::state::AppState;

pub const PAGE_DEFAULT: i64 = 50;
pub const PAGE_MAX: i64 = 200;

/// A path id that is not a UUID names no contact of this user.
pub fn contact_id(raw: &str) -> AppResult<Uuid> {
    raw.parse().map_err(|_| AppError::NotFound("contact"))
}

fn duplicate(existing: Uuid) -> AppError {
    AppError::Conflict {
        code: "duplicate_email",
        field: "email",
        message: "you already have a contact with this email".to_owned(),
        existing_id: Some(existing),
    }
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<ContactInput>,
) -> AppResult<Response> {
    let fields = input.validate()?;
    let mut db = state.db.acquire().await?;
    match contacts::insert(&mut db, Uuid::now_v7(), user.user_id, &fields).await? {
        Ok(contact) => Ok((StatusCode::CREATED, Json(contact)).into_response()),
        Err(existing) => Err(duplicate(existing)),
    }
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<Contact>> {
    let id = contact_id(&id)?;
    contacts::get(&state.db, user.user_id, id).await?.map(Json).ok_or(AppError::NotFound("contact"))
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<ContactPatch>,
) -> AppResult<Json<Contact>> {
    let id = contact_id(&id)?;
    let mut tx = state.db.begin().await?;
    let current = contacts::get_for_update(&mut tx, user.user_id, id).await?.ok_or(AppError::NotFound("contact"))?;
    let fields = patch.apply(current.fields())?;
    let updated = contacts::update(&mut tx, user.user_id, id, &fields).await?.map_err(duplicate)?;
    tx.commit().await?;
    Ok(Json(updated))
}

pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = contact_id(&id)?;
    if contacts::delete(&state.db, user.user_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("contact"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
    q: Option<String>,
    tag: Option<String>,
    sort: Option<String>,
}

#[derive(Serialize)]
pub struct Page {
    contacts: Vec<Contact>,
    /// Pass as `cursor` (with the same `sort`) for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Turns a query-string rejection into a 422 that names the parameter.
pub fn query_error(err: QueryRejection) -> AppError {
    let text = err.body_text();
    let field = text.split('`').nth(1).unwrap_or("query").to_owned();
    AppError::validation(field, text)
}

pub fn page_size(raw: Option<&str>) -> AppResult<i64> {
    let Some(raw) = raw else { return Ok(PAGE_DEFAULT) };
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        _ => Err(AppError::validation("limit", format!("limit must be a whole number from 1 to {PAGE_MAX}"))),
    }
}

fn optional(raw: Option<&str>, field: &str, max: usize) -> AppResult<Option<String>> {
    let Some(value) = raw.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(AppError::validation(field, format!("{field} must be at most {max} characters")));
    }
    Ok(Some(value.to_owned()))
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AppResult<Json<Page>> {
    let Query(params) = params.map_err(query_error)?;
    let limit = page_size(params.limit.as_deref())?;
    let sort = Sort::parse(params.sort.as_deref())?;
    let cursor = params.cursor.as_deref().map(|raw| Cursor::decode(raw, sort)).transpose()?;
    let search = optional(params.q.as_deref(), "q", 200)?;
    let tag = optional(params.tag.as_deref(), "tag", crate::contacts::TAG_MAX)?;
    let query = ListQuery { sort, limit, cursor: cursor.as_ref(), search: search.as_deref(), tag: tag.as_deref() };
    let mut rows = contacts::list(&state.db, user.user_id, &query).await.map_err(|err| match err {
        ListError::BadCursor => AppError::validation("cursor", "cursor is not valid for this sort"),
        ListError::Db(err) => err.into(),
    })?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| Cursor::new(sort, contacts::sort_value(last, sort), last.id).encode())
    } else {
        None
    };
    Ok(Json(Page { contacts: rows, next_cursor }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutocompleteParams {
    q: Option<String>,
}

pub async fn autocomplete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<AutocompleteParams>, QueryRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let Query(params) = params.map_err(query_error)?;
    let typed = optional(params.q.as_deref(), "q", 100)?
        .ok_or_else(|| AppError::validation("q", "type at least one character"))?
        .to_lowercase();
    let suggestions = contacts::autocomplete(&state.db, user.user_id, &typed).await?;
    Ok(Json(json!({ "suggestions": suggestions })))
}
