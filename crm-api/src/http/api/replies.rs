//! What came back from contacts: a contact's conversation in both directions, one inbound message,
//! and the files it carries — for their owner only (anyone else's are not found).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use borcelle_engine::attachments::{content_disposition, store_error};
use borcelle_engine::inbound::read;
use borcelle_store::contacts::{self, Contact};
use borcelle_store::inbound::{self, ConversationEntry, InboundMessage};

use super::contacts::{page_size, query_error};
use crate::error::{AppError, AppResult};
use crate::http::access::Id;
use crate::http::extract::CurrentUser;
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

/// Paging of a conversation.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationParams {
    /// Entries per page (1 to 200; 50 when absent).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// Where the page starts: a previous page's `next_cursor`.
    cursor: Option<String>,
}

/// A page of a contact's conversation, newest first.
#[derive(Serialize, ToSchema)]
pub struct ConversationPage {
    entries: Vec<ConversationEntry>,
    /// The next (older) page's cursor; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A contact's conversation: the messages sent to it and what came back, newest first
///
/// Outbound entries are ledger rows (their `state` is the delivery status); inbound ones are
/// replies, automatic answers, delivery reports and unsubscribe requests (their `state` is the
/// kind, `in_reply_to` the message they answer).
#[utoipa::path(
    get,
    path = "/contacts/{id}/conversation",
    operation_id = "contact_conversation",
    tag = "replies",
    params(("id" = Uuid, Path, description = "The contact's id"), ConversationParams),
    responses(
        (status = 200, description = "A page of the conversation", body = ConversationPage),
        (status = 404, description = "No such contact, or no page starts at `cursor`", body = ErrorBody),
    )
)]
pub async fn conversation(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    contact: Id<Contact>,
    params: Result<Query<ConversationParams>, QueryRejection>,
) -> AppResult<Json<ConversationPage>> {
    let id = contact.get();
    let Query(params) = params.map_err(query_error)?;
    let limit = page_size(params.limit.as_deref())?;
    let before =
        params.cursor.as_deref().filter(|c| !c.trim().is_empty()).map(super::messages::decode_cursor).transpose()?;
    if contacts::get(&state.db, user.owner(), id).await?.is_none() {
        return Err(AppError::not_found("contact"));
    }
    let mut entries = inbound::conversation(&state.db, user.owner(), id, before, limit + 1).await?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|last| super::messages::cursor_at(last.at, last.id))
    } else {
        None
    };
    Ok(Json(ConversationPage { entries, next_cursor }))
}

/// One inbound message: a reply (its new text, the quoted history apart, sanitised HTML), an
/// automatic answer, a delivery report (status and diagnostic) or an unsubscribe request
#[utoipa::path(
    get,
    path = "/replies/{id}",
    operation_id = "show_reply",
    tag = "replies",
    params(("id" = Uuid, Path, description = "The inbound message's id")),
    responses(
        (status = 200, description = "The inbound message", body = InboundMessage),
        (status = 404, description = "No such inbound message of the caller's", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<InboundMessage>,
) -> AppResult<Json<InboundMessage>> {
    let message = inbound::get(&state.db, user.owner(), id.get()).await?.ok_or(AppError::not_found("reply"))?;
    Ok(Json(message))
}

/// Downloads a file an inbound message carries
///
/// Read again from the message as it was received. Pictures (PNG, JPEG, GIF, WebP) are served
/// inline, for the message's HTML to show them; every other type as an attachment, and nothing
/// can run (sandboxed, `nosniff`).
#[utoipa::path(
    get,
    path = "/replies/{id}/files/{part}",
    operation_id = "download_reply_file",
    tag = "replies",
    params(
        ("id" = Uuid, Path, description = "The inbound message's id"),
        ("part" = i32, Path, description = "The file's `part`, as the message lists it"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "*/*", body = Vec<u8>),
        (status = 404, description = "No such file of the caller's", body = ErrorBody),
    )
)]
pub async fn file(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, part)): Path<(String, String)>,
) -> AppResult<Response> {
    let id = Id::<InboundMessage>::parse(&id)?.get();
    let part: i32 = part.parse().map_err(|_| AppError::not_found("file"))?;
    let stored = inbound::attachment(&state.db, user.owner(), id, part).await?.ok_or(AppError::not_found("file"))?;
    let raw_size = u64::try_from(stored.raw_size).unwrap_or(0);
    let raw = borcelle_engine::storage::get_bytes(state.store.as_ref(), &stored.raw_key, raw_size)
        .await
        .map_err(store_error)?;
    let index = u32::try_from(part).map_err(|_| AppError::not_found("file"))?;
    let bytes = tokio::task::spawn_blocking(move || read::part_bytes(&raw, index))
        .await
        .map_err(AppError::internal)?
        .ok_or(AppError::not_found("file"))?;
    let attachment = stored.attachment;
    let picture = matches!(attachment.content_type.as_str(), "image/png" | "image/jpeg" | "image/gif" | "image/webp");
    let (content_type, disposition) = if picture {
        (attachment.content_type.clone(), "inline".to_owned())
    } else {
        let content_type = if attachment.content_type.contains(['\r', '\n']) {
            borcelle_mail::UNKNOWN_TYPE.to_owned()
        } else {
            attachment.content_type.clone()
        };
        (content_type, content_disposition(&attachment.filename))
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox")
        .header(header::CACHE_CONTROL, "private, no-store")
        .body(Body::from(bytes))
        .map_err(AppError::internal)
}
