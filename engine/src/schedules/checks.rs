//! The rules a reminder or broadcast spec must follow before it is kept, whichever store keeps
//! it: what the CRDs' schema and CEL rules say, plus what only the owner's data can tell (that a
//! note, contacts and attachments are the owner's).

use borcelle_crds::schedule::{Schedule, parse_time_zone};
use borcelle_crds::{AudienceGroup, BroadcastSpec, ScheduledReminderSpec, SpecError};
use borcelle_store::{Owner, PgPool};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Caller, Scope};
use crate::input::parse_value;
use crate::occurrence::OccurrenceSpec;
use crate::{Error, Result};

/// A resource name: a DNS label, as in Kubernetes.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            "use 1 to 63 lowercase letters, digits and dashes, starting and ending with a letter or digit",
        ))
    }
}

fn check_schedule(field: &str, schedule: &str, tz_field: &str, time_zone: Option<&str>) -> Result<()> {
    // Both, so that a wrong schedule and a wrong zone are reported together.
    let mut errors = crate::error::FieldErrors::default();
    errors.check(schedule.parse::<Schedule>().map_err(|err| Error::invalid(field, err.to_string())));
    errors.check(parse_time_zone(time_zone.unwrap_or("UTC")).map_err(|err| Error::invalid(tz_field, err.to_string())));
    errors.into_result()
}

/// `null` is not a value in a spec: a field is there or it is not (in a merge patch `null` removes
/// a field, and the merged spec has none left).
fn no_nulls(value: &Value, path: &str) -> Result<()> {
    match value {
        Value::Null => Err(Error::invalid(path, "null is not a value here: leave the field out")),
        Value::Object(map) => map.iter().try_for_each(|(key, value)| no_nulls(value, &format!("{path}.{key}"))),
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, item)| no_nulls(item, &format!("{path}[{i}]")))
        }
        _ => Ok(()),
    }
}

/// An id as the resources write one: a UUID in its 36-character hyphenated form.
fn id(field: &str, raw: &str, what: &str) -> Result<Uuid> {
    raw.parse::<Uuid>().ok().filter(|_| raw.len() == 36).ok_or_else(|| {
        Error::invalid(field, format!("{raw:?} is not {what} id (a UUID like 0192f0a1-7c4e-7b1a-9d2e-3f4a5b6c7d8e)"))
    })
}

/// A spec field the resource types refuse, as the field error it is.
fn field_problem(err: SpecError) -> Error {
    match err {
        SpecError::Field { field, reason } => Error::invalid(field, reason),
        other => Error::invalid("spec", other.to_string()),
    }
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n < min || n > max || value.contains('\0') {
        let what =
            if min > 0 { format!("between {min} and {max} characters") } else { format!("at most {max} characters") };
        return Err(Error::invalid(field, format!("must be {what}, without NUL characters")));
    }
    Ok(())
}

/// Checks a reminder spec against the schema's rules and the owner's data; returns it with the
/// owner filled in.
async fn check_reminder(
    db: &PgPool,
    owner: Owner,
    owner_email: &str,
    mut spec: Value,
    recipients_checked: Recipients,
) -> Result<OccurrenceSpec> {
    no_nulls(&spec, "spec")?;
    let Some(map) = spec.as_object_mut() else {
        return Err(Error::invalid("spec", "spec must be an object"));
    };
    match map.get("owner").and_then(Value::as_str) {
        Some(given) if !given.trim().eq_ignore_ascii_case(owner_email) => {
            return Err(Error::invalid("spec.owner", "a reminder's owner is you: leave it out or give your own email"));
        }
        _ => {
            map.insert("owner".into(), json!(owner_email));
        }
    }
    let parsed: ScheduledReminderSpec = parse_value(spec, "spec")?;
    // The fields a form shows side by side are checked together, so that all their errors show
    // at once; what depends on them (merge fields, the owner's data) is checked after.
    let mut errors = crate::error::FieldErrors::default();
    errors.check(check_len("spec.subject", &parsed.subject, 1, 200));
    errors.check(parsed.check_fields().map_err(field_problem));
    errors.check(check_schedule("spec.schedule", &parsed.schedule, "spec.timeZone", parsed.time_zone.as_deref()));
    match (&parsed.body, &parsed.note_id) {
        (Some(body), None) => {
            errors.check(check_len("spec.body", body, 1, 100_000));
        }
        (None, Some(_)) => {}
        _ => {
            errors.check::<()>(Err(Error::invalid("spec.body", "set exactly one of body and noteId")));
        }
    }
    let named = &parsed.recipients;
    if named.contact_ids.is_empty() && named.emails.is_empty() && named.tag.is_none() {
        errors.check::<()>(Err(Error::invalid(
            "spec.recipients",
            "name at least one recipient: contactIds, emails or tag",
        )));
    }
    errors.into_result()?;
    match (&parsed.body, &parsed.note_id) {
        (Some(body), None) => {
            crate::messaging::merge_fields(&parsed.subject, body, "spec.subject", "spec.body")?;
        }
        (None, Some(note)) => {
            let note = id("spec.noteId", note, "a note")?;
            let Some(note) = borcelle_store::notes::get(db, owner, note).await? else {
                return Err(Error::NothingNamed {
                    field: "spec.noteId",
                    message: "you have no note with this id".into(),
                });
            };
            crate::messaging::merge_fields(&parsed.subject, &note.body, "spec.subject", "spec.noteId")?;
        }
        _ => return Err(Error::invalid("spec.body", "set exactly one of body and noteId")),
    }
    let recipients = &parsed.recipients;
    if recipients.contact_ids.len() > 1000 || recipients.emails.len() > 1000 {
        return Err(Error::invalid("spec.recipients", "name at most 1000 contact ids and 1000 emails"));
    }
    let mut ids = Vec::with_capacity(recipients.contact_ids.len());
    for raw in &recipients.contact_ids {
        ids.push(id("spec.recipients.contactIds", raw, "a contact")?);
    }
    ids.sort_unstable();
    ids.dedup();
    // Each is an address (the spec's own rules, above); in lower case, as contacts keep them.
    let emails: Vec<String> = recipients.emails.iter().map(|raw| raw.trim().to_lowercase()).collect();
    if let Some(tag) = &recipients.tag {
        check_len("spec.recipients.tag", tag, 1, 50)?;
    }
    let tag = recipients.tag.as_deref().map(|t| t.trim().to_lowercase());
    for (field, value) in [("spec.startingDeadlineSeconds", parsed.starting_deadline_seconds)] {
        if value.is_some_and(|v| v < 0) {
            return Err(Error::invalid(field, "must not be negative"));
        }
    }
    for (field, value) in [
        ("spec.successfulRunsHistoryLimit", parsed.successful_runs_history_limit),
        ("spec.failedRunsHistoryLimit", parsed.failed_runs_history_limit),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(Error::invalid(field, "must not be negative"));
        }
    }
    // The resource's schema allows as many (`spec.attachments`, maxItems 20).
    let limit = 20;
    if parsed.attachments.len() > limit {
        return Err(Error::invalid("spec.attachments", format!("a reminder may carry at most {limit} attachments")));
    }
    let mut attachment_ids = Vec::with_capacity(parsed.attachments.len());
    for raw in &parsed.attachments {
        attachment_ids.push(id("spec.attachments", raw, "an attachment")?);
    }
    attachment_ids.sort_unstable();
    attachment_ids.dedup();

    // What only the owner's data can tell: that the contacts exist and someone has the tag. When
    // a change leaves the recipients as they were (suspend, a new subject), they are not checked
    // again: a contact deleted since must not stop the owner from suspending the reminder.
    if recipients_checked == Recipients::Check {
        check_recipients_exist(db, owner, &ids, &emails, tag.as_deref()).await?;
    }
    if !attachment_ids.is_empty() {
        let owned = borcelle_store::attachments::owned_sizes(db, owner, &attachment_ids).await?;
        if owned.len() != attachment_ids.len() {
            return Err(Error::NothingNamed {
                field: "spec.attachments",
                message: "some of these are not your attachments".into(),
            });
        }
    }
    Ok(OccurrenceSpec::Reminder(parsed))
}

/// That the contacts a reminder names are the owner's and that one of them has its tag.
async fn check_recipients_exist(
    db: &PgPool,
    owner: Owner,
    ids: &[Uuid],
    emails: &[String],
    tag: Option<&str>,
) -> Result<()> {
    if !emails.is_empty() {
        let unknown = borcelle_store::contacts::unknown_emails(db, owner, emails).await?;
        if !unknown.is_empty() {
            return Err(Error::NothingNamed {
                field: "spec.recipients.emails",
                message: format!(
                    "not among your contacts: {}; add them as contacts first, or pick from your contacts",
                    unknown.join(", ")
                ),
            });
        }
    }
    if let Some(tag) = tag
        && !borcelle_store::contacts::tag_in_use(db, owner, tag).await?
    {
        return Err(Error::NothingNamed {
            field: "spec.recipients.tag",
            message: format!("no contact has the tag {tag:?}: tag your contacts first, or pick one of your tags"),
        });
    }
    if !ids.is_empty() {
        let found = borcelle_store::contacts::count_owned(db, owner, ids).await?;
        if found != ids.len() as i64 {
            return Err(Error::NothingNamed {
                field: "spec.recipients.contactIds",
                message: "some of these are not your contacts".into(),
            });
        }
    }
    Ok(())
}

/// Checks a broadcast spec against the schema's rules.
/// An `expiresAt` already past is accepted: the broadcast then delivers nothing and its status says
/// Expired.
fn check_broadcast(spec: Value) -> Result<OccurrenceSpec> {
    if !spec.is_object() {
        return Err(Error::invalid("spec", "spec must be an object"));
    }
    no_nulls(&spec, "spec")?;
    let parsed: BroadcastSpec = parse_value(spec, "spec")?;
    // The form's fields are checked together, so that all their errors show at once.
    let mut errors = crate::error::FieldErrors::default();
    let title = check_len("spec.title", &parsed.title, 1, 200).and_then(|()| {
        if borcelle_crds::text::is_one_line(&parsed.title) {
            Ok(())
        } else {
            Err(Error::invalid("spec.title", "must be one line, without control characters"))
        }
    });
    errors.check(title);
    errors.check(check_len("spec.message", &parsed.message, 1, 10_000));
    let when = if parsed.at.is_some() && parsed.schedule.is_some() {
        Err(Error::invalid("spec.at", "set at most one of at and schedule"))
    } else if let Some(schedule) = &parsed.schedule {
        check_schedule("spec.schedule", schedule, "spec.timeZone", parsed.time_zone.as_deref())
    } else if parsed.time_zone.is_some() {
        Err(Error::invalid("spec.timeZone", "timeZone applies to schedule only"))
    } else {
        Ok(())
    };
    errors.check(when);
    errors.into_result()?;
    if parsed.channels.is_empty() {
        return Err(Error::invalid("spec.channels", "choose at least one channel: web or email"));
    }
    if parsed.channels.len() > 2 || parsed.channels.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::invalid("spec.channels", "name each channel once: web, email or both"));
    }
    let users = &parsed.audience.users;
    match parsed.audience.group {
        AudienceGroup::Users if users.is_empty() => {
            return Err(Error::invalid("spec.audience.users", "list the users' emails when group is users"));
        }
        AudienceGroup::All | AudienceGroup::Admins if !users.is_empty() => {
            return Err(Error::invalid("spec.audience.users", "list users only when group is users"));
        }
        _ => {}
    }
    if users.len() > 10_000 {
        return Err(Error::invalid("spec.audience.users", "list at most 10000 users"));
    }
    if parsed.starting_deadline_seconds.is_some_and(|v| v < 0) {
        return Err(Error::invalid("spec.startingDeadlineSeconds", "must not be negative"));
    }
    Ok(OccurrenceSpec::Broadcast(parsed))
}

/// Checks a spec of the scope's kind for `caller` (a reminder's owner is the caller).
pub async fn check(
    db: &PgPool,
    scope: Scope,
    caller: &Caller<'_>,
    spec: Value,
    recipients: Recipients,
) -> Result<OccurrenceSpec> {
    if scope.is_broadcast() {
        check_broadcast(spec)
    } else {
        check_reminder(db, scope.owner.unwrap_or(caller.id), caller.email, spec, recipients).await
    }
}

/// Whether a reminder's recipients are checked against the owner's contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// New or changed: every email must be a contact's and the tag someone's.
    Check,
    /// Unchanged by a patch: kept as they were accepted.
    Keep,
}

/// A checked spec as JSON, as it is kept.
pub fn spec_json(spec: &OccurrenceSpec) -> Result<Value> {
    let value = match spec {
        OccurrenceSpec::Reminder(spec) => serde_json::to_value(spec),
        OccurrenceSpec::Broadcast(spec) => serde_json::to_value(spec),
    };
    value.map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert!(check_name("weekly-report-2").is_ok());
        for bad in ["", "-a", "a-", "Weekly", "a_b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
