//! `/api/v1/admin/broadcasts`: notifications from the administrators to the users, now, at a time
//! or repeating (standalone: stored in PostgreSQL and run by the in-process scheduler), in the
//! Broadcast resource's shape. Administrators only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::reminders::{CreateBody, PatchBody};
use borcelle_engine::schedules::{ScheduleView, Scope};

use super::reminders::caller;
use crate::error::AppResult;
use crate::http::access::{Admin, Broadcast, Name};
use crate::http::extract::ApiJson;
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct BroadcastList {
    broadcasts: Vec<ScheduleView>,
}

/// Every broadcast
#[utoipa::path(
    get,
    path = "/admin/broadcasts",
    operation_id = "list_broadcasts",
    tag = "admin",
    responses(
        (status = 200, description = "The broadcasts", body = BroadcastList),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>, Admin(_): Admin) -> AppResult<Json<BroadcastList>> {
    let broadcasts = state.schedules.list(Scope::broadcasts()).await?;
    Ok(Json(BroadcastList { broadcasts }))
}

/// Creates a broadcast: a notification to users, now, at a time or repeating
///
/// The spec is a Broadcast's: `title`, `message`, `severity` (`info`, `warning`, `critical`),
/// `audience` (`{group: all | admins | users, users: [emails]}`), `channels` (`web`, `email`),
/// then nothing (now), `at` (RFC 3339) or `schedule` + `timeZone`, and `expiresAt`.
#[utoipa::path(
    post,
    path = "/admin/broadcasts",
    operation_id = "create_broadcast",
    tag = "admin",
    request_body(content = CreateBody, example = json!({
        "name": "maintenance",
        "spec": {
            "title": "Maintenance tonight",
            "message": "Borcelle will be read-only from 22:00 to 22:30 UTC.",
            "severity": "warning",
            "audience": {"group": "all"},
            "channels": ["web"]
        }
    })),
    responses(
        (status = 201, description = "The broadcast", body = ScheduleView),
        (status = 403, description = "Not an administrator, or refused by the CSRF guard", body = ErrorBody),
        (status = 409, description = "A broadcast has this name (`name_taken`)", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiJson(body): ApiJson<CreateBody>,
) -> AppResult<Response> {
    let view = state.schedules.create(Scope::broadcasts(), &caller(&user), &body.name, body.spec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// One broadcast, with its status
#[utoipa::path(
    get,
    path = "/admin/broadcasts/{name}",
    operation_id = "get_broadcast",
    tag = "admin",
    params(("name" = String, Path, description = "The broadcast's name")),
    responses(
        (status = 200, description = "The broadcast", body = ScheduleView),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    )
)]
pub async fn show(State(state): State<AppState>, Admin(_): Admin, name: Name<Broadcast>) -> AppResult<Response> {
    Ok(Json(state.schedules.get(Scope::broadcasts(), name.as_str()).await?).into_response())
}

/// Changes a broadcast's spec with a JSON merge patch
#[utoipa::path(
    patch,
    path = "/admin/broadcasts/{name}",
    operation_id = "update_broadcast",
    tag = "admin",
    params(("name" = String, Path, description = "The broadcast's name")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "The broadcast as changed", body = ScheduleView),
        (status = 403, description = "Not an administrator, or refused by the CSRF guard", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Admin(user): Admin,
    name: Name<Broadcast>,
    ApiJson(body): ApiJson<PatchBody>,
) -> AppResult<Response> {
    let view = state.schedules.patch(Scope::broadcasts(), &caller(&user), name.as_str(), &body.spec).await?;
    Ok(Json(view).into_response())
}

/// Cancels a broadcast: nothing more is delivered (notifications already delivered stay)
#[utoipa::path(
    delete,
    path = "/admin/broadcasts/{name}",
    operation_id = "delete_broadcast",
    tag = "admin",
    params(("name" = String, Path, description = "The broadcast's name")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 403, description = "Not an administrator, or refused by the CSRF guard", body = ErrorBody),
    )
)]
pub async fn remove(State(state): State<AppState>, Admin(_): Admin, name: Name<Broadcast>) -> AppResult<StatusCode> {
    state.schedules.delete(Scope::broadcasts(), name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}
