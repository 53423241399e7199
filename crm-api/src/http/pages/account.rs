//! The home and account pages: password change and API tokens.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{FormState, Layout, PageError, PageUser, render};
use crate::error::AppError;
use crate::http::access::Id;
use crate::http::extract::FormBody;
use crate::http::identity::Identity;
use crate::state::AppState;
use borcelle_store::api_tokens::{self, ApiToken};

#[derive(Template)]
#[template(path = "pages/home.html")]
struct HomePage {
    layout: Layout,
    name: String,
    email: String,
    admin: bool,
}

pub async fn home(State(state): State<AppState>, PageUser(identity): PageUser) -> Response {
    let page = HomePage {
        layout: Layout::new(&state, Some(&identity)),
        name: identity.display_name.clone(),
        email: identity.email.clone(),
        admin: identity.is_admin(),
    };
    render(page, StatusCode::OK)
}

#[derive(Template)]
#[template(path = "pages/account.html")]
struct AccountPage {
    layout: Layout,
    name: String,
    email: String,
    notice: String,
    form: FormState,
    tokens: Vec<ApiToken>,
    new_secret: Option<String>,
}

async fn account_page(
    state: &AppState,
    identity: &Identity,
    form: FormState,
    notice: &str,
    new_secret: Option<String>,
    status: StatusCode,
) -> Response {
    let layout = Layout::new(state, Some(identity));
    let tokens = match api_tokens::list(&state.db, identity.owner()).await {
        Ok(tokens) => tokens,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let page = AccountPage {
        layout,
        name: identity.display_name.clone(),
        email: identity.email.clone(),
        notice: notice.to_owned(),
        form,
        tokens,
        new_secret,
    };
    render(page, status)
}

pub async fn show(State(state): State<AppState>, PageUser(identity): PageUser) -> Response {
    account_page(&state, &identity, FormState::default(), "", None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    FormBody(form): FormBody<PasswordForm>,
) -> Response {
    let result = state
        .accounts
        .change_password(identity.user_id, identity.session_hash(), form.current_password, form.new_password)
        .await
        .map_err(AppError::from);
    match result {
        Ok(()) => {
            let notice = "Password changed. Your other sessions are signed out.";
            account_page(&state, &identity, FormState::default(), notice, None, StatusCode::OK).await
        }
        Err(err) if err.status().is_client_error() => {
            let status = err.status();
            let form = FormState::default().with_error(&err, &["current_password", "new_password"]);
            account_page(&state, &identity, form, "", None, status).await
        }
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    FormBody(form): FormBody<TokenForm>,
) -> Response {
    match state.accounts.create_api_token(identity.owner(), &form.name).await.map_err(AppError::from) {
        Ok(created) => {
            account_page(&state, &identity, FormState::default(), "", Some(created.secret), StatusCode::CREATED).await
        }
        Err(err) if err.status().is_client_error() => {
            let status = err.status();
            let form = FormState::default().with_error(&err, &["name"]);
            account_page(&state, &identity, form, "", None, status).await
        }
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
    }
}

pub async fn revoke_token(State(state): State<AppState>, PageUser(identity): PageUser, id: Id<ApiToken>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    match api_tokens::delete(&state.db, identity.owner(), id.get()).await {
        Ok(true) => Redirect::to("/account").into_response(),
        Ok(false) => PageError::new(layout, AppError::not_found("token")).into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
