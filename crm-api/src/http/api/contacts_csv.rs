//! `POST /api/v1/contacts/import` (CSV body) and `GET /api/v1/contacts/export` (streamed CSV).

use std::collections::HashMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use crate::contacts_csv::{self, export_header, export_rows};
use crate::db::contacts;
use crate::error::{AppError, AppResult};
use crate::http::extract::CurrentUser;
use crate::state::AppState;

/// Largest CSV file an import accepts.
pub const IMPORT_BYTES_MAX: usize = 10 * 1024 * 1024;
const EXPORT_CHUNK: i64 = 1000;

/// Imports contacts from a CSV body (`Content-Type: text/csv`). Query parameters
/// `column.<field>=<header>` map columns whose header is not recognised. Answers the counts and
/// the row-level errors; a file-level error imports nothing.
pub async fn import(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<Response> {
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    if !is_csv {
        return Err(AppError::UnsupportedMediaType("CSV (Content-Type: text/csv), UTF-8, with a header row"));
    }
    let body = body.map_err(|_| AppError::PayloadTooLarge { limit: IMPORT_BYTES_MAX })?;
    let mut overrides = HashMap::new();
    for (key, value) in params {
        match key.strip_prefix("column.") {
            Some(field) => {
                overrides.insert(field.to_owned(), value);
            }
            None => {
                return Err(AppError::validation(key, "unknown parameter; map columns with column.<field>=<header>"));
            }
        }
    }
    let plan = contacts_csv::plan_import(&body, &overrides)?;
    let (created, updated) =
        if plan.rows.is_empty() { (0, 0) } else { contacts::upsert_many(&state.db, user.user_id, &plan.rows).await? };
    let mapping: HashMap<String, String> = plan.mapping.into_iter().collect();
    tracing::info!(created, updated, rejected = plan.errors.len(), "contacts imported");
    Ok(Json(json!({ "created": created, "updated": updated, "errors": plan.errors, "columns": mapping }))
        .into_response())
}

/// Streams every contact of the user as CSV, a thousand rows at a time (bounded memory).
pub async fn export(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> Response {
    let owner = user.user_id;
    let chunks = futures::stream::unfold(Some(None::<(String, Uuid)>), move |cursor| {
        let db = state.db.clone();
        async move {
            let after = cursor?;
            let rows = match contacts::export_chunk(&db, owner, after.as_ref(), EXPORT_CHUNK).await {
                Ok(rows) => rows,
                Err(err) => return Some((Err(std::io::Error::other(err)), None)),
            };
            let next = if (rows.len() as i64) < EXPORT_CHUNK {
                None
            } else {
                rows.last().map(|last| Some((last.name.to_lowercase(), last.id)))
            };
            match export_rows(&rows) {
                Ok(bytes) if bytes.is_empty() => None,
                Ok(bytes) => Some((Ok(Bytes::from(bytes)), next)),
                Err(err) => Some((Err(std::io::Error::other(err)), None)),
            }
        }
    });
    let header = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from(export_header())) });
    let body = Body::from_stream(futures::StreamExt::chain(header, chunks));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"contacts.csv\""),
        ],
        body,
    )
        .into_response()
}
