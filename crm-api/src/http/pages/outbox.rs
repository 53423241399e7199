//! The dev outbox pages.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{Layout, PageError, render};
use crate::error::AppError;
use crate::http::access::Id;
use crate::http::api::may_read_outbox;
use crate::http::extract::MaybeUser;
use crate::state::AppState;
use borcelle_store::outbox::{self, OutboxMessage};

#[derive(Template)]
#[template(path = "pages/outbox.html")]
struct OutboxPage {
    layout: Layout,
    messages: Vec<OutboxMessage>,
}

#[derive(Template)]
#[template(path = "pages/outbox_message.html")]
struct OutboxMessagePage {
    layout: Layout,
    message: OutboxMessage,
}

pub async fn list(State(state): State<AppState>, MaybeUser(identity): MaybeUser) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    if let Err(err) = may_read_outbox(&state, identity.as_ref()) {
        return PageError::new(layout, err).into_response();
    }
    match outbox::list(&state.db, None, 200).await {
        Ok(messages) => render(OutboxPage { layout, messages }, StatusCode::OK),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

pub async fn show(State(state): State<AppState>, MaybeUser(identity): MaybeUser, id: Id<OutboxMessage>) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    if let Err(err) = may_read_outbox(&state, identity.as_ref()) {
        return PageError::new(layout, err).into_response();
    }
    match outbox::get(&state.db, id.get()).await {
        Ok(Some(message)) => render(OutboxMessagePage { layout, message }, StatusCode::OK),
        Ok(None) => PageError::new(layout, AppError::not_found("message")).into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
