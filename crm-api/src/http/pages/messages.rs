//! `/messages`: every message the user sent, newest first, filtered by state, kind of send,
//! recipient and day, page after page (keyset on the time and id). The filters live in the URL.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::{Layout, PageError, PageUser, link, render};
use crate::error::AppError;
use crate::http::api::contacts::query_error;
use crate::http::api::messages::{STATUSES, decode_cursor, encode_cursor};
use borcelle_engine::messaging;
use borcelle_store::messages::{self, HistoryFilter, Message};

const PAGE_SIZE: i64 = 50;
/// The kinds of send a message can come from: (value, label).
const KINDS: [(&str, &str); 4] =
    [("message", "Messages"), ("note", "Notes"), ("reminder", "Reminders"), ("broadcast", "Broadcasts")];
/// Longest recipient filter.
const TO_MAX: usize = 254;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    status: Option<String>,
    kind: Option<String>,
    to: Option<String>,
    /// Days (`YYYY-MM-DD`, UTC), both included.
    from: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/messages.html")]
struct MessagesPage {
    layout: Layout,
    messages: Vec<Message>,
    statuses: &'static [&'static str],
    kinds: &'static [(&'static str, &'static str)],
    status: String,
    kind: String,
    to: String,
    from: String,
    until: String,
    older: Option<String>,
    paged: bool,
}

impl MessagesPage {
    fn filtered(&self) -> bool {
        [&self.status, &self.kind, &self.to, &self.from, &self.until].iter().any(|value| !value.is_empty())
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("status", self.status.clone()),
            ("kind", self.kind.clone()),
            ("to", self.to.clone()),
            ("from", self.from.clone()),
            ("until", self.until.clone()),
        ]
    }

    /// The newest page of the same filters.
    fn newest_href(&self) -> String {
        href(&self.params())
    }
}

fn href(params: &[(&str, String)]) -> String {
    link("/messages", params)
}

/// A day of the filter, as the start of that day (UTC), or the start of the next one for `until`.
fn day(field: &str, raw: &str, next: bool) -> Result<Option<DateTime<Utc>>, AppError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| AppError::validation(field, format!("{field} must be a day like 2026-12-31")))?;
    let date = if next { date.succ_opt().unwrap_or(date) } else { date };
    Ok(date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()))
}

fn one_of(field: &str, raw: &str, allowed: &[&str]) -> Result<Option<String>, AppError> {
    match raw {
        "" => Ok(None),
        value if allowed.contains(&value) => Ok(Some(value.to_owned())),
        _ => Err(AppError::validation(field, format!("{field} must be one of {}", allowed.join(", ")))),
    }
}

pub async fn list(
    State(state): State<crate::state::AppState>,
    PageUser(identity): PageUser,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let params = match params {
        Ok(Query(params)) => params,
        Err(err) => return PageError::new(layout, query_error(err)).into_response(),
    };
    let text = |raw: &Option<String>| raw.as_deref().unwrap_or_default().trim().to_owned();
    let (status, kind, to, from, until) = (
        text(&params.status),
        text(&params.kind),
        text(&params.to).to_lowercase(),
        text(&params.from),
        text(&params.until),
    );
    let kinds: Vec<&str> = KINDS.iter().map(|(value, _)| *value).collect();
    let filter = (|| {
        if to.chars().count() > TO_MAX || to.chars().any(char::is_control) {
            return Err(AppError::validation("to", format!("to must be at most {TO_MAX} characters")));
        }
        Ok::<_, AppError>(HistoryFilter {
            status: one_of("status", &status, &STATUSES)?,
            contact_id: None,
            task_id: None,
            kind: one_of("kind", &kind, &kinds)?,
            to: Some(to.clone()).filter(|to| !to.is_empty()),
            since: day("from", &from, false)?,
            until: day("until", &until, true)?,
            before: params.cursor.as_deref().filter(|c| !c.trim().is_empty()).map(decode_cursor).transpose()?,
            limit: PAGE_SIZE,
        })
    })();
    let filter = match filter {
        Ok(filter) => filter,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let mut rows = match messages::history(&state.db, identity.owner(), &filter).await {
        Ok(rows) => rows,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let more = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    // A personalised subject as its recipient received it.
    let sender =
        borcelle_mail::merge::SenderFields { name: identity.display_name.clone(), email: identity.email.clone() };
    messaging::personal_subjects(&mut rows, &sender);
    let mut page = MessagesPage {
        layout,
        messages: Vec::new(),
        statuses: &STATUSES,
        kinds: &KINDS,
        status,
        kind,
        to,
        from,
        until,
        older: None,
        paged: filter.before.is_some(),
    };
    if more && let Some(last) = rows.last() {
        let mut params = page.params();
        params.push(("cursor", encode_cursor(last)));
        page.older = Some(href(&params));
    }
    page.messages = rows;
    render(page, StatusCode::OK)
}
