//! `/api/v1/tasks`: sends in progress and done, with their counters.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use borcelle_store::messages;
use borcelle_store::tasks::{self, Task};

use super::contacts::{page_size, query_error};
use crate::error::{AppError, AppResult};
use crate::http::access::Id;
use crate::http::extract::CurrentUser;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `running` for the tasks still sending, `all` (default) for every task.
    #[param(pattern = "^(running|all)$")]
    status: Option<String>,
    /// Tasks to list (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TaskList {
    tasks: Vec<tasks::Task>,
}

/// The caller's sends, newest first
#[utoipa::path(
    get,
    path = "/tasks",
    operation_id = "list_tasks",
    tag = "tasks",
    params(ListParams),
    responses((status = 200, description = "The tasks", body = TaskList))
)]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AppResult<Json<TaskList>> {
    let Query(params) = params.map_err(query_error)?;
    let running_only = match params.status.as_deref() {
        None | Some("all") => false,
        Some("running") => true,
        Some(_) => return Err(AppError::validation("status", "status must be running or all")),
    };
    let limit = page_size(params.limit.as_deref())?;
    let tasks = tasks::list(&state.db, user.owner(), running_only, limit).await?;
    Ok(Json(TaskList { tasks }))
}

/// One send and its counters
#[utoipa::path(
    get,
    path = "/tasks/{id}",
    operation_id = "get_task",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "The task's id")),
    responses((status = 200, description = "The task", body = tasks::Task))
)]
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Task>,
) -> AppResult<Json<tasks::Task>> {
    let id = id.get();
    tasks::get(&state.db, user.owner(), id).await?.map(Json).ok_or(AppError::not_found("task"))
}

/// A task whose failed messages were queued again.
#[derive(Serialize, ToSchema)]
pub struct RetriedTask {
    task_id: Uuid,
    /// Whether any message had failed (and so was queued again).
    requeued: bool,
}

/// Sends every failed message of a task again
#[utoipa::path(
    post,
    path = "/tasks/{id}/retry-failed",
    operation_id = "retry_failed_messages",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "The task's id")),
    responses((status = 202, description = "The failed messages are queued again", body = RetriedTask))
)]
pub async fn retry_failed(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Task>,
) -> AppResult<Response> {
    let id = id.get();
    if tasks::get(&state.db, user.owner(), id).await?.is_none() {
        return Err(AppError::not_found("task"));
    }
    let reopened = messages::retry_failed(&state.db, user.owner(), None, Some(id)).await?;
    state.wake_delivery.notify_one();
    Ok((StatusCode::ACCEPTED, Json(RetriedTask { task_id: id, requeued: !reopened.is_empty() })).into_response())
}
