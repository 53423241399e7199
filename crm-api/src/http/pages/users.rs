//! `/admin/users`: the administrators' list of accounts, with promote and demote.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use borcelle_store::users::{self, Listed, Role};

use super::{Layout, PageError, render};
use crate::error::AppError;
use crate::http::access::{Admin, Id};
use crate::http::extract::FormBody;
use crate::state::AppState;

/// Accounts per page.
const PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "pages/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<Listed>,
    next: Option<String>,
    me: Uuid,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    /// The last email of the previous page.
    #[serde(default)]
    after: Option<String>,
}

pub async fn list(State(state): State<AppState>, Admin(identity): Admin, Query(query): Query<ListQuery>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    match users::list(&state.db, query.after.as_deref(), PAGE + 1).await {
        Ok(mut users) => {
            let next = (users.len() as i64 > PAGE).then(|| {
                users.truncate(PAGE as usize);
                users.last().map(|u| u.email.clone()).unwrap_or_default()
            });
            render(UsersPage { layout, users, next, me: identity.user_id }, StatusCode::OK)
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

/// Promotes or demotes an account (never one's own: an administrator cannot lock themselves out).
pub async fn set_role(
    State(state): State<AppState>,
    Admin(identity): Admin,
    id: Id<Listed>,
    FormBody(form): FormBody<RoleForm>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let role = match form.role.as_str() {
        "admin" => Role::Admin,
        "user" => Role::User,
        _ => return PageError::new(layout, AppError::validation("role", "choose admin or user")).into_response(),
    };
    let account = match users::find_by_id(&state.db, id.get()).await {
        Ok(Some(account)) => account,
        Ok(None) => return PageError::new(layout, AppError::not_found("account")).into_response(),
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    if account.id == identity.user_id {
        return PageError::new(layout, AppError::validation("role", "you cannot change your own role")).into_response();
    }
    match users::set_role(&state.db, &account.email, role).await {
        Ok(true) => {
            // This process's cached sessions of the account carry the old role: drop them now.
            borcelle_engine::accounts::session_cache::process().forget_user(account.id);
            Redirect::to("/admin/users").into_response()
        }
        Ok(false) => PageError::new(layout, AppError::not_found("account")).into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
