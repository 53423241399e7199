//! `/api/v1/tokens`: personal API tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use borcelle_store::api_tokens::{self, ApiToken};

use crate::error::{AppError, AppResult};
use crate::http::access::Id;
use crate::http::extract::{ApiJson, CurrentUser};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<ApiToken>,
}

/// The caller's API tokens (never their secrets)
#[utoipa::path(
    get,
    path = "/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    responses((status = 200, description = "The tokens, newest first", body = TokenList))
)]
pub async fn list(State(state): State<AppState>, CurrentUser(identity): CurrentUser) -> AppResult<Json<TokenList>> {
    let tokens = api_tokens::list(&state.db, identity.owner()).await?;
    Ok(Json(TokenList { tokens }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// What the token is for.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

/// A new token and its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    token: ApiToken,
    /// Send as `Authorization: Bearer <secret>`.
    secret: String,
}

/// Creates an API token; its secret is in this answer only
#[utoipa::path(
    post,
    path = "/tokens",
    operation_id = "create_token",
    tag = "tokens",
    request_body = CreateBody,
    responses((status = 201, description = "The token and its secret", body = CreatedToken))
)]
pub async fn create(
    State(state): State<AppState>,
    CurrentUser(identity): CurrentUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> AppResult<Response> {
    let created = state.accounts.create_api_token(identity.owner(), &body.name).await?;
    let body = CreatedToken { token: created.token, secret: created.secret };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Revokes an API token
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    operation_id = "delete_token",
    tag = "tokens",
    params(("id" = Uuid, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked"))
)]
pub async fn remove(
    State(state): State<AppState>,
    CurrentUser(identity): CurrentUser,
    id: Id<ApiToken>,
) -> AppResult<StatusCode> {
    let id = id.get();
    if api_tokens::delete(&state.db, identity.owner(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("token"))
    }
}
