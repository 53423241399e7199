//! `/api/v1/notes`: private notes, and sending one to contacts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::db::notes::{self, Note};
use crate::error::{AppError, AppResult};
use crate::http::extract::{ApiJson, CurrentUser};
use crate::messaging::{self, Outgoing, RecipientsInput};
use crate::state::AppState;

fn note_id(raw: &str) -> AppResult<Uuid> {
    raw.parse().map_err(|_| AppError::NotFound("note"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    title: String,
    body: String,
}

pub async fn list(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> AppResult<Json<serde_json::Value>> {
    let notes = notes::list(&state.db, user.user_id, 500).await?;
    Ok(Json(json!({ "notes": notes })))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<NoteBody>,
) -> AppResult<Response> {
    let (title, body) = messaging::content(&input.title, &input.body, "title", "body")?;
    let note = notes::insert(&state.db, Uuid::now_v7(), user.user_id, &title, &body).await?;
    Ok((StatusCode::CREATED, Json(note)).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<Note>> {
    let id = note_id(&id)?;
    notes::get(&state.db, user.user_id, id).await?.map(Json).ok_or(AppError::NotFound("note"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotePatch {
    title: Option<String>,
    body: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<NotePatch>,
) -> AppResult<Json<Note>> {
    let id = note_id(&id)?;
    let current = notes::get(&state.db, user.user_id, id).await?.ok_or(AppError::NotFound("note"))?;
    let title = patch.title.unwrap_or(current.title);
    let body = patch.body.unwrap_or(current.body);
    let (title, body) = messaging::content(&title, &body, "title", "body")?;
    notes::update(&state.db, user.user_id, id, &title, &body).await?.map(Json).ok_or(AppError::NotFound("note"))
}

pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = note_id(&id)?;
    if notes::delete(&state.db, user.user_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("note"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteSendBody {
    #[serde(default)]
    contact_ids: Option<Vec<Uuid>>,
    #[serde(default)]
    tag: Option<String>,
    /// The sender's attachments to carry, in order.
    #[serde(default)]
    attachment_ids: Vec<Uuid>,
}

/// `POST /notes/{id}/send`: emails the note to contacts (ids or a tag), with attachments;
/// 202 with the task id.
pub async fn send(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<NoteSendBody>,
) -> AppResult<Response> {
    let id = note_id(&id)?;
    let note = notes::get(&state.db, user.user_id, id).await?.ok_or(AppError::NotFound("note"))?;
    let recipients = RecipientsInput { contact_ids: input.contact_ids, tag: input.tag }.validate()?;
    let outgoing = Outgoing {
        kind: "note",
        note_id: Some(note.id),
        subject: &note.title,
        body: &note.body,
        recipients,
        attachment_ids: &input.attachment_ids,
    };
    let queued = messaging::send(&state, user.user_id, outgoing).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}
