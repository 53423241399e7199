//! `/notes`: write notes and send one to contacts (by tag, or picked one by one with
//! autocomplete); the send runs in the background and the page shows a progress bar that the
//! tab's WebSocket drives to 100%, then the result with a retry for the failures.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use borcelle_engine::Error as DomainError;
use borcelle_engine::messaging::{self, Chosen, Outgoing, RecipientsInput};
use borcelle_store::contacts::{self, Selection};
use borcelle_store::notes::{self, Note};
use borcelle_store::tasks::Task;
use borcelle_store::{messages, tasks};

use super::{FormState, Layout, PageError, PageUser, render};
use crate::error::AppError;
use crate::http::access::Id;
use crate::http::extract::FormBody;
use crate::http::identity::Identity;
use crate::state::AppState;

const SHOWN: i64 = 500;

#[derive(Template)]
#[template(path = "pages/notes.html")]
struct NotesPage {
    layout: Layout,
    notes: Vec<Note>,
    form: FormState,
    notice: &'static str,
}

#[derive(Template)]
#[template(path = "pages/note.html")]
struct NotePage {
    layout: Layout,
    note: Note,
    form: FormState,
    send: FormState,
    task: Option<Task>,
}

async fn list_page(
    state: &AppState,
    identity: &Identity,
    form: FormState,
    notice: &'static str,
    status: StatusCode,
) -> Response {
    let layout = Layout::new(state, Some(identity));
    match notes::list(&state.db, identity.owner(), SHOWN).await {
        Ok(notes) => render(NotesPage { layout, notes, form, notice }, status),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

/// What the list says after a change (a redirect's query).
#[derive(Deserialize, Default)]
pub struct ListNotice {
    deleted: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    notice: Result<Query<ListNotice>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let deleted = notice.ok().is_some_and(|Query(n)| n.deleted.is_some());
    let notice = if deleted { "Note deleted." } else { "" };
    list_page(&state, &identity, FormState::default(), notice, StatusCode::OK).await
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
    let result = match messaging::content(&form.title, &form.body, "title", "body").map_err(AppError::from) {
        Ok((title, body)) => {
            notes::insert(&state.db, Uuid::now_v7(), identity.owner(), &title, &body).await.map_err(AppError::from)
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(note) => Redirect::to(&format!("/notes/{}", note.id)).into_response(),
        Err(err) => {
            let values = FormState::default().with_value("title", &form.title).with_value("body", &form.body);
            list_page(&state, &identity, values.with_error(&err, &["title", "body"]), "", err.status()).await
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
    id: &Id<Note>,
    task: Option<Uuid>,
    form: FormState,
    send: FormState,
    status: StatusCode,
) -> Response {
    let layout = Layout::new(state, Some(identity));
    let note = match notes::get(&state.db, identity.owner(), id.get()).await {
        Ok(Some(note)) => note,
        Ok(None) => return PageError::new(layout, AppError::not_found("note")).into_response(),
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let task = match task {
        Some(task) => match tasks::get(&state.db, identity.owner(), task).await {
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
    id: Id<Note>,
    Query(query): Query<ShowQuery>,
) -> Response {
    let task = query.task.and_then(|t| t.parse().ok());
    note_page(&state, &identity, &id, task, FormState::default(), FormState::default(), StatusCode::OK).await
}

pub async fn update(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    id: Id<Note>,
    FormBody(form): FormBody<NoteForm>,
) -> Response {
    let result = async {
        let (title, body) = messaging::content(&form.title, &form.body, "title", "body")?;
        notes::update(&state.db, identity.owner(), id.get(), &title, &body).await?.ok_or(AppError::not_found("note"))
    }
    .await;
    match result {
        Ok(note) => Redirect::to(&format!("/notes/{}", note.id)).into_response(),
        Err(err @ AppError::Domain(DomainError::NotFound(_))) => {
            PageError::new(Layout::new(&state, Some(&identity)), err).into_response()
        }
        Err(err) => {
            let values = FormState::default().with_value("title", &form.title).with_value("body", &form.body);
            let form = values.with_error(&err, &["title", "body"]);
            note_page(&state, &identity, &id, None, form, FormState::default(), err.status()).await
        }
    }
}

pub async fn delete(State(state): State<AppState>, PageUser(identity): PageUser, id: Id<Note>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    match notes::delete(&state.db, identity.owner(), id.get()).await {
        Ok(true) => Redirect::to("/notes?deleted=1").into_response(),
        Ok(false) => PageError::new(layout, AppError::not_found("note")).into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct SendForm {
    /// Every contact with one of these tags (comma-separated)…
    #[serde(default)]
    tag: String,
    /// …or these contacts, picked with the autocomplete (comma-separated ids).
    #[serde(default)]
    contact_ids: String,
    /// `1` once the sender has seen the recipient count.
    #[serde(default)]
    confirmed: String,
}

pub async fn send(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    id: Id<Note>,
    FormBody(form): FormBody<SendForm>,
) -> Response {
    let owner = identity.owner();
    let result = async {
        let note = notes::get(&state.db, owner, id.get()).await?.ok_or(AppError::not_found("note"))?;
        let ids: Vec<Uuid> = form
            .contact_ids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| AppError::validation("contact_ids", "pick contacts from the suggestions")))
            .collect::<Result<_, _>>()?;
        let recipients = if ids.is_empty() && !form.tag.trim().is_empty() {
            Chosen::tags(&form.tag, "tag")?
        } else {
            RecipientsInput { contact_ids: (!ids.is_empty()).then_some(ids), tag: None }.validate()?
        };
        // Nothing is queued before the sender has seen how many contacts it goes to.
        if form.confirmed != "1" {
            let selection = match &recipients {
                Chosen::Contacts(ids) => Selection::Ids(ids),
                Chosen::Tags(tags) => Selection::AnyTag(tags),
            };
            let count = contacts::count_selected(&state.db, owner, selection).await?;
            if count == 0 {
                return Err(AppError::Domain(DomainError::NothingNamed {
                    field: "tag",
                    message: "no contact has this tag (or any of these tags)".into(),
                }));
            }
            return Ok(Sent::Confirm(note, count));
        }
        let outgoing = Outgoing {
            kind: "note",
            note_id: Some(note.id),
            subject: &note.title,
            body: &note.body,
            recipients,
            attachment_ids: &[],
        };
        // The note's page shows the send's progress from its first chunk on: the rest of a large
        // send is written meanwhile.
        let started = state.messaging.start(owner, outgoing).await?;
        Ok::<_, AppError>(Sent::Queued(note.id, started.queued.task_id))
    }
    .await;
    match result {
        Ok(Sent::Queued(note, task)) => Redirect::to(&format!("/notes/{note}?task={task}")).into_response(),
        Ok(Sent::Confirm(note, count)) => {
            let layout = Layout::new(&state, Some(&identity));
            let page =
                ConfirmSend { layout, note, count, tag: form.tag.trim().to_owned(), contact_ids: form.contact_ids };
            render(page, StatusCode::OK)
        }
        Err(err @ AppError::Domain(DomainError::NotFound("note"))) => {
            PageError::new(Layout::new(&state, Some(&identity)), err).into_response()
        }
        Err(err) => {
            let send = FormState::default().with_value("tag", &form.tag).with_error(&err, &["tag", "contact_ids"]);
            note_page(&state, &identity, &id, None, FormState::default(), send, err.status()).await
        }
    }
}

/// What a send form led to: the confirmation (with the recipient count), or a queued send.
enum Sent {
    Confirm(Note, i64),
    Queued(Uuid, Uuid),
}

/// "Send this note to N contacts?": the second, deliberate POST queues it.
#[derive(Template)]
#[template(path = "pages/note_send.html")]
struct ConfirmSend {
    layout: Layout,
    note: Note,
    count: i64,
    tag: String,
    contact_ids: String,
}

impl ConfirmSend {
    fn contacts(&self) -> String {
        super::contacts_phrase(self.count)
    }
}

/// Sends the failed messages of a task again, then back to the note's progress.
pub async fn retry(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    // A segment that is not UTF-8 names nothing either.
    let (id, task) = path.map(|Path(ids)| ids).unwrap_or_default();
    // The note's id goes back into a redirect only once it reads as one: a stray character in
    // it never reaches a header.
    let (id, task) = match (Id::<Note>::parse(&id), Id::<Task>::parse(&task)) {
        (Ok(id), Ok(task)) => (id.get(), task.get()),
        (Err(err), _) | (_, Err(err)) => return PageError::new(layout, err).into_response(),
    };
    match tasks::get(&state.db, identity.owner(), task).await {
        Ok(Some(_)) => {}
        Ok(None) => return PageError::new(layout, AppError::not_found("task")).into_response(),
        Err(err) => return PageError::new(layout, err).into_response(),
    }
    match messages::retry_failed(&state.db, identity.owner(), None, Some(task)).await {
        Ok(_) => {
            state.wake_delivery.notify_one();
            Redirect::to(&format!("/notes/{id}?task={task}")).into_response()
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
