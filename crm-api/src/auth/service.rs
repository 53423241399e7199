//! The account operations.

use uuid::Uuid;

use super::{password, secrets, session_cache, validate};
use crate::config::Throttle;
use crate::db::sessions::{self, ActiveSession, NewSession};
use crate::db::user_tokens::{self, Pending, Purpose, Rejection};
use crate::db::users::{self, NewUser, Role, User};
use crate::db::{api_tokens, rate_limits};
use crate::error::{AppError, AppResult};
use crate::mail::{Mailbox, OutgoingEmail, templates};
use crate::state::AppState;

/// Where a request comes from, for throttling and the session record.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
}

pub struct RegisterInput {
    pub email: String,
    pub display_name: String,
    pub password: String,
}

/// A session just opened: the secret for the cookie and who it belongs to.
pub struct LoggedIn {
    pub session_token: String,
    pub session: ActiveSession,
}

/// Counts an event against a throttle and refuses it once the limit is passed.
async fn throttle(state: &AppState, key: &str, limit: Throttle) -> AppResult<()> {
    let window = rate_limits::hit(&state.db, key, limit.window.as_secs_f64()).await?;
    if window.hits > limit.max as i32 {
        return Err(AppError::TooManyRequests { retry_after_secs: window.resets_in_secs });
    }
    Ok(())
}

fn link(state: &AppState, path: &str, token: Option<&str>) -> String {
    let mut url = state.settings.http.public_url.clone();
    url.set_path(path);
    if let Some(token) = token {
        url.query_pairs_mut().append_pair("token", token);
    }
    url.to_string()
}

fn mailbox(user: &User) -> Mailbox {
    Mailbox { name: Some(user.display_name.clone()), email: user.email.clone() }
}

/// Issues a verification token for the user and mails the link. A link sent for a registration
/// carries that registration's credentials, which verifying applies.
async fn send_verification(state: &AppState, user: &User, pending: Option<Pending<'_>>) -> AppResult<()> {
    let token = secrets::random_token();
    let ttl = state.settings.auth.verify_token_ttl;
    let name = pending.as_ref().map_or(user.display_name.as_str(), |p| p.display_name).to_owned();
    user_tokens::insert(
        &state.db,
        &secrets::hash_token(&token),
        user.id,
        Purpose::VerifyEmail,
        ttl.as_secs_f64(),
        pending,
    )
    .await?;
    let content = templates::verify_email(&name, &link(state, "/verify", Some(&token)), ttl.as_secs() / 3600)?;
    let to = Mailbox { name: Some(name), email: user.email.clone() };
    state.send_in_background(OutgoingEmail::new(&state.settings.mail, to, content));
    Ok(())
}

/// Registers an account and mails a verification link. The outcome is the same whether or not the
/// address was taken: a taken, verified address gets an email saying someone tried; a taken,
/// unverified one gets a link that applies this registration's credentials when used. At most a
/// few mails an hour go to one address, whichever branch sends them.
pub async fn register(state: &AppState, input: RegisterInput, client: &ClientInfo) -> AppResult<()> {
    let email = validate::email("email", &input.email)?;
    let display_name = validate::display_name("display_name", &input.display_name)?;
    validate::password("password", &input.password)?;
    let auth = &state.settings.auth;
    throttle(state, &format!("mail:ip:{}", client.ip), auth.mail_requests_per_ip).await?;

    // Hash before looking at the address, so both outcomes cost the same time.
    let password_hash = password::hash(input.password).await?;
    let recipient =
        rate_limits::hit(&state.db, &format!("mail:email:{email}"), auth.mail_requests_per_email.window.as_secs_f64())
            .await?;
    let may_mail = recipient.hits <= auth.mail_requests_per_email.max as i32;
    let new_user = NewUser {
        id: Uuid::now_v7(),
        email: &email,
        display_name: &display_name,
        password_hash: &password_hash,
        role: Role::User,
        verified: false,
    };
    let pending = Pending { password_hash: &password_hash, display_name: &display_name };
    if users::insert(&state.db, &new_user).await? {
        let user = users::find_by_id(&state.db, new_user.id).await?.ok_or(AppError::NotFound("user"))?;
        tracing::info!(user_id = %user.id, "account registered");
        return if may_mail { send_verification(state, &user, Some(pending)).await } else { Ok(()) };
    }

    let Some(existing) = users::find_by_email(&state.db, &email).await? else { return Ok(()) };
    if !may_mail {
        return Ok(());
    }
    if existing.email_verified_at.is_none() {
        // Resend links apply the newest registration's credentials too.
        users::replace_unverified_credentials(&state.db, existing.id, &password_hash, &display_name).await?;
        return send_verification(state, &existing, Some(pending)).await;
    }
    let content = templates::already_registered(
        &existing.display_name,
        &link(state, "/login", None),
        &link(state, "/forgot", None),
    )?;
    state.send_in_background(OutgoingEmail::new(&state.settings.mail, mailbox(&existing), content));
    Ok(())
}

fn token_error(rejection: Rejection, what: &'static str) -> AppError {
    let (code, message) = match (rejection, what) {
        (Rejection::Unknown, "verify") => ("token_invalid", "this verification link is not valid; request a new one"),
        (Rejection::Used, "verify") => {
            ("token_used", "this verification link was already used; log in, or request a new link")
        }
        (Rejection::Expired, "verify") => ("token_expired", "this verification link has expired; request a new one"),
        (Rejection::Unknown, _) => ("token_invalid", "this password reset link is not valid; request a new one"),
        (Rejection::Used, _) => ("token_used", "this password reset link was already used; request a new one"),
        (Rejection::Expired, _) => ("token_expired", "this password reset link has expired; request a new one"),
    };
    AppError::Token { code, message }
}

fn require_token(token: &str) -> AppResult<&str> {
    let token = token.trim();
    if token.is_empty() || token.len() > 200 {
        return Err(AppError::validation("token", "token is required; open the link from your email"));
    }
    Ok(token)
}

/// Consumes a verification token: applies the credentials it carries, marks the account
/// verified and retires the account's other verification links.
pub async fn verify_email(state: &AppState, token: &str) -> AppResult<()> {
    let token = require_token(token)?;
    let mut tx = state.db.begin().await?;
    let consumed = user_tokens::consume(&mut tx, &secrets::hash_token(token), Purpose::VerifyEmail)
        .await?
        .map_err(|r| token_error(r, "verify"))?;
    let user_id = consumed.user_id;
    let already_verified =
        users::find_by_id(&mut *tx, user_id).await?.is_some_and(|user| user.email_verified_at.is_some());
    if !already_verified {
        if let Some(hash) = &consumed.pending_password_hash {
            users::set_password(&mut *tx, user_id, hash).await?;
        }
        if let Some(name) = &consumed.pending_display_name {
            users::set_display_name(&mut *tx, user_id, name).await?;
        }
    }
    users::mark_verified(&mut *tx, user_id).await?;
    user_tokens::retire_all(&mut *tx, user_id, Purpose::VerifyEmail).await?;
    tx.commit().await?;
    tracing::info!(%user_id, "email verified");
    Ok(())
}

/// Sends a fresh verification link to an unverified account. Answers the same for any address.
pub async fn resend_verification(state: &AppState, email: &str, client: &ClientInfo) -> AppResult<()> {
    let email = validate::email("email", email)?;
    let auth = &state.settings.auth;
    throttle(state, &format!("mail:ip:{}", client.ip), auth.mail_requests_per_ip).await?;
    throttle(state, &format!("mail:email:{email}"), auth.mail_requests_per_email).await?;
    if let Some(user) = users::find_by_email(&state.db, &email).await?
        && user.email_verified_at.is_none()
    {
        send_verification(state, &user, None).await?;
    }
    Ok(())
}

/// Checks credentials and opens a session. Wrong credentials get one generic answer; failures for
/// an account or an address are throttled, counting each attempt before checking it so parallel
/// guesses cannot slip past; unverified accounts are told so. A session the client already had
/// (`previous`) ends, so a login never leaves an older session behind.
pub async fn login(
    state: &AppState,
    email: &str,
    password: String,
    client: &ClientInfo,
    previous: Option<&[u8]>,
) -> AppResult<LoggedIn> {
    let email = validate::email("email", email)?;
    if password.is_empty() {
        return Err(AppError::validation("password", "password is required"));
    }
    let auth = &state.settings.auth;
    let account_key = format!("login:email:{email}");
    let ip_key = format!("login:ip:{}", client.ip);
    throttle(state, &account_key, auth.login_failures_per_account).await?;
    if let Err(err) = throttle(state, &ip_key, auth.login_failures_per_ip).await {
        rate_limits::release(&state.db, &account_key).await?;
        return Err(err);
    }

    let user = users::find_by_email(&state.db, &email).await?;
    let too_long = password.chars().count() > validate::PASSWORD_MAX;
    let matches = password::verify(password, user.as_ref().map(|u| u.password_hash.clone())).await? && !too_long;
    let Some(user) = user.filter(|_| matches) else {
        return Err(AppError::InvalidCredentials);
    };
    // The right password is not a failure, whatever follows.
    rate_limits::clear(&state.db, &account_key).await?;
    rate_limits::release(&state.db, &ip_key).await?;
    if user.email_verified_at.is_none() {
        return Err(AppError::EmailNotVerified);
    }

    let session_token = secrets::random_token();
    let csrf_token = secrets::random_token();
    let mut tx = state.db.begin().await?;
    if let Some(previous) = previous {
        sessions::delete(&mut *tx, previous).await?;
    }
    sessions::insert(
        &mut *tx,
        &NewSession {
            id_hash: &secrets::hash_token(&session_token),
            user_id: user.id,
            csrf_token: &csrf_token,
            absolute_secs: auth.session_absolute.as_secs_f64(),
            ip: Some(&client.ip),
            user_agent: client.user_agent.as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    if let Some(previous) = previous {
        session_cache::process().forget_session(previous);
    }
    tracing::info!(user_id = %user.id, "logged in");
    Ok(LoggedIn {
        session_token,
        session: ActiveSession {
            user_id: user.id,
            email: user.email,
            display_name: user.display_name,
            role: user.role,
            csrf_token,
            last_seen_at: chrono::Utc::now(),
        },
    })
}

/// Ends a session.
pub async fn logout(state: &AppState, session_hash: &[u8]) -> AppResult<()> {
    sessions::delete(&state.db, session_hash).await?;
    session_cache::process().forget_session(session_hash);
    Ok(())
}

/// Mails a password-reset link when the address has an account. Answers the same for any address,
/// in the same time: the lookup and the mail happen in the background.
pub async fn forgot_password(state: &AppState, email: &str, client: &ClientInfo) -> AppResult<()> {
    let email = validate::email("email", email)?;
    let auth = &state.settings.auth;
    throttle(state, &format!("mail:ip:{}", client.ip), auth.mail_requests_per_ip).await?;
    throttle(state, &format!("reset:email:{email}"), auth.mail_requests_per_email).await?;
    let background = state.clone();
    state.tasks.spawn(async move {
        if let Err(err) = send_reset_link(&background, &email).await {
            tracing::error!(error = %err, "preparing a password reset mail failed");
        }
    });
    Ok(())
}

async fn send_reset_link(state: &AppState, email: &str) -> AppResult<()> {
    let Some(user) = users::find_by_email(&state.db, email).await? else { return Ok(()) };
    let token = secrets::random_token();
    let ttl = state.settings.auth.reset_token_ttl;
    user_tokens::insert(
        &state.db,
        &secrets::hash_token(&token),
        user.id,
        Purpose::ResetPassword,
        ttl.as_secs_f64(),
        None,
    )
    .await?;
    let content =
        templates::reset_password(&user.display_name, &link(state, "/reset", Some(&token)), ttl.as_secs() / 60)?;
    state.send_in_background(OutgoingEmail::new(&state.settings.mail, mailbox(&user), content));
    Ok(())
}

/// Sets a new password with a reset token. Every session and every API token of the user ends;
/// the address counts as verified, since the link proved it.
pub async fn reset_password(state: &AppState, token: &str, new_password: String) -> AppResult<()> {
    let token = require_token(token)?;
    validate::password("password", &new_password)?;
    let token_hash = secrets::hash_token(token);
    // Refuse a bad token before paying for a hash.
    user_tokens::check(&state.db, &token_hash, Purpose::ResetPassword).await?.map_err(|r| token_error(r, "reset"))?;
    let password_hash = password::hash(new_password).await?;
    let mut tx = state.db.begin().await?;
    let user_id = user_tokens::consume(&mut tx, &token_hash, Purpose::ResetPassword)
        .await?
        .map_err(|r| token_error(r, "reset"))?
        .user_id;
    users::set_password(&mut *tx, user_id, &password_hash).await?;
    users::mark_verified(&mut *tx, user_id).await?;
    user_tokens::retire_all(&mut *tx, user_id, Purpose::ResetPassword).await?;
    user_tokens::retire_all(&mut *tx, user_id, Purpose::VerifyEmail).await?;
    let sessions_ended = sessions::delete_for_user(&mut *tx, user_id, None).await?;
    let tokens_revoked = api_tokens::delete_all(&mut *tx, user_id).await?;
    tx.commit().await?;
    session_cache::process().forget_user(user_id);
    tracing::info!(%user_id, sessions_ended, tokens_revoked, "password reset");
    Ok(())
}

/// Changes the password of a logged-in user after checking the current one; the user's other
/// sessions end, the current one (if any) stays.
pub async fn change_password(
    state: &AppState,
    user_id: Uuid,
    current_session: Option<&[u8]>,
    current_password: String,
    new_password: String,
) -> AppResult<()> {
    validate::password("new_password", &new_password)?;
    let user = users::find_by_id(&state.db, user_id).await?.ok_or(AppError::Unauthenticated)?;
    let auth = &state.settings.auth;
    let account_key = format!("login:email:{}", user.email);
    throttle(state, &account_key, auth.login_failures_per_account).await?;
    if !password::verify(current_password, Some(user.password_hash.clone())).await? {
        return Err(AppError::validation("current_password", "the current password is not correct"));
    }
    rate_limits::release(&state.db, &account_key).await?;
    let password_hash = password::hash(new_password).await?;
    let mut tx = state.db.begin().await?;
    users::set_password(&mut *tx, user_id, &password_hash).await?;
    let ended = sessions::delete_for_user(&mut *tx, user_id, current_session).await?;
    tx.commit().await?;
    session_cache::process().forget_user(user_id);
    tracing::info!(%user_id, sessions_ended = ended, "password changed");
    Ok(())
}

/// A new API token: its secret is shown once, only its hash is kept.
pub struct CreatedToken {
    pub token: api_tokens::ApiToken,
    pub secret: String,
}

pub const API_TOKEN_PREFIX: &str = "bor_";

pub async fn create_api_token(state: &AppState, user_id: Uuid, name: &str) -> AppResult<CreatedToken> {
    let name = validate::label("name", name, 100)?;
    let secret = format!("{API_TOKEN_PREFIX}{}", secrets::random_token());
    let prefix: String = secret.chars().take(API_TOKEN_PREFIX.len() + 6).collect();
    let token =
        api_tokens::insert(&state.db, Uuid::now_v7(), user_id, &name, &secrets::hash_token(&secret), &prefix).await?;
    Ok(CreatedToken { token, secret })
}

/// Creates a verified account from the command line (`borcelle admin create-user`).
pub async fn create_verified_user(
    db: &sqlx::PgPool,
    email: &str,
    display_name: &str,
    password: String,
    role: Role,
) -> AppResult<Uuid> {
    let email = validate::email("email", email)?;
    let display_name = validate::display_name("name", display_name)?;
    validate::password("password", &password)?;
    let password_hash = password::hash(password).await?;
    let id = Uuid::now_v7();
    let user =
        NewUser { id, email: &email, display_name: &display_name, password_hash: &password_hash, role, verified: true };
    if !users::insert(db, &user).await? {
        return Err(AppError::validation("email", format!("an account with {email} already exists")));
    }
    Ok(id)
}
