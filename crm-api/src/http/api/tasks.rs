//! `/api/v1/tasks`: sends in progress and done, with their counters.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::contacts::{page_size, query_error};
use crate::db::{messages, tasks};
use crate::error::{AppError, AppResult};
use crate::http::extract::CurrentUser;
use crate::state::AppState;

fn task_id(raw: &str) -> AppResult<Uuid> {
    raw.parse().map_err(|_| AppError::NotFound("task"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AppResult<Json<serde_json::Value>> {
    let Query(params) = params.map_err(query_error)?;
    let running_only = match params.status.as_deref() {
        None | Some("all") => false,
        Some("running") => true,
        Some(_) => return Err(AppError::validation("status", "status must be running or all")),
    };
    let limit = page_size(params.limit.as_deref())?;
    let tasks = tasks::list(&state.db, user.user_id, running_only, limit).await?;
    Ok(Json(json!({ "tasks": tasks })))
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<tasks::Task>> {
    let id = task_id(&id)?;
    tasks::get(&state.db, user.user_id, id).await?.map(Json).ok_or(AppError::NotFound("task"))
}

/// `POST /tasks/{id}/retry-failed`: sends every failed message of a task again.
pub async fn retry_failed(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let id = task_id(&id)?;
    if tasks::get(&state.db, user.user_id, id).await?.is_none() {
        return Err(AppError::NotFound("task"));
    }
    let reopened = messages::retry_failed(&state.db, user.user_id, None, Some(id)).await?;
    state.wake_delivery.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "task_id": id, "requeued": !reopened.is_empty() }))).into_response())
}
