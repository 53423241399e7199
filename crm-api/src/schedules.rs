//! Reminders and broadcasts in standalone mode: checked, stored and shown in the custom
//! resources' shapes (`{name, spec, status}`), so the API reads alike in either mode.

use borcelle_crds::schedule::{Schedule, parse_time_zone};
use borcelle_crds::{AudienceGroup, BroadcastSpec, ScheduledReminderSpec};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::schedules::{self, NewSchedule, ScheduleRow};
use crate::error::{AppError, AppResult};
use crate::http::extract::parse_value;
use crate::occurrence::OccurrenceSpec;
use crate::scheduler::{first_due, status_view};
use crate::state::AppState;

/// Most schedules listed at once.
const LIST_MAX: i64 = 1000;

/// A reminder or broadcast as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Schedule)]
pub struct ScheduleView {
    /// `ScheduledReminder` or `Broadcast`.
    pub kind: String,
    pub name: String,
    pub uid: Uuid,
    /// The resource's spec.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// The resource's status: `nextScheduleTime`, `lastScheduleTime`, `active`, `lastRun`,
    /// `conditions`; a broadcast's `phase`, `deliveredAt`, `recipients`.
    #[schema(value_type = Object)]
    pub status: Value,
    pub creation_timestamp: DateTime<Utc>,
}

/// Which kind, and whose.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub kind: &'static str,
    /// The reminders' owner; `None` for broadcasts (the administrators' shared list).
    pub owner: Option<Uuid>,
}

impl Scope {
    pub fn reminders(owner: Uuid) -> Self {
        Scope { kind: schedules::REMINDER, owner: Some(owner) }
    }

    pub fn broadcasts() -> Self {
        Scope { kind: schedules::BROADCAST, owner: None }
    }

    pub fn noun(self) -> &'static str {
        if self.kind == schedules::BROADCAST { "broadcast" } else { "reminder" }
    }
}

/// A resource name: a DNS label, as in Kubernetes.
pub fn check_name(name: &str) -> AppResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(AppError::validation(
            "name",
            "use 1 to 63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
        ))
    }
}

fn check_schedule(field: &str, schedule: &str, tz_field: &str, time_zone: Option<&str>) -> AppResult<()> {
    schedule.parse::<Schedule>().map_err(|err| AppError::validation(field, err.to_string()))?;
    parse_time_zone(time_zone.unwrap_or("UTC")).map_err(|err| AppError::validation(tz_field, err.to_string()))?;
    Ok(())
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> AppResult<()> {
    let n = value.chars().count();
    if n < min || n > max || value.contains('\0') {
        let what =
            if min > 0 { format!("between {min} and {max} characters") } else { format!("at most {max} characters") };
        return Err(AppError::validation(field, format!("must be {what}, without NUL characters")));
    }
    Ok(())
}

/// Checks a reminder spec against the schema's rules and the owner's data; returns it with the
/// owner filled in.
async fn check_reminder(db: &PgPool, owner: Uuid, owner_email: &str, mut spec: Value) -> AppResult<OccurrenceSpec> {
    let Some(map) = spec.as_object_mut() else {
        return Err(AppError::validation("spec", "spec must be an object"));
    };
    match map.get("owner").and_then(Value::as_str) {
        Some(given) if !given.trim().eq_ignore_ascii_case(owner_email) => {
            return Err(AppError::validation(
                "spec.owner",
                "a reminder's owner is you: leave it out or give your own email",
            ));
        }
        _ => {
            map.insert("owner".into(), json!(owner_email));
        }
    }
    let parsed: ScheduledReminderSpec = parse_value(spec, "spec")?;
    check_len("spec.subject", &parsed.subject, 1, 200)?;
    check_schedule("spec.schedule", &parsed.schedule, "spec.timeZone", parsed.time_zone.as_deref())?;
    match (&parsed.body, &parsed.note_id) {
        (Some(body), None) => check_len("spec.body", body, 1, 100_000)?,
        (None, Some(note)) => {
            let note: Uuid = note.parse().map_err(|_| AppError::validation("spec.noteId", "not a note id"))?;
            if crate::db::notes::get(db, owner, note).await?.is_none() {
                return Err(AppError::validation("spec.noteId", "you have no note with this id"));
            }
        }
        _ => return Err(AppError::validation("spec.body", "set exactly one of body and noteId")),
    }
    let recipients = &parsed.recipients;
    if recipients.contact_ids.is_empty() && recipients.emails.is_empty() && recipients.tag.is_none() {
        return Err(AppError::validation("spec.recipients", "name at least one recipient: contactIds, emails or tag"));
    }
    if recipients.contact_ids.len() > 1000 || recipients.emails.len() > 1000 {
        return Err(AppError::validation("spec.recipients", "name at most 1000 contact ids and 1000 emails"));
    }
    let mut ids = Vec::with_capacity(recipients.contact_ids.len());
    for raw in &recipients.contact_ids {
        ids.push(
            raw.parse::<Uuid>().map_err(|_| {
                AppError::validation("spec.recipients.contactIds", format!("{raw:?} is not a contact id"))
            })?,
        );
    }
    if !ids.is_empty() {
        let found = crate::db::contacts::count_owned(db, owner, &ids).await?;
        if found != ids.len() as i64 {
            return Err(AppError::validation("spec.recipients.contactIds", "some of these are not your contacts"));
        }
    }
    if let Some(tag) = &recipients.tag {
        check_len("spec.recipients.tag", tag, 1, 50)?;
    }
    for (field, value) in [("spec.startingDeadlineSeconds", parsed.starting_deadline_seconds)] {
        if value.is_some_and(|v| v < 0) {
            return Err(AppError::validation(field, "must not be negative"));
        }
    }
    for (field, value) in [
        ("spec.successfulRunsHistoryLimit", parsed.successful_runs_history_limit),
        ("spec.failedRunsHistoryLimit", parsed.failed_runs_history_limit),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(AppError::validation(field, "must not be negative"));
        }
    }
    let mut attachment_ids = Vec::with_capacity(parsed.attachments.len());
    for raw in &parsed.attachments {
        attachment_ids
            .push(raw.parse::<Uuid>().map_err(|_| AppError::validation("spec.attachments", "not an attachment id"))?);
    }
    if !attachment_ids.is_empty() {
        let owned = crate::db::attachments::owned_sizes(db, owner, &attachment_ids).await?;
        if owned.len() != attachment_ids.len() {
            return Err(AppError::validation("spec.attachments", "some of these are not your attachments"));
        }
    }
    Ok(OccurrenceSpec::Reminder(parsed))
}

/// Checks a broadcast spec against the schema's rules.
fn check_broadcast(spec: Value, now: DateTime<Utc>) -> AppResult<OccurrenceSpec> {
    if !spec.is_object() {
        return Err(AppError::validation("spec", "spec must be an object"));
    }
    let parsed: BroadcastSpec = parse_value(spec, "spec")?;
    check_len("spec.title", &parsed.title, 1, 200)?;
    check_len("spec.message", &parsed.message, 1, 10_000)?;
    if parsed.at.is_some() && parsed.schedule.is_some() {
        return Err(AppError::validation("spec.at", "set at most one of at and schedule"));
    }
    if let Some(schedule) = &parsed.schedule {
        check_schedule("spec.schedule", schedule, "spec.timeZone", parsed.time_zone.as_deref())?;
    } else if parsed.time_zone.is_some() {
        return Err(AppError::validation("spec.timeZone", "timeZone applies to schedule only"));
    }
    if parsed.channels.is_empty() {
        return Err(AppError::validation("spec.channels", "choose at least one channel: web or email"));
    }
    let users = &parsed.audience.users;
    match parsed.audience.group {
        AudienceGroup::Users if users.is_empty() => {
            return Err(AppError::validation("spec.audience.users", "list the users' emails when group is users"));
        }
        AudienceGroup::All | AudienceGroup::Admins if !users.is_empty() => {
            return Err(AppError::validation("spec.audience.users", "list users only when group is users"));
        }
        _ => {}
    }
    if users.len() > 10_000 {
        return Err(AppError::validation("spec.audience.users", "list at most 10000 users"));
    }
    if parsed.expires_at.is_some_and(|t| t <= now) {
        return Err(AppError::validation("spec.expiresAt", "must be in the future"));
    }
    if parsed.starting_deadline_seconds.is_some_and(|v| v < 0) {
        return Err(AppError::validation("spec.startingDeadlineSeconds", "must not be negative"));
    }
    Ok(OccurrenceSpec::Broadcast(parsed))
}

async fn check(
    db: &PgPool,
    scope: Scope,
    user: Uuid,
    email: &str,
    spec: Value,
    now: DateTime<Utc>,
) -> AppResult<OccurrenceSpec> {
    if scope.kind == schedules::BROADCAST {
        check_broadcast(spec, now)
    } else {
        check_reminder(db, user, email, spec).await
    }
}

fn spec_json(spec: &OccurrenceSpec) -> AppResult<Value> {
    let value = match spec {
        OccurrenceSpec::Reminder(spec) => serde_json::to_value(spec),
        OccurrenceSpec::Broadcast(spec) => serde_json::to_value(spec),
    };
    value.map_err(|err| AppError::Internal(err.into()))
}

/// The view of stored rows, with their runs read in two queries.
pub async fn views(db: &PgPool, rows: Vec<ScheduleRow>) -> AppResult<Vec<ScheduleView>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let active = schedules::active_runs(db, &ids).await?;
    let last = schedules::last_runs(db, &ids).await?;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut status = status_view(&row, &active, last.iter().find(|l| l.resource_uid == row.id));
            // Not looked at by the scheduler yet: show when it will first run.
            if status.get("nextScheduleTime").is_none_or(Value::is_null)
                && row.status.get("conditions").is_none()
                && let Ok(spec) = OccurrenceSpec::from_json(&row.kind, row.spec.clone())
                && let Some(next) = first_due(&spec, row.created_at, row.last_scheduled_at.unwrap_or(now).max(now))
                && let Some(map) = status.as_object_mut()
            {
                map.insert("nextScheduleTime".into(), json!(next));
            }
            ScheduleView {
                kind: row.kind,
                name: row.name,
                uid: row.id,
                spec: row.spec,
                status,
                creation_timestamp: row.created_at,
            }
        })
        .collect())
}

async fn view(db: &PgPool, row: ScheduleRow) -> AppResult<ScheduleView> {
    views(db, vec![row]).await?.pop().ok_or(AppError::NotFound("schedule"))
}

pub async fn list(state: &AppState, scope: Scope) -> AppResult<Vec<ScheduleView>> {
    if let Some(cluster) = &state.cluster {
        return cluster.list(scope).await;
    }
    views(&state.db, schedules::list(&state.db, scope.kind, scope.owner, LIST_MAX).await?).await
}

pub async fn get(state: &AppState, scope: Scope, name: &str) -> AppResult<ScheduleView> {
    if let Some(cluster) = &state.cluster {
        return cluster.get(scope, name).await;
    }
    let db = &state.db;
    let row = schedules::get(db, scope.kind, scope.owner, name).await?.ok_or(AppError::NotFound(scope.noun()))?;
    view(db, row).await
}

/// Creates a schedule (checked as the schema and the owner's data require). Standalone, this
/// process's scheduler is woken to look at it at once and fill its status; in Kubernetes, the
/// operator does.
pub async fn create(
    state: &AppState,
    scope: Scope,
    user: Uuid,
    email: &str,
    name: &str,
    spec: Value,
) -> AppResult<ScheduleView> {
    check_name(name)?;
    if scope.kind == schedules::REMINDER && name.len() > 54 {
        return Err(AppError::validation("name", "use at most 54 characters"));
    }
    let db = &state.db;
    let now = Utc::now();
    let spec = check(db, scope, user, email, spec, now).await?;
    let spec = spec_json(&spec)?;
    if let Some(cluster) = &state.cluster {
        return cluster.create(scope, user, name, spec).await;
    }
    let new = NewSchedule {
        id: Uuid::now_v7(),
        kind: scope.kind,
        owner_id: user,
        name,
        spec: &spec,
        status: &json!({}),
        next_run_at: Some(now),
        created_at: now,
    };
    let Some(row) = schedules::insert(db, &new).await? else {
        return Err(AppError::Conflict {
            code: "name_taken",
            field: "name",
            message: format!("a {} named {name:?} exists already", scope.noun()),
            existing_id: None,
        });
    };
    state.wake_scheduler.notify_one();
    view(db, row).await
}

/// Applies a JSON merge patch (RFC 7386) to the spec and checks the result; standalone, the
/// scheduler looks at it again at once.
pub async fn patch(
    state: &AppState,
    scope: Scope,
    user: Uuid,
    email: &str,
    name: &str,
    patch: Value,
) -> AppResult<ScheduleView> {
    let db = &state.db;
    let now = Utc::now();
    if let Some(cluster) = &state.cluster {
        let mut spec = cluster.spec(scope, name).await?;
        merge_patch(&mut spec, &patch);
        let checked = spec_json(&check(db, scope, scope.owner.unwrap_or(user), email, spec, now).await?)?;
        return cluster.replace_spec(scope, name, checked).await;
    }
    let row = schedules::get(db, scope.kind, scope.owner, name).await?.ok_or(AppError::NotFound(scope.noun()))?;
    let mut spec = row.spec.clone();
    merge_patch(&mut spec, &patch);
    let checked = check(db, scope, row.owner_id, email, spec, now).await?;
    let spec = spec_json(&checked)?;
    let row = schedules::update_spec(db, row.id, &spec, &row.status, Some(now))
        .await?
        .ok_or(AppError::NotFound(scope.noun()))?;
    state.wake_scheduler.notify_one();
    view(db, row).await
}

pub async fn delete(state: &AppState, scope: Scope, name: &str) -> AppResult<()> {
    if let Some(cluster) = &state.cluster {
        return cluster.delete(scope, name).await;
    }
    let db = &state.db;
    let row = schedules::get(db, scope.kind, scope.owner, name).await?.ok_or(AppError::NotFound(scope.noun()))?;
    schedules::delete(db, row.id).await?;
    Ok(())
}

/// RFC 7386: objects merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The next `count` runs of a schedule in a time zone (a preview while typing it).
pub fn preview(schedule: &str, time_zone: Option<&str>, count: usize) -> AppResult<Vec<DateTime<Utc>>> {
    let parsed: Schedule = schedule
        .parse()
        .map_err(|err: borcelle_crds::schedule::ScheduleError| AppError::validation("schedule", err.to_string()))?;
    let tz =
        parse_time_zone(time_zone.unwrap_or("UTC")).map_err(|err| AppError::validation("timeZone", err.to_string()))?;
    Ok(parsed.occurrences(Utc::now(), tz).take(count.clamp(1, 20)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(&mut target, &json!({"a": null, "b": {"c": 5}, "e": [2], "f": true}));
        assert_eq!(target, json!({"b": {"c": 5, "d": 3}, "e": [2], "f": true}));
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(check_name("weekly-report-2").is_ok());
        for bad in ["", "-a", "a-", "Weekly", "a_b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
