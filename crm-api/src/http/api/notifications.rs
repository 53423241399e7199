//! `/api/v1/notifications`: the bell.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use borcelle_store::notifications::{self, Notification};

use super::contacts::{page_size, query_error};
use crate::error::{AppError, AppResult};
use crate::http::access::Id;
use crate::http::extract::CurrentUser;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only the unread ones.
    unread: Option<bool>,
    /// Notifications to list (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationList {
    notifications: Vec<notifications::Notification>,
    /// How many of the caller's notifications are unread (all of them, not only this page's).
    unread: i64,
}

/// The caller's notifications, newest first
#[utoipa::path(
    get,
    path = "/notifications",
    operation_id = "list_notifications",
    tag = "notifications",
    params(ListParams),
    responses((status = 200, description = "The notifications and the unread count", body = NotificationList))
)]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AppResult<Json<NotificationList>> {
    let Query(params) = params.map_err(query_error)?;
    let limit = page_size(params.limit.as_deref())?;
    let items = notifications::list(&state.db, user.owner(), params.unread.unwrap_or(false), limit).await?;
    let unread = notifications::unread_count(&state.db, user.owner()).await?;
    Ok(Json(NotificationList { notifications: items, unread }))
}

/// Marks a notification read
#[utoipa::path(
    post,
    path = "/notifications/{id}/read",
    operation_id = "mark_notification_read",
    tag = "notifications",
    params(("id" = Uuid, Path, description = "The notification's id")),
    responses((status = 204, description = "Read"))
)]
pub async fn mark_read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Notification>,
) -> AppResult<StatusCode> {
    let id = id.get();
    if notifications::mark_read(&state.db, user.owner(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("notification"))
    }
}
