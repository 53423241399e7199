//! `/contacts/{id}`: a contact's details, its message timeline and a form to write to it.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::owned_contact;
use crate::error::AppError;
use crate::http::access::Id;
use crate::http::extract::FormBody;
use crate::http::identity::Identity;
use crate::http::pages::{FormState, Layout, PageError, PageUser, render};
use crate::state::AppState;
use borcelle_engine::messaging::{self, Chosen, Outgoing};
use borcelle_store::contacts::Contact;
use borcelle_store::inbound::{self, InboundMessage};
use borcelle_store::messages::{self, HistoryFilter, Message};
use borcelle_store::suppressions::Suppression;

/// Messages the timeline shows (the newest).
const TIMELINE_SIZE: i64 = 50;

/// One entry of the conversation, newest first.
pub enum Entry {
    /// A message sent to the contact, with what came back for it (oldest first).
    Sent { message: Box<Message>, replies: Vec<InboundMessage> },
    /// Mail whose message is not on the page (older than the timeline shows).
    Received(Box<InboundMessage>),
}

impl Entry {
    fn at(&self) -> chrono::DateTime<chrono::Utc> {
        match self {
            Entry::Sent { message, .. } => message.created_at,
            Entry::Received(inbound) => inbound.received_at,
        }
    }
}

/// The conversation: each reply under the message it answers, the others by time.
fn conversation(messages: Vec<Message>, mut inbound: Vec<InboundMessage>) -> Vec<Entry> {
    inbound.sort_by_key(|i| (i.received_at, i.id));
    let shown: std::collections::HashSet<uuid::Uuid> = messages.iter().map(|m| m.id).collect();
    let mut under: std::collections::HashMap<uuid::Uuid, Vec<InboundMessage>> = std::collections::HashMap::new();
    let mut entries = Vec::with_capacity(messages.len() + inbound.len());
    for reply in inbound {
        match reply.ledger_id.filter(|id| shown.contains(id)) {
            Some(id) => under.entry(id).or_default().push(reply),
            None => entries.push(Entry::Received(Box::new(reply))),
        }
    }
    for message in messages {
        let replies = under.remove(&message.id).unwrap_or_default();
        entries.push(Entry::Sent { message: Box::new(message), replies });
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.at()));
    entries
}

impl ShowPage {
    /// How an inbound message's kind is named on the page.
    fn kind_label(&self, kind: &str) -> &'static str {
        match kind {
            "reply" => "Reply",
            "auto_reply" => "Automatic reply",
            "bounce" => "Delivery report",
            "unsubscribe" => "Unsubscribe request",
            _ => "Report",
        }
    }

    /// A size in bytes as people read it.
    fn size_label(&self, bytes: &i64) -> String {
        match *bytes {
            n if n < 1024 => format!("{n} B"),
            n if n < 1024 * 1024 => format!("{:.0} KB", n as f64 / 1024.0),
            n => format!("{:.1} MB", n as f64 / (1024.0 * 1024.0)),
        }
    }
}

#[derive(Template)]
#[template(path = "pages/contacts_show.html")]
struct ShowPage {
    layout: Layout,
    contact: Contact,
    entries: Vec<Entry>,
    /// Whether the contact has any message or reply.
    empty: bool,
    /// Whether older messages exist beyond the timeline.
    more: bool,
    compose: FormState,
    notice: &'static str,
    /// Why Borcelle no longer mails this address for the owner, when it does not.
    suppression: Option<Suppression>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ShowParams {
    saved: Option<String>,
    sent: Option<String>,
    suppressed: Option<String>,
    resubscribed: Option<String>,
}

async fn show_page(
    state: &AppState,
    identity: &Identity,
    contact: Contact,
    compose: FormState,
    notice: &'static str,
    status: StatusCode,
) -> Response {
    let layout = Layout::new(state, Some(identity));
    let filter = HistoryFilter {
        status: None,
        contact_id: Some(contact.id),
        task_id: None,
        kind: None,
        to: None,
        since: None,
        until: None,
        before: None,
        limit: TIMELINE_SIZE,
    };
    let mut rows = match messages::history(&state.db, identity.owner(), &filter).await {
        Ok(rows) => rows,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let more = rows.len() as i64 > TIMELINE_SIZE;
    rows.truncate(TIMELINE_SIZE as usize);
    let sender =
        borcelle_mail::merge::SenderFields { name: identity.display_name.clone(), email: identity.email.clone() };
    messaging::personal_subjects(&mut rows, &sender);
    let inbound = match inbound::for_contact(&state.db, identity.owner(), contact.id, None, TIMELINE_SIZE).await {
        Ok(inbound) => inbound,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let suppression = match state.suppressions.find(identity.owner(), &contact.email).await {
        Ok(suppression) => suppression,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let empty = rows.is_empty() && inbound.is_empty();
    let entries = conversation(rows, inbound);
    render(ShowPage { layout, contact, entries, empty, more, compose, notice, suppression }, status)
}

/// Stops mailing this contact (the owner's hand-made suppression).
pub async fn suppress(State(state): State<AppState>, PageUser(identity): PageUser, id: Id<Contact>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let contact = match owned_contact(&state, identity.owner(), id, layout).await {
        Ok(contact) => contact,
        Err(response) => return response,
    };
    match state.suppressions.add(identity.owner(), &contact.email, Some("stopped by hand on the contact's page")).await
    {
        Ok(_) => Redirect::to(&format!("/contacts/{}?suppressed=1", contact.id)).into_response(),
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
    }
}

/// Mails this contact again: the owner's explicit re-subscription.
pub async fn resubscribe(State(state): State<AppState>, PageUser(identity): PageUser, id: Id<Contact>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let contact = match owned_contact(&state, identity.owner(), id, layout).await {
        Ok(contact) => contact,
        Err(response) => return response,
    };
    match state.suppressions.remove(identity.owner(), &contact.email).await {
        Ok(()) | Err(borcelle_engine::Error::NotFound(_)) => {
            Redirect::to(&format!("/contacts/{}?resubscribed=1", contact.id)).into_response()
        }
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
    }
}

pub async fn show(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    id: Id<Contact>,
    params: Result<Query<ShowParams>, QueryRejection>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let contact = match owned_contact(&state, identity.owner(), id, layout).await {
        Ok(contact) => contact,
        Err(response) => return response,
    };
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let notice = if params.sent.is_some() {
        "Message queued: its delivery shows in the timeline below."
    } else if params.saved.is_some() {
        "Contact saved."
    } else if params.suppressed.is_some() {
        "Borcelle will not email this contact any more."
    } else if params.resubscribed.is_some() {
        "This contact can be emailed again."
    } else {
        ""
    };
    show_page(&state, &identity, contact, FormState::default(), notice, StatusCode::OK).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ComposeForm {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    /// Ids of the attachments the page's script uploaded (comma-separated), in order.
    #[serde(default)]
    attachment_ids: String,
}

/// Sends a message to this contact through the same path as `POST /api/v1/messages`.
pub async fn send_message(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    id: Id<Contact>,
    FormBody(form): FormBody<ComposeForm>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let contact = match owned_contact(&state, identity.owner(), id, layout).await {
        Ok(contact) => contact,
        Err(response) => return response,
    };
    let values = FormState::default().with_value("subject", &form.subject).with_value("body", &form.body);
    let (subject, body) = match messaging::content(&form.subject, &form.body, "subject", "body").map_err(AppError::from)
    {
        Ok(content) => content,
        Err(err) => {
            let status = err.status();
            let compose = values.with_error(&err, &["subject", "body"]);
            return show_page(&state, &identity, contact, compose, "", status).await;
        }
    };
    let attachment_ids: Result<Vec<uuid::Uuid>, _> =
        form.attachment_ids.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect();
    let Ok(attachment_ids) = attachment_ids else {
        let err = AppError::validation("attachments", "the attachments could not be read: upload them again");
        let compose = values.with_error(&err, &["subject", "body", "attachments"]);
        return show_page(&state, &identity, contact, compose, "", StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let outgoing = Outgoing {
        kind: "message",
        note_id: None,
        subject: &subject,
        body: &body,
        recipients: Chosen::Contacts(vec![contact.id]),
        attachment_ids: &attachment_ids,
    };
    match state.messaging.send(identity.owner(), outgoing).await.map_err(AppError::from) {
        Ok(_) => Redirect::to(&format!("/contacts/{}?sent=1#timeline", contact.id)).into_response(),
        Err(err) if err.status().is_client_error() => {
            let status = err.status();
            let compose = values.with_error(&err, &["subject", "body", "attachments"]);
            show_page(&state, &identity, contact, compose, "", status).await
        }
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
    }
}
