//! `/notes`: write notes and send one to contacts (by tag, or picked one by one with
//! autocomplete); the send runs in the background and the page shows a progress bar that the
//! tab's WebSocket drives to 100%, then the result with a retry for the failures.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::{FormState, Layout, PageError, PageUser, render};
use crate::db::notes::{self, Note};
use crate::db::{messages, tasks};
use crate::error::AppError;
use crate::http::extract::FormBody;
use crate::http::identity::Identity;
use crate::messaging::{self, Outgoing, RecipientsInput};
use crate::state::AppState;

const SHOWN: i64 = 500;

#[derive(Template)]
#[template(path = "pages/notes.html")]
struct NotesPage {
    layout: Layout,
    notes: Vec<Note>,
    form: FormState,
}

#[derive(Template)]
#[template(path = "pages/note.html")]
struct NotePage {
    layout: Layout,
    note: Note,
    form: FormState,
    send: FormState,
    task: Option<tasks::Task>,
}

fn note_id(raw: &str) -> Result<Uuid, AppError> {
    raw.parse().map_err(|_| AppError::NotFound("note"))
}

async fn list_page(state: &AppState, identity: &Identity, form: FormState, status: StatusCode) -> Response {
    let layout = Layout::new(state, Some(identity));
    match notes::list(&state.db, identity.user_id, SHOWN).await {
        Ok(notes) => render(NotesPage { layout, notes, form }, status),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

pub async fn list(State(state): State<AppState>, PageUser(identity): PageUser) -> Response {
    list_page(&state, &identity, FormState::default(), StatusCode::OK).await
}

#[derive(Deserialize, Default)]
pub struct NoteForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
}

pub async fn create(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    FormBody(form): FormBody<NoteForm>,
) -> Response {
    let result = match messaging::content(&form.title, &form.body, "title", "body") {
        Ok((title, body)) => {
            notes::insert(&state.db, Uuid::now_v7(), identity.user_id, &title, &body).await.map_err(AppError::from)
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(note) => Redirect::to(&format!("/notes/{}", note.id)).into_response(),
        Err(err) => {
            let values = FormState::default().with_value("title", &form.title).with_value("body", &form.body);
            list_page(&state, &identity, values.with_error(&err, &["title", "body"]), err.status()).await
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ShowQuery {
    /// The send just started, whose progress the page follows.
    #[serde(default)]
    task: Option<String>,
}

async fn note_page(
    state: &AppState,
    identity: &Identity,
    id: &str,
    task: Option<Uuid>,
    form: FormState,
    send: FormState,
    status: StatusCode,
) -> Response {
    let layout = Layout::new(state, Some(identity));
    let id = match note_id(id) {
        Ok(id) => id,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let note = match notes::get(&state.db, identity.user_id, id).await {
        Ok(Some(note)) => note,
        Ok(None) => return PageError::new(layout, AppError::NotFound("note")).into_response(),
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let task = match task {
        Some(task) => match tasks::get(&state.db, identity.user_id, task).await {
            Ok(task) => task.filter(|t| t.note_id == Some(note.id)),
            Err(err) => return PageError::new(layout, err).into_response(),
        },
        None => None,
    };
    render(NotePage { layout, note, form, send, task }, status)
}

pub async fn show(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Response {
    let task = query.task.and_then(|t| t.parse().ok());
    note_page(&state, &identity, &id, task, FormState::default(), FormState::default(), StatusCode::OK).await
}

pub async fn update(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    Path(id): Path<String>,
    FormBody(form): FormBody<NoteForm>,
) -> Response {
    let result = async {
        let id = note_id(&id)?;
        let (title, body) = messaging::content(&form.title, &form.body, "title", "body")?;
        notes::update(&state.db, identity.user_id, id, &title, &body).await?.ok_or(AppError::NotFound("note"))
    }
    .await;
    match result {
        Ok(note) => Redirect::to(&format!("/notes/{}", note.id)).into_response(),
        Err(err @ AppError::NotFound(_)) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
        Err(err) => {
            let values = FormState::default().with_value("title", &form.title).with_value("body", &form.body);
            let form = values.with_error(&err, &["title", "body"]);
            note_page(&state, &identity, &id, None, form, FormState::default(), err.status()).await
        }
    }
}

pub async fn delete(State(state): State<AppState>, PageUser(identity): PageUser, Path(id): Path<String>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let id = match note_id(&id) {
        Ok(id) => id,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    match notes::delete(&state.db, identity.user_id, id).await {
        Ok(true) => Redirect::to("/notes").into_response(),
        Ok(false) => PageError::new(layout, AppError::NotFound("note")).into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct SendForm {
    /// Every contact with this tag…
    #[serde(default)]
    tag: String,
    /// …or these contacts, picked with the autocomplete (comma-separated ids).
    #[serde(default)]
    contact_ids: String,
}

pub async fn send(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    Path(id): Path<String>,
    FormBody(form): FormBody<SendForm>,
) -> Response {
    let result = async {
        let id = note_id(&id)?;
        let note = notes::get(&state.db, identity.user_id, id).await?.ok_or(AppError::NotFound("note"))?;
        let ids: Vec<Uuid> = form
            .contact_ids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| AppError::validation("contact_ids", "pick contacts from the suggestions")))
            .collect::<Result<_, _>>()?;
        let tag = Some(form.tag.trim().to_owned()).filter(|t| !t.is_empty());
        let recipients = RecipientsInput { contact_ids: (!ids.is_empty()).then_some(ids), tag }.validate()?;
        let outgoing = Outgoing {
            kind: "note",
            note_id: Some(note.id),
            subject: &note.title,
            body: &note.body,
            recipients,
            attachment_ids: &[],
        };
        let queued = messaging::send(&state, identity.user_id, outgoing).await?;
        Ok::<_, AppError>((note.id, queued.task_id))
    }
    .await;
    match result {
        Ok((note, task)) => Redirect::to(&format!("/notes/{note}?task={task}")).into_response(),
        Err(err @ AppError::NotFound("note")) => {
            PageError::new(Layout::new(&state, Some(&identity)), err).into_response()
        }
        Err(err) => {
            let send = FormState::default().with_value("tag", &form.tag).with_error(&err, &["tag", "contact_ids"]);
            note_page(&state, &identity, &id, None, FormState::default(), send, err.status()).await
        }
    }
}

/// Sends the failed messages of a task again, then back to the note's progress.
pub async fn retry(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    Path((id, task)): Path<(String, String)>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let Ok(task) = task.parse::<Uuid>() else {
        return PageError::new(layout, AppError::NotFound("task")).into_response();
    };
    match tasks::get(&state.db, identity.user_id, task).await {
        Ok(Some(_)) => {}
        Ok(None) => return PageError::new(layout, AppError::NotFound("task")).into_response(),
        Err(err) => return PageError::new(layout, err).into_response(),
    }
    match messages::retry_failed(&state.db, identity.user_id, None, Some(task)).await {
        Ok(_) => {
            state.wake_delivery.notify_one();
            Redirect::to(&format!("/notes/{id}?task={task}")).into_response()
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
