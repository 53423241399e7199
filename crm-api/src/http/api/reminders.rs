//! `/api/v1/reminders`: the user's scheduled reminder emails (standalone: stored in PostgreSQL and
//! run by the in-process scheduler), in the ScheduledReminder resource's shape.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::contacts::query_error;
use crate::error::AppResult;
use crate::http::access::{Name, Reminder};
use crate::http::extract::{ApiJson, CurrentUser};
use crate::http::identity::Identity;
use crate::http::openapi::ErrorBody;
use crate::state::AppState;
use borcelle_engine::schedules::{self, Caller, ScheduleView, Scope};

/// `{name, spec}`: the spec as in a ScheduledReminder or Broadcast resource (a reminder's owner may
/// be left out: it is the caller).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ScheduleCreate)]
pub struct CreateBody {
    /// A DNS label: 1 to 63 lowercase letters, digits and dashes (a reminder's at most 54).
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", max_length = 63)]
    pub name: String,
    /// The spec of a ScheduledReminder or Broadcast resource.
    #[schema(value_type = Object)]
    pub spec: Value,
}

/// `{spec}`: a JSON merge patch of the spec (e.g. `{"spec": {"suspend": true}}`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SchedulePatch)]
pub struct PatchBody {
    /// A JSON merge patch (RFC 7386) of the spec: objects merge, `null` removes, anything else replaces.
    #[schema(value_type = Object)]
    pub spec: Value,
}

#[derive(Serialize, ToSchema)]
pub struct ReminderList {
    reminders: Vec<ScheduleView>,
}

/// The caller's reminders
#[utoipa::path(
    get,
    path = "/reminders",
    operation_id = "list_reminders",
    tag = "reminders",
    responses((status = 200, description = "The reminders", body = ReminderList))
)]
pub async fn list(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> AppResult<Json<ReminderList>> {
    let reminders = state.schedules.list(Scope::reminders(user.owner())).await?;
    Ok(Json(ReminderList { reminders }))
}

/// Creates a reminder: an email sent to contacts on a schedule
///
/// The spec is a ScheduledReminder's (`recipients`, `subject`, `body` or `noteId`, `schedule`,
/// `timeZone`, `suspend`, …); its `owner` is the caller and may be left out.
#[utoipa::path(
    post,
    path = "/reminders",
    operation_id = "create_reminder",
    tag = "reminders",
    request_body(content = CreateBody, example = json!({
        "name": "weekly-report",
        "spec": {
            "recipients": {"emails": ["team@example.com"]},
            "subject": "Weekly report",
            "body": "Time for the weekly report.",
            "schedule": "0 9 * * 1",
            "timeZone": "Europe/Paris"
        }
    })),
    responses(
        (status = 201, description = "The reminder", body = ScheduleView),
        (status = 404, description = "A note, contact or attachment of the spec is not the caller's", body = ErrorBody),
        (status = 409, description = "The caller has a reminder with this name (`name_taken`)", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> AppResult<Response> {
    let view = state.schedules.create(Scope::reminders(user.owner()), &caller(&user), &body.name, body.spec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// One reminder, with its status
#[utoipa::path(
    get,
    path = "/reminders/{name}",
    operation_id = "get_reminder",
    tag = "reminders",
    params(("name" = String, Path, description = "The reminder's name")),
    responses((status = 200, description = "The reminder", body = ScheduleView))
)]
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    name: Name<Reminder>,
) -> AppResult<Response> {
    let view = state.schedules.get(Scope::reminders(user.owner()), name.as_str()).await?;
    Ok(Json(view).into_response())
}

/// Changes a reminder's spec with a JSON merge patch, e.g. `{"spec": {"suspend": true}}`
#[utoipa::path(
    patch,
    path = "/reminders/{name}",
    operation_id = "update_reminder",
    tag = "reminders",
    params(("name" = String, Path, description = "The reminder's name")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "The reminder as changed", body = ScheduleView),
        (status = 404, description = "No such reminder, or a note, contact or attachment of the spec is not the caller's", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    name: Name<Reminder>,
    ApiJson(body): ApiJson<PatchBody>,
) -> AppResult<Response> {
    let view = state.schedules.patch(Scope::reminders(user.owner()), &caller(&user), name.as_str(), &body.spec).await?;
    Ok(Json(view).into_response())
}

/// Deletes a reminder
#[utoipa::path(
    delete,
    path = "/reminders/{name}",
    operation_id = "delete_reminder",
    tag = "reminders",
    params(("name" = String, Path, description = "The reminder's name")),
    responses((status = 204, description = "Deleted"))
)]
pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    name: Name<Reminder>,
) -> AppResult<StatusCode> {
    state.schedules.delete(Scope::reminders(user.owner()), name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct PreviewQuery {
    /// A 5-field cron expression, or `@hourly`, `@daily`, `@weekly`, `@monthly`.
    schedule: String,
    /// An IANA time zone (default `UTC`).
    #[serde(default)]
    time_zone: Option<String>,
    /// How many runs (default 5, at most 20).
    #[serde(default)]
    #[param(minimum = 1, maximum = 20)]
    count: Option<usize>,
}

/// The next runs of a schedule.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    runs: Vec<DateTime<Utc>>,
    time_zone: String,
}

/// The next runs of a schedule in a time zone (a preview while typing it)
#[utoipa::path(
    get,
    path = "/reminders/preview",
    operation_id = "preview_schedule",
    tag = "reminders",
    params(PreviewQuery),
    responses((status = 200, description = "The next runs", body = Preview))
)]
pub async fn preview(
    CurrentUser(_user): CurrentUser,
    query: Result<Query<PreviewQuery>, QueryRejection>,
) -> AppResult<Json<Preview>> {
    let Query(query) = query.map_err(query_error)?;
    let runs = schedules::preview(&query.schedule, query.time_zone.as_deref(), query.count.unwrap_or(5))?;
    Ok(Json(Preview { runs, time_zone: query.time_zone.unwrap_or_else(|| "UTC".to_owned()) }))
}

/// The caller of a schedule request: the account that creates or changes it.
pub fn caller(user: &Identity) -> Caller<'_> {
    Caller { id: user.owner(), email: &user.email }
}
