//! `/reminders`: the user's scheduled reminder emails: create one (cron presets, a time zone and a
//! preview of the next runs), see each one's next and last run and its last run's counts,
//! suspend, resume and delete. The same rules as the JSON API (`crate::schedules`).

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use borcelle_engine::schedules::{ScheduleView, Scope};

use super::{FormState, Layout, PageError, PageUser, render, spec_error_on_form};
use crate::error::AppError;
use crate::http::access::{Name, Reminder};
use crate::http::api::reminders::caller;
use crate::http::extract::FormBody;
use crate::http::identity::Identity;
use crate::state::AppState;
use borcelle_engine::Error as DomainError;

/// The most tags the picker lists.
const TAGS_SHOWN: i64 = 500;

const FIELDS: &[&str] = &["name", "subject", "body", "contacts", "tag", "schedule", "time_zone"];

/// Schedules offered in the form (the last choice lets the user type one).
const PRESETS: &[(&str, &str)] = &[
    ("0 9 * * 1-5", "Weekdays at 09:00"),
    ("0 9 * * 1", "Mondays at 09:00"),
    ("@daily", "Every day at midnight"),
    ("@hourly", "Every hour"),
    ("0 9 1 * *", "The 1st of every month at 09:00"),
    ("* * * * *", "Every minute"),
];

#[derive(Template)]
#[template(path = "pages/reminders.html")]
struct RemindersPage {
    layout: Layout,
    form: FormState,
    reminders: Vec<Row>,
    presets: &'static [(&'static str, &'static str)],
    /// The owner's tags, for the recipients' picker.
    tags: Vec<String>,
    notice: String,
}

struct Row {
    name: String,
    subject: String,
    schedule: String,
    time_zone: String,
    recipients: String,
    suspended: bool,
    next: String,
    last: String,
    last_run: String,
    problem: String,
}

fn text(value: &Value) -> String {
    value.as_str().map(str::to_owned).unwrap_or_default()
}

fn row(view: ScheduleView) -> Row {
    let spec = &view.spec;
    let status = &view.status;
    let r = &spec["recipients"];
    let mut recipients = Vec::new();
    if let Some(tag) = r["tag"].as_str() {
        recipients.push(format!("every contact tagged {tag}"));
    }
    let emails: Vec<&str> =
        r["emails"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    const SHOWN: usize = 3;
    if !emails.is_empty() {
        let mut named = emails.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
        if emails.len() > SHOWN {
            named.push_str(&format!(" and {} more", emails.len() - SHOWN));
        }
        recipients.push(named);
    }
    let ids = r["contactIds"].as_array().map_or(0, Vec::len);
    if ids > 0 {
        recipients.push(if ids == 1 { "1 contact".to_owned() } else { format!("{ids} contacts") });
    }
    let last_run = match status.get("lastRun") {
        Some(run) if run.is_object() => {
            format!("{}: {} sent, {} failed", text(&run["outcome"]), run["delivered"], run["failed"])
        }
        _ => String::new(),
    };
    let problem = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready" && c["status"] == "False"))
        .map(|c| format!("{}: {}", text(&c["reason"]), text(&c["message"])))
        .unwrap_or_default();
    Row {
        name: view.name,
        subject: text(&spec["subject"]),
        schedule: text(&spec["schedule"]),
        time_zone: spec["timeZone"].as_str().unwrap_or("UTC").to_owned(),
        recipients: recipients.join(", "),
        suspended: spec["suspend"].as_bool().unwrap_or(false),
        next: text(&status["nextScheduleTime"]),
        last: text(&status["lastScheduleTime"]),
        last_run,
        problem,
    }
}

async fn page(state: &AppState, identity: &Identity, form: FormState, notice: &str, status: StatusCode) -> Response {
    let layout = Layout::new(state, Some(identity));
    let listed = state.schedules.list(Scope::reminders(identity.owner())).await;
    let tags = borcelle_store::contacts::tags(&state.db, identity.owner(), TAGS_SHOWN).await;
    match (listed, tags) {
        (Ok(views), Ok(tags)) => {
            let reminders = views.into_iter().map(row).collect();
            render(RemindersPage { layout, form, reminders, presets: PRESETS, tags, notice: notice.to_owned() }, status)
        }
        (Err(err), _) => PageError::new(layout, err).into_response(),
        (_, Err(err)) => PageError::new(layout, AppError::from(err)).into_response(),
    }
}

/// What the list page says after a change (a redirect's query).
#[derive(Deserialize, Default)]
pub struct ListNotice {
    /// The name of the reminder just created…
    created: Option<String>,
    /// …deleted, suspended or resumed.
    deleted: Option<String>,
    suspended: Option<String>,
    resumed: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    notice: Result<Query<ListNotice>, QueryRejection>,
) -> Response {
    let short = |name: String| name.chars().take(253).collect::<String>();
    let notice = match notice.ok().map(|Query(n)| n) {
        Some(ListNotice { created: Some(name), .. }) => format!("Reminder {} created.", short(name)),
        Some(ListNotice { deleted: Some(name), .. }) => format!("Reminder {} deleted.", short(name)),
        Some(ListNotice { suspended: Some(name), .. }) => {
            format!("Reminder {} suspended: it runs again once resumed.", short(name))
        }
        Some(ListNotice { resumed: Some(name), .. }) => format!("Reminder {} resumed.", short(name)),
        _ => String::new(),
    };
    page(&state, &identity, FormState::default(), &notice, StatusCode::OK).await
}

#[derive(Deserialize, Default)]
pub struct ReminderForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    /// Contacts' email addresses, separated by commas (or spaces, semicolons, lines); a picked
    /// suggestion `Name <email>` counts as its email.
    #[serde(default)]
    contacts: String,
    /// One of the owner's tags, or empty.
    #[serde(default)]
    tag: String,
    /// A preset, or `custom` with `custom_schedule`.
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    custom_schedule: String,
    #[serde(default)]
    time_zone: String,
}

/// The emails of the contacts field: each entry an address or a picked `Name <address>`.
fn contact_emails(field: &str) -> Vec<String> {
    field
        .split([',', ';', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .flat_map(|entry| match (entry.rfind('<'), entry.ends_with('>')) {
            (Some(open), true) => vec![entry[open + 1..entry.len() - 1].trim().to_lowercase()],
            // Without a picked form, whitespace separates too ("a@x.com b@y.com").
            _ => entry.split_whitespace().map(str::to_lowercase).collect(),
        })
        .collect()
}

/// The spec the form describes. Missing recipients are left for the schedule rules to report,
/// together with every other wrong field.
fn spec_of(form: &ReminderForm) -> Result<Value, AppError> {
    let emails = contact_emails(&form.contacts);
    let tag = form.tag.trim();
    let mut recipients = json!({});
    if !emails.is_empty() {
        recipients["emails"] = json!(emails);
    }
    if !tag.is_empty() {
        recipients["tag"] = json!(tag);
    }
    let schedule = if form.schedule == "custom" || form.schedule.is_empty() {
        form.custom_schedule.trim()
    } else {
        form.schedule.trim()
    };
    let mut spec = json!({
        "recipients": recipients,
        "subject": form.subject.trim(),
        "body": form.body.trim(),
        "schedule": schedule,
    });
    if !form.time_zone.trim().is_empty() {
        spec["timeZone"] = json!(form.time_zone.trim());
    }
    Ok(spec)
}

/// The form's field for each spec path the schedule rules name.
const SPEC_FIELDS: &[(&str, &str)] = &[
    ("spec.subject", "subject"),
    ("spec.body", "body"),
    ("spec.schedule", "schedule"),
    ("spec.timeZone", "time_zone"),
    ("spec.recipients.tag", "tag"),
    ("spec.recipients", "contacts"),
];

pub async fn create(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    FormBody(form): FormBody<ReminderForm>,
) -> Response {
    let scope = Scope::reminders(identity.owner());
    let result = match spec_of(&form) {
        Ok(spec) => state
            .schedules
            .create(scope, &caller(&identity), form.name.trim(), spec)
            .await
            .map_err(|err| in_form_words(spec_error_on_form(err.into(), SPEC_FIELDS))),
        Err(err) => Err(err),
    };
    match result {
        // POST/redirect/GET: reloading the page that follows does not post the form again.
        Ok(view) => {
            let query = serde_urlencoded::to_string([("created", view.name.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/reminders?{query}")).into_response()
        }
        Err(err) => {
            let status = err.status();
            let values = FormState::default().with_values(&[
                ("name", &form.name),
                ("subject", &form.subject),
                ("body", &form.body),
                ("contacts", &form.contacts),
                ("tag", &form.tag),
                ("schedule", &form.schedule),
                ("custom_schedule", &form.custom_schedule),
                ("time_zone", &form.time_zone),
            ]);
            page(&state, &identity, values.with_error(&err, FIELDS), "", status).await
        }
    }
}

/// The rules speak of the resource's fields; the form's contacts field says it in its own words.
fn in_form_words(err: AppError) -> AppError {
    const NO_RECIPIENT: &str = "choose the contacts to remind, a tag, or both";
    let reword = |field: &str, message: String| {
        if field == "contacts" && message.starts_with("name at least one recipient") {
            NO_RECIPIENT.to_owned()
        } else {
            message
        }
    };
    match err {
        AppError::Domain(DomainError::Invalid { field, message }) => {
            let message = reword(&field, message);
            AppError::Domain(DomainError::Invalid { field, message })
        }
        AppError::Domain(DomainError::InvalidFields(errors)) => AppError::Domain(DomainError::InvalidFields(
            errors.into_iter().map(|(field, message)| (field.clone(), reword(&field, message))).collect(),
        )),
        other => other,
    }
}

/// The list again, saying what was done to the reminder (`deleted=name`).
fn done(what: &str, name: &str) -> Response {
    let query = serde_urlencoded::to_string([(what, name)]).unwrap_or_default();
    Redirect::to(&format!("/reminders?{query}")).into_response()
}

async fn change(state: &AppState, identity: &Identity, name: &str, patch: Value, what: &str) -> Response {
    let scope = Scope::reminders(identity.owner());
    match state.schedules.patch(scope, &caller(identity), name, &patch).await {
        Ok(_) => done(what, name),
        Err(err) => PageError::new(Layout::new(state, Some(identity)), err).into_response(),
    }
}

pub async fn suspend(State(state): State<AppState>, PageUser(identity): PageUser, name: Name<Reminder>) -> Response {
    change(&state, &identity, name.as_str(), json!({ "suspend": true }), "suspended").await
}

pub async fn resume(State(state): State<AppState>, PageUser(identity): PageUser, name: Name<Reminder>) -> Response {
    change(&state, &identity, name.as_str(), json!({ "suspend": false }), "resumed").await
}

pub async fn delete(State(state): State<AppState>, PageUser(identity): PageUser, name: Name<Reminder>) -> Response {
    match state.schedules.delete(Scope::reminders(identity.owner()), name.as_str()).await {
        Ok(()) => done("deleted", name.as_str()),
        Err(err) => PageError::new(Layout::new(&state, Some(&identity)), err).into_response(),
    }
}
