//! `POST /api/v1/contacts/import` (CSV body) and `GET /api/v1/contacts/export` (streamed CSV).

use std::collections::HashMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};
use crate::http::extract::CurrentUser;
use crate::http::openapi::ErrorBody;
use crate::state::AppState;
use borcelle_engine::contacts::csv::{self, RowError, export_header, export_rows};
use borcelle_store::contacts::{self, After, ListQuery, Sort, SortKey};

/// Largest CSV file an import accepts.
pub const IMPORT_BYTES_MAX: usize = 10 * 1024 * 1024;
const EXPORT_CHUNK: i64 = 1000;

/// What an import did.
#[derive(Serialize, ToSchema)]
pub struct ImportReport {
    /// Contacts created.
    created: i64,
    /// Existing contacts (same email) updated.
    updated: i64,
    /// Rows that were not imported, and why.
    errors: Vec<RowError>,
    /// Which header column fed each field.
    columns: HashMap<String, String>,
}

/// Imports contacts from a CSV file
///
/// The body is the file (`Content-Type: text/csv`, UTF-8, with a header row). Query parameters
/// `column.<field>=<header>` map columns whose header is not recognised (`field`: `name`,
/// `first_name`, `last_name`, `email`, `phone`, `company`, `address`, `tax_id`, `tags`, `notes`).
/// An empty cell keeps what an existing contact has; a contact created without a first or last
/// name gets both from its name. Answers the counts and the row-level errors; a file-level error
/// imports nothing.
#[utoipa::path(
    post,
    path = "/contacts/import",
    operation_id = "import_contacts",
    tag = "contacts",
    request_body(content = String, content_type = "text/csv", description = "The CSV file, at most 10 MiB",
        example = json!("name,email,tags\nAda Lovelace,ada@example.com,vip\n")),
    responses(
        (status = 200, description = "The counts and the rows that were not imported", body = ImportReport),
        (status = 422, description = "The file cannot be imported (no header, no email column, not UTF-8, …) or a query parameter is unknown; `field` names it", body = ErrorBody),
    )
)]
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
    let plan = csv::plan_import(&body, &overrides)?;
    let mut tx = state.db.begin().await?;
    let (created, updated) = csv::write(&mut tx, user.owner(), &plan).await?;
    tx.commit().await?;
    let mapping: HashMap<String, String> = plan.mapping.into_iter().collect();
    tracing::info!(created, updated, rejected = plan.errors.len(), "contacts imported");
    Ok(Json(ImportReport { created, updated, errors: plan.errors, columns: mapping }).into_response())
}

/// Every contact of the caller as a CSV file
///
/// Streamed a thousand rows at a time (bounded memory).
#[utoipa::path(
    get,
    path = "/contacts/export",
    operation_id = "export_contacts",
    tag = "contacts",
    responses((status = 200, description = "The CSV file, with a header row", content_type = "text/csv", body = String))
)]
pub async fn export(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> Response {
    let owner = user.owner();
    // The contacts page by page in name order, as the list walks them: every contact exactly once.
    let chunks = futures::stream::unfold(Some(None::<After>), move |cursor| {
        let db = state.db.clone();
        async move {
            let after = cursor?;
            let sort = Sort { key: SortKey::Name, descending: false };
            let query = ListQuery {
                sort,
                limit: EXPORT_CHUNK,
                after: after.as_ref(),
                search: None,
                tag: None,
                backward: false,
            };
            let listing = match contacts::list(&db, owner, &query).await {
                Ok(listing) => listing,
                Err(err) => return Some((Err(std::io::Error::other(err)), None)),
            };
            let rows = listing.contacts;
            let next = listing.next.map(Some);
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
