//! Sign-up, verification, login, logout and password-reset pages.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{FormState, Layout, Notice, PageError, local_path, render};
use borcelle_engine::Error as DomainError;
use borcelle_engine::accounts::RegisterInput;

use crate::error::AppError;
use crate::http::api::REGISTER_ANSWER;
use crate::http::cookies;
use crate::http::extract::{Client, FormBody, MaybeUser};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "pages/register.html")]
struct RegisterPage {
    layout: Layout,
    form: FormState,
}

pub async fn register_form(State(state): State<AppState>, MaybeUser(identity): MaybeUser) -> Response {
    render(RegisterPage { layout: Layout::new(&state, identity.as_ref()), form: FormState::default() }, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
}

pub async fn register(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    Client(client): Client,
    FormBody(form): FormBody<RegisterForm>,
) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    let values = FormState::default().with_value("email", &form.email).with_value("display_name", &form.display_name);
    let email = form.email.clone();
    let input = RegisterInput { email: form.email, display_name: form.display_name, password: form.password };
    match state.accounts.register(input, &client).await.map_err(AppError::from) {
        // POST/redirect/GET: a reload shows the answer again rather than signing up again.
        Ok(()) => {
            let query = serde_urlencoded::to_string([("email", email.trim())]).unwrap_or_default();
            Redirect::to(&format!("/register/sent?{query}")).into_response()
        }
        Err(
            err @ (AppError::Domain(DomainError::Invalid { .. })
            | AppError::Domain(DomainError::InvalidFields(_))
            | AppError::Domain(DomainError::Throttled { .. })),
        ) => {
            let status = err.status();
            let form = values.with_error(&err, &["email", "display_name", "password"]);
            render(RegisterPage { layout, form }, status)
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct SentQuery {
    #[serde(default)]
    email: String,
}

/// The answer to a sign-up: check the inbox (with a way to have the link sent again).
pub async fn register_sent(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    query: Result<Query<SentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let email = query.map(|Query(q)| q.email).unwrap_or_default();
    // Only what could be an address goes back into the resend form.
    let email = Some(email.trim().to_owned()).filter(|e| e.len() <= 254 && !e.chars().any(char::is_control));
    let notice = Notice {
        layout: Layout::new(&state, identity.as_ref()),
        heading: "Check your inbox".to_owned(),
        text: REGISTER_ANSWER.to_owned(),
        resend_email: email.filter(|e| !e.is_empty()),
        action: None,
    };
    render(notice, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Template)]
#[template(path = "pages/verify.html")]
struct VerifyPage {
    layout: Layout,
    token: String,
}

/// The link in the email opens this page; the button posts the token. A GET never consumes it,
/// so mail scanners that prefetch links cannot use it up.
pub async fn verify_form(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    Query(query): Query<TokenQuery>,
) -> Response {
    render(VerifyPage { layout: Layout::new(&state, identity.as_ref()), token: query.token }, StatusCode::OK)
}

pub async fn verify(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    FormBody(form): FormBody<TokenQuery>,
) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    match state.accounts.verify_email(&form.token).await.map_err(AppError::from) {
        Ok(()) => Notice::page(
            layout,
            "Email verified",
            "Your email is verified. You can log in now.",
            Some(("/login", "Log in")),
        ),
        Err(err) if err.status().is_client_error() => render(
            Notice {
                layout,
                heading: "This link cannot be used".to_owned(),
                text: err.to_string(),
                resend_email: None,
                action: Some(("/login", "Log in or ask for a new link")),
            },
            err.status(),
        ),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
}

pub async fn resend(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    Client(client): Client,
    FormBody(form): FormBody<EmailForm>,
) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    match state.accounts.resend_verification(&form.email, &client).await.map_err(AppError::from) {
        Ok(()) => Notice::page(
            layout,
            "Check your inbox",
            "If this address has an account waiting for verification, a new link is on its way.",
            Some(("/login", "Back to log in")),
        ),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Template)]
#[template(path = "pages/login.html")]
struct LoginPage {
    layout: Layout,
    form: FormState,
    next: String,
    unverified: bool,
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_form(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    Query(query): Query<NextQuery>,
) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    render(LoginPage { layout, form: FormState::default(), next: query.next, unverified: false }, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    Client(client): Client,
    headers: HeaderMap,
    FormBody(form): FormBody<LoginForm>,
) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    let previous = identity.as_ref().and_then(|i| i.session_hash());
    let device = cookies::device_token(&state.settings.http, &headers);
    let login = state.accounts.login(&form.email, form.password, &client, previous, device.as_deref()).await;
    match login.map_err(AppError::from) {
        Ok(logged_in) => {
            let http = &state.settings.http;
            let auth = &state.settings.auth;
            let cookie = cookies::session_cookie(http, &logged_in.session_token, auth.session_absolute.as_secs());
            let device = cookies::device_cookie(http, &logged_in.device_token, auth.login_device_idle.as_secs());
            let set = AppendHeaders([(header::SET_COOKIE, cookie), (header::SET_COOKIE, device)]);
            (set, Redirect::to(local_path(&form.next))).into_response()
        }
        Err(err) if err.status().is_client_error() => {
            let status = err.status();
            let unverified = matches!(err, AppError::Domain(DomainError::EmailNotVerified));
            let retry = match err {
                AppError::Domain(DomainError::Throttled { retry_after_secs }) => Some(retry_after_secs.max(1)),
                _ => None,
            };
            let form_state =
                FormState::default().with_value("email", &form.email).with_error(&err, &["email", "password"]);
            let mut response = render(LoginPage { layout, form: form_state, next: form.next, unverified }, status);
            if let Some(secs) = retry {
                response.headers_mut().insert(header::RETRY_AFTER, secs.into());
            }
            response
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

pub async fn logout(State(state): State<AppState>, MaybeUser(identity): MaybeUser) -> Response {
    if let Some(hash) = identity.as_ref().and_then(|i| i.session_hash())
        && let Err(err) = state.accounts.logout(hash).await.map_err(AppError::from)
    {
        return PageError::new(Layout::new(&state, identity.as_ref()), err).into_response();
    }
    let cookie = cookies::clear_session_cookie(&state.settings.http);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[derive(Template)]
#[template(path = "pages/forgot.html")]
struct ForgotPage {
    layout: Layout,
    form: FormState,
}

pub async fn forgot_form(State(state): State<AppState>, MaybeUser(identity): MaybeUser) -> Response {
    render(ForgotPage { layout: Layout::new(&state, identity.as_ref()), form: FormState::default() }, StatusCode::OK)
}

pub async fn forgot(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    Client(client): Client,
    FormBody(form): FormBody<EmailForm>,
) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    match state.accounts.forgot_password(&form.email, &client).await.map_err(AppError::from) {
        Ok(()) => Notice::page(
            layout,
            "Check your inbox",
            "If this address has an account, a link to reset the password is on its way.",
            Some(("/login", "Back to log in")),
        ),
        Err(err) if err.status().is_client_error() => {
            let status = err.status();
            let form = FormState::default().with_value("email", &form.email).with_error(&err, &["email"]);
            render(ForgotPage { layout, form }, status)
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Template)]
#[template(path = "pages/reset.html")]
struct ResetPage {
    layout: Layout,
    form: FormState,
    token: String,
}

pub async fn reset_form(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    Query(query): Query<TokenQuery>,
) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    render(ResetPage { layout, form: FormState::default(), token: query.token }, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub async fn reset(
    State(state): State<AppState>,
    MaybeUser(identity): MaybeUser,
    FormBody(form): FormBody<ResetForm>,
) -> Response {
    let layout = Layout::new(&state, identity.as_ref());
    match state.accounts.reset_password(&form.token, form.password).await.map_err(AppError::from) {
        Ok(()) => {
            let cookie = cookies::clear_session_cookie(&state.settings.http);
            let notice = Notice {
                layout: Layout {
                    user: None,
                    csrf: String::new(),
                    outbox: state.settings.dev_mode,
                    admin: false,
                    tz: String::new(),
                },
                heading: "Password changed".to_owned(),
                text: "Your password is changed and every session is signed out. Log in with the new password."
                    .to_owned(),
                resend_email: None,
                action: Some(("/login", "Log in")),
            };
            ([(header::SET_COOKIE, cookie)], render(notice, StatusCode::OK)).into_response()
        }
        Err(err) if err.status().is_client_error() => {
            let status = err.status();
            let form_state = FormState::default().with_error(&err, &["password"]);
            render(ResetPage { layout, form: form_state, token: form.token }, status)
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
