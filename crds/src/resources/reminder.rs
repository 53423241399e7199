//! `ScheduledReminder`: a user's reminder email to some of their contacts on a cron schedule, its
//! recipients and its status.

use chrono::{DateTime, Duration, Utc};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Condition, RunRef, RunSummary, SpecError, Timing, time_zone};
use crate::decide::{ConcurrencyPolicy, Policy};
use crate::schedule::Schedule;
use crate::text;

/// A reminder email that a CRM user sends to some of their contacts on a cron schedule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "crm.borcelle.io",
    version = "v1alpha1",
    kind = "ScheduledReminder",
    namespaced,
    status = "ScheduledReminderStatus",
    derive = "PartialEq",
    shortname = "sr",
    shortname = "reminder",
    category = "borcelle",
    doc = "A reminder email that a Borcelle CRM user sends to some of their contacts on a cron schedule.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Time Zone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    // A string column, not a date: kubectl shows a date column as the age of the time, and the age
    // of a future time as `<invalid>`. Next is always ahead, so it shows the RFC 3339 time as stored.
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        description = "When the next occurrence is due (RFC 3339, UTC)."
    ),
    printcolumn(name = "Last", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.body) != has(self.noteId)").message("set exactly one of body and noteId"))]
#[x_kube(validation = Rule::new("!self.subject.matches('[[:cntrl:]]')").message("subject must be one line, without control characters"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduledReminderSpec {
    /// Email address of the Borcelle user who owns the reminder. The mail goes out on their behalf,
    /// to their contacts only.
    #[schemars(length(min = 3, max = 254))]
    pub owner: String,
    /// Who receives the reminder: contacts of the owner, by id, by email or by tag.
    pub recipients: Recipients,
    /// Subject line of the email.
    #[schemars(length(min = 1, max = 200))]
    pub subject: String,
    /// Text of the email. Set this or noteId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100000))]
    pub body: Option<String>,
    /// Id of one of the owner's notes whose text is the email's body. Set this or body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 36, max = 36))]
    pub note_id: Option<String>,
    /// Ids of the owner's uploaded attachments to send with every occurrence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub attachments: Vec<String>,
    /// When to send: five cron fields (minute hour day-of-month month day-of-week) or one of
    /// @hourly, @daily, @weekly, @monthly, @yearly.
    #[schemars(length(min = 1, max = 200))]
    pub schedule: String,
    /// IANA time zone the schedule is read in, such as Europe/Berlin. UTC when unset. A local time
    /// skipped by a daylight-saving change runs at the first instant after it; a repeated one runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// No new occurrence starts while true; a running one goes on. Occurrences due meanwhile are missed.
    #[serde(default)]
    pub suspend: bool,
    /// What to do when an occurrence is due while the previous one still runs: Allow (run both),
    /// Forbid (skip the new one) or Replace (stop the running one, start the new one).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// An occurrence that cannot start within this many seconds of its time is skipped and reported
    /// (MissSchedule). Without it, only the most recent missed occurrence runs, however late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("startingDeadlineSeconds must not be negative"))]
    pub starting_deadline_seconds: Option<i64>,
    /// How many finished successful runs (Jobs) to keep. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("successfulRunsHistoryLimit must not be negative"))]
    pub successful_runs_history_limit: Option<i32>,
    /// How many failed runs (Jobs) to keep. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("failedRunsHistoryLimit must not be negative"))]
    pub failed_runs_history_limit: Option<i32>,
}

/// Contacts of the owner that receive a reminder. Set at least one of the three; a contact named
/// twice receives one email.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("size(self.contactIds) + size(self.emails) > 0 || has(self.tag)").message("name at least one recipient: contactIds, emails or tag")
)]
#[x_kube(
    validation = Rule::new("self.emails.all(e, e.matches('^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+[.][^@[:space:][:cntrl:]]+$'))").message("each of emails must be an address like name@example.com")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recipients {
    /// Contact ids of the owner's contacts.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub contact_ids: Vec<String>,
    /// Email addresses of the owner's contacts.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub emails: Vec<String>,
    /// Every contact of the owner carrying this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub tag: Option<String>,
}

/// What a ScheduledReminder has done and will do.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledReminderStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (the spec is valid and the reminder is being scheduled) and Scheduled (an occurrence
    /// is coming), with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// When the next occurrence is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<DateTime<Utc>>,
    /// The most recent occurrence that was started or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// When a run last finished successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<DateTime<Utc>>,
    /// Runs still going.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<RunRef>,
    /// The outcome of the most recent finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
}

impl ScheduledReminderSpec {
    /// The schedule in its time zone, for a spec whose fields can be sent (checked here so that
    /// the API, the in-process scheduler, the operator and the worker refuse the same specs).
    pub fn timing(&self) -> Result<Timing, SpecError> {
        self.check_fields()?;
        let schedule: Schedule = self.schedule.parse()?;
        Ok(Timing::Repeat(schedule, time_zone(self.time_zone.as_deref())?))
    }

    /// The subject is one line (it becomes a mail header) and every listed address is one.
    pub fn check_fields(&self) -> Result<(), SpecError> {
        if !text::is_one_line(&self.subject) {
            let reason = "must be one line, without control characters".to_owned();
            return Err(SpecError::Field { field: "spec.subject", reason });
        }
        for email in &self.recipients.emails {
            if let Err(problem) = text::email_address(email) {
                let reason = format!("{email:?}: {problem}");
                return Err(SpecError::Field { field: "spec.recipients.emails", reason });
            }
        }
        Ok(())
    }

    pub fn policy(&self) -> Policy {
        Policy {
            suspend: self.suspend,
            concurrency: self.concurrency_policy,
            starting_deadline: self.starting_deadline_seconds.map(Duration::seconds),
        }
    }

    /// Finished successful runs to keep.
    pub fn successful_history(&self) -> usize {
        usize::try_from(self.successful_runs_history_limit.unwrap_or(3)).unwrap_or(0)
    }

    /// Finished failed runs to keep.
    pub fn failed_history(&self) -> usize {
        usize::try_from(self.failed_runs_history_limit.unwrap_or(1)).unwrap_or(0)
    }
}
