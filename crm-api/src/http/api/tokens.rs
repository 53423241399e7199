//! `/api/v1/tokens`: personal API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth;
use crate::db::api_tokens::{self, ApiToken};
use crate::error::{AppError, AppResult};
use crate::http::extract::{ApiJson, CurrentUser};
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(identity): CurrentUser,
) -> AppResult<Json<serde_json::Value>> {
    let tokens: Vec<ApiToken> = api_tokens::list(&state.db, identity.user_id).await?;
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(identity): CurrentUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> AppResult<Response> {
    let created = auth::create_api_token(&state, identity.user_id, &body.name).await?;
    let body = json!({ "token": created.token, "secret": created.secret });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(identity): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id: Uuid = id.parse().map_err(|_| AppError::NotFound("token"))?;
    if api_tokens::delete(&state.db, identity.user_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("token"))
    }
}
