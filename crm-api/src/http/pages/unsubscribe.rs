//! `/unsubscribe/{token}`: the link every bulk email carries. `GET` asks to confirm (mail scanners
//! that open links must not unsubscribe anyone); `POST` unsubscribes at once without a session,
//! as RFC 8058's one-click `List-Unsubscribe-Post` requires of the mailbox providers' own button.
//! A link that is not valid or has expired does nothing and says so.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use borcelle_engine::consent::{self, LinkError, LinkSubject};

use super::{Layout, PageError, render};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "pages/unsubscribe.html")]
struct UnsubscribePage {
    layout: Layout,
    heading: String,
    text: String,
    /// Show the confirmation button (a valid link, still subscribed).
    confirm: bool,
    token: String,
}

/// The page a recipient's browser opens from the link.
pub async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let layout = Layout::new(&state, None);
    match consent::inspect(&state.db, &state.unsubscribe_links, &token).await {
        Ok(Ok(LinkSubject { already: true, email, sender })) => page(
            layout,
            "You are unsubscribed",
            format!("{email} no longer receives emails from {sender} through Borcelle."),
            None,
        ),
        Ok(Ok(LinkSubject { email, sender, .. })) => page(
            layout,
            "Unsubscribe?",
            format!("Stop emails from {sender} to {email}? You will not receive their emails through Borcelle again."),
            Some(token),
        ),
        Ok(Err(err)) => refused(layout, err),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

/// One click: from the confirmation page, or from the mailbox provider's own button (a `POST`
/// with `List-Unsubscribe=One-Click`, which is all the body may say).
pub async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let layout = Layout::new(&state, None);
    match consent::unsubscribe(&state.db, &state.unsubscribe_links, &token).await {
        Ok(Ok(LinkSubject { email, sender, .. })) => page(
            layout,
            "You are unsubscribed",
            format!("{email} will not receive emails from {sender} through Borcelle again."),
            None,
        ),
        Ok(Err(err)) => refused(layout, err),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

fn page(layout: Layout, heading: &str, text: String, confirm: Option<String>) -> Response {
    let page = UnsubscribePage {
        layout,
        heading: heading.to_owned(),
        text,
        confirm: confirm.is_some(),
        token: confirm.unwrap_or_default(),
    };
    render(page, StatusCode::OK)
}

fn refused(layout: Layout, err: LinkError) -> Response {
    let (status, heading) = match err {
        LinkError::Invalid => (StatusCode::NOT_FOUND, "This link is not valid"),
        LinkError::Expired => (StatusCode::GONE, "This link has expired"),
    };
    let page = UnsubscribePage {
        layout,
        heading: heading.to_owned(),
        text: err.to_string(),
        confirm: false,
        token: String::new(),
    };
    render(page, status)
}
