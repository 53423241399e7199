//! `/api/v1/reminders`: the user's scheduled reminder emails (standalone: stored in PostgreSQL and
//! run by the in-process scheduler), in the ScheduledReminder resource's shape.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::AppResult;
use crate::http::extract::{ApiJson, CurrentUser};
use crate::schedules::{self, Scope};
use crate::state::AppState;

/// `{name, spec}`: the spec as in a ScheduledReminder or Broadcast resource (a reminder's owner may
/// be left out: it is the caller).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub name: String,
    pub spec: Value,
}

/// `{spec}`: a JSON merge patch of the spec (e.g. `{"spec": {"suspend": true}}`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    pub spec: Value,
}

pub async fn list(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> AppResult<Json<Value>> {
    let items = schedules::list(&state, Scope::reminders(user.user_id)).await?;
    Ok(Json(json!({ "reminders": items })))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> AppResult<Response> {
    let scope = Scope::reminders(user.user_id);
    let view = schedules::create(&state, scope, user.user_id, &user.email, &body.name, body.spec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> AppResult<Response> {
    let view = schedules::get(&state, Scope::reminders(user.user_id), &name).await?;
    Ok(Json(view).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> AppResult<Response> {
    let view =
        schedules::patch(&state, Scope::reminders(user.user_id), user.user_id, &user.email, &name, body.spec).await?;
    Ok(Json(view).into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    schedules::delete(&state, Scope::reminders(user.user_id), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreviewQuery {
    schedule: String,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    count: Option<usize>,
}

/// `GET /reminders/preview?schedule=&timeZone=&count=`: the next runs (default 5, at most 20).
pub async fn preview(CurrentUser(_user): CurrentUser, Query(query): Query<PreviewQuery>) -> AppResult<Json<Value>> {
    let runs = schedules::preview(&query.schedule, query.time_zone.as_deref(), query.count.unwrap_or(5))?;
    Ok(Json(json!({ "runs": runs, "timeZone": query.time_zone.as_deref().unwrap_or("UTC") })))
}
