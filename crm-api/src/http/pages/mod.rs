//! Server-rendered HTML pages. They call the same account functions as the JSON API; field errors
//! are shown next to the field that caused them.

mod account;
mod auth;
mod broadcasts;
mod contacts;
mod messages;
mod notes;
mod notifications;
mod outbox;
mod reminders;
mod unsubscribe;
mod users;

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use borcelle_engine::Error as DomainError;

use super::identity::Identity;
use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(account::home))
        .route("/register", get(auth::register_form).post(auth::register))
        .route("/register/sent", get(auth::register_sent))
        .route("/verify", get(auth::verify_form).post(auth::verify))
        .route("/resend", post(auth::resend))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/forgot", get(auth::forgot_form).post(auth::forgot))
        .route("/reset", get(auth::reset_form).post(auth::reset))
        .route("/account", get(account::show))
        .route("/account/password", post(account::change_password))
        .route("/account/tokens", post(account::create_token))
        .route("/account/time-zone", post(account::set_time_zone))
        .route("/account/tokens/{id}/delete", post(account::revoke_token))
        .route("/notifications", get(notifications::list))
        .route("/notifications/{id}/read", post(notifications::mark_read))
        .route("/notifications/read", post(notifications::mark_all_read))
        .route("/admin/broadcasts", get(broadcasts::list).post(broadcasts::create))
        .route("/admin/broadcasts/{name}/delete", post(broadcasts::cancel))
        .route("/admin/users", get(users::list))
        .route("/admin/users/{id}/role", post(users::set_role))
        .route("/messages", get(messages::list))
        .route("/notes", get(notes::list).post(notes::create))
        .route("/notes/{id}", get(notes::show).post(notes::update))
        .route("/notes/{id}/delete", post(notes::delete))
        .route("/notes/{id}/send", post(notes::send))
        .route("/notes/{id}/tasks/{task}/retry", post(notes::retry))
        .route("/reminders", get(reminders::list).post(reminders::create))
        .route("/reminders/{name}/suspend", post(reminders::suspend))
        .route("/reminders/{name}/resume", post(reminders::resume))
        .route("/reminders/{name}/delete", post(reminders::delete))
        .route("/contacts", get(contacts::list))
        .route("/contacts/new", get(contacts::new_form).post(contacts::create))
        .route("/contacts/bulk", post(contacts::bulk))
        .route(
            "/contacts/import",
            get(contacts::import_form)
                .post(contacts::import)
                .layer(axum::extract::DefaultBodyLimit::max(contacts::IMPORT_BODY_MAX)),
        )
        .route("/contacts/{id}", get(contacts::show))
        .route("/contacts/{id}/edit", get(contacts::edit_form).post(contacts::update))
        .route("/contacts/{id}/delete", get(contacts::confirm_delete).post(contacts::delete))
        .route("/contacts/{id}/messages", post(contacts::send_message))
        .route("/contacts/{id}/suppression", post(contacts::suppress))
        .route("/contacts/{id}/suppression/delete", post(contacts::resubscribe))
        .route("/unsubscribe/{token}", get(unsubscribe::confirm).post(unsubscribe::unsubscribe))
        .route("/outbox", get(outbox::list))
        .route("/outbox/{id}", get(outbox::show))
        .route("/static/{file}", get(static_file))
}

/// What the shared layout shows: who is logged in, the CSRF token for its forms, the outbox and
/// admin links.
pub struct Layout {
    pub user: Option<String>,
    pub csrf: String,
    pub outbox: bool,
    pub admin: bool,
    /// The account's time zone (IANA), or "" for the browser's.
    pub tz: String,
}

impl Layout {
    pub fn new(state: &AppState, identity: Option<&Identity>) -> Self {
        Layout {
            user: identity.map(|i| i.display_name.clone()),
            csrf: identity.map(|i| i.csrf_token().to_owned()).unwrap_or_default(),
            outbox: state.settings.dev_mode || identity.is_some_and(Identity::is_admin),
            admin: identity.is_some_and(Identity::is_admin),
            tz: identity.and_then(|i| i.time_zone.clone()).unwrap_or_default(),
        }
    }
}

/// Names a schedule rule's error after the form's field: the first `(spec path, field)` whose
/// path is the error's field or a prefix of it (`spec.recipients.tag` → `recipients`).
/// The form field of a spec path: the first of `fields` that is the path or a parent of it.
fn on_form(field: &str, fields: &[(&str, &'static str)]) -> String {
    fields
        .iter()
        .find(|(path, _)| field == *path || field.strip_prefix(path).is_some_and(|rest| rest.starts_with('.')))
        .map_or_else(|| field.to_owned(), |(_, form_field)| (*form_field).to_owned())
}

pub fn spec_error_on_form(err: AppError, fields: &[(&str, &'static str)]) -> AppError {
    match err {
        AppError::Domain(DomainError::Invalid { field, message }) => {
            AppError::validation(on_form(&field, fields), message)
        }
        AppError::Domain(DomainError::InvalidFields(errors)) => AppError::Domain(DomainError::InvalidFields(
            errors.into_iter().map(|(field, message)| (on_form(&field, fields), message)).collect(),
        )),
        // Something the owner does not have (a contact, a tag): shown at its field too.
        AppError::Domain(DomainError::NothingNamed { field, message }) => {
            AppError::validation(on_form(field, fields), message)
        }
        other => other,
    }
}

/// Submitted values and the errors to show: each next to its field, or one at the top.
#[derive(Default)]
pub struct FormState {
    values: HashMap<&'static str, String>,
    /// `(field, message)` for every wrong field the form has.
    errors: Vec<(String, String)>,
    /// What is not about one of the form's fields.
    general: String,
}

impl FormState {
    pub fn with_value(mut self, name: &'static str, value: &str) -> Self {
        self.values.insert(name, value.to_owned());
        self
    }

    /// Keeps what was typed in each of these fields.
    pub fn with_values(self, values: &[(&'static str, &str)]) -> Self {
        values.iter().fold(self, |form, (name, value)| form.with_value(name, value))
    }

    /// Places each of the error's field errors next to its field when the form has that field;
    /// the rest (or an error without a field) is said at the top.
    pub fn with_error(mut self, err: &AppError, fields: &[&str]) -> Self {
        self.errors.clear();
        self.general.clear();
        let mut elsewhere = Vec::new();
        for (field, message) in err.field_errors() {
            if fields.contains(&field) {
                self.errors.push((field.to_owned(), message));
            } else {
                elsewhere.push(message);
            }
        }
        if self.errors.is_empty() && elsewhere.is_empty() {
            self.general = err.message();
        } else {
            self.general = elsewhere.join("; ");
        }
        self
    }

    pub fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    pub fn err(&self, name: &str) -> &str {
        self.errors.iter().find(|(field, _)| field == name).map_or("", |(_, message)| message.as_str())
    }

    pub fn general(&self) -> &str {
        &self.general
    }

    /// How many fields are wrong (the form's summary says so when there are several).
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }
}

#[derive(Template)]
#[template(path = "pages/notice.html")]
pub struct Notice {
    pub layout: Layout,
    pub heading: String,
    pub text: String,
    pub resend_email: Option<String>,
    pub action: Option<(&'static str, &'static str)>,
}

impl Notice {
    /// A notice page with a heading, a sentence and a way on.
    pub fn page(layout: Layout, heading: &str, text: &str, action: Option<(&'static str, &'static str)>) -> Response {
        let notice = Notice { layout, heading: heading.to_owned(), text: text.to_owned(), resend_email: None, action };
        render(notice, StatusCode::OK)
    }
}

/// `path?…` with the parameters that are not empty, URL-encoded: the links of the lists, whose
/// filters live in their address.
pub fn link(path: &str, params: &[(impl AsRef<str>, impl AsRef<str>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in params.iter().filter(|(_, v)| !v.as_ref().is_empty()) {
        query.append_pair(key.as_ref(), value.as_ref());
    }
    let query = query.finish();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
}

/// "1 contact", "30 contacts".
pub fn contacts_phrase(n: impl Into<i64>) -> String {
    let n = n.into();
    if n == 1 { "1 contact".to_owned() } else { format!("{n} contacts") }
}

/// Renders a template, or a plain 500 when rendering fails.
pub fn render(template: impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// An error shown as a page with the error's status.
pub struct PageError {
    layout: Layout,
    error: AppError,
}

impl PageError {
    pub fn new(layout: Layout, error: impl Into<AppError>) -> Self {
        PageError { layout, error: error.into() }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        if status.is_server_error() {
            tracing::error!(error = ?self.error, "page failed");
        }
        let heading = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let text =
            if status.is_server_error() { "Please try again in a moment.".to_owned() } else { self.error.message() };
        let notice = Notice {
            layout: self.layout,
            heading: heading.to_owned(),
            text,
            resend_email: None,
            action: Some(("/", "Go home")),
        };
        let mut response = render(notice, status);
        if let AppError::Domain(DomainError::Throttled { retry_after_secs }) = self.error {
            response.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.max(1).into());
        }
        response
    }
}

/// A logged-in visitor; anyone else is sent to the login page and brought back afterwards.
pub struct PageUser(pub Identity);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return Ok(PageUser(identity.clone()));
        }
        let uri = OriginalUri::from_request_parts(parts, state).await.map(|OriginalUri(uri)| uri);
        let next = uri
            .ok()
            .and_then(|u| u.path_and_query().map(|pq| pq.as_str().to_owned()))
            .unwrap_or_else(|| "/".to_owned());
        let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("next", &next).finish();
        Err(Redirect::to(&format!("/login?{query}")))
    }
}

/// A redirect target from a form, limited to paths on this site: one leading `/`, no backslash,
/// no control character or space (browsers drop those, turning `/\t/x` into `//x`).
pub fn local_path(next: &str) -> &str {
    let second = next.chars().nth(1);
    let safe = next.starts_with('/')
        && !matches!(second, Some('/') | Some('\\'))
        && !next.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if safe { next } else { "/" }
}

/// An error raised before a page handler ran (a CSRF refusal), shown as a page.
pub fn error_page(state: &AppState, err: AppError) -> Response {
    let layout =
        Layout { user: None, csrf: String::new(), outbox: state.settings.dev_mode, admin: false, tz: String::new() };
    PageError::new(layout, err).into_response()
}

/// An error shown as a page for the visitor it is about (their layout: name, links).
pub fn error_page_for(state: &AppState, identity: Option<&Identity>, err: AppError) -> Response {
    PageError::new(Layout::new(state, identity), err).into_response()
}

/// The static assets, embedded in the binary: no CDN, no download at run time.
const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../../static/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/app.js")),
    ("compose.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/compose.js")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../../static/favicon.svg")),
    ("home.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/home.js")),
    ("notes.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/notes.js")),
    ("preview.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/preview.js")),
    ("reminders.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/reminders.js")),
    ("contacts.css", "text/css; charset=utf-8", include_bytes!("../../../static/contacts.css")),
    ("contacts.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/contacts.js")),
];

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=3600")], *bytes)
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The page for unknown paths.
pub fn not_found(state: &AppState, identity: Option<&Identity>) -> Response {
    PageError::new(Layout::new(state, identity), AppError::not_found("page")).into_response()
}

#[cfg(test)]
mod spec_field_tests {
    use super::*;

    fn field_of(spec_field: &str) -> String {
        let fields: &[(&str, &'static str)] = &[("spec.at", "at"), ("spec.recipients", "recipients")];
        spec_error_on_form(AppError::validation(spec_field, "bad"), fields).field().unwrap_or_default().to_owned()
    }

    #[test]
    fn spec_errors_land_on_their_form_field_by_whole_path_segments() {
        assert_eq!(field_of("spec.at"), "at");
        assert_eq!(field_of("spec.recipients.contactIds"), "recipients");
        assert_eq!(field_of("spec.attachments"), "spec.attachments", "spec.at is not a prefix of spec.attachments");
    }
}
