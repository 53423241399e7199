//! `/notifications`: the bell's list (broadcasts, finished sends, reminder reports), with mark-read.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use uuid::Uuid;

use super::{Layout, PageError, PageUser, render};
use crate::db::notifications::{self, Notification};
use crate::error::AppError;
use crate::state::AppState;

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
    match notifications::list(&state.db, identity.user_id, false, SHOWN).await {
        Ok(notifications) => render(NotificationsPage { layout, notifications }, StatusCode::OK),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

/// Marks one notification read (the form carries the CSRF token), then back to the list.
pub async fn mark_read(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    Path(id): Path<String>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let Ok(id) = id.parse::<Uuid>() else {
        return PageError::new(layout, AppError::NotFound("notification")).into_response();
    };
    match notifications::mark_read(&state.db, identity.user_id, id).await {
        Ok(true) => Redirect::to("/notifications").into_response(),
        Ok(false) => PageError::new(layout, AppError::NotFound("notification")).into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
