//! `/api/v1/suppressions`: the caller's suppression list — addresses Borcelle never mails again
//! for them (unsubscribed, hard-bounced, complained, or added by hand). Only the owner's explicit
//! `DELETE` takes an address off it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use borcelle_store::suppressions::Suppression;

use super::contacts::{page_size, query_error};
use crate::error::{AppError, AppResult};
use crate::http::extract::{ApiJson, CurrentUser};
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Entries per page (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of the list, newest first.
#[derive(Serialize, ToSchema)]
pub struct SuppressionPage {
    suppressions: Vec<Suppression>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

fn encode_cursor(last: &Suppression) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", last.created_at.timestamp_micros(), last.email))
}

fn decode_cursor(raw: &str) -> AppResult<(DateTime<Utc>, String)> {
    let bad = || AppError::Domain(borcelle_engine::Error::UnknownCursor);
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (micros, email) = text.split_once('|').ok_or_else(bad)?;
    let at = micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    Ok((at, email.to_owned()))
}

/// The caller's suppression list, newest first
#[utoipa::path(
    get,
    path = "/suppressions",
    operation_id = "list_suppressions",
    tag = "suppressions",
    params(ListParams),
    responses(
        (status = 200, description = "A page of the list", body = SuppressionPage),
        (status = 404, description = "The cursor is not one this list handed out", body = ErrorBody),
        (status = 422, description = "A parameter is invalid; `field` names it", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AppResult<Json<SuppressionPage>> {
    let Query(params) = params.map_err(query_error)?;
    let limit = page_size(params.limit.as_deref())?;
    let before = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut suppressions = state.suppressions.list(user.owner(), before, limit + 1).await?;
    let next_cursor = if suppressions.len() as i64 > limit {
        suppressions.truncate(limit as usize);
        suppressions.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(SuppressionPage { suppressions, next_cursor }))
}

/// An address to add by hand.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionBody {
    #[schema(min_length = 3, max_length = 254)]
    email: String,
    /// Why, in the owner's words (one line).
    #[serde(default)]
    #[schema(max_length = 1000)]
    detail: Option<String>,
}

/// Adds an address to the caller's list
///
/// Borcelle never mails it again for the caller: sends queued later get a `suppressed` row, and
/// rows already queued are skipped when they come up. An address already on the list keeps its
/// first reason (200 instead of 201).
#[utoipa::path(
    post,
    path = "/suppressions",
    operation_id = "add_suppression",
    tag = "suppressions",
    request_body = SuppressionBody,
    responses(
        (status = 201, description = "Added", body = Suppression),
        (status = 200, description = "Already on the list (its first entry is kept)", body = Suppression),
        (status = 422, description = "The email or detail is invalid; `field` names it", body = ErrorBody),
    )
)]
pub async fn add(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<SuppressionBody>,
) -> AppResult<Response> {
    let (entry, added) = state.suppressions.add(user.owner(), &input.email, input.detail.as_deref()).await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(entry)).into_response())
}

/// Whether (and why) an address is on the caller's list
#[utoipa::path(
    get,
    path = "/suppressions/{email}",
    operation_id = "show_suppression",
    tag = "suppressions",
    params(("email" = String, Path, description = "The address (any case)")),
    responses(
        (status = 200, description = "The entry", body = Suppression),
        (status = 404, description = "The address is not on the list", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(email): Path<String>,
) -> AppResult<Json<Suppression>> {
    state
        .suppressions
        .find(user.owner(), &email)
        .await?
        .map(Json)
        .ok_or(AppError::Domain(borcelle_engine::Error::NotFound("suppression")))
}

/// Takes an address off the caller's list (re-subscribes it)
///
/// The owner's explicit action: the address may be mailed again by the caller's later sends.
#[utoipa::path(
    delete,
    path = "/suppressions/{email}",
    operation_id = "remove_suppression",
    tag = "suppressions",
    params(("email" = String, Path, description = "The address (any case)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The address is not on the list", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(email): Path<String>,
) -> AppResult<StatusCode> {
    state.suppressions.remove(user.owner(), &email).await?;
    Ok(StatusCode::NO_CONTENT)
}
