//! `/notifications`: the bell's list (broadcasts, finished sends, reminder reports), with mark-read.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Layout, PageError, PageUser, render};
use crate::error::AppError;
use crate::http::access::Id;
use crate::state::AppState;
use borcelle_store::notifications::{self, Notification};

/// Most notifications on the page.
const SHOWN: i64 = 100;

#[derive(Template)]
#[template(path = "pages/notifications.html")]
struct NotificationsPage {
    layout: Layout,
    notifications: Vec<Notification>,
}

pub async fn list(State(state): State<AppState>, PageUser(identity): PageUser) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    match notifications::list(&state.db, identity.owner(), false, SHOWN).await {
        Ok(notifications) => render(NotificationsPage { layout, notifications }, StatusCode::OK),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

/// Marks one notification read (the form carries the CSRF token), then back to the list.
pub async fn mark_read(State(state): State<AppState>, PageUser(identity): PageUser, id: Id<Notification>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    match notifications::mark_read(&state.db, identity.owner(), id.get()).await {
        Ok(true) => Redirect::to("/notifications").into_response(),
        Ok(false) => PageError::new(layout, AppError::not_found("notification")).into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
