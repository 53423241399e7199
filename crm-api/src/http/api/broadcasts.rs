//! `/api/v1/admin/broadcasts`: notifications from the administrators to the users, now, at a time
//! or repeating (standalone: stored in PostgreSQL and run by the in-process scheduler), in the
//! Broadcast resource's shape. Administrators only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::reminders::{CreateBody, PatchBody};
use crate::error::{AppError, AppResult};
use crate::http::extract::{ApiJson, CurrentUser};
use crate::http::identity::Identity;
use crate::schedules::{self, Scope};
use crate::state::AppState;

fn admin(user: &Identity) -> AppResult<()> {
    if user.is_admin() { Ok(()) } else { Err(AppError::Forbidden("only administrators manage broadcasts")) }
}

pub async fn list(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> AppResult<Json<Value>> {
    admin(&user)?;
    let items = schedules::list(&state, Scope::broadcasts()).await?;
    Ok(Json(json!({ "broadcasts": items })))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> AppResult<Response> {
    admin(&user)?;
    let view = schedules::create(&state, Scope::broadcasts(), user.user_id, &user.email, &body.name, body.spec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> AppResult<Response> {
    admin(&user)?;
    Ok(Json(schedules::get(&state, Scope::broadcasts(), &name).await?).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> AppResult<Response> {
    admin(&user)?;
    let view = schedules::patch(&state, Scope::broadcasts(), user.user_id, &user.email, &name, body.spec).await?;
    Ok(Json(view).into_response())
}

/// Cancels a broadcast: nothing more is delivered (notifications already delivered stay).
pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    admin(&user)?;
    schedules::delete(&state, Scope::broadcasts(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
