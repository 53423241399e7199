//! The home and account pages: password change and API tokens.

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{FormState, Layout, PageError, PageUser, render};
use crate::error::AppError;
use crate::http::access::Id;
use crate::http::extract::FormBody;
use crate::http::identity::Identity;
use crate::state::AppState;
use borcelle_engine::schedules::Scope;
use borcelle_store::api_tokens::{self, ApiToken};
use borcelle_store::contacts;
use borcelle_store::notifications::{self, Notification};
use borcelle_store::tasks::{self, Task};
use borcelle_store::users;

#[derive(Template)]
#[template(path = "pages/home.html")]
struct HomePage {
    layout: Layout,
    name: String,
    admin: bool,
    /// Whether the user has any contact yet (else the page guides the first steps).
    has_contacts: bool,
    /// Sends still going out, newest first.
    running: Vec<Task>,
    /// The next runs of the user's active reminders, soonest first.
    upcoming: Vec<Upcoming>,
    /// The latest unread notifications.
    unread: Vec<Notification>,
    unread_count: i64,
}

struct Upcoming {
    name: String,
    subject: String,
    /// RFC 3339.
    next: String,
    time_zone: String,
}

/// How many of each list the home page shows.
const HOME_ITEMS: usize = 5;

/// The home page: what needs attention (sends in progress, the next reminders, unread
/// notifications), or the first steps for a new user.
pub async fn home(State(state): State<AppState>, PageUser(identity): PageUser) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let owner = identity.owner();
    let limit = HOME_ITEMS as i64;
    let (has_contacts, running, unread, unread_count, reminders) = match tokio::try_join!(
        async { contacts::any(&state.db, owner).await.map_err(AppError::from) },
        async { tasks::list(&state.db, owner, true, limit).await.map_err(AppError::from) },
        async { notifications::list(&state.db, owner, true, limit).await.map_err(AppError::from) },
        async { notifications::unread_count(&state.db, owner).await.map_err(AppError::from) },
        async { state.schedules.list(Scope::reminders(owner)).await.map_err(AppError::from) },
    ) {
        Ok(all) => all,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let mut upcoming: Vec<Upcoming> = reminders
        .into_iter()
        .filter(|view| !view.spec["suspend"].as_bool().unwrap_or(false))
        .filter_map(|view| {
            let next = view.status["nextScheduleTime"].as_str()?.to_owned();
            Some(Upcoming {
                subject: view.spec["subject"].as_str().unwrap_or_default().to_owned(),
                time_zone: view.spec["timeZone"].as_str().unwrap_or("UTC").to_owned(),
                name: view.name,
                next,
            })
        })
        .collect();
    // RFC 3339 instants in UTC sort as text.
    upcoming.sort_by(|a, b| a.next.cmp(&b.next));
    upcoming.truncate(HOME_ITEMS);
    let page = HomePage {
        layout,
        name: identity.display_name.clone(),
        admin: identity.is_admin(),
        has_contacts,
        running,
        upcoming,
        unread,
        unread_count,
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
    /// The account's time zone ("" for the browser's) and every name it may take.
    time_zone: String,
    zones: Vec<&'static str>,
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
        time_zone: identity.time_zone.clone().unwrap_or_default(),
        zones: borcelle_crds::schedule::time_zone_names().collect(),
    };
    render(page, status)
}

/// What the account page says after a change (a redirect's query).
#[derive(Deserialize, Default)]
pub struct AccountNotice {
    revoked: Option<String>,
    /// Set after a password change.
    password: Option<String>,
    /// The time zone just saved ("" for the browser's).
    zone: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    headers: axum::http::HeaderMap,
    notice: Result<axum::extract::Query<AccountNotice>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let notice = match notice.ok().map(|axum::extract::Query(n)| n) {
        Some(AccountNotice { revoked: Some(_), .. }) => "Token revoked: it no longer works.".to_owned(),
        Some(AccountNotice { password: Some(_), .. }) => {
            "Password changed. Your other sessions are signed out.".to_owned()
        }
        Some(AccountNotice { zone: Some(zone), .. }) if zone.is_empty() => {
            "Times now show in this browser's time zone.".to_owned()
        }
        Some(AccountNotice { zone: Some(zone), .. }) => {
            format!("Times now show in {}.", zone.chars().take(64).collect::<String>())
        }
        _ => String::new(),
    };
    // A token created just before is shown once: the flash cookie that carried it is cleared.
    let http = &state.settings.http;
    match crate::http::cookies::token_flash(http, &headers) {
        Some(secret) => {
            let page = account_page(&state, &identity, FormState::default(), &notice, Some(secret), StatusCode::OK);
            ([(header::SET_COOKIE, crate::http::cookies::clear_token_flash_cookie(http))], page.await).into_response()
        }
        None => account_page(&state, &identity, FormState::default(), &notice, None, StatusCode::OK).await,
    }
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
        Ok(()) => Redirect::to("/account?password=changed").into_response(),
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
        // POST/redirect/GET: reloading the page shows the token no more and creates none.
        Ok(created) => {
            let flash = crate::http::cookies::token_flash_cookie(&state.settings.http, &created.secret);
            ([(header::SET_COOKIE, flash)], Redirect::to("/account")).into_response()
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
        Ok(true) => Redirect::to("/account?revoked=1").into_response(),
        Ok(false) => PageError::new(layout, AppError::not_found("token")).into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Deserialize)]
pub struct TimeZoneForm {
    #[serde(default)]
    time_zone: String,
}

/// Sets the time zone the account's pages show times in; empty means the browser's.
pub async fn set_time_zone(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    FormBody(form): FormBody<TimeZoneForm>,
) -> Response {
    let name = form.time_zone.trim();
    let zone = if name.is_empty() {
        None
    } else {
        match borcelle_crds::schedule::parse_time_zone(name) {
            Ok(_) => Some(name),
            Err(_) => {
                let err = AppError::validation(
                    "time_zone",
                    format!("{name:?} is not a time zone: pick one from the list, like Europe/Paris"),
                );
                let form = FormState::default().with_value("time_zone", name).with_error(&err, &["time_zone"]);
                return account_page(&state, &identity, form, "", None, err.status()).await;
            }
        }
    };
    match users::set_time_zone(&state.db, identity.user_id, zone).await {
        Ok(_) => {
            // Pages read the zone with the session: the cached one must not keep the old zone.
            borcelle_engine::accounts::session_cache::process().forget_user(identity.user_id);
            let query = serde_urlencoded::to_string([("zone", zone.unwrap_or_default())]).unwrap_or_default();
            Redirect::to(&format!("/account?{query}")).into_response()
        }
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
    }
}
