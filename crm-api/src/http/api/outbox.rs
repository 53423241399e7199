//! `/api/v1/admin/outbox`: the dev outbox, for admins (everyone in dev mode).

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;

use crate::auth::validate;
use crate::db::outbox;
use crate::error::{AppError, AppResult};
use crate::http::extract::MaybeUser;
use crate::http::identity::Identity;
use crate::state::AppState;

/// Admins may read the outbox; in dev mode everyone may.
pub fn may_read_outbox(state: &AppState, identity: Option<&Identity>) -> Result<(), AppError> {
    match identity {
        _ if state.settings.dev_mode => Ok(()),
        Some(identity) if identity.is_admin() => Ok(()),
        Some(_) => Err(AppError::Forbidden("only admins may read the outbox")),
        None => Err(AppError::Unauthenticated),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    to: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<serde_json::Value>> {
    may_read_outbox(&state, identity.as_ref())?;
    let Query(query) = query.map_err(|err| AppError::validation("query", err.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::validation("limit", "limit must be between 1 and 200"));
    }
    let to = query.to.as_deref().map(|to| validate::email("to", to)).transpose()?;
    let messages = outbox::list(&state.db, to.as_deref(), limit).await?;
    Ok(Json(json!({ "messages": messages })))
}
