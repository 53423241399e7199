//! `/api/v1/auth/*`: accounts and sessions.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::AppResult;
use crate::http::cookies;
use crate::http::extract::{ApiJson, Client, CurrentUser, MaybeUser};
use crate::http::identity::Identity;
use crate::http::openapi::{ErrorBody, MessageAnswer};
use crate::state::AppState;
use borcelle_engine::accounts::RegisterInput;
use borcelle_store::users::Role;

/// What registration answers, whether or not the address already had an account.
pub const REGISTER_ANSWER: &str =
    "Thanks for signing up. We sent a link to this address: open it to verify your email, then log in.";
const RESEND_ANSWER: &str = "If this address has an account waiting for verification, a new link is on its way.";
const FORGOT_ANSWER: &str = "If this address has an account, a link to reset the password is on its way.";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(min_length = 1, max_length = 100)]
    display_name: String,
    /// At least 10 characters.
    #[schema(min_length = 10, max_length = 128)]
    password: String,
}

/// Registers an account and mails a verification link
///
/// The answer is the same whether or not the address already had an account.
#[utoipa::path(
    post,
    path = "/auth/register",
    operation_id = "register",
    tag = "auth",
    security(()),
    request_body = RegisterBody,
    responses(
        (status = 202, description = "A verification link is on its way (or the account existed)", body = MessageAnswer),
        (status = 429, description = "Too many account emails from this address; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<RegisterBody>,
) -> AppResult<Response> {
    let input = RegisterInput { email: body.email, display_name: body.display_name, password: body.password };
    state.accounts.register(input, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(MessageAnswer { message: REGISTER_ANSWER })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The token from the emailed link.
    token: String,
}

/// Verifies an email address with the token of the emailed link
#[utoipa::path(
    post,
    path = "/auth/verify",
    operation_id = "verify_email",
    tag = "auth",
    security(()),
    request_body = TokenBody,
    responses(
        (status = 200, description = "The address is verified", body = MessageAnswer),
        (status = 404, description = "The token is unknown (`token_invalid`)", body = ErrorBody),
        (status = 409, description = "The token was used already or has expired (`token_used`, `token_expired`)", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> AppResult<Json<MessageAnswer>> {
    state.accounts.verify_email(&body.token).await?;
    Ok(Json(MessageAnswer { message: "Your email is verified. You can log in now." }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// Sends a new verification link to an account that is not verified yet
#[utoipa::path(
    post,
    path = "/auth/resend",
    operation_id = "resend_verification",
    tag = "auth",
    security(()),
    request_body = EmailBody,
    responses(
        (status = 202, description = "The same answer whether or not the address has an account waiting", body = MessageAnswer),
        (status = 429, description = "Too many account emails; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn resend(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<EmailBody>,
) -> AppResult<Response> {
    state.accounts.resend_verification(&body.email, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(MessageAnswer { message: RESEND_ANSWER })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    password: String,
}

/// A user as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    id: Uuid,
    email: String,
    display_name: String,
    role: Role,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Session)]
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

/// Logs in: sets the session cookie and answers the CSRF token
#[utoipa::path(
    post,
    path = "/auth/login",
    operation_id = "login",
    tag = "auth",
    security(()),
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie` carries the session cookie and the device cookie (with it, this client's failed logins are counted apart from strangers')", body = SessionView,
            headers(("Set-Cookie" = String, description = "The session cookie, then the device cookie"))),
        (status = 401, description = "The email and password do not match an account (`invalid_credentials`), or an invalid API token was sent", body = ErrorBody),
        (status = 403, description = "The email is not verified yet (`email_not_verified`), or the CSRF guard refused the call", body = ErrorBody),
        (status = 429, description = "Too many failed logins on this account from this client (or, for a client the account has never seen, from all such clients), or from this address; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    Client(client): Client,
    MaybeUser(previous): MaybeUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> AppResult<Response> {
    let previous = previous.as_ref().and_then(Identity::session_hash);
    let device = cookies::device_token(&state.settings.http, &headers);
    let logged_in = state.accounts.login(&body.email, body.password, &client, previous, device.as_deref()).await?;
    let http = &state.settings.http;
    let cookie =
        cookies::session_cookie(http, &logged_in.session_token, state.settings.auth.session_absolute.as_secs());
    let device_cookie =
        cookies::device_cookie(http, &logged_in.device_token, state.settings.auth.login_device_idle.as_secs());
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
    Ok((AppendHeaders([(header::SET_COOKIE, cookie), (header::SET_COOKIE, device_cookie)]), Json(view)).into_response())
}

/// Logs out: ends the session of the cookie (a call with an API token only clears the cookie)
#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "logout",
    tag = "auth",
    responses((status = 204, description = "Logged out; the `Set-Cookie` header removes the cookie"))
)]
pub async fn logout(State(state): State<AppState>, CurrentUser(identity): CurrentUser) -> AppResult<Response> {
    if let Some(hash) = identity.session_hash() {
        state.accounts.logout(hash).await?;
    }
    let cookie = cookies::clear_session_cookie(&state.settings.http);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// The current user and the session's CSRF token (empty with an API token, which needs none)
#[utoipa::path(
    get,
    path = "/auth/session",
    operation_id = "current_session",
    tag = "auth",
    responses((status = 200, description = "The caller", body = SessionView))
)]
pub async fn session(CurrentUser(identity): CurrentUser) -> Json<SessionView> {
    Json(SessionView { user: UserView::from(&identity), csrf_token: identity.csrf_token().to_owned() })
}

/// Mails a link to reset the password
#[utoipa::path(
    post,
    path = "/auth/password/forgot",
    operation_id = "forgot_password",
    tag = "auth",
    security(()),
    request_body = EmailBody,
    responses(
        (status = 202, description = "The same answer whether or not the address has an account", body = MessageAnswer),
        (status = 429, description = "Too many account emails; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn forgot(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<EmailBody>,
) -> AppResult<Response> {
    state.accounts.forgot_password(&body.email, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(MessageAnswer { message: FORGOT_ANSWER })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// The token from the emailed link.
    token: String,
    /// The new password, at least 10 characters.
    #[schema(min_length = 10, max_length = 128)]
    password: String,
}

/// Sets a new password with the token of the emailed link; signs out every session
#[utoipa::path(
    post,
    path = "/auth/password/reset",
    operation_id = "reset_password",
    tag = "auth",
    security(()),
    request_body = ResetBody,
    responses(
        (status = 200, description = "The password is changed", body = MessageAnswer),
        (status = 404, description = "The token is unknown (`token_invalid`)", body = ErrorBody),
        (status = 409, description = "The token was used already or has expired (`token_used`, `token_expired`)", body = ErrorBody),
    )
)]
pub async fn reset(State(state): State<AppState>, ApiJson(body): ApiJson<ResetBody>) -> AppResult<Json<MessageAnswer>> {
    state.accounts.reset_password(&body.token, body.password).await?;
    Ok(Json(MessageAnswer {
        message: "Your password is changed and every session is signed out. Log in with the new password.",
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    current_password: String,
    /// At least 10 characters.
    #[schema(min_length = 10, max_length = 128)]
    new_password: String,
}

/// Changes the caller's password; signs out their other sessions
#[utoipa::path(
    post,
    path = "/auth/password/change",
    operation_id = "change_password",
    tag = "auth",
    request_body = ChangePasswordBody,
    responses(
        (status = 200, description = "The password is changed", body = MessageAnswer),
        (status = 403, description = "The current password is not correct (`wrong_password`, `field` is `current_password`), or the CSRF guard refused the call", body = ErrorBody),
        (status = 422, description = "The new password is too short or too long; `field` names it", body = ErrorBody),
        (status = 429, description = "Too many wrong current passwords; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(identity): CurrentUser,
    ApiJson(body): ApiJson<ChangePasswordBody>,
) -> AppResult<Json<MessageAnswer>> {
    state
        .accounts
        .change_password(identity.user_id, identity.session_hash(), body.current_password, body.new_password)
        .await?;
    Ok(Json(MessageAnswer { message: "Your password is changed; your other sessions are signed out." }))
}
