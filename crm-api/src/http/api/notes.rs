//! `/api/v1/notes`: private notes, and sending one to contacts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use borcelle_engine::messaging::{self, Outgoing, Queued, RecipientsInput};
use borcelle_store::notes::{self, Note};

use crate::error::{AppError, AppResult};
use crate::http::access::Id;
use crate::http::extract::{ApiJson, CurrentUser};
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// One line; the subject when the note is sent.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    #[schema(min_length = 1, max_length = 100000)]
    body: String,
}

#[derive(Serialize, ToSchema)]
pub struct NoteList {
    notes: Vec<Note>,
}

/// The caller's notes (the 500 most recently changed)
#[utoipa::path(
    get,
    path = "/notes",
    operation_id = "list_notes",
    tag = "notes",
    responses((status = 200, description = "The notes", body = NoteList))
)]
pub async fn list(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> AppResult<Json<NoteList>> {
    let notes = notes::list(&state.db, user.owner(), 500).await?;
    Ok(Json(NoteList { notes }))
}

/// Creates a note
#[utoipa::path(
    post,
    path = "/notes",
    operation_id = "create_note",
    tag = "notes",
    request_body = NoteBody,
    responses((status = 201, description = "The note", body = Note))
)]
pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<NoteBody>,
) -> AppResult<Response> {
    let (title, body) = messaging::content(&input.title, &input.body, "title", "body")?;
    let note = notes::insert(&state.db, Uuid::now_v7(), user.owner(), &title, &body).await?;
    Ok((StatusCode::CREATED, Json(note)).into_response())
}

/// One note
#[utoipa::path(
    get,
    path = "/notes/{id}",
    operation_id = "get_note",
    tag = "notes",
    params(("id" = Uuid, Path, description = "The note's id")),
    responses((status = 200, description = "The note", body = Note))
)]
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Note>,
) -> AppResult<Json<Note>> {
    let id = id.get();
    notes::get(&state.db, user.owner(), id).await?.map(Json).ok_or(AppError::not_found("note"))
}

/// The fields to change; absent ones stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotePatch {
    #[schema(min_length = 1, max_length = 200)]
    title: Option<String>,
    #[schema(min_length = 1, max_length = 100000)]
    body: Option<String>,
}

/// Changes a note's title or body
#[utoipa::path(
    patch,
    path = "/notes/{id}",
    operation_id = "update_note",
    tag = "notes",
    params(("id" = Uuid, Path, description = "The note's id")),
    request_body = NotePatch,
    responses((status = 200, description = "The note as changed", body = Note))
)]
pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Note>,
    ApiJson(patch): ApiJson<NotePatch>,
) -> AppResult<Json<Note>> {
    let id = id.get();
    let current = notes::get(&state.db, user.owner(), id).await?.ok_or(AppError::not_found("note"))?;
    let title = patch.title.unwrap_or(current.title);
    let body = patch.body.unwrap_or(current.body);
    let (title, body) = messaging::content(&title, &body, "title", "body")?;
    notes::update(&state.db, user.owner(), id, &title, &body).await?.map(Json).ok_or(AppError::not_found("note"))
}

/// Deletes a note
#[utoipa::path(
    delete,
    path = "/notes/{id}",
    operation_id = "delete_note",
    tag = "notes",
    params(("id" = Uuid, Path, description = "The note's id")),
    responses((status = 204, description = "Deleted"))
)]
pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Note>,
) -> AppResult<StatusCode> {
    let id = id.get();
    if notes::delete(&state.db, user.owner(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("note"))
    }
}

/// Who gets the note: contacts by id, or every contact with a tag (one of the two).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteSendBody {
    /// The caller's contacts (at most 10,000).
    #[serde(default)]
    contact_ids: Option<Vec<Uuid>>,
    /// Every contact of the caller with this tag.
    #[serde(default)]
    tag: Option<String>,
    /// The sender's attachments to carry, in order.
    #[serde(default)]
    attachment_ids: Vec<Uuid>,
}

/// Emails the note to contacts (ids or a tag), with attachments
#[utoipa::path(
    post,
    path = "/notes/{id}/send",
    operation_id = "send_note",
    tag = "notes",
    params(("id" = Uuid, Path, description = "The note's id")),
    request_body = NoteSendBody,
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 404, description = "The note, a contact or an attachment is not the caller's", body = ErrorBody),
        (status = 422, description = "No recipients, no contact has the tag, or the attachments are too large together; `field` names it", body = ErrorBody),
    )
)]
pub async fn send(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Note>,
    ApiJson(input): ApiJson<NoteSendBody>,
) -> AppResult<Response> {
    let id = id.get();
    let note = notes::get(&state.db, user.owner(), id).await?.ok_or(AppError::not_found("note"))?;
    let recipients = RecipientsInput { contact_ids: input.contact_ids, tag: input.tag }.validate()?;
    let outgoing = Outgoing {
        kind: "note",
        note_id: Some(note.id),
        subject: &note.title,
        body: &note.body,
        recipients,
        attachment_ids: &input.attachment_ids,
    };
    let queued = state.messaging.send(user.owner(), outgoing).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}
