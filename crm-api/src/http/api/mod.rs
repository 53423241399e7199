//! The JSON API under `/api/v1`.

mod attachments;
mod auth;
mod broadcasts;
pub mod contacts;
mod contacts_csv;
mod messages;
mod notes;
mod notifications;
mod reminders;
mod tasks;
pub use auth::REGISTER_ANSWER;
pub use outbox::may_read_outbox;
mod outbox;
mod tokens;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

use crate::config::Settings;
use crate::state::AppState;

pub fn router(settings: &Settings) -> Router<AppState> {
    // Uploads get their own body limit, derived from the attachment limit (the rest of the API
    // keeps BORCELLE_BODY_LIMIT).
    let upload_limit = settings.storage.attachment_max_bytes.saturating_add(attachments::MULTIPART_OVERHEAD);
    let upload_limit = usize::try_from(upload_limit).unwrap_or(usize::MAX);
    Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/verify", post(auth::verify))
        .route("/auth/resend", post(auth::resend))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/password/forgot", post(auth::forgot))
        .route("/auth/password/reset", post(auth::reset))
        .route("/auth/password/change", post(auth::change_password))
        .route("/auth/session", get(auth::session))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", delete(tokens::remove))
        .route("/admin/outbox", get(outbox::list))
        .route("/admin/broadcasts", get(broadcasts::list).post(broadcasts::create))
        .route("/admin/broadcasts/{name}", get(broadcasts::show).patch(broadcasts::update).delete(broadcasts::remove))
        .route("/reminders", get(reminders::list).post(reminders::create))
        .route("/reminders/preview", get(reminders::preview))
        .route("/reminders/{name}", get(reminders::show).patch(reminders::update).delete(reminders::remove))
        .route("/contacts", get(contacts::list).post(contacts::create))
        .route("/contacts/autocomplete", get(contacts::autocomplete))
        .route(
            "/contacts/import",
            post(contacts_csv::import).layer(axum::extract::DefaultBodyLimit::max(contacts_csv::IMPORT_BYTES_MAX)),
        )
        .route("/contacts/export", get(contacts_csv::export))
        .route("/contacts/{id}", get(contacts::show).patch(contacts::update).delete(contacts::remove))
        .route("/contacts/{id}/messages", get(messages::contact_timeline))
        .route("/messages", get(messages::history).post(messages::send))
        .route("/messages/{id}/retry", post(messages::retry))
        .route("/notes", get(notes::list).post(notes::create))
        .route("/notes/{id}", get(notes::show).patch(notes::update).delete(notes::remove))
        .route("/notes/{id}/send", post(notes::send))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/retry-failed", post(tasks::retry_failed))
        .route("/notifications", get(notifications::list))
        .route("/notifications/{id}/read", post(notifications::mark_read))
        .route("/attachments", post(attachments::upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/attachments/{id}", get(attachments::download))
}
