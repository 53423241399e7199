//! `/api/v1/auth/*`: accounts and sessions.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::auth::{self, RegisterInput};
use crate::db::users::Role;
use crate::error::AppResult;
use crate::http::cookies;
use crate::http::extract::{ApiJson, Client, CurrentUser, MaybeUser};
use crate::http::identity::Identity;
use crate::state::AppState;

/// What registration answers, whether or not the address already had an account.
pub const REGISTER_ANSWER: &str =
    "Thanks for signing up. We sent a link to this address: open it to verify your email, then log in.";
const RESEND_ANSWER: &str = "If this address has an account waiting for verification, a new link is on its way.";
const FORGOT_ANSWER: &str = "If this address has an account, a link to reset the password is on its way.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    email: String,
    display_name: String,
    password: String,
}

pub async fn register(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<RegisterBody>,
) -> AppResult<Response> {
    let input = RegisterInput { email: body.email, display_name: body.display_name, password: body.password };
    auth::register(&state, input, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "message": REGISTER_ANSWER }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    token: String,
}

pub async fn verify(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> AppResult<Json<serde_json::Value>> {
    auth::verify_email(&state, &body.token).await?;
    Ok(Json(json!({ "message": "Your email is verified. You can log in now." })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    email: String,
}

pub async fn resend(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<EmailBody>,
) -> AppResult<Response> {
    auth::resend_verification(&state, &body.email, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "message": RESEND_ANSWER }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

/// A user as the API shows it.
#[derive(Serialize)]
pub struct UserView {
    id: Uuid,
    email: String,
    display_name: String,
    role: Role,
}

#[derive(Serialize)]
pub struct SessionView {
    user: UserView,
    /// Send this as `X-CSRF-Token` on every state-changing call made with the session cookie.
    csrf_token: String,
}

impl From<&Identity> for UserView {
    fn from(identity: &Identity) -> Self {
        UserView {
            id: identity.user_id,
            email: identity.email.clone(),
            display_name: identity.display_name.clone(),
            role: identity.role,
        }
    }
}

pub async fn login(
    State(state): State<AppState>,
    Client(client): Client,
    MaybeUser(previous): MaybeUser,
    ApiJson(body): ApiJson<LoginBody>,
) -> AppResult<Response> {
    let previous = previous.as_ref().and_then(Identity::session_hash);
    let logged_in = auth::login(&state, &body.email, body.password, &client, previous).await?;
    let cookie = cookies::session_cookie(
        &state.settings.http,
        &logged_in.session_token,
        state.settings.auth.session_absolute.as_secs(),
    );
    let session = logged_in.session;
    let view = SessionView {
        user: UserView {
            id: session.user_id,
            email: session.email,
            display_name: session.display_name,
            role: session.role,
        },
        csrf_token: session.csrf_token,
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(view)).into_response())
}

pub async fn logout(State(state): State<AppState>, CurrentUser(identity): CurrentUser) -> AppResult<Response> {
    if let Some(hash) = identity.session_hash() {
        auth::logout(&state, hash).await?;
    }
    let cookie = cookies::clear_session_cookie(&state.settings.http);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

pub async fn session(CurrentUser(identity): CurrentUser) -> Json<SessionView> {
    Json(SessionView { user: UserView::from(&identity), csrf_token: identity.csrf_token().to_owned() })
}

pub async fn forgot(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<EmailBody>,
) -> AppResult<Response> {
    auth::forgot_password(&state, &body.email, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "message": FORGOT_ANSWER }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    token: String,
    password: String,
}

pub async fn reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetBody>,
) -> AppResult<Json<serde_json::Value>> {
    auth::reset_password(&state, &body.token, body.password).await?;
    Ok(Json(
        json!({ "message": "Your password is changed and every session is signed out. Log in with the new password." }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(identity): CurrentUser,
    ApiJson(body): ApiJson<ChangePasswordBody>,
) -> AppResult<Json<serde_json::Value>> {
    auth::change_password(&state, identity.user_id, identity.session_hash(), body.current_password, body.new_password)
        .await?;
    Ok(Json(json!({ "message": "Your password is changed; your other sessions are signed out." })))
}
