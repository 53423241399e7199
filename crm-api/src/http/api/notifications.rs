//! `/api/v1/notifications`: the bell.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::contacts::{page_size, query_error};
use crate::db::notifications;
use crate::error::{AppError, AppResult};
use crate::http::extract::CurrentUser;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    unread: Option<bool>,
    limit: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let Query(params) = params.map_err(query_error)?;
    let limit = page_size(params.limit.as_deref())?;
    let items = notifications::list(&state.db, user.user_id, params.unread.unwrap_or(false), limit).await?;
    let unread = notifications::unread_count(&state.db, user.user_id).await?;
    Ok(Json(json!({ "notifications": items, "unread": unread })))
}

pub async fn mark_read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id: Uuid = id.parse().map_err(|_| AppError::NotFound("notification"))?;
    if notifications::mark_read(&state.db, user.user_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("notification"))
    }
}
