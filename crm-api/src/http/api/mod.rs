//! The JSON API under `/api/v1`, each route registered together with its OpenAPI description.

mod attachments;
mod auth;
mod broadcasts;
pub mod contacts;
mod contacts_csv;
pub mod messages;
mod notes;
mod notifications;
pub mod reminders;
mod replies;
mod suppressions;
mod tasks;
pub use auth::REGISTER_ANSWER;
pub use outbox::may_read_outbox;
mod outbox;
mod tokens;
mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::openapi::{self, Document};
use crate::config::Settings;
use crate::error::AppError;
use crate::state::AppState;

/// Where the API is mounted.
pub const PREFIX: &str = "/api/v1";

/// The API's routes, relative to [`PREFIX`]. Only `routes!` registers a route here, so that no
/// route goes undocumented (a test compares the routes with the document).
pub fn router(settings: &Settings) -> OpenApiRouter<AppState> {
    // Uploads get their own body limit, derived from the attachment limit (the rest of the API
    // keeps BORCELLE_BODY_LIMIT).
    let upload_limit = settings.storage.attachment_max_bytes.saturating_add(attachments::MULTIPART_OVERHEAD);
    let upload_limit = usize::try_from(upload_limit).unwrap_or(usize::MAX);
    OpenApiRouter::default()
        .routes(routes!(openapi::serve))
        .routes(routes!(auth::register))
        .routes(routes!(auth::verify))
        .routes(routes!(auth::resend))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::forgot))
        .routes(routes!(auth::reset))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::session))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::remove))
        .routes(routes!(outbox::list))
        .routes(routes!(broadcasts::list, broadcasts::create))
        .routes(routes!(broadcasts::show, broadcasts::update, broadcasts::remove))
        .routes(routes!(reminders::list, reminders::create))
        .routes(routes!(reminders::preview))
        .routes(routes!(reminders::show, reminders::update, reminders::remove))
        .routes(routes!(contacts::list, contacts::create))
        .routes(routes!(contacts::autocomplete))
        .routes(routes!(contacts_csv::import).layer(DefaultBodyLimit::max(contacts_csv::IMPORT_BYTES_MAX)))
        .routes(routes!(contacts_csv::export))
        .routes(routes!(contacts::show, contacts::update, contacts::remove))
        .routes(routes!(messages::contact_timeline))
        .routes(routes!(replies::conversation))
        .routes(routes!(replies::show))
        .routes(routes!(replies::file))
        .routes(routes!(messages::history, messages::send))
        .routes(routes!(messages::preview))
        .routes(routes!(messages::retry))
        .routes(routes!(notes::list, notes::create))
        .routes(routes!(notes::show, notes::update, notes::remove))
        .routes(routes!(notes::send))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::show))
        .routes(routes!(tasks::retry_failed))
        .routes(routes!(notifications::list))
        .routes(routes!(notifications::mark_read))
        .routes(routes!(attachments::upload).layer(DefaultBodyLimit::max(upload_limit)))
        .routes(routes!(attachments::download))
        .routes(routes!(suppressions::list, suppressions::add))
        .routes(routes!(suppressions::show, suppressions::remove))
        .routes(routes!(webhooks::mailjet).layer(DefaultBodyLimit::max(webhooks::BODY_MAX)))
        .routes(routes!(webhooks::mailjet_parse).layer(DefaultBodyLimit::max(webhooks::PARSE_BODY_MAX)))
}

/// The API mounted at [`PREFIX`] (unknown routes under it answer a JSON 404), serving its own
/// document, and the document.
pub fn mounted(settings: &Settings) -> (Router<AppState>, OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(openapi::base())
        .nest(PREFIX, router(settings).fallback(not_found))
        .split_for_parts();
    let doc = openapi::finish(doc);
    // The served document also declares the input rules that utoipa's types cannot say.
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    super::openapi_rules::declare(&mut value);
    let json = serde_json::to_vec(&value).map(bytes::Bytes::from).unwrap_or_default();
    (router.layer(Extension(Document(json))), doc)
}

/// The document alone, as [`mounted`] serves it.
pub fn document(settings: &Settings) -> OpenApi {
    mounted(settings).1
}

async fn not_found() -> AppError {
    AppError::not_found("route")
}
