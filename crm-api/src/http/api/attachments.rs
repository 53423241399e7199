//! `/api/v1/attachments`: uploading a file (multipart, field `file`) and downloading it again,
//! for its owner only.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;

use borcelle_engine::attachments::{self, content_disposition, store_error};
use borcelle_store as db;
use borcelle_store::attachments::Attachment;

use crate::error::{AppError, AppResult};
use crate::http::access::Id;
use crate::http::extract::CurrentUser;
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

/// The multipart field that carries the file.
const FILE_FIELD: &str = "file";
/// Room in the upload route's body limit for the multipart framing around the file.
pub const MULTIPART_OVERHEAD: u64 = 16 * 1024;

fn too_large(state: &AppState) -> AppError {
    AppError::FieldTooLarge { field: FILE_FIELD, limit: state.settings.storage.attachment_max_bytes }
}

fn multipart_error(state: &AppState, err: MultipartError) -> AppError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(state)
    } else {
        AppError::MalformedBody(format!("the multipart body could not be read: {}", err.body_text()))
    }
}

/// A multipart upload: one part, named `file`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file's bytes; its name is kept (sanitised), its type is sniffed from the bytes.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Uploads a file to attach to messages
///
/// The file is read chunk by chunk and refused (413 naming `file`) as soon as it passes the
/// limit (`BORCELLE_ATTACHMENT_MAX_BYTES`), so no more than the limit is ever held; the type is
/// sniffed from the bytes.
#[utoipa::path(
    post,
    path = "/attachments",
    operation_id = "upload_attachment",
    tag = "attachments",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = db::attachments::Attachment),
        (status = 400, description = "The multipart body cannot be read", body = ErrorBody),
        (status = 413, description = "The file is larger than the limit (`field`: `file`)", body = ErrorBody),
        (status = 415, description = "The body is not `multipart/form-data`", body = ErrorBody),
        (status = 422, description = "No `file` part, another part, two files, or an empty file", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> AppResult<Response> {
    let mut multipart = multipart
        .map_err(|_| AppError::UnsupportedMediaType("multipart/form-data with the file in a field named `file`"))?;
    let limit = state.settings.storage.attachment_max_bytes;
    let mut file = None;
    while let Some(mut field) = multipart.next_field().await.map_err(|err| multipart_error(&state, err))? {
        let name = field.name().unwrap_or_default().to_owned();
        if name != FILE_FIELD {
            let field = if name.is_empty() { FILE_FIELD.to_owned() } else { name };
            return Err(AppError::validation(field, "unknown field: send the file in a field named `file`"));
        }
        if file.is_some() {
            return Err(AppError::validation(FILE_FIELD, "send one file per request"));
        }
        let filename = field.file_name().map(attachments::form_data_unescape);
        // The chunks as they arrive (no copying while the size is unknown), never more than the limit.
        let (mut chunks, mut size) = (Vec::new(), 0u64);
        while let Some(chunk) = field.chunk().await.map_err(|err| multipart_error(&state, err))? {
            size += chunk.len() as u64;
            if size > limit {
                return Err(too_large(&state));
            }
            chunks.push(chunk);
        }
        let mut bytes = BytesMut::with_capacity(chunks.iter().map(|c| c.len()).sum());
        for chunk in chunks {
            bytes.extend_from_slice(&chunk);
        }
        file = Some((filename, bytes.freeze()));
    }
    let Some((filename, bytes)) = file else {
        return Err(AppError::validation(FILE_FIELD, "send the file in a multipart field named `file`"));
    };
    if bytes.is_empty() {
        return Err(AppError::validation(FILE_FIELD, "the file is empty"));
    }
    // Spawned (and tracked, so shutdown waits for it) so that a client hanging up cannot
    // interrupt it between storing the object and writing its row: both exist afterwards, or neither.
    let saving = attachments::save(state.db.clone(), state.store.clone(), user.owner(), filename, bytes);
    let attachment = state
        .tasks
        .spawn(saving)
        .await
        .map_err(|err| AppError::internal(format!("storing the attachment stopped: {err}")))??;
    Ok((StatusCode::CREATED, Json(attachment)).into_response())
}

/// Downloads an attachment
///
/// The file's bytes, streamed from the store, as an attachment with the sniffed type. Another
/// user's attachment is not found.
#[utoipa::path(
    get,
    path = "/attachments/{id}",
    operation_id = "download_attachment",
    tag = "attachments",
    params(("id" = Uuid, Path, description = "The attachment's id")),
    responses((status = 200, description = "The file (`Content-Disposition: attachment`)", content_type = "*/*", body = Vec<u8>))
)]
pub async fn download(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    id: Id<Attachment>,
) -> AppResult<Response> {
    let id = id.get();
    let attachment =
        db::attachments::get(&state.db, user.owner(), id).await?.ok_or(AppError::not_found("attachment"))?;
    let stream = state.store.get(&attachment.object_key).await.map_err(store_error)?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &attachment.content_type)
        .header(header::CONTENT_LENGTH, attachment.size)
        .header(header::CONTENT_DISPOSITION, content_disposition(&attachment.filename))
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        // Even opened directly, the file can run nothing and load nothing.
        .header(header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox")
        .header(header::CACHE_CONTROL, "private, no-store")
        .body(Body::from_stream(stream))
        .map_err(AppError::internal)
}
