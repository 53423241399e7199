//! `/api/v1/messages` and `/api/v1/contacts/{id}/messages`: sending and the delivery history.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use borcelle_engine::messaging::{self, Outgoing, Queued, RecipientsInput};
use borcelle_store::contacts::{self, Contact};
use borcelle_store::messages::{self, HistoryFilter, Message};

use super::contacts::{page_size, query_error};
use crate::error::{AppError, AppResult};
use crate::http::access::Id;
use crate::http::extract::{ApiJson, CurrentUser};
use crate::http::identity::Identity;
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

/// A message to contacts named by id, or to every contact with a tag (one of the two).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// The caller's contacts (at most 10,000).
    #[serde(default)]
    contact_ids: Option<Vec<Uuid>>,
    /// Every contact of the caller with this tag.
    #[serde(default)]
    tag: Option<String>,
    /// One line.
    #[schema(min_length = 1, max_length = 200)]
    subject: String,
    #[schema(min_length = 1, max_length = 100000)]
    body: String,
    /// The sender's attachments to carry, in order.
    #[serde(default)]
    attachment_ids: Vec<Uuid>,
}

/// Queues a message to one contact or many
///
/// One task, and one ledger row per recipient, are written before anything is sent; the task's
/// progress is at `GET /api/v1/tasks/{id}`.
#[utoipa::path(
    post,
    path = "/messages",
    operation_id = "send_message",
    tag = "messages",
    request_body = SendBody,
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 404, description = "A contact or attachment is not the caller's", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid, no contact has the tag, or the attachments are too large together; `field` names it", body = ErrorBody),
    )
)]
pub async fn send(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<SendBody>,
) -> AppResult<Response> {
    let (subject, body) = messaging::content(&input.subject, &input.body, "subject", "body")?;
    let recipients = RecipientsInput { contact_ids: input.contact_ids, tag: input.tag }.validate()?;
    let outgoing = Outgoing {
        kind: "message",
        note_id: None,
        subject: &subject,
        body: &body,
        recipients,
        attachment_ids: &input.attachment_ids,
    };
    let queued = state.messaging.send(user.owner(), outgoing).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}

/// A subject and body to show as one contact would receive them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// The caller's contact whose fields fill the merge fields.
    contact_id: Uuid,
    /// One line; may use merge fields such as `{{ contact.first_name }}`.
    #[schema(min_length = 1, max_length = 200)]
    subject: String,
    #[schema(min_length = 1, max_length = 100000)]
    body: String,
}

/// A message as one recipient receives it.
#[derive(Serialize, ToSchema)]
pub struct MessagePreview {
    subject: String,
    /// The text part.
    text: String,
    /// The HTML part.
    html: String,
}

/// Shows a message or note as one contact would receive it
///
/// The merge fields (`{{ contact.first_name }}`, `{{ contact.name }}`, `{{ contact.email }}`,
/// `{{ contact.company }}`, `{{ sender.name }}`, … with `| default("there")` for a missing value)
/// are filled from the contact and the caller; nothing is sent or stored. A template that a send
/// would refuse is refused here with the same answer.
#[utoipa::path(
    post,
    path = "/messages/preview",
    operation_id = "preview_message",
    tag = "messages",
    request_body = PreviewBody,
    responses(
        (status = 200, description = "The message as the contact would receive it", body = MessagePreview),
        (status = 404, description = "The contact is not the caller's", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid, or the template is (`field`, the position and the name say what)", body = ErrorBody),
    )
)]
pub async fn preview(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<PreviewBody>,
) -> AppResult<Json<MessagePreview>> {
    let (subject, body) = messaging::content(&input.subject, &input.body, "subject", "body")?;
    let contact = contacts::get(&state.db, user.owner(), input.contact_id)
        .await?
        .ok_or(AppError::Domain(borcelle_engine::Error::NotFound("contact")))?;
    let sender = borcelle_mail::merge::SenderFields { name: user.display_name.clone(), email: user.email.clone() };
    let rendered = messaging::preview(&contact, sender, &subject, &body)?;
    Ok(Json(MessagePreview { subject: rendered.subject, text: rendered.text, html: rendered.html }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only messages in this state.
    #[param(pattern = "^(queued|sending|sent|retrying|failed|suppressed|bounced)$")]
    status: Option<String>,
    /// Only messages to this contact.
    #[param(value_type = Option<Uuid>)]
    contact_id: Option<String>,
    /// Only messages of this task.
    #[param(value_type = Option<Uuid>)]
    task_id: Option<String>,
    /// Only messages queued at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    since: Option<String>,
    /// Only messages queued before this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    until: Option<String>,
    /// Messages per page (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of the delivery history, newest first.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    messages: Vec<Message>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

pub const STATUSES: [&str; 7] = ["queued", "sending", "sent", "retrying", "failed", "suppressed", "bounced"];

fn time(field: &str, raw: Option<&str>) -> AppResult<Option<DateTime<Utc>>> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| {
            AppError::validation(field, format!("{field} must be an RFC 3339 time, like 2026-11-24T09:00:00Z"))
        })
    })
    .transpose()
}

fn uuid_param(field: &str, raw: Option<&str>) -> AppResult<Option<Uuid>> {
    // The document's `format: uuid`: the 36-character hyphenated form.
    raw.map(|raw| {
        raw.parse()
            .ok()
            .filter(|_| raw.len() == 36)
            .ok_or_else(|| AppError::validation(field, format!("{field} must be an id")))
    })
    .transpose()
}

/// The cursor of the page after `last`.
pub fn encode_cursor(last: &borcelle_store::messages::Message) -> String {
    cursor_at(last.created_at, last.id)
}

/// The cursor of the page after the entry at this time with this id (what [`decode_cursor`] reads).
pub fn cursor_at(at: DateTime<Utc>, id: Uuid) -> String {
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    URL_SAFE_NO_PAD.encode(format!("{at}|{id}"))
}

pub fn decode_cursor(raw: &str) -> AppResult<(DateTime<Utc>, Uuid)> {
    let bad = || AppError::Domain(borcelle_engine::Error::UnknownCursor);
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    Ok((DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.with_timezone(&Utc), id.parse().map_err(|_| bad())?))
}

async fn history_page(state: &AppState, user: &Identity, filter: HistoryFilter) -> AppResult<Json<HistoryPage>> {
    let limit = filter.limit;
    let mut rows = messages::history(&state.db, user.owner(), &filter).await?;
    // A personalised subject as its recipient received it.
    let sender = borcelle_mail::merge::SenderFields { name: user.display_name.clone(), email: user.email.clone() };
    messaging::personal_subjects(&mut rows, &sender);
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(HistoryPage { messages: rows, next_cursor }))
}

fn filter_from(params: &HistoryParams) -> AppResult<HistoryFilter> {
    let status = match params.status.as_deref() {
        Some(s) if STATUSES.contains(&s) => Some(s.to_owned()),
        Some(_) => {
            return Err(AppError::validation("status", format!("status must be one of {}", STATUSES.join(", "))));
        }
        None => None,
    };
    Ok(HistoryFilter {
        status,
        contact_id: uuid_param("contact_id", params.contact_id.as_deref())?,
        task_id: uuid_param("task_id", params.task_id.as_deref())?,
        kind: None,
        to: None,
        since: time("since", params.since.as_deref())?,
        until: time("until", params.until.as_deref())?,
        before: params.cursor.as_deref().filter(|c| !c.trim().is_empty()).map(decode_cursor).transpose()?,
        limit: page_size(params.limit.as_deref())?,
    })
}

/// The caller's messages, newest first, filtered by status, contact, task or time
#[utoipa::path(
    get,
    path = "/messages",
    operation_id = "list_messages",
    tag = "messages",
    params(HistoryParams),
    responses(
        (status = 200, description = "A page of messages", body = HistoryPage),
        (status = 404, description = "No page starts at `cursor` (`cursor_not_found`)", body = ErrorBody),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> AppResult<Json<HistoryPage>> {
    let Query(params) = params.map_err(query_error)?;
    history_page(&state, &user, filter_from(&params)?).await
}

/// One contact's messages, newest first (the same filters as `GET /messages`)
#[utoipa::path(
    get,
    path = "/contacts/{id}/messages",
    operation_id = "list_contact_messages",
    tag = "messages",
    params(("id" = Uuid, Path, description = "The contact's id"), HistoryParams),
    responses(
        (status = 200, description = "A page of messages", body = HistoryPage),
        (status = 404, description = "No page starts at `cursor` (`cursor_not_found`)", body = ErrorBody),
    )
)]
pub async fn contact_timeline(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    contact: Id<Contact>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> AppResult<Json<HistoryPage>> {
    let id = contact.get();
    let Query(params) = params.map_err(query_error)?;
    if contacts::get(&state.db, user.owner(), id).await?.is_none() {
        return Err(AppError::not_found("contact"));
    }
    let mut filter = filter_from(&params)?;
    filter.contact_id = Some(id);
    history_page(&state, &user, filter).await
}

/// A message queued again.
#[derive(Serialize, ToSchema)]
pub struct Requeued {
    message_id: Uuid,
    /// `queued`.
    status: &'static str,
}

/// Sends a failed message again
#[utoipa::path(
    post,
    path = "/messages/{id}/retry",
    operation_id = "retry_message",
    tag = "messages",
    params(("id" = Uuid, Path, description = "The message's id")),
    responses(
        (status = 202, description = "Queued again", body = Requeued),
        (status = 409, description = "The message has not failed (`not_failed`)", body = ErrorBody),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    message: Id<Message>,
) -> AppResult<Response> {
    let id = message.get();
    let Some(status) = messages::status_of(&state.db, user.owner(), id).await? else {
        return Err(AppError::not_found("message"));
    };
    if status != "failed" {
        return Err(borcelle_engine::Error::Conflict {
            code: "not_failed",
            field: "status",
            message: format!("only failed messages can be retried; this one is {status}"),
            existing_id: None,
        }
        .into());
    }
    messages::retry_failed(&state.db, user.owner(), Some(id), None).await?;
    state.wake_delivery.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Requeued { message_id: id, status: "queued" })).into_response())
}
