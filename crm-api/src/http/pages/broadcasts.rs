//! `/admin/broadcasts`: administrators compose broadcasts (now, at a time, or repeating; to all
//! users, the administrators or a list; in the bell and/or by email), see each one's phase and
//! delivery counts, and cancel them. The same rules as the JSON API (`borcelle_engine::schedules`).

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use borcelle_crds::schedule::{parse_time_zone, resolve_local};
use chrono::NaiveDateTime;
use serde::Deserialize;
use serde_json::{Value, json};

use borcelle_engine::schedules::{ScheduleView, Scope};

use super::{FormState, Layout, PageError, render, spec_error_on_form};
use crate::error::AppError;
use crate::http::access::{Admin, Broadcast, Name};
use crate::http::api::reminders::caller;
use crate::http::extract::FormBody;
use crate::http::identity::Identity;
use crate::state::AppState;

/// The form's fields, in the order errors are placed next to them.
const FIELDS: &[&str] = &["name", "title", "message", "users", "at", "schedule", "time_zone", "channels", "expires_at"];

#[derive(Template)]
#[template(path = "pages/broadcasts.html")]
struct BroadcastsPage {
    layout: Layout,
    form: FormState,
    broadcasts: Vec<Row>,
    notice: String,
}

/// One broadcast as the list shows it.
struct Row {
    name: String,
    title: String,
    severity: String,
    when: String,
    /// The instant of a one-off broadcast (RFC 3339), shown in the reader's zone; else "".
    at: String,
    audience: String,
    phase: String,
    recipients: String,
    next: String,
    delivered: String,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn row(view: ScheduleView) -> Row {
    let spec = &view.spec;
    let status = &view.status;
    let at = spec.get("at").and_then(Value::as_str).unwrap_or_default().to_owned();
    let when = if let Some(schedule) = spec.get("schedule").and_then(Value::as_str) {
        format!("{schedule} ({})", spec.get("timeZone").and_then(Value::as_str).unwrap_or("UTC"))
    } else if !at.is_empty() {
        format!("at {at}")
    } else {
        "at once".to_owned()
    };
    let audience = match spec["audience"]["group"].as_str().unwrap_or("all") {
        "users" => format!("{} user(s)", spec["audience"]["users"].as_array().map_or(0, Vec::len)),
        group => group.to_owned(),
    };
    Row {
        name: view.name,
        title: text(&spec["title"]),
        severity: spec["severity"].as_str().unwrap_or("info").to_owned(),
        when,
        at,
        audience,
        phase: status["phase"].as_str().unwrap_or("Pending").to_owned(),
        recipients: text(&status["recipients"]),
        next: text(&status["nextScheduleTime"]),
        delivered: text(&status["deliveredAt"]),
    }
}

async fn page(state: &AppState, identity: &Identity, form: FormState, notice: &str, status: StatusCode) -> Response {
    let layout = Layout::new(state, Some(identity));
    match state.schedules.list(Scope::broadcasts()).await {
        Ok(views) => {
            let broadcasts = views.into_iter().map(row).collect();
            render(BroadcastsPage { layout, form, broadcasts, notice: notice.to_owned() }, status)
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

/// What the list page says after a change (a redirect's query).
#[derive(Deserialize, Default)]
pub struct ListNotice {
    /// The name of the broadcast just created, or cancelled.
    created: Option<String>,
    cancelled: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Admin(identity): Admin,
    notice: Result<Query<ListNotice>, QueryRejection>,
) -> Response {
    let short = |name: String| name.chars().take(253).collect::<String>();
    let notice = match notice.ok().map(|Query(n)| n) {
        Some(ListNotice { created: Some(name), .. }) => format!("Broadcast {} created.", short(name)),
        Some(ListNotice { cancelled: Some(name), .. }) => {
            format!("Broadcast {} cancelled: what was delivered stays, nothing more goes out.", short(name))
        }
        _ => String::new(),
    };
    page(&state, &identity, FormState::default(), &notice, StatusCode::OK).await
}

#[derive(Deserialize, Default)]
pub struct BroadcastForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    users: String,
    #[serde(default)]
    web: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// `now`, `at` or `repeat`.
    #[serde(default)]
    when: String,
    /// `YYYY-MM-DDTHH:MM` in `time_zone` (a datetime-local input).
    #[serde(default)]
    at: String,
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    time_zone: String,
    /// `YYYY-MM-DDTHH:MM` in `time_zone`, optional.
    #[serde(default)]
    expires_at: String,
}

/// A local `YYYY-MM-DDTHH:MM` in a time zone, as an RFC 3339 instant.
fn instant(field: &str, value: &str, time_zone: &str) -> Result<Value, AppError> {
    let tz = parse_time_zone(if time_zone.trim().is_empty() { "UTC" } else { time_zone.trim() })
        .map_err(|err| AppError::validation("time_zone", err.to_string()))?;
    let local = NaiveDateTime::parse_from_str(value.trim(), "%Y-%m-%dT%H:%M")
        .map_err(|_| AppError::validation(field, "enter a date and time (YYYY-MM-DD HH:MM)"))?;
    let at = resolve_local(tz, local).ok_or_else(|| AppError::validation(field, "this local time does not exist"))?;
    Ok(json!(at))
}

/// The Broadcast spec the form describes.
fn spec_of(form: &BroadcastForm) -> Result<Value, AppError> {
    let mut channels = Vec::new();
    if form.web.is_some() {
        channels.push("web");
    }
    if form.email.is_some() {
        channels.push("email");
    }
    if channels.is_empty() {
        return Err(AppError::validation("channels", "choose at least one channel: in the app or by email"));
    }
    let group = match form.audience.as_str() {
        "" | "all" => "all",
        "admins" => "admins",
        "users" => "users",
        _ => return Err(AppError::validation("users", "choose everyone, the administrators or a list of users")),
    };
    let users: Vec<String> = if group == "users" {
        form.users
            .split([',', '\n', ' ', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase)
            .collect()
    } else {
        Vec::new()
    };
    let mut spec = json!({
        "title": form.title.trim(),
        "message": form.message.trim(),
        "severity": if form.severity.is_empty() { "info" } else { form.severity.as_str() },
        "audience": if users.is_empty() { json!({ "group": group }) } else { json!({ "group": group, "users": users }) },
        "channels": channels,
    });
    match form.when.as_str() {
        "" | "now" => {}
        "at" => spec["at"] = instant("at", &form.at, &form.time_zone)?,
        "repeat" => {
            spec["schedule"] = json!(form.schedule.trim());
            if !form.time_zone.trim().is_empty() {
                spec["timeZone"] = json!(form.time_zone.trim());
            }
        }
        _ => return Err(AppError::validation("at", "choose now, at a time or repeating")),
    }
    if !form.expires_at.trim().is_empty() {
        spec["expiresAt"] = instant("expires_at", &form.expires_at, &form.time_zone)?;
    }
    Ok(spec)
}

/// The form's field for each spec path the schedule rules name.
const SPEC_FIELDS: &[(&str, &str)] = &[
    ("spec.title", "title"),
    ("spec.message", "message"),
    ("spec.audience", "users"),
    ("spec.at", "at"),
    ("spec.schedule", "schedule"),
    ("spec.timeZone", "time_zone"),
    ("spec.channels", "channels"),
    ("spec.expiresAt", "expires_at"),
];

pub async fn create(
    State(state): State<AppState>,
    Admin(identity): Admin,
    FormBody(form): FormBody<BroadcastForm>,
) -> Response {
    let result = match spec_of(&form) {
        Ok(spec) => state
            .schedules
            .create(Scope::broadcasts(), &caller(&identity), form.name.trim(), spec)
            .await
            .map_err(|err| spec_error_on_form(err.into(), SPEC_FIELDS)),
        Err(err) => Err(err),
    };
    match result {
        // POST/redirect/GET: reloading the page that follows does not post the form again.
        Ok(view) => {
            let query = serde_urlencoded::to_string([("created", view.name.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/admin/broadcasts?{query}")).into_response()
        }
        Err(err) => {
            let status = err.status();
            let values = FormState::default().with_values(&[
                ("name", &form.name),
                ("title", &form.title),
                ("message", &form.message),
                ("users", &form.users),
                ("at", &form.at),
                ("schedule", &form.schedule),
                ("time_zone", &form.time_zone),
                ("expires_at", &form.expires_at),
                ("severity", &form.severity),
                ("audience", &form.audience),
                ("when", &form.when),
            ]);
            page(&state, &identity, values.with_error(&err, FIELDS), "", status).await
        }
    }
}

/// Cancels a broadcast: what is delivered stays, nothing more is.
pub async fn cancel(State(state): State<AppState>, Admin(identity): Admin, name: Name<Broadcast>) -> Response {
    match state.schedules.delete(Scope::broadcasts(), name.as_str()).await {
        Ok(()) => {
            let query = serde_urlencoded::to_string([("cancelled", name.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/admin/broadcasts?{query}")).into_response()
        }
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
    }
}
