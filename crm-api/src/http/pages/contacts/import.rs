//! `/contacts/import`: a CSV file upload and its report (created, updated, each rejected row).

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use borcelle_engine::Error as DomainError;
use borcelle_engine::contacts::csv::{self, RowError};

use crate::error::AppError;
use crate::http::pages::{FormState, Layout, PageError, PageUser, render};
use crate::state::AppState;

/// The multipart field that carries the CSV file.
const FILE_FIELD: &str = "file";
/// Largest CSV file the page accepts (as `POST /api/v1/contacts/import`).
const FILE_MAX: usize = 10 * 1024 * 1024;
/// The import route's body limit: the file and the multipart framing around it.
pub const IMPORT_BODY_MAX: usize = FILE_MAX + 64 * 1024;

/// What an import did.
struct Report {
    created: i64,
    updated: i64,
    errors: Vec<RowError>,
    /// Header → field, in field order.
    columns: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "pages/contacts_import.html")]
struct ImportPage {
    layout: Layout,
    form: FormState,
    report: Option<Report>,
}

pub async fn import_form(State(state): State<AppState>, PageUser(identity): PageUser) -> Response {
    let page = ImportPage { layout: Layout::new(&state, Some(&identity)), form: FormState::default(), report: None };
    render(page, StatusCode::OK)
}

fn file_error(message: impl Into<String>) -> AppError {
    AppError::validation(FILE_FIELD, message)
}

/// Reads the `file` field (other fields, like the CSRF token, are skipped), at most [`FILE_MAX`].
async fn read_file(multipart: Result<Multipart, MultipartRejection>) -> Result<Vec<u8>, AppError> {
    let mut multipart = multipart.map_err(|_| file_error("choose a CSV file to import"))?;
    let unreadable = |err: axum::extract::multipart::MultipartError| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::FieldTooLarge { field: FILE_FIELD, limit: FILE_MAX as u64 }
        } else {
            file_error(format!("the upload could not be read: {}", err.body_text()))
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
        if field.name() != Some(FILE_FIELD) {
            continue;
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
            if bytes.len() + chunk.len() > FILE_MAX {
                return Err(AppError::FieldTooLarge { field: FILE_FIELD, limit: FILE_MAX as u64 });
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() {
            return Err(file_error("the file is empty: choose a CSV file with a header row"));
        }
        return Ok(bytes);
    }
    Err(file_error("choose a CSV file to import"))
}

pub async fn import(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let refused = |layout, err: AppError| {
        let status = err.status();
        // Every problem of the file itself (a missing column included) is shown next to the file.
        let err = match err {
            AppError::Domain(DomainError::Invalid { field, message }) if field.starts_with("column.") => {
                file_error(message)
            }
            other => other,
        };
        let form = FormState::default().with_error(&err, &[FILE_FIELD]);
        render(ImportPage { layout, form, report: None }, status)
    };
    let bytes = match read_file(multipart).await {
        Ok(bytes) => bytes,
        Err(err) => return refused(layout, err),
    };
    // A file-level problem (not UTF-8, malformed, no email column) imports nothing.
    let plan = match csv::plan_import(&bytes, &HashMap::new()).map_err(AppError::from) {
        Ok(plan) => plan,
        Err(err) => return refused(layout, err),
    };
    let written = async {
        let mut tx = state.db.begin().await?;
        let counts = csv::write(&mut tx, identity.owner(), &plan).await?;
        tx.commit().await?;
        Ok::<_, borcelle_store::Error>(counts)
    };
    let (created, updated) = match written.await {
        Ok(counts) => counts,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    tracing::info!(created, updated, rejected = plan.errors.len(), "contacts imported from the page");
    let report = Report { created, updated, errors: plan.errors, columns: plan.mapping };
    render(ImportPage { layout, form: FormState::default(), report: Some(report) }, StatusCode::OK)
}
