//! `/api/v1/admin/outbox`: the dev outbox, for admins (everyone in dev mode).

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, AppResult};
use crate::http::extract::MaybeUser;
use crate::http::identity::Identity;
use crate::http::openapi::ErrorBody;
use crate::state::AppState;
use borcelle_engine::validate;
use borcelle_store::outbox;

/// Admins may read the outbox; in dev mode everyone may.
pub fn may_read_outbox(state: &AppState, identity: Option<&Identity>) -> Result<(), AppError> {
    match identity {
        _ if state.settings.dev_mode => Ok(()),
        Some(identity) if identity.is_admin() => Ok(()),
        Some(_) => Err(AppError::forbidden("only admins may read the outbox")),
        None => Err(AppError::Unauthenticated),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only mail to this address.
    #[param(format = Email)]
    to: Option<String>,
    /// Messages to list, newest first (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct OutboxList {
    messages: Vec<outbox::OutboxMessage>,
}

/// The dev outbox: mail that was stored instead of sent
///
/// For administrators; for everyone (even unauthenticated) in dev mode.
#[utoipa::path(
    get,
    path = "/admin/outbox",
    operation_id = "list_outbox",
    tag = "admin",
    security((), ("api_token" = []), ("session_cookie" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The stored mail, newest first", body = OutboxList),
        (status = 401, description = "Not authenticated (outside dev mode), or an invalid API token was sent", body = ErrorBody),
        (status = 403, description = "Not an administrator (outside dev mode)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<OutboxList>> {
    may_read_outbox(&state, identity.as_ref())?;
    let Query(query) = query.map_err(|err| AppError::validation("query", err.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::validation("limit", "limit must be between 1 and 200"));
    }
    let to = query.to.as_deref().map(|to| validate::email("to", to)).transpose()?;
    let messages = outbox::list(&state.db, to.as_deref(), limit).await?;
    Ok(Json(OutboxList { messages }))
}
