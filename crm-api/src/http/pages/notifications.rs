//! `/notifications`: the bell's list (broadcasts, finished sends, reminder reports), each linked to
//! what it is about, with mark-read and mark-all-read.

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Layout, PageError, PageUser, render};
use crate::error::AppError;
use crate::http::access::Id;
use crate::state::AppState;
use borcelle_store::notifications::{self, Notification};
use borcelle_store::tasks::{self, TaskLink};
use serde::Deserialize;
use uuid::Uuid;

/// Most notifications on the page.
const SHOWN: i64 = 100;

#[derive(Template)]
#[template(path = "pages/notifications.html")]
struct NotificationsPage {
    layout: Layout,
    notifications: Vec<Shown>,
    unread: usize,
    notice: String,
}

/// A notification with the page it is about, if any.
struct Shown {
    n: Notification,
    /// A path on this site, or empty.
    link: String,
    /// The link's text: what it opens.
    link_text: &'static str,
}

/// Where a notification leads: a finished send to its note or contact, a reply to itself on its
/// contact's page, a reminder's report to the reminders, a broadcast's report to the broadcasts
/// (for its administrator).
fn link_of(n: &Notification, tasks: &HashMap<Uuid, TaskLink>) -> (String, &'static str) {
    match n.kind.as_str() {
        "task_done" => match task_id(n).and_then(|id| tasks.get(&id)) {
            Some(TaskLink { task_id, note_id: Some(note), .. }) => {
                (format!("/notes/{note}?task={task_id}"), "Open the note")
            }
            Some(TaskLink { contact_id: Some(contact), .. }) => {
                (format!("/contacts/{contact}#timeline"), "Open the conversation")
            }
            Some(TaskLink { kind, .. }) if kind == "reminder" => ("/reminders".to_owned(), "Open the reminders"),
            _ => (String::new(), ""),
        },
        "reminder_skipped" | "occurrence_failed" if n.data.get("broadcast").is_none() => {
            ("/reminders".to_owned(), "Open the reminders")
        }
        "broadcast_done" => ("/admin/broadcasts".to_owned(), "Open the broadcasts"),
        "reply" => {
            let id = |key: &str| n.data.get(key).and_then(|v| v.as_str()).and_then(|v| v.parse::<Uuid>().ok());
            match (id("contact_id"), id("inbound_id")) {
                (Some(contact), Some(reply)) => (format!("/contacts/{contact}#reply-{reply}"), "Open the reply"),
                _ => (String::new(), ""),
            }
        }
        _ => (String::new(), ""),
    }
}

/// The send a finished send's notification is about.
fn task_id(n: &Notification) -> Option<Uuid> {
    let id = n.data.get("task_id")?.as_str()?.parse().ok()?;
    (n.kind == "task_done").then_some(id)
}

#[derive(Deserialize, Default)]
pub struct ListNotice {
    /// How many notifications "mark all read" marked.
    marked: Option<u64>,
}

pub async fn list(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    notice: Result<Query<ListNotice>, QueryRejection>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let notice = match notice.ok().and_then(|Query(n)| n.marked) {
        Some(1) => "1 notification marked read.".to_owned(),
        Some(n) => format!("{n} notifications marked read."),
        None => String::new(),
    };
    let listed = match notifications::list(&state.db, identity.owner(), false, SHOWN).await {
        Ok(listed) => listed,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    // The tasks of every finished send on the page, in one query.
    let task_ids: Vec<Uuid> = listed.iter().filter_map(task_id).collect();
    let tasks = match tasks::links(&state.db, identity.owner(), &task_ids).await {
        Ok(links) => links.into_iter().map(|link| (link.task_id, link)).collect::<HashMap<_, _>>(),
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let unread = listed.iter().filter(|n| n.read_at.is_none()).count();
    let notifications = listed
        .into_iter()
        .map(|n| {
            let (link, link_text) = link_of(&n, &tasks);
            Shown { n, link, link_text }
        })
        .collect();
    render(NotificationsPage { layout, notifications, unread, notice }, StatusCode::OK)
}

/// Marks every unread notification read, then back to the list, which says how many.
pub async fn mark_all_read(State(state): State<AppState>, PageUser(identity): PageUser) -> Response {
    match notifications::mark_all_read(&state.db, identity.owner()).await {
        Ok(marked) => Redirect::to(&format!("/notifications?marked={marked}")).into_response(),
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
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
